import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tierOf, userIdOf, World, type Fault, type Received, type RunKind, type Snapshot, type Step } from '../support/ledger-model.js';

/**
 * Guarantees 3 and 4 as properties of the planner and the ledger (issue 17), over any history: the source's
 * snapshots (referral counts going up, down and back, participants appearing and disappearing), runs killed
 * mid-way, and operations refused, failed or lost in flight (applied by the destination, recorded failed), against
 * a destination that drops a messageId it has already applied, as Segment does. After a final healthy `retry` and
 * `sync`:
 * - converged: the destination holds what the last snapshot says, and the state believes what the destination holds;
 * - one id, one operation: no messageId was ever sent with two different contents;
 * - what is sent is still true: every identify and Referral Tier Changed a run that reads the source sends says
 *   what that run read (nothing older), and nothing is sent about someone the source no longer has; a `retry`,
 *   which reads no source, sends nothing that the last complete read (a sync or backfill not killed) did not show;
 * - nothing stale waits for `retry` (which reads no source): once a healthy sync read the whole source, every
 *   earlier failure was either sent again or superseded.
 */

const PEOPLE = ['p0', 'p1', 'p2'];
/** Counts that cross every tier boundary, so tiers go up, down and back. */
const COUNTS = [0, 1, 4, 5, 10];

const snapshotArb: fc.Arbitrary<Snapshot> = fc
  .tuple(...PEOPLE.map(() => fc.option(fc.constantFrom(...COUNTS), { nil: undefined, freq: 5 })))
  .map((counts) => Object.fromEntries(PEOPLE.map((id, i) => [id, counts[i]])));

const faultArb: fc.Arbitrary<Fault> = fc.constantFrom<Fault>('ok', 'ok', 'refuse', 'fail', 'lost', 'lost');

const stepArb: fc.Arbitrary<Step> = fc.record({
  kind: fc.constantFrom<RunKind>('sync', 'sync', 'sync', 'backfill', 'retry', 'crash'),
  snapshot: snapshotArb,
  faults: fc.array(faultArb, { maxLength: 10 }),
});

interface History {
  steps: Step[];
  final: Snapshot;
}

const historyArb: fc.Arbitrary<History> = fc.record({ steps: fc.array(stepArb, { minLength: 1, maxLength: 6 }), final: snapshotArb });

/**
 * Runs a history, then healthy runs over the final snapshot: `retry` (what was refused for good goes only through
 * it) and `sync`, or only `sync`. Returns the world and the snapshot each run read.
 */
async function play(history: History, healthy: readonly RunKind[] = ['retry', 'sync']): Promise<{ world: World; snapshots: Map<number, Snapshot> }> {
  const world = new World();
  const snapshots = new Map<number, Snapshot>();
  const runs: Step[] = [...history.steps, ...healthy.map((kind) => ({ kind, snapshot: history.final, faults: [] }))];
  // The source the last run that read it in full read (a killed run read part of it: after one, none is known).
  let complete: Snapshot | undefined;
  for (const [index, step] of runs.entries()) {
    // A retry reads no source: what it sends must agree with the last source a sync or backfill read in full.
    const read = step.kind === 'retry' ? complete : step.snapshot;
    if (step.kind !== 'retry') complete = step.kind === 'crash' ? undefined : step.snapshot;
    if (read !== undefined) snapshots.set(index + 1, read);
    await world.run(step);
  }
  return { world, snapshots };
}

/** The first message id that was sent with two different contents, if any. */
function reusedId(received: readonly Received[]): string | undefined {
  const contents = new Map<string, string>();
  for (const message of received) {
    const earlier = contents.get(message.key);
    if (earlier !== undefined && earlier !== message.content) return `${message.key.slice(0, 12)}… sent as ${earlier} and as ${message.content}`;
    contents.set(message.key, message.content);
  }
  return undefined;
}

