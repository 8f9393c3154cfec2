import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataError } from '../../src/errors.js';
import type { Participant, SourceRecord } from '../../src/model/participant.js';
import { celloCsvSource } from '../../src/sources/cello/csv.js';
import { FIXTURES, tempDir } from '../support/cli.js';

const CELLO = join(FIXTURES, 'cello');
const ALL_TIME = readFileSync(join(CELLO, 'event_details_aggregates-all.csv'), 'utf8');
const DAILY = readFileSync(join(CELLO, 'event_details_aggregates-daily.csv'), 'utf8');
const SIGNUPS = join(CELLO, 'conv_signups.csv');

/** The daily fixture as Cello documents it: the same columns as the all-time file, no date column. */
const DAILY_WITHOUT_DATE = DAILY.split('\n')
  .map((line) => line.split(',').slice(1).join(','))
  .join('\n');
/** One day of the daily export: each referrer on one row, counts of that day only. */
const ONE_DAY = 'productuserid,R_Active,R_Sharing,R_Reward,NU_Views,NU_Views_Unique,NU_Signups,NU_Purchases\nusr_1000,1,0,0,0,0,0,0\nusr_1001,2,1,0,2,1,0,0\n';

async function read(files: Record<string, string>): Promise<SourceRecord[]> {
  const dir = tempDir();
  const paths = Object.entries(files).map(([name, text]) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  });
  const records: SourceRecord[] = [];
  for await (const record of celloCsvSource({ paths: [SIGNUPS, ...paths], programId: 'prog', tierBasis: 'signups' }).records()) records.push(record);
  return records;
}

function person(records: SourceRecord[], id: string): Participant {
  const found = records.find((r): r is Extract<SourceRecord, { kind: 'participant' }> => r.kind === 'participant' && r.participant.id === id);
  if (!found) throw new Error(`no participant ${id}`);
  return found.participant;
}

function warnings(records: SourceRecord[]): string[] {
  return records.filter((r): r is Extract<SourceRecord, { kind: 'warning' }> => r.kind === 'warning').map((r) => r.message);
}

describe('Cello daily vs all-time aggregates', () => {
  it('tells a daily file under any name by its repeated referrers: the all-time totals stay', async () => {
    // The daily rows come last, so if they were read as totals they would overwrite usr_1000's 11 signups.
    const records = await read({ 'a-totals-all.csv': ALL_TIME, 'z-aggregates.csv': DAILY_WITHOUT_DATE });
    expect(person(records, 'usr_1000')).toMatchObject({ referralCount: 11, metadata: { cello_signups: 11, cello_purchases: 5 } });
    expect(person(records, 'usr_1001')).toMatchObject({ referralCount: 6 });
    expect(warnings(records).filter((w) => w.includes('z-aggregates.csv'))).toEqual([
      expect.stringMatching(/z-aggregates\.csv \(daily aggregates\) has no date column: it gives no first-active day, and its counts are not used/),
    ]);
  });

  it('takes the file name as Cello gives it: a one-day "-daily" file never overwrites totals', async () => {
    const records = await read({ 'event_details_aggregates-all.csv': ALL_TIME, 'event_details_aggregates-daily.csv': ONE_DAY });
    expect(person(records, 'usr_1000')).toMatchObject({ referralCount: 11, metadata: { cello_signups: 11 } });
    expect(person(records, 'usr_1001')).toMatchObject({ referralCount: 6, metadata: { cello_signups: 6 } });
  });

  it('still reads a date column as the daily shape, for the first active day', async () => {
    const records = await read({ 'event_details_aggregates-all.csv': ALL_TIME, 'cello-export-2.csv': DAILY });
    expect(person(records, 'usr_1000')).toMatchObject({ referralCount: 11, metadata: { cello_first_active: '2025-06-02T00:00:00.000Z' } });
  });

  it('stops with exit 65 and asks which, when nothing tells a one-day file from the all-time one', async () => {
    const error = await read({ 'event_details_aggregates-all.csv': ALL_TIME, 'cello-june.csv': ONE_DAY }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataError);
    expect((error as DataError).exitCode).toBe(65);
    expect((error as DataError).message).toMatch(/cello-june\.csv could be Cello's all-time or daily aggregates: Cello gives both the same columns, its name says neither, and each referrer has one row/);
    expect((error as DataError).hint).toBe(
      'Rename it as Cello names them: event_details_aggregates-all.csv for the all-time totals, event_details_aggregates-daily.csv for the per-day rows.',
    );
  });

  it('stops with exit 65 when a file named all-time has the daily shape', async () => {
    const repeated = await read({ 'event_details_aggregates-all.csv': DAILY_WITHOUT_DATE }).catch((e: unknown) => e);
    expect(repeated).toBeInstanceOf(DataError);
    expect((repeated as DataError).message).toMatch(
      /event_details_aggregates-all\.csv is named as Cello's all-time aggregates, but referrer usr_1000 has more than one row \(lines 2 and 4\), as in the daily aggregates/,
    );
    const dated = await read({ 'event_details_aggregates-all.csv': DAILY }).catch((e: unknown) => e);
    expect((dated as DataError).message).toMatch(/named as Cello's all-time aggregates, but it has a "date" column and referrer usr_1000 has more than one row/);
  });

  it('warns when two all-time files are given: the last one read wins', async () => {
    const records = await read({ 'event_details_aggregates-all.csv': ALL_TIME, 'event_details_aggregates-all-old.csv': ALL_TIME.replace('usr_1000,35,33,5,102,68,11,5', 'usr_1000,35,33,5,102,68,9,5') });
    expect(person(records, 'usr_1000').referralCount).toBe(9);
    expect(warnings(records)).toContainEqual(expect.stringMatching(/^2 all-time aggregates files .*: a referrer in more than one gets the totals of the last one read \(.*event_details_aggregates-all-old\.csv\)/));
  });
});
