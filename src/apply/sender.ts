import type { Destination } from '../config/defaults.js';
import type { DeliveryOutcome, DestinationClient } from '../destinations/types.js';
import { redactUrls } from '../redact.js';
import { ledgerKind } from '../plan/types.js';
import type { AccountWrite, DeliveryRow, IdentityWrite } from '../state/store.js';
import { setMaxListeners } from 'node:events';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Clock, TokenBucket } from './limiter.js';
import type { DeliveryQueue, QueuedOperation } from '../state/store.js';
import { backoffDelay, MAX_RATE_LIMIT_WAITS, type RetryOptions, type Verdict } from './retry.js';

export interface SenderReport {
  sent: number;
  failed: number;
  dead: number;
  /** Extra sends made for retries (a 429 wait included) and for bisecting refused batches. */
  retries: number;
  startedAt: number;
  finishedAt: number | undefined;
  /** Why the destination stopped early: no progress within the stall bound. */
  stalled?: string;
  /** Operations left pending by a graceful stop, sent by the next run. */
  interrupted?: boolean;
  /** Where an adaptive rate settled (requests or events a second). */
  settledRate?: number;
}

/** Feedback for an adaptive rate: every answer is healthy, or says to slow down (429, 5xx, timeouts). */
export interface RateFeedback {
  healthy(): void;
  throttled(): void;
  settled(): number;
}

export interface SenderOptions {
  destination: Destination;
  client: DestinationClient;
  limiter: TokenBucket;
  queue: DeliveryQueue;
  runId: number;
  retry: RetryOptions;
  concurrency: number;
  stallTimeoutMs: number;
  clock: Clock;
  now: () => Date;
  random: () => number;
  /** Whether the planner may still enqueue work. */
  planning: () => boolean;
  planned: Promise<void>;
  /**
   * A fault that ends the run. `own` is true when it is this destination's (its client threw: credentials refused,
   * an endpoint that is not its API); false for anything else, a state that cannot be written above all.
   */
  onFatal: (error: unknown, own: boolean) => void;
  /** The destination's adaptive rate, told how each answer went. */
  rate?: RateFeedback;
  onProgress?: (destination: Destination, report: SenderReport) => void;
}

/** Queue rows read at once: a sender holds this many operations plus its in-flight batches in memory, no more. */
const READ_CHUNK = 2_000;
/** How many recent answers decide whether failures other than 429 mean the service is overloaded. */
const RECENT_ANSWERS = 20;

/** Thrown inside a delivery when its waits were abandoned (a stall, or the end of a stop's grace period). */
class Abandoned extends Error {}

/**
 * Drains one destination's queue at that destination's own pace: reads pending operations in queue order,
 * batches them, sends through the destination's shared limiter with bounded concurrency, retries what may be
 * retried (the engine is the only retrier), bisects a batch refused as a whole, and records every outcome with
 * the traits it acknowledged. A destination without progress for the stall bound stops; its remaining work is
 * recorded failed for the next run.
 */
export class Sender {
  readonly report: SenderReport;
  done: Promise<void> = Promise.resolve();
  private afterSeq = 0;
  /** Bounds the batches in flight (bisected halves run inside their parent's place). */
  private readonly limit: LimitFunction;
  /** The batches launched and not yet settled, for waiting on any of them. */
  private readonly inFlight = new Set<Promise<void>>();
  private wakeUp: (() => void) | undefined;
  /** A wake that came while the reader was not asleep (reading the queue): it reads again instead of sleeping. */
  private woken = false;
  private stopping = false;
  private stalled: string | undefined;
  private fatal = false;
  /** Errors this destination's client threw, as told apart from the state's (see `onFatal`). */
  private readonly ownFaults = new WeakSet<object>();
  /** Aborted to abandon every wait in flight: a stall, a stop's grace period over, a fatal error. */
  private readonly abandon = new AbortController();
  /** Aborted on stop: waits for the limiter or a backoff end at once (no request is on the wire then). */
  private readonly stopWaits = new AbortController();
  private lastProgress: number;
  private lastError = '';
  private watchdog: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  /** Whether each of the last answers failed (5xx, timeout, reset), for the adaptive rate. */
  private readonly recentFailures: boolean[] = [];

