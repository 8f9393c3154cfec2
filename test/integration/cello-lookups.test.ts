import { join } from 'node:path';
import { describe, it, type TestContext } from 'vitest';
import { FakeCello } from '../fakes/cello.js';
import type { FaultOptions } from '../fakes/http.js';
import { lookupTimeline, seedCello, writeCelloProgram, type CelloProgram } from '../support/cello-program.js';
import { runCli, runCliInProcess, tempDir } from '../support/cli.js';
import { readPlan } from '../support/plan.js';

const KEY_ID = 'cello_key_id_lookups';
const SECRET = 'cello_secret_lookups_9c1e';

/** A fake Cello for one test, stopped when it finishes (the tests run concurrently: each has its own). */
async function startCello(onTestFinished: TestContext['onTestFinished'], program: CelloProgram, faults: FaultOptions = {}): Promise<{ cello: FakeCello; env: Record<string, string> }> {
  const cello = new FakeCello(KEY_ID, SECRET, faults);
  seedCello(cello, program);
  onTestFinished(() => cello.stop());
  const url = await cello.start();
  return { cello, env: { CELLO_ACCESS_KEY_ID: KEY_ID, CELLO_SECRET_ACCESS_KEY: SECRET, CELLO_API_URL: url } };
}

interface Lookups {
  lookups: number;
  requests: number;
  seconds: number;
  rateMode: string;
  settledRate: number;
  ceiling: number;
  throttled: number;
}

function diffArgs(program: CelloProgram, out: string, ...extra: string[]): string[] {
  return ['diff', '--source', 'cello', '--file', ...program.files, '--enrich', '--to', 'segment', '--json', '--out', out, ...extra];
}

