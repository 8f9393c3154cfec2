import type { Clock } from '../../src/apply/limiter.js';

/**
 * A clock whose waits take no real time, for a CLI run in-process (RunEnvironment.clock) against fake services
 * that keep their time on the same clock (FakeService.clock): a rate window, a Retry-After or a backoff passes
 * at once, and both sides still agree on how much time went by.
 *
 * Time runs with the real clock and jumps forward when someone sleeps: `sleep(ms)` resolves (after the I/O
 * waiting to be read) at a `now()` at least `ms` later than when it was called, never earlier, so every "at
 * most N per window" still holds in this clock's time. Sleeps that overlap jump to the latest deadline, not to
 * the sum of them. Nothing that waits on real timers (the SDKs, the stall watchdog's tick) is sped up.
 */
export class SkipClock implements Clock {
  private skipped = 0;
  /** How many sleeps were skipped, and their total length: a test can check that the waits really happened. */
  readonly slept = { count: 0, ms: 0 };

  now(): number {
    return performance.now() + this.skipped;
  }

  sleep(ms: number): Promise<void> {
    const deadline = this.now() + Math.max(0, ms);
    this.slept.count += 1;
    this.slept.ms += Math.max(0, ms);
    return new Promise((resolve) => {
      setImmediate(() => {
        const behind = deadline - this.now();
        if (behind > 0) this.skipped += behind;
        resolve();
      });
    });
  }
}
