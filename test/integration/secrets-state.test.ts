import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { DeliveryEngine } from '../../src/apply/engine.js';
import { TokenBucket } from '../../src/apply/limiter.js';
import { SegmentDestination } from '../../src/destinations/segment.js';
import type { Operation } from '../../src/plan/types.js';
import { openSqliteStateForWriting } from '../../src/state/sqlite/store.js';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { SEGMENT_KEY, startServices, type Services } from '../support/services.js';

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

const PASSWORD = 'hunter2-pw-9f31';

/** sysfs refuses new files even to root: a real EACCES where one exists (else the ENOTDIR/EISDIR cases cover the rule). */
const SYSFS_STATE = '/sys/referral-sync-state.db';
const SYSFS_DENIES = ((): boolean => {
  try {
    writeFileSync(SYSFS_STATE, '');
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EACCES';
  }
})();

function withCredentials(url: string): string {
  return url.replace('http://', `http://proxyuser:${PASSWORD}@`);
}

function onePerson(dir: string): string {
  return writeCsv(dir, 'export.csv', [{ ID: 'p1', Email: 'p1@example.com', 'Created At': '2025-01-01' }]);
}

describe('credentials in URLs are never printed or stored', () => {
  it('a URL with a user and password stops check, sync and diff with exit 64, printed without them', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = onePerson(cwd);
    const segmentHost = withCredentials(services.env.SEGMENT_HOST!);
    const results = [
      await runCliInProcess(['check'], { cwd, env: { ...services.env, SEGMENT_HOST: segmentHost } }),
      await runCliInProcess(['sync', '--file', file], { cwd, env: { ...services.env, CUSTOMERIO_TRACK_URL: withCredentials(services.env.CUSTOMERIO_TRACK_URL!) } }),
      await runCliInProcess(['sync', '--file', file, '--log-format', 'json'], { cwd, env: { ...services.env, SEGMENT_HOST: segmentHost } }),
      await runCliInProcess(['check'], { cwd, env: { ...services.env, SEGMENT_HOST: `ftp://proxyuser:${PASSWORD}@proxy.internal` } }),
      await runCliInProcess(['diff', '--source', 'growsurf', '--campaign', 'c1'], {
        cwd,
        env: { GROWSURF_API_KEY: 'gs-key', GROWSURF_API_URL: `https://proxyuser:${PASSWORD}@api.growsurf.com/v2?api_key=${PASSWORD}` },
      }),
    ];
    expect(results.map((r) => r.code)).toEqual([64, 64, 64, 64, 64]);
    const port = new URL(services.env.SEGMENT_HOST!).port;
    expect(results[0]!.stderr).toBe(
      `error: SEGMENT_HOST has a user and password in it (http://***@127.0.0.1:${port}), which cannot be sent that way.\n` +
        "Remove them from SEGMENT_HOST; the service's own credentials go in their variables (e.g. SEGMENT_WRITE_KEY, CUSTOMERIO_API_KEY).\n",
    );
    expect(JSON.parse(results[2]!.stderr.trim()) as unknown).toMatchObject({ level: 'error', exitCode: 64, message: expect.stringContaining('http://***@127.0.0.1') as unknown });
    expect(results[3]!.stderr).toContain('SEGMENT_HOST must be an http:// or https:// URL, not "ftp://***@proxy.internal".');
    expect(results[4]!.stderr).toContain('GROWSURF_API_URL has a user and password in it (https://***@api.growsurf.com/v2?api_key=***)');
    for (const result of results) expect(result.stdout + result.stderr).not.toContain(PASSWORD);
    expect(services.segment.log.total + services.customerio.log.total).toBe(0);
  });

  it('a mistyped URL with a password (no scheme, "//", "http:") is refused without showing it', async () => {
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [{ ID: 'a', Email: 'a@example.com' }]);
    for (const host of [`alice:${PASSWORD}@127.0.0.1:9`, `//alice:${PASSWORD}@127.0.0.1:9`, `http:alice:${PASSWORD}@127.0.0.1:9`]) {
      const env = { SEGMENT_WRITE_KEY: SEGMENT_KEY, SEGMENT_HOST: host };
      for (const args of [['sync', '--file', file, '--to', 'segment'], ['check', '--to', 'segment']]) {
        const result = await runCliInProcess(args, { cwd, env });
        expect(result.code).toBe(64);
        expect(result.stderr).toContain('***@127.0.0.1:9');
        expect(result.stdout + result.stderr).not.toContain(PASSWORD);
      }
    }
  });

  it('a refusal that echoes a URL with credentials reaches the ledger without them', async () => {
    // A proxy in front of Segment that refuses with its own upstream URL, credentials and all, in the message.
    const proxy = createServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: `upstream ${withCredentials('http://127.0.0.1:9/v1/batch')} refused the batch` }));
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const host = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const dir = tempDir();
    const state = openSqliteStateForWriting(join(dir, 'state.db'));
    const client = new SegmentDestination({ writeKey: SEGMENT_KEY, host });
    const engine = new DeliveryEngine({
      queue: state.queue('c1'),
      runId: await state.startRun('sync', 'c1', new Date()),
      clients: new Map([['segment', client]]),
      limiters: new Map([['segment', new TokenBucket(1000, 100)]]),
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, maxRetryAfterMs: 1 },
      concurrency: new Map([['segment', 1]]),
      stallTimeoutMs: 60_000,
    });
    const payload = { type: 'identify', userId: 'u1', traits: {}, messageId: 'rs1-x' };
    const op: Operation = { destination: 'segment', kind: 'identify', key: 'k1', userId: 'u1', participantId: 'p1', payload, bytes: 10, change: 'new', changes: [], traits: {}, traitsHash: 'h', tierChanges: 0 };
    await engine.start();
    await engine.enqueue(op);
    await engine.finish();
    await new Promise<void>((resolve) => proxy.close(() => resolve()));
    const problems = [];
    for await (const problem of state.allProblems()) problems.push(problem);
    const [row] = problems;
    await state.close();
    expect(row!.lastError).toContain('http://***@127.0.0.1:');
    expect(row!.lastError).not.toContain(PASSWORD);
    expect(readFileSync(join(dir, 'state.db')).toString('latin1')).not.toContain(PASSWORD);
  });
});

