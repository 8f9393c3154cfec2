import { describe, expect, it } from 'vitest';
import { DeliveryEngine } from '../../src/apply/engine.js';
import { TokenBucket } from '../../src/apply/limiter.js';
import type { DeliveryQueue, QueuedOperation } from '../../src/state/store.js';
import type { Destination } from '../../src/config/defaults.js';
import type { DeliveryOutcome, DestinationClient } from '../../src/destinations/types.js';
import type { DeliveryRef, Operation } from '../../src/plan/types.js';
import { UnavailableError } from '../../src/errors.js';
import type { DeliveryRow, IdentityWrite } from '../../src/state/store.js';
import { seededRandom } from '../fakes/http.js';

/**
 * A queue whose every call takes a while and lands later, as over a network: an enqueue's entries take their
 * positions only when it completes. What the engine must do with it: keep positions in planning order, lose no
 * wake-up, and write outcomes a batch per call.
 */
class SlowQueue implements DeliveryQueue {
  readonly programId = 'p1';
  readonly entries: QueuedOperation[] = [];
  readonly settled = new Map<string, DeliveryRow>();
  readonly settleCalls: number[] = [];
  readonly enqueued: string[] = [];
  private seq = 0;
  private readonly random = seededRandom(11);

  private latency(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.floor(this.random() * 3)));
  }

  async enqueue(operations: readonly Operation[]): Promise<void> {
    await this.latency();
    for (const operation of operations) {
      this.seq += 1;
      this.entries.push({ seq: this.seq, operation });
      this.enqueued.push(operation.key);
    }
  }

  /** Set: the next read of Segment's entries is held until it resolves (a read that is slow to come back). */
  holdNextRead: Promise<void> | undefined;
  readonly readStarted: Promise<void>;
  private markReadStarted!: () => void;

  constructor() {
    this.readStarted = new Promise((resolve) => (this.markReadStarted = resolve));
  }

  async queued(destination: Destination, afterSeq: number, limit: number): Promise<QueuedOperation[]> {
    // Read at the call, answered later: what is enqueued meanwhile is not in this answer.
    const rows = this.entries.filter((e) => e.operation.destination === destination && e.seq > afterSeq).slice(0, limit);
    const hold = destination === 'segment' ? this.holdNextRead : undefined;
    if (hold) {
      this.holdNextRead = undefined;
      this.markReadStarted();
    }
    await (hold ?? this.latency());
    return rows;
  }

  async settle(entries: readonly number[], rows: readonly DeliveryRow[], _identities: readonly IdentityWrite[]): Promise<void> {
    await this.latency();
    const done = new Set(entries);
    this.entries.splice(0, this.entries.length, ...this.entries.filter((e) => !done.has(e.seq)));
    for (const row of rows) {
      if (this.settled.has(`${row.destination}|${row.key}`)) throw new Error(`settled twice: ${row.key}`);
      this.settled.set(`${row.destination}|${row.key}`, row);
    }
    this.settleCalls.push(rows.length);
  }

  async lastSeq(): Promise<number> {
    await this.latency();
    return this.seq;
  }

  async waiting(destination: Destination): Promise<number> {
    await this.latency();
    return this.entries.filter((e) => e.operation.destination === destination).length;
  }

  async failQueued(): Promise<number> {
    throw new Error('not expected: nothing stalls here');
  }

  async requeue(_rows: readonly DeliveryRef[]): Promise<void> {
    throw new Error('not expected: nothing is retried here');
  }
}

/** A destination that takes everything, in batches of up to 50, after a short wait. */
function client(name: Destination, sent: string[]): DestinationClient {
  return {
    name,
    maxBatch: 50,
    maxBatchBytes: 1_000_000,
    cost: () => 1,
    send: async (operations): Promise<DeliveryOutcome[]> => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      sent.push(...operations.map((o) => o.key));
      return operations.map((o) => ({ key: o.key, verdict: { kind: 'sent' } }));
    },
    check: async () => ({ destination: name, ok: true, message: 'ok' }),
    close: async () => [],
  };
}

function operation(destination: Destination, i: number): Operation {
  return { destination, kind: 'track', event: 'joined', name: 'Joined', key: `k${i}`, userId: `u${i}`, participantId: `p${i}`, time: undefined, payload: {}, bytes: 10 };
}

function engineOver(queue: DeliveryQueue, sent: Record<Destination, string[]>): DeliveryEngine {
  return new DeliveryEngine({
    queue,
    runId: 1,
    clients: new Map([
      ['segment', client('segment', sent.segment)],
      ['customerio', client('customerio', sent.customerio)],
    ]),
    limiters: new Map([
      ['segment', new TokenBucket(1_000_000, 1_000_000)],
      ['customerio', new TokenBucket(1_000_000, 1_000_000)],
    ]),
    retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1 },
    concurrency: new Map([
      ['segment', 4],
      ['customerio', 2],
    ]),
    stallTimeoutMs: 60_000,
  });
}

