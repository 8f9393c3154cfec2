import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { beforeAll, describe, it, type TestContext } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { TcpProxy } from '../fakes/tcp-proxy.js';
import { backends, POSTGRES_TEST_URL, readDeliveries, withPostgres, type Backend, type StateLocation } from '../support/backends.js';
import { ROOT, runCli, runCliInProcess, startCli, tempDir, type CliResult } from '../support/cli.js';
import { mountSmallDisk, type SmallDisk } from '../support/disk.js';
import { readPlan, type PlanLine } from '../support/plan.js';
import { writeProgram } from '../support/program.js';
import { startServicesFor, type Services } from '../support/services.js';

/**
 * Guarantee 5 of issue 17: every fault of the state ends in a documented exit, with the run record finalized.
 *
 * One table of faults, run on each backend it applies to: a connection cut mid-run (a TCP proxy of test/fakes
 * resets every connection; the server terminating the run's sessions), the server gone, a statement that times
 * out behind another session's lock, a disk that fills mid-run (a tmpfs of its own, filled by the test), two runs
 * creating a new state at the same moment, and SIGHUP/SIGINT/SIGTERM mid-run. Every cell asserts the same
 * invariants, on the built CLI: the documented exit code; one sentence saying what happened and the safe next
 * step (never "start from a fresh state"), with no stack trace; the run's record finalized when read afterwards
 * (or, where the fault leaves it unwritable, shown crashed by `status`, which the next run records); nothing
 * recorded `sent` that the fake destination did not accept; and a later healthy run that delivers every id, none
 * that was acknowledged before the fault twice.
 *
 * The cells share nothing (each has its own fakes, state and directory), so they run concurrently: most of their
 * time is a slow, rate-limited run waiting for its fault.
 */

type RunStatus = 'succeeded' | 'failed' | 'interrupted' | 'crashed';

interface Cell {
  backend: Backend;
  /** The state as it is: what the healthy run, `status` and the assertions use. */
  state: StateLocation;
  /** What the faulty run is given as --state (through a proxy, with server options, …). */
  location: string;
  /** Environment added to the faulty run's. */
  env: Record<string, string>;
  services: Services;
  cwd: string;
  /** Undone when the cell ends, last added first. */
  cleanups: (() => Promise<unknown> | unknown)[];
  /** What a fault kept between striking and healing (a session holding a lock, a disk). */
  held: Record<string, unknown>;
}

interface Fault {
  name: string;
  on: readonly Backend['name'][];
  /** The documented exit code of every faulty run (the creation race: each of them). */
  exit: readonly number[];
  /** The line that says what happened: the `error:` line, or for a signal the run's last line. */
  says: RegExp;
  /**
   * How the run reads in `status` afterwards. `crashed` where the fault leaves the state unwritable until the run
   * has exited (the table then still says `running`; status shows it crashed, and the next run records it so).
   */
  recorded: readonly RunStatus[];
  /** Runs started at once (the creation race); default 1, rate-limited so that the fault lands mid-run. */
  runners?: number;
  arrange?(cell: Cell): Promise<unknown> | void;
  /** Mid-run: once a quarter of Customer.io's operations have arrived. */
  strike?(cell: Cell, run: ReturnType<typeof startCli>): Promise<unknown> | void;
  /** After the faulty run has exited: the environment is healthy again. */
  heal?(cell: Cell): Promise<unknown> | void;
}

const SIZE = 40;
/**
 * The faulty run sends to Customer.io one request per operation (v1) at 10 a second: about 6 s of steady progress
 * for the fault to land in the middle of, however loaded the machine, with few requests in flight when it does
 * (each one's outcome is then recorded, or fails to be, on its own). Segment and Customer.io v2 would take the
 * whole program in one batch each. The healthy run goes at full speed.
 */
