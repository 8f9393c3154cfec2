import type { Destination } from '../config/defaults.js';
import { issuedGeneration, type AccountOperation, type AccountRef, type DeliveryRef, type GenerationRef, type IdentityRef, type IssuedGeneration, type Operation, type PlanItem } from '../plan/types.js';
import type { StateStore, StoredAccount, StoredDelivery, StoredIdentity } from '../state/store.js';
import type { DeliveryQueue, ReclaimableQueue } from '../state/store.js';

/** What choosing retries needs from the state. */
export type RetrySource = Pick<StateStore, 'identities' | 'accounts' | 'generations' | 'markSuperseded'>;

/** Where chosen retries go: the program's durable queue. */
export type RetryTarget = Pick<DeliveryQueue, 'requeue'>;

export const SUPERSEDED_REASON = 'superseded: newer traits were acknowledged for this person since, so these are not sent';
export const ACCOUNT_SUPERSEDED_REASON = 'superseded: newer traits were acknowledged for this account since, so these are not sent';

/** People whose acknowledged traits are read at once: one bulk read per this many refused identifies. */
const IDENTITY_READ_CHUNK = 1_000;

/**
 * Which stored deliveries to send again. `retry` reads no source, so it cannot tell whether what failed is still
 * true; it drops what it can tell is not. A refused identify is superseded, never resent, when newer traits were
 * acknowledged for the same person since (resending would overwrite them and become the diff baseline), when a
 * newer identify of that person was planned since (a later generation), or when a newer refused identify of that
 * person is being resent with it. The same holds for an operation that carries an account's traits (a Customer.io
 * object, a Segment group call carrying them). A membership is always resent; one an older version stored carrying
 * account traits older than those acknowledged since carries the newer ones. Rows come oldest first.
 */
export async function selectRetries(
  state: Pick<RetrySource, 'identities' | 'accounts'> & Partial<Pick<RetrySource, 'generations'>>,
  rows: readonly StoredDelivery[],
): Promise<{ resend: RetryChoice[]; superseded: StoredDelivery[]; supersededAccounts: StoredDelivery[] }> {
  const acknowledged = await acknowledgedTraits(state, rows);
  const acknowledgedAccounts = await acknowledgedAccountTraits(state, rows);
  const newest = await newestGenerations(state, rows);
  const superseded: StoredDelivery[] = [];
  const supersededAccounts: StoredDelivery[] = [];
  const latestIdentify = new Map<string, StoredDelivery>();
  const latestTraits = new Map<string, StoredDelivery>();
  const resend: RetryChoice[] = [];
  for (const row of rows) {
    const carried = accountTraitsOf(row);
    if (carried !== undefined) {
      const account = accountKey(row.destination, carried.operation.accountId);
      const newer = acknowledgedAccounts.get(account);
      const replaced = replacedSince(newer, carried.hash, row.updatedAt ?? '');
      if (carried.operation.membership) {
        resend.push(replaced && newer && newer.hash !== carried.hash ? { ...row, operation: withAccountTraits(carried.operation, newer) } : row);
        continue;
      }
      if (replaced || outgenerated(newest, carried.operation)) {
        supersededAccounts.push(row);
        continue;
      }
      const earlier = latestTraits.get(account);
      if (earlier) supersededAccounts.push(earlier);
      latestTraits.set(account, row);
      continue;
    }
    if (row.kind !== 'identify' || row.payload === null) {
      resend.push(row);
      continue;
    }
    const operation = JSON.parse(row.payload) as Operation;
    const hash = operation.kind === 'identify' ? operation.traitsHash : undefined;
    const person = personKey(row);
    if (replacedSince(acknowledged.get(person), hash, row.updatedAt ?? '') || outgenerated(newest, operation)) {
      superseded.push(row);
      continue;
    }
    const earlier = latestIdentify.get(person);
    if (earlier) superseded.push(earlier);
    latestIdentify.set(person, row);
  }
  resend.push(...latestIdentify.values(), ...latestTraits.values());
  return { resend, superseded, supersededAccounts };
}

/** Whether a newer operation carrying the same person's or account's traits was planned since this one. */
function outgenerated(newest: ReadonlyMap<string, IssuedGeneration>, operation: Operation): boolean {
  const issued = issuedGeneration(operation);
  if (issued === undefined) return false;
  const latest = newest.get(generationKey(issued));
  return latest !== undefined && latest.key !== issued.key && latest.generation > issued.generation;
}

