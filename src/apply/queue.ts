import type { Destination } from '../config/defaults.js';
import type { DeliveryRef, Operation } from '../plan/types.js';
import type { AccountWrite, DeliveryRow, IdentityWrite } from '../state/store.js';

/** An operation waiting in the durable queue, with its position. */
export interface QueuedOperation {
  seq: number;
  operation: Operation;
}

/**
 * The durable queue between the planner and the senders (DESIGN.md §8): implemented by the state, so work that
 * cannot be sent yet waits on disk, and what a killed run left is there for the next run, with the same ids.
 * Every call is one round trip (one transaction when it writes), whatever the number of operations it carries.
 */
export interface DeliveryQueue {
  readonly programId: string;
  /**
   * Appends operations as `pending` rows with their payloads, in one transaction. Positions follow the order of
   * the calls, so a caller that enqueues more than once at a time must wait for each before the next. An operation
   * that carries a generation (`issuedGeneration`) becomes its person's or account's newest, in the same
   * transaction; the one it replaces, if not settled, is superseded and leaves the queue.
   */
  enqueue(operations: readonly Operation[], runId: number, now: Date): Promise<void>;
  /** Up to `limit` pending operations of one destination after position `afterSeq`, oldest first. */
  queued(destination: Destination, afterSeq: number, limit: number): Promise<QueuedOperation[]>;
  /**
   * Outcomes, and the person and account traits they acknowledged, settle their queue entries (by seq), in one
   * transaction.
   */
  settle(entries: readonly number[], rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date, accounts?: readonly AccountWrite[]): Promise<void>;
  /** The position of the last entry queued so far (0 when none ever was). */
  lastSeq(): Promise<number>;
  /** How many operations still wait for `destination`. */
  waiting(destination: Destination): Promise<number>;
  /** Records every operation still waiting for `destination` as failed (kept for the next run); returns how many. */
  failQueued(destination: Destination, reason: string, runId: number, now: Date): Promise<number>;
  /**
   * Puts stored deliveries (failed, dead) back in the queue with their stored payload, behind what is there, in one
   * transaction; a row that carries an `operation` is queued as that instead (retry brings its traits up to date).
   */
  requeue(rows: readonly RequeuedDelivery[], runId: number, now: Date): Promise<void>;
}

/** The state's queue, as the runs that read the source use it before they start sending. */
export interface ReclaimableQueue extends DeliveryQueue {
  /**
   * Takes back what earlier runs left waiting for `destination` (a kill, a stop): the entries leave the queue and
   * their ledger rows say failed, with their operations and the run that planned them, so that a sync checks each
   * against the source before anything is sent (DESIGN.md §6). Returns how many.
   */
  reclaim(destination: Destination, reason: string, now: Date): Promise<number>;
}

/** A stored delivery to send again; `operation`, when set, replaces the operation it was stored with. */
export type RequeuedDelivery = DeliveryRef & { operation?: Operation };

/** Operations still waiting for any of these destinations: what a stopped run leaves for the next one. */
export async function waitingIn(queue: Pick<DeliveryQueue, 'waiting'>, destinations: readonly Destination[]): Promise<number> {
  let waiting = 0;
  for (const destination of destinations) waiting += await queue.waiting(destination);
  return waiting;
}
