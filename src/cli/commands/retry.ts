import type { DestinationReport } from '../../apply/engine.js';
import type { Clock } from '../../apply/limiter.js';
import { waitingIn } from '../../apply/queue.js';
import { requeueRetries } from '../../apply/retry-selection.js';
import { DESTINATION_LABELS, type Destination } from '../../config/defaults.js';
import type { DestinationClient } from '../../destinations/types.js';
import { ExitCode } from '../../errors.js';
import { openState } from '../../state/open.js';
import type { ProblemCount, StateStore, StoredDelivery } from '../../state/store.js';
import { groupProblems, type Outstanding } from '../../state/problem-groups.js';
import { outstandingJson, renderOutstanding } from '../output/outstanding.js';
import { createEngine, parseStallTimeout, stalledLines } from '../wiring/delivery.js';
import { createDestinationClients, parseRateMode, parseRates, ratesGiven, type DestinationFlags, type RateMode } from '../wiring/destinations.js';
import { preflight } from '../run/preflight.js';
import { recordRunEnd } from '../run/run-end.js';
import { outcomeJson, plural, reportJson, reportOutcome, runOutcome } from '../run/outcome.js';
import type { Output } from '../output/output.js';
import { resolveCommon, type CommonFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { joinLines, shown } from '../../terminal-text.js';

export interface RetryFlags extends CommonFlags, DestinationFlags {
  campaign?: string;
  stallTimeout?: string;
  json?: boolean;
  /** `--fail-on-outstanding`: exit 1 when failed or dead deliveries are still in the state after the retry. */
  failOnOutstanding?: boolean;
}

/**
 * `referral-sync retry`: failed and dead deliveries go back into their program's durable queue (a refused
 * identify that newer acknowledged traits replaced is dropped as superseded) and are sent exactly as they were
 * planned, same ids. Each program's lock is taken first, so a sync of that program and a retry never overlap.
 */
export async function runRetry(flags: RetryFlags, env: Env, cwd: string, output: Output, now: Date, interrupt?: AbortSignal, clock?: Clock): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const rates = parseRates(flags.rate);
  const stallTimeoutMs = parseStallTimeout(flags.stallTimeout);
  const rateMode = parseRateMode(flags.rateMode);
  // Only the flag narrows retry down: GROWSURF_CAMPAIGN_ID is often exported for sync, and retry should then
  // still resend every program's failures. Deliveries recorded before they carried their program belong to the
  // program named (flag, else that variable), else to `default`.
  const campaign = flags.campaign;
  const unattributed = flags.campaign ?? env.GROWSURF_CAMPAIGN_ID ?? 'default';
  // Looked up read-only first: nothing to retry needs no credentials and creates no state file.
  const peek = await openState(common.statePath, { mode: 'read' });
  let programs: string[];
  try {
    programs = (await peek.retryPrograms(common.destinations, unattributed)).filter((program) => campaign === undefined || program === campaign);
  } finally {
    await peek.close();
  }
  if (programs.length === 0) {
    const line = `retry: nothing to retry: no failed or dead deliveries${campaign === undefined ? '' : ` of program ${campaign}`} in ${common.statePath}.`;
    if (output.json || flags.json) output.result(`${JSON.stringify({ command: 'retry', outcome: 'done', exitCode: ExitCode.ok, sent: 0, failed: 0, dead: 0, left: 0, programs: [], message: line }, null, output.jsonIndent(flags.json))}\n`);
    else output.result(`${shown(line)}\n`);
    return ExitCode.ok;
  }
  const clients = createDestinationClients(common.destinations, flags, env);
  const state = await openState(common.statePath, { mode: 'write' });
  const locked: string[] = [];
  try {
    for (const program of programs) {
      await state.acquireLock(program, 'retry', now);
      locked.push(program);
      await state.markCrashedRuns(program, now);
    }
    // As sync does: an unreachable destination or refused credentials stop here, with nothing sent (exit 69).
    await preflight(clients, output, interrupt, clock);
    const started = performance.now();
    const reports = new Map<Destination, DestinationReport>();
    const superseded: StoredDelivery[] = [];
    let left = 0;
    for (const program of programs) {
      if (interrupt?.aborted) break;
      const result = await retryProgram({ state, program, unattributed, destinations: common.destinations, clients, rates, rateMode, rateFlag: flags.rate, stallTimeoutMs, now, interrupt, clock });
      superseded.push(...result.superseded);
      left += result.left;
      for (const [destination, report] of result.reports) reports.set(destination, mergeReports(reports.get(destination), report));
    }
    const outcome = runOutcome(reports, (performance.now() - started) / 1000, interrupt, left);
    // What is still not delivered in these programs after the retry (refused again, or for destinations not retried).
    const retried = new Set(programs);
    const after = await groupProblems(inPrograms(state.problemCounts(), retried));
    const exitCode = outcome.exitCode === ExitCode.ok && flags.failOnOutstanding === true && after.total > 0 ? ExitCode.failedDeliveries : outcome.exitCode;
    for (const line of stalledLines(reports)) output.warn(line);
    if (output.json || flags.json) {
      const json = {
        command: 'retry',
        ...outcomeJson(outcome),
        exitCode,
        programs,
        state: state.location,
        elapsedSeconds: Math.round(outcome.elapsedSeconds * 1000) / 1000,
        superseded: superseded.map(({ destination, key, kind, userId }) => ({ destination, key, kind, userId })),
        delivery: Object.fromEntries([...reports].map(([d, r]) => [d, reportJson(r)])),
        outstanding: outstandingJson(after),
      };
      output.result(`${JSON.stringify(json, null, output.jsonIndent(flags.json))}\n`);
    } else {
      output.result(renderRetry(programs, reports, superseded, after));
    }
    reportOutcome(output, 'retry', outcome, output.json || flags.json === true);
    if (exitCode !== outcome.exitCode) output.error(`retry: exit ${exitCode}: --fail-on-outstanding, and ${plural(after.total, 'delivery', 'deliveries')} ${after.total === 1 ? 'is' : 'are'} still not delivered.`, { exitCode, outstanding: after.total });
    return exitCode;
  } finally {
    // As in sync: neither may hide how the run ended (the state may be what failed).
    for (const program of locked) await state.releaseLock(program).catch(() => undefined);
    await state.close().catch(() => undefined);
  }
}