  constructor(private readonly options: SenderOptions) {
    this.report = { sent: 0, failed: 0, dead: 0, retries: 0, startedAt: options.clock.now(), finishedAt: undefined };
    this.lastProgress = options.clock.now();
    this.limit = pLimit(options.concurrency);
    // Every wait in flight listens on this one signal: a destination with 32 requests in flight is normal.
    setMaxListeners(0, this.abandon.signal);
    setMaxListeners(0, this.stopWaits.signal);
  }

  /** Starts draining; resolves once the sender knows where the queue stood, before this run enqueues anything. */
  async start(): Promise<void> {
    // Entries up to here were queued before this run planned anything (a killed run's leftovers, retries): they
    // are settled before this run's own, so an older identify of a person can never land after a newer one.
    const earlier = await this.options.queue.lastSeq();
    // A run may plan everything before its senders start (the campaign guard): its time and the stall bound count
    // from here, not from when the sender was made.
    this.report.startedAt = this.options.clock.now();
    this.lastProgress = this.options.clock.now();
    const every = Math.max(50, Math.min(1_000, this.options.stallTimeoutMs / 4));
    this.watchdog = setInterval(() => this.checkStall(), every);
    this.watchdog.unref();
    // A state that fails under the reader (a lost connection, a full disk) stops this run like any fatal error:
    // finish() rethrows it. Left unhandled until then, the rejection would end the process with a stack trace.
    this.done = this.run(earlier)
      .catch((error: unknown) => this.failFatally(error))
      .finally(() => {
        if (this.watchdog) clearInterval(this.watchdog);
        if (this.graceTimer) clearTimeout(this.graceTimer);
      });
  }

  wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    if (wake) wake();
    else this.woken = true;
  }

  /** No new work; in-flight requests get `graceMs`, then their waits are abandoned and their rows stay pending. */
  stop(graceMs: number): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopWaits.abort();
    if (graceMs <= 0) this.abandon.abort();
    else {
      this.graceTimer = setTimeout(() => this.abandon.abort(), graceMs);
      this.graceTimer.unref();
    }
    this.wake();
  }

  async close(): Promise<void> {
    // A stalled or abandoned destination may still hold a request open: do not wait for it again.
    // Anything the client could not resolve keeps its queue entry: the next run sends it, with the same ids.
    await this.options.client.close(this.abandon.signal.aborted ? 1_000 : 30_000);
    this.report.finishedAt ??= this.options.clock.now();
    if (this.options.rate) this.report.settledRate = this.options.rate.settled();
  }

  private get halted(): boolean {
    return this.stopping || this.stalled !== undefined || this.fatal;
  }

  private async run(earlier: number): Promise<void> {
    const { client, queue, destination } = this.options;
    let leftovers = earlier > 0;
    let batch: QueuedOperation[] = [];
    let bytes = 0;
    const dispatch = async (): Promise<void> => {
      if (batch.length === 0) return;
      const entries = batch;
      batch = [];
      bytes = 0;
      await this.slot();
      if (this.halted) return;
      this.launch(entries);
    };
    while (!this.halted) {
      this.woken = false;
      const chunk = await queue.queued(destination, this.afterSeq, READ_CHUNK);
      if (chunk.length === 0) {
        if (batch.length > 0) {
          await dispatch();
          continue;
        }
        // An enqueue written while the queue was being read woke nobody: read again rather than sleep (or end)
        // past it. Checked before the end of planning: the last write can land during this read.
        if (this.woken) continue;
        if (!this.options.planning()) break;
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        continue;
      }
      for (const entry of chunk) {
        if (leftovers && entry.seq > earlier) {
          await dispatch();
          await this.drainInFlight();
          leftovers = false;
        }
        if (this.halted) break;
        const operation = entry.operation;
        if (batch.length > 0 && bytes + operation.bytes > client.maxBatchBytes) await dispatch();
        batch.push(entry);
        bytes += operation.bytes;
        this.afterSeq = entry.seq;
        if (batch.length >= client.maxBatch) await dispatch();
      }
      // The queue is caught up: send the partial batch now rather than wait for more.
      if (chunk.length < READ_CHUNK) await dispatch();
    }
    await this.drainInFlight();
    // This destination is done (others may not be): its elapsed time and rate are its own.
    this.report.finishedAt = this.options.clock.now();
    if (this.stalled !== undefined) {
      // Whatever the planner still enqueues for this destination is recorded failed too, once it is done.
      await this.options.planned;
      const left = await queue.failQueued(destination, this.stalled, this.options.runId, this.options.now());
      this.report.failed += left;
      this.options.onProgress?.(destination, this.report);
    } else if (this.stopping) {
      this.report.interrupted = true;
    }
  }

  private failFatally(error: unknown): void {
    this.fatal = true;
    this.abandon.abort();
    this.options.onFatal(error, typeof error === 'object' && error !== null && this.ownFaults.has(error));
  }

  private async drainInFlight(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }

  /** Waits until a batch may start: the reader takes no more from the queue than the destination can have in flight. */
  private async slot(): Promise<void> {
    while (this.limit.activeCount + this.limit.pendingCount >= this.options.concurrency) await Promise.race(this.inFlight);
  }

  private launch(entries: QueuedOperation[]): void {
    if (this.inFlight.size === 0) this.lastProgress = this.options.clock.now();
    const task: Promise<void> = this.limit(() => this.deliver(entries))
      .catch((error: unknown) => {
        if (error instanceof Abandoned) return;
        this.failFatally(error);
      })
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  /** Sends one batch until every operation has a final outcome; splits a batch refused as a whole. */
  private async deliver(entries: QueuedOperation[]): Promise<void> {
    const { client, limiter, retry } = this.options;
    let pending = entries.map((entry) => ({ ...entry, attempts: 0, rateLimitWaits: 0 }));
    while (pending.length > 0) {
      // Stopping: only requests already on the wire finish; the rest stays pending for the next run.
      if (this.stopping) return;
      const batch = pending.map((p) => p.operation);
      await this.abandonable(limiter.take(client.cost(batch)), this.stopWaits.signal);
      if (this.stopping) return;
      for (const attempt of pending) attempt.attempts += 1;
      const outcomes = await this.abandonable(client.send(batch)).catch((error: unknown) => {
        if (typeof error === 'object' && error !== null) this.ownFaults.add(error);
        throw error;
      });
      this.feedRate(outcomes);
      if (batch.length > 1 && refusedAsWhole(outcomes)) {
        // One bad operation must not take its batch down: split until the refused ones are alone.
        const middle = Math.ceil(pending.length / 2);
        this.report.retries += pending.length;
        await Promise.all([this.deliver(pending.slice(0, middle)), this.deliver(pending.slice(middle))]);
        return;
      }
      const byKey = new Map(outcomes.map((o) => [o.key, o]));
      const settled: { entry: QueuedOperation; verdict: Verdict }[] = [];
      const again: typeof pending = [];
      let delay = 0;
      for (const attempt of pending) {
        const verdict = byKey.get(attempt.operation.key)?.verdict ?? { kind: 'retry' as const, reason: 'no outcome reported' };
        if (verdict.kind !== 'retry') {
          settled.push({ entry: attempt, verdict });
          continue;
        }
        this.lastError = verdict.reason;
        // "In a row": any other answer between two waits starts the count again (attempts bound those answers).
        if (verdict.retryAfterMs === undefined) attempt.rateLimitWaits = 0;
        if (verdict.retryAfterMs !== undefined && verdict.retryAfterMs <= retry.maxRetryAfterMs && attempt.rateLimitWaits < MAX_RATE_LIMIT_WAITS) {
          // The service said when: everyone waits that long (the shared bucket), and no attempt is used, up to a
          // bound: a service that says "wait" forever must not be asked forever.
          limiter.pause(verdict.retryAfterMs);
          attempt.attempts -= 1;
          attempt.rateLimitWaits += 1;
          again.push(attempt);
        } else if (verdict.retryAfterMs !== undefined && attempt.rateLimitWaits >= MAX_RATE_LIMIT_WAITS) {
          settled.push({ entry: attempt, verdict: { kind: 'retry', reason: `${verdict.reason} (rate limited ${attempt.rateLimitWaits} times in a row; left for the next run)` } });
        } else if (attempt.attempts < retry.maxAttempts) {
          delay = Math.max(delay, backoffDelay(attempt.attempts, retry, this.options.random));
          again.push(attempt);
        } else {
          settled.push({ entry: attempt, verdict: { kind: 'retry', reason: `${verdict.reason} (gave up after ${attempt.attempts} attempts)` } });
        }
      }
      if (settled.length > 0) await this.record(settled);
      this.report.retries += again.length;
      pending = again;
      if (delay > 0 && pending.length > 0) await this.abandonable(this.options.clock.sleep(delay), this.stopWaits.signal);
    }
  }

  /**
   * Tells the adaptive rate how an answer went. A 429 always slows it down. A 5xx, timeout or reset does only
   * when such failures are most of the recent answers (a sick or overloaded service): the odd one is noise that
   * retries absorb, and halving on each would pin the rate to its floor.
   */
  private feedRate(outcomes: readonly DeliveryOutcome[]): void {
    const rate = this.options.rate;
    if (!rate) return;
    const failed = outcomes.some((o) => o.verdict.kind === 'retry');
    this.recentFailures.push(failed);
    if (this.recentFailures.length > RECENT_ANSWERS) this.recentFailures.shift();
    if (outcomes.some((o) => o.verdict.kind === 'retry' && o.verdict.rateLimited === true)) rate.throttled();
    else if (!failed) rate.healthy();
    else if (this.recentFailures.filter(Boolean).length * 2 >= this.recentFailures.length) rate.throttled();
  }

  /** Waits for `promise` unless the sender abandons its waits (stall, end of grace, fatal error) or `also` fires. */
  private abandonable<T>(promise: Promise<T>, also?: AbortSignal): Promise<T> {
    const signals = also ? [this.abandon.signal, also] : [this.abandon.signal];
    if (signals.some((signal) => signal.aborted)) return Promise.reject(new Abandoned());
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
        reject(new Abandoned());
      };
      for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
      promise.then(
        (value) => {
          for (const signal of signals) signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (error: unknown) => {
          for (const signal of signals) signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }


  private checkStall(): void {
    if (this.halted || this.inFlight.size === 0) return;
    const idle = this.options.clock.now() - this.lastProgress;
    if (idle < this.options.stallTimeoutMs) return;
    const seconds = Math.round(this.options.stallTimeoutMs / 1000);
    this.stalled = `no progress for ${seconds}s${this.lastError ? ` (last error: ${this.lastError})` : ''}; kept for the next run`;
    this.report.stalled = this.stalled;
    this.abandon.abort();
    this.wake();
  }

  /** One transaction per batch: the outcomes and the traits acknowledged by sent identifies. */
  private async record(settled: { entry: QueuedOperation; verdict: Verdict }[]): Promise<void> {
    const rows: DeliveryRow[] = [];
    const identities: IdentityWrite[] = [];
    const accounts: AccountWrite[] = [];
    const { destination, runId } = this.options;
    for (const { entry, verdict } of settled) {
      const operation = entry.operation;
      const status = verdict.kind === 'sent' ? 'sent' : verdict.kind === 'dead' ? 'dead' : 'failed';
      this.report[status] += 1;
      if (status !== 'failed') this.lastProgress = this.options.clock.now();
      const row: DeliveryRow = {
        destination,
        key: operation.key,
        kind: ledgerKind(operation),
        userId: operation.userId,
        status,
        runId,
      };
      if (verdict.kind !== 'sent') {
        // Reasons come from SDKs and services that may echo a URL: the ledger never holds its credentials.
        row.error = redactUrls(verdict.reason);
        // The queue entry goes; the ledger keeps the operation for `retry` (and the next run, if failed).
        row.payload = JSON.stringify(operation);
      } else if (operation.kind === 'identify') {
        // Only an acknowledged identify becomes the new diff baseline.
        identities.push({
          destination,
          userId: operation.userId,
          traits: operation.traits,
          hash: operation.traitsHash,
          // Operations stored by an older version carry no count: the stored one stays.
          ...(typeof operation.tierChanges === 'number' ? { tierChanges: operation.tierChanges } : {}),
        });
      } else if ((operation.kind === 'group' || operation.kind === 'object') && operation.accountTraits) {
        // The account traits a group call or object carried become the account's baseline.
        accounts.push({ destination, accountId: operation.accountId, ...operation.accountTraits });
      }
      rows.push(row);
    }
    await this.options.queue.settle(
      settled.map((s) => s.entry.seq),
      rows,
      identities,
      this.options.now(),
      accounts,
    );
    this.options.onProgress?.(destination, this.report);
  }
}

/** Every operation refused permanently for the same request-level reason: the batch was refused as a whole. */
function refusedAsWhole(outcomes: readonly DeliveryOutcome[]): boolean {
  return outcomes.length > 1 && outcomes.every((o) => o.verdict.kind === 'dead' && o.verdict.wholeBatch === true);
}
