import type { DestinationReport } from '../../apply/engine.js';
import type { Destination } from '../../config/defaults.js';
import { ExitCode } from '../../errors.js';
import { interruptedExitCode } from '../wiring/delivery.js';
import type { Output } from '../output/output.js';

/**
 * How a run that sends ended, said once: as the last line of its text output and as the `outcome` and `exitCode`
 * of its JSON summary, so a person, a cron mail and a log shipper all read the same verdict as the exit code.
 */
export type OutcomeKind = 'done' | 'failed' | 'interrupted';

export interface RunOutcome {
  outcome: OutcomeKind;
  exitCode: ExitCode;
  sent: number;
  failed: number;
  dead: number;
  /** Operations left in the queue for the next run (an interrupted run). */
  left: number;
  elapsedSeconds: number;
  /** The signal that interrupted the run. */
  signal?: string;
}

export function runOutcome(
  reports: ReadonlyMap<Destination, DestinationReport>,
  elapsedSeconds: number,
  interrupt: AbortSignal | undefined,
  left: number,
): RunOutcome {
  const totals = { sent: 0, failed: 0, dead: 0 };
  for (const report of reports.values()) {
    totals.sent += report.sent;
    totals.failed += report.failed;
    totals.dead += report.dead;
  }
  if (interrupt?.aborted) {
    const signal = typeof interrupt.reason === 'string' ? interrupt.reason : 'a signal';
    return { outcome: 'interrupted', exitCode: interruptedExitCode(interrupt), ...totals, left, elapsedSeconds, signal };
  }
  const failed = totals.failed + totals.dead > 0;
  return { outcome: failed ? 'failed' : 'done', exitCode: failed ? ExitCode.failedDeliveries : ExitCode.ok, ...totals, left, elapsedSeconds };
}

/** The last line of a run's text output. */
export function outcomeLine(command: string, o: RunOutcome): string {
  const n = (value: number): string => value.toLocaleString('en-US');
  const counts = `${n(o.sent)} sent, ${n(o.failed)} failed, ${n(o.dead)} dead`;
  const elapsed = `${o.elapsedSeconds.toFixed(1)}s`;
  switch (o.outcome) {
    case 'done':
      return `${command}: done in ${elapsed}: ${counts}.`;
    case 'failed':
      return `${command}: finished in ${elapsed} with ${plural(o.failed + o.dead, 'delivery', 'deliveries')} not through: ${counts} (exit ${o.exitCode}); \`npx referral-sync status\` lists them, \`npx referral-sync retry\` resends them.`;
    case 'interrupted':
      return `${command}: interrupted by ${o.signal} after ${elapsed}: ${counts}; ${plural(o.left, 'operation', 'operations')} left in the queue for the next run, same ids (exit ${o.exitCode}).`;
  }
}

/**
 * Ends a run's output with its verdict, after the summary: on stdout when all went through; on stderr when not,
 * so that a cron job that keeps only stderr still hears of failures.
 */
export function reportOutcome(output: Output, command: string, o: RunOutcome, resultWasJson: boolean): void {
  const line = outcomeLine(command, o);
  if (o.outcome === 'done') {
    // A JSON result (`--json`, `--log-format json`) carries the verdict as its `outcome` and `exitCode`.
    if (!resultWasJson) output.result(`${line}\n`);
    return;
  }
  const fields = outcomeJson(o);
  if (o.outcome === 'interrupted') output.warn(line, fields);
  else output.error(line, fields);
}

/** The fields every JSON summary of a run that sends carries. */
export function outcomeJson(o: RunOutcome): Record<string, unknown> {
  return { outcome: o.outcome, exitCode: o.exitCode, sent: o.sent, failed: o.failed, dead: o.dead, left: o.left, ...(o.signal ? { signal: o.signal } : {}) };
}

/** A report for JSON: times as ISO dates instead of the engine's milliseconds since the process started. */
export function reportJson(report: DestinationReport): Record<string, unknown> {
  return {
    ...report,
    startedAt: new Date(performance.timeOrigin + report.startedAt).toISOString(),
    finishedAt: report.finishedAt === undefined ? null : new Date(performance.timeOrigin + report.finishedAt).toISOString(),
  };
}

export function plural(n: number, one: string, many: string): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}
