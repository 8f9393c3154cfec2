/**
 * The pace of something over the last few seconds, and the time left at that pace. A run's pace changes (a
 * destination slows down on 429s, reading speeds up once the plan's first identities are cached), and its total
 * may grow while it runs, so an ETA from the average since the start, or from a total fixed at the start, lies.
 * This keeps samples of the last `windowMs` and goes by them only.
 */
export class RecentRate {
  private readonly samples: { at: number; done: number }[] = [];

  constructor(
    /** Milliseconds, monotonic (performance.now by default; tests pass their own). */
    private readonly clock: () => number = () => performance.now(),
    private readonly windowMs = 20_000,
    /** A rate over less time than this is noise (one chunk of a file, one batch of a destination). */
    private readonly minSpanMs = 2_000,
  ) {}

  /** Notes how much is done now (a running count, never reset; a new count takes a new RecentRate). */
  observe(done: number): void {
    const at = this.clock();
    const last = this.samples.at(-1);
    if (last && last.at === at) {
      last.done = done;
      return;
    }
    this.samples.push({ at, done });
    // Keep the newest sample at or before the window's start, so the window is covered whole.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - this.windowMs) this.samples.shift();
  }

  /** Units a second over the recent window; undefined until the samples span `minSpanMs`. */
  perSecond(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at - first.at < this.minSpanMs) return undefined;
    return Math.max(0, last.done - first.done) / ((last.at - first.at) / 1000);
  }

  /** Seconds left for `remaining` more at the recent rate; undefined when there is no pace to go by (none yet, or stopped). */
  secondsLeft(remaining: number): number | undefined {
    if (remaining <= 0) return 0;
    const rate = this.perSecond();
    return rate === undefined || rate === 0 ? undefined : remaining / rate;
  }
}
