import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { backends, POSTGRES_SKIP_NOTE, postgresBackend, withPostgres, type Backend, type StateLocation } from '../support/backends.js';
import { runCli, startCli, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Whether a run recorded `running` still has a runner, as `status` shows it and `unlock` acts on it: on SQLite the
 * lock's pid on this machine decides, on PostgreSQL the advisory lock its session holds (DESIGN.md §7).
 */

// Slow enough that a 1,500-participant backfill is still sending when the test acts on it.
const SLOW = ['--rate', 'segment=200,customerio=50'];

let services: Services | undefined;
const states: StateLocation[] = [];
const children: { kill(signal: NodeJS.Signals): boolean }[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await services?.stop();
  services = undefined;
  for (const state of states.splice(0)) await state.drop();
});

interface StatusJson {
  runs: { id: number; command: string; status: string; finishedAt: string | null; runner?: string }[];
  locks: { programId: string; holderState: string }[];
}

/** A backfill running against `backend`, once something it sent has arrived. */
async function runningBackfill(backend: Backend): Promise<{ state: StateLocation; cwd: string; run: ReturnType<typeof startCli> }> {
  services = await startServices();
  const state = await backend.fresh();
  states.push(state);
  const cwd = tempDir();
  const file = writeProgram(cwd, 1500, 21);
  const run = startCli(['backfill', '--file', file, '--state', state.location, ...SLOW], cwd, services.env);
  children.push(run.child);
  const deadline = Date.now() + 30_000;
  while (services.segment.arrivals.length === 0) {
    if (Date.now() > deadline || run.child.exitCode !== null) throw new Error(`the backfill sent nothing: ${run.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { state, cwd, run };
}

/** The runs' statuses as the state itself records them (not as status shows them). */
async function recordedStatuses(backend: Backend, location: string): Promise<string[]> {
  if (backend.name === 'sqlite') {
    const db = new Database(location, { readonly: true });
    try {
      return (db.prepare('SELECT status FROM runs ORDER BY id').all() as { status: string }[]).map((row) => row.status);
    } finally {
      db.close();
    }
  }
  const schema = new URL(location).searchParams.get('schema')!;
  return withPostgres(async (client) => (await client.query<{ status: string }>(`SELECT status FROM ${schema}.runs ORDER BY id`)).rows.map((row) => row.status));
}

describe.each(backends())('a run killed with SIGKILL, on the $name state', (backend) => {
  it('status shows it crashed (its runner is gone) and writes nothing; unlock then records it crashed', async () => {
    const { state, cwd, run } = await runningBackfill(backend);
    const alive = await runCli(['status', '--json', '--state', state.location], { cwd });
    expect(alive.code).toBe(0);
    expect((JSON.parse(alive.stdout) as StatusJson).runs).toMatchObject([{ command: 'backfill', status: 'running', finishedAt: null }]);
    expect((JSON.parse(alive.stdout) as StatusJson).runs[0]!.runner).toBeUndefined();

    run.child.kill('SIGKILL');
    await run.exited;
    // PostgreSQL ends the killed runner's session (and its advisory lock) a moment after the connection closes.
    let seen: StatusJson | undefined;
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const status = await runCli(['status', '--json', '--state', state.location], { cwd });
      expect(status.code).toBe(0);
      seen = JSON.parse(status.stdout) as StatusJson;
      if (seen.runs[0]?.status !== 'running') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(seen!.runs).toMatchObject([{ command: 'backfill', status: 'crashed', runner: 'gone', finishedAt: null }]);
    // SQLite keeps the dead pid's lock row (shown gone); PostgreSQL lists only locks a session holds.
    expect(seen!.locks.map((lock) => lock.holderState)).toEqual(backend.name === 'sqlite' ? ['gone'] : []);
    const text = await runCli(['status', '--state', state.location], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/#1 backfill\s+crashed .*\(not running: its runner is gone\)/);
    // status is read-only: the state still says running until something that writes records it.
    expect(await recordedStatuses(backend, state.location)).toEqual(['running']);

    const unlock = await runCli(['unlock', '--state', state.location], { cwd });
    expect(unlock.stderr).toBe('');
    expect(unlock.code).toBe(0);
    expect(unlock.stdout).toContain('recorded 1 run whose runner is gone as crashed');
    expect(await recordedStatuses(backend, state.location)).toEqual(['crashed']);
    const after = JSON.parse((await runCli(['status', '--json', '--state', state.location], { cwd })).stdout) as StatusJson;
    expect(after.runs).toMatchObject([{ status: 'crashed', finishedAt: expect.any(String) }]);
    expect(after.runs[0]!.runner).toBeUndefined();
    expect(after.locks).toEqual([]);
  }, 90_000);
});

const pgBackend = postgresBackend();

describe.skipIf(!pgBackend)(`unlock on a PostgreSQL state (${pgBackend ? 'against REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, () => {
  it('refuses (exit 75) while the run lives, naming its backend; --force ends its session only when the role may', async () => {
    const { state, cwd, run } = await runningBackfill(pgBackend!);
    const schema = new URL(state.location).searchParams.get('schema')!;
    const backendPid = await withPostgres(
      async (client) => (await client.query<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows.map((row) => row.pid),
    );
    expect(backendPid.length).toBeGreaterThan(0);

    const refused = await runCli(['unlock', '--state', state.location], { cwd });
    expect(refused.code).toBe(ExitCode.locked);
    expect(refused.stderr).toMatch(new RegExp(`locked by a run that is still going \\(backfill, pid ${run.child.pid} on [^;]+; PostgreSQL backend pid (${backendPid.join('|')}) from 127\\.0\\.0\\.1:\\d+\\)`));
    expect(refused.stderr).toContain('--force` ends its PostgreSQL session');

    // A role that may not signal the superuser's session: told exactly what to do, and the run goes on.
    const role = `rs_test_weak_${Math.random().toString(36).slice(2, 8)}`;
    await withPostgres(async (client) => {
      await client.query(`CREATE ROLE ${role} LOGIN`);
      await client.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
      await client.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role}`);
    });
    try {
      const weak = new URL(state.location);
      weak.username = role;
      const denied = await runCli(['unlock', '--force', '--state', weak.toString()], { cwd });
      expect(denied.code).toBe(ExitCode.locked);
      expect(denied.stderr).toContain('this PostgreSQL role may not end its session');
      expect(denied.stderr).toMatch(/have a superuser .* run: SELECT pg_terminate_backend\(\d+\); then run unlock again\./);
    } finally {
      await withPostgres(async (client) => {
        await client.query(`DROP OWNED BY ${role}`);
        await client.query(`DROP ROLE ${role}`);
      });
    }
    expect(run.child.exitCode).toBeNull();
    expect(await recordedStatuses(pgBackend!, state.location)).toEqual(['running']);

    const forced = await runCli(['unlock', '--force', '--state', state.location], { cwd });
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/unlock: freed 1 of 1 lock \(program .*, backfill pid \d+ on .*\); ended the PostgreSQL session holding it \(backend pid \d+ .*\): that run stops writing; recorded 1 run whose runner is gone as crashed\./);
    // The run, whose lock session is gone, stops writing rather than overlap the next one.
    expect(await run.exited).toBe(ExitCode.unavailable);
    expect(run.stderr()).toContain('stopped writing rather than overlap another');
    const status = JSON.parse((await runCli(['status', '--json', '--state', state.location], { cwd })).stdout) as StatusJson;
    expect(status.locks).toEqual([]);
    expect(status.runs.map((r) => r.status)).not.toContain('running');
  }, 90_000);
});
