import { afterEach, describe, expect, it } from 'vitest';
import type { Operation } from '../../src/plan/types.js';
import { openState } from '../../src/state/open.js';
import { groupProblems } from '../../src/state/problem-groups.js';
import type { DeliveryRow, ProblemCount, StateStore } from '../../src/state/store.js';
import { backends, type StateLocation } from '../support/backends.js';

const T0 = new Date('2026-03-01T12:00:00Z');

function track(destination: 'segment' | 'customerio', userId: string, key: string): Operation {
  return { kind: 'track', destination, key, userId, participantId: userId, payload: { event: 'Referral Joined' }, bytes: 32, event: 'joined', name: 'Referral Joined', time: T0 };
}

const opened: StateStore[] = [];
const locations: StateLocation[] = [];
afterEach(async () => {
  for (const state of opened.splice(0)) await state.close().catch(() => undefined);
  for (const location of locations.splice(0)) await location.drop();
});

/** Queues `count` events of one program and destination in a run of its own and settles them with `outcome(i)`. */
async function settled(
  state: StateStore,
  program: string,
  destination: 'segment' | 'customerio',
  count: number,
  outcome: (i: number) => { status: DeliveryRow['status']; error?: string },
  at: Date,
): Promise<number> {
  const runId = await state.startRun('sync', program, at);
  const queue = state.queue(program);
  const operations = Array.from({ length: count }, (_, i) => track(destination, `${program}-${destination}-${i}@example.com`, `${program}:${destination}:${i}`));
  await queue.enqueue(operations, runId, at);
  const queued = await queue.queued(destination, 0, count + 10);
  const rows = queued.map(({ operation }, i): DeliveryRow => {
    const { status, error } = outcome(i);
    return { destination, key: operation.key, kind: operation.kind, userId: operation.userId, status, ...(error ? { error } : {}), runId };
  });
  // Each row a millisecond apart, so the newest of a group is known.
  for (let i = 0; i < queued.length; i += 1) await queue.settle([queued[i]!.seq], [rows[i]!], [], new Date(at.getTime() + i));
  return runId;
}

async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe.each(backends())('failed and dead deliveries counted by the $name state', (backend) => {
  async function open(): Promise<StateStore> {
    const location = await backend.fresh();
    locations.push(location);
    const state = await openState(location.location, { mode: 'write' });
    opened.push(state);
    return state;
  }

  it('counts by program, destination, status and exact reason; the fold groups reasons that differ in a detail', async () => {
    const state = await open();
    // p1 → Customer.io: 40 refused, each reason naming its person; 10 sent. p1 → Segment: 7 failed after a varying number of attempts.
    const first = await settled(state, 'p1', 'customerio', 50, (i) => (i < 40 ? { status: 'dead', error: `Customer.io refused it: p1-customerio-${i}@example.com is not valid` } : { status: 'sent' }), T0);
    await settled(state, 'p1', 'segment', 7, (i) => ({ status: 'failed', error: `Segment: [503] unavailable (gave up after ${i + 2} attempts)` }), new Date(T0.getTime() + 60_000));
    // Another program's deliveries are its own.
    await settled(state, 'p2', 'customerio', 3, () => ({ status: 'dead', error: 'Customer.io refused it: name is required' }), T0);

    const counts: ProblemCount[] = await all(state.problemCounts({ programId: 'p1' }));
    // Exact reasons: the state's GROUP BY gives one row per distinct message.
    expect(counts).toHaveLength(47);
    expect(counts.reduce((sum, c) => sum + c.count, 0)).toBe(47);

    const p1 = await groupProblems(state.problemCounts({ programId: 'p1' }));
    expect({ total: p1.total, dead: p1.dead, failed: p1.failed }).toEqual({ total: 47, dead: 40, failed: 7 });
    expect(p1.groups.map((g) => [g.programId, g.destination, g.status, g.count, g.reason])).toEqual([
      ['p1', 'customerio', 'dead', 40, 'Customer.io refused it: <email> is not valid'],
      ['p1', 'segment', 'failed', 7, 'Segment: [503] unavailable (gave up after <n> attempts)'],
    ]);
    // The example is the newest delivery of the group, with its own reason.
    expect(p1.groups[0]!.example).toMatchObject({ userId: 'p1-customerio-39@example.com', kind: 'joined', key: 'p1:customerio:39', lastError: 'Customer.io refused it: p1-customerio-39@example.com is not valid' });
    expect(p1.groups[1]!.example).toMatchObject({ userId: 'p1-segment-6@example.com', lastError: 'Segment: [503] unavailable (gave up after 8 attempts)' });

    const everything = await groupProblems(state.problemCounts());
    expect(everything.total).toBe(50);
    expect(everything.groups.map((g) => [g.programId, g.destination, g.count])).toEqual([
      ['p1', 'customerio', 40],
      ['p1', 'segment', 7],
      ['p2', 'customerio', 3],
    ]);
    // Leaving out one run's rows (a run's own failures are in its own counts).
    const notFirst = await groupProblems(state.problemCounts({ programId: 'p1', notRunId: first }));
    expect(notFirst.groups.map((g) => [g.destination, g.count])).toEqual([['segment', 7]]);
  });

  it('reads past a page of groups: 600 distinct reasons (more than a page)', async () => {
    const state = await open();
    await settled(state, 'p1', 'customerio', 600, (i) => ({ status: 'dead', error: `refused: attribute value is ${1000 + i} bytes` }), T0);
    const counts = await all(state.problemCounts());
    expect(counts).toHaveLength(600);
    expect(new Set(counts.map((c) => c.lastError)).size).toBe(600);
    const grouped = await groupProblems(state.problemCounts());
    expect(grouped.groups).toEqual([expect.objectContaining({ count: 600, reason: 'refused: attribute value is <n> bytes' })]);
  });
});
