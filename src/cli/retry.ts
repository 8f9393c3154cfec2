import { hostname } from 'node:os';
import { ApplyEngine } from '../apply/engine.js';
import { TokenBucket } from '../apply/limiter.js';
import { DEFAULT_RETRY } from '../apply/retry.js';
import { DESTINATION_LABELS } from '../config/defaults.js';
import { ExitCode } from '../errors.js';
import type { Operation } from '../plan/types.js';
import { openSqliteStateForWriting, type SqliteState } from '../state/sqlite.js';
import type { StoredDelivery } from '../state/store.js';
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
    const { operations, superseded } = selectRetries(state, [...state.retryable(common.destinations)]);
    state.markSuperseded(superseded, 'superseded: newer traits were acknowledged for this person since, so these are not sent', now);
    for (const operation of operations) await engine.submit(operation);
    let reports;
    try {
      reports = await engine.finish();
    } catch (error) {
      state.finishRun(runId, 'failed', { retried: operations.length }, new Date());
      throw error;
    }
    const totals = { retried: operations.length, superseded: superseded.length, sent: 0, failed: 0, dead: 0 };
    const lines = [`referral-sync retry: ${operations.length} deliver${operations.length === 1 ? 'y' : 'ies'} resent`];
    if (superseded.length > 0) {
      lines.push(`  ${superseded.length} refused identif${superseded.length === 1 ? 'y' : 'ies'} not resent: newer traits were acknowledged since (status lists them as superseded)`);
      for (const row of superseded) lines.push(`    ${DESTINATION_LABELS[row.destination].padEnd(12)} ${row.userId}`);
    }
    for (const [destination, report] of reports) {
      totals.sent += report.sent;
      totals.failed += report.failed;
      totals.dead += report.dead;
      lines.push(`  ${DESTINATION_LABELS[destination].padEnd(12)} sent ${report.sent}, failed ${report.failed}, dead ${report.dead}`);
    }
    state.finishRun(runId, totals.failed + totals.dead > 0 ? 'failed' : 'succeeded', totals, new Date());
    if (operations.length === 0 && superseded.length === 0) lines.push('  nothing to retry: no failed or dead deliveries in the state.');
    output.result(`${lines.join('\n')}\n`);
    return totals.failed + totals.dead > 0 ? ExitCode.failedDeliveries : ExitCode.ok;
  } finally {
    if (locked) state.releaseLock(programId);
    state.close();
  }
}

/**
 * What `retry` resends. A refused identify is superseded, and never resent, when newer traits were acknowledged
 * for the same person since (resending it would overwrite them and become the diff baseline), or when an
 * even newer refused identify for that person is being resent in this retry.
 */
function selectRetries(state: SqliteState, rows: StoredDelivery[]): { operations: Operation[]; superseded: StoredDelivery[] } {
  const superseded: StoredDelivery[] = [];
  const latestIdentify = new Map<string, { row: StoredDelivery; operation: Operation }>();
  const operations: Operation[] = [];
  for (const row of rows) {
    const operation = JSON.parse(row.payload!) as Operation;
    if (operation.kind !== 'identify') {
      operations.push(operation);
      continue;
    }
    if (state.identifySuperseded(row.destination, row.userId, operation.traitsHash, row.updatedAt ?? '')) {
      superseded.push(row);
      continue;
    }
    // Rows come oldest first: a later refused identify of the same person replaces an earlier one.
    const person = `${row.destination}|${row.userId}`;
    const earlier = latestIdentify.get(person);
    if (earlier) superseded.push(earlier.row);
    latestIdentify.set(person, { row, operation });
  }
  for (const { operation } of latestIdentify.values()) operations.push(operation);
  return { operations, superseded };
}