/** The newest generation of every person and account with a stored traits operation among `rows`, read in bulk. */
async function newestGenerations(state: Partial<Pick<RetrySource, 'generations'>>, rows: readonly StoredDelivery[]): Promise<Map<string, IssuedGeneration>> {
  const newest = new Map<string, IssuedGeneration>();
  if (state.generations === undefined) return newest;
  const refs = new Map<string, GenerationRef>();
  for (const row of rows) {
    if ((row.kind !== 'identify' && row.kind !== 'object' && row.kind !== 'group') || row.payload === null) continue;
    const issued = issuedGeneration(JSON.parse(row.payload) as Operation);
    if (issued) refs.set(generationKey(issued), { destination: issued.destination, subject: issued.subject, id: issued.id });
  }
  const list = [...refs.values()];
  for (let start = 0; start < list.length; start += IDENTITY_READ_CHUNK) {
    for (const row of await state.generations(list.slice(start, start + IDENTITY_READ_CHUNK))) newest.set(generationKey(row), row);
  }
  return newest;
}

function generationKey(ref: GenerationRef): string {
  return `${ref.destination}|${ref.subject}|${ref.id}`;
}

/** A stored delivery chosen to be sent again, with the operation to send when it is not the stored one. */
export type RetryChoice = StoredDelivery & { operation?: Operation };

/** A stored operation that carries account traits (a group call, a Customer.io object), with them; else undefined. */
function accountTraitsOf(row: StoredDelivery): { operation: AccountOperation; hash: string } | undefined {
  if ((row.kind !== 'object' && row.kind !== 'group') || row.payload === null) return undefined;
  const operation = JSON.parse(row.payload) as Operation;
  if ((operation.kind !== 'object' && operation.kind !== 'group') || !operation.accountTraits) return undefined;
  return { operation, hash: operation.accountTraits.hash };
}

/** A Segment membership resent with the account traits acknowledged since, not the older ones it was refused with. */
function withAccountTraits(operation: AccountOperation, acknowledged: StoredAccount): AccountOperation {
  return {
    ...operation,
    payload: { ...operation.payload, traits: acknowledged.traits },
    accountTraits: { traits: acknowledged.traits, hash: acknowledged.hash },
  };
}

/** Moves the chosen rows into the queue and marks the superseded ones; returns both lists. */
export async function requeueRetries(
  state: RetrySource,
  queue: RetryTarget,
  rows: readonly StoredDelivery[],
  runId: number,
  now: Date,
): Promise<{ resend: RetryChoice[]; superseded: StoredDelivery[] }> {
  const chosen = await selectRetries(state, rows);
  await state.markSuperseded(chosen.superseded, SUPERSEDED_REASON, now);
  await state.markSuperseded(chosen.supersededAccounts, ACCOUNT_SUPERSEDED_REASON, now);
  await queue.requeue(chosen.resend, runId, now);
  return { resend: chosen.resend, superseded: [...chosen.superseded, ...chosen.supersededAccounts] };
}

/** The last error of an operation an interrupted run left in the queue, while the next sync checks it. */
export const RECLAIMED_REASON = 'interrupted before it was acknowledged; the next sync or backfill sends it again if the source still shows it';
/** Why sync or backfill does not resend an earlier failed operation: what is resent must still be true. */
export const NOT_SHOWN_REASON = 'superseded: a later run read the whole source and no longer found this there, so it is not sent';

/**
 * sync/backfill, before anything is sent: what earlier runs left in the queue (a kill, a stop) is taken back into
 * the ledger as failed, with its operation. A run that reads the source sends nothing an earlier run planned as it
 * was planned: the planner plans again, from the source as this run reads it, every failed or interrupted
 * operation that still agrees with it (the same operation, so the same key and id: a failed event the source
 * still shows, an identify whose traits it still shows), and replaces the rest (DESIGN.md §6). Returns how many.
 */
export async function reclaimLeftovers(queue: Pick<ReclaimableQueue, 'reclaim'>, destinations: readonly Destination[], now: Date): Promise<number> {
  let reclaimed = 0;
  for (const destination of destinations) reclaimed += await queue.reclaim(destination, RECLAIMED_REASON, now);
  return reclaimed;
}

/**
 * sync/backfill, once the whole source was read and planned: the earlier failures it did not plan again are what
 * the source no longer shows (a trait value, a tier move that went back, a participant gone). They are marked
 * superseded, never resent; returns how many. Not after a partial read (`--quick`, a stop), which cannot tell.
 */
