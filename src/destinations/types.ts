import type { Verdict } from '../apply/retry.js';
import type { Destination } from '../config/defaults.js';
import type { Operation } from '../plan/types.js';

/** What a destination says about one operation it was given. */
export interface DeliveryOutcome {
  key: string;
  verdict: Verdict;
}

export interface CheckResult {
  destination: Destination;
  ok: boolean;
  /** One sentence for people. */
  message: string;
  /** What to do about a failure, one line (printed under the message, and as the run's preflight hint). */
  hint?: string;
  /** A failure that may pass (network error, 5xx, 429), as opposed to refused credentials. */
  transient?: boolean;
}

/**
 * A destination turns operations into outcomes, one per operation, and never throws for a single bad
 * operation. It throws `UnavailableError` only when the whole destination refuses us (bad credentials).
 * It knows nothing of sources, state or retries: the apply engine owns those.
 */
export interface DestinationClient {
  readonly name: Destination;
  /** Most operations one `send` may carry, and most bytes of their payloads together. */
  readonly maxBatch: number;
  readonly maxBatchBytes: number;
  /** How many limiter tokens sending these operations costs (events for Segment, requests for Customer.io). */
  cost(operations: readonly Operation[]): number;
  send(operations: readonly Operation[]): Promise<DeliveryOutcome[]>;
  /** Credentials and reachability; sends no data. */
  check(): Promise<CheckResult>;
  /**
   * Stops the client, waiting at most `timeoutMs` for requests in flight; anything it could not resolve comes back
   * as retryable outcomes, never lost.
   */
  close(timeoutMs?: number): Promise<DeliveryOutcome[]>;
}
