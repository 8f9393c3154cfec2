import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode, LockedError } from '../../src/errors.js';
import type { Operation } from '../../src/plan/types.js';
import { PrefetchedBaseline } from '../../src/state/baseline.js';
import { lockHolderState } from '../../src/state/locks.js';
import { openState } from '../../src/state/open.js';
import type { DeliveryRow, IdentityWrite, StateStore } from '../../src/state/store.js';
import { backends, type StateLocation } from '../support/backends.js';
import { ROOT } from '../support/cli.js';

/** The seeding methods both backends have beside the StateStore interface (tests write a history with them). */
type SeedableStore = StateStore & {
  saveIdentities(writes: readonly IdentityWrite[], now: Date): Promise<void>;
  recordDeliveries(rows: readonly DeliveryRow[], now: Date): Promise<void>;
};

const NOW = new Date('2026-03-01T12:00:00Z');

function identify(destination: 'segment' | 'customerio', userId: string, key: string): Operation {
  return {
    kind: 'identify',
    destination,
    key,
    userId,
    participantId: userId,
    payload: { userId, traits: { referral_tier: 'active' } },
    bytes: 64,
    change: 'new',
    changes: [{ trait: 'referral_tier', before: undefined, after: 'active' }],
    traits: { referral_tier: 'active' },
    traitsHash: `h-${userId}`,
    tierChanges: 1,
  };
}

function track(destination: 'segment' | 'customerio', userId: string, key: string): Operation {
  return { kind: 'track', destination, key, userId, participantId: userId, payload: { event: 'Referral Joined' }, bytes: 32, event: 'joined', name: 'Referral Joined', time: NOW };
}

const opened: { close(): Promise<void> }[] = [];
const locations: StateLocation[] = [];
afterEach(async () => {
  for (const state of opened.splice(0)) await state.close().catch(() => undefined);
  for (const location of locations.splice(0)) await location.drop();
});

