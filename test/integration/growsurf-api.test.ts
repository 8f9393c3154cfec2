import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeGrowsurf, generateGrowsurfProgram, type GrowsurfProgram } from '../fakes/growsurf.js';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { SkipClock } from '../support/clock.js';
import { readPlan } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

const GS_KEY = 'gs_key_test_5e1d0b77c2';

let growsurf: FakeGrowsurf | undefined;
let services: Services[] = [];
afterEach(async () => {
  await growsurf?.stop();
  growsurf = undefined;
  for (const s of services) await s.stop();
  services = [];
});

async function startGrowsurf(program: GrowsurfProgram, configure: (fake: FakeGrowsurf) => void = () => undefined): Promise<Record<string, string>> {
  growsurf = new FakeGrowsurf(GS_KEY, program);
  configure(growsurf);
  const url = await growsurf.start();
  return { GROWSURF_API_KEY: GS_KEY, GROWSURF_API_URL: `${url}/v2`, GROWSURF_CAMPAIGN_ID: program.campaignId };
}

/** The program as a participant export would show it: one row a participant, the referrer by id. */
function exportOf(program: GrowsurfProgram, dir: string): string {
  const converted = new Map(program.referrals.filter((r) => r.referralStatus === 'CREDIT_AWARDED').map((r) => [r.id, r.updatedAt]));
  return writeCsv(
    dir,
    'export.csv',
    program.participants.map((p) => ({
      ID: p.id,
      Email: p.email,
      'First Name': p.firstName ?? '',
      'Last Name': p.lastName ?? '',
      'Created At': p.createdAt,
      'Referral Count': p.referralCount,
      'Lead Count': p.leadCount,
      'Referred By': p.referredBy ?? '',
      'Referral Status': p.referralStatus ?? '',
      'Referral Source': p.referralSource,
      'Share URL': p.shareUrl,
      'Vanity Keys': p.vanityKeys.join(','),
      'Converted At': converted.get(p.id) ?? '',
      Company: p.metadata.company!,
    })),
  );
}