interface ProgramRetry {
  state: StateStore;
  program: string;
  unattributed: string;
  destinations: Destination[];
  clients: Map<Destination, DestinationClient>;
  rates: ReturnType<typeof parseRates>;
  rateMode: RateMode;
  rateFlag: string | undefined;
  stallTimeoutMs: number;
  now: Date;
  interrupt: AbortSignal | undefined;
  clock: Clock | undefined;
}

/** One program: its failures and its queue's leftovers, sent as one run of that program. */
async function retryProgram(ctx: ProgramRetry): Promise<{ reports: Map<Destination, DestinationReport>; superseded: StoredDelivery[]; left: number }> {
  const { state, interrupt } = ctx;
  const runId = await state.startRun('retry', ctx.program, ctx.now);
  const queue = state.queue(ctx.program);
  const engine = createEngine({ queue, runId, clients: ctx.clients, rates: ctx.rates, stallTimeoutMs: ctx.stallTimeoutMs, ratesGiven: ratesGiven(ctx.rateFlag), rateMode: ctx.rateMode, ...(ctx.clock ? { clock: ctx.clock } : {}) });
  const stop = (): void => engine.stop();
  let reports: Map<Destination, DestinationReport>;
  let resend: StoredDelivery[] = [];
  let superseded: StoredDelivery[] = [];
  // From here on the run is recorded `running`: whatever fails (the state itself included) ends it `failed`.
  try {
    const retryable: StoredDelivery[] = [];
    for await (const row of state.retryable(ctx.destinations, ctx.program, ctx.unattributed)) retryable.push(row);
    ({ resend, superseded } = await requeueRetries(state, queue, retryable, runId, ctx.now));
    interrupt?.addEventListener('abort', stop, { once: true });
    await engine.start();
    // Nothing is planned: the senders drain what the queue holds, and finish.
    reports = await engine.finish();
  } catch (error) {
    engine.stop(0);
    await engine.finish().catch(() => undefined);
    await recordRunEnd(state, runId, interrupt?.aborted ? 'interrupted' : 'failed', { retried: resend.length });
    throw error;
  } finally {
    interrupt?.removeEventListener('abort', stop);
  }
  const counts = { retried: 0, superseded: superseded.length, sent: 0, failed: 0, dead: 0 };
  for (const report of reports.values()) {
    counts.sent += report.sent;
    counts.failed += report.failed;
    counts.dead += report.dead;
  }
  // What went out: the deliveries put back now, and whatever an interrupted run had left in the queue.
  counts.retried = counts.sent + counts.failed + counts.dead;
  const status = interrupt?.aborted ? 'interrupted' : counts.failed + counts.dead > 0 ? 'failed' : 'succeeded';
  let left: number;
  try {
    left = interrupt?.aborted ? await waitingIn(queue, ctx.destinations) : 0;
    await state.finishRun(runId, status, counts, new Date());
  } catch (error) {
    await recordRunEnd(state, runId, interrupt?.aborted ? 'interrupted' : 'failed', counts);
    throw error;
  }
  return { reports, superseded, left };
}

function mergeReports(a: DestinationReport | undefined, b: DestinationReport): DestinationReport {
  if (!a) return b;
  return {
    ...b,
    sent: a.sent + b.sent,
    failed: a.failed + b.failed,
    dead: a.dead + b.dead,
    retries: a.retries + b.retries,
    startedAt: a.startedAt,
    ...(a.stalled || b.stalled ? { stalled: [a.stalled, b.stalled].filter(Boolean).join('; ') } : {}),
  };
}

/** The counts of these programs only. */
async function* inPrograms(counts: AsyncIterable<ProblemCount>, programs: ReadonlySet<string>): AsyncGenerator<ProblemCount> {
  for await (const count of counts) if (count.programId !== null && programs.has(count.programId)) yield count;
}

function renderRetry(programs: readonly string[], reports: Map<Destination, DestinationReport>, superseded: readonly StoredDelivery[], after: Outstanding): string {
  let resent = 0;
  for (const report of reports.values()) resent += report.sent + report.failed + report.dead;
  let sent = 0;
  for (const report of reports.values()) sent += report.sent;
  const lines = [`referral-sync retry: ${plural(resent, 'delivery', 'deliveries')} retried, ${sent.toLocaleString('en-US')} went through (program${programs.length === 1 ? '' : 's'} ${programs.join(', ')})`];
  if (superseded.length > 0) {
    lines.push(`  ${plural(superseded.length, 'refused identify', 'refused identifies')} not resent: newer traits were acknowledged since (status lists them as superseded)`);
    for (const row of superseded) lines.push(`    ${DESTINATION_LABELS[row.destination].padEnd(12)} ${row.userId}`);
  }
  for (const [destination, report] of reports) {
    lines.push(`  ${DESTINATION_LABELS[destination].padEnd(12)} sent ${report.sent}, failed ${report.failed}, dead ${report.dead}`);
  }
  const outstanding = renderOutstanding('Still not delivered after this retry:', after, { programs: programs.length > 1 });
  if (outstanding.length > 0) lines.push('', ...outstanding);
  lines.push('');
  return `${joinLines(lines)}\n`;
}
