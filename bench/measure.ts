import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Measured {
  label: string;
  wallMs: number;
  cpuMs: number;
  rssMb: number;
  stdout: string;
}

/** Runs a node script in a child process and reads its own peak RSS and CPU time (bench/report-rss.mjs). */
export function measure(label: string, args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, ['--import', join(ROOT, 'bench', 'report-rss.mjs'), ...args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '', CI: 'true', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => {
      const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      const match = /BENCH (\{.*\})/.exec(stderr);
      if (!match || (code !== 0 && code !== 1)) {
        reject(new Error(`${label} failed (exit ${code}): ${stderr.split('\n').slice(-5).join(' ')}`));
        return;
      }
      const usage = JSON.parse(match[1]!) as { maxRssKb: number; userMs: number; systemMs: number };
      resolve({ label, wallMs, cpuMs: usage.userMs + usage.systemMs, rssMb: usage.maxRssKb / 1024, stdout });
    });
  });
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}
