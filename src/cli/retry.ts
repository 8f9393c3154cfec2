import { hostname } from 'node:os';
import type { Clock } from '../apply/limiter.js';
import { requeueRetries } from '../apply/retry-selection.js';
import { DESTINATION_LABELS } from '../config/defaults.js';
import { ExitCode } from '../errors.js';
import { openSqliteStateForWriting } from '../state/sqlite.js';
import { createEngine, interruptedExitCode, interruptedLine, parseStallTimeout, stalledLines } from './delivery.js';
import { createDestinationClients, parseRateMode, parseRates, ratesGiven, type DestinationFlags } from './destinations.js';
import type { Output } from './output.js';
import { resolveCommon, type CommonFlags, type Env } from './settings.js';

export interface RetryFlags extends CommonFlags, DestinationFlags {
  campaign?: string;
  stallTimeout?: string;
}

/**
 * `referral-sync retry`: failed and dead deliveries go back into the durable queue (a refused identify that
 * newer acknowledged traits replaced is dropped as superseded) and are sent exactly as they were planned, same ids.
 */
export async function runRetry(flags: RetryFlags, env: Env, cwd: string, output: Output, now: Date, interrupt?: AbortSignal, clock?: Clock): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const rates = parseRates(flags.rate);
  const stallTimeoutMs = parseStallTimeout(flags.stallTimeout);
  const rateMode = parseRateMode(flags.rateMode);
  const clients = createDestinationClients(common.destinations, flags, env);
  const programId = flags.campaign ?? env.GROWSURF_CAMPAIGN_ID ?? 'default';
  const state = openSqliteStateForWriting(common.statePath);
  let locked = false;
  try {
    state.acquireLock(programId, `retry on ${hostname()}`, now);
    locked = true;
    const runId = state.startRun('retry', programId, now);
    const queue = state.queue(programId);
    const { resend, superseded } = requeueRetries(state, queue, [...state.retryable(common.destinations)], runId, now);
    const engine = createEngine({ queue, runId, clients, rates, stallTimeoutMs, ratesGiven: ratesGiven(flags.rate), rateMode, clock });
    const stop = (): void => engine.stop();
    interrupt?.addEventListener('abort', stop, { once: true });
    engine.start();
    engine.endOfPlan();
    let reports;
    try {
      reports = await engine.finish();
    } catch (error) {
      state.finishRun(runId, 'failed', { retried: resend.length }, new Date());
      throw error;
    } finally {
      interrupt?.removeEventListener('abort', stop);
    }
    const totals = { retried: resend.length, superseded: superseded.length, sent: 0, failed: 0, dead: 0 };

    for (const report of reports.values()) {
      totals.sent += report.sent;
      totals.failed += report.failed;
      totals.dead += report.dead;
    }
    if (interrupt?.aborted) {
      state.finishRun(runId, 'interrupted', totals, new Date());
      output.warn(interruptedLine(interrupt, reports, new Map(common.destinations.map((d) => [d, queue.waiting(d)]))));
      return interruptedExitCode(interrupt);
    }
    // What went out: the deliveries put back now, and whatever an interrupted run had left in the queue.
    const resent = totals.sent + totals.failed + totals.dead;
    totals.retried = resent;
    const lines = [`referral-sync retry: ${resent} deliver${resent === 1 ? 'y' : 'ies'} resent`];
    if (superseded.length > 0) {
      lines.push(`  ${superseded.length} refused identif${superseded.length === 1 ? 'y' : 'ies'} not resent: newer traits were acknowledged since (status lists them as superseded)`);
      for (const row of superseded) lines.push(`    ${DESTINATION_LABELS[row.destination].padEnd(12)} ${row.userId}`);
    }
    for (const [destination, report] of reports) {
      lines.push(`  ${DESTINATION_LABELS[destination].padEnd(12)} sent ${report.sent}, failed ${report.failed}, dead ${report.dead}`);
    }
    state.finishRun(runId, totals.failed + totals.dead > 0 ? 'failed' : 'succeeded', totals, new Date());
    if (resent === 0 && superseded.length === 0) lines.push('  nothing to retry: no failed or dead deliveries in the state.');
    output.result(`${lines.join('\n')}\n`);
    for (const line of stalledLines(reports)) output.warn(line);
    return totals.failed + totals.dead > 0 ? ExitCode.failedDeliveries : ExitCode.ok;
  } finally {
    if (locked) state.releaseLock(programId);
    state.close();
  }
}
