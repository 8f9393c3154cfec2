import { join } from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import { MAX_RATE_LIMIT_WAITS } from '../../src/http/client.js';
import { FakeCello } from '../fakes/cello.js';
import { FakeGrowsurf, generateGrowsurfProgram } from '../fakes/growsurf.js';
import { seedCello, writeCelloProgram, type CelloProgram } from '../support/cello-program.js';
import { runCli, runCliInProcess, tempDir, type CliResult } from '../support/cli.js';
import { readPlan } from '../support/plan.js';

/**
 * Issue 17, guarantees 1, 2 and 8 for the sources: what GrowSurf's REST API and Cello's lookup API answer is read
 * as an answer only when it is the documented one (a 2xx with JSON of the documented shape); every other answer
 * ends the run with exit 69 and one sentence naming the service and what came, after a bounded number of
 * requests; Cello's odd but documented answers about one participant are reported for that participant.
 * Each cell runs the CLI (in process: its waits are skipped) against the real fakes, one answer swapped.
 */

const GS_KEY = 'gs_key_answers_3b8e41';
const CELLO_KEY_ID = 'cello_key_id_answers';
const CELLO_SECRET = 'cello_secret_answers_77aa1c';

interface Answer {
  status: number;
  body: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/** GrowSurf's maxAttempts in src/cli/wiring/growsurf.ts, Cello's in src/cli/wiring/cello.ts: a 5xx is asked at most that often. */
const GROWSURF_ATTEMPTS = 6;
const CELLO_ATTEMPTS = 5;

/** The bad answers: each is a failure of the whole read, never a page or a lookup read as empty. */
const BAD_ANSWERS: { name: string; answer: Answer; growsurf: RegExp; cello: RegExp; requests: { growsurf: number; cello: number } }[] = [
  {
    name: 'a 301 to https (an http:// URL behind a redirecting proxy), Location with credentials',
    answer: { status: 301, body: '', headers: { location: 'https://user:hunter2@api.example.com/v2/campaign?api_key=sekret_9f' } },
    growsurf: /^GrowSurf answered 301, a redirect to https:\/\/\*\*\*@api\.example\.com\/v2\/campaign\?api_key=\*\*\*, which referral-sync does not follow \(GET \/v2\/campaign\/[^/]+\/participants\)\.$/,
    cello: /^Cello answered 301, a redirect to https:\/\/\*\*\*@api\.example\.com\/v2\/campaign\?api_key=\*\*\*, which referral-sync does not follow \(lookup\)\.$/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'a 302 with no Location',
    answer: { status: 302, body: '<html>moved</html>', contentType: 'text/html' },
    growsurf: /^GrowSurf answered 302, a redirect without a Location, which referral-sync does not follow/,
    cello: /^Cello answered 302, a redirect without a Location, which referral-sync does not follow/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'a 307 back to the same URL (a redirect loop)',
    answer: { status: 307, body: '', headers: { location: '/v2/campaign/x/participants' } },
    growsurf: /^GrowSurf answered 307, a redirect to http:\/\/127\.0\.0\.1:\d+\/v2\/campaign\/x\/participants, which referral-sync does not follow/,
    cello: /^Cello answered 307, a redirect to http:\/\/127\.0\.0\.1:\d+\/v2\/campaign\/x\/participants, which referral-sync does not follow/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'a 200 HTML page (a captive portal)',
    answer: { status: 200, body: '<html><body>Sign in to the Wi-Fi</body></html>', contentType: 'text/html' },
    growsurf: /^GrowSurf answered 200 with a body starting "<html><body>Sign in to the Wi-Fi<\/body><\/html>" \(text\/html\), not JSON/,
    cello: /^Cello answered 200 with a body starting "<html><body>Sign in to the Wi-Fi<\/body><\/html>" \(text\/html\), not JSON/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'an empty 200',
    answer: { status: 200, body: '' },
    growsurf: /^GrowSurf answered 200 with an empty body \(application\/json\), not JSON/,
    cello: /^Cello answered 200 with an empty body \(application\/json\), not JSON/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'a truncated JSON 200',
    answer: { status: 200, body: '{"participants": [{"id": "a1", "email": "a@x.c' },
    growsurf: /^GrowSurf answered 200 with a body starting "\{"participants": \[\{"id": "a1", "email": "a@x\.c" \(application\/json\), not JSON/,
    cello: /^Cello answered 200 with a body starting "\{"participants".*not JSON/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'JSON of another shape (no participants list, no "valid")',
    answer: { status: 200, body: '{"data": [], "nextId": null}' },
    growsurf: /^GrowSurf's answer to GET \/campaign\/[^/]+\/participants has no "participants" list; it does not look like an answer from the GrowSurf API\.$/,
    cello: /^Cello's answer to GET \/referral-codes\/\S+ has no "valid" true or false \(it is missing\); it does not look like an answer from the Cello API\.$/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'JSON with the list or flag of the wrong type',
    answer: { status: 200, body: '{"participants": {"0": {"id": "a"}}, "valid": "yes", "nextId": null}' },
    growsurf: /^GrowSurf's answer to GET \/campaign\/[^/]+\/participants has no "participants" list \(it is an object\)/,
    cello: /^Cello's answer to GET \/referral-codes\/\S+ has no "valid" true or false \(it is text\)/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'a JSON list where an object belongs',
    answer: { status: 200, body: '[]' },
    growsurf: /^GrowSurf's answer to GET \/campaign\/[^/]+\/participants is a list, not an object/,
    cello: /^Cello's answer to GET \/referral-codes\/\S+ is a list, not an object/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: 'a cursor that is not text',
    answer: { status: 200, body: '{"participants": [], "nextId": 17, "valid": true, "productUserId": 17}' },
    growsurf: /^GrowSurf's answer to GET \/campaign\/[^/]+\/participants has a "nextId" that is a number \(17\), not a cursor/,
    cello: /^Cello's answer to GET \/referral-codes\/\S+ has a "productUserId" that is a number \(17\), not text/,
    requests: { growsurf: 1, cello: 1 },
  },
  {
    name: '429 with Retry-After: 0, forever',
    answer: { status: 429, body: '{"message": "slow down"}', headers: { 'retry-after': '0' } },
    growsurf: new RegExp(`^GrowSurf answered 429 \\(rate limit\\) ${MAX_RATE_LIMIT_WAITS + 1} times in a row to /v2/campaign/[^/]+/participants, each time asking to wait \\(last 0 ms\\); the limit never lifted\\.$`),
    cello: new RegExp(`^Cello answered 429 \\(rate limit\\) ${MAX_RATE_LIMIT_WAITS + 1} times in a row to /referral-codes/\\S+, each time asking to wait \\(last 0 ms\\); the limit never lifted\\.$`),
    requests: { growsurf: MAX_RATE_LIMIT_WAITS + 1, cello: MAX_RATE_LIMIT_WAITS + 1 },
  },
  {
    name: '503 forever',
    answer: { status: 503, body: '{"message": "Service Unavailable"}' },
    growsurf: /^GrowSurf answered 503: Service Unavailable\.$/,
    cello: /^Cello answered a lookup with 503: Service Unavailable\.$/,
    requests: { growsurf: GROWSURF_ATTEMPTS, cello: CELLO_ATTEMPTS },
  },
];

/** What every failed cell must show: exit 69, one sentence and a hint, no stack trace, no credential. */
function expectOneSentence(result: CliResult, message: RegExp): void {
  expect(result.code).toBe(69);
  // Notices of waits may come first; then the error, and at most its hint.
  const lines = result.stderr.trimEnd().split('\n');
  const errors = lines.filter((line) => line.startsWith('error: '));
  expect(errors).toHaveLength(1);
  expect(errors[0]!.replace(/^error: /, '')).toMatch(message);
  expect(lines.length - lines.indexOf(errors[0]!)).toBeLessThanOrEqual(2);
  expect(result.stderr).not.toMatch(/\n\s+at |Error:|TypeError|undefined/);
  expect(result.stdout + result.stderr).not.toMatch(new RegExp(`${GS_KEY}|${CELLO_SECRET}|hunter2|sekret_9f`));
}

async function startGrowsurf(onTestFinished: TestContext['onTestFinished'], configure: (fake: FakeGrowsurf) => void): Promise<{ fake: FakeGrowsurf; env: Record<string, string> }> {
  const fake = new FakeGrowsurf(GS_KEY, generateGrowsurfProgram(30, 7));
  configure(fake);
  onTestFinished(() => fake.stop());
  const url = await fake.start();
  return { fake, env: { GROWSURF_API_KEY: GS_KEY, GROWSURF_API_URL: `${url}/v2`, GROWSURF_CAMPAIGN_ID: fake.program.campaignId } };
}

async function startCello(onTestFinished: TestContext['onTestFinished'], referrers = 3): Promise<{ fake: FakeCello; env: Record<string, string>; program: CelloProgram; dir: string }> {
  const dir = tempDir();
  const program = writeCelloProgram(dir, referrers, 21);
  const fake = new FakeCello(CELLO_KEY_ID, CELLO_SECRET);
  seedCello(fake, program);
  onTestFinished(() => fake.stop());
  const url = await fake.start();
  return { fake, env: { CELLO_ACCESS_KEY_ID: CELLO_KEY_ID, CELLO_SECRET_ACCESS_KEY: CELLO_SECRET, CELLO_API_URL: url }, program, dir };
}

const lookupsOf = (fake: FakeCello, prefix: string): number => [...fake.lookups].filter(([path]) => path.startsWith(prefix)).reduce((sum, [, n]) => sum + n, 0);

describe('a source answer that is not the documented one is a failure, after a bounded number of requests (guarantees 1 and 2)', () => {
  it.for(BAD_ANSWERS)('GrowSurf, participants page: $name', async ({ answer, growsurf, requests }, { onTestFinished }) => {
    const { fake, env } = await startGrowsurf(onTestFinished, (gs) => {
      gs.rawAnswer = { status: answer.status, contentType: answer.contentType ?? 'application/json', body: answer.body, path: /\/participants$/, ...(answer.headers ? { headers: answer.headers } : {}) };
    });
    const result = await runCliInProcess(['diff', '--source', 'growsurf'], { cwd: tempDir(), env });
    expectOneSentence(result, growsurf);
    expect(fake.log.arrivals.filter((a) => a.path.endsWith('/participants'))).toHaveLength(requests.growsurf);
  });

  it.for(BAD_ANSWERS)('Cello, code lookup: $name', async ({ answer, cello, requests }, { onTestFinished }) => {
    // One referrer: one code lookup, so the count of requests is that lookup's alone.
    const { fake, env, program, dir } = await startCello(onTestFinished, 1);
    fake.answer = (_method, path) => (path.startsWith('/referral-codes/') && !path.includes('active-link') ? answer : undefined);
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', ...program.files, '--enrich'], { cwd: dir, env });
    expectOneSentence(result, cello);
    expect(lookupsOf(fake, '/referral-codes/')).toBe(requests.cello);
  });

  it.for([
    { name: 'a token answer without accessToken', body: '{"expiresIn": 18000}', message: /^Cello's answer to POST \/token has no "accessToken" \(it is missing\)/ },
    { name: 'a token answer without expiresIn', body: '{"accessToken": "t1"}', message: /^Cello's answer to POST \/token has no "expiresIn" in seconds \(it is missing\)/ },
    { name: 'an active-link answer whose link is a number', body: '{"activeUcc": "u1", "link": 42}', message: /^Cello's answer to GET \/referral-codes\/active-link\/\S+ has a "link" that is a number \(42\), not text/ },
  ])('Cello: $name', async ({ name, body, message }, { onTestFinished }) => {
    const { fake, env, program, dir } = await startCello(onTestFinished, 1);
    const token = name.includes('token');
    fake.answer = (_method, path) => ((token ? path === '/token' : path.includes('active-link')) ? { status: token ? 201 : 200, body } : undefined);
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', ...program.files, '--enrich'], { cwd: dir, env });
    expectOneSentence(result, message);
  });
});

/** Lookup answers Cello documents (or that say one thing of one key), each about one participant. */
const ODD_LOOKUPS: { name: string; what: 'code' | 'link'; answer: Answer; warning: (p: { code: string; referrer: string; friend: string }) => string | undefined; traits?: Record<string, unknown> }[] = [
  { name: 'an unknown code (200 valid:false, as documented)', what: 'code', answer: { status: 200, body: '{"code":"X","productUserId":"","valid":false,"campaignId":""}' }, warning: (p) => `referral code ${p.code} is not valid in Cello: ${p.friend} is kept without a referrer` },
  { name: 'an unknown code as a 404 in Cello\'s words', what: 'code', answer: { status: 404, body: '{"message":"Not Found"}' }, warning: (p) => `referral code ${p.code} is not valid in Cello (Cello answered 404: Not Found): ${p.friend} is kept without a referrer` },
  { name: 'a valid code with its owner and campaign null', what: 'code', answer: { status: 200, body: '{"code":"X","productUserId":null,"valid":true,"campaignId":null}' }, warning: () => undefined },
  { name: 'no link for the referrer (404 in Cello\'s words)', what: 'link', answer: { status: 404, body: '{"message":"Not Found"}' }, warning: (p) => `Cello has no active referral link for referrer ${p.referrer}: it is sent without one` },
  { name: 'no link for the referrer (both fields null)', what: 'link', answer: { status: 200, body: '{"activeUcc":null,"link":null}' }, warning: (p) => `Cello has no active referral link for referrer ${p.referrer}: it is sent without one` },
  { name: 'no link for the referrer (both fields empty)', what: 'link', answer: { status: 200, body: '{"activeUcc":"","link":""}' }, warning: (p) => `Cello has no active referral link for referrer ${p.referrer}: it is sent without one` },
  { name: 'a code without a link', what: 'link', answer: { status: 200, body: '{"activeUcc":"ucc_only","link":null}' }, warning: () => undefined, traits: { referral_code: 'ucc_only' } },
];

describe('Cello\'s odd but documented lookup answers are data about one participant (guarantee 8)', () => {
  it.for(ODD_LOOKUPS)('$name: reported for that participant, the run goes on, no null sent', async ({ what, answer, warning, traits }, { onTestFinished }) => {
    const { fake, env, program, dir } = await startCello(onTestFinished, 3);
    // The odd answer is about the second referrer (its code, or its link) alone.
    const code = [...program.codes.keys()][1]!;
    const referrer = program.codes.get(code)!;
    const friend = `nu_21_1_0`;
    fake.answer = (_method, path) => (path === (what === 'code' ? `/referral-codes/${code}` : `/referral-codes/active-link/${referrer}`) ? answer : undefined);
    const out = join(dir, 'plan.jsonl');
    // The built CLI, as a user runs it.
    const result = await runCli(['diff', '--source', 'cello', '--file', ...program.files, '--enrich', '--to', 'segment', '--json', '--out', out], { cwd: dir, env });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { warningSamples: { reason: string }[] };
    const expected = warning({ code, referrer, friend });
    const warnings = summary.warningSamples.map((w) => w.reason).filter((r) => /Cello/.test(r));
    expect(warnings).toEqual(expected === undefined ? [] : [expected]);
    const identifies = readPlan(out).filter((l) => l.kind === 'identify');
    // Everyone is still planned; no trait is null; the others are enriched as usual.
    expect(identifies.map((l) => l.userId).sort()).toEqual([...program.referred, ...program.referrers].sort());
    for (const line of identifies) expect(Object.values(line.payload.traits as Record<string, unknown>)).not.toContain(null);
    const other = identifies.find((l) => l.userId === program.referrers[0])!;
    expect(other.payload.traits).toMatchObject({ referral_link: `https://example.cello.so/${[...program.codes.keys()][0]}` });
    const odd = identifies.find((l) => l.userId === referrer)!;
    if (traits) expect(odd.payload.traits).toMatchObject(traits);
    if (what === 'link' && !traits) expect(odd.payload.traits).not.toHaveProperty('referral_link');
  });

  it('a 404 that is not Cello\'s JSON (a wrong CELLO_API_URL) is not read as "unknown code": exit 69', async ({ onTestFinished }) => {
    const { fake, env, program, dir } = await startCello(onTestFinished, 2);
    fake.answer = (_method, path) => (path.startsWith('/referral-codes/') ? { status: 404, body: '<html>404 Not Found</html>', contentType: 'text/html' } : undefined);
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', ...program.files, '--enrich'], { cwd: dir, env });
    expectOneSentence(result, /^Cello answered a lookup with 404: <html>404 Not Found<\/html>\.$/);
  });
});

/** Ways a GrowSurf listing could go on forever; each stopped within a bound, exit 69, naming what repeated. */
const ENDLESS_LISTINGS: {
  name: string;
  /** The listing that misbehaves, and how: the page as served, rewritten; `asked` is the nextId asked for. */
  listing: 'participants' | 'referrals';
  rewrite: (page: { items: unknown[]; limit: number; nextId: string | null }, asked: string | null) => Record<string, unknown>;
  reportedCount?: number;
  message: RegExp;
  pages: number;
}[] = [
  {
    name: 'a nextId naming the page it is on',
    listing: 'participants',
    rewrite: (page) => ({ participants: page.items, nextId: 'same-page' }),
    message: /^GrowSurf's nextId cursor came back to a page already read \(nextId "same-page"\) after 2 pages and 30 participants; the listing would never end, so it was stopped\.$/,
    pages: 2,
  },
  {
    name: 'the first page served again under ever new cursors',
    listing: 'participants',
    rewrite: (page, asked) => ({ participants: page.items.slice(0, 10), nextId: `c${Number(asked?.slice(1) ?? 0) + 1}` }),
    message: /^GrowSurf's participants listing gave a page holding only participants already read \(10 of them, nextId "c1"\) after 2 pages and 10 participants; the listing would never end/,
    pages: 2,
  },
  {
    name: 'new participants and cursors forever, past what the campaign\'s count can fill',
    listing: 'participants',
    reportedCount: 30,
    rewrite: (_page, asked) => {
      const n = Number(asked?.slice(1) ?? 0);
      return { participants: [{ id: `ghost${n}`, email: `ghost${n}@example.com`, createdAt: 1_740_000_000_000 }], nextId: `g${n + 1}` };
    },
    // 30 participants fill ceil(2 × 30 / 100) + 10 = 11 pages.
    message: /^GrowSurf's participants listing still announced more after 11 pages and 11 participants, its cap \(twice what campaign camp7's 30 participants fill, plus 10\): either the listing would never end or that count is wrong/,
    pages: 11,
  },
  {
    name: 'a referrals cursor cycling between two pages',
    listing: 'referrals',
    rewrite: (page, asked) => ({ referrals: asked === 'r2' ? page.items.slice(5, 10) : page.items.slice(0, 5), nextId: asked === 'r2' ? 'r1' : 'r2', more: true }),
    message: /^GrowSurf's nextId cursor came back to a page already read \(nextId "r2"\) after 3 pages and 10 referral rows; the listing would never end/,
    pages: 3,
  },
];

describe('a GrowSurf listing that would never end is stopped (guarantee 2)', () => {
  it.for(ENDLESS_LISTINGS)('$name', async ({ listing, rewrite, reportedCount, message, pages }, { onTestFinished }) => {
    const { fake, env } = await startGrowsurf(onTestFinished, (gs) => {
      if (reportedCount !== undefined) gs.reportedParticipantCount = reportedCount;
      gs.rewritePage = (kind, page, asked) =>
        kind === listing ? rewrite(page, asked) : kind === 'participants' ? { participants: page.items, limit: page.limit, nextId: page.nextId } : { referrals: page.items, limit: page.limit, nextId: page.nextId, more: page.nextId !== null };
    });
    const result = await runCliInProcess(['diff', '--source', 'growsurf'], { cwd: tempDir(), env });
    expectOneSentence(result, message);
    expect(fake.requestsByKind.get(listing)).toBe(pages);
  });
});

describe('GrowSurf entries that are not participants, or participants with null fields, are rows, not crashes (guarantee 8)', () => {
  it('reports each odd entry on its own, plans the rest, and sends no null', async ({ onTestFinished }) => {
    const { fake, env } = await startGrowsurf(onTestFinished, (gs) => {
      gs.rewritePage = (kind, page) => {
        if (kind === 'referrals') return { referrals: page.items, limit: page.limit, nextId: page.nextId, more: page.nextId !== null };
        const nulls = { id: 'nully', email: 'nully@example.com', firstName: null, lastName: null, createdAt: null, shareUrl: null, vanityKeys: null, referralCount: null, leadCount: null, referralSource: null, referralStatus: null, referrer: null, rewards: null, metadata: { company: null, seats: null } };
        return { participants: [null, 'p-as-text', {}, { id: 'badmail', email: 42 }, nulls, ...page.items], limit: page.limit, nextId: page.nextId };
      };
    });
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    const result = await runCliInProcess(['diff', '--source', 'growsurf', '--json', '--out', out, '--to', 'segment'], { cwd, env });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { invalidRows: { reason: string }[] };
    expect(summary.invalidRows.map((r) => r.reason)).toEqual([
      'GrowSurf sent an entry of page 1 as null, not a participant; it is not sent',
      'GrowSurf sent an entry of page 1 as text, not a participant; it is not sent',
      'GrowSurf sent an entry of page 1 as an object with no participant "id", not a participant; it is not sent',
      'GrowSurf participant badmail: field "email" is a number (42), not text; the participant is not sent',
    ]);
    const identifies = readPlan(out).filter((l) => l.kind === 'identify');
    expect(identifies.map((l) => l.userId)).toContain('nully@example.com');
    expect(identifies).toHaveLength(fake.program.participants.length + 1);
    for (const line of identifies) expect(Object.values(line.payload.traits as Record<string, unknown>)).not.toContain(null);
  });
});
