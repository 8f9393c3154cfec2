import { realClock, type Clock } from './limiter.js';

export type RateMode = 'adaptive' | 'fixed';

export interface AdaptiveRateOptions {
  /** Requests a second to start at (and the whole time in `fixed` mode). Clamped into [floor, ceiling]. */
  initial: number;
  /** Never above this (`--rate <service>=N`). */
  ceiling: number;
  /** Never below this after back-offs (default 1/s, or `initial` if lower). */
  floor?: number;
  /** `fixed`: the rate stays `initial`; answers are only counted. */
  mode: RateMode;
  clock?: Clock;
  /** How long answers must stay healthy before the rate rises (default 1 s). */
  intervalMs?: number;
  /** Added per healthy interval after the first back-off (default a tenth of `initial`, at least 1/s). */
  step?: number;
  /** The rate is multiplied by this on a 429/5xx (default 0.5). */
  decrease?: number;
  /**
   * The rate only rises when it was used: at least this share of `rate × interval` answers came back in the
   * interval (default 0.5). A rate nobody reached says nothing about what the service can take.
   */
  minUse?: number;
  /** How far back `settled()` averages (default 30 s). */
  settleWindowMs?: number;
}

export interface AdaptiveRateStats {
  healthy: number;
  throttled: number;
  /** Throttled answers that lowered the rate (the others came within the cool-down of an earlier one). */
  backoffs: number;
}

/**
 * A request rate for a service whose limit nobody publishes (Cello lookups; Customer.io, whose limit is documented
 * three ways: research/destinations.md §3.3), found the way TCP finds a link's capacity:
 * - slow start: doubles per healthy interval until the first back-off;
 * - then additive increase: `step` more per healthy interval;
 * - multiplicative decrease on a 429 or 5xx (`throttled()`), never below `floor`, once per interval however
 *   many requests in flight come back throttled together;
 * - never above `ceiling`.
 * It only computes a number and tells listeners (a limiter's `setRate`); it sends nothing and never sleeps, so a
 * Retry-After stays with the limiter (`pause`), and tests drive it with a fake clock. Pure apart from the clock.
 */
export class AdaptiveRate {
  readonly mode: RateMode;
  readonly ceiling: number;
  readonly floor: number;
  private current: number;
  private slowStart = true;
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly step: number;
  private readonly decrease: number;
  private readonly minUse: number;
  private readonly settleWindowMs: number;
  private readonly listeners: ((rate: number) => void)[] = [];
  /** Start of the current healthy interval, and the healthy answers in it. */
  private intervalStart: number;
  private healthyInInterval = 0;
  private lastBackoffAt = Number.NEGATIVE_INFINITY;
  private firstBackoffAt: number | undefined;
  /** Every rate the controller had and since when, for `settled()` (pruned to the settle window). */
  private readonly history: { at: number; rate: number }[];
  private readonly counts: AdaptiveRateStats = { healthy: 0, throttled: 0, backoffs: 0 };

  constructor(options: AdaptiveRateOptions) {
    for (const [name, value] of [['initial', options.initial], ['ceiling', options.ceiling]] as const) {
      if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} rate must be a positive number, not ${value}`);
    }
    this.mode = options.mode;
    this.clock = options.clock ?? realClock;
    this.ceiling = options.ceiling;
    this.floor = Math.min(options.floor ?? Math.min(1, options.initial), options.ceiling);
    if (!(this.floor > 0)) throw new RangeError(`floor rate must be a positive number, not ${options.floor}`);
    this.current = clamp(options.initial, this.floor, this.ceiling);
    this.intervalMs = options.intervalMs ?? 1_000;
    this.step = options.step ?? Math.max(1, options.initial / 10);
    this.decrease = options.decrease ?? 0.5;
    if (!(this.decrease > 0 && this.decrease < 1)) throw new RangeError(`decrease must be between 0 and 1, not ${this.decrease}`);
    this.minUse = options.minUse ?? 0.5;
    this.settleWindowMs = options.settleWindowMs ?? 30_000;
    this.intervalStart = this.clock.now();
    this.history = [{ at: this.intervalStart, rate: this.current }];
  }

  /** Requests a second right now. */
  get rate(): number {
    return this.current;
  }

  get stats(): Readonly<AdaptiveRateStats> {
    return { ...this.counts };
  }

  /** Called with every new rate (not with the initial one: read `rate` for that). */
  onChange(listener: (rate: number) => void): void {
    this.listeners.push(listener);
  }

  /** An answer that says nothing about overload (2xx, 3xx, a 4xx other than 429). */
  healthy(): void {
    this.counts.healthy += 1;
    if (this.mode === 'fixed') return;
    this.healthyInInterval += 1;
    const now = this.clock.now();
    const elapsed = now - this.intervalStart;
    if (elapsed < this.intervalMs) return;
    const used = this.healthyInInterval >= this.minUse * this.current * (elapsed / 1000);
    this.intervalStart = now;
    this.healthyInInterval = 0;
    if (!used || this.current >= this.ceiling) return;
    this.set(this.slowStart ? this.current * 2 : this.current + this.step, now);
  }

  /** A 429 or a 5xx: the service is at its limit. */
  throttled(): void {
    this.counts.throttled += 1;
    if (this.mode === 'fixed') return;
    const now = this.clock.now();
    // Whatever the interval had earned is void: the rate rises again only after a whole healthy interval.
    this.intervalStart = now;
    this.healthyInInterval = 0;
    // Requests sent before the last back-off come back throttled too; one back-off per interval covers them.
    if (now - this.lastBackoffAt < this.intervalMs) return;
    this.counts.backoffs += 1;
    this.lastBackoffAt = now;
    this.firstBackoffAt ??= now;
    this.slowStart = false;
    this.set(this.current * this.decrease, now);
  }

  /**
   * The rate this run settled at, for its summary: the time-weighted mean over the last `settleWindowMs` since the
   * first back-off (the rate oscillates around the service's limit), or the current rate when nothing ever pushed
   * back (then the rate is the ceiling, or still rising).
   */
  settled(): number {
    if (this.firstBackoffAt === undefined) return this.current;
    const now = this.clock.now();
    const from = Math.max(this.firstBackoffAt, now - this.settleWindowMs);
    if (now <= from) return this.current;
    let area = 0;
    for (let i = 0; i < this.history.length; i += 1) {
      const entry = this.history[i]!;
      const start = Math.max(entry.at, from);
      const end = this.history[i + 1]?.at ?? now;
      if (end > start) area += entry.rate * (end - start);
    }
    return area / (now - from);
  }

  private set(rate: number, now: number): void {
    const next = clamp(rate, this.floor, this.ceiling);
    if (next === this.current) return;
    this.current = next;
    this.history.push({ at: now, rate: next });
    // Keep what `settled()` can still need: the entry in force at the window's start and everything after.
    const keepFrom = now - this.settleWindowMs;
    while (this.history.length > 1 && this.history[1]!.at <= keepFrom) this.history.shift();
    for (const listener of this.listeners) listener(next);
  }
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
