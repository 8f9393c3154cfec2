// `npm run bench`: performance figures of referral-sync against naive baselines, measured in the same run.
//   diff:     a generated export (BENCH_ROWS, default 1,000,000) through `diff`, vs the whole file in memory.
//   delivery: generated programs of 10k and 100k participants synced end to end into the fake Segment and
//             Customer.io, vs sequential await-per-call through the same SDKs and vs the previous engine.
//   skew:     a sync where Segment is 100x slower than Customer.io, at 20k and 200k participants: peak RSS
//             stays flat because what Segment cannot take yet waits in the state's queue, not in memory.
//   cello:    a generated Cello program (BENCH_CELLO_REFERRERS, default 1,500) through `diff --enrich` against
//             the fake Cello: adaptive vs --rate-mode fixed (5/s, from a 150-lookup sample) with no limit, then
//             adaptive against a Cello throttling at BENCH_CELLO_LIMIT (default 20) requests/s.
//   state:    the same generated program (BENCH_STATE_SIZES, default 100,000) synced end to end twice, once with
//             SQLite state and once with PostgreSQL state (BENCH_POSTGRES, default a throwaway schema on
//             postgres://postgres@127.0.0.1:5432/test, dropped afterwards; skipped when unreachable).
// Pick one with `npm run bench -- diff|delivery|skew|cello|state`; BENCH_DELIVERY_SIZES=10000,100000,
// BENCH_SKEW_SIZES=20000,200000.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeCello } from '../test/fakes/cello.js';
import { FakeCustomerio } from '../test/fakes/customerio.js';
import type { FaultOptions } from '../test/fakes/http.js';
import { lookupTimeline, seedCello, writeCelloProgram, type CelloProgram } from '../test/support/cello-program.js';
import { FakeSegment } from '../test/fakes/segment.js';
import { generateExport } from './generate-export.js';
import { measure, ROOT, table, type Measured } from './measure.js';

const BIN = join(ROOT, 'bin', 'referral-sync.js');
const which = process.argv[2] ?? 'all';

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

