/**
 * Retry policy of DESIGN.md §8: transient failures (408, 429, 5xx, network) are retried with exponential
 * backoff and full jitter up to a bound; a 429 that says how long to wait does not use up an attempt; any
 * other 4xx is permanent.
 */
export type Verdict =
  | { kind: 'sent' }
  /**
   * Try again. `retryAfterMs` set: the service asked to wait (429), which costs no attempt. `rateLimited`: the
   * service said we send too fast (429), which an adaptive rate answers by slowing down.
   */
  | { kind: 'retry'; reason: string; retryAfterMs?: number; rateLimited?: boolean }
  /**
   * Refused for good: the reason is kept and only `referral-sync retry` sends it again. `wholeBatch`: the
   * request was refused as a whole (Segment 400, Customer.io v2 400), so the engine bisects it to find which.
   */
  | { kind: 'dead'; reason: string; wholeBatch?: boolean };

/**
 * 429s in a row for one request (or one operation) that say how long to wait, each of which costs no attempt.
 * Past it the request fails: a service that answers "wait 0 s" (or any wait) forever would otherwise be asked
 * forever.
 */
export const MAX_RATE_LIMIT_WAITS = 20;

export interface RetryOptions {
  /** Attempts per operation, the first included (429 with Retry-After not counted). */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Waits for 429s beyond this are not made: the operation ends failed, to be picked up by the next run. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryOptions = {
  maxAttempts: 8,
  baseDelayMs: 250,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 5 * 60_000,
};

export function validateRetryOptions(options: RetryOptions): RetryOptions {
  if (!Number.isInteger(options.maxAttempts) || options.maxAttempts < 1) throw new RangeError('maxAttempts must be a whole number ≥ 1');
  if (!(options.baseDelayMs >= 0) || !(options.maxDelayMs >= options.baseDelayMs)) throw new RangeError('delays must satisfy 0 ≤ base ≤ max');
  return options;
}

/** Backoff before attempt `attempt + 1` (attempt counts from 1): full jitter over an exponential ceiling. */
export function backoffDelay(attempt: number, options: RetryOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Classifies an HTTP status the way DESIGN.md §8 says; `undefined` status means a network error or timeout. */
export function verdictForStatus(status: number | undefined, message: string, retryAfterMs?: number): Verdict {
  if (status === undefined) return { kind: 'retry', reason: message };
  if (status >= 200 && status < 300) return { kind: 'sent' };
  if (status === 429) return retryAfterMs === undefined ? { kind: 'retry', reason: message, rateLimited: true } : { kind: 'retry', reason: message, retryAfterMs, rateLimited: true };
  if (status === 408 || status >= 500) return { kind: 'retry', reason: message };
  return { kind: 'dead', reason: message };
}

/** Parses Retry-After: delta seconds or an HTTP date. Returns milliseconds, or undefined when absent/garbled. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
