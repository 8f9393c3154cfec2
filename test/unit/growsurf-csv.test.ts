import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { DataError, UsageError } from '../../src/errors.js';
import type { SourceRecord } from '../../src/model/participant.js';
import { readGrowsurfCsv } from '../../src/sources/growsurf/csv.js';
import { tempDir, writeCsv } from '../support/cli.js';

async function read(file: string, configure: (c: ReturnType<typeof defaultConfig>) => void = () => undefined, now?: Date): Promise<SourceRecord[]> {
  const config = defaultConfig();
  configure(config);
  const out: SourceRecord[] = [];
  for await (const record of readGrowsurfCsv({ files: [file], programId: 'camp1', config, ...(now ? { now } : {}) })) out.push(record);
  return out;
}

describe('GrowSurf CSV columns', () => {
  it('matches headers without regard to case, spaces or punctuation', async () => {
    const dir = tempDir();
    const file = writeCsv(dir, 'x.csv', [
      {
        'participant_id': 'p1',
        'EMAIL ADDRESS': 'Ann@Example.com',
        'first-name': 'Ann',
        'Signup Date': '2025-05-01T10:00:00Z',
        'REFERRALS': '3',
        'referrer email': 'bob@example.com',
        'Referral status': 'CREDIT_AWARDED',
        'share url': 'https://x.example/?grsf=ann',
        'Vanity Keys': 'ann-vip,ann2',
        Company: 'Hooli',
        'IP Address': '10.0.0.1',
        Fingerprint: 'abc',
        Notes: 'secret',
      },
    ]);
    const [record] = await read(file);
    expect(record).toMatchObject({
      kind: 'participant',
      location: { file, line: 2 },
      participant: {
        id: 'p1',
        email: 'ann@example.com',
        firstName: 'Ann',
        createdAt: new Date('2025-05-01T10:00:00Z'),
        referralCount: 3,
        referrerId: 'bob@example.com',
        referralStatus: 'converted',
        referralLink: 'https://x.example/?grsf=ann',
        referralCode: 'ann-vip',
        metadata: { Company: 'Hooli' },
      },
    });
    // PII the destinations do not need never leaves the source.
    expect(record!.kind === 'participant' && record!.participant.metadata).not.toHaveProperty('IP Address');
    expect(record!.kind === 'participant' && record!.participant.metadata).not.toHaveProperty('Notes');
  });

  it('uses the participant id as the referral code when there is no vanity key (GrowSurf has no referralCode)', async () => {
    const dir = tempDir();
    const [record] = await read(writeCsv(dir, 'x.csv', [{ ID: 'p9', Email: 'a@example.com' }]));
    expect(record!.kind === 'participant' && record!.participant.referralCode).toBe('p9');
  });

  it('takes a referrer id before a referrer email when the export has both', async () => {
    const dir = tempDir();
    const records = await read(
      writeCsv(dir, 'x.csv', [
        { ID: 'f1', Email: 'f1@example.com', 'Referrer ID': 'r1', 'Referrer Email': 'r1@example.com' },
        { ID: 'f2', Email: 'f2@example.com', 'Referrer ID': '', 'Referrer Email': 'r2@example.com' },
      ]),
    );
    expect(records.map((r) => r.kind === 'participant' && r.participant.referrerId)).toEqual(['r1', 'r2@example.com']);
  });

  it('follows the column map of the config file, including metadata renames', async () => {
    const dir = tempDir();
    const file = writeCsv(dir, 'x.csv', [{ 'Member Key': 'm1', 'Member Mail': 'm@example.com', 'Plan Type': 'pro' }]);
    const [record] = await read(file, (c) => {
      c.columns = { id: 'Member Key', email: 'Member Mail', 'metadata.plan': 'Plan Type' };
    });
    expect(record).toMatchObject({ participant: { id: 'm1', email: 'm@example.com', metadata: { plan: 'pro' } } });
  });

  it('stops on a missing required column with one sentence naming the column, the aliases tried and the columns found', async () => {
    const dir = tempDir();
    const file = writeCsv(dir, 'x.csv', [{ ID: 'p1', Name: 'Ann' }]);
    const error = await read(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataError);
    expect((error as DataError).exitCode).toBe(65);
    expect((error as DataError).message).toBe(
      `${file} has no email column (looked for "Email", "Email Address", "E-mail", "Participant Email"); its 2 columns, read as comma-separated, are: ID, Name.`,
    );
    expect((error as DataError).hint).toBe('Map yours with "columns": {"email": "<header>"} in referral-sync.config.json, or use --user-id id.');
  });

  it('rejects a column map naming a header the file lacks', async () => {
    const dir = tempDir();
    const file = writeCsv(dir, 'x.csv', [{ ID: 'p1', Email: 'a@example.com' }]);
    await expect(read(file, (c) => (c.columns = { email: 'Mail' }))).rejects.toBeInstanceOf(UsageError);
  });
});

