import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeCello } from '../fakes/cello.js';
import { FakeGrowsurf, generateGrowsurfProgram } from '../fakes/growsurf.js';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { writeCelloProgram } from '../support/cello-program.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Issue 19 point 6: `check` checks the source a sync with the same flags would read, as well as the destinations:
 * a line per check saying what was checked and, on a failure, what to fix; the exit code of the failure a person
 * must act on first (64 usage, then 65 data, then 69 a service); nothing sent anywhere.
 */

const GS_KEY = 'gs_key_check_3b81';
const KEY_ID = 'cello_key_id_check';
const SECRET = 'cello_secret_check_77e';

interface World {
  services: Services;
  growsurf: FakeGrowsurf;
  cello: FakeCello;
  cwd: string;
  /** Destinations, GrowSurf and Cello, all pointed at their fakes with the right credentials. */
  env: Record<string, string>;
  csv: string;
  celloFiles: string[];
}

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

async function world(): Promise<World> {
  const services = await startServices();
  stops.push(() => services.stop());
  const growsurf = new FakeGrowsurf(GS_KEY, generateGrowsurfProgram(30, 4, { campaignId: 'camp_check' }));
  const growsurfUrl = await growsurf.start();
  stops.push(() => growsurf.stop());
  const cello = new FakeCello(KEY_ID, SECRET);
  const celloUrl = await cello.start();
  stops.push(() => cello.stop());
  const cwd = tempDir();
  return {
    services,
    growsurf,
    cello,
    cwd,
    env: { ...services.env, GROWSURF_API_URL: `${growsurfUrl}/v2`, CELLO_API_URL: celloUrl, CELLO_ACCESS_KEY_ID: KEY_ID, CELLO_SECRET_ACCESS_KEY: SECRET },
    csv: writeProgram(cwd, 12, 9, 'export.csv'),
    celloFiles: writeCelloProgram(cwd, 5).files,
  };
}

interface Case {
  name: string;
  args: (w: World) => string[];
  env?: (w: World) => Record<string, string>;
  code: number;
  /** Lines stdout must hold (each a whole line). */
  lines: (w: World) => string[];
  /** Set the fakes up before the check. */
  setup?: (w: World) => void;
  /** What reached the fakes: exactly these requests. */
  asked?: { growsurf?: number; celloTokens?: number; celloLookups?: number };
}