const SLOW = ['--customerio-api', 'v1', '--rate', 'customerio=10', '--rate-mode', 'fixed'];
const PG = POSTGRES_TEST_URL ? new URL(POSTGRES_TEST_URL) : undefined;
const execFileAsync = promisify(execFile);

function postgresLocation(cell: Cell, changes: { port?: number; params?: Record<string, string> }): string {
  const url = new URL(cell.state.location);
  if (changes.port !== undefined) {
    url.hostname = '127.0.0.1';
    url.port = String(changes.port);
  }
  for (const [name, value] of Object.entries(changes.params ?? {})) url.searchParams.set(name, value);
  return url.toString();
}

/** The schema of a PostgreSQL state location (a plain identifier: spliced into SQL as it is). */
function schemaOf(cell: Cell): string {
  return new URL(cell.state.location).searchParams.get('schema')!;
}

async function throughProxy(cell: Cell): Promise<TcpProxy> {
  const proxy = new TcpProxy({ host: PG!.hostname, port: Number(PG!.port || 5432) });
  const port = await proxy.start();
  cell.cleanups.push(() => proxy.stop());
  cell.location = postgresLocation(cell, { port });
  cell.held.proxy = proxy;
  return proxy;
}

const signal = (name: NodeJS.Signals, exit: number): Fault => ({
  name: `${name} mid-run`,
  on: ['sqlite', 'postgres'],
  exit: [exit],
  says: new RegExp(`^warning: sync: interrupted by ${name} after [\\d.]+s: [\\d,]+ sent, 0 failed, 0 dead; [\\d,]+ operations? left in the queue for the next run, same ids \\(exit ${exit}\\)\\.$`),
  recorded: ['interrupted'],
  strike: (_cell, run) => void run.child.kill(name),
});

