import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Clock } from '../../src/apply/limiter.js';
import { SkipClock } from './clock.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'referral-sync.js');
export const FIXTURES = join(ROOT, 'fixtures');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI as a user would, with a minimal environment (no stray credentials from the host). */
export function runCli(args: string[], options: { cwd: string; env?: Record<string, string>; nodeOptions?: string[] }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeOptions ?? []), BIN, ...args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '', HOME: options.cwd, CI: 'true', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The built CLI as a background process, to signal or race mid-run; its output is collected as it comes. */
export function startCli(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): { child: ChildProcess; exited: Promise<number | null>; stdout: () => string; stderr: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', CI: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/**
 * Runs the CLI in this process through `run(argv, environment)` (src/cli/main.ts), the function the built CLI's
 * `main` calls, with the same minimal environment as `runCli` and its output captured. For tests about what the
 * CLI sends and records, not about the process around it (signals, exit, the launcher: those use `runCli` or a
 * spawned child) nor about real timing (rates measured against a fake's limit: spawned too). It saves starting
 * Node and loading every module for each run, and its waits (rate limiters, Retry-After pauses, backoffs) go
 * through `clock`: by default a fresh SkipClock, so they are honoured without being sat out; a test whose fake
 * services keep time (policy windows, arrivals) passes one clock to both (FakeService.clock).
 *
 * Relative paths (`--file exports/x.csv`, the default state `.referral-sync/state.db`) are resolved against the
 * process's working directory, as in a real run, so the run changes it to `cwd` while it lasts; runs in one test
 * process therefore take turns (tests in other files run in other processes).
 */
export function runCliInProcess(args: string[], options: InProcessOptions): Promise<CliResult> {
  const turn = inProcessTurn.then(() => runInProcessNow(args, options));
  inProcessTurn = turn.catch(() => undefined);
  return turn;
}

/** Streams for an in-process run of the CLI that collect what it writes. */
export function capturingStreams(): { captured: { stdout: string; stderr: string }; sink: (name: 'stdout' | 'stderr') => Writable } {
  const captured = { stdout: '', stderr: '' };
  const sink = (name: 'stdout' | 'stderr'): Writable =>
    new Writable({
      decodeStrings: false,
      write(chunk: string | Buffer, _encoding, done) {
        captured[name] += chunk.toString();
        done();
      },
    });
  return { captured, sink };
}

let inProcessTurn: Promise<unknown> = Promise.resolve();

export interface InProcessOptions {
  cwd: string;
  env?: Record<string, string>;
  clock?: Clock;
  /**
   * A fake terminal: what the person types (stdin, marked a TTY), and stderr marked a TTY too. Questions are asked
   * only at a terminal outside CI, so pass `env: { CI: 'false' }` with it (and --no-progress, to keep bars out).
   */
  terminal?: { input: NodeJS.ReadableStream };
}

async function runInProcessNow(args: string[], options: InProcessOptions): Promise<CliResult> {
  const { run } = await import('../../src/cli/main.js');
  const { captured, sink } = capturingStreams();
  // A warning Node prints (a listener leak, a deprecation) would reach a spawned CLI's stderr: here too.
  const onWarning = (warning: Error): void => void (captured.stderr += `(node) ${warning.name}: ${warning.message}\n`);
  process.on('warning', onWarning);
  const previous = process.cwd();
  process.chdir(options.cwd);
  try {
    const stderr = Object.assign(sink('stderr'), options.terminal ? { isTTY: true } : {});
    const code = await run([process.execPath, BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: options.cwd, CI: 'true', ...options.env },
      cwd: options.cwd,
      streams: { stdout: sink('stdout'), stderr },
      now: () => new Date(),
      clock: options.clock ?? new SkipClock(),
      ...(options.terminal ? { stdin: Object.assign(options.terminal.input, { isTTY: true }) } : {}),
    });
    return { code, ...captured };
  } finally {
    process.chdir(previous);
    process.off('warning', onWarning);
  }
}

/** The directories this test file made, removed once its tests are done (test/support/cleanup.ts). */
const madeDirs: string[] = [];

export function tempDir(prefix = 'referral-sync-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

/** Removes every directory `tempDir` made in this test file; one a process still holds open is left, not failed on. */
export function removeTempDirs(): void {
  for (const dir of madeDirs.splice(0)) rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
}

/** Writes a CSV built from objects (header = every key any row has, in first-seen order), quoting as needed. */
export function writeCsv(dir: string, name: string, rows: Record<string, string | number | undefined>[], header?: string[]): string {
  const columns = header ?? [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const quote = (value: string | number | undefined): string => {
    const text = value === undefined ? '' : String(value);
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [columns.map(quote).join(','), ...rows.map((row) => columns.map((c) => quote(row[c])).join(','))];
  const path = join(dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}