describe('GrowSurf CSV bad rows', () => {
  it('reports each bad row with its line and reason and reads the rest', async () => {
    const dir = tempDir();
    const file = join(dir, 'bad.csv');
    writeFileSync(
      file,
      [
        'ID,Email,Created At,Referral Count',
        'p1,a@example.com,1/2/2025 9:00 AM,1',
        'p2,b@example.com,not a date,0',
        'p3,not-an-email,1/2/2025 9:00 AM,0',
        'p4,d@example.com,1/2/2025 9:00 AM,many',
        'p5,e@example.com,1/2/2025',
        'p6,f"o"o@example.com,1/2/2025,0',
        'p7,g@example.com,1552404738928,2',
        '',
      ].join('\n'),
    );
    const records = await read(file);
    const summary = records.map((r) => (r.kind === 'participant' ? `ok ${r.participant.id}` : r.kind === 'invalid' ? `line ${r.location?.line}: ${r.reason}` : r.message));
    expect(summary).toEqual([
      'ok p1',
      'line 3: unparseable date "not a date" in column "Created At" (expected epoch ms or s, ISO-8601, or M/D/YYYY h:mm AM)',
      'line 4: "not-an-email" in column "Email" is not an email address',
      'line 5: "many" in column "Referral Count" is not a whole number',
      'line 6: row has 3 fields but the header has 4',
      'line 7: a stray quote in column "Email" (a field with a quote in it must be quoted whole, its quotes doubled)',
      'ok p7',
    ]);
  });

  it('refuses impossible dates with the column and value, and warns about real dates in unusual years', async () => {
    const dir = tempDir();
    const file = join(dir, 'dates.csv');
    writeFileSync(
      file,
      [
        'ID,Email,Created At,Converted At',
        'p1,a@example.com,2024-02-30,',
        'p2,b@example.com,2024-02-31T10:00:00Z,',
        'p3,c@example.com,2/29/2024 10:00 AM,2023-02-29',
        'p4,d@example.com,1/1/1970,',
        'p5,e@example.com,2025-01-01,1/1/2199',
        'p6,f@example.com,2024-02-29,',
        '',
      ].join('\n'),
    );
    const records = await read(file, () => undefined, new Date('2026-06-01T00:00:00Z'));
    const summary = records.map((r) =>
      r.kind === 'participant' ? `ok ${r.participant.id} ${r.participant.createdAt?.toISOString()}` : `${r.kind} ${r.location?.file === file ? r.location.line : '?'}: ${r.kind === 'invalid' ? r.reason : r.message}`,
    );
    expect(summary).toEqual([
      'invalid 2: impossible date "2024-02-30" in column "Created At": February 2024 has 29 days',
      'invalid 3: impossible date "2024-02-31T10:00:00Z" in column "Created At": February 2024 has 29 days',
      'invalid 4: impossible date "2023-02-29" in column "Converted At": February 2023 has 28 days',
      'ok p4 1970-01-01T00:00:00.000Z',
      'warning 5: date "1/1/1970" in column "Created At" is in 1970, outside 2000–2027: read as 1970-01-01T00:00:00.000Z; check that it holds what you expect',
      'ok p5 2025-01-01T00:00:00.000Z',
      'warning 6: date "1/1/2199" in column "Converted At" is in 2199, outside 2000–2027: read as 2199-01-01T00:00:00.000Z; check that it holds what you expect',
      'ok p6 2024-02-29T00:00:00.000Z',
    ]);
  });

  it('says which file is empty', async () => {
    const dir = tempDir();
    const file = join(dir, 'empty.csv');
    writeFileSync(file, '');
    await expect(read(file)).rejects.toThrow(`${file} is empty: expected a header row.`);
  });
});