describe('GrowSurf API source', () => {
  it('gives the same plan and the same deliveries as an export of the same program', async () => {
    const program = generateGrowsurfProgram(300, 4);
    const gsEnv = await startGrowsurf(program);
    const cwd = tempDir();
    const file = exportOf(program, cwd);
    const fromApi = join(cwd, 'api.jsonl');
    const fromCsv = join(cwd, 'csv.jsonl');
    const api = await runCliInProcess(['diff', '--source', 'growsurf', '--out', fromApi, '--quiet'], { cwd, env: gsEnv });
    expect(api.stderr).toBe('');
    expect(api.code).toBe(0);
    expect((await runCliInProcess(['diff', '--file', file, '--campaign', program.campaignId, '--out', fromCsv, '--quiet'], { cwd })).code).toBe(0);
    const sortLines = (path: string): string[] => readPlan(path).map((l) => JSON.stringify(l)).sort();
    const apiPlan = sortLines(fromApi);
    expect(apiPlan.length).toBeGreaterThan(900);
    expect(apiPlan).toEqual(sortLines(fromCsv));

    // And sync both, each into its own pair of fake destinations: the same messages arrive.
    const viaApi = await startServices();
    const viaCsv = await startServices();
    services = [viaApi, viaCsv];
    expect((await runCliInProcess(['sync', '--source', 'growsurf', '--state', join(cwd, 'a.db'), '--rate', 'growsurf=50,segment=20000'], { cwd, env: { ...gsEnv, ...viaApi.env } })).code).toBe(0);
    expect((await runCliInProcess(['sync', '--file', file, '--campaign', program.campaignId, '--state', join(cwd, 'c.db')], { cwd, env: viaCsv.env })).code).toBe(0);
    const content = (s: Services): string[] =>
      [...s.segment.messages.values()].map((m) => JSON.stringify([m.messageId, m.type, m.userId, m.event, m.traits, m.properties])).sort();
    expect(content(viaApi)).toEqual(content(viaCsv));
    expect([...viaApi.customerio.events.keys()].sort()).toEqual([...viaCsv.customerio.events.keys()].sort());
    expect(viaApi.customerio.people).toEqual(viaCsv.customerio.people);
  });

  it('pages 20,000 participants within 30 requests / 5 s and 3 connections: no 429, each participant once', async () => {
    const program = generateGrowsurfProgram(20_000, 9);
    // The CLI's limiter and the fake's policy windows on one clock whose waits are skipped: the ~70 s of windows
    // this scan must sit out pass at once, and the fake still refuses any request a window has no room for.
    const clock = new SkipClock();
    const gsEnv = await startGrowsurf(program, (fake) => {
      fake.clock = clock;
      // GrowSurf's tighter documented second policy, and the minute limit of its newer docs (announced in headers).
      fake.policies = [
        { name: 'SECOND', limit: 30, windowMs: 5_000 },
        { name: 'MINUTE', limit: 400, windowMs: 60_000 },
      ];
    });
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    const result = await runCliInProcess(['diff', '--source', 'growsurf', '--out', out, '--json', '--to', 'segment'], { cwd, env: gsEnv, clock });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { participants: number; warnings: number };
    expect(summary.participants).toBe(20_000);
    expect(summary.warnings).toBe(0);
    const identified = readPlan(out).filter((l) => l.kind === 'identify').map((l) => l.participantId);
    expect(new Set(identified).size).toBe(20_000);
    expect(identified).toHaveLength(20_000);
    expect(growsurf!.log.rateLimited).toBe(0);
    expect(growsurf!.log.maxConnections).toBeLessThanOrEqual(2);
    expect(growsurf!.requestsByKind.get('participants')).toBe(200);
    const arrivals = growsurf!.log.arrivals;
    const span = (arrivals.at(-1)!.at - arrivals[0]!.at) / 1000;
    console.log(
      `growsurf: 20,000 participants in ${growsurf!.log.total} requests (${growsurf!.requestsByKind.get('participants')} participant pages, ${growsurf!.requestsByKind.get('referrals')} referral pages) over ${span.toFixed(0)} s of the fake clock, ${(clock.slept.ms / 1000).toFixed(0)} s of it waited out by skipping`,
    );
  }, 180_000);

  it('still reads every participant exactly once through 429s, 5xx and dropped connections', async () => {
    const program = generateGrowsurfProgram(2_500, 5);
    // Retry-After and the backoffs after 5xx and drops are honoured on a clock that skips them (see above).
    const clock = new SkipClock();
    const gsEnv = await startGrowsurf(program, (fake) => {
      fake.clock = clock;
      fake.setFaults({ error5xxRate: 0.1, rate429: 0.05, retryAfterSeconds: 1, dropRate: 0.05, seed: 8 });
    });
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    const result = await runCliInProcess(['diff', '--source', 'growsurf', '--out', out, '--json', '--to', 'segment', '--rate', 'growsurf=50'], { cwd, env: gsEnv, clock });
    expect(result.code).toBe(0);
    expect((growsurf!.log.byStatus.get(503) ?? 0) + (growsurf!.log.byStatus.get(500) ?? 0) + (growsurf!.log.byStatus.get(502) ?? 0)).toBeGreaterThan(0);
    expect(growsurf!.log.byStatus.get('dropped') ?? 0).toBeGreaterThan(0);
    const identified = readPlan(out).filter((l) => l.kind === 'identify').map((l) => l.participantId);
    expect(identified).toHaveLength(2_500);
    expect(new Set(identified).size).toBe(2_500);
  });
});