/** Messages a run that reads the source sent that do not say what that run read. */
function untrue(received: readonly Received[], snapshots: ReadonlyMap<number, Snapshot>): string[] {
  const out: string[] = [];
  for (const message of received) {
    // A retry with no complete read before it (none yet, or a killed run since) has nothing to agree with.
    const snapshot = snapshots.get(message.run);
    if (snapshot === undefined) continue;
    const person = Object.keys(snapshot).find((id) => userIdOf(id) === message.operation.userId);
    const count = person === undefined ? undefined : snapshot[person];
    const { operation } = message;
    if (count === undefined) {
      out.push(`run ${message.run} sent ${operation.kind} about ${operation.userId}, whom its source does not have`);
    } else if (operation.kind === 'identify') {
      const traits = (operation.payload as { traits: Record<string, unknown> }).traits;
      if (traits.referral_count !== count) out.push(`run ${message.run} sent referral_count ${String(traits.referral_count)} for ${operation.userId}; its source said ${count}`);
    } else if (operation.kind === 'track' && operation.event === 'tierChanged') {
      const tier = (operation.payload as { properties: { tier: string } }).properties.tier;
      if (tier !== tierOf(count)) out.push(`run ${message.run} sent a move to ${tier} for ${operation.userId}; its source said ${tierOf(count)}`);
    }
  }
  return out;
}

/** People whose traits at the destination, or in the state's belief, are not what the last snapshot says. */
function diverged(world: World, final: Snapshot): string[] {
  const out: string[] = [];
  for (const [id, count] of Object.entries(final)) {
    if (count === undefined) continue;
    const userId = userIdOf(id);
    const held = world.destination.profiles.get(userId);
    const believed = world.believed(userId);
    const expected = { referral_count: count, referral_tier: tierOf(count) };
    const pick = (traits: Record<string, unknown> | undefined): unknown => traits && { referral_count: traits.referral_count, referral_tier: traits.referral_tier };
    if (JSON.stringify(pick(held)) !== JSON.stringify(expected)) out.push(`${userId}: the destination holds ${JSON.stringify(pick(held))}, the source says ${JSON.stringify(expected)}`);
    if (JSON.stringify(pick(believed)) !== JSON.stringify(pick(held))) out.push(`${userId}: the state believes ${JSON.stringify(pick(believed))}, the destination holds ${JSON.stringify(pick(held))}`);
  }
  return out;
}

const RUNS = Number(process.env.LEDGER_PROPERTY_RUNS ?? 100);

