import type { Destination } from '../config/defaults.js';
import type { DeliveryOutcome, DestinationClient } from '../destinations/types.js';
import type { Operation } from '../plan/types.js';
import { redactUrls } from '../redact.js';
import type { DeliveryRow, IdentityWrite } from '../state/store.js';
import { realClock, type Clock, type TokenBucket } from './limiter.js';
import { backoffDelay, type RetryOptions } from './retry.js';

/** The writes the engine makes; implemented by the state store (only apply/ and state/ write). */
export interface Ledger {
  recordDeliveries(rows: readonly DeliveryRow[], now: Date): void;
  recordOutcomes(rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date): void;
}

export interface DestinationReport {
  sent: number;
  failed: number;
  dead: number;
  /** Extra sends made for retries (a 429 wait included). */
  retries: number;
  startedAt: number;
  finishedAt: number | undefined;
}

export interface EngineOptions {
  ledger: Ledger;
  runId: number;
  clients: ReadonlyMap<Destination, DestinationClient>;
  limiters: ReadonlyMap<Destination, TokenBucket>;
  retry: RetryOptions;
  /** Sends in flight at once, per destination. */
  concurrency: ReadonlyMap<Destination, number>;
  clock?: Clock;
  now?: () => Date;
  random?: () => number;
  /** Called after each outcome is recorded (progress display). */
  onProgress?: (destination: Destination, report: DestinationReport) => void;
}

interface Attempt {
  operation: Operation;
  attempts: number;
}

/**
 * Applies operations: batches them per destination, writes them `pending` before a send, sends through the
 * destination's shared limiter, retries what may be retried, and records every outcome together with the
 * traits it acknowledged. `submit` waits when the destination is busy, so the planner upstream is paced by
 * what the destinations can take and memory stays flat.
 */
export class ApplyEngine {
  private readonly lanes = new Map<Destination, Lane>();
  private fatal: unknown;

  constructor(options: EngineOptions) {
    for (const [destination, client] of options.clients) {
      const limiter = options.limiters.get(destination);
      if (!limiter) throw new Error(`internal: no limiter for ${destination}`);
      this.lanes.set(destination, new Lane(destination, client, limiter, options, (error) => (this.fatal ??= error)));
    }
  }

  async submit(operation: Operation): Promise<void> {
    if (this.fatal !== undefined) throw this.fatal;
    const lane = this.lanes.get(operation.destination);
    if (!lane) return;
    await lane.submit(operation);
  }

  /** Sends what is buffered, waits for every send, closes the clients; rethrows a fatal error (bad credentials). */
  async finish(): Promise<Map<Destination, DestinationReport>> {
    const reports = new Map<Destination, DestinationReport>();
    for (const [destination, lane] of this.lanes) {
      if (this.fatal === undefined) await lane.flush();
      await lane.drain();
      await lane.close();
      reports.set(destination, lane.report);
    }
    if (this.fatal !== undefined) throw this.fatal;
    return reports;
  }

  get reports(): Map<Destination, DestinationReport> {
    return new Map([...this.lanes].map(([d, lane]) => [d, lane.report]));
  }
}

class Lane {
  readonly report: DestinationReport;
  private buffer: Operation[] = [];
  private bufferBytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly clock: Clock;
  private readonly now: () => Date;
  private readonly random: () => number;

  constructor(
    private readonly destination: Destination,
    private readonly client: DestinationClient,
    private readonly limiter: TokenBucket,
    private readonly options: EngineOptions,
    private readonly onFatal: (error: unknown) => void,
  ) {
    this.clock = options.clock ?? realClock;
    this.now = options.now ?? (() => new Date());
    this.random = options.random ?? Math.random;
    this.report = { sent: 0, failed: 0, dead: 0, retries: 0, startedAt: this.clock.now(), finishedAt: undefined };
  }

