import type { Destination } from '../config/defaults.js';
import type { IdentityRef, Operation } from '../plan/types.js';
import type { StateStore, StoredDelivery, StoredIdentity } from '../state/store.js';
import type { DeliveryQueue } from './queue.js';

/** What choosing retries needs from the state. */
export type RetrySource = Pick<StateStore, 'identities' | 'markSuperseded'>;

/** Where chosen retries go: the program's durable queue. */
export type RetryTarget = Pick<DeliveryQueue, 'requeue'>;

export const SUPERSEDED_REASON = 'superseded: newer traits were acknowledged for this person since, so these are not sent';

/** People whose acknowledged traits are read at once: one bulk read per this many refused identifies. */
const IDENTITY_READ_CHUNK = 1_000;

/**
 * Which stored deliveries to send again. A refused identify is superseded, never resent, when newer traits were
 * acknowledged for the same person since (resending would overwrite them and become the diff baseline), or when
 * a newer refused identify of that person is being resent with it. Rows come oldest first.
 */
export async function selectRetries(state: Pick<RetrySource, 'identities'>, rows: readonly StoredDelivery[]): Promise<{ resend: StoredDelivery[]; superseded: StoredDelivery[] }> {
  const acknowledged = await acknowledgedTraits(state, rows);
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
    const person = personKey(row);
    if (replacedSince(acknowledged.get(person), hash, row.updatedAt ?? '')) {
      superseded.push(row);
      continue;
    }
    const earlier = latestIdentify.get(person);
    if (earlier) superseded.push(earlier);
    latestIdentify.set(person, row);
  }
  resend.push(...latestIdentify.values());
  return { resend, superseded };
}

/** Moves the chosen rows into the queue and marks the superseded ones; returns both lists. */
export async function requeueRetries(
  state: RetrySource,
  queue: RetryTarget,
  rows: readonly StoredDelivery[],
  runId: number,
  now: Date,
): Promise<{ resend: StoredDelivery[]; superseded: StoredDelivery[] }> {
  const chosen = await selectRetries(state, rows);
  await state.markSuperseded(chosen.superseded, SUPERSEDED_REASON, now);
  await queue.requeue(chosen.resend, runId, now);
  return chosen;
}

/** sync/backfill: what earlier runs of this program recorded failed (transient, retries used up) goes out again. */
export async function requeueEarlierFailures(
  state: RetrySource & Pick<StateStore, 'failedDeliveries'>,
  queue: RetryTarget & Pick<DeliveryQueue, 'programId'>,
  destinations: readonly Destination[],
  runId: number,
  now: Date,
): Promise<number> {
  const failed = await state.failedDeliveries(queue.programId, destinations);
  return (await requeueRetries(state, queue, failed, runId, now)).resend.length;
}

/**
 * Whether a refused identify was replaced by a newer acknowledged one for the same person: the destination
 * acknowledged traits after this row last changed, or acknowledged these very traits.
 */
function replacedSince(acknowledged: StoredIdentity | undefined, traitsHash: string | undefined, refusedAt: string): boolean {
  if (!acknowledged) return false;
  return acknowledged.hash === traitsHash || acknowledged.acknowledgedAt.getTime() > Date.parse(refusedAt);
}

/** The traits acknowledged for every person with a refused identify among `rows`, read in bulk. */
async function acknowledgedTraits(state: Pick<RetrySource, 'identities'>, rows: readonly StoredDelivery[]): Promise<Map<string, StoredIdentity>> {
  const people = new Map<string, IdentityRef>();
  for (const row of rows) {
    if (row.kind === 'identify' && row.payload !== null) people.set(personKey(row), { destination: row.destination, userId: row.userId });
  }
  const refs = [...people.values()];
  const acknowledged = new Map<string, StoredIdentity>();
  for (let start = 0; start < refs.length; start += IDENTITY_READ_CHUNK) {
    for (const identity of await state.identities(refs.slice(start, start + IDENTITY_READ_CHUNK))) acknowledged.set(personKey(identity), identity);
  }
  return acknowledged;
}

function personKey(row: { destination: Destination; userId: string }): string {
  return `${row.destination}|${row.userId}`;
}
