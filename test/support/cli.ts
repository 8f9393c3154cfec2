import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

export function tempDir(prefix = 'referral-sync-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
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