const FAULTS: readonly Fault[] = [
  {
    name: 'connection cut mid-run (every connection reset; the server still there)',
    on: ['postgres'],
    exit: [ExitCode.unavailable],
    says: /^error: The PostgreSQL state .* (lost its connection|ended the session holding this run's lock)/,
    // Recorded on a fresh session: the pool reconnects once to write the run's end. On a busy machine that
    // reconnect may itself land while the proxy still drops what was open: the row then stays `running`, which
    // status shows as crashed (no session holds its lock), as the documented fallback; nothing is lost either way.
    recorded: ['failed', 'crashed'],
    arrange: async (cell) => void (await throughProxy(cell)),
    strike: (cell) => void (cell.held.proxy as TcpProxy).cut(),
  },
  {
    name: 'server gone mid-run (every connection reset, new ones refused)',
    on: ['postgres'],
    exit: [ExitCode.unavailable],
    says: /^error: The PostgreSQL state .* (lost its connection|ended the session holding this run's lock)/,
    // Nothing can be written: status shows it crashed (no session holds its lock), the next run records it so.
    recorded: ['crashed'],
    arrange: async (cell) => void (await throughProxy(cell)),
    strike: (cell) => {
      const proxy = cell.held.proxy as TcpProxy;
      proxy.refuse();
      proxy.cut();
    },
    heal: (cell) => (cell.held.proxy as TcpProxy).restore(),
  },
  {
    name: 'every session of the run terminated by the server (pg_terminate_backend)',
    on: ['postgres'],
    exit: [ExitCode.unavailable],
    says: /^error: The PostgreSQL state .* (lost its connection|ended the session holding this run's lock)/,
    recorded: ['failed'],
    arrange: (cell) => {
      cell.held.application = `rs_fault_${schemaOf(cell)}`;
      cell.location = postgresLocation(cell, { params: { application_name: cell.held.application as string } });
    },
    strike: async (cell) => {
      const ended = await withPostgres((client) =>
        client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [cell.held.application]),
      );
      if ((ended.rowCount ?? 0) === 0) throw new Error('no session of the run to terminate');
    },
  },
  {
    name: 'statement timeout (another session locks the ledger; statement_timeout from ?options=)',
    on: ['postgres'],
    exit: [ExitCode.locked],
    says: /^error: The PostgreSQL state .* did not complete a statement: a statement timed out/,
    recorded: ['failed'],
    arrange: (cell) => {
      cell.location = postgresLocation(cell, { params: { options: '-c statement_timeout=1500' } });
    },
    strike: async (cell) => {
      const client = new pg.Client({ connectionString: POSTGRES_TEST_URL });
      await client.connect();
      cell.held.locker = client;
      await client.query('BEGIN');
      await client.query(`LOCK TABLE ${schemaOf(cell)}.deliveries IN ACCESS EXCLUSIVE MODE`);
    },
    heal: async (cell) => {
      const client = cell.held.locker as pg.Client;
      await client.query('ROLLBACK');
      await client.end();
    },
  },
  {
    name: 'statement timeout (another process holds the write lock past the busy timeout)',
    on: ['sqlite'],
    exit: [ExitCode.locked],
    says: /^error: The state .* is locked by another process past the wait allowed \(SQLITE_BUSY\)\.$/,
    // The lock is held until the run has exited: its end cannot be written before.
    recorded: ['crashed'],
    strike: (cell) => {
      const db = new Database(cell.state.location);
      db.pragma('busy_timeout = 10000');
      db.prepare('BEGIN IMMEDIATE').run();
      cell.held.locker = db;
    },
    heal: (cell) => {
      const db = cell.held.locker as Database.Database;
      db.prepare('ROLLBACK').run();
      db.close();
    },
  },
  {
    name: 'disk full mid-run',
    on: ['sqlite'],
    exit: [ExitCode.stateUnwritable],
    says: /^error: The state .* cannot be created or written: the disk is full \(SQLITE_FULL\)\.$/,
    // Written if the run's end fits in what the failed write had taken; otherwise status shows it crashed.
    recorded: ['failed', 'crashed'],
    arrange: (cell) => {
      const disk = mountSmallDisk(16);
      if (disk) {
        cell.cleanups.push(() => disk.dispose());
        cell.location = join(disk.dir, 'state.db');
        cell.state = { location: cell.location, drop: async () => undefined };
        cell.held.disk = disk;
        return;
      }
      // No mount here (not root): from the moment the marker file exists, the run's row writes fail with the
      // error SQLite gives on a full disk (SqliteError SQLITE_FULL), through a module loaded into it
      // (test/support/sqlite-full.mjs). The run's end cannot be written either: status shows it crashed.
      const marker = join(cell.cwd, 'disk-full');
      cell.held.marker = marker;
      cell.env = { ...cell.env, REFERRAL_SYNC_TEST_DISK_FULL: marker, NODE_OPTIONS: `--import=${pathToFileURL(fileURLToPath(new URL('../support/sqlite-full.mjs', import.meta.url))).href}` };
    },
    strike: (cell) => {
      const disk = cell.held.disk as SmallDisk | undefined;
      if (disk) disk.fill();
      else writeFileSync(cell.held.marker as string, '');
    },
    heal: (cell) => (cell.held.disk as SmallDisk | undefined)?.free(),
  },
  {
    // The server's own disk is not the test's to fill (a tablespace on a small disk that goes away can take a
    // shared server down with it): from mid-run on, every write to the ledger is answered as a full disk answers
    // it, SQLSTATE 53100 with the server's message, by a trigger the test adds and then removes.
    name: 'disk full mid-run (the server answers 53100 disk_full)',
    on: ['postgres'],
    exit: [ExitCode.stateUnwritable],
    says: /^error: The PostgreSQL state .* cannot be written: the server's disk is full \(could not extend file .*; 53100\)\.$/,
    recorded: ['failed'],
    strike: (cell) =>
      withPostgres(async (client) => {
        const schema = schemaOf(cell);
        await client.query(`CREATE FUNCTION ${schema}.disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file "base/16386/18419": No space left on device', HINT = 'Check free disk space.'; END $$`);
        await client.query(`CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON ${schema}.deliveries FOR EACH STATEMENT EXECUTE FUNCTION ${schema}.disk_full()`);
      }),
    heal: (cell) => withPostgres((client) => client.query(`DROP TRIGGER disk_full ON ${schemaOf(cell)}.deliveries`)),
  },
  {
    name: 'two runs creating a new state at the same moment',
    on: ['sqlite', 'postgres'],
    // One takes the program's lock and runs; the other finds it taken (or, if it comes later, finds nothing left to do).
    exit: [ExitCode.ok, ExitCode.locked],
    says: /^error: Another run holds the lock on program /,
    recorded: ['succeeded'],
    runners: 3,
  },
  signal('SIGHUP', 129),
  signal('SIGINT', 130),
  signal('SIGTERM', 143),
];

/** One program and its plan (the ids a first sync sends), for every cell: computed once, against an empty state. */
let program: { file: string; plan: PlanLine[]; segment: string[]; cioEvents: string[]; cioPeople: string[] };

beforeAll(async () => {
  const dir = tempDir();
  const file = writeProgram(dir, SIZE, 17);
  const out = join(dir, 'plan.jsonl');
  const services = await startServicesFor(() => undefined);
  try {
    const diff = await runCliInProcess(['diff', '--file', file, '--out', out, '--quiet', '--state', join(dir, 'empty.db')], { cwd: dir, env: services.env });
    if (diff.code !== 0) throw new Error(`diff failed: ${diff.stderr}`);
  } finally {
    await services.stop();
  }
  const plan = readPlan(out);
  program = {
    file,
    plan,
    segment: plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string),
    cioEvents: plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string),
    cioPeople: plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').map((l) => `email:${l.userId}`),
  };
});

