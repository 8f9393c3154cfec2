import type { Destination } from '../config/defaults.js';
import type { Operation } from '../plan/types.js';
import type { DeliveryRow, IdentityWrite } from '../state/store.js';

/** An operation waiting in the durable queue, with its position. */
export interface QueuedOperation {
  seq: number;
  operation: Operation;
}

/**
 * The durable queue between the planner and the senders (DESIGN.md §8): implemented by the state, so work that
 * cannot be sent yet waits on disk, and what a killed run left is there for the next run, with the same ids.
 */
export interface DeliveryQueue {
  /** Appends operations as `pending` rows with their payloads, in one transaction. */
  enqueue(operations: readonly Operation[], runId: number, now: Date): void;
  /** Up to `limit` pending operations of one destination after position `afterSeq`, oldest first. */
  queued(destination: Destination, afterSeq: number, limit: number): QueuedOperation[];
  /** Outcomes and the traits they acknowledged settle their queue entries (by seq), in one transaction. */
  settle(entries: readonly number[], rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date): void;
  /** The position of the last entry queued so far (0 when none ever was). */
  lastSeq(): number;
  /** How many operations still wait for `destination`. */
  waiting(destination: Destination): number;
  /** Records every operation still waiting for `destination` as failed (kept for the next run); returns how many. */
  failQueued(destination: Destination, reason: string, runId: number, now: Date): number;
}
