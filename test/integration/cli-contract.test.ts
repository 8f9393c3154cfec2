import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { secretFingerprint } from '../../src/model/ids.js';
import { FIXTURES, runCliInProcess, startCli, tempDir, writeCsv, type CliResult } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';

/** Issue 10: one output contract for cron and people, locks for every command that writes, dry run = diff. */

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

/** Every line of both streams parsed as JSON; a line that is not one object fails the test, naming it. */
function jsonLines(result: CliResult): { stdout: Record<string, unknown>[]; stderr: Record<string, unknown>[] } {
  const parse = (text: string, stream: string): Record<string, unknown>[] =>
    text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        let value: unknown;
        try {
          value = JSON.parse(line);
        } catch {
          throw new Error(`${stream} line is not JSON: ${line}`);
        }
        expect(typeof value === 'object' && value !== null && !Array.isArray(value), `${stream} line is not an object: ${line}`).toBe(true);
        return value as Record<string, unknown>;
      });
  return { stdout: parse(result.stdout, 'stdout'), stderr: parse(result.stderr, 'stderr') };
}

function stateFile(cwd: string): string {
  return join(cwd, '.referral-sync', 'state.db');
}

function insertLock(cwd: string, lock: { programId: string; holder: string; pid: number; host: string }): void {
  const db = new Database(stateFile(cwd));
  db.prepare('INSERT OR REPLACE INTO lock (program_id, holder, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)').run(
    lock.programId,
    lock.holder,
    lock.pid,
    lock.host,
    '2026-11-20T03:00:00.000Z',
  );
  db.close();
}

function lockedPrograms(cwd: string): string[] {
  const db = new Database(stateFile(cwd), { readonly: true });
  const rows = db.prepare('SELECT program_id FROM lock ORDER BY program_id').all() as { program_id: string }[];
  db.close();
  return rows.map((r) => r.program_id);
}

/** A pid that is certainly not running on this machine. */
const DEAD_PID = 2 ** 22 + 17;

describe('--log-format json', () => {
  it('every command prints only JSON lines on stdout and stderr, the result saying its outcome and exit code', async () => {
    services = await startServices();
    const cwd = tempDir();
    const env = services.env;
    // One refused message makes retry have work (and exit 1 the first time).
    services.segment.rejectMessage = (m) => (m.userId === 'jian.yang@example.com' ? 400 : undefined);
    const runs: [string[], number][] = [
      [['diff', '--file', FIXTURE, '--detailed-exitcode'], 2],
      [['sync', '--file', FIXTURE, '--dry-run'], 0],
      [['sync', '--file', FIXTURE, '--verbose'], 1],
      [['status'], 0],
      [['check'], 0],
      [['retry', '--to', 'customerio'], 0],
      [['unlock'], 0],
      [['backfill', '--file', FIXTURE, '--rate', 'segment=fast'], 64],
      [['status', '--runs', 'abc'], 64],
      [['sync', '--file', join(cwd, 'missing.csv')], 64],
    ];
    const results = new Map<string, CliResult>();
    for (const [args, code] of runs) {
      const result = await runCliInProcess([...args, '--log-format', 'json'], { cwd, env });
      results.set(args.join(' '), result);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(code);
      const lines = jsonLines(result);
      for (const line of lines.stderr) expect(line).toMatchObject({ time: expect.any(String) as unknown, level: expect.stringMatching(/^(debug|info|warn|error)$/) as unknown, message: expect.any(String) as unknown });
      if (code === 64) {
        expect(lines.stdout).toEqual([]);
        expect(lines.stderr.at(-1)).toMatchObject({ level: 'error', exitCode: 64 });
      } else {
        // The result is one object on stdout, naming the command and the exit code it returns.
        expect(lines.stdout, args.join(' ')).toHaveLength(1);
        expect(lines.stdout[0]).toMatchObject({ command: args[0] === 'sync' && args.includes('--dry-run') ? 'diff' : args[0], exitCode: code });
      }
    }
    // The failing sync said so last, on stderr, as an error carrying its exit code.
    const failing = results.get(`sync --file ${FIXTURE} --verbose`)!;
    expect(jsonLines(failing).stderr.at(-1)).toMatchObject({ level: 'error', outcome: 'failed', exitCode: 1 });
    const summary = jsonLines(failing).stdout[0]!;
    expect(summary).toMatchObject({ command: 'sync', outcome: 'failed', exitCode: 1 });
    // Times are dates, not milliseconds since the process started.
    const segment = (summary.delivery as Record<string, { startedAt: string; finishedAt: string }>).segment!;
    expect(Math.abs(Date.parse(segment.startedAt) - Date.now())).toBeLessThan(10 * 60_000);
    expect(Date.parse(segment.finishedAt)).toBeGreaterThanOrEqual(Date.parse(segment.startedAt));

    services.segment.rejectMessage = undefined;
    const retry = await runCliInProcess(['retry', '--log-format', 'json'], { cwd, env });
    expect(retry.code).toBe(0);
    expect(jsonLines(retry).stdout[0]).toMatchObject({ command: 'retry', outcome: 'done', exitCode: 0, programs: ['default'] });
  }, 120_000);
});