describe('a state that cannot be created or written', () => {
  it.each([
    ['under a regular file', (dir: string) => join(writeFileAt(dir, 'not-a-dir'), 'state.db'), 'a part of the path is a file, not a directory (ENOTDIR)', ['sync']],
    // A directory cannot even be read: retry, which only reads when there is nothing to resend, says so too.
    ['a directory', (dir: string) => mkdirAt(dir, 'a-dir'), 'it is a directory (EISDIR)', ['sync', 'retry', 'status', 'diff']],
  ])('%s: exit 73 with one sentence naming the path and the fix, nothing sent', async (_name, makePath, reason, commands) => {
    services = await startServices();
    const cwd = tempDir();
    const statePath = makePath(cwd);
    const args: Record<string, string[]> = { sync: ['sync', '--file', onePerson(cwd)], retry: ['retry'], status: ['status'], diff: ['diff', '--file', onePerson(cwd)] };
    for (const command of commands.map((name) => args[name]!)) {
      const result = await runCliInProcess([...command, '--state', statePath], { cwd, env: services.env });
      expect(result.code).toBe(73);
      expect(result.stderr).toBe(
        `error: The state ${statePath} cannot be created or written: ${reason}.\n` +
          'Point --state (or REFERRAL_SYNC_STATE) at a file in a writable directory, e.g. --state ./.referral-sync/state.db. Nothing was sent.\n',
      );
    }
    expect(services.segment.log.total + services.customerio.log.total).toBe(0);
  });

  it.skipIf(!SYSFS_DENIES)('permission denied even to root (sysfs): exit 73', async () => {
    const denied = SYSFS_STATE;
    services = await startServices();
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--file', onePerson(cwd), '--state', denied], { cwd, env: services.env });
    expect(result.code).toBe(73);
    expect(result.stderr).toContain(`error: The state ${denied} cannot be created or written: permission denied (EACCES).`);
  });
});

describe('a file given as state that is not ours is left exactly as it was', () => {
  it.each([
    ['a text file', (path: string) => writeFileSync(path, 'id,email\n1,a@example.com\n'), 0o644],
    ['another program’s SQLite database', (path: string) => foreignDatabase(path), 0o640],
    ['a corrupt file', (path: string) => writeFileSync(path, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4000, 0xab)])), 0o604],
  ])('%s: exit 65, same bytes, same mode', async (_name, write, mode) => {
    services = await startServices();
    const cwd = tempDir();
    const statePath = join(cwd, 'precious.db');
    write(statePath);
    chmodSync(statePath, mode);
    const bytes = readFileSync(statePath);
    const result = await runCliInProcess(['sync', '--file', onePerson(cwd), '--state', statePath], { cwd, env: services.env });
    expect(result.code).toBe(65);
    expect(result.stderr).toContain('it was left untouched');
    expect(readFileSync(statePath).equals(bytes)).toBe(true);
    expect(statSync(statePath).mode & 0o777).toBe(mode);
    expect(services.segment.log.total + services.customerio.log.total).toBe(0);
  });

  it('our own state file is made 0600 when a run writes it', async () => {
    services = await startServices();
    const cwd = tempDir();
    const statePath = join(cwd, 'state.db');
    expect((await runCliInProcess(['sync', '--file', onePerson(cwd), '--state', statePath], { cwd, env: services.env })).code).toBe(0);
    chmodSync(statePath, 0o644);
    expect((await runCliInProcess(['sync', '--file', onePerson(cwd), '--state', statePath], { cwd, env: services.env })).code).toBe(0);
    expect(statSync(statePath).mode & 0o777).toBe(0o600);
  });
});

function writeFileAt(dir: string, name: string): string {
  const path = join(dir, name);
  writeFileSync(path, 'just a file\n');
  return path;
}

function mkdirAt(dir: string, name: string): string {
  const path = join(dir, name);
  mkdirSync(path);
  return path;
}

function foreignDatabase(path: string): void {
  const db = new Database(path);
  db.exec('CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices (total) VALUES (12.5);');
  db.close();
}