/** The id under which the fake destination received the operation of a ledger row. */
function arrivalId(destination: string, key: string): { list: 'segment' | 'cioEvents' | 'cioPeople'; id: string } {
  const line = program.plan.find((l) => l.destination === destination && l.key === key);
  if (!line) throw new Error(`ledger row ${destination} ${key} is not in the plan`);
  if (destination === 'segment') return { list: 'segment', id: line.payload.messageId as string };
  if (line.kind === 'track') return { list: 'cioEvents', id: line.payload.id as string };
  return { list: 'cioPeople', id: `email:${line.userId}` };
}

function arrivals(services: Services): Record<'segment' | 'cioEvents' | 'cioPeople', string[]> {
  return { segment: services.segment.arrivals, cioEvents: services.customerio.eventArrivals, cioPeople: services.customerio.identifyArrivals };
}

/** The runs as the table holds them, newest first (read directly: the CLI may have died mid-write). */
async function runsInTable(location: string): Promise<string[]> {
  const sql = 'SELECT status FROM runs ORDER BY id DESC';
  if (location.startsWith('postgres')) {
    const schema = new URL(location).searchParams.get('schema')!;
    return withPostgres(async (client) => (await client.query<{ status: string }>(`SELECT status FROM ${schema}.runs ORDER BY id DESC`)).rows.map((r) => r.status));
  }
  const db = new Database(location, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare(sql).all() as { status: string }[]).map((r) => r.status);
  } finally {
    db.close();
  }
}

/** The runs as `status` shows them, newest first (a `running` one whose runner is gone shows `crashed`). */
async function runsShown(location: string, cwd: string): Promise<string[]> {
  const status = await runCliInProcess(['status', '--json', '--state', location], { cwd });
  if (status.code !== 0) throw new Error(`status failed: ${status.stderr}`);
  return (JSON.parse(status.stdout) as { runs: { status: string }[] }).runs.map((run) => run.status);
}

/** Runs the CLI again while it is refused with 75: a PostgreSQL server takes a moment to end a dead runner's session. */
async function runUnlocked(args: string[], options: { cwd: string; env: Record<string, string> }): Promise<CliResult> {
  let result = await runCli(args, options);
  for (let attempt = 0; result.code === ExitCode.locked && attempt < 50; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    result = await runCli(args, options);
  }
  return result;
}

