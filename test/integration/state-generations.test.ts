import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { Operation } from '../../src/plan/types.js';
import { openState } from '../../src/state/open.js';
import { PG_GENERATIONS_SINCE, PG_MIGRATIONS } from '../../src/state/postgres/schema.js';
import { MIGRATIONS } from '../../src/state/sqlite/schema.js';
import type { DeliveryRow, StateStore } from '../../src/state/store.js';
import { backends, postgresBackend, POSTGRES_SKIP_NOTE, withPostgres, type StateLocation } from '../support/backends.js';
import { tempDir } from '../support/cli.js';

/**
 * The state's side of guarantees 3 and 4 (issue 17), the same on both backends: each person's and account's newest
 * traits operation (generation, key), written when it is queued, superseding the one it replaces; an interrupted
 * run's queue taken back into the ledger; earlier failures a full read did not plan again superseded; and an older
 * state migrated, its failed identifies as generation 0.
 */

type SeedableStore = StateStore & { recordDeliveries(rows: readonly DeliveryRow[], now: Date): Promise<void> };

const NOW = new Date('2026-03-01T12:00:00Z');

function identify(key: string, generation: number | undefined, traits: Record<string, number> = { referral_count: generation ?? 0 }): Operation {
  return {
    kind: 'identify',
    destination: 'segment',
    key,
    userId: 'ann@x',
    participantId: 'a',
    payload: { type: 'identify', userId: 'ann@x', traits },
    bytes: 64,
    change: 'changed',
    changes: [],
    traits,
    traitsHash: `h-${key}`,
    tierChanges: 1,
    ...(generation === undefined ? {} : { generation }),
    ...(generation === 2 ? { tierMove: { from: 'active', to: 'power_referrer', count: 5, ordinal: 1 } } : {}),
  };
}

function track(key: string): Operation {
  return { kind: 'track', destination: 'segment', key, userId: 'ann@x', participantId: 'a', payload: { event: 'Joined' }, bytes: 32, event: 'joined', name: 'Joined', time: NOW };
}

const opened: { close(): Promise<void> }[] = [];
const locations: StateLocation[] = [];
afterEach(async () => {
  for (const state of opened.splice(0)) await state.close().catch(() => undefined);
  for (const location of locations.splice(0)) await location.drop();
});

const ANN = { destination: 'segment' as const, subject: 'identify' as const, id: 'ann@x' };

describe.each(backends())('generations and resends in the $name state', (backend) => {
  async function open(): Promise<SeedableStore> {
    const location = await backend.fresh();
    locations.push(location);
    const state = (await openState(location.location, { mode: 'write' })) as SeedableStore;
    opened.push(state);
    return state;
  }

  it('records the newest identify when it is queued; a newer one supersedes it and takes it out of the queue; an older one put back changes nothing', async () => {
    const state = await open();
    const queue = state.queue('p1');
    const runId = await state.startRun('sync', 'p1', NOW);
    await queue.enqueue([identify('g1', 1), track('t1')], runId, NOW);
    expect(await state.generations([ANN])).toEqual([{ ...ANN, generation: 1, key: 'g1' }]);
    // Generation 1 waits; generation 2 replaces it: superseded, never sent.
    await queue.enqueue([identify('g2', 2)], runId, NOW);
    expect(await state.generations([ANN])).toEqual([{ ...ANN, generation: 2, key: 'g2', tierMove: { from: 'active', to: 'power_referrer', count: 5, ordinal: 1 } }]);
    expect((await queue.queued('segment', 0, 10)).map((entry) => entry.operation.key)).toEqual(['t1', 'g2']);
    const statuses = await state.deliveryStatuses(['g1', 'g2', 't1'].map((key) => ({ destination: 'segment' as const, key })));
    expect(Object.fromEntries(statuses.map((s) => [s.key, s.status]))).toEqual({ g1: 'superseded', g2: 'pending', t1: 'pending' });
    // The planner's view answers the same (PostgreSQL's once loaded, as plan-run loads it).
    const view = state.baseline();
    await view.prefetch?.identities([{ destination: 'segment', userId: 'ann@x' }]);
    expect(view.generation?.('segment', 'identify', 'ann@x')).toMatchObject({ generation: 2, key: 'g2' });

    // An older one put back (retry) or one from an older version (no generation): the newest stays.
    await queue.enqueue([identify('g1', 1), identify('legacy', undefined)], runId, NOW);
    expect(await state.generations([ANN])).toMatchObject([{ generation: 2, key: 'g2' }]);
  });

  it('takes an interrupted run\'s queue back into the ledger, and supersedes the earlier failures a later full read did not plan again', async () => {
    const state = await open();
    const queue = state.queue('p1');
    // An earlier run failed `old`; a later one was killed with three operations queued.
    const earlier = await state.startRun('sync', 'p1', NOW);
    await queue.enqueue([track('old')], earlier, NOW);
    expect(await queue.failQueued('segment', 'HTTP 503', earlier, NOW)).toBe(1);
    const killed = await state.startRun('sync', 'p1', NOW);
    await queue.enqueue([identify('g1', 1), track('t1'), track('t2')], killed, NOW);

    const next = await state.startRun('sync', 'p1', NOW);
    expect(await queue.reclaim('segment', 'interrupted', NOW)).toBe(3);
    expect(await queue.waiting('segment')).toBe(0);
    const failed = await state.failedDeliveries('p1', ['segment']);
    expect(failed.map((row) => [row.key, row.lastError, (JSON.parse(row.payload!) as Operation).key])).toEqual(
      expect.arrayContaining([
        ['g1', 'interrupted', 'g1'],
        ['t1', 'interrupted', 't1'],
      ]),
    );
    // This run plans t1 again (the source still shows it) and fails t2's replacement itself; the rest is superseded.
    await queue.enqueue([track('t1'), track('mine')], next, NOW);
    await state.recordDeliveries([{ destination: 'segment', key: 'mine', kind: 'joined', userId: 'ann@x', status: 'failed', error: 'HTTP 503', runId: next }], NOW);
    expect(await state.supersedeUnplanned('p1', ['segment'], next, 'not shown', NOW)).toBe(3);
    const statuses = await state.deliveryStatuses(['g1', 't1', 't2', 'old', 'mine'].map((key) => ({ destination: 'segment' as const, key })));
    expect(Object.fromEntries(statuses.map((s) => [s.key, s.status]))).toEqual({ g1: 'superseded', t1: 'pending', t2: 'superseded', old: 'superseded', mine: 'failed' });
    expect(await state.supersedeUnplanned('p1', ['customerio'], next, 'not shown', NOW)).toBe(0);
  });
});

