/**
 * What every wait of the limiters, the backoffs and the Retry-After pauses goes through, so that it can be
 * replaced: the real clock in production; in tests a fake one, driven by hand in unit tests, or shared by an
 * in-process CLI run (RunEnvironment.clock) and its fake services, so a rate window passes without waiting it out.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (only differences matter). */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * A token bucket shared by every worker of one destination (DESIGN.md §8): `rate` tokens a second, at most
 * `burst` saved up. A 429's Retry-After pauses the whole bucket, so no worker keeps hammering a service that
 * asked everyone to wait.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private currentRate: number;
  private currentBurst: number;
  private pausedUntil = 0;
  /** Waiters are served in order, so a big request cannot be starved by small ones. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    rate: number,
    burst: number = Math.max(1, rate),
    private readonly clock: Clock = realClock,
  ) {
    checkRate(rate, burst);
    this.currentRate = rate;
    this.currentBurst = burst;
    // Start empty: the first second of a run is paced like every other, so a limiter set to the service's
    // limit never overshoots it in the service's first window.
    this.tokens = 1;
    this.last = clock.now();
  }

  /** Tokens a second, as last set. */
  get rate(): number {
    return this.currentRate;
  }

  get burst(): number {
    return this.currentBurst;
  }

  /**
   * A new pace from now on (an adaptive rate moving it). Tokens earned so far are kept at the old rate, so a
   * change never hands out a burst nor takes back what was already earned. The burst stays unless given.
   * A waiter already asleep wakes at its old time and then takes at the new rate.
   */
  setRate(rate: number, burst: number = this.currentBurst): void {
    checkRate(rate, burst);
    this.refill();
    this.currentRate = rate;
    this.currentBurst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }

  /** Resolves when `cost` tokens were taken. A cost above the burst is taken in burst-size steps. */
  take(cost = 1): Promise<void> {
    const turn = this.queue.then(() => this.takeNow(cost));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** Nobody takes a token before `ms` from now (Retry-After). Longer pauses win over shorter ones. */
  pause(ms: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.now() + ms);
  }

  private async takeNow(cost: number): Promise<void> {
    let remaining = cost;
    while (remaining > 0) {
      const wait = this.pausedUntil - this.clock.now();
      if (wait > 0) {
        await this.clock.sleep(wait);
        continue;
      }
      this.refill();
      const step = Math.min(remaining, this.currentBurst);
      if (this.tokens >= step) {
        this.tokens -= step;
        remaining -= step;
        continue;
      }
      await this.clock.sleep(((step - this.tokens) / this.currentRate) * 1000);
    }
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.currentBurst, this.tokens + ((now - this.last) / 1000) * this.currentRate);
    this.last = now;
  }
}

function checkRate(rate: number, burst: number): void {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`rate must be a positive number, not ${rate}`);
  if (!(burst >= 1)) throw new RangeError(`burst must be at least 1, not ${burst}`);
}
