import type { Destination } from '../config/defaults.js';
import type { Operation } from '../plan/types.js';
import type { StoredDelivery } from '../state/store.js';

/** What choosing retries needs from the state. */
export interface RetrySource {
  identifySuperseded(destination: Destination, userId: string, traitsHash: string | undefined, refusedAt: string): boolean;
  markSuperseded(rows: readonly { destination: Destination; key: string }[], reason: string, now: Date): void;
}

/** Where chosen retries go: the program's durable queue. */
export interface RetryTarget {
  requeue(rows: readonly Pick<StoredDelivery, 'destination' | 'key'>[], runId: number, now: Date): void;
}

export const SUPERSEDED_REASON = 'superseded: newer traits were acknowledged for this person since, so these are not sent';

/**
 * Which stored deliveries to send again. A refused identify is superseded, never resent, when newer traits were
 * acknowledged for the same person since (resending would overwrite them and become the diff baseline), or when
 * a newer refused identify of that person is being resent with it. Rows come oldest first.
 */
export function selectRetries(state: RetrySource, rows: readonly StoredDelivery[]): { resend: StoredDelivery[]; superseded: StoredDelivery[] } {
  const superseded: StoredDelivery[] = [];
  const latestIdentify = new Map<string, StoredDelivery>();
  const resend: StoredDelivery[] = [];
  for (const row of rows) {
    if (row.kind !== 'identify' || row.payload === null) {
      resend.push(row);
      continue;
    }
    const operation = JSON.parse(row.payload) as Operation;
    const hash = operation.kind === 'identify' ? operation.traitsHash : undefined;
    if (state.identifySuperseded(row.destination, row.userId, hash, row.updatedAt ?? '')) {
      superseded.push(row);
      continue;
    }
    const person = `${row.destination}|${row.userId}`;
    const earlier = latestIdentify.get(person);
    if (earlier) superseded.push(earlier);
    latestIdentify.set(person, row);
  }
  resend.push(...latestIdentify.values());
  return { resend, superseded };
}

/** Moves the chosen rows into the queue and marks the superseded ones; returns both lists. */
export function requeueRetries(
  state: RetrySource,
  queue: RetryTarget,
  rows: readonly StoredDelivery[],
  runId: number,
  now: Date,
): { resend: StoredDelivery[]; superseded: StoredDelivery[] } {
  const chosen = selectRetries(state, rows);
  state.markSuperseded(chosen.superseded, SUPERSEDED_REASON, now);
  queue.requeue(chosen.resend, runId, now);
  return chosen;
}

/** sync/backfill: what earlier runs of this program recorded failed (transient, retries used up) goes out again. */
export function requeueEarlierFailures(
  state: RetrySource & { failedDeliveries(programId: string, destinations: readonly Destination[]): StoredDelivery[] },
  queue: RetryTarget & { readonly programId: string },
  destinations: readonly Destination[],
  runId: number,
  now: Date,
): number {
  return requeueRetries(state, queue, state.failedDeliveries(queue.programId, destinations), runId, now).resend.length;
}
