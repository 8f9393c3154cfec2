import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import type { Participant } from '../../src/model/participant.js';
import { scanDirectory } from '../../src/model/referrer-directory.js';
import type { PlanContext } from '../../src/plan/context.js';
import { planOperations } from '../../src/plan/planner.js';
import { withBaselineLoaded } from '../../src/plan/prefetch.js';
import { issuedGeneration, type BaselineView, type DeliveryRef, type DeliveryStatus, type GenerationRef, type IdentityRef, type Operation, type PlanItem, type PlanMode } from '../../src/plan/types.js';
import { ledgerAnswer, PrefetchedBaseline, type BaselineRows } from '../../src/state/baseline.js';
import type { StoredAccount, StoredGeneration, StoredIdentity, StoredStatus } from '../../src/state/store.js';
import { participant, records } from '../support/participants.js';
import { PLAN_NOW, planItems } from '../support/planner.js';

const RUN_ID = 7;

/** A state in memory, read the two ways a backend can be: directly, or in bulk by an async backend. */
class MemoryState implements BaselineRows {
  readonly identityRows = new Map<string, StoredIdentity>();
  readonly statusRows = new Map<string, StoredStatus>();
  readonly generationRows = new Map<string, StoredGeneration>();
  /** Every bulk read, for checking that each chunk is read once and holds only its own rows. */
  readonly reads: { identities: number; deliveries: number; generations?: number }[] = [];

  acknowledge(plan: PlanItem[], at: Date): void {
    for (const op of operations(plan)) {
      this.issue(op);
      this.setStatus(op, 'sent', 1);
      if (op.kind === 'identify') {
        this.identityRows.set(`${op.destination}|${op.userId}`, { destination: op.destination, userId: op.userId, traits: op.traits, hash: op.traitsHash, acknowledgedAt: at, tierChanges: op.tierChanges });
      }
    }
  }

  /** What queueing an operation records: an identify becomes its person's newest generation. */
  issue(op: Operation): void {
    const issued = issuedGeneration(op);
    if (issued) this.generationRows.set(`${issued.destination}|${issued.subject}|${issued.id}`, issued);
  }

  async generations(refs: readonly GenerationRef[]): Promise<StoredGeneration[]> {
    await Promise.resolve();
    this.reads.push({ identities: 0, deliveries: 0, generations: refs.length });
    return refs.flatMap((ref) => this.generationRows.get(`${ref.destination}|${ref.subject}|${ref.id}`) ?? []);
  }

  setStatus(ref: DeliveryRef, status: DeliveryStatus, runId: number | null): void {
    this.statusRows.set(`${ref.destination}|${ref.key}`, { destination: ref.destination, key: ref.key, status, runId });
  }

  async identities(refs: readonly IdentityRef[]): Promise<StoredIdentity[]> {
    await Promise.resolve();
    this.reads.push({ identities: refs.length, deliveries: 0 });
    return refs.flatMap((ref) => this.identityRows.get(`${ref.destination}|${ref.userId}`) ?? []);
  }

  async deliveryStatuses(refs: readonly DeliveryRef[]): Promise<StoredStatus[]> {
    await Promise.resolve();
    this.reads.push({ identities: 0, deliveries: refs.length });
    return refs.flatMap((ref) => this.statusRows.get(`${ref.destination}|${ref.key}`) ?? []);
  }

  async accounts(): Promise<StoredAccount[]> {
    return [];
  }

  /** The synchronous view SQLite gives: every question answered from the whole state. */
  direct(): BaselineView {
    return {
      identity: (destination, userId) => {
        const row = this.identityRows.get(`${destination}|${userId}`);
        return row && { traits: row.traits, hash: row.hash, acknowledgedAt: row.acknowledgedAt, tierChanges: row.tierChanges };
      },
      delivery: (destination, key) => {
        const row = this.statusRows.get(`${destination}|${key}`);
        return row && ledgerAnswer(row.status, row.runId, RUN_ID);
      },
      account: () => undefined,
      generation: (destination, subject, id) => {
        const row = this.generationRows.get(`${destination}|${subject}|${id}`);
        return row && { generation: row.generation, key: row.key, ...(row.tierMove ? { tierMove: row.tierMove } : {}) };
      },
    };
  }
}

const operations = (items: PlanItem[]): Operation[] => items.flatMap((i) => (i.type === 'operation' ? [i.operation] : []));

/** Plans like plan-run does: a directory pass, then the planner over the records as withBaselineLoaded hands them on. */
async function planChunked(people: Participant[], baseline: BaselineView, options: { chunkSize: number; mode?: PlanMode; backfillSince?: Date }): Promise<PlanItem[]> {
  const config = defaultConfig();
  const { directory, duplicates } = await scanDirectory(records(people), config.identity);
  const context: PlanContext = {
    config,
    destinations: ['segment', 'customerio'],
    mode: options.mode ?? 'sync',
    resend: false,
    now: PLAN_NOW,
    namespaces: { segment: 'ns/segment/-', customerio: 'ns/customerio/-' },
    directory,
    duplicates,
    baseline,
    ...(options.backfillSince ? { backfillSince: options.backfillSince } : {}),
  };
  const items: PlanItem[] = [];
  for await (const item of planOperations(withBaselineLoaded(records(people), context, { chunkSize: options.chunkSize }), context)) items.push(item);
  directory.close();
  return items;
}

