import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { openState } from '../../src/state/open.js';
import { PG_SCHEMA_VERSION } from '../../src/state/postgres/schema.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/state/sqlite/schema.js';
import type { DeliveryRow, StateStore } from '../../src/state/store.js';
import { backends, POSTGRES_SKIP_NOTE, postgresBackend, type StateLocation } from '../support/backends.js';
import { FIXTURES, runCli, runCliInProcess, tempDir } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const backend = postgresBackend();

let services: Services | undefined;
const dropped: StateLocation[] = [];
afterEach(async () => {
  await services?.stop();
  services = undefined;
  for (const state of dropped.splice(0)) await state.drop();
});

function sentSoFar(s: Services): number {
  return s.segment.arrivals.length + s.customerio.eventArrivals.length + s.customerio.identifyArrivals.length;
}

interface CopyJson {
  command: string;
  outcome: string;
  exitCode: number;
  counts: { source: { tables: Record<string, number> }; target: { tables: Record<string, number> } };
}

describe('state copy', () => {
  it('refuses a missing source and a non-empty target (exit 64)', async () => {
    const cwd = tempDir();
    const missing = await runCliInProcess(['state', 'copy', '--from', join(cwd, 'nope.db'), '--to', join(cwd, 'to.db')], { cwd });
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain('There is no state at');
    expect(existsSync(join(cwd, 'to.db'))).toBe(false);

    services = await startServices();
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo', '--to', 'segment'];
    expect((await runCliInProcess(['sync', ...args, '--state', 'a.db'], { cwd, env: services.env })).code).toBe(0);
    expect((await runCliInProcess(['sync', ...args, '--state', 'b.db'], { cwd, env: services.env })).code).toBe(0);
    const full = await runCliInProcess(['state', 'copy', '--from', 'a.db', '--to', 'b.db'], { cwd });
    expect(full.code).toBe(64);
    expect(full.stderr).toContain('already holds a state');
  }, 30_000);

  it.skipIf(!backend)(`SQLite -> PostgreSQL -> SQLite: sync then sends nothing and retry resends the failed one (${backend ? 'PostgreSQL' : POSTGRES_SKIP_NOTE})`, async () => {
    services = await startServices();
    const cwd = tempDir();
    let bad: string | undefined;
    services.segment.rejectMessage = (m) => {
      if (m.type !== 'identify') return undefined;
      bad ??= m.userId;
      return m.userId === bad ? 400 : undefined;
    };
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo'];
    const first = await runCliInProcess(['sync', ...args, '--state', 'local.db'], { cwd, env: services.env });
    expect(first.code).toBe(1);
    services.segment.rejectMessage = undefined;

    const pg = await backend!.fresh();
    dropped.push(pg);
    const copy = await runCliInProcess(['state', 'copy', '--from', 'local.db', '--to', pg.location, '--log-format', 'json'], { cwd });
    expect(copy.code).toBe(0);
    const report = JSON.parse(copy.stdout) as CopyJson;
    expect(report).toMatchObject({ command: 'state copy', outcome: 'done', exitCode: 0 });
    expect(report.counts.target.tables).toEqual(report.counts.source.tables);
    expect(report.counts.source.tables.deliveries).toBeGreaterThan(0);
    expect(report.counts.source.tables.runs).toBe(1);

    const sent = sentSoFar(services);
    const again = await runCliInProcess(['sync', ...args, '--state', pg.location], { cwd, env: services.env });
    expect(again.stderr).not.toContain('error');
    expect(sentSoFar(services)).toBe(sent);
    // diff reads the PostgreSQL state in one read-only snapshot, chunk by chunk: the copied baseline, nothing new to send.
    const diff = await runCliInProcess(['diff', ...args, '--state', pg.location, '--detailed-exitcode', '--log-format', 'json'], { cwd, env: services.env });
    expect(diff.stderr).toBe('');
    expect(diff.code).toBe(0);
    expect(JSON.parse(diff.stdout)).toMatchObject({ command: 'diff', outcome: 'no changes', stateIsEmpty: false, participants: 48 });

    // Copied back into a fresh SQLite file, before retry: the failed delivery is still there, nothing else to send.
    const text = await runCliInProcess(['state', 'copy', '--from', pg.location, '--to', 'back.db'], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout.trim().split('\n').at(-1)).toMatch(/^state copy: copied .* every count matches\.$/);
    expect(text.stdout).toMatch(/deliveries segment\/dead: 1 -> 1|deliveries segment\/failed: 1 -> 1/);
    await runCliInProcess(['sync', ...args, '--state', 'back.db'], { cwd, env: services.env });
    expect(sentSoFar(services)).toBe(sent);

    expect(services.segment.identifies().filter((m) => m.userId === bad)).toHaveLength(0);
    const retry = await runCliInProcess(['retry', '--campaign', 'grsf_demo', '--state', pg.location], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    expect(services.segment.identifies().filter((m) => m.userId === bad).length).toBeGreaterThan(0);
  }, 60_000);

  it('copies a state written by the first schema version as it is: columns added since read as their defaults, the source unchanged', async () => {
    const cwd = tempDir();
    const old = join(cwd, 'old.db');
    const db = new Database(old);
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    const at = '2025-06-01T00:00:00.000Z';
    db.prepare(`INSERT INTO runs (command, program_id, started_at, finished_at, status, counts) VALUES ('sync', 'grsf_demo', ?, ?, 'failed', '{"sent":2}')`).run(at, at);
    const identity = db.prepare('INSERT INTO identities (destination, user_id, traits, hash, updated_at) VALUES (?, ?, ?, ?, ?)');
    identity.run('segment', 'ann@example.com', '{"referral_tier":"active"}', 'h1', at);
    identity.run('customerio', 'ann@example.com', '{"referral_tier":"active"}', 'h2', at);
    const delivery = db.prepare(`INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, last_error, payload, run_id, created_at, updated_at) VALUES (?, ?, 'identify', 'ann@example.com', ?, 1, ?, ?, 1, ?, ?)`);
    delivery.run('segment', 'k1', 'sent', null, null, at, at);
    delivery.run('customerio', 'k2', 'sent', null, null, at, at);
    delivery.run('customerio', 'k3', 'failed', 'HTTP 503', '{"kind":"identify"}', at, at);
    db.close();
    const digest = (): string => createHash('sha256').update(readFileSync(old)).digest('hex');
    const before = digest();

    const targets: { location: string; version: number }[] = [{ location: join(cwd, 'new.db'), version: SCHEMA_VERSION }];
    if (backend) {
      const pg = await backend.fresh();
      dropped.push(pg);
      targets.push({ location: pg.location, version: PG_SCHEMA_VERSION });
    }
    for (const target of targets) {
      const copy = await runCliInProcess(['state', 'copy', '--from', 'old.db', '--to', target.location, '--log-format', 'json'], { cwd });
      expect(copy.stderr).toBe('');
      expect(copy.code).toBe(0);
      const report = JSON.parse(copy.stdout) as CopyJson;
      expect(report.counts.source.tables).toMatchObject({ runs: 1, identities: 2, deliveries: 3, queue: 0, watermarks: 0, programs: 0, lookup_cache: 0 });
      expect(report.counts.target.tables).toEqual(report.counts.source.tables);

      const copied = await openState(target.location, { mode: 'read' });
      try {
        const summary = await copied.summary(5);
        expect(summary.schemaVersion).toBe(target.version);
        expect(summary.runs).toMatchObject([{ command: 'sync', programId: 'grsf_demo', status: 'failed', counts: { sent: 2 } }]);
        expect((await copied.identities([{ destination: 'segment', userId: 'ann@example.com' }]))[0]).toMatchObject({ hash: 'h1', tierChanges: 0 });
        expect(await copied.problems(10)).toMatchObject([{ destination: 'customerio', key: 'k3', status: 'failed', lastError: 'HTTP 503' }]);
      } finally {
        await copied.close();
      }
    }
    // Read as it is, like diff and status read it: not migrated, not touched, no journal left beside it.
    expect(digest()).toBe(before);
    expect(readdirSync(cwd).filter((name) => name.startsWith('old.db'))).toEqual(['old.db']);
    const reopened = new Database(old, { readonly: true });
    expect(reopened.pragma('user_version', { simple: true })).toBe(1);
    reopened.close();
    expect(SCHEMA_VERSION).toBeGreaterThan(1);
  }, 30_000);
});

describe('state copy and a run that starts on the source during the copy', () => {
  it('says which counts differ and exits 1 when a SQLite source changed under the copy', async () => {
    const cwd = tempDir();
    const source = join(cwd, 'source.db');
    const state = (await openState(source, { mode: 'write' })) as StateStore & { recordDeliveries(rows: readonly DeliveryRow[], now: Date): Promise<void> };
    try {
      await state.finishRun(await state.startRun('sync', 'grsf_demo', new Date()), 'succeeded', {}, new Date());
      // Enough ledger rows that the copy is still paging through them when the run below starts.
      const rows: DeliveryRow[] = Array.from({ length: 120_000 }, (_, i) => ({ destination: 'segment', key: `k${i}`, kind: 'identify', userId: `u${i}@example.com`, status: 'sent', runId: 1 }));
      await state.recordDeliveries(rows, new Date());
    } finally {
      await state.close();
    }
    const copying = runCli(['state', 'copy', '--from', 'source.db', '--to', 'target.db'], { cwd });
    let finished = false;
    void copying.then(() => (finished = true));
    // Once the target holds ledger rows, the runs table has been copied: a run that starts now is not in the copy.
    const target = join(cwd, 'target.db');
    for (let copied = 0; copied === 0; ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      if (!existsSync(target)) continue;
      try {
        const db = new Database(target, { readonly: true, fileMustExist: true });
        try {
          copied = (db.prepare('SELECT count(*) AS n FROM deliveries').get() as { n: number }).n;
        } finally {
          db.close();
        }
      } catch {
        // Not created yet, or locked for a moment by the copy's own write.
      }
    }
    const run = await openState(source, { mode: 'write' });
    try {
      await run.acquireLock('grsf_demo', 'sync', new Date());
      await run.startRun('sync', 'grsf_demo', new Date());
      await run.releaseLock('grsf_demo');
    } finally {
      await run.close();
    }
    // The run started while the copy was still going (else this test would show nothing).
    expect(finished).toBe(false);
    const result = await copying;
    expect(result.code).toBe(ExitCode.failedDeliveries);
    expect(result.stdout.trim().split('\n').at(-1)).toMatch(/^state copy: the counts of .*target\.db differ from .*source\.db \(runs: 2 in the source, 1 in the target\)\.$/);
  }, 60_000);
});

describe.each(backends())('state copy and a live run, on the $name state', (stateBackend) => {
  const holders: StateStore[] = [];
  afterEach(async () => {
    for (const holder of holders.splice(0)) await holder.close();
  });

  /** Holds a program's lock as a running sync does (SQLite: a lock row with this live pid; PostgreSQL: a session holding the advisory lock). */
  async function hold(location: string, programId: string): Promise<StateStore> {
    const holder = await openState(location, { mode: 'write' });
    holders.push(holder);
    await holder.acquireLock(programId, 'sync', new Date());
    return holder;
  }

  it('refuses (exit 75) while a run holds the source or the target, and writes nothing into the target', async () => {
    services = await startServices();
    const cwd = tempDir();
    const source = await stateBackend.fresh();
    dropped.push(source);
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo', '--to', 'segment'];
    expect((await runCliInProcess(['sync', ...args, '--state', source.location], { cwd, env: services.env })).code).toBe(0);

    const sourceHolder = await hold(source.location, 'grsf_demo');
    const busySource = await runCliInProcess(['state', 'copy', '--from', source.location, '--to', 'copy.db'], { cwd });
    expect(busySource.code).toBe(ExitCode.locked);
    expect(busySource.stderr).toMatch(/^error: A run still holds the lock on program grsf_demo in the source .* \(sync, pid \d+ on .*\)\.\nWait for it to finish, then copy again\.\n$/);
    expect(existsSync(join(cwd, 'copy.db'))).toBe(false);
    await sourceHolder.releaseLock('grsf_demo');

    // The target: empty, but a run has just taken its lock (its first sync is starting).
    const target = await stateBackend.fresh();
    dropped.push(target);
    const targetHolder = await hold(target.location, 'grsf_demo');
    const busyTarget = await runCliInProcess(['state', 'copy', '--from', source.location, '--to', target.location], { cwd });
    expect(busyTarget.code).toBe(ExitCode.locked);
    expect(busyTarget.stderr).toMatch(/^error: A run still holds the lock on program grsf_demo in the target /);
    expect(Object.values((await (targetHolder as StateStore & { transferCounts(): Promise<{ tables: Record<string, number> }> }).transferCounts()).tables).every((count) => count === 0)).toBe(true);
    await targetHolder.releaseLock('grsf_demo');

    const copy = await runCliInProcess(['state', 'copy', '--from', source.location, '--to', target.location], { cwd });
    expect(copy.stderr).toBe('');
    expect(copy.code).toBe(0);
    expect(copy.stdout).toMatch(/every count matches\.\n$/);
  }, 30_000);

  it.skipIf(stateBackend.name !== 'sqlite')('refuses (exit 75) a source locked from another machine, which cannot be checked from here', async () => {
    services = await startServices();
    const cwd = tempDir();
    expect((await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment', '--state', 'a.db'], { cwd, env: services.env })).code).toBe(0);
    const db = new Database(join(cwd, 'a.db'));
    db.prepare(`INSERT INTO lock (program_id, holder, pid, host, acquired_at) VALUES ('default', 'sync', 42, 'runner-7', '2026-11-20T03:00:00.000Z')`).run();
    db.close();
    const copy = await runCliInProcess(['state', 'copy', '--from', 'a.db', '--to', 'b.db'], { cwd });
    expect(copy.code).toBe(ExitCode.locked);
    expect(copy.stderr).toContain('A run on another machine holds the lock on program default in the source');
    expect(copy.stderr).toContain('npx referral-sync unlock --state <source> --campaign default --force');
    expect(existsSync(join(cwd, 'b.db'))).toBe(false);
  }, 30_000);
});
