import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeCello } from '../fakes/cello.js';
import { FIXTURES, runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { readPlan } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

const CELLO = join(FIXTURES, 'cello');
const SIGNUPS = join(CELLO, 'conv_signups.csv');
const KEY_ID = 'cello_key_id_test';
const SECRET = 'cello_secret_test_6f0a2d';

let services: Services | undefined;
let cello: FakeCello | undefined;
afterEach(async () => {
  await services?.stop();
  await cello?.stop();
  services = undefined;
  cello = undefined;
});

const signupRows = parse(readFileSync(SIGNUPS, 'utf8'), { columns: true }) as Record<string, string>[];
const included = signupRows.filter((r) => r.status === 'Included');

/** A Cello that knows every code and referrer of the fixture exports. */
async function startCello(): Promise<Record<string, string>> {
  cello = new FakeCello(KEY_ID, SECRET);
  for (const row of signupRows) {
    cello.codes.set(row.campaign_ucc!, { productUserId: row.productuserid!, campaignId: 'campaign_partners_1' });
    cello.links.set(row.productuserid!, { activeUcc: row.campaign_ucc!, link: `https://moonly.cello.so/${row.campaign_ucc}` });
  }
  const url = await cello.start();
  return { CELLO_ACCESS_KEY_ID: KEY_ID, CELLO_SECRET_ACCESS_KEY: SECRET, CELLO_API_URL: url };
}

describe('Cello exports', () => {
  it('identifies referrers and referred users, and sends Referral Made on referrers at the signup time', async () => {
    services = await startServices();
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--source', 'cello', '--file', join(CELLO, 'event_details_aggregates-daily.csv'), SIGNUPS, join(CELLO, 'event_details_aggregates-all.csv')], {
      cwd,
      env: services.env,
    });
    expect(result.code).toBe(0);
    const { segment, customerio } = services;
    const identified = new Set(segment.identifies().map((m) => m.userId));
    for (const row of included) {
      expect(identified.has(row.newuserproductuserid)).toBe(true);
      expect(identified.has(row.productuserid)).toBe(true);
    }
    const champion = segment.identifies().find((m) => m.userId === 'usr_1000')!;
    expect(champion.traits).toMatchObject({ referral_source: 'cello', referral_tier: 'champion', referral_count: 11 });
    const friend = segment.identifies().find((m) => m.userId === 'usr_2001')!;
    expect(friend.traits).toMatchObject({ referred_by: 'usr_1000', acquisition_channel: 'referral', referral_code: included[0]!.campaign_ucc });
    // One Referral Made per included signup, on the referrer, timestamped with the signup.
    const made = segment.tracks().filter((m) => m.event === 'Referral Made');
    expect(made.map((m) => `${m.userId} ${m.properties!.friend_id} ${m.timestamp}`).sort()).toEqual(
      included.map((r) => `${r.productuserid} ${r.newuserproductuserid} ${new Date(r.datetime!).toISOString()}`).sort(),
    );
    const cioMade = [...customerio.events.values()].filter((e) => e.name === 'referral_friend_signed_up');
    expect(cioMade).toHaveLength(included.length);
    expect(cioMade.every((e) => e.identifier.startsWith('id:usr_'))).toBe(true);
    // Excluded signups are reported, never sent.
    expect(identified.has('usr_2007')).toBe(false);
    expect(result.stdout).toContain('Invalid rows (2, not sent)');
  });

  it('reads a folder, and counts purchases for tiers when the config says so', async () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ cello: { tierBasis: 'purchases' } }));
    const out = join(cwd, 'plan.jsonl');
    expect((await runCliInProcess(['diff', '--source', 'cello', '--file', CELLO, '--out', out, '--to', 'segment'], { cwd })).code).toBe(0);
    const champion = readPlan(out).find((l) => l.kind === 'identify' && l.userId === 'usr_1000')!;
    expect(champion.payload.traits).toMatchObject({ referral_count: 5, referral_tier: 'power_referrer' });
  });

  it('says clearly what is wrong with a missing file or a file of the wrong kind', async () => {
    const cwd = tempDir();
    const missing = await runCliInProcess(['diff', '--source', 'cello', '--file', 'exports/conv_signups.csv'], { cwd });
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain('error: File not found: exports/conv_signups.csv');
    const growsurf = join(FIXTURES, 'growsurf', 'participants.csv');
    const wrong = await runCliInProcess(['diff', '--source', 'cello', '--file', growsurf], { cwd });
    expect(wrong.code).toBe(64);
    expect(wrong.stderr).toContain(`error: ${growsurf} is a GrowSurf participant export, not a Cello export: read it without --source cello`);
    const other = writeCsv(cwd, 'other.csv', [{ id: 'u1', name: 'Ann' }]);
    const unknown = await runCliInProcess(['diff', '--source', 'cello', '--file', other], { cwd });
    expect(unknown.code).toBe(65);
    expect(unknown.stderr).toContain(`error: ${other} is not a Cello export (conv_signups: datetime, productuserid, campaign_ucc, newuserproductuserid, status;`);
    expect(unknown.stderr).toContain('its 2 columns, read as comma-separated, are: id, name.');
  });
});