const CASES: Case[] = [
  {
    name: 'GrowSurf: key and campaign accepted',
    args: () => ['--source', 'growsurf', '--campaign', 'camp_check'],
    env: () => ({ GROWSURF_API_KEY: GS_KEY }),
    code: 0,
    lines: () => ['ok   GrowSurf API accepted GROWSURF_API_KEY and has campaign camp_check ("Fake program", 30 participants).', 'check: 3 of 3 checks ok; nothing was sent.'],
    asked: { growsurf: 1, celloTokens: 0, celloLookups: 0 },
  },
  {
    name: 'GrowSurf: a wrong key names GROWSURF_API_KEY (69)',
    args: () => ['--source', 'growsurf', '--campaign', 'camp_check'],
    env: () => ({ GROWSURF_API_KEY: 'gs_key_wrong_0000' }),
    code: 69,
    lines: () => ['FAIL GrowSurf refused the request (403: Invalid API key).', "     Check GROWSURF_API_KEY (Settings → API Keys) and that the key's account has access to this campaign."],
  },
  {
    name: 'GrowSurf: a wrong campaign names --campaign (64)',
    args: () => ['--source', 'growsurf', '--campaign', 'camp_nope'],
    env: () => ({ GROWSURF_API_KEY: GS_KEY }),
    code: 64,
    lines: () => ['FAIL GrowSurf has no campaign "camp_nope" (404: Campaign not found).', '     Check --campaign / GROWSURF_CAMPAIGN_ID: the program id is in the dashboard URL and under Program → Settings.'],
  },
  {
    name: 'GrowSurf: no key set names GROWSURF_API_KEY (64)',
    args: () => ['--source', 'growsurf', '--campaign', 'camp_check'],
    code: 64,
    lines: () => ['FAIL --source growsurf needs GROWSURF_API_KEY: set it (GrowSurf → Settings → API Keys).'],
  },
  {
    name: 'GrowSurf: GROWSURF_API_KEY and GROWSURF_CAMPAIGN_ID set, no flags: the API, as sync would read it',
    args: () => [],
    env: () => ({ GROWSURF_API_KEY: GS_KEY, GROWSURF_CAMPAIGN_ID: 'camp_check' }),
    code: 0,
    lines: () => ['ok   GrowSurf API accepted GROWSURF_API_KEY and has campaign camp_check ("Fake program", 30 participants).'],
  },
  {
    name: 'Cello: exports and key pair accepted, token used',
    args: (w) => ['--source', 'cello', '--file', ...w.celloFiles, '--enrich'],
    code: 0,
    lines: (w) => [
      `ok   Cello export ${w.celloFiles[0]}: readable (utf-8), conv_signups recognised.`,
      `ok   Cello export ${w.celloFiles[1]}: readable (utf-8), event_details_aggregates (event_details_aggregates-all.csv) recognised.`,
      'ok   Cello API accepted CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY: it issued a token and answered a lookup with it.',
      'check: 5 of 5 checks ok; nothing was sent.',
    ],
    asked: { growsurf: 0, celloTokens: 1, celloLookups: 1 },
  },
  {
    name: 'Cello: a token issued but refused on the lookup (69)',
    args: (w) => ['--source', 'cello', '--file', ...w.celloFiles, '--enrich'],
    setup: (w) => void (w.cello.tokenUses = 0),
    code: 69,
    lines: () => [
      'FAIL Cello issued a token for the access keys but refused it on a lookup (401: Unauthorized).',
      '     Check that CELLO_API_URL is the environment the keys belong to (sandbox and production keys differ), then try again.',
    ],
    asked: { celloTokens: 1 },
  },
  {
    name: 'Cello: a wrong key pair names both variables (69)',
    args: (w) => ['--source', 'cello', '--file', ...w.celloFiles, '--enrich'],
    env: () => ({ CELLO_SECRET_ACCESS_KEY: 'cello_secret_wrong' }),
    code: 69,
    lines: () => [
      'FAIL Cello refused the access keys (401: Invalid API Credentials).',
      '     Check CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY (Cello Portal → Integrations → Access Keys; sandbox and production keys differ, see CELLO_API_URL).',
    ],
  },
  {
    name: 'Cello: a folder that is not there (64)',
    args: (w) => ['--source', 'cello', '--file', join(w.cwd, 'no-such-folder')],
    code: 64,
    lines: (w) => [`FAIL File not found: ${join(w.cwd, 'no-such-folder')}`, '     Check the path: give --file the Cello export files, or the folder they are in.'],
  },
  {
    name: 'CSV: readable, header recognised',
    args: (w) => ['--file', w.csv],
    code: 0,
    lines: (w) => [`ok   GrowSurf export ${w.csv}: readable (utf-8), header recognised (ID, Email, First Name, Last Name, Created At, Referral Count, Referred By, Referral Status, Share URL, Referral Source, Converted At).`],
  },
  {
    name: 'CSV: a file that is not there (64)',
    args: (w) => ['--file', join(w.cwd, 'missing.csv')],
    code: 64,
    lines: (w) => [`FAIL File not found: ${join(w.cwd, 'missing.csv')}`, '     Check the path given to --file.'],
  },
  {
    name: 'CSV: a workbook, not CSV text (65)',
    args: (w) => {
      const path = join(w.cwd, 'export.xlsx');
      writeFileSync(path, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0]));
      return ['--file', path];
    },
    code: 65,
    lines: (w) => [`FAIL ${join(w.cwd, 'export.xlsx')} is a zip archive (an Excel .xlsx workbook?), not CSV text.`],
  },
  {
    name: 'CSV: a header the reader does not recognise (65)',
    args: (w) => ['--file', writeCsv(w.cwd, 'other.csv', [{ Name: 'Ada', Company: 'Acme' }])],
    code: 65,
    lines: (w) => [
      `FAIL ${join(w.cwd, 'other.csv')} has no email column (looked for "Email", "Email Address", "E-mail", "Participant Email"); its 2 columns, read as comma-separated, are: Name, Company.`,
      '     Map yours with "columns": {"email": "<header>"} in referral-sync.config.json, or use --user-id id.',
    ],
  },
  {
    name: 'CSV: the source fails with 64, a destination with 69: the usage fault decides (64)',
    args: (w) => ['--file', join(w.cwd, 'missing.csv')],
    env: () => ({ CUSTOMERIO_API_KEY: 'cio_key_wrong_5555' }),
    code: 64,
    lines: () => ['FAIL Customer.io refused the site id and API key (401).'],
  },
];