describe('--quiet', () => {
  it('drops progress and notices but keeps the results table and the verdict', async () => {
    services = await startServices();
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--file', FIXTURE, '--quiet'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^referral-sync sync: 48 participants/);
    expect(result.stdout).toMatch(/Segment\s+\d+\s+\d+\s+0\s+0\s/);
    expect(result.stdout).toMatch(/Customer\.io\s+\d+\s+\d+\s+0\s+0\s/);
    expect(result.stdout.trim().split('\n').at(-1)).toMatch(/^sync: done in [\d.]+s: [\d,]+ sent, 0 failed, 0 dead\.$/);
    expect(result.stderr).toBe('');
  }, 60_000);

  it('lists the warnings a sync counted', async () => {
    services = await startServices();
    const cwd = tempDir();
    // A self-referral is a warning (DESIGN.md §4).
    const file = writeCsv(cwd, 'self.csv', [
      { ID: 'p1', Email: 'ann@example.com', 'Referral Count': 0, 'Referred By': 'ann@example.com', 'Created At': '3/2/2025 9:15 AM' },
      { ID: 'p2', Email: 'bob@example.com', 'Referral Count': 0, 'Referred By': '', 'Created At': '3/2/2025 9:15 AM' },
    ]);
    const result = await runCliInProcess(['sync', '--file', file, '--to', 'segment'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('2 participants, 0 invalid, 1 warning (state');
    expect(result.stdout).toMatch(/Warnings \(1\):?\n\s+\S*self\.csv:2: participant p1 is named as their own referrer/);
  }, 60_000);
});

describe('locks', () => {
  it('retry during a running sync of the same program exits 75 at once, naming the unlock command', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeProgram(cwd, 1500, 29);
    const sync = startCli(['sync', '--file', file, '--campaign', 'spring', '--rate', 'segment=200'], cwd, services.env);
    while (services.segment.arrivals.length < 100) await new Promise((r) => setTimeout(r, 20));
    const retry = await runCliInProcess(['retry'], { cwd, env: services.env });
    expect(retry.code).toBe(75);
    expect(retry.stderr).toMatch(/^error: Another run holds the lock on program spring in .+ \(sync, pid \d+ on [^,]+, since [^)]+\)\.\n/);
    expect(retry.stderr).toContain('npx referral-sync unlock --campaign spring');
    sync.child.kill('SIGINT');
    expect(await sync.exited).toBe(130);
    // What the interrupted sync left is retry's to send now, under that program's lock and run.
    const resumed = await runCliInProcess(['retry', '--rate', 'segment=5000'], { cwd, env: services.env });
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain('(program spring)');
    const status = JSON.parse((await runCliInProcess(['status', '--json'], { cwd })).stdout) as { runs: { command: string; programId: string; status: string }[]; locks: unknown[] };
    expect(status.runs[0]).toMatchObject({ command: 'retry', programId: 'spring', status: 'succeeded' });
    expect(status.locks).toEqual([]);
  }, 90_000);

  it('unlock frees a dead run\'s lock, refuses a live one (75), and frees another machine\'s only with --force', async () => {
    services = await startServices();
    const cwd = tempDir();
    expect((await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);

    insertLock(cwd, { programId: 'default', holder: 'sync', pid: process.pid, host: hostname() });
    const live = await runCliInProcess(['unlock'], { cwd });
    expect(live.code).toBe(75);
    expect(live.stderr).toBe(
      `error: Program default is locked by a run that is still going (sync, pid ${process.pid} on ${hostname()}, since 2026-11-20T03:00:00.000Z).\n` +
        `Wait for it to finish, or stop it first (kill ${process.pid}); unlock only frees the lock of a run that is gone.\n`,
    );
    expect(lockedPrograms(cwd)).toEqual(['default']);

    insertLock(cwd, { programId: 'default', holder: 'sync', pid: DEAD_PID, host: hostname() });
    insertLock(cwd, { programId: 'autumn', holder: 'backfill', pid: 42, host: 'runner-7' });
    const status = await runCliInProcess(['status'], { cwd });
    expect(status.stdout).toContain('program autumn: backfill, pid 42 on runner-7, since 2026-11-20T03:00:00.000Z (on another machine');
    const partial = await runCliInProcess(['unlock'], { cwd });
    expect(partial.code).toBe(75);
    expect(partial.stdout).toContain(`unlock: freed 1 of 2 locks (program default, sync pid ${DEAD_PID} on ${hostname()})`);
    expect(partial.stderr).toContain('npx referral-sync unlock --campaign autumn --force');
    expect(lockedPrograms(cwd)).toEqual(['autumn']);

    const forced = await runCliInProcess(['unlock', '--campaign', 'autumn', '--force'], { cwd });
    expect(forced.code).toBe(0);
    expect(lockedPrograms(cwd)).toEqual([]);
    // A sync blocked by that lock would have said how to free it; now it runs.
    expect((await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment', '--campaign', 'autumn', '--new-program'], { cwd, env: services.env })).code).toBe(0);
  }, 90_000);

  it('commands that only read never create a state file, and retry with nothing to resend asks for no credentials', async () => {
    const cwd = tempDir();
    const runs: [string[], number, RegExp][] = [
      [['diff', '--file', FIXTURE], 0, /referral-sync diff/],
      [['status'], 0, /No state yet/],
      [['retry'], 0, /^retry: nothing to retry: no failed or dead deliveries in \.referral-sync\/state\.db\.\n$/],
      [['unlock'], 0, /^unlock: no state at \.referral-sync\/state\.db, so nothing is locked\.\n$/],
      [['sync', '--file', FIXTURE, '--dry-run'], 0, /referral-sync diff/],
    ];
    for (const [args, code, stdout] of runs) {
      const result = await runCliInProcess(args, { cwd });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(code);
      expect(result.stdout).toMatch(stdout);
    }
    expect(existsSync(join(cwd, '.referral-sync'))).toBe(false);
    expect(readdirSync(cwd)).toEqual([]);
  }, 60_000);
});

describe('a dry run is diff', () => {
  it('sync --dry-run with --full --out --detailed-exitcode equals diff byte for byte and exits 2', async () => {
    const cwd = tempDir();
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo', '--full', '--detailed-exitcode'];
    const diff = await runCliInProcess(['diff', ...args, '--out', 'diff.jsonl'], { cwd });
    const dry = await runCliInProcess(['sync', ...args, '--out', 'dry.jsonl', '--dry-run'], { cwd });
    expect(diff.code).toBe(2);
    expect(dry.code).toBe(2);
    expect(dry.stdout).toBe(diff.stdout);
    expect(dry.stderr).toBe(diff.stderr.replace('diff.jsonl', 'dry.jsonl'));
    // The same plan, header and all, but for the moment it was made.
    const made = (file: string): string => readFileSync(join(cwd, file), 'utf8').replace(/"createdAt":"[^"]+"/, '"createdAt":"…"');
    expect(made('dry.jsonl')).toBe(made('diff.jsonl'));
    expect(readFileSync(join(cwd, 'dry.jsonl'), 'utf8').length).toBeGreaterThan(1000);
    const json = await runCliInProcess(['sync', ...args, '--dry-run', '--json'], { cwd });
    expect(json.stdout).toBe((await runCliInProcess(['diff', ...args, '--json'], { cwd })).stdout);
  }, 60_000);

  it('backfill --dry-run after a sync counts re-identifies apart from changed traits', async () => {
    services = await startServices();
    const cwd = tempDir();
    expect((await runCliInProcess(['sync', '--file', FIXTURE], { cwd, env: services.env })).code).toBe(0);
    const dry = await runCliInProcess(['backfill', '--file', FIXTURE, '--dry-run'], { cwd, env: services.env });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/identify {2}new +0 +0\n +changed +0 +0\n +re-identify +48 +48\n +unchanged +0 +0\n/);
  }, 60_000);

  it('preview flags without --dry-run are a usage error that names the fix', async () => {
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--file', FIXTURE, '--out', 'plan.jsonl'], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toBe('error: --out belongs to a preview: add --dry-run to sync (or run `npx referral-sync diff`) to use it.\n');
  });
});

describe('bad flag values', () => {
  it('exit 64 on every command, before anything is read or sent', async () => {
    services = await startServices();
    const cwd = tempDir();
    const cases: string[][] = [
      ['diff', '--file', FIXTURE, '--rate', 'segment=fast'],
      ['diff', '--file', FIXTURE, '--rate-mode', 'slow'],
      ['sync', '--file', FIXTURE, '--dry-run', '--rate', 'segment=fast'],
      ['sync', '--file', FIXTURE, '--dry-run', '--stall-timeout', 'soon'],
      ['backfill', '--file', FIXTURE, '--dry-run', '--rate', 'segment=0'],
      ['sync', '--file', FIXTURE, '--to', 'mixpanel'],
      ['retry', '--rate', 'customerio=-3'],
      ['retry', '--stall-timeout', '0.1s'],
      ['check', '--customerio-api', 'v3'],
      ['check', '--to', 'nowhere'],
      ['status', '--runs', 'abc'],
      ['status', '--runs', '0'],
      ['status', '--runs', '-1'],
      ['unlock', '--log-format', 'xml'],
      ['status', '--sync-nulls'],
      ['retry', '--user-id', 'email'],
    ];
    for (const args of cases) {
      const result = await runCliInProcess(args, { cwd, env: services.env });
      expect(result.code, `${args.join(' ')}: ${result.stdout}${result.stderr}`).toBe(64);
      expect(result.stdout, args.join(' ')).toBe('');
      expect(result.stderr, args.join(' ')).toMatch(/^error: /);
    }
    expect(services.segment.log.total + services.customerio.log.total).toBe(0);
    expect(existsSync(stateFile(cwd))).toBe(false);
  }, 120_000);
});

describe('what the new-user trial found', () => {
  it('Ctrl-C while the destinations are being checked exits 130 at once, saying nothing was sent', async () => {
    services = await startServices({ customerio: { delayMs: 60_000 } });
    const cwd = tempDir();
    const run = startCli(['sync', '--file', FIXTURE], cwd, services.env);
    while (services.customerio.log.total < 1) await new Promise((r) => setTimeout(r, 20));
    const signalled = performance.now();
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(130);
    // Far below the 60 s the hung check would take, far above a busy machine's process exit.
    expect(performance.now() - signalled).toBeLessThan(30_000);
    expect(run.stderr().trim().split('\n').at(-1)).toBe('error: Interrupted by SIGINT before anything was sent.');
    expect(services.segment.arrivals).toEqual([]);
  }, 60_000);

  it('retry stops before sending when a destination is unreachable, and resends every program although GROWSURF_CAMPAIGN_ID is set', async () => {
    services = await startServices();
    const cwd = tempDir();
    services.segment.rejectMessage = (m) => (m.type === 'track' ? 400 : undefined);
    expect((await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment'], { cwd, env: services.env })).code).toBe(1);
    services.segment.rejectMessage = undefined;
    const unreachable = await runCliInProcess(['retry'], { cwd, env: { ...services.env, SEGMENT_HOST: 'http://127.0.0.1:9' } });
    expect(unreachable.code).toBe(69);
    expect(unreachable.stderr).toMatch(/^error: Segment is unreachable at http:\/\/127\.0\.0\.1:9/);
    expect(unreachable.stderr).toContain('Nothing was sent.');
    const retry = await runCliInProcess(['retry'], { cwd, env: { ...services.env, GROWSURF_CAMPAIGN_ID: 'another' } });
    expect(retry.code).toBe(0);
    expect(retry.stdout).toMatch(/^referral-sync retry: \d+ deliveries retried, \d+ went through \(program default\)/);
  }, 60_000);

  it('rows not sent are counted on stderr too; a bad --max-wait is refused with a file source; a usage error is one JSON object', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'bad.csv', [
      { ID: 'p1', Email: 'ann@example.com', 'Referral Count': 0, 'Created At': '2024-02-30' },
      { ID: 'p2', Email: 'bob@example.com', 'Referral Count': 0, 'Created At': '3/2/2025 9:15 AM' },
    ]);
    const sync = await runCliInProcess(['sync', '--file', file, '--to', 'segment'], { cwd, env: services.env });
    expect(sync.code).toBe(0);
    expect(sync.stderr).toBe('warning: 1 invalid row was not sent: the summary lists them with file, line and reason (--json lists every one).\n');

    const maxWait = await runCliInProcess(['diff', '--file', file, '--max-wait', 'forever'], { cwd });
    expect(maxWait.code).toBe(64);
    expect(maxWait.stderr).toBe('error: --max-wait takes a duration such as 90s, 15m or 1h, not "forever".\n');

    const usage = await runCliInProcess(['diff', '--file', file, '--format', 'xls', '--log-format', 'json'], { cwd });
    expect(usage.code).toBe(64);
    const lines = jsonLines(usage).stderr;
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'error', exitCode: 64, message: expect.stringContaining("argument 'xls' is invalid") as unknown, hint: expect.stringContaining('--help') as unknown });
  }, 60_000);

  it('unlock with no lock to free leaves the state file byte for byte', async () => {
    services = await startServices();
    const cwd = tempDir();
    expect((await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);
    const before = readFileSync(stateFile(cwd));
    const unlock = await runCliInProcess(['unlock'], { cwd });
    expect(unlock.code).toBe(0);
    expect(unlock.stdout).toBe('unlock: no lock in .referral-sync/state.db; nothing to free.\n');
    expect(readFileSync(stateFile(cwd)).equals(before)).toBe(true);
  }, 60_000);
});

describe('credentials that changed', () => {
  it('stop a run that would resend the history under new ids, unless --new-destination says it is another workspace', async () => {
    services = await startServices();
    const cwd = tempDir();
    expect((await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);
    const sent = services.segment.arrivals.length;

    const rotated = await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment'], { cwd, env: { ...services.env, SEGMENT_WRITE_KEY: 'seg_wk_rotated' } });
    expect(rotated.code).toBe(64);
    expect(rotated.stderr).toBe(
      `error: .referral-sync/state.db delivered program "default" to Segment with other credentials: SEGMENT_WRITE_KEY (fingerprint ${secretFingerprint('seg_wk_rotated')}; or the config's namespace) is not the one used then (fingerprint ${secretFingerprint(services.env.SEGMENT_WRITE_KEY!)}), and every event id includes their fingerprint, so the history would be sent again under ids Segment cannot dedupe.\n` +
        'If this is a new SEGMENT_WRITE_KEY for the same Segment source (a rotated credential), record it once: `npx referral-sync state rotate --to segment` with the new SEGMENT_WRITE_KEY set; ids stay the same and nothing is sent again. ' +
        'If these credentials are another Segment workspace that should get the history, pass --new-destination.\n',
    );
    // diff needs no key: it plans under the namespace this state delivered the program under, and says so.
    const bare = await runCliInProcess(['diff', '--file', FIXTURE, '--to', 'segment'], { cwd });
    expect(bare.code).toBe(0);
    expect(bare.stdout).toContain(`ids      Segment: SEGMENT_WRITE_KEY is not set; ids use namespace default/segment/${secretFingerprint(services.env.SEGMENT_WRITE_KEY!)}, the one this state delivered program default under`);
    expect(services.segment.arrivals.length).toBe(sent);
    expect(services.segment.writeKeysSeen.has('seg_wk_rotated')).toBe(false);

    const other = await runCliInProcess(['sync', '--file', FIXTURE, '--to', 'segment', '--new-destination'], { cwd, env: { ...services.env, SEGMENT_WRITE_KEY: 'seg_wk_rotated' } });
    expect(other.code).toBe(0);
    // The events went out under the new key's ids (the fake, like Segment, answers 200 and keeps nothing for a key it does not know).
    expect(services.segment.writeKeysSeen.has('seg_wk_rotated')).toBe(true);
    expect(other.stdout).toMatch(/\nSegment +98 /);
  }, 60_000);
});
