import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, runCliInProcess, tempDir } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Messy exports through the built CLI: encodings, stray quotes and impossible dates reach the user as clear
 * messages, and only intact data reaches Segment and Customer.io.
 */

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

const HEADER = ['ID', 'Email', 'First Name', 'Last Name', 'Referral Count', 'Referred By', 'Referral Status', 'Created At'];
const PEOPLE = [
  ['p1', 'jose@example.com', 'José', 'Núñez', '1', '', '', '2025-03-01'],
  ['p2', 'zoe@example.com', 'Zoë', 'Brontë', '0', 'p1', 'CREDIT_AWARDED', '2025-03-02'],
];

/** An export as Excel saves it: "CSV" in Windows-1252, or "Unicode Text" in UTF-16 LE with tabs. */
function writeExport(dir: string, name: string, encoding: 'windows-1252' | 'utf-16le'): string {
  const path = join(dir, name);
  if (encoding === 'windows-1252') {
    writeFileSync(path, Buffer.from(`${[HEADER, ...PEOPLE].map((r) => r.join(',')).join('\r\n')}\r\n`, 'latin1'));
  } else {
    const text = `${[HEADER, ...PEOPLE].map((r) => r.join('\t')).join('\r\n')}\r\n`;
    writeFileSync(path, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
  }
  return path;
}

interface DiffJson {
  participants: number;
  invalid: number;
  invalidRows: { file: string; line: number; reason: string }[];
  warnings: number;
  warningSamples: { file: string; line: number; reason: string }[];
  inputs?: { file: string; encoding: string; detected: boolean; reason: string; delimiter: string }[];
}

describe('encodings', () => {
  it.each(['windows-1252', 'utf-16le'] as const)('a %s export reaches Segment and Customer.io as José, not Jos\uFFFD', async (encoding) => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeExport(cwd, `export-${encoding}.csv`, encoding);
    // Zoë's conversion carries no date: sent as now, it is recent, and a first load sends it only as decided.
    const result = await runCliInProcess(['sync', '--file', file, '--recent-events', 'send'], { cwd, env: services.env });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      encoding === 'windows-1252'
        ? `read ${file}: windows-1252 (detected: not valid UTF-8 (first at line 2, byte 0xE9))`
        : `read ${file}: utf-16le (detected: byte-order mark), tab-separated`,
    );
    const jose = services.segment.identifies().find((m) => m.userId === 'jose@example.com')!;
    expect(jose.traits).toMatchObject({ firstName: 'José', lastName: 'Núñez', referral_count: 1 });
    const zoe = services.segment.identifies().find((m) => m.userId === 'zoe@example.com')!;
    expect(zoe.traits).toMatchObject({ firstName: 'Zoë', lastName: 'Brontë', referred_by: 'jose@example.com' });
    expect(services.customerio.people.get('email:jose@example.com')).toMatchObject({ first_name: 'José', last_name: 'Núñez' });
    expect(services.customerio.people.get('email:zoe@example.com')).toMatchObject({ first_name: 'Zoë', last_name: 'Brontë' });
  });

  it('a wrong --encoding sends nothing with U+FFFD: those rows are invalid, with a reason naming --encoding', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeExport(cwd, 'export.csv', 'windows-1252');
    const result = await runCliInProcess(['sync', '--file', file, '--encoding', 'utf-8', '--json'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { inputs: DiffJson['inputs']; plan: DiffJson };
    expect(summary.inputs).toEqual([{ file, encoding: 'utf-8', detected: false, reason: 'as asked (--encoding)', delimiter: ',' }]);
    expect(summary.plan.participants).toBe(0);
    expect(summary.plan.invalidRows.map((r) => r.line)).toEqual([2, 3]);
    expect(summary.plan.invalidRows[0]!.reason).toMatch(/^column "First Name" holds bytes that are not valid utf-8 \("Jos\uFFFD"; .*pass --encoding/);
    expect(summary.plan.invalidRows[1]!.reason).toMatch(/^column "First Name" holds bytes that are not valid utf-8 \("Zo\uFFFD"/);
    const sent = JSON.stringify([...services.segment.messages.values(), ...services.customerio.people.values(), ...services.customerio.events.values()]);
    expect(sent).not.toContain('\uFFFD');
    expect(services.segment.messages.size).toBe(0);
  });

  it('diff says how each file was read, in text and --json; --encoding overrides', async () => {
    const cwd = tempDir();
    const latin = writeExport(cwd, 'latin.csv', 'windows-1252');
    const utf8 = join(FIXTURES, 'growsurf', 'participants.csv');
    const text = await runCliInProcess(['diff', '--file', utf8, latin], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`  encoding ${utf8}: utf-8 (detected: valid UTF-8)\n  encoding ${latin}: windows-1252 (detected: not valid UTF-8 (first at line 2, byte 0xE9))\n`);
    const json = JSON.parse((await runCliInProcess(['diff', '--file', latin, '--json'], { cwd })).stdout) as DiffJson;
    expect(json.inputs).toEqual([{ file: latin, encoding: 'windows-1252', detected: true, reason: 'not valid UTF-8 (first at line 2, byte 0xE9)', delimiter: ',' }]);
    const asked = await runCliInProcess(['diff', '--file', latin, '--encoding', 'latin1'], { cwd });
    expect(asked.stdout).toContain('  encoding windows-1252 (as --encoding asked)\n');
    expect(asked.stdout).toContain('+ jose@example.com (new)');
  });

  it('refuses an --encoding it does not know, and --encoding without a file, with exit 64', async () => {
    const cwd = tempDir();
    const file = writeExport(cwd, 'export.csv', 'windows-1252');
    const unknown = await runCliInProcess(['diff', '--file', file, '--encoding', 'ebcdic'], { cwd });
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('error: --encoding must be one of utf-8, utf-16le, utf-16be, windows-1252, latin1, not "ebcdic".');
    const api = await runCliInProcess(['diff', '--source', 'growsurf', '--campaign', 'c1', '--encoding', 'utf-8'], { cwd, env: { GROWSURF_API_KEY: 'gs_key_test_x' } });
    expect(api.code).toBe(64);
    expect(api.stderr).toContain('--encoding applies to --file exports');
  });
});

describe('stray quotes', () => {
  function program(rows: number, broken: (i: number, line: string) => string): string {
    const lines = ['ID,Email,Plan,Company,Created At'];
    for (let i = 0; i < rows; i += 1) lines.push(broken(i, `p${i},member${i}@example.com,free,"Hooli, Inc",2025-03-01`));
    return `${lines.join('\n')}\n`;
  }

  it('a stray quote inside a field costs its own row: 999 of 1,000 planned, exit 0', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'export.csv');
    writeFileSync(file, program(1000, (i, line) => (i === 500 ? line.replace(',free,', ',"free"x,') : line)));
    const result = await runCliInProcess(['diff', '--file', file, '--json'], { cwd });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as DiffJson;
    expect(summary.participants).toBe(999);
    expect(summary.invalidRows).toMatchObject([{ file, line: 502, reason: 'text after the closing quote in column "Plan" (a quote inside a quoted field must be doubled)' }]);
  });

  it('a quote that swallows the next lines is reported at the line where it opened, and every row after it is read', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'export.csv');
    // The quote opened on line 22 would close at the first quote of line 23 and, unchecked, take line 22 and 23 as one row.
    writeFileSync(file, program(1000, (i, line) => (i === 20 ? line.replace(',free,"Hooli, Inc",', ',"free,Hooli,') : line)));
    const result = await runCliInProcess(['diff', '--file', file, '--json'], { cwd });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as DiffJson;
    expect(summary.participants).toBe(999);
    expect(summary.invalidRows).toMatchObject([
      {
        file,
        line: 22,
        reason: 'a quote opened in column "Plan" on line 22 closes on line 23 and text follows it: a stray quote; the lines after 22 were read on their own',
      },
    ]);
  });

  it('a quote that never closes before the end of the file is reported at its line; the rows after it are read', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'export.csv');
    writeFileSync(file, 'ID,Email,Plan\np1,a@example.com,"pro\np2,b@example.com,free\np3,c@example.com,team\n');
    const summary = JSON.parse((await runCliInProcess(['diff', '--file', file, '--json'], { cwd })).stdout) as DiffJson;
    expect(summary.participants).toBe(2);
    expect(summary.invalidRows).toMatchObject([
      { file, line: 2, reason: 'a quote opened in column "Plan" on line 2 never closes; the rest of the file is read as if it were not there' },
    ]);
  });

  it('a note with a line break inside quotes is one row, numbered by its first line', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'export.csv');
    writeFileSync(file, 'ID,Email,Plan\np1,a@example.com,"pro\nannual"\np2,b@example.com,"free""x"\np3,not-an-email,free\n');
    const summary = JSON.parse((await runCliInProcess(['diff', '--file', file, '--json', '--user-id', 'id'], { cwd })).stdout) as DiffJson;
    expect(summary.participants).toBe(2);
    expect(summary.invalidRows).toMatchObject([{ file, line: 5, participantId: 'p3', reason: '"not-an-email" in column "Email" is not an email address' }]);
  });
});

