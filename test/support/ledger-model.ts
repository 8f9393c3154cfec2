import { join } from 'node:path';
import { DeliveryEngine } from '../../src/apply/engine.js';
import { TokenBucket, type Clock } from '../../src/apply/limiter.js';
import { metDeadDelivery, reclaimLeftovers, requeueRetries, supersedeAfterCompleteRead } from '../../src/apply/retry-selection.js';
import { defaultConfig, type Config } from '../../src/config/config.js';
import type { Destination } from '../../src/config/defaults.js';
import type { DeliveryOutcome, DestinationClient } from '../../src/destinations/types.js';
import { stableStringify } from '../../src/model/ids.js';
import type { Participant } from '../../src/model/participant.js';
import { scanDirectory } from '../../src/model/referrer-directory.js';
import type { TraitMap } from '../../src/model/traits.js';
import { planOperations } from '../../src/plan/planner.js';
import type { Operation, PlanMode } from '../../src/plan/types.js';
import { openSqliteStateForWriting, type SqliteState } from '../../src/state/sqlite/store.js';
import type { StoredDelivery } from '../../src/state/store.js';
import { tempDir } from './cli.js';
import { participant, records } from './participants.js';

/**
 * A model of referral-sync's runs against one Segment-like destination, for property tests of the planner and
 * the ledger: the real planner, delivery engine, queue, ledger and retry selection over a real SQLite state, and
 * a fake destination that applies what it is sent, drops a messageId it has already applied (Segment dedupes for
 * about a day: here, for the whole test), and fails in the ways a service does. Runs take turns as the CLI's
 * do (one lock); a run is `sync` and `backfill` (read a snapshot of the source), `retry` (reads none), or a run
 * killed in the middle of sending.
 */

export const PROGRAM = 'camp1';
const DESTINATION: Destination = 'segment';
const DESTINATIONS: readonly Destination[] = [DESTINATION];
const NAMESPACES = { segment: 'ns/segment/-', customerio: 'ns/customerio/-' };

/** What the source says in one run: each participant present with a referral count, or gone (absent). */
export type Snapshot = Readonly<Record<string, number | undefined>>;

/**
 * What the destination does with an operation during one run:
 * `ok` applies and acknowledges; `refuse` is a 400 (not applied, dead); `fail` is a 5xx on every attempt (not
 * applied, failed once retries are used up); `lost` applies on the first attempt but the answer never comes back
 * (the service then fails), so the run records failed what the destination holds.
 */
export type Fault = 'ok' | 'refuse' | 'fail' | 'lost';

export type RunKind = 'sync' | 'backfill' | 'retry' | 'crash';

export interface Step {
  kind: RunKind;
  snapshot: Snapshot;
  /** The fault met by the n-th distinct operation sent in this run; `ok` past the end. */
  faults: readonly Fault[];
}

/** One message as the destination received it, in one attempt. */
export interface Received {
  run: number;
  kind: RunKind;
  key: string;
  operation: Operation;
  /** What identifies its content: the payload without the time a destination stamps on an observed event. */
  content: string;
  /** Whether the destination applied it (not refused, not failed, not dropped as a repeated id). */
  applied: boolean;
}

/** The traits the default config names for one referral count (tiers: ≥10, ≥5, ≥1). */
export function tierOf(count: number): string {
  return count >= 10 ? 'champion' : count >= 5 ? 'power_referrer' : count >= 1 ? 'active' : 'new_participant';
}

export function userIdOf(id: string): string {
  return `${id}@example.com`;
}

function participants(snapshot: Snapshot): Participant[] {
  return Object.entries(snapshot).flatMap(([id, count]) => (count === undefined ? [] : [participant({ id, email: userIdOf(id), referralCount: count, createdAt: new Date('2025-05-01T10:00:00Z') })]));
}

/** The fake Segment: what it holds per person, and every message it was sent. */
export class FakeDestination {
  /** Message ids it applied: a repeat within the dedupe window is dropped (answered 200, not applied). */
  readonly seen = new Set<string>();
  readonly profiles = new Map<string, TraitMap>();
  readonly received: Received[] = [];

  client(run: number, kind: RunKind, faults: readonly Fault[]): ModelClient {
    return new ModelClient(this, run, kind, faults);
  }

  apply(operation: Operation): boolean {
    if (this.seen.has(operation.key)) return false;
    this.seen.add(operation.key);
    if (operation.kind === 'identify') {
      const traits = (operation.payload as { traits: TraitMap }).traits;
      this.profiles.set(operation.userId, { ...this.profiles.get(operation.userId), ...traits });
    }
    return true;
  }
}

/** Content of a payload: an observed event's timestamp is the time it was planned, not part of what it says. */
function contentOf(operation: Operation): string {
  const { timestamp: _timestamp, ...rest } = operation.payload as Record<string, unknown>;
  return stableStringify(operation.kind === 'track' ? rest : operation.payload);
}

/**
 * One run's connection to the fake destination, one operation per request. In a killed run (`crash`), the first
 * operation that does not go through ends the run there: `lost` is applied and never answered, the others are
 * never answered; nothing after it is sent, and every unanswered operation stays pending, as after a kill -9.
 */
class ModelClient implements DestinationClient {
  readonly name = DESTINATION;
  readonly maxBatch = 1;
  readonly maxBatchBytes = 1_000_000;
  private readonly order = new Map<string, number>();
  private readonly attempts = new Map<string, number>();
  private markHung!: () => void;
  /** Resolves when a killed run's client stops answering. */
  readonly hung = new Promise<void>((resolve) => (this.markHung = resolve));