/** What stderr must look like after a fault: one sentence for it (and its advice), no trace of a crash. */
function expectOneSentence(expect: TestContext['expect'], stderr: string, fault: Fault, code: number | null): void {
  expect(stderr).not.toMatch(/^\s+at .*[(:]\d+/m);
  expect(stderr).not.toMatch(/internal error|report this as a bug|Unhandled|node:internal|UnhandledPromiseRejection|\bTypeError\b/);
  const lines = stderr.split('\n').filter((line) => line !== '' && !line.startsWith('progress: '));
  if (code === ExitCode.ok) {
    expect(lines).toEqual([]);
    return;
  }
  const said = lines.filter((line) => fault.says.test(line));
  expect(said, stderr).toHaveLength(1);
  const errors = lines.filter((line) => line.startsWith('error: '));
  if (said[0]!.startsWith('error: ')) {
    expect(errors, stderr).toEqual(said);
    // The advice follows it: what to do, and never a fresh state (that would send the whole history again).
    const advice = lines[lines.indexOf(said[0]!) + 1] ?? '';
    if (fault.exit.includes(ExitCode.locked) && /Another run holds the lock/.test(said[0]!)) expect(advice).toMatch(/Wait for it to finish/);
    else expect(advice).toMatch(/run the same command again: the state is intact/);
    expect(`${said[0]} ${advice}`).not.toMatch(/fresh|empty state|another file|move it aside|start over|Nothing was sent/i);
  } else {
    // A signal: the run's verdict is its last line, and nothing is an error.
    expect(lines.at(-1)).toBe(said[0]);
    expect(errors).toEqual([]);
  }
}

async function exercise(fault: Fault, backend: Backend, context: TestContext): Promise<void> {
  const { expect, onTestFinished } = context;
  const cell: Cell = { backend, state: await backend.fresh(), location: '', env: {}, services: await startServicesFor(onTestFinished), cwd: tempDir(), cleanups: [], held: {} };
  cell.location = cell.state.location;
  onTestFinished(async () => {
    for (const cleanup of cell.cleanups.reverse()) await cleanup();
  });
  await fault.arrange?.(cell);
  // After arrange (which may move the state onto a disk of its own): dropped before what arrange set up is undone.
  const state = cell.state;
  cell.cleanups.push(() => state.drop());
  const { services, cwd } = cell;

  // The faulty run(s).
  const runners = fault.runners ?? 1;
  const args = ['sync', '--file', program.file, '--state', cell.location, ...(runners > 1 ? [] : SLOW)];
  const runs = Array.from({ length: runners }, () => startCli(args, cwd, { ...services.env, ...cell.env }));
  if (fault.strike) {
    let exited = false;
    void runs[0]!.exited.then(() => (exited = true));
    const customerio = (): number => services.customerio.eventArrivals.length + services.customerio.identifyArrivals.length;
    while (!exited && customerio() < (program.cioEvents.length + program.cioPeople.length) / 4) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(exited, `the run ended before its fault: ${runs[0]!.stderr()}`).toBe(false);
    await fault.strike(cell, runs[0]!);
  }
  const codes = await Promise.all(runs.map((run) => run.exited));
  await fault.heal?.(cell);

  // The documented exit, and one sentence saying what happened and what to do.
  for (const [index, code] of codes.entries()) {
    expect(fault.exit, `run ${index}: exit ${code}\n${runs[index]!.stderr()}`).toContain(code);
    expectOneSentence(expect, runs[index]!.stderr(), fault, code);
  }
  if (runners > 1) expect(codes).toContain(ExitCode.ok);

  // The run's record: finalized in the table, or (where the fault left the state unwritable) shown crashed.
  const table = await runsInTable(state.location);
  const shown = await runsShown(state.location, cwd);
  expect(shown.length).toBeGreaterThan(0);
  for (const status of shown) expect(fault.recorded).toContain(status);
  for (const [index, status] of table.entries()) expect(status === shown[index] || (status === 'running' && shown[index] === 'crashed')).toBe(true);

  // Nothing recorded sent that the fake did not accept.
  const before = await readDeliveries(state.location);
  const arrived = arrivals(services);
  for (const row of before.acknowledged) {
    const { list, id } = arrivalId(row.destination, row.key);
    expect(arrived[list], `${row.destination} ${row.key} recorded sent`).toContain(id);
  }
  const acknowledgedIds = new Set(before.acknowledged.map((row) => arrivalId(row.destination, row.key).id));

  // A healthy run delivers the rest: every planned id, and none that was acknowledged before the fault twice.
  const healthy = await runUnlocked(['sync', '--file', program.file, '--state', state.location], { cwd, env: services.env });
  expect(healthy.stderr).not.toMatch(/error|warning/i);
  expect(healthy.code).toBe(ExitCode.ok);
  expect(new Set(services.segment.arrivals)).toEqual(new Set(program.segment));
  expect(new Set(services.customerio.eventArrivals)).toEqual(new Set(program.cioEvents));
  expect(new Set(services.customerio.identifyArrivals)).toEqual(new Set(program.cioPeople));
  for (const list of [services.segment.arrivals, services.customerio.eventArrivals]) {
    const twice = list.filter((id, index) => list.indexOf(id) !== index);
    expect(twice.filter((id) => acknowledgedIds.has(id))).toEqual([]);
  }
  const after = await runsShown(state.location, cwd);
  expect(after[0]).toBe('succeeded');
  expect(after).not.toContain('running');
  expect(await runsInTable(state.location)).not.toContain('running');
}

// One concurrent group for every backend's cells, so that they share the waves of concurrent tests (vitest runs
// a few at a time, in this order): the cells that wait out a timeout first, so that the others fill in beside them.
describe.concurrent('state faults: every one ends in its documented exit, the run finalized, nothing lost', () => {
  const slowFirst = [...FAULTS].sort((a, b) => Number(/timeout/.test(b.name)) - Number(/timeout/.test(a.name)));
  for (const fault of slowFirst) {
    for (const backend of backends().filter((b) => fault.on.includes(b.name))) {
      it(`${backend.name}: ${fault.name}`, (context) => exercise(fault, backend, context), 90_000);
    }
  }
});

/**
 * The creation race at its narrowest, to catch it every time rather than when two CLI starts happen to overlap:
 * processes that open the same new state for writing at the same instant (each spins until a common moment), as
 * `sync` does first. Every one must get the state, created and migrated once, or a documented refusal.
 */
describe.concurrent('creation race: openers of one new state at the same instant', () => {
  for (const backend of backends()) {
    it(`${backend.name}: every one opens it`, async ({ expect, onTestFinished }) => {
      const state = await backend.fresh();
      onTestFinished(() => state.drop());
      const open = pathToFileURL(join(ROOT, 'dist', 'state', 'open.js')).href;
      const script = `
        const { openState } = await import(${JSON.stringify(open)});
        const at = Number(process.argv[1]);
        while (Date.now() < at);
        try {
          const state = await openState(process.argv[2], { mode: 'write' });
          await state.close();
          console.log('opened');
        } catch (error) {
          console.log(\`exit \${error.exitCode}: \${error.message}\`);
        }`;
      const at = String(Date.now() + 2_000);
      const openers = Array.from({ length: 8 }, () => execFileAsync(process.execPath, ['--input-type=module', '-e', script, at, state.location], { cwd: ROOT }));
      const outputs = (await Promise.all(openers)).map((result) => result.stdout.trim());
      expect(outputs).toEqual(Array.from({ length: 8 }, () => 'opened'));
      expect(await runsInTable(state.location)).toEqual([]);
    }, 60_000);
  }
});