describe('dates', () => {
  it('impossible dates make the row invalid with column and value; an unusual year is read with a warning', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'export.csv');
    writeFileSync(
      file,
      ['ID,Email,Created At', 'p1,a@example.com,2024-02-30', 'p2,b@example.com,2023-02-29', 'p3,c@example.com,1/1/1970', 'p4,d@example.com,1/1/2199', 'p5,e@example.com,2024-02-29', ''].join('\n'),
    );
    const result = await runCliInProcess(['diff', '--file', file, '--json'], { cwd });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as DiffJson;
    expect(summary.participants).toBe(3);
    expect(summary.invalidRows).toMatchObject([
      { file, line: 2, participantId: 'p1', reason: 'impossible date "2024-02-30" in column "Created At": February 2024 has 29 days' },
      { file, line: 3, participantId: 'p2', reason: 'impossible date "2023-02-29" in column "Created At": February 2023 has 28 days' },
    ]);
    expect(summary.warningSamples.map((w) => [w.line, w.reason.split(':')[0]])).toEqual([
      [4, 'date "1/1/1970" in column "Created At" is in 1970, outside 2000–' + (new Date().getUTCFullYear() + 1)],
      [5, 'date "1/1/2199" in column "Created At" is in 2199, outside 2000–' + (new Date().getUTCFullYear() + 1)],
    ]);
  });
});

