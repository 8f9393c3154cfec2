import { describe, expect, it } from 'vitest';
import { AdaptiveRate } from '../../src/apply/adaptive-rate.js';
import { TokenBucket, type Clock } from '../../src/apply/limiter.js';
import { celloRate } from '../../src/cli/wiring/cello.js';
import { rateWindow, SlidingWindowLimiter } from '../../src/http/window-limiter.js';

/** A clock that moves only when told (or when someone sleeps on it). */
function manualClock(): Clock & { advance: (ms: number) => void } {
  let now = 0;
  return {
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    advance: (ms) => {
      now += ms;
    },
  };
}

/** `n` healthy answers spread over one interval, as a service answering at the current rate would give. */
function healthyInterval(rate: AdaptiveRate, clock: ReturnType<typeof manualClock>, ms = 1000): void {
  const n = Math.max(1, Math.ceil(rate.rate * (ms / 1000)));
  for (let i = 0; i < n; i += 1) {
    clock.advance(ms / n);
    rate.healthy();
  }
}

describe('AdaptiveRate', () => {
  it('doubles per healthy interval (slow start) up to the ceiling, never past it', () => {
    const clock = manualClock();
    const rate = new AdaptiveRate({ initial: 5, ceiling: 50, mode: 'adaptive', clock });
    const seen: number[] = [];
    rate.onChange((r) => seen.push(r));
    for (let i = 0; i < 6; i += 1) healthyInterval(rate, clock);
    expect(seen).toEqual([10, 20, 40, 50]);
    expect(rate.rate).toBe(50);
    expect(rate.settled()).toBe(50);
  });

  it('does not rise on a rate nobody used (few answers in the interval)', () => {
    const clock = manualClock();
    const rate = new AdaptiveRate({ initial: 20, ceiling: 100, mode: 'adaptive', clock });
    for (let i = 0; i < 5; i += 1) {
      clock.advance(1000);
      rate.healthy(); // one answer a second at a 20/s rate
    }
    expect(rate.rate).toBe(20);
  });

  it('halves on a 429/5xx, once per interval however many in-flight requests come back throttled, not below the floor', () => {
    const clock = manualClock();
    const rate = new AdaptiveRate({ initial: 40, ceiling: 100, floor: 8, mode: 'adaptive', clock });
    const seen: number[] = [];
    rate.onChange((r) => seen.push(r));
    for (let i = 0; i < 10; i += 1) rate.throttled();
    expect(rate.rate).toBe(20);
    clock.advance(1000);
    rate.throttled();
    clock.advance(1000);
    rate.throttled();
    clock.advance(1000);
    rate.throttled();
    expect(seen).toEqual([20, 10, 8]);
    expect(rate.stats).toEqual({ healthy: 0, throttled: 13, backoffs: 4 });
  });

  it('rises additively after the first back-off, and only after a whole healthy interval', () => {
    const clock = manualClock();
    const rate = new AdaptiveRate({ initial: 10, ceiling: 100, mode: 'adaptive', step: 2, clock });
    healthyInterval(rate, clock);
    expect(rate.rate).toBe(20);
    rate.throttled();
    expect(rate.rate).toBe(10);
    clock.advance(300);
    rate.healthy();
    clock.advance(300);
    rate.throttled(); // inside the cool-down: no second halving, but the healthy interval starts over
    expect(rate.rate).toBe(10);
    healthyInterval(rate, clock);
    expect(rate.rate).toBe(12);
    healthyInterval(rate, clock);
    expect(rate.rate).toBe(14);
  });

  it('fixed mode keeps the rate whatever the answers, and counts them', () => {
    const clock = manualClock();
    const rate = new AdaptiveRate({ initial: 5, ceiling: 50, mode: 'fixed', clock });
    const seen: number[] = [];
    rate.onChange((r) => seen.push(r));
    for (let i = 0; i < 5; i += 1) healthyInterval(rate, clock);
    rate.throttled();
    expect(rate.rate).toBe(5);
    expect(seen).toEqual([]);
    expect(rate.settled()).toBe(5);
    expect(rate.stats.throttled).toBe(1);
  });

  it('clamps the initial rate into [floor, ceiling] and validates its options', () => {
    expect(new AdaptiveRate({ initial: 500, ceiling: 50, mode: 'adaptive' }).rate).toBe(50);
    expect(() => new AdaptiveRate({ initial: 0, ceiling: 50, mode: 'adaptive' })).toThrow(RangeError);
    expect(() => new AdaptiveRate({ initial: 5, ceiling: Number.NaN, mode: 'adaptive' })).toThrow(RangeError);
    expect(() => new AdaptiveRate({ initial: 5, ceiling: 50, mode: 'adaptive', decrease: 1 })).toThrow(RangeError);
  });

  it.each([10, 20, 80])('settles near a hidden limit of %i/s with few throttled answers (simulated service metered per second)', (limit) => {
    const clock = manualClock();
    const rate = new AdaptiveRate({ initial: 5, ceiling: 200, mode: 'adaptive', clock });
    // The service: a bucket of one second's worth of requests, refilled at `limit`/s (as test/fakes/http.ts).
    let serviceTokens = limit;
    let credit = 0;
    let sent = 0;
    let refused = 0;
    const tickMs = 10;
    for (let t = 0; t < 120_000; t += tickMs) {
      clock.advance(tickMs);
      serviceTokens = Math.min(limit, serviceTokens + (limit * tickMs) / 1000);
      credit += (rate.rate * tickMs) / 1000;
      while (credit >= 1) {
        credit -= 1;
        sent += 1;
        if (serviceTokens >= 1) {
          serviceTokens -= 1;
          rate.healthy();
        } else {
          refused += 1;
          rate.throttled();
        }
      }
    }
    // Measured: 10.1, 19.0 and 70.2 with 1.4 %, 0.4 % and 0.05 % refused.
    expect(rate.settled()).toBeGreaterThanOrEqual(0.75 * limit);
    expect(rate.settled()).toBeLessThanOrEqual(1.1 * limit);
    expect(refused / sent).toBeLessThan(0.03);
  });
});

