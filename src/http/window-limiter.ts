import { realClock, type Clock } from '../apply/limiter.js';

export interface WindowPolicy {
  name: string;
  /** At most `limit` requests in any `windowMs`. */
  limit: number;
  windowMs: number;
}

/** The longest burst a rate policy lets out at once, as time at that rate. */
const RATE_BURST_MS = 200;

/**
 * `perSecond` as a sliding window of at most 200 ms worth of requests (at least one): 5/s is 1 per 200 ms, 50/s
 * is 10 per 200 ms, 2.5/s is 1 per 400 ms. Exact for fractional rates, and never a whole second's worth in one
 * burst, which a service metering per second (a token bucket of one second) would answer with 429s.
 */
export function rateWindow(name: string, perSecond: number): WindowPolicy {
  if (!(perSecond > 0) || !Number.isFinite(perSecond)) throw new RangeError(`rate must be a positive number, not ${perSecond}`);
  const limit = Math.max(1, Math.round((perSecond * RATE_BURST_MS) / 1000));
  return { name, limit, windowMs: (limit / perSecond) * 1000 };
}

/**
 * Sliding-window request limits, the shape APIs like GrowSurf's publish (30 per 5 s, 200 a minute, 10,000 an
 * hour): a request goes when every window has room. Exact over any window, unlike a token bucket whose burst
 * can double a window's count. Limits can be lowered or raised at run time from the service's headers.
 */
export class SlidingWindowLimiter {
  private readonly sent: number[] = [];
  private readonly policies: WindowPolicy[];
  private pausedUntil = 0;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    policies: WindowPolicy[],
    private readonly clock: Clock = realClock,
  ) {
    for (const p of policies) {
      if (!(p.limit >= 1) || !(p.windowMs > 0)) throw new RangeError(`bad window policy ${p.name}: ${p.limit} per ${p.windowMs} ms`);
    }
    this.policies = policies.map((p) => ({ ...p }));
  }

  take(): Promise<void> {
    const turn = this.queue.then(() => this.takeNow());
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.now() + ms);
  }

  setLimit(name: string, limit: number): void {
    const policy = this.policies.find((p) => p.name === name);
    if (policy && limit >= 1) policy.limit = Math.floor(limit);
  }

  /**
   * Paces the policy `name` (added if missing) at `perSecond` requests a second, fractions included, as a short
   * window (see `rateWindow`). An adaptive rate moves it while requests are waiting; a waiter already asleep
   * wakes at its old time and then goes by the new window.
   */
  setRate(name: string, perSecond: number): void {
    const next = rateWindow(name, perSecond);
    const policy = this.policies.find((p) => p.name === name);
    if (policy) Object.assign(policy, next);
    else this.policies.push(next);
  }

  limitOf(name: string): number | undefined {
    return this.policies.find((p) => p.name === name)?.limit;
  }

  /** How long a request made now would wait, and for which policy (to tell people, or to refuse). */
  delay(): { ms: number; policy: string | undefined } {
    const now = this.clock.now();
    let ms = Math.max(0, this.pausedUntil - now);
    let policy: string | undefined = ms > 0 ? 'pause' : undefined;
    for (const p of this.policies) {
      if (this.countSince(now - p.windowMs) >= p.limit) {
        // The oldest request in this window that must age out before there is room.
        const oldest = this.sent[this.sent.length - p.limit]!;
        const wait = oldest + p.windowMs - now + 1;
        if (wait > ms) {
          ms = wait;
          policy = p.name;
        }
      }
    }
    return { ms, policy };
  }

  private async takeNow(): Promise<void> {
    for (;;) {
      const longest = Math.max(...this.policies.map((p) => p.windowMs));
      const now = this.clock.now();
      while (this.sent.length > 0 && this.sent[0]! <= now - longest) this.sent.shift();
      const { ms } = this.delay();
      if (ms <= 0) {
        this.sent.push(now);
        return;
      }
      await this.clock.sleep(ms);
    }
  }

  private countSince(since: number): number {
    // `sent` is sorted: binary search for the first timestamp after `since`.
    let lo = 0;
    let hi = this.sent.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sent[mid]! > since) hi = mid;
      else lo = mid + 1;
    }
    return this.sent.length - lo;
  }
}
