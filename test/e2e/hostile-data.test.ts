import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES, removeTempDirs, runCli, tempDir } from '../support/cli.js';
import { readPlan, readPlanProblems } from '../support/plan.js';

/**
 * Guarantees 6 and 7 end to end through the built CLI: an export whose rows differ only by invisible bytes, whose
 * referrals make no sense, and whose cells carry ANSI sequences and line breaks.
 */

afterAll(removeTempDirs);

const NFC = 'josé@x.com'.normalize('NFC');
const NFD = NFC.normalize('NFD');
const FORGED = 'error: forged';

const HEADER = ['ID', 'First Name', 'Last Name', 'Email', 'Referred By', 'Created At'];
const ROWS = [
  ['r1', 'Rita\x1b[31m', 'R', 'rita@x.com', '', '2025-03-01'],
  ['p1', 'José', 'A', NFC, '', '2025-03-02'],
  // The same person, written decomposed (NFD).
  ['p2', 'José', 'B', NFD, '', '2025-03-03'],
  ['p3', 'Ann', 'C', 'ann@x.com', '', '2025-03-04'],
  // The same person, with a zero-width space and a BOM.
  ['p4', 'Ann', 'D', '\ufeffa\u200bnn@x.com', '', '2025-03-05'],
  // An ANSI sequence and an embedded line break in the name.
  ['p5', 'Eve\x1b[2J\x1b[H', `Line\n${FORGED}`, 'eve@x.com', 'r1', '2025-03-06'],
  ['p6', 'Bad', 'E', `bad\n${FORGED}@x.com`, '', '2025-03-07'],
  // A referral cycle of two.
  ['p7', 'C', '7', 'c7@x.com', 'p8', '2025-03-08'],
  ['p8', 'C', '8', 'c8@x.com', 'p7', '2025-03-09'],
  // Referrers nobody in the program is, one of them trying a line separator, one a bidi override.
  ['p9', 'G', '9', 'g9@x.com', `gone\u2028${FORGED}`, '2025-03-10'],
  ['p10', 'B', '10', 'b10@x.com', '\u202egnp.exe', '2025-03-11'],
  // An identity with an ANSI sequence in it: no one's address, and not to be sent.
  ['p11', 'M', '11', 'mal\x1b[31m@x.com', '', '2025-03-12'],
];