describe.each(backends())('the $name state behind the StateStore interface', (backend) => {
  async function fresh(): Promise<string> {
    const location = await backend.fresh();
    locations.push(location);
    return location.location;
  }

  async function open(location: string): Promise<SeedableStore> {
    const state = (await openState(location, { mode: 'write' })) as SeedableStore;
    opened.push(state);
    return state;
  }

  it('queues in order, skips what already waits, settles an outcome with its identity, fails and requeues what is left', async () => {
    const location = await fresh();
    const state = await open(location);
    const queue = state.queue('p1');
    const runId = await state.startRun('sync', 'p1', NOW);
    const ops = [identify('segment', 'a@x', 'k1'), track('segment', 'a@x', 'k2'), track('customerio', 'a@x', 'k3')];
    await queue.enqueue(ops, runId, NOW);
    await queue.enqueue([ops[0]!], runId, NOW);
    const waiting = await queue.queued('segment', 0, 10);
    expect(waiting.map((entry) => entry.operation.key)).toEqual(['k1', 'k2']);
    expect(waiting[0]!.operation).toMatchObject({ kind: 'identify', changes: [] });
    expect(await queue.lastSeq()).toBe(waiting[1]!.seq + 1);
    expect(await queue.waiting('segment')).toBe(2);

    await queue.settle(
      [waiting[0]!.seq],
      [{ destination: 'segment', key: 'k1', kind: 'identify', userId: 'a@x', status: 'sent', runId }],
      [{ destination: 'segment', userId: 'a@x', traits: { referral_tier: 'active' }, hash: 'h-a@x', tierChanges: 1 }],
      NOW,
    );
    expect(await queue.waiting('segment')).toBe(1);
    const statuses = await state.deliveryStatuses([
      { destination: 'segment', key: 'k1' },
      { destination: 'segment', key: 'k2' },
      { destination: 'segment', key: 'nope' },
    ]);
    expect(statuses.sort((a, b) => a.key.localeCompare(b.key))).toEqual([
      { destination: 'segment', key: 'k1', status: 'sent', runId },
      { destination: 'segment', key: 'k2', status: 'pending', runId },
    ]);
    expect(await state.identities([{ destination: 'segment', userId: 'a@x' }])).toMatchObject([{ userId: 'a@x', hash: 'h-a@x', tierChanges: 1, traits: { referral_tier: 'active' } }]);

    // A run that stops leaves what waits as failed, with the operation to resend; retry puts it back in the queue.
    expect(await queue.failQueued('segment', 'stopped', runId, NOW)).toBe(1);
    expect(await queue.waiting('segment')).toBe(0);
    expect(await state.failedDeliveries('p1', ['segment'])).toMatchObject([{ key: 'k2', status: 'failed', lastError: 'stopped' }]);
    await queue.requeue([{ destination: 'segment', key: 'k2' }], runId, NOW);
    expect((await queue.queued('segment', 0, 10)).map((entry) => entry.operation.key)).toEqual(['k2']);

    // What a killed run left is there for the next session, in the same order.
    await state.close();
    const again = await open(location);
    expect((await again.queue('p1').queued('customerio', 0, 10)).map((entry) => entry.operation.key)).toEqual(['k3']);
    expect(await again.retryPrograms(['segment', 'customerio'], 'unattributed')).toEqual(['p1']);
  });

  it('loads a chunk of the baseline in two bulk reads, and reads what this run sent as sentThisRun', async () => {
    const state = await open(await fresh());
    await state.saveIdentities([{ destination: 'customerio', userId: 'b@x', traits: { referral_tier: 'champion' }, hash: 'hb', tierChanges: 3 }], NOW);
    await state.recordDeliveries(
      [
        { destination: 'segment', key: 'old', kind: 'track', userId: 'b@x', status: 'sent', runId: 1 },
        { destination: 'segment', key: 'mine', kind: 'track', userId: 'b@x', status: 'sent', runId: 7 },
        { destination: 'segment', key: 'gone', kind: 'track', userId: 'b@x', status: 'dead', runId: 1 },
      ],
      NOW,
    );
    const baseline = new PrefetchedBaseline(state, 7);
    await baseline.prefetch.identities([
      { destination: 'customerio', userId: 'b@x' },
      { destination: 'segment', userId: 'b@x' },
      { destination: 'customerio', userId: 'b@x' },
    ]);
    await baseline.prefetch.deliveries(['old', 'mine', 'gone', 'new'].map((key) => ({ destination: 'segment' as const, key })));
    expect(baseline.identity('customerio', 'b@x')).toMatchObject({ hash: 'hb', tierChanges: 3, traits: { referral_tier: 'champion' } });
    expect(baseline.identity('segment', 'b@x')).toBeUndefined();
    expect(['old', 'mine', 'gone', 'new'].map((key) => baseline.delivery('segment', key))).toEqual(['sent', 'sentThisRun', 'dead', undefined]);
  });

  it('answers the rest of the interface alike: retry pages, problems, superseded rows, watermarks, lookups, programs, runs', async () => {
    const state = await open(await fresh());
    const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute));
    // More failed rows than one page (500) of a paged read, with payloads, across both destinations and two programs.
    const rows: DeliveryRow[] = [];
    for (let i = 0; i < 1_100; i += 1) {
      const destination = i % 2 === 0 ? 'segment' : 'customerio';
      rows.push({ destination, key: `f${String(i).padStart(4, '0')}`, kind: 'track', userId: `u${i}`, status: i % 5 === 0 ? 'dead' : 'failed', error: `e${i}`, payload: JSON.stringify(track(destination, `u${i}`, `f${i}`)), runId: 1 });
    }
    await state.recordDeliveries(rows, at(1));
    // A key written twice in one batch: the second write lands after the first, attempts add up.
    await state.recordDeliveries(
      [
        { destination: 'segment', key: 'twice', kind: 'track', userId: 'u', status: 'failed', error: 'first', payload: '{}' },
        { destination: 'segment', key: 'twice', kind: 'track', userId: 'u', status: 'sent' },
      ],
      at(2),
    );
    expect(await state.deliveryStatuses([{ destination: 'segment', key: 'twice' }])).toMatchObject([{ status: 'sent' }]);

    const retried: string[] = [];
    for await (const row of state.retryable(['segment', 'customerio'], 'p1', 'p1')) retried.push(`${row.destination}/${row.key}`);
    expect(retried).toHaveLength(1_100);
    expect(retried.slice(0, 2)).toEqual(['customerio/f0001', 'customerio/f0003']);
    expect(new Set(retried).size).toBe(1_100);
    const everyProblem: string[] = [];
    for await (const row of state.allProblems()) everyProblem.push(row.key);
    expect(everyProblem).toHaveLength(1_100);
    expect((await state.problems(3)).map((row) => `${row.destination}/${row.key}`)).toEqual(['customerio/f0001', 'customerio/f0003', 'customerio/f0005', 'segment/f0000', 'segment/f0002', 'segment/f0004']);
    expect(await state.retryPrograms(['segment'], 'unattributed')).toEqual(['unattributed']);

    await state.markSuperseded([{ destination: 'segment', key: 'f0002' }], 'newer traits', at(3));
    expect(await state.deliveryStatuses([{ destination: 'segment', key: 'f0002' }])).toMatchObject([{ status: 'superseded' }]);

    expect(await state.watermark('p1', 'growsurf')).toBeUndefined();
    await state.setWatermark('p1', 'growsurf', 1_767_225_600_000, at(4));
    await state.setWatermark('p1', 'growsurf', 1_767_225_700_000, at(5));
    expect(await state.watermark('p1', 'growsurf')).toBe(1_767_225_700_000);

    await state.cacheLookup('cello', 'code:abc', { link: 'https://x' }, at(10));
    expect(await state.cachedLookup('cello', 'code:abc', 60_000, at(10))).toEqual({ link: 'https://x' });
    expect(await state.cachedLookup('cello', 'code:abc', 60_000, at(20))).toBeUndefined();

    await state.recordPrograms('growsurf', 'p1', [{ destination: 'segment', namespace: 'ns' }], at(6));
    await state.recordPrograms('growsurf', 'p1', [{ destination: 'segment', namespace: 'ns' }], at(7));
    await state.recordPrograms('growsurf', 'p2', [{ destination: 'segment', namespace: 'ns' }], at(8));
    expect(await state.deliveredPrograms('growsurf', 'segment', 'ns')).toEqual(['p1', 'p2']);

    const backfill = await state.startRun('backfill', 'p1', at(9));
    expect(await state.unfinishedBackfillStart('p1')).toEqual(at(9));
    await state.markCrashedRuns('p1', at(10));
    const summary = await state.summary(5);
    expect(summary.runs).toMatchObject([{ id: backfill, status: 'crashed', finishedAt: at(10).toISOString() }]);
    expect(summary.deliveries).toContainEqual({ destination: 'segment', status: 'superseded', count: 1 });
    expect(summary.schemaVersion).toBeGreaterThan(0);
  });

  // diff and status read a PostgreSQL state in one REPEATABLE READ READ ONLY transaction (SQLite reads the file as it is).
  it.skipIf(backend.name !== 'postgres')('reads a read-only state in one snapshot: what another session commits after the first read is not seen', async () => {
    const location = await fresh();
    const writer = await open(location);
    const identity = (userId: string): IdentityWrite => ({ destination: 'segment', userId, traits: { referral_tier: 'active' }, hash: `h-${userId}` });
    await writer.saveIdentities([identity('u1')], NOW);
    // More failed deliveries than one page of allProblems: its paged reads stay inside the snapshot.
    const failed = Array.from({ length: 1100 }, (_, i): DeliveryRow => ({ destination: 'customerio', key: `f${i}`, kind: 'identify', userId: `f${i}`, status: 'failed', error: 'HTTP 503' }));
    await writer.recordDeliveries(failed, NOW);
    const reader = await openState(location, { mode: 'read' });
    opened.push(reader);
    expect((await reader.summary(5)).identities).toEqual([{ destination: 'segment', count: 1 }]);

    await writer.saveIdentities([identity('u2')], NOW);
    await writer.startRun('sync', 'p1', NOW);
    await writer.recordDeliveries([{ destination: 'segment', key: 'k-u2', kind: 'identify', userId: 'u2', status: 'failed', error: 'HTTP 500' }], NOW);
    const refs = [{ destination: 'segment' as const, userId: 'u1' }, { destination: 'segment' as const, userId: 'u2' }];
    expect((await reader.identities(refs)).map((row) => row.userId)).toEqual(['u1']);
    expect(await reader.summary(5)).toMatchObject({ identities: [{ destination: 'segment', count: 1 }], deliveries: [{ destination: 'customerio', status: 'failed', count: 1100 }], runs: [] });
    expect(await reader.runningPrograms()).toEqual([]);
    const problems: string[] = [];
    for await (const row of reader.allProblems()) {
      problems.push(row.key);
      // A write committed between two pages is not seen either.
      if (problems.length === 1) await writer.recordDeliveries([{ destination: 'customerio', key: 'f9999', kind: 'identify', userId: 'f9999', status: 'failed', error: 'HTTP 503' }], NOW);
    }
    expect(problems).toHaveLength(1100);
    expect(problems).not.toContain('f9999');

    // A read-only state opened now sees all of it.
    const later = await openState(location, { mode: 'read' });
    opened.push(later);
    expect((await later.identities(refs)).map((row) => row.userId).sort()).toEqual(['u1', 'u2']);
    expect(await later.runningPrograms()).toEqual(['p1']);
  });

  it('lets one session hold a program: a second is refused (exit 75) until the first lets go', async () => {
    const location = await fresh();
    const first = await open(location);
    const second = await open(location);
    await first.acquireLock('p1', 'sync', NOW);
    const refused = await second.acquireLock('p1', 'sync', NOW).then(() => undefined, (error: unknown) => error);
    expect(refused).toBeInstanceOf(LockedError);
    expect(refused).toMatchObject({ exitCode: ExitCode.locked, message: expect.stringContaining(`pid ${process.pid}`) });
    await second.acquireLock('p2', 'retry', NOW);
    expect((await first.locks()).map((lock) => [lock.programId, lock.holder])).toEqual([
      ['p1', 'sync'],
      ['p2', 'retry'],
    ]);
    // PostgreSQL knows the holder lives wherever it runs; SQLite judges by pid on this machine. Both say: alive.
    expect((await second.locks()).map((lock) => lockHolderState(lock))).toEqual(['alive', 'alive']);
    await first.releaseLock('p1');
    await second.acquireLock('p1', 'sync', NOW);
  });

  it('frees the lock of a runner killed with SIGKILL: the next one takes it without anyone deleting a row', async () => {
    const location = await fresh();
    // The built module, as the CLI runs it: the child holds the lock until it is killed.
    const script = `const { openState } = await import(${JSON.stringify(`${ROOT}dist/state/open.js`)});
      const state = await openState(process.argv[1], { mode: 'write' });
      await state.acquireLock('p1', 'sync', new Date());
      console.log('held');
      setInterval(() => undefined, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, location], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('held') && resolve());
      child.on('close', () => reject(new Error('the child exited before holding the lock')));
    });
    const state = await open(location);
    await expect(state.acquireLock('p1', 'sync', NOW)).rejects.toMatchObject({ exitCode: ExitCode.locked });
    child.kill('SIGKILL');
    await exited;
    // The server notices the closed connection at once, but ends the session a moment later.
    for (let attempt = 0; ; attempt += 1) {
      try {
        await state.acquireLock('p1', 'sync', NOW);
        break;
      } catch (error) {
        if (attempt >= 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    expect((await state.locks()).map((lock) => lock.pid)).toEqual([process.pid]);
  });
});