/** Referrals by id and by email, a referrer left out of the data, a self-referral, a user id taken twice, rewards. */
function program(referralCount: (i: number) => number): Participant[] {
  const people: Participant[] = [];
  for (let i = 0; i < 23; i += 1) {
    people.push(
      participant({
        id: `p${i}`,
        email: `person${i}@example.com`,
        referralCount: referralCount(i),
        ...(i > 0 && i % 3 === 0 ? { referrerId: `p${i - 3}`, referralStatus: 'converted' as const, convertedAt: new Date('2025-06-01T00:00:00Z') } : {}),
        ...(i % 5 === 1 ? { referrerId: `person${i + 1}@example.com` } : {}),
        ...(i === 7 ? { referrerId: 'gone@example.com' } : {}),
        ...(i === 8 ? { referrerId: 'p8' } : {}),
        ...(i % 4 === 2 ? { rewards: [{ id: `rw${i}`, status: 'FULFILLED', isReferrer: true, at: new Date('2025-06-02T00:00:00Z') }] } : {}),
      }),
    );
  }
  // The same user id as p0: planned once, the second reported.
  people.push(participant({ id: 'twin', email: 'PERSON0@example.com ' }));
  return people;
}

describe('planning a chunk at a time over a prefetched baseline', () => {
  it('plans exactly what the direct baseline plans, whatever the chunk size', async () => {
    const first = program((i) => i % 6);
    const state = new MemoryState();
    state.acknowledge(await planItems(first.slice(0, 15)), new Date('2026-01-01T00:00:00Z'));
    // Tiers move, new people arrive, one event was refused for good, one identify was sent by this very run.
    const next = program((i) => (i % 6) + (i % 2 === 0 ? 3 : 0));
    const planned = operations(await planItems(next));
    state.setStatus(planned.find((o) => o.kind === 'track')!, 'dead', 1);
    state.setStatus(planned.find((o) => o.kind === 'track' && o.destination === 'customerio')!, 'sent', RUN_ID);
    const identify = planned.find((o) => o.kind === 'identify' && o.userId === 'person20@example.com')!;
    state.issue(identify);
    state.setStatus(identify, 'dead', 1);

    const direct = await planChunked(next, state.direct(), { chunkSize: 1_000 });
    expect(direct.some((i) => i.type === 'operation' && i.operation.kind === 'track' && i.operation.event === 'tierChanged')).toBe(true);
    expect(direct.some((i) => i.type === 'deduped' && i.status === 'sentThisRun')).toBe(true);
    expect(direct.some((i) => i.type === 'deduped' && i.event === 'identify' && i.status === 'dead')).toBe(true);
    expect(direct.some((i) => i.type === 'unchanged')).toBe(true);
    for (const chunkSize of [1, 4, 7, 500]) {
      expect(await planChunked(next, new PrefetchedBaseline(state, RUN_ID), { chunkSize })).toEqual(direct);
    }
  });

  it('a backfill resuming a crashed one plans the same too', async () => {
    const people = program((i) => i % 4);
    const state = new MemoryState();
    state.acknowledge(await planItems(people.slice(0, 10)), new Date('2026-02-01T00:00:00Z'));
    const options = { mode: 'backfill' as const, backfillSince: new Date('2026-01-15T00:00:00Z') };
    const direct = await planChunked(people, state.direct(), { chunkSize: 1_000, ...options });
    expect(await planChunked(people, new PrefetchedBaseline(state, RUN_ID), { chunkSize: 3, ...options })).toEqual(direct);
  });

  it('reads each chunk in three bulk reads and keeps only that chunk', async () => {
    const people = program(() => 0);
    const state = new MemoryState();
    await planChunked(people, new PrefetchedBaseline(state), { chunkSize: 10 });
    // 24 records: chunks of 10, 10 and 4; identities and their generations, then ledger rows, for each.
    const kind = (r: (typeof state.reads)[number]): string => (r.identities > 0 ? 'identities' : r.generations !== undefined ? 'generations' : 'deliveries');
    expect(state.reads.map(kind)).toEqual(['identities', 'generations', 'deliveries', 'identities', 'generations', 'deliveries', 'identities', 'generations', 'deliveries']);
    expect(state.reads.map((r) => r.identities + (r.generations ?? 0))[6]).toBe(8);
  });

  it('a question about a row that was not loaded fails loudly instead of planning it as new', () => {
    const baseline = new PrefetchedBaseline(new MemoryState());
    expect(() => baseline.delivery('segment', 'k1')).toThrow(/internal: the planner asked for the ledger row k1 at segment, which was not loaded/);
    expect(() => baseline.identity('segment', 'a@example.com')).toThrow(/not loaded/);
  });
});