describe('GrowSurf API shapes', () => {
  it('reads the referrer from the nested referrer object of the REST examples, as from referredBy', async () => {
    const program = generateGrowsurfProgram(200, 3);
    const cwd = tempDir();
    const plans: string[][] = [];
    for (const servesReferredBy of [false, true]) {
      const gsEnv = await startGrowsurf(program, (fake) => (fake.servesReferredBy = servesReferredBy));
      const out = join(cwd, `plan-${servesReferredBy}.jsonl`);
      expect((await runCliInProcess(['diff', '--source', 'growsurf', '--out', out, '--quiet', '--to', 'segment'], { cwd, env: gsEnv })).code).toBe(0);
      plans.push(readPlan(out).map((l) => JSON.stringify(l)).sort());
      await growsurf!.stop();
      growsurf = undefined;
    }
    expect(plans[0]).toEqual(plans[1]);
    const referred = program.participants.filter((p) => p.referredBy);
    const madeOn = plans[0]!.map((l) => JSON.parse(l) as { payload: { event?: string; userId?: string } }).filter((l) => l.payload.event === 'Referral Made');
    expect(madeOn).toHaveLength(referred.length);
  });

  it('a 200 that is not JSON (a proxy\'s HTML page) stops with exit 69 before anything is sent, never read as an empty page', async () => {
    const program = generateGrowsurfProgram(20, 2);
    const gsEnv = await startGrowsurf(program, (fake) => {
      fake.rawAnswer = { status: 200, contentType: 'text/html', body: '<html><head><title>Sign in to the proxy</title></head><body>…</body></html>' };
    });
    const destinations = await startServices();
    services = [destinations];
    const cwd = tempDir();
    for (const command of ['diff', 'sync']) {
      const result = await runCliInProcess([command, '--source', 'growsurf'], { cwd, env: { ...gsEnv, ...destinations.env } });
      expect(result.code, command).toBe(69);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(
        `error: GrowSurf answered 200 with a body starting "<html><head><title>Sign in to the proxy</title></head><body>…</body></html>" (text/html), not JSON (GET /v2/campaign/${program.campaignId}).`,
      );
      expect(result.stderr).toContain('Check GROWSURF_API_URL');
    }
    // sync's credential check reached the destinations; no data did.
    expect(destinations.segment.messages.size + destinations.customerio.people.size + destinations.customerio.events.size).toBe(0);
  });

  it('a JSON answer without the participants list stops with exit 69 too', async () => {
    const program = generateGrowsurfProgram(20, 2);
    // The campaign and referrals answer; the participants page is JSON without its list (an API gateway's stub).
    const gsEnv = await startGrowsurf(program, (fake) => {
      fake.rawAnswer = { status: 200, contentType: 'application/json', body: '{"status":"ok"}', path: /\/participants$/ };
    });
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'growsurf'], { cwd, env: gsEnv });
    expect(result.code).toBe(69);
    expect(result.stderr).toContain(`error: GrowSurf's answer to GET /campaign/${program.campaignId}/participants has no "participants" list; it does not look like an answer from the GrowSurf API.`);
  });
});

describe('GrowSurf API errors', () => {
  const program = generateGrowsurfProgram(20, 2);

  it('a bad key exits 69 with GrowSurf\'s sentence and what to do, never showing the key', async () => {
    const gsEnv = await startGrowsurf(program);
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'growsurf'], { cwd, env: { ...gsEnv, GROWSURF_API_KEY: 'gs_wrong_key_999888777' } });
    expect(result.code).toBe(69);
    expect(result.stderr).toContain('error: GrowSurf refused the request (403: Invalid API key).');
    expect(result.stderr).toContain('Check GROWSURF_API_KEY');
    expect(result.stdout + result.stderr).not.toContain('gs_wrong_key_999888777');
  });

  it('an unknown campaign exits 64 naming it', async () => {
    const gsEnv = await startGrowsurf(program);
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'growsurf', '--campaign', 'nope123'], { cwd, env: gsEnv });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain('error: GrowSurf has no campaign "nope123" (404: Campaign not found).');
  });

  it('an account without a paid plan exits 69 and points to the CSV export', async () => {
    const gsEnv = await startGrowsurf(program, (fake) => (fake.paidPlan = false));
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'growsurf'], { cwd, env: gsEnv });
    expect(result.code).toBe(69);
    expect(result.stderr).toContain('A paid plan is required to use the GrowSurf REST API');
    expect(result.stderr).toContain('export the participants to CSV and use --file');
    expect(result.stdout + result.stderr).not.toContain(GS_KEY);
  });

  it('warns in the summary when the pages disagree with the participant count GrowSurf reports', async () => {
    const gsEnv = await startGrowsurf(program, (fake) => (fake.reportedParticipantCount = 23));
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'growsurf'], { cwd, env: gsEnv });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`GrowSurf says campaign ${program.campaignId} has 23 participants, but 1 pages gave 20`);
  });

  it('an hour-long rate-limit window past --max-wait stops with when it resets', async () => {
    const gsEnv = await startGrowsurf(program, (fake) => {
      fake.policies = [{ name: 'HOUR', limit: 2, windowMs: 3_600_000 }];
    });
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'growsurf', '--max-wait', '5s'], { cwd, env: gsEnv });
    expect(result.code).toBe(69);
    expect(result.stderr).toMatch(/error: GrowSurf rate limit reached \(hour policy\); it resets in (59|60) min \d+ s, longer than --max-wait 5 s\./);
  });
});