describe('Cello aggregates', () => {
  it('exits 65 naming a file that could be the daily or the all-time aggregates, and how to say which', async () => {
    const cwd = tempDir();
    const file = join(cwd, 'cello-aggregates.csv');
    writeFileSync(file, 'productuserid,R_Active,R_Sharing,R_Reward,NU_Views,NU_Views_Unique,NU_Signups,NU_Purchases\nusr_1000,1,0,0,0,0,0,0\n');
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', join(FIXTURES, 'cello', 'conv_signups.csv'), file], { cwd });
    expect(result.code).toBe(65);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`error: ${file} could be Cello's all-time or daily aggregates`);
    expect(result.stderr).toContain('Rename it as Cello names them: event_details_aggregates-all.csv');
  });

  it('daily rows under another name never overwrite the all-time totals that reach the destinations', async () => {
    services = await startServices();
    const cwd = tempDir();
    const daily = readFileSync(join(FIXTURES, 'cello', 'event_details_aggregates-daily.csv'), 'utf8')
      .split('\n')
      .map((line) => line.split(',').slice(1).join(','))
      .join('\n');
    const renamed = join(cwd, 'zz-export.csv');
    writeFileSync(renamed, daily);
    const result = await runCliInProcess(['sync', '--source', 'cello', '--file', join(FIXTURES, 'cello', 'event_details_aggregates-all.csv'), join(FIXTURES, 'cello', 'conv_signups.csv'), renamed], {
      cwd,
      env: services.env,
    });
    expect(result.code).toBe(0);
    const champion = services.segment.identifies().find((m) => m.userId === 'usr_1000')!;
    expect(champion.traits).toMatchObject({ referral_tier: 'champion', referral_count: 11 });
  });
});