describe('a state an older version wrote', () => {
  it('SQLite: migrates, and the newest failed or pending identify of each person is generation 0 (an account\'s object too)', async () => {
    const path = join(tempDir(), 'state.db');
    const db = new Database(path);
    // The schema just before the generations table (later migrations come after it).
    const before = MIGRATIONS.findIndex((sql) => sql.includes('CREATE TABLE generations'));
    for (let index = 0; index < before; index += 1) db.exec(MIGRATIONS[index]!);
    db.pragma(`user_version = ${before}`);
    seedLegacyLedger((sql, values) => db.prepare(sql).run(...values));
    db.close();
    const state = await openState(path, { mode: 'write' });
    opened.push(state);
    expect(await legacyGenerations(state)).toEqual(LEGACY_GENERATIONS);
  });

  const postgres = postgresBackend();
  it.skipIf(!postgres)(`PostgreSQL: the same (${postgres ? 'REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, async () => {
    const location = await postgres!.fresh();
    locations.push(location);
    const schema = new URL(location.location).searchParams.get('schema')!;
    await withPostgres(async (client) => {
      await client.query(`CREATE SCHEMA ${schema}`);
      await client.query(`SET search_path TO ${schema}`);
      // The schema just before the generations table (later migrations come after it).
      for (let index = 0; index < PG_GENERATIONS_SINCE - 1; index += 1) await client.query(PG_MIGRATIONS[index]!);
      await client.query('CREATE TABLE schema_version (version integer NOT NULL)');
      await client.query('INSERT INTO schema_version (version) VALUES ($1)', [PG_GENERATIONS_SINCE - 1]);
      const pending: Promise<unknown>[] = [];
      seedLegacyLedger((sql, values) => pending.push(client.query(sql.replace(/\?/g, (_, offset: number) => `$${sql.slice(0, offset).split('?').length}`), values)));
      await Promise.all(pending);
    });
    const state = await openState(location.location, { mode: 'write' });
    opened.push(state);
    expect(await legacyGenerations(state)).toEqual(LEGACY_GENERATIONS);
  });
});

/** Ledger rows an older version left: Ann's identify failed twice (the later one counts), Bo's sent, an object pending. */
function seedLegacyLedger(run: (sql: string, values: unknown[]) => void): void {
  const insert = `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, payload, run_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, 1, ?, ?)`;
  run(insert, ['segment', 'ann-old', 'identify', 'ann@x', 'failed', '{}', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z']);
  run(insert, ['segment', 'ann-new', 'identify', 'ann@x', 'failed', '{}', '2025-01-02T00:00:00Z', '2025-01-02T00:00:00Z']);
  run(insert, ['segment', 'bo-sent', 'identify', 'bo@x', 'sent', null, '2025-01-02T00:00:00Z', '2025-01-02T00:00:00Z']);
  run(insert, ['customerio', 'acme-object', 'object', 'acme', 'pending', null, '2025-01-03T00:00:00Z', '2025-01-03T00:00:00Z']);
}

const LEGACY_GENERATIONS = [
  { destination: 'segment', subject: 'identify', id: 'ann@x', generation: 0, key: 'ann-new' },
  { destination: 'customerio', subject: 'account', id: 'acme', generation: 0, key: 'acme-object' },
];

async function legacyGenerations(state: Pick<StateStore, 'generations'>): Promise<unknown[]> {
  const rows = await state.generations([
    { destination: 'segment', subject: 'identify', id: 'ann@x' },
    { destination: 'segment', subject: 'identify', id: 'bo@x' },
    { destination: 'customerio', subject: 'account', id: 'acme' },
  ]);
  return rows.sort((a, b) => b.destination.localeCompare(a.destination));
}