describe('setRate', () => {
  it('TokenBucket: paces at the new rate from the moment it is set, keeping what was earned', async () => {
    const clock = manualClock();
    const bucket = new TokenBucket(10, 1, clock);
    await Promise.all(Array.from({ length: 11 }, () => bucket.take()));
    expect(clock.now()).toBeCloseTo(1000, 0);
    bucket.setRate(100);
    expect(bucket.rate).toBe(100);
    await Promise.all(Array.from({ length: 100 }, () => bucket.take()));
    expect(clock.now()).toBeCloseTo(2000, 0);
    expect(() => bucket.setRate(0)).toThrow(RangeError);
  });

  it('an AdaptiveRate drives a TokenBucket through onChange', async () => {
    const clock = manualClock();
    const bucket = new TokenBucket(5, 1, clock);
    const rate = new AdaptiveRate({ initial: 5, ceiling: 40, mode: 'adaptive', clock });
    rate.onChange((r) => bucket.setRate(r));
    // Every take is answered healthy at once: the bucket is the only thing pacing.
    let taken = 0;
    while (clock.now() < 10_000) {
      await bucket.take();
      taken += 1;
      rate.healthy();
    }
    expect(bucket.rate).toBe(40);
    // 5 + 10 + 20 in the first three seconds, then 40/s: far above the 50 a fixed 5/s would give.
    expect(taken).toBeGreaterThan(300);
  });

  it('SlidingWindowLimiter: a rate as a short window, fractions exact, never a whole second in one burst', async () => {
    expect(rateWindow('rate', 5)).toEqual({ name: 'rate', limit: 1, windowMs: 200 });
    expect(rateWindow('rate', 50)).toEqual({ name: 'rate', limit: 10, windowMs: 200 });
    expect(rateWindow('rate', 2.5)).toEqual({ name: 'rate', limit: 1, windowMs: 400 });
    expect(() => rateWindow('rate', 0)).toThrow(RangeError);
    let now = 0;
    const clock: Clock = { now: () => now, sleep: async (ms) => void (now += ms) };
    const limiter = new SlidingWindowLimiter([rateWindow('rate', 5)], clock);
    for (let i = 0; i < 6; i += 1) await limiter.take();
    expect(now).toBeGreaterThanOrEqual(1000);
    expect(now).toBeLessThan(1010);
    limiter.setRate('rate', 50);
    const start = now;
    for (let i = 0; i < 100; i += 1) await limiter.take();
    // 100 at 50/s: about two seconds (the first window is still partly taken by the 5/s requests).
    expect(now - start).toBeGreaterThanOrEqual(1790);
    expect(now - start).toBeLessThanOrEqual(2010);
  });
});

describe('celloRate (--rate, --rate-mode)', () => {
  it('adaptive by default: from 5/s up to --rate cello=N, else the default ceiling of 50; fixed: exactly --rate cello=N, else 5/s', () => {
    expect(celloRate(undefined, undefined)).toEqual({ mode: 'adaptive', initial: 5, ceiling: 50 });
    expect(celloRate('segment=100', 'adaptive')).toEqual({ mode: 'adaptive', initial: 5, ceiling: 50 });
    expect(celloRate('cello=200,segment=100', undefined)).toEqual({ mode: 'adaptive', initial: 5, ceiling: 200 });
    expect(celloRate('cello=5', undefined)).toEqual({ mode: 'adaptive', initial: 5, ceiling: 5 });
    expect(celloRate('cello=2', undefined)).toEqual({ mode: 'adaptive', initial: 2, ceiling: 2 });
    expect(celloRate(undefined, 'fixed')).toEqual({ mode: 'fixed', initial: 5, ceiling: 5 });
    expect(celloRate('cello=12', 'fixed')).toEqual({ mode: 'fixed', initial: 12, ceiling: 12 });
    expect(() => celloRate(undefined, 'fast')).toThrow('--rate-mode must be adaptive or fixed, not "fast".');
  });
});