function writeExport(dir: string): string {
  const quote = (value: string): string => (/[",\n\r]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value);
  const path = join(dir, 'export.csv');
  writeFileSync(path, `${[HEADER, ...ROWS].map((row) => row.map(quote).join(',')).join('\n')}\n`);
  return path;
}

// Nothing that acts on a terminal may reach it raw: C0 but the line feed, DEL, C1, format, line separators.
const UNSAFE_BUT_LINE_FEED = /[\0-\t\v-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

describe('a hostile export through the built CLI', () => {
  it('diff (text): one person per identity, the variants and the senseless referrals reported, every value escaped', async () => {
    const cwd = tempDir();
    const file = writeExport(cwd);
    const result = await runCli(['diff', '--full', '--file', file], { cwd });
    expect(result.code).toBe(0);
    for (const stream of [result.stdout, result.stderr]) {
      expect(stream).not.toMatch(UNSAFE_BUT_LINE_FEED);
      // `m`: also after a CR, U+2028 or U+2029, had any got through.
      expect(stream).not.toMatch(new RegExp(`^${FORGED}`, 'm'));
    }
    const out = result.stdout;
    expect(out).toContain('Participants: 8 planned, 4 invalid, 4 warnings');
    expect(out).toContain(`user id "${NFC}" already belongs to participant p1 (${file}:3); participant p2 resolves to the same user id`);
    expect(out).toContain(`user id "ann@x.com" already belongs to participant p3 (${file}:5); participant p4 resolves to the same user id`);
    // One line per person, each identity once.
    expect(out.match(/^ {2}\+ /gm)).toHaveLength(8);
    expect(out.split('\n').filter((line) => line.startsWith(`  + ${NFC} (new)`))).toHaveLength(1);
    // Values shown escaped, on their own line.
    expect(out).toContain('  + rita@x.com (new)');
    expect(out).toContain('"mal\\x1b[31m@x.com" in column "Email" is not an email address');
    expect(out).toContain(`"bad\\n${FORGED}@x.com" in column "Email" is not an email address`);
    expect(out).toContain(`referrer "gone\\u2028${FORGED}" of participant p9 is not in the data`);
    expect(out).toContain('referrer "\\u202egnp.exe" of participant p10 is not in the data');
    expect(out).toContain('participant p7 is on a referral cycle (c7@x.com → c8@x.com → c7@x.com,');
    expect(out).toContain('participant p8 is on a referral cycle (c8@x.com → c7@x.com → c8@x.com,');
  });

  it('diff --out: the exact payloads, one person per identity at both destinations, nothing credited that makes no sense; the file is 0600', async () => {
    const cwd = tempDir();
    const file = writeExport(cwd);
    const out = join(cwd, 'plan.jsonl');
    // An older plan left readable by everyone: the new one must not inherit that.
    writeFileSync(out, 'old plan\n');
    chmodSync(out, 0o644);
    const result = await runCli(['diff', '--file', file, '--out', out], { cwd });
    expect(result.code).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const plan = readPlan(out);
    for (const destination of ['segment', 'customerio'] as const) {
      const users = plan.filter((l) => l.kind === 'identify' && l.destination === destination).map((l) => l.userId);
      expect(users.sort()).toEqual(['ann@x.com', 'b10@x.com', 'c7@x.com', 'c8@x.com', 'eve@x.com', 'g9@x.com', NFC, 'rita@x.com'].sort());
      expect(users).not.toContain(NFD);
      // The one credited referral: r1 referred p5.
      expect(plan.filter((l) => l.destination === destination && l.kind === 'track' && (l.payload.event === 'Referral Made' || l.payload.name === 'referral_friend_signed_up')).map((l) => `${l.userId}<${l.participantId}`)).toEqual([
        'rita@x.com<p5',
      ]);
    }
    const eve = plan.find((l) => l.kind === 'identify' && l.destination === 'segment' && l.userId === 'eve@x.com')!;
    // JSON stays exact: the bytes of the cells, not their escapes.
    expect(eve.payload.traits).toMatchObject({ firstName: 'Eve\x1b[2J\x1b[H', lastName: `Line\n${FORGED}`, referred_by: 'rita@x.com' });
    const c7 = plan.find((l) => l.kind === 'identify' && l.destination === 'segment' && l.userId === 'c7@x.com')!;
    expect(c7.payload.traits).not.toHaveProperty('referred_by');
    expect(c7.payload.traits).toMatchObject({ referral_count: 0 });
    const problems = readPlanProblems(out);
    expect(problems.filter((p) => p.type === 'invalid').map((p) => p.participantId)).toEqual(['p2', 'p4', 'p6', 'p11']);
    expect(problems.map((p) => p.reason)).toContain(`referrer "gone\u2028${FORGED}" of participant p9 is not in the data: no participant of the program has that id or email (a deleted participant?); the referral earns no credit: referred_by is left unset and no Referral Made event is planned`);
  });

  it('diff --json and --log-format json: every line a JSON value that parses to the exact data', async () => {
    const cwd = tempDir();
    const file = writeExport(cwd);
    const json = await runCli(['diff', '--file', file, '--json'], { cwd });
    expect(json.code).toBe(0);
    expect(json.stdout).not.toMatch(UNSAFE_BUT_LINE_FEED);
    const summary = JSON.parse(json.stdout) as { invalidRows: { reason: string }[]; warningRows: { reason: string }[] };
    expect(summary.invalidRows.map((r) => r.reason)).toContain(`"bad\n${FORGED}@x.com" in column "Email" is not an email address`);
    expect(summary.warningRows.map((r) => r.reason)).toEqual(
      expect.arrayContaining([expect.stringContaining(`referrer "gone\u2028${FORGED}"`), expect.stringContaining('referrer "\u202egnp.exe"')]),
    );

    const logs = await runCli(['diff', '--file', file, '--log-format', 'json'], { cwd });
    expect(logs.code).toBe(0);
    for (const stream of [logs.stdout, logs.stderr]) {
      expect(stream).not.toMatch(UNSAFE_BUT_LINE_FEED);
      for (const line of stream.split('\n').filter((l) => l !== '')) expect(() => JSON.parse(line) as unknown).not.toThrow();
    }
  });

  it('an error sentence quoting hostile headers is one line, escaped, and exact under --log-format json', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'bad.csv');
    writeFileSync(file, `ID,"Na\x1b[2Jme","X\n${FORGED}"\np1,a,b\n`);
    const text = await runCli(['diff', '--file', file], { cwd });
    expect(text.code).toBe(65);
    expect(text.stderr).not.toMatch(UNSAFE_BUT_LINE_FEED);
    expect(text.stderr).not.toMatch(new RegExp(`^${FORGED}`, 'm'));
    expect(text.stderr).toContain(`are: ID, Na\\x1b[2Jme, X\\n${FORGED}.`);
    const json = await runCli(['diff', '--file', file, '--log-format', 'json'], { cwd });
    expect(json.code).toBe(65);
    const record = JSON.parse(json.stderr.trim()) as { message: string };
    expect(record.message).toContain(`are: ID, Na\x1b[2Jme, X\n${FORGED}.`);
  });
});

describe('a referrer the source vouches for', () => {
  it('Cello: a referrer named only by conv_signups (no aggregates given) is in the program and credited', async () => {
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    const result = await runCli(['diff', '--source', 'cello', '--file', join(FIXTURES, 'cello', 'conv_signups.csv'), '--to', 'segment', '--out', out], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).not.toContain('is not in the data');
    const made = readPlan(out).filter((l) => l.kind === 'track' && l.payload.event === 'Referral Made');
    expect(made.length).toBeGreaterThan(0);
    expect(made.some((l) => l.userId === 'usr_1000')).toBe(true);
  });
});

describe('a problem names its real cause (guarantee 8)', () => {
  it('a 5 MB unquoted field is "a field longer than N characters" for its row, and the other rows are planned', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'big.csv');
    writeFileSync(file, ['Email,First Name,Referral Count', `a@x.com,${'A'.repeat(5_000_000)},1`, 'b@x.com,Bee,2', ''].join('\n'));
    const result = await runCli(['diff', '--file', file, '--json'], { cwd });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { invalidRows: { line: number; reason: string }[] };
    expect(summary.invalidRows).toEqual([
      expect.objectContaining({ line: 2, reason: expect.stringMatching(/^a field longer than 1,048,576 characters in column "First Name"/) as unknown }),
    ]);
    expect(summary.invalidRows[0]!.reason).not.toMatch(/quote/);
    const text = await runCli(['diff', '--file', file], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout + text.stderr).toMatch(/a field longer than 1,048,576 characters/);
  }, 60_000);
});