async function benchDiff(): Promise<void> {
  const rows = Number(process.env.BENCH_ROWS ?? 1_000_000);
  const dir = mkdtempSync(join(tmpdir(), 'referral-sync-bench-'));
  try {
    const file = join(dir, 'export.csv');
    await generateExport(file, rows);
    console.log(`\n## diff: ${rows.toLocaleString('en-US')} rows (${(statSync(file).size / 1e6).toFixed(0)} MB)\n`);
    const streaming = await measure('referral-sync diff (streaming)', [BIN, 'diff', '--file', file, '--quiet', '--json'], { cwd: dir });
    const naive = await measure('naive (whole file in memory)', ['--max-old-space-size=16384', join(ROOT, '.bench-build', 'bench', 'naive-diff.js'), file], { cwd: dir });
    const line = (m: Measured): string[] => [m.label, seconds(m.wallMs), seconds(m.cpuMs), m.rssMb.toFixed(0), Math.round(rows / (m.wallMs / 1000)).toLocaleString('en-US')];
    console.log(table([['run', 'wall s', 'CPU s', 'peak RSS MB', 'rows/s'], line(streaming), line(naive)]));
    console.log(`\npeak memory: ${(naive.rssMb / streaming.rssMb).toFixed(1)}x less than the naive baseline; wall time ratio naive/streaming ${(naive.wallMs / streaming.wallMs).toFixed(2)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface DeliveryReport {
  sent: number;
  /** ISO times, as `--json` reports them. */
  startedAt: string;
  finishedAt: string;
}

interface BenchFakes {
  dir: string;
  segment: FakeSegment;
  customerio: FakeCustomerio;
  env: Record<string, string>;
}

/** Fake Segment and Customer.io on loopback and a temp dir, for the length of `run`. */
async function withFakes<T>(run: (fakes: BenchFakes) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'referral-sync-bench-'));
  const segment = new FakeSegment('bench-write-key');
  const customerio = new FakeCustomerio('bench-site', 'bench-key');
  try {
    const env = {
      SEGMENT_WRITE_KEY: 'bench-write-key',
      SEGMENT_HOST: await segment.start(),
      CUSTOMERIO_SITE_ID: 'bench-site',
      CUSTOMERIO_API_KEY: 'bench-key',
      CUSTOMERIO_TRACK_URL: await customerio.start(),
    };
    return await run({ dir, segment, customerio, env });
  } finally {
    await segment.stop();
    await customerio.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchDelivery(size: number, naiveSample: number): Promise<void> {
  await withFakes(async ({ dir, env }) => {
    const file = join(dir, 'export.csv');
    await generateExport(file, size, 7);
    console.log(`\n## delivery: ${size.toLocaleString('en-US')} participants, both destinations, fake servers on loopback\n`);
    // Rates far above the fakes' needs: this measures the tool, not the limiter.
    const run = await measure('referral-sync sync', [BIN, 'sync', '--file', file, '--json', '--rate', 'segment=1000000,customerio=100000', '--rate-mode', 'fixed'], { cwd: dir, env });
    const result = JSON.parse(run.stdout) as { delivery: Record<string, DeliveryReport> };
    const rows: string[][] = [['run', 'destination', 'operations', 'seconds', 'ops/s', 'CPU s (whole run)', 'peak RSS MB']];
    const rates: Record<string, number> = {};
    for (const [destination, report] of Object.entries(result.delivery)) {
      const secs = (Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 1000;
      rates[destination] = report.sent / secs;
      rows.push(['referral-sync', destination, String(report.sent), secs.toFixed(1), Math.round(rates[destination]!).toLocaleString('en-US'), seconds(run.cpuMs), run.rssMb.toFixed(0)]);
    }
    const planFile = join(dir, 'plan.jsonl');
    // Same ids as the sync: a fresh state, so the naive run sends the same operations again (the fakes dedupe).
    await measure('plan', [BIN, 'diff', '--file', file, '--out', planFile, '--quiet', '--state', join(dir, 'empty.db')], { cwd: dir, env });
    const naive = await measure('naive', [join(ROOT, '.bench-build', 'bench', 'naive-delivery.js'), planFile, String(naiveSample)], { cwd: dir, env });
    const naiveResult = JSON.parse(naive.stdout) as { participants: number; timings: Record<string, { ops: number; ms: number }> };
    for (const [destination, t] of Object.entries(naiveResult.timings)) {
      const perSecond = t.ops / (t.ms / 1000);
      const total = result.delivery[destination]?.sent ?? 0;
      rows.push([
        `naive (${naiveResult.participants} participants, extrapolated)`,
        destination,
        `${t.ops} of ${total}`,
        `${(total / perSecond).toFixed(0)} est.`,
        perSecond.toFixed(1),
        seconds(naive.cpuMs),
        naive.rssMb.toFixed(0),
      ]);
      console.log(`${destination}: referral-sync ${Math.round(rates[destination] ?? 0)} ops/s vs naive ${perSecond.toFixed(1)} ops/s = ${((rates[destination] ?? 0) / perSecond).toFixed(0)}x`);
    }
    const previous = PREVIOUS_ENGINE[size];
    if (previous) {
      rows.push(['previous engine (session note, same machine)', 'each', '', '', previous.opsPerSecond.toLocaleString('en-US'), '', previous.rssMb === undefined ? '' : String(previous.rssMb)]);
      for (const [destination, rate] of Object.entries(rates)) {
        console.log(`${destination}: ${Math.round(rate)} ops/s now vs ${previous.opsPerSecond} ops/s with the previous engine (${(rate / previous.opsPerSecond).toFixed(2)}x)`);
      }
    }
    console.log('');
    console.log(table(rows));
  });
}

/**
 * The engine before the durable queue (one planner stream feeding both destinations with backpressure), as
 * measured by `npm run bench -- delivery` on this 2-core machine and written in that session's note.
 */
const PREVIOUS_ENGINE: Record<number, { opsPerSecond: number; rssMb?: number }> = {
  10_000: { opsPerSecond: 2538 },
  100_000: { opsPerSecond: 2216, rssMb: 373 },
};

/**
 * Segment held to 1/100 of Customer.io's pace. Once Customer.io has everything (and the planner is long done),
 * the run is stopped with SIGTERM: the peak RSS of the whole run shows whether the backlog sat in memory.
 */
async function benchSkew(size: number): Promise<{ size: number; rssMb: number; seconds: number; cioOps: number; segmentOps: number; waiting: string }> {
  return withFakes(async ({ dir, segment, customerio, env }) => {
    const file = join(dir, 'export.csv');
    await generateExport(file, size, 11);
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', join(ROOT, 'bench', 'report-rss.mjs'), BIN, 'sync', '--file', file, '--rate', 'segment=25,customerio=100000', '--rate-mode', 'fixed'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', CI: 'true', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    // Customer.io has everyone once every participant was identified and its event count stopped growing.
    let last = -1;
    for (;;) {
      await new Promise((r) => setTimeout(r, 2_000));
      const now = customerio.eventArrivals.length + customerio.identifyArrivals.length;
      if (customerio.people.size >= size && now === last) break;
      last = now;
    }
    const cioOps = customerio.eventArrivals.length + customerio.identifyArrivals.length;
    const segmentOps = segment.arrivals.length;
    child.kill('SIGTERM');
    await exited;
    const usage = JSON.parse(/BENCH (\{.*\})/.exec(stderr)![1]!) as { maxRssKb: number };
    const waiting = /(\d+) operations? left in the queue/.exec(stderr)?.[1] ?? '?';
    return { size, rssMb: usage.maxRssKb / 1024, seconds: (performance.now() - started) / 1000, cioOps, segmentOps, waiting };
  });
}

interface CelloRun {
  label: string;
  lookups: number;
  requests: number;
  seconds: number;
  perSecond: number;
  settledRate: number;
  refused: number;
  wallMs: number;
}

/** One `diff --enrich` of `program` against a fresh fake Cello; lookup figures as the fake saw them. */
async function celloRun(label: string, dir: string, program: CelloProgram, faults: FaultOptions, extra: string[]): Promise<CelloRun> {
  const cello = new FakeCello('bench-key-id', 'bench-secret', faults);
  seedCello(cello, program);
  try {
    const env = { CELLO_ACCESS_KEY_ID: 'bench-key-id', CELLO_SECRET_ACCESS_KEY: 'bench-secret', CELLO_API_URL: await cello.start() };
    const state = join(dir, `${label.replace(/\W+/g, '-')}.db`);
    const run = await measure(label, [BIN, 'diff', '--source', 'cello', '--file', ...program.files, '--enrich', '--to', 'segment', '--json', '--quiet', '--state', state, ...extra], { cwd: dir, env });
    const report = (JSON.parse(run.stdout) as { lookups: { lookups: number; settledRate: number } }).lookups;
    const timeline = lookupTimeline(cello);
    return {
      label,
      lookups: report.lookups,
      requests: cello.log.total,
      seconds: timeline.seconds,
      perSecond: timeline.perSecond,
      settledRate: report.settledRate,
      refused: cello.log.rateLimited,
      wallMs: run.wallMs,
    };
  } finally {
    await cello.stop();
  }
}

async function benchCello(): Promise<void> {
  const referrers = Number(process.env.BENCH_CELLO_REFERRERS ?? 1500);
  const limit = Number(process.env.BENCH_CELLO_LIMIT ?? 20);
  const latency = Number(process.env.BENCH_CELLO_LATENCY_MS ?? 30);
  const dir = mkdtempSync(join(tmpdir(), 'referral-sync-bench-'));
  try {
    const program = writeCelloProgram(dir, referrers);
    // 75 referrers = 150 lookups: the fixed 5/s rate is measured on them and extrapolated (30 s instead of 10 min).
    const sample = writeCelloProgram(mkdtempSync(join(dir, 'sample-')), 75, 12);
    console.log(`\n## cello: ${referrers.toLocaleString('en-US')} referrers, ${program.lookups.toLocaleString('en-US')} lookups with --enrich, fake Cello answering in ${latency} ms\n`);
    const adaptive = await celloRun('adaptive (default: 5/s rising to 50/s), no limit', dir, program, { delayMs: latency }, []);
    const fixed = await celloRun('--rate-mode fixed (5/s), 150-lookup sample', dir, sample, { delayMs: latency }, ['--rate-mode', 'fixed']);
    const throttled = await celloRun(`adaptive, Cello limited to ${limit}/s`, dir, program, { delayMs: latency, rateLimitPerSecond: limit }, []);
    const fixedFull = program.lookups / fixed.perSecond;
    const rows = [['run', 'lookups', 'requests', 'lookup s', 'lookups/s', 'settled rate/s', '429s', 'wall s']];
    for (const r of [adaptive, fixed, throttled]) {
      rows.push([r.label, String(r.lookups), String(r.requests), r.seconds.toFixed(1), r.perSecond.toFixed(1), r.settledRate.toFixed(1), String(r.refused), seconds(r.wallMs)]);
    }
    rows.push([`--rate-mode fixed, extrapolated to ${program.lookups} lookups`, String(program.lookups), '', `${fixedFull.toFixed(0)} est.`, fixed.perSecond.toFixed(1), '5.0', '', '']);
    console.log(table(rows));
    console.log(`\nno limit: adaptive lookups ${(fixedFull / adaptive.seconds).toFixed(1)}x faster than fixed 5/s (${adaptive.seconds.toFixed(1)} s vs ${fixedFull.toFixed(0)} s est.)`);
    console.log(
      `limit ${limit}/s: settled at ${throttled.settledRate.toFixed(1)}/s (${(throttled.settledRate / limit).toFixed(2)} of the limit), ` +
        `${throttled.refused} of ${throttled.requests} requests answered 429 (${((throttled.refused / throttled.requests) * 100).toFixed(1)} %)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One sync of `file` into fresh fakes with `state`; wall time, peak RSS and ops/s per destination. */
async function stateRun(label: string, file: string, state: string): Promise<{ label: string; run: Measured; rates: Record<string, { sent: number; perSecond: number }> }> {
  return withFakes(async ({ dir, env }) => {
    // Rates far above the fakes' needs: this measures the tool and its state, not the limiter.
    const run = await measure(label, [BIN, 'sync', '--file', file, '--json', '--state', state, '--rate', 'segment=1000000,customerio=100000', '--rate-mode', 'fixed'], { cwd: dir, env });
    const result = JSON.parse(run.stdout) as { delivery: Record<string, DeliveryReport> };
    const rates: Record<string, { sent: number; perSecond: number }> = {};
    for (const [destination, report] of Object.entries(result.delivery)) {
      rates[destination] = { sent: report.sent, perSecond: report.sent / ((Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 1000) };
    }
    return { label, run, rates };
  });
}

async function benchState(size: number): Promise<void> {
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  const url = process.env.BENCH_POSTGRES ?? `postgres://postgres@127.0.0.1:5432/test?schema=${schema}`;
  const owned = process.env.BENCH_POSTGRES === undefined;
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: url.replace(/[?].*$/, ''), connectionTimeoutMillis: 5_000 });
  try {
    await admin.connect();
  } catch (err) {
    console.log(`\n## state: skipped, PostgreSQL unreachable at ${url.replace(/\/\/[^@/]*@/, '//***@')}: ${(err as Error).message}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'referral-sync-bench-'));
  try {
    const file = join(dir, 'export.csv');
    await generateExport(file, size, 13);
    console.log(`\n## state: ${size.toLocaleString('en-US')} participants, both destinations, SQLite vs PostgreSQL state\n`);
    const sqlite = await stateRun('SQLite state (file)', file, join(dir, 'state.db'));
    const postgres = await stateRun('PostgreSQL state (loopback)', file, url);
    const rows = [['state', 'wall s', 'CPU s', 'peak RSS MB', ...Object.keys(sqlite.rates).map((d) => `${d} ops/s`), 'operations']];
    for (const r of [sqlite, postgres]) {
      const ops = Object.values(r.rates).reduce((n, x) => n + x.sent, 0);
      rows.push([r.label, seconds(r.run.wallMs), seconds(r.run.cpuMs), r.run.rssMb.toFixed(0), ...Object.keys(sqlite.rates).map((d) => Math.round(r.rates[d]?.perSecond ?? 0).toLocaleString('en-US')), String(ops)]);
    }
    console.log(table(rows));
    const ratio = postgres.run.wallMs / sqlite.run.wallMs;
    console.log(`\nwall time PostgreSQL/SQLite: ${ratio.toFixed(2)}x (target: at most 2x) ${ratio <= 2 ? 'ok' : 'OVER'}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (owned) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch((err: Error) => console.log(`could not drop schema ${schema}: ${err.message}`));
    await admin.end();
  }
}

if (which === 'all' || which === 'skew') {
  const sizes = (process.env.BENCH_SKEW_SIZES ?? '20000,200000').split(',').map(Number);
  console.log('\n## skew: Segment at 25 events/s, Customer.io unlimited (100x+ faster); stopped once Customer.io has everything\n');
  const rows = [['participants', 'Customer.io ops', 'Segment ops', 'left queued', 'seconds', 'peak RSS MB']];
  for (const size of sizes) {
    const r = await benchSkew(size);
    rows.push([r.size.toLocaleString('en-US'), String(r.cioOps), String(r.segmentOps), r.waiting, r.seconds.toFixed(0), r.rssMb.toFixed(0)]);
  }
  console.log(table(rows));
}
if (which === 'all' || which === 'cello') await benchCello();
if (which === 'all' || which === 'delivery') {
  const sizes = (process.env.BENCH_DELIVERY_SIZES ?? '10000,100000').split(',').map(Number);
  for (const size of sizes) await benchDelivery(size, 100);
}
if (which === 'all' || which === 'diff') await benchDiff();
if (which === 'all' || which === 'state') {
  for (const size of (process.env.BENCH_STATE_SIZES ?? '100000').split(',').map(Number)) await benchState(size);
}