async function supersedeUnplanned(
  state: Pick<StateStore, 'supersedeUnplanned'>,
  programId: string,
  destinations: readonly Destination[],
  runId: number,
  now: Date,
): Promise<number> {
  return state.supersedeUnplanned(programId, destinations, runId, NOT_SHOWN_REASON, now);
}

/**
 * What a sync or backfill that read the whole source supersedes at its end (both rules below): the failed and the
 * dead deliveries of earlier runs that the source no longer shows. `met` holds the dead deliveries the planner met
 * again (`metDeadDelivery`). Returns how many.
 */
export async function supersedeAfterCompleteRead(
  state: Pick<StateStore, 'supersedeUnplanned' | 'retryable' | 'markSuperseded'>,
  programId: string,
  destinations: readonly Destination[],
  runId: number,
  met: ReadonlySet<string>,
  now: Date,
): Promise<number> {
  return (await supersedeUnplanned(state, programId, destinations, runId, now)) + (await supersedeUnplannedDead(state, programId, destinations, runId, met, now));
}

/** Adds a planned item to `met` when it is a dead delivery the source still shows (the planner skips it). */
export function metDeadDelivery(item: PlanItem, met: Set<string>): void {
  if (item.type === 'deduped' && item.status === 'dead') met.add(deliveryRefKey({ destination: item.destination, key: item.key }));
}

/** Dead rows marked superseded at once. */
const SUPERSEDE_CHUNK = 1_000;

/** Never a program id: rows from before deliveries carried their program are left alone by `supersedeUnplannedDead`. */
const NO_PROGRAM = 'referral-sync: rows of no program';

/** The ledger row a planned item names, as a set member. */
function deliveryRefKey(ref: DeliveryRef): string {
  return `${ref.destination}\u0000${ref.key}`;
}

/**
 * After a run that read the whole source: this program's dead deliveries (refused for good) that the run neither
 * planned itself nor met again while planning are marked superseded, with `NOT_SHOWN_REASON`; returns how many.
 * The planner meets every dead delivery the source still shows (it reports it as deduped, `dead`), so what it did
 * not meet is a value or a move the source no longer shows, which `retry` (it reads no source) must never send:
 * fixing the cause of a refusal and running `retry` after a sync in which the trait went back would otherwise
 * send the stale value.
 */
async function supersedeUnplannedDead(
  state: Pick<StateStore, 'retryable' | 'markSuperseded'>,
  programId: string,
  destinations: readonly Destination[],
  runId: number,
  met: ReadonlySet<string>,
  now: Date,
): Promise<number> {
  const stale: DeliveryRef[] = [];
  for await (const row of state.retryable(destinations, programId, NO_PROGRAM)) {
    // What this run planned and the destination refused is what the source shows now: kept.
    if (row.status === 'dead' && row.runId !== runId && !met.has(deliveryRefKey(row))) stale.push({ destination: row.destination, key: row.key });
  }
  for (let start = 0; start < stale.length; start += SUPERSEDE_CHUNK) await state.markSuperseded(stale.slice(start, start + SUPERSEDE_CHUNK), NOT_SHOWN_REASON, now);
  return stale.length;
}

/**
 * Whether a refused identify was replaced by a newer acknowledged one for the same person: the destination
 * acknowledged traits after this row last changed, or acknowledged these very traits.
 */
function replacedSince(acknowledged: Pick<StoredIdentity | StoredAccount, 'hash' | 'acknowledgedAt'> | undefined, traitsHash: string | undefined, refusedAt: string): boolean {
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

/** The traits acknowledged for every account with a refused operation carrying traits among `rows`, read in bulk. */
async function acknowledgedAccountTraits(state: Pick<RetrySource, 'accounts'>, rows: readonly StoredDelivery[]): Promise<Map<string, StoredAccount>> {
  const accounts = new Map<string, AccountRef>();
  for (const row of rows) {
    const carried = accountTraitsOf(row);
    if (carried) accounts.set(accountKey(row.destination, carried.operation.accountId), { destination: row.destination, accountId: carried.operation.accountId });
  }
  const refs = [...accounts.values()];
  const acknowledged = new Map<string, StoredAccount>();
  for (let start = 0; start < refs.length; start += IDENTITY_READ_CHUNK) {
    for (const account of await state.accounts(refs.slice(start, start + IDENTITY_READ_CHUNK))) acknowledged.set(accountKey(account.destination, account.accountId), account);
  }
  return acknowledged;
}

function accountKey(destination: Destination, accountId: string): string {
  return `${destination}|${accountId}`;
}

function personKey(row: { destination: Destination; userId: string }): string {
  return `${row.destination}|${row.userId}`;
}