describe('sync --quick', () => {
  it('after a few referral status changes sends exactly what a full scan would, for far fewer requests', async () => {
    const program = generateGrowsurfProgram(3_000, 6);
    const gsEnv = await startGrowsurf(program);
    const destinations = await startServices();
    services = [destinations];
    const env = { ...gsEnv, ...destinations.env };
    const cwd = tempDir();
    const rates = ['--rate', 'growsurf=100,segment=20000,customerio=1000'];
    expect((await runCliInProcess(['sync', '--source', 'growsurf', ...rates], { cwd, env })).code).toBe(0);
    const fullScanRequests = growsurf!.log.total;

    const pending = program.participants.filter((p) => p.referralStatus === 'CREDIT_PENDING').slice(0, 3);
    for (const p of pending) growsurf!.setReferralStatus(p.id, 'CREDIT_AWARDED', Date.now());
    const expected = join(cwd, 'expected.jsonl');
    expect((await runCliInProcess(['diff', '--source', 'growsurf', '--out', expected, '--quiet', ...rates], { cwd, env })).code).toBe(0);
    const plan = readPlan(expected);
    expect(plan.length).toBeGreaterThan(0);

    const before = { requests: growsurf!.log.total, segment: destinations.segment.arrivals.length, cio: destinations.customerio.eventArrivals.length, identifies: destinations.customerio.identifyArrivals.length };
    const quick = await runCliInProcess(['sync', '--source', 'growsurf', '--quick', ...rates], { cwd, env });
    expect(quick.stderr).not.toMatch(/error|warning/i);
    expect(quick.code).toBe(0);
    const quickRequests = growsurf!.log.total - before.requests;

    const sentSegment = destinations.segment.arrivals.slice(before.segment).sort();
    expect(sentSegment).toEqual(plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string).sort());
    const sentCio = destinations.customerio.eventArrivals.slice(before.cio).sort();
    expect(sentCio).toEqual(plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string).sort());
    expect(destinations.customerio.identifyArrivals.length - before.identifies).toBe(plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').length);
    // Each changed referral: the friend converted; the referrer's count moved.
    expect(plan.filter((l) => l.destination === 'segment' && l.payload.event === 'Referral Converted').map((l) => l.participantId).sort()).toEqual(pending.map((p) => p.id).sort());

    console.log(`growsurf --quick: ${quickRequests} requests vs ${fullScanRequests} for the full scan of 3,000 participants`);
    expect(quickRequests * 5).toBeLessThan(fullScanRequests);

    // Nothing changed since: the next quick sync sends nothing.
    const idle = await runCliInProcess(['sync', '--source', 'growsurf', '--quick', '--json', ...rates], { cwd, env });
    expect((JSON.parse(idle.stdout) as { plan: { operations: number } }).plan.operations).toBe(0);
  });
});