// The tests share nothing (own fakes on port 0, own directories) and spend their time at a rate: they run
// concurrently. The two that measure rates run the built CLI as a child, on the real clock.
describe.concurrent('Cello lookups: concurrent, at an adaptive rate', () => {
  it('against a Cello with no limit (50 ms a lookup), adaptive lookups run at least 8x the rate of --rate-mode fixed at 5/s, each key asked once, rows in order', async ({ expect, onTestFinished }) => {
    // Adaptive: 300 referrers, 600 lookups, ceiling --rate cello=200 (the default ceiling of 50 is the bench's
    // case; this keeps the test short). Fixed: a sample of 15 referrers (30 lookups), its rate measured the same way.
    const dir = tempDir();
    const program = writeCelloProgram(dir, 300);
    const { cello, env } = await startCello(onTestFinished, program, { delayMs: 50 });
    const out = join(dir, 'plan.jsonl');
    const result = await runCli(diffArgs(program, out, '--rate', 'cello=200'), { cwd: dir, env });
    expect(result.code).toBe(0);
    const adaptive = lookupTimeline(cello);

    const sampleDir = tempDir();
    const sample = writeCelloProgram(sampleDir, 15, 12);
    const fixedFake = await startCello(onTestFinished, sample, { delayMs: 50 });
    const fixedRun = await runCli(diffArgs(sample, join(sampleDir, 'plan.jsonl'), '--rate-mode', 'fixed'), { cwd: sampleDir, env: fixedFake.env });
    expect(fixedRun.code).toBe(0);
    const fixed = lookupTimeline(fixedFake.cello);
    console.log(
      `cello lookups, no limit, 50 ms each: adaptive ${adaptive.count} in ${adaptive.seconds.toFixed(1)} s = ${adaptive.perSecond.toFixed(1)}/s; ` +
        `fixed 5/s sample ${fixed.count} in ${fixed.seconds.toFixed(1)} s = ${fixed.perSecond.toFixed(2)}/s; ratio ${(adaptive.perSecond / fixed.perSecond).toFixed(1)}x; ` +
        `most connections at once ${cello.log.maxConnections}`,
    );
    expect(fixed.perSecond).toBeLessThanOrEqual(5.2);
    expect(adaptive.perSecond / fixed.perSecond).toBeGreaterThanOrEqual(8);
    // Sequential lookups could not pass 20/s at 50 ms each: many were in flight at once.
    expect(cello.log.maxConnections).toBeGreaterThan(4);

    // Each code and each referrer asked once, and nothing but lookups.
    expect(adaptive.count).toBe(program.lookups);
    expect([...cello.lookups.values()].every((n) => n === 1)).toBe(true);
    expect([...cello.lookups.keys()].filter((k) => k.startsWith('FORBIDDEN'))).toEqual([]);
    expect(cello.tokensIssued).toBe(1);

    // Participants come out in the exports' order, enriched, whatever order the answers came back in.
    const identifies = readPlan(out).filter((l) => l.kind === 'identify');
    expect(identifies.map((l) => l.userId)).toEqual([...program.referred, ...program.referrers]);
    const code = [...program.codes.keys()][7]!;
    expect(identifies.find((l) => l.userId === program.codes.get(code))!.payload.traits).toMatchObject({ referral_code: code, referral_link: `https://example.cello.so/${code}` });

    // The run reports them: a line on stderr, a field in --json.
    const summary = JSON.parse(result.stdout) as { lookups: Lookups };
    expect(summary.lookups).toMatchObject({ lookups: program.lookups, rateMode: 'adaptive', ceiling: 200, throttled: 0 });
    expect(summary.lookups.settledRate).toBe(200);
    expect(result.stderr).toMatch(/Cello lookups: 600 in [\d.]+ s \([\d.]+\/s\), rate adaptive, settled at 200\/s \(ceiling 200\/s\)\./);
    const fixedSummary = JSON.parse(fixedRun.stdout) as { lookups: Lookups };
    expect(fixedSummary.lookups).toMatchObject({ lookups: 30, rateMode: 'fixed', settledRate: 5, ceiling: 5 });
    expect(result.stdout + result.stderr + fixedRun.stdout + fixedRun.stderr).not.toContain(SECRET);
  });

  it('against a Cello that allows 20 requests/s, the rate settles near 20 with few 429s, and every lookup still succeeds', async ({ expect, onTestFinished }) => {
    const limit = 20;
    const dir = tempDir();
    const program = writeCelloProgram(dir, 150, 13);
    const { cello, env } = await startCello(onTestFinished, program, { rateLimitPerSecond: limit });
    const out = join(dir, 'plan.jsonl');
    const result = await runCli(diffArgs(program, out), { cwd: dir, env });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { lookups: Lookups };
    const timeline = lookupTimeline(cello);
    const refused = cello.log.rateLimited;
    console.log(
      `cello lookups, limit ${limit}/s: ${summary.lookups.lookups} lookups, ${cello.log.total} requests in ${timeline.seconds.toFixed(1)} s; ` +
        `settled at ${summary.lookups.settledRate.toFixed(1)}/s; ${refused} answered 429 (${((refused / cello.log.total) * 100).toFixed(1)} %)`,
    );
    expect(summary.lookups.lookups).toBe(program.lookups);
    expect([...cello.lookups.values()].every((n) => n === 1)).toBe(true);
    expect(summary.lookups.settledRate).toBeGreaterThanOrEqual(0.5 * limit);
    expect(summary.lookups.settledRate).toBeLessThanOrEqual(1.2 * limit);
    expect(refused).toBeGreaterThan(0);
    expect(refused / cello.log.total).toBeLessThan(0.1);
    expect(summary.lookups.throttled).toBe(refused);
    // Every participant enriched despite the 429s.
    const identifies = readPlan(out).filter((l) => l.kind === 'identify' && program.referrers.includes(l.userId));
    expect(identifies).toHaveLength(program.referrers.length);
    expect(identifies.every((l) => typeof (l.payload.traits as Record<string, unknown>).referral_link === 'string')).toBe(true);
  });

  it('renews a token once per expiry, however many lookups in flight it fails for', async ({ expect, onTestFinished }) => {
    const dir = tempDir();
    const program = writeCelloProgram(dir, 100, 14);
    const { cello, env } = await startCello(onTestFinished, program, { delayMs: 20 });
    cello.tokenUses = 20;
    // Not about rates: in-process, its limiter's waits skipped (test/support/cli.ts), the lookups as concurrent.
    const result = await runCliInProcess(diffArgs(program, join(dir, 'plan.jsonl'), '--rate', 'cello=1000'), { cwd: dir, env });
    expect(result.code).toBe(0);
    // Every lookup answered once; 16 in flight when a token runs out all come back 401 and share one renewal.
    expect([...cello.lookups.values()].reduce((a, b) => a + b, 0)).toBe(program.lookups);
    expect(cello.tokensIssued).toBeGreaterThanOrEqual(program.lookups / 20);
    expect(cello.tokensIssued).toBeLessThanOrEqual(program.lookups / 20 + 2);
  });
});