describe('the engine over a queue whose calls are asynchronous', () => {
  it('sends every operation once, queued in planning order, and records outcomes a batch per call', async () => {
    const queue = new SlowQueue();
    const sent: Record<Destination, string[]> = { segment: [], customerio: [] };
    const engine = engineOver(queue, sent);
    await engine.start();
    const total = 2_345;
    const planned: string[] = [];
    for (let i = 0; i < total; i += 1) {
      const op = operation(i % 3 === 0 ? 'customerio' : 'segment', i);
      planned.push(op.key);
      await engine.enqueue(op);
      // The planner is not always this fast: now and then the senders catch up and wait for more.
      if (i % 700 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const reports = await engine.finish();
    expect(queue.enqueued).toEqual(planned);
    expect(queue.entries).toEqual([]);
    expect(queue.settled.size).toBe(total);
    expect(reports.get('segment')!.sent + reports.get('customerio')!.sent).toBe(total);
    expect(new Set([...sent.segment, ...sent.customerio]).size).toBe(total);
    // A batch of sent operations is one settle call: never one per operation.
    expect(queue.settleCalls.length).toBeLessThanOrEqual(Math.ceil(total / 50) + 10);
  });

  it('an enqueue written while a sender was reading the queue wakes it all the same', async () => {
    const queue = new SlowQueue();
    const sent: Record<Destination, string[]> = { segment: [], customerio: [] };
    let release!: () => void;
    queue.holdNextRead = new Promise((resolve) => (release = resolve));
    const engine = engineOver(queue, sent);
    await engine.start();
    await queue.readStarted;
    // A full batch is written while the first read (which found nothing) is still on its way back.
    for (let i = 0; i < 500; i += 1) await engine.enqueue(operation('segment', i));
    release();
    // The planner goes quiet for a while (a slow source page): the sender must not sleep through it.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(sent.segment).toHaveLength(500);
    await engine.finish();
  });

  it('a queue read that fails (the state lost mid-run) stops the run with that error: enqueue and finish() throw it, nothing is left unhandled', async () => {
    const queue = new SlowQueue();
    const lost = new UnavailableError('The PostgreSQL state lost its connection.');
    const read = queue.queued.bind(queue);
    let reads = 0;
    // The senders' reads go through first, then fail: the state went away between two of them.
    queue.queued = async (...args) => {
      reads += 1;
      if (reads > 3) throw lost;
      return read(...args);
    };
    const engine = engineOver(queue, { segment: [], customerio: [] });
    await engine.start();
    let thrown: unknown;
    for (let i = 0; i < 5_000 && thrown === undefined; i += 1) {
      try {
        await engine.enqueue(operation('segment', i));
      } catch (error) {
        thrown = error;
      }
      // Time for the senders to read (and fail) while the planner goes on: a rejection nobody handled would surface here.
      if (i % 100 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(thrown).toBe(lost);
    await expect(engine.finish()).rejects.toBe(lost);
  });

  it('a state fault under one destination stops every destination at once: another one hung on the wire gets no grace', async () => {
    const queue = new SlowQueue();
    const full = new Error('SQLITE_FULL: database or disk is full');
    const settle = queue.settle.bind(queue);
    // Segment's outcomes cannot be written (the state's disk is full); Customer.io's request never comes back.
    queue.settle = async (entries, rows, identities) => {
      if (rows.some((row) => row.destination === 'segment')) throw full;
      return settle(entries, rows, identities);
    };
    let onTheWire!: () => void;
    const sending = new Promise<void>((resolve) => (onTheWire = resolve));
    const hung: DestinationClient = { ...client('customerio', []), send: () => (onTheWire(), new Promise<DeliveryOutcome[]>(() => undefined)) };
    const engine = new DeliveryEngine({
      queue,
      runId: 1,
      clients: new Map([
        ['segment', client('segment', [])],
        ['customerio', hung],
      ]),
      limiters: new Map([
        ['segment', new TokenBucket(1_000_000, 1_000_000)],
        ['customerio', new TokenBucket(1_000_000, 1_000_000)],
      ]),
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1 },
      concurrency: new Map([
        ['segment', 1],
        ['customerio', 1],
      ]),
      stallTimeoutMs: 600_000,
      // Far past this test's timeout: were Customer.io given the grace, finish() would not return in time.
      stopGraceMs: 600_000,
    });
    await engine.start();
    await engine.enqueue(operation('customerio', 0));
    await sending;
    await Promise.resolve(engine.enqueue(operation('segment', 1))).catch(() => undefined);
    await expect(engine.finish()).rejects.toBe(full);
  }, 30_000);
});
