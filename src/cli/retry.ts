import { hostname } from 'node:os';
import { ApplyEngine } from '../apply/engine.js';
import { TokenBucket } from '../apply/limiter.js';
import { DEFAULT_RETRY } from '../apply/retry.js';
import { DESTINATION_LABELS } from '../config/defaults.js';
import { ExitCode } from '../errors.js';
import type { Operation } from '../plan/types.js';
import { openSqliteStateForWriting } from '../state/sqlite.js';
import { concurrencyFor, createDestinationClients, parseRates, type DestinationFlags } from './destinations.js';
import type { Output } from './output.js';
import { resolveCommon, type CommonFlags, type Env } from './settings.js';

export interface RetryFlags extends CommonFlags, DestinationFlags {
  campaign?: string;
}

/** `referral-sync retry`: resend failed and dead deliveries exactly as they were first sent (same ids). */
export async function runRetry(flags: RetryFlags, env: Env, cwd: string, output: Output, now: Date): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const clients = createDestinationClients(common.destinations, flags, env);
  const rates = parseRates(flags.rate);
  const programId = flags.campaign ?? env.GROWSURF_CAMPAIGN_ID ?? 'default';
  const state = openSqliteStateForWriting(common.statePath);
  let locked = false;
  try {
    state.acquireLock(programId, `retry on ${hostname()}`, now);
    locked = true;
    const runId = state.startRun('retry', programId, now);
    const engine = new ApplyEngine({
      ledger: state,
      runId,
      clients,
      limiters: new Map([...clients.keys()].map((d) => [d, new TokenBucket(rates[d], Math.max(1, Math.ceil(rates[d] / 10)))])),
      retry: DEFAULT_RETRY,
      concurrency: new Map([...clients].map(([d, c]) => [d, concurrencyFor(c)])),
    });
    // Read the rows first: the engine rewrites their status as it goes.
    const operations = [...state.retryable(common.destinations)].map((row) => JSON.parse(row.payload!) as Operation);
    for (const operation of operations) await engine.submit(operation);
    let reports;
    try {
      reports = await engine.finish();
    } catch (error) {
      state.finishRun(runId, 'failed', { retried: operations.length }, new Date());
      throw error;
    }
    const totals = { retried: operations.length, sent: 0, failed: 0, dead: 0 };
    const lines = [`referral-sync retry: ${operations.length} deliver${operations.length === 1 ? 'y' : 'ies'} resent`];
    for (const [destination, report] of reports) {
      totals.sent += report.sent;
      totals.failed += report.failed;
      totals.dead += report.dead;
      lines.push(`  ${DESTINATION_LABELS[destination].padEnd(12)} sent ${report.sent}, failed ${report.failed}, dead ${report.dead}`);
    }
    state.finishRun(runId, totals.failed + totals.dead > 0 ? 'failed' : 'succeeded', totals, new Date());
    if (operations.length === 0) lines.push('  nothing to retry: no failed or dead deliveries in the state.');
    output.result(`${lines.join('\n')}\n`);
    return totals.failed + totals.dead > 0 ? ExitCode.failedDeliveries : ExitCode.ok;
  } finally {
    if (locked) state.releaseLock(programId);
    state.close();
  }
}