describe('ids and resends over any history of snapshots and faults (guarantees 3 and 4)', () => {
  it('converges on the last snapshot, never sends one id for two contents, and sends only what the source shows', async () => {
    await fc.assert(
      fc.asyncProperty(historyArb, async (history) => {
        const { world, snapshots } = await play(history);
        try {
          const received = world.destination.received;
          expect(reusedId(received)).toBeUndefined();
          expect(untrue(received, snapshots)).toEqual([]);
          expect(diverged(world, history.final)).toEqual([]);
          expect(await world.state.failedDeliveries('camp1', ['segment'])).toEqual([]);
        } finally {
          await world.close();
        }
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  // The examples, as fixed histories through the same model.
  it('a backfill resends the identify with 5 and its tier move that a sync could not deliver, same ids, while the source still shows them', async () => {
    const history: History = { steps: [{ kind: 'sync', snapshot: { p0: 4 }, faults: [] }, { kind: 'sync', snapshot: { p0: 5 }, faults: ['fail', 'fail'] }], final: { p0: 5 } };
    const { world, snapshots } = await play(history, ['backfill', 'sync']);
    try {
      expect(untrue(world.destination.received, snapshots)).toEqual([]);
      expect(diverged(world, history.final)).toEqual([]);
      const failed = world.destination.received.filter((m) => m.run === 2);
      const backfill = world.destination.received.filter((m) => m.run === 3);
      expect(backfill.map((m) => [m.key, m.applied])).toEqual([...new Set(failed.map((m) => m.key))].map((key) => [key, true]));
      expect(world.destination.received.filter((m) => m.run === 4)).toEqual([]);
    } finally {
      await world.close();
    }
  });

  it.each<[string, History, (world: World) => void]>([
    [
      '4 → 5 → 4 over three syncs: three identifies, three ids, and the destination keeps 4',
      { steps: [{ kind: 'sync', snapshot: { p0: 4 }, faults: [] }, { kind: 'sync', snapshot: { p0: 5 }, faults: [] }], final: { p0: 4 } },
      (world) => {
        const identifies = world.destination.received.filter((m) => m.operation.kind === 'identify');
        expect(new Set(identifies.map((m) => m.key)).size).toBe(3);
        expect(identifies.every((m) => m.applied)).toBe(true);
      },
    ],
    [
      '4 sent, the identify with 5 fails, the source goes back to 4: neither 5 nor its tier move is sent again; 4 is, under a new id (5 may have been applied)',
      { steps: [{ kind: 'sync', snapshot: { p0: 4 }, faults: [] }, { kind: 'sync', snapshot: { p0: 5 }, faults: ['fail', 'fail'] }], final: { p0: 4 } },
      (world) => {
        const last = world.destination.received.filter((m) => m.run === 3);
        expect(last.filter((m) => m.operation.kind === 'track')).toEqual([]);
        expect(last.map((m) => (m.operation.payload as { traits?: { referral_count?: number } }).traits?.referral_count)).toEqual([4]);
        const first = world.destination.received.find((m) => m.run === 1 && m.operation.kind === 'identify')!;
        expect(last[0]!.key).not.toBe(first.key);
      },
    ],
    [
      'the identify with 5 is lost in flight (applied, recorded failed) and the source goes back to 4: 4 is sent again, under a new id',
      { steps: [{ kind: 'sync', snapshot: { p0: 4 }, faults: [] }, { kind: 'sync', snapshot: { p0: 5 }, faults: ['lost'] }], final: { p0: 4 } },
      (world) => {
        const fours = world.destination.received.filter((m) => m.operation.kind === 'identify' && (m.operation.payload as { traits: { referral_count: number } }).traits.referral_count === 4);
        expect(fours).toHaveLength(2);
        expect(new Set(fours.map((m) => m.key)).size).toBe(2);
      },
    ],
    [
      'a sync killed after 5 was applied but before it was recorded, the source still at 5: resumed with the same id',
      { steps: [{ kind: 'sync', snapshot: { p0: 4 }, faults: [] }, { kind: 'crash', snapshot: { p0: 5 }, faults: ['lost'] }], final: { p0: 5 } },
      (world) => {
        const fives = world.destination.received.filter((m) => m.operation.kind === 'identify' && (m.operation.payload as { traits: { referral_count: number } }).traits.referral_count === 5);
        expect(new Set(fives.map((m) => m.key)).size).toBe(1);
      },
    ],
    [
      'a sync killed after the identify that moves the tier was acknowledged but before its Referral Tier Changed went: the next sync sends it, same id',
      { steps: [{ kind: 'sync', snapshot: { p0: 4 }, faults: [] }, { kind: 'crash', snapshot: { p0: 5 }, faults: ['ok', 'fail'] }], final: { p0: 5 } },
      (world) => {
        const moves = world.destination.received.filter((m) => m.operation.kind === 'track' && m.operation.event === 'tierChanged');
        expect(moves.map((m) => [m.run, m.applied])).toEqual([
          [2, false],
          [3, true],
        ]);
        expect(moves[1]!.key).toBe(moves[0]!.key);
      },
    ],
    [
      'the identify with 5 goes through but its Referral Tier Changed fails, twice, the count moving within the tier meanwhile: that event still goes, once',
      {
        steps: [
          { kind: 'sync', snapshot: { p0: 4 }, faults: [] },
          // The identify with 5 goes through, its Referral Tier Changed fails; then 5 → 6 with that event failing again.
          { kind: 'sync', snapshot: { p0: 5 }, faults: ['ok', 'fail'] },
          { kind: 'sync', snapshot: { p0: 6 }, faults: ['ok', 'fail'] },
        ],
        final: { p0: 6 },
      },
      (world) => {
        const moves = world.destination.received.filter((m) => m.operation.kind === 'track' && m.operation.event === 'tierChanged');
        expect(new Set(moves.map((m) => m.key)).size).toBe(1);
        expect(moves.filter((m) => m.applied).map((m) => m.run)).toEqual([4]);
      },
    ],
  ])('%s', async (_name, history, check) => {
    const { world, snapshots } = await play(history, ['sync']);
    try {
      expect(reusedId(world.destination.received)).toBeUndefined();
      expect(untrue(world.destination.received, snapshots)).toEqual([]);
      expect(diverged(world, history.final)).toEqual([]);
      check(world);
    } finally {
      await world.close();
    }
  });
});