describe('check covers the sources', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const w = await world();
    c.setup?.(w);
    const result = await runCliInProcess(['check', ...c.args(w)], { cwd: w.cwd, env: { ...w.env, ...c.env?.(w) } });
    const said = `--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
    expect(result.code, said).toBe(c.code);
    const lines = result.stdout.split('\n');
    for (const line of c.lines(w)) expect(lines, said).toContain(line);
    if (c.code !== 0) expect(result.stderr, said).toMatch(new RegExp(`^error: check: \\d+ of \\d+ checks failed \\(exit ${c.code}\\); nothing was sent\\.$`, 'm'));
    // Nothing sent anywhere; at most one request to GrowSurf; at most a token and one lookup to Cello.
    expect(w.services.segment.arrivals.length + w.services.customerio.eventArrivals.length + w.services.customerio.identifyArrivals.length).toBe(0);
    expect(w.growsurf.log.total).toBeLessThanOrEqual(1);
    expect(w.cello.tokensIssued).toBeLessThanOrEqual(1);
    expect([...w.cello.lookups.values()].reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1);
    expect([...w.cello.lookups.keys()].some((key) => key.startsWith('FORBIDDEN'))).toBe(false);
    if (c.asked?.growsurf !== undefined) expect(w.growsurf.log.total).toBe(c.asked.growsurf);
    if (c.asked?.celloTokens !== undefined) expect(w.cello.tokensIssued).toBe(c.asked.celloTokens);
    if (c.asked?.celloLookups !== undefined) expect([...w.cello.lookups.values()].reduce((a, b) => a + b, 0)).toBe(c.asked.celloLookups);
    // No credential is ever printed.
    for (const secret of [GS_KEY, 'gs_key_wrong_0000', SECRET, 'cello_secret_wrong', 'cio_key_wrong_5555']) expect(result.stdout + result.stderr).not.toContain(secret);
  }, 60_000);

  it('without source flags checks the destinations as before, and says how to check the source too', async () => {
    const w = await world();
    const result = await runCliInProcess(['check'], { cwd: w.cwd, env: w.env });
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').filter((l) => l.startsWith('ok '))).toHaveLength(2);
    expect(result.stdout).toContain('check: 2 of 2 destinations ok; nothing was sent.');
    expect(result.stderr).toBe('no source given: pass the same source flags as your sync (--file …, or --source growsurf --campaign …) to check it too.\n');
  }, 60_000);

  it('--json lists each check with what it checked, its outcome, its hint and its exit code', async () => {
    const w = await world();
    const result = await runCliInProcess(['check', '--source', 'growsurf', '--campaign', 'camp_nope', '--json'], { cwd: w.cwd, env: { ...w.env, GROWSURF_API_KEY: GS_KEY } });
    expect(result.code).toBe(64);
    const json = JSON.parse(result.stdout) as { exitCode: number; outcome: string; checks: { check: string; ok: boolean; exitCode: number; hint?: string }[] };
    expect(json).toMatchObject({ command: 'check', outcome: 'failed', exitCode: 64, source: { given: true } });
    expect(json.checks.map((c) => [c.check, c.ok, c.exitCode])).toEqual([
      ['growsurf', false, 64],
      ['segment', true, 0],
      ['customerio', true, 0],
    ]);
    expect(json.checks[0]!.hint).toContain('--campaign');
  }, 60_000);
});
