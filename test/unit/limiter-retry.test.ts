import { describe, expect, it } from 'vitest';
import { TokenBucket, type Clock } from '../../src/apply/limiter.js';
import { backoffDelay, DEFAULT_RETRY, parseRetryAfter, validateRetryOptions, verdictForStatus } from '../../src/apply/retry.js';
import { verdictFromSdkError } from '../../src/destinations/segment.js';

/** A clock that only moves when someone sleeps: the bucket's pacing becomes exact arithmetic. */
function fakeClock(): Clock & { elapsed: () => number } {
  let now = 0;
  return {
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    elapsed: () => now,
  };
}

describe('TokenBucket', () => {
  it('paces takes to the rate, shared by every caller', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(10, 1, clock);
    await Promise.all(Array.from({ length: 21 }, () => bucket.take()));
    // One token to start, then 20 more at 10 a second.
    expect(clock.elapsed()).toBeCloseTo(2000, 0);
  });

  it('charges a cost in tokens (Segment: events per batch)', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(100, 10, clock);
    await bucket.take(250);
    expect(clock.elapsed()).toBeGreaterThanOrEqual(2480);
    expect(clock.elapsed()).toBeLessThanOrEqual(2500);
  });

  it('makes everyone wait out a pause (Retry-After)', async () => {
    const clock = fakeClock();
    const bucket = new TokenBucket(1000, 1000, clock);
    await bucket.take();
    bucket.pause(3000);
    await Promise.all([bucket.take(), bucket.take()]);
    expect(clock.elapsed()).toBeGreaterThanOrEqual(3000);
  });

  it('validates its options eagerly', () => {
    expect(() => new TokenBucket(0)).toThrow(RangeError);
    expect(() => new TokenBucket(5, 0)).toThrow(RangeError);
  });
});

describe('retry policy', () => {
  it('retries 408, 429 and 5xx and network errors; other 4xx are permanent', () => {
    expect(verdictForStatus(200, 'ok')).toEqual({ kind: 'sent' });
    for (const status of [408, 429, 500, 502, 503, 504]) expect(verdictForStatus(status, 'x').kind).toBe('retry');
    expect(verdictForStatus(undefined, 'ECONNRESET').kind).toBe('retry');
    for (const status of [400, 404, 413, 422]) expect(verdictForStatus(status, 'bad')).toEqual({ kind: 'dead', reason: 'bad' });
    expect(verdictForStatus(429, 'slow', 2000)).toEqual({ kind: 'retry', reason: 'slow', retryAfterMs: 2000, rateLimited: true });
  });

  it('backs off exponentially with jitter, within bounds', () => {
    const options = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(1, options, () => 0)).toBe(50);
    expect(backoffDelay(1, options, () => 1)).toBe(100);
    expect(backoffDelay(3, options, () => 1)).toBe(400);
    expect(backoffDelay(10, options, () => 1)).toBe(1000);
    expect(() => validateRetryOptions({ ...options, maxAttempts: 0 })).toThrow(RangeError);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter('0.5')).toBe(500);
    expect(parseRetryAfter('Wed, 21 Oct 2026 07:28:05 GMT', Date.parse('Wed, 21 Oct 2026 07:28:00 GMT'))).toBe(5000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('classifies what the Segment SDK reports', () => {
    expect(verdictFromSdkError(new Error('[400] Bad Request'))).toEqual({ kind: 'dead', wholeBatch: true, reason: 'Segment answered [400] Bad Request' });
    expect(verdictFromSdkError(new Error('[503] Service Unavailable')).kind).toBe('retry');
    expect(verdictFromSdkError(new Error('Rate limit duration exceeded')).kind).toBe('retry');
    expect(verdictFromSdkError(new Error('Flush timeout')).kind).toBe('retry');
  });
});