  constructor(
    private readonly destination: FakeDestination,
    private readonly run: number,
    private readonly kind: RunKind,
    private readonly faults: readonly Fault[],
  ) {}

  cost(operations: readonly Operation[]): number {
    return operations.length;
  }

  async send(operations: readonly Operation[]): Promise<DeliveryOutcome[]> {
    const [operation] = operations;
    if (operation === undefined) return [];
    const { key } = operation;
    if (!this.order.has(key)) this.order.set(key, this.order.size);
    const attempt = (this.attempts.get(key) ?? 0) + 1;
    this.attempts.set(key, attempt);
    const fault = this.faults[this.order.get(key)!] ?? 'ok';
    const applies = fault === 'ok' || (fault === 'lost' && attempt === 1);
    const applied = applies && this.destination.apply(operation);
    this.destination.received.push({ run: this.run, kind: this.kind, key, operation, content: contentOf(operation), applied });
    if (this.kind === 'crash' && fault !== 'ok') {
      this.markHung();
      return new Promise<never>(() => undefined);
    }
    if (fault === 'ok') return [{ key, verdict: { kind: 'sent' } }];
    if (fault === 'refuse') return [{ key, verdict: { kind: 'dead', reason: 'refused [400]' } }];
    return [{ key, verdict: { kind: 'retry', reason: 'service unavailable [503]' } }];
  }

  async check(): Promise<never> {
    throw new Error('not used');
  }

  async close(): Promise<DeliveryOutcome[]> {
    return [];
  }
}

/** Every wait is over at once: the model is about outcomes, not pacing. */
const NO_WAIT: Clock = { now: () => performance.now(), sleep: () => Promise.resolve() };

/** A state, a destination and a clock for runs to take turns on. */
export class World {
  readonly destination = new FakeDestination();
  readonly state: SqliteState;
  private runs = 0;
  private readonly config: Config = defaultConfig();

  constructor() {
    this.state = openSqliteStateForWriting(join(tempDir('referral-sync-model-'), 'state.db'));
  }

  async close(): Promise<void> {
    await this.state.close();
  }

  /** One run, as the CLI's `sync`, `backfill` or `retry` runs it (cli/commands/sync.ts, retry.ts), or a sync killed mid-way. */
  async run(step: Step): Promise<void> {
    this.runs += 1;
    const run = this.runs;
    // A minute between runs: what a run acknowledges is older than the next run's start.
    const now = new Date(Date.UTC(2026, 0, 1, 0, run));
    const { state } = this;
    await state.markCrashedRuns(PROGRAM, now);
    const client = this.destination.client(run, step.kind, step.faults);
    const queue = state.queue(PROGRAM);
    if (step.kind === 'retry') {
      const runId = await state.startRun('retry', PROGRAM, now);
      const rows: StoredDelivery[] = [];
      for await (const row of state.retryable(DESTINATIONS, PROGRAM, 'default')) rows.push(row);
      await requeueRetries(state, queue, rows, runId, now);
      const engine = this.engine(queue, runId, client, now);
      await engine.start();
      await engine.finish();
      await state.finishRun(runId, 'succeeded', {}, now);
      return;
    }
    const mode: PlanMode = step.kind === 'backfill' ? 'backfill' : 'sync';
    const backfillSince = mode === 'backfill' ? ((await state.unfinishedBackfillStart(PROGRAM)) ?? now) : undefined;
    const runId = await state.startRun(mode, PROGRAM, now);
    await reclaimLeftovers(queue, DESTINATIONS, now);
    const engine = this.engine(queue, runId, client, now);
    await engine.start();
    const people = participants(step.snapshot);
    const { directory, duplicates } = await scanDirectory(records(people), this.config.identity);
    const plan = planOperations(records(people), {
      config: this.config,
      destinations: [...DESTINATIONS],
      mode,
      resend: false,
      now,
      namespaces: NAMESPACES,
      directory,
      duplicates,
      baseline: state.baseline(runId),
      ...(backfillSince ? { backfillSince } : {}),
    });
    const metDead = new Set<string>();
    for await (const item of plan) {
      metDeadDelivery(item, metDead);
      if (item.type === 'operation') await engine.enqueue(item.operation);
    }
    directory.close();
    const finished = engine.finish();
    if (step.kind === 'crash') {
      // Killed once the destination stops answering (or, if it never does, once all is sent): no outcome is
      // recorded for what was in flight, and what is left stays in the queue; the run stays `running`.
      await Promise.race([client.hung, finished.then(() => undefined)]);
      engine.stop(0);
      await finished;
      return;
    }
    await finished;
    await supersedeAfterCompleteRead(state, PROGRAM, DESTINATIONS, runId, metDead, now);
    await state.finishRun(runId, 'succeeded', {}, now);
  }

  private engine(queue: ReturnType<SqliteState['queue']>, runId: number, client: ModelClient, now: Date): DeliveryEngine {
    return new DeliveryEngine({
      queue,
      runId,
      clients: new Map([[DESTINATION, client]]),
      limiters: new Map([[DESTINATION, new TokenBucket(1_000_000, 1_000_000, NO_WAIT)]]),
      retry: { maxAttempts: 2, baseDelayMs: 0, maxDelayMs: 0, maxRetryAfterMs: 0 },
      concurrency: new Map([[DESTINATION, 1]]),
      stallTimeoutMs: 60_000,
      stopGraceMs: 0,
      clock: NO_WAIT,
      now: () => now,
    });
  }

  /** What the state believes the destination holds for one person (the diff baseline). */
  believed(userId: string): TraitMap | undefined {
    return this.state.baseline().identity(DESTINATION, userId)?.traits;
  }
}