  async submit(operation: Operation): Promise<void> {
    if (this.buffer.length > 0 && this.bufferBytes + operation.bytes > this.client.maxBatchBytes) await this.flush();
    this.buffer.push(operation);
    this.bufferBytes += operation.bytes;
    if (this.buffer.length >= this.client.maxBatch) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.buffer.length === 0) return;
    const chunk = this.buffer;
    this.buffer = [];
    this.bufferBytes = 0;
    while (this.inFlight.size >= (this.options.concurrency.get(this.destination) ?? 4)) await Promise.race(this.inFlight);
    // The ledger says `pending` before anything leaves: a crash from here on resends with the same ids.
    this.options.ledger.recordDeliveries(
      chunk.map((op) => ({ destination: this.destination, key: op.key, kind: op.kind === 'identify' ? 'identify' : op.event, userId: op.userId, status: 'pending', runId: this.options.runId })),
      this.now(),
    );
    const task: Promise<void> = this.deliver(chunk.map((operation) => ({ operation, attempts: 0 })))
      .catch((error: unknown) => this.onFatal(error))
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }

  async close(): Promise<void> {
    const leftovers = await this.client.close();
    if (leftovers.length > 0) this.record(leftovers.map((o) => ({ outcome: o, operation: undefined })));
    this.report.finishedAt = this.clock.now();
  }

  private async deliver(batch: Attempt[]): Promise<void> {
    let pending = batch;
    while (pending.length > 0) {
      const operations = pending.map((a) => a.operation);
      await this.limiter.take(this.client.cost(operations));
      for (const attempt of pending) attempt.attempts += 1;
      const outcomes = await this.client.send(operations);
      const byKey = new Map(outcomes.map((o) => [o.key, o]));
      const settled: { outcome: DeliveryOutcome; operation: Operation | undefined }[] = [];
      const again: Attempt[] = [];
      let delay = 0;
      for (const attempt of pending) {
        const outcome = byKey.get(attempt.operation.key) ?? {
          key: attempt.operation.key,
          verdict: { kind: 'retry' as const, reason: 'no outcome reported' },
        };
        const verdict = outcome.verdict;
        if (verdict.kind !== 'retry') {
          settled.push({ outcome, operation: attempt.operation });
        } else if (verdict.retryAfterMs !== undefined && verdict.retryAfterMs <= this.options.retry.maxRetryAfterMs) {
          // The service said when: wait that long (everyone waits, through the shared bucket), no attempt used.
          this.limiter.pause(verdict.retryAfterMs);
          attempt.attempts -= 1;
          again.push(attempt);
        } else if (attempt.attempts < this.options.retry.maxAttempts) {
          delay = Math.max(delay, backoffDelay(attempt.attempts, this.options.retry, this.random));
          again.push(attempt);
        } else {
          settled.push({ outcome: { key: outcome.key, verdict: { kind: 'retry', reason: `${verdict.reason} (gave up after ${attempt.attempts} attempts)` } }, operation: attempt.operation });
        }
      }
      if (settled.length > 0) this.record(settled);
      this.report.retries += again.length;
      pending = again;
      if (delay > 0 && pending.length > 0) await this.clock.sleep(delay);
    }
  }

  /** One transaction per batch: delivery rows and the traits acknowledged by sent identifies. */
  private record(settled: { outcome: DeliveryOutcome; operation: Operation | undefined }[]): void {
    const rows: DeliveryRow[] = [];
    const identities: IdentityWrite[] = [];
    for (const { outcome, operation } of settled) {
      const verdict = outcome.verdict;
      const status = verdict.kind === 'sent' ? 'sent' : verdict.kind === 'dead' ? 'dead' : 'failed';
      this.report[status] += 1;
      if (!operation) {
        // A leftover the client reported at close: only the status changes.
        rows.push({ destination: this.destination, key: outcome.key, kind: 'unknown', userId: '', status: 'failed', error: verdict.kind === 'sent' ? '' : redactUrls(verdict.reason) });
        continue;
      }
      const row: DeliveryRow = {
        destination: this.destination,
        key: operation.key,
        kind: operation.kind === 'identify' ? 'identify' : operation.event,
        userId: operation.userId,
        status,
        runId: this.options.runId,
      };
      if (verdict.kind !== 'sent') {
        // Reasons come from SDKs and services that may echo a URL: the ledger never holds its credentials.
        row.error = redactUrls(verdict.reason);
        row.payload = JSON.stringify(operation);
      } else if (operation.kind === 'identify') {
        // Only an acknowledged identify becomes the new diff baseline.
        identities.push({ destination: this.destination, userId: operation.userId, traits: operation.traits, hash: operation.traitsHash });
      }
      rows.push(row);
    }
    this.options.ledger.recordOutcomes(rows, identities, this.now());
    this.options.onProgress?.(this.destination, this.report);
  }
}