describe('Cello --enrich', () => {
  it('looks each code and each referrer up once, and adds links and codes as traits', async () => {
    const celloEnv = await startCello();
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', CELLO, '--enrich', '--out', out, '--to', 'segment'], { cwd, env: celloEnv });
    expect(result.code).toBe(0);
    const codes = new Set(included.map((r) => r.campaign_ucc));
    const referrers = new Set(included.map((r) => r.productuserid));
    for (const code of codes) expect(cello!.lookups.get(`/referral-codes/${code}`)).toBe(1);
    for (const referrer of referrers) expect(cello!.lookups.get(`/referral-codes/active-link/${referrer}`)).toBe(1);
    expect([...cello!.lookups.keys()].filter((k) => k.startsWith('FORBIDDEN'))).toEqual([]);
    const champion = readPlan(out).find((l) => l.kind === 'identify' && l.userId === 'usr_1000')!;
    const code = included.find((r) => r.productuserid === 'usr_1000')!.campaign_ucc;
    expect(champion.payload.traits).toMatchObject({ referral_code: code, referral_link: `https://moonly.cello.so/${code}` });
    expect(result.stdout + result.stderr).not.toContain(SECRET);
  });

  it('keeps the answers in the state: the next run asks Cello nothing it already knows', async () => {
    const celloEnv = await startCello();
    services = await startServices();
    const cwd = tempDir();
    const env = { ...celloEnv, ...services.env };
    expect((await runCliInProcess(['sync', '--source', 'cello', '--file', CELLO, '--enrich'], { cwd, env })).code).toBe(0);
    const asked = [...cello!.lookups.values()].reduce((a, b) => a + b, 0);
    expect(asked).toBeGreaterThan(0);
    expect((await runCliInProcess(['sync', '--source', 'cello', '--file', CELLO, '--enrich'], { cwd, env })).code).toBe(0);
    expect([...cello!.lookups.values()].reduce((a, b) => a + b, 0)).toBe(asked);
    // diff reads the same cache and leaves the state alone.
    expect((await runCliInProcess(['diff', '--source', 'cello', '--file', CELLO, '--enrich', '--detailed-exitcode'], { cwd, env })).code).toBe(0);
    expect([...cello!.lookups.values()].reduce((a, b) => a + b, 0)).toBe(asked);
  });

  it('renews an expired token without failing the run', async () => {
    const celloEnv = await startCello();
    cello!.tokenUses = 5;
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', CELLO, '--enrich', '--to', 'segment'], { cwd, env: celloEnv });
    expect(result.code).toBe(0);
    expect(cello!.tokensIssued).toBeGreaterThan(1);
  });

  it('reports a code Cello says is not valid and keeps its rows without a resolved referrer', async () => {
    const celloEnv = await startCello();
    const badCode = included.find((r) => r.productuserid === 'usr_1004')!.campaign_ucc!;
    cello!.codes.delete(badCode);
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', CELLO, '--enrich', '--out', out, '--to', 'segment', '--json'], { cwd, env: celloEnv });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { warningSamples: { reason: string }[] };
    const friend = included.find((r) => r.campaign_ucc === badCode)!.newuserproductuserid!;
    expect(summary.warningSamples.map((w) => w.reason)).toContain(`referral code ${badCode} is not valid in Cello: ${friend} is kept without a referrer`);
    const identify = readPlan(out).find((l) => l.kind === 'identify' && l.userId === friend)!;
    expect(identify.payload.traits).not.toHaveProperty('referred_by');
  });

  it('exits 69 with one sentence when Cello refuses the access keys, in either documented error shape', async () => {
    for (const shape of ['nestjs', 'openapi'] as const) {
      const celloEnv = await startCello();
      cello!.tokenErrorShape = shape;
      const cwd = tempDir();
      const result = await runCliInProcess(['diff', '--source', 'cello', '--file', CELLO, '--enrich'], { cwd, env: { ...celloEnv, CELLO_SECRET_ACCESS_KEY: 'wrong_secret_value_1' } });
      expect(result.code).toBe(69);
      expect(result.stderr.split('\n')[0]).toBe(`error: Cello refused the access keys (${shape === 'nestjs' ? '401: Invalid API Credentials' : '400: Invalid credentials'}).`);
      expect(result.stderr).not.toContain('wrong_secret_value_1');
      await cello!.stop();
      cello = undefined;
    }
  });
});
