// `npm run bench` (diff part): a generated export through `referral-sync diff`, streaming, against the naive
// whole-file baseline, in one run. Prints wall time, CPU time and peak RSS of each. Rows: BENCH_ROWS (default 1,000,000).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateExport } from './generate-export.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), 'referral-sync-bench-'));
const file = join(dir, 'export.csv');

function measure(label, args) {
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, ['--import', join(root, 'bench', 'report-rss.mjs'), ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, CI: 'true' },
    maxBuffer: 64 * 1024 * 1024,
  });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const match = /BENCH (\{.*\})/.exec(result.stderr);
  if (result.status !== 0 || !match) {
    return { label, failed: `exit ${result.status}: ${result.stderr.split('\n').slice(-4).join(' ')}` };
  }
  const usage = JSON.parse(match[1]);
  return { label, wallMs, cpuMs: usage.userMs + usage.systemMs, rssMb: usage.maxRssKb / 1024 };
}

try {
  const t = Date.now();
  await generateExport(file, rows);
  console.log(`Generated ${rows.toLocaleString('en-US')} rows (${(statSync(file).size / 1e6).toFixed(0)} MB) in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  const streaming = measure('referral-sync diff (streaming)', [join(root, 'bin', 'referral-sync.js'), 'diff', '--file', file, '--quiet', '--json']);
  const naive = measure('naive: whole file in memory', ['--max-old-space-size=16384', join(root, 'bench', 'naive-diff.mjs'), file]);
  console.log('');
  console.log(`${'run'.padEnd(34)}${'wall s'.padStart(9)}${'CPU s'.padStart(9)}${'peak RSS MB'.padStart(13)}${'rows/s'.padStart(11)}`);
  for (const r of [streaming, naive]) {
    if (r.failed) console.log(`${r.label.padEnd(34)} failed: ${r.failed}`);
    else console.log(`${r.label.padEnd(34)}${(r.wallMs / 1000).toFixed(1).padStart(9)}${(r.cpuMs / 1000).toFixed(1).padStart(9)}${r.rssMb.toFixed(0).padStart(13)}${Math.round(rows / (r.wallMs / 1000)).toLocaleString('en-US').padStart(11)}`);
  }
  if (!streaming.failed && !naive.failed) {
    console.log(`\nPeak memory: streaming uses ${(naive.rssMb / streaming.rssMb).toFixed(1)}x less than the naive baseline; time ratio naive/streaming ${(naive.wallMs / streaming.wallMs).toFixed(2)}.`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
