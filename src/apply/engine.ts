import type { Destination } from '../config/defaults.js';
import type { DestinationClient } from '../destinations/types.js';
import type { Operation } from '../plan/types.js';
import { realClock, type Clock, type TokenBucket } from './limiter.js';
import type { DeliveryQueue } from '../state/store.js';
import { Sender, type RateFeedback, type SenderReport } from './sender.js';
import type { RetryOptions } from './retry.js';

export type DestinationReport = SenderReport;

export interface EngineOptions {
  queue: DeliveryQueue;
  runId: number;
  clients: ReadonlyMap<Destination, DestinationClient>;
  limiters: ReadonlyMap<Destination, TokenBucket>;
  retry: RetryOptions;
  /** Requests in flight at once, per destination. */
  concurrency: ReadonlyMap<Destination, number>;
  /** Adaptive rates (Customer.io), told how each answer went; they drive the destination's limiter. */
  rates?: ReadonlyMap<Destination, RateFeedback>;
  /** A destination with work and no outcome for this long is stalled: its remaining work is recorded failed. */
  stallTimeoutMs: number;
  /** After `stop()`, how long in-flight requests may take to finish before they are abandoned (left pending). */
  stopGraceMs?: number;
  clock?: Clock;
  now?: () => Date;
  random?: () => number;
  /** Called after each outcome is recorded (progress display). */
  onProgress?: (destination: Destination, report: DestinationReport) => void;
}

/** Operations are written to the queue in transactions of this many (or every FLUSH_EVERY_MS, whichever first). */
const ENQUEUE_BATCH = 500;
const FLUSH_EVERY_MS = 200;
export const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * plan → durable queue → one sender per destination (DESIGN.md §8). The planner appends operations to the queue
 * in the state and never waits for a destination; each destination's sender drains its own rows at its own
 * rate, so a slow, failing or hung destination holds back no other, and what cannot be sent yet waits on disk.
 */
export class DeliveryEngine {
  private readonly senders = new Map<Destination, Sender>();
  private buffer: Operation[] = [];
  /**
   * The queue writes, one after the other: positions must follow the planner's order, and a reader must never
   * pass over an entry that a later-committed write fills in behind it.
   */
  private writes: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private fatal: unknown;
  private planning = true;
  private markPlanned!: () => void;
  /** Resolves when the planner has written its last operation. */
  readonly planned = new Promise<void>((resolve) => (this.markPlanned = resolve));
  private readonly now: () => Date;

  constructor(private readonly options: EngineOptions) {
    this.now = options.now ?? (() => new Date());
    for (const [destination, client] of options.clients) {
      const limiter = options.limiters.get(destination);
      if (!limiter) throw new Error(`internal: no limiter for ${destination}`);
      this.senders.set(
        destination,
        new Sender({
          destination,
          client,
          limiter,
          queue: options.queue,
          runId: options.runId,
          retry: options.retry,
          concurrency: options.concurrency.get(destination) ?? 4,
          stallTimeoutMs: options.stallTimeoutMs,
          clock: options.clock ?? realClock,
          now: this.now,
          random: options.random ?? Math.random,
          planning: () => this.planning,
          planned: this.planned,
          onFatal: (error, own) => this.failFatally(error, own ? destination : undefined),
          ...(options.rates?.get(destination) ? { rate: options.rates.get(destination)! } : {}),
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        }),
      );
    }
  }

  /**
   * Starts every destination's sender; they drain what the queue holds (a killed run's leftovers first). Resolves
   * once each knows where those leftovers end: the planner may enqueue from then on.
   */
  async start(): Promise<void> {
    await Promise.all([...this.senders.values()].map((sender) => sender.start()));
    // A write that fails is fatal (failFatally): the planner's next enqueue and finish() throw it.
    this.timer = setInterval(() => void this.flush().catch(() => undefined), FLUSH_EVERY_MS);
    this.timer.unref();
  }

  /**
   * Appends one operation to the queue (buffered, written in transactions of ENQUEUE_BATCH). Never waits for a
   * destination. The operation that fills a batch returns the batch's write, for the planner to wait for (it then
   * runs no further ahead than the state); the others return nothing, so planning costs no promise per operation.
   */
  enqueue(operation: Operation): Promise<void> | undefined {
    if (this.fatal !== undefined) throw this.fatal;
    if (!this.senders.has(operation.destination)) return undefined;
    this.buffer.push(operation);
    return this.buffer.length >= ENQUEUE_BATCH ? this.flush() : undefined;
  }

  /** The planner is done: nothing more will be enqueued. Senders finish when their queue is empty. */
  async endOfPlan(): Promise<void> {
    // Senders end once planning is over and their queue is empty: the last operations are written first.
    await this.flush().catch(() => undefined);
    this.planning = false;
    this.markPlanned();
    for (const sender of this.senders.values()) sender.wake();
  }

  /**
   * Graceful stop (a signal): no new work is started, in-flight requests get `graceMs` to finish and their outcomes
   * are recorded; what is left stays pending in the queue for the next run, with the same ids.
   */
  stop(graceMs = this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS): void {
    // What the planner handed over is kept for the next run; finish() waits for the write.
    void this.flush().catch(() => undefined);
    for (const sender of this.senders.values()) sender.stop(graceMs);
  }

  /** Waits for every sender and every queue write, closes the clients; rethrows a fatal error (credentials refused mid-run, the state unwritable). */
  async finish(): Promise<Map<Destination, DestinationReport>> {
    if (this.planning) await this.endOfPlan();
    await Promise.all([...this.senders.values()].map((sender) => sender.done));
    if (this.timer) clearInterval(this.timer);
    await this.writes.catch(() => undefined);
    await Promise.all([...this.senders.values()].map((sender) => sender.close()));
    if (this.fatal !== undefined) throw this.fatal;
    return this.reports;
  }

  get reports(): Map<Destination, DestinationReport> {
    return new Map([...this.senders].map(([destination, sender]) => [destination, sender.report]));
  }

  /**
   * Writes the buffered operations after the writes before them; settles when they are in the queue. Once a
   * write has failed, none follows (the chain stays rejected with its error).
   */
  private flush(): Promise<void> {
    if (this.buffer.length === 0) return this.writes;
    const operations = this.buffer;
    this.buffer = [];
    this.writes = this.writes.then(async () => {
      try {
        await this.options.queue.enqueue(operations, this.options.runId, this.now());
      } catch (error) {
        this.failFatally(error);
        throw error;
      }
      for (const sender of this.senders.values()) sender.wake();
    });
    return this.writes;
  }

  private failFatally(error: unknown, from?: Destination): void {
    this.fatal ??= error;
    // Nothing more is started. The destination that cannot work (credentials refused, an endpoint that is not its
    // API) and, after a state fault, every destination stop at once. Another destination's requests already on
    // the wire get the stop's grace period: the answers it gave are recorded, so the next run does not send them
    // again.
    const grace = this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    for (const [destination, sender] of this.senders) sender.stop(from === undefined || destination === from ? 0 : grace);
  }
}
