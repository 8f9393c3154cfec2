import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { CIO_KEY, CIO_SITE, SEGMENT_KEY, startServices, type Services } from '../support/services.js';

/**
 * Issue 10: every error is one sentence with the fix (on the line after it, at most one line), and a known other
 * export or delimiter names the flag that reads it. Each case: the message, its fix, the exit code.
 */

const GROWSURF = join(FIXTURES, 'growsurf', 'participants.csv');
const CONV_SIGNUPS = join(FIXTURES, 'cello', 'conv_signups.csv');
const AGGREGATES = join(FIXTURES, 'cello', 'event_details_aggregates-all.csv');

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

/** stderr as its lines, without the empty one after the last newline. */
function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => line !== '');
}

/** A loopback port nothing listens on (taken, then freed): connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('a known other export names the flag that reads it', () => {
  it.each([
    ['conv_signups', CONV_SIGNUPS],
    ['event_details_aggregates', AGGREGATES],
  ])('a Cello %s export given as a GrowSurf export: use --source cello (exit 64)', async (kind, file) => {
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--file', file], { cwd });
    expect(result.code).toBe(64);
    expect(errorLines(result.stderr)).toEqual([
      `error: ${file} is Cello's ${kind} export, not a GrowSurf participant export: read it with --source cello.`,
      'Give the Cello exports together, e.g. --source cello --file conv_signups.csv event_details_aggregates-all.csv, or their folder.',
    ]);
    expect(result.stdout).toBe('');
    // And that flag does read it.
    const cello = await runCliInProcess(['diff', '--source', 'cello', '--file', join(FIXTURES, 'cello')], { cwd });
    expect(cello.code).toBe(0);
  });

  it('a GrowSurf export given with --source cello: read it without --source cello (exit 64)', async () => {
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--source', 'cello', '--file', GROWSURF], { cwd });
    expect(result.code).toBe(64);
    expect(errorLines(result.stderr)).toEqual([
      `error: ${GROWSURF} is a GrowSurf participant export, not a Cello export: read it without --source cello (and without --format cello).`,
      `For example: npx referral-sync diff --file ${GROWSURF}`,
    ]);
  });

  it('a folder given as a GrowSurf export says a folder is read only as Cello exports (exit 64)', async () => {
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', '--file', join(FIXTURES, 'cello')], { cwd });
    expect(result.code).toBe(64);
    expect(errorLines(result.stderr)).toEqual([
      `error: Not a file: ${join(FIXTURES, 'cello')}`,
      'Give --file the path of a CSV export; a folder is read only as Cello exports, with --source cello.',
    ]);
  });
});

describe('delimiters', () => {
  it('reads a semicolon-separated export and says so; a missing column lists the columns found and how they were split', async () => {
    const cwd = tempDir();
    const good = join(cwd, 'semicolons.csv');
    writeFileSync(good, 'ID;Email;Referral Count\np1;ann@example.com;2\np2;bob@example.com;0\n');
    const read = await runCliInProcess(['diff', '--file', good], { cwd });
    expect(read.code).toBe(0);
    expect(read.stdout).toContain('encoding utf-8 (detected: valid UTF-8), semicolon-separated');
    expect(read.stdout).toContain('Participants: 2 planned, 0 invalid');

    const missing = join(cwd, 'members.csv');
    writeFileSync(missing, 'Member;Mail;Ref\np1;ann@example.com;\n');
    const result = await runCliInProcess(['diff', '--file', missing], { cwd });
    expect(result.code).toBe(65);
    expect(errorLines(result.stderr)).toEqual([
      `error: ${missing} has no email column (looked for "Email", "Email Address", "E-mail", "Participant Email"); ` +
        'its 3 columns, read as semicolon-separated, are: Member, Mail, Ref.',
      'Map yours with "columns": {"email": "<header>"} in referral-sync.config.json, or use --user-id id.',
    ]);
  });

  it('a header split on the wrong delimiter names --delimiter, which then reads the file', async () => {
    const cwd = tempDir();
    // One semicolon and one comma: the header line cannot tell, and comma wins.
    const file = join(cwd, 'mixed.csv');
    writeFileSync(file, 'Email;Company,Inc\nann@example.com;Initech, Inc\n');
    const result = await runCliInProcess(['diff', '--file', file], { cwd });
    expect(result.code).toBe(65);
    expect(errorLines(result.stderr)).toEqual([
      `error: ${file} has no email column (looked for "Email", "Email Address", "E-mail", "Participant Email"); ` +
        'its 2 columns, read as comma-separated, are: Email;Company, Inc.',
      'Its header also holds ";": if the file is semicolon-separated, pass --delimiter semicolon.',
    ]);
    const fixed = await runCliInProcess(['diff', '--file', file, '--delimiter', 'semicolon'], { cwd });
    expect(fixed.code).toBe(0);
    expect(fixed.stdout).toContain('semicolon-separated');
    expect(fixed.stdout).toContain('Participants: 1 planned, 0 invalid');
  });

  it('an unknown --delimiter, or one given to the API source, exits 64 with the values it takes', async () => {
    const cwd = tempDir();
    const pipe = await runCliInProcess(['diff', '--file', GROWSURF, '--delimiter', '|'], { cwd });
    expect(pipe.code).toBe(64);
    expect(errorLines(pipe.stderr)).toEqual([
      'error: --delimiter must be comma, semicolon or tab, not "|".',
      "Leave it out to have it detected from each file's header line.",
    ]);
    const api = await runCliInProcess(['diff', '--source', 'growsurf', '--campaign', 'c1', '--delimiter', 'tab'], { cwd, env: { GROWSURF_API_KEY: 'k' } });
    expect(api.code).toBe(64);
    expect(api.stderr).toContain('error: --delimiter applies to --file exports; the GrowSurf API answers in JSON, so drop --delimiter.');
  });
});

describe('destinations', () => {
  it('Customer.io refusing the key: check and the run both say to use a Track API key, not an App API key (exit 69)', async () => {
    services = await startServices();
    const cwd = tempDir();
    const env = { ...services.env, CUSTOMERIO_API_KEY: 'an-app-api-key-value' };
    const check = await runCliInProcess(['check', '--to', 'customerio'], { cwd, env });
    expect(check.code).toBe(69);
    expect(check.stdout).toBe(
      'FAIL Customer.io refused the site id and API key (401).\n' +
        '     Use a Track API key and its site id (Account Settings → API Credentials → Track API Keys), not an App API key, and check CUSTOMERIO_REGION.\n',
    );
    const sync = await runCliInProcess(['sync', '--file', GROWSURF, '--to', 'customerio'], { cwd, env });
    expect(sync.code).toBe(69);
    expect(errorLines(sync.stderr)).toEqual([
      'error: Customer.io refused the site id and API key (401).',
      'Nothing was sent. Use a Track API key and its site id (Account Settings → API Credentials → Track API Keys), not an App API key, and check CUSTOMERIO_REGION.',
    ]);
    expect(check.stdout + sync.stderr).not.toContain('an-app-api-key-value');
  });

  it('Segment and Customer.io unreachable: one sentence shape naming each once, its URL redacted, and the fix (exit 69)', async () => {
    const [segmentPort, customerioPort] = [await closedPort(), await closedPort()];
    const cwd = tempDir();
    const env = {
      SEGMENT_WRITE_KEY: SEGMENT_KEY,
      SEGMENT_HOST: `http://127.0.0.1:${segmentPort}/?token=s3cr3t-token`,
      CUSTOMERIO_SITE_ID: CIO_SITE,
      CUSTOMERIO_API_KEY: CIO_KEY,
      CUSTOMERIO_TRACK_URL: `http://127.0.0.1:${customerioPort}`,
    };
    const check = await runCliInProcess(['check'], { cwd, env });
    expect(check.code).toBe(69);
    expect(check.stdout.split('\n')).toEqual([
      `FAIL Segment is unreachable at http://127.0.0.1:${segmentPort}/?token=***: connection refused (ECONNREFUSED).`,
      '     Check the network and any proxy or firewall on the way, and SEGMENT_REGION (us or eu) or SEGMENT_HOST; if it fails only under load, lower --rate.',
      `FAIL Customer.io is unreachable at http://127.0.0.1:${customerioPort}: connection refused (ECONNREFUSED).`,
      '     Check the network and any proxy or firewall on the way, and CUSTOMERIO_REGION (us or eu) or CUSTOMERIO_TRACK_URL; if it fails only under load, lower --rate.',
      '',
    ]);
    expect(check.stdout + check.stderr).not.toContain('s3cr3t-token');
    // A run's preflight fails with the same sentence and hint (see the refused key above): not run again here,
    // since each unreachable check is retried for 3.5 s.
  });

  it.each([
    ['segment', { CUSTOMERIO_SITE_ID: CIO_SITE, CUSTOMERIO_API_KEY: CIO_KEY }, 'SEGMENT_WRITE_KEY (for Segment)', 'Or send only to the destination that has them: --to customerio.'],
    ['customerio', { SEGMENT_WRITE_KEY: SEGMENT_KEY }, 'CUSTOMERIO_SITE_ID and CUSTOMERIO_API_KEY (for Customer.io)', 'Or send only to the destination that has them: --to segment.'],
    ['segment', {}, 'SEGMENT_WRITE_KEY (for Segment)', '`npx referral-sync diff` shows what would be sent without any credentials.'],
  ])('--to %s without its credentials names them and suggests the other destination if it has its own (exit 64)', async (to, env, missing, hint) => {
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--file', GROWSURF, '--to', to], { cwd, env });
    expect(result.code).toBe(64);
    expect(errorLines(result.stderr)).toEqual([`error: Missing credentials: set ${missing}.`, hint]);
  });
});

describe('--rate', () => {
  it.each([
    ['segment=0', '--rate segment=0 is not a rate: give a number above 0 per second, e.g. --rate segment=200,customerio=50.'],
    ['segment=-5', '--rate segment=-5 is not a rate: give a number above 0 per second, e.g. --rate segment=200,customerio=50.'],
    ['segment=fast', '--rate segment=fast is not a rate: give a number above 0 per second, e.g. --rate segment=200,customerio=50.'],
    ['bogus=5', '--rate names an unknown service "bogus": use segment, customerio, growsurf or cello, e.g. --rate segment=200,customerio=50.'],
    [
      '500',
      '--rate takes service=rate pairs separated by commas, not "500": e.g. --rate segment=200,customerio=50 (Segment in events/s, the others in requests/s).',
    ],
  ])('--rate %s exits 64 with the accepted form and an example', async (rate, message) => {
    const cwd = tempDir();
    // diff checks it too, although reading a file uses no rate; retry checks it before looking for work.
    for (const command of ['diff', 'retry']) {
      const result = await runCliInProcess([command, ...(command === 'diff' ? ['--file', GROWSURF] : []), '--rate', rate], { cwd, env: { SEGMENT_WRITE_KEY: SEGMENT_KEY, CUSTOMERIO_SITE_ID: CIO_SITE, CUSTOMERIO_API_KEY: CIO_KEY } });
      expect(result.code).toBe(64);
      expect(errorLines(result.stderr)).toEqual([`error: ${message}`]);
    }
  });
});

describe('other messages carry their fix', () => {
  it('a config file that is not JSON, --enrich without Cello, --quick with a file, the API without its key (exit 64)', async () => {
    const cwd = tempDir();
    const config = join(cwd, 'bad.json');
    writeFileSync(config, '{"userId": "id",}\n');
    const cases: [string[], Record<string, string>, string, string | undefined][] = [
      [['diff', '--file', GROWSURF, '--config', config], {}, `error: Config file ${config} is not valid JSON: `, 'Fix it there: JSON allows no comments and no trailing commas (a "//" key can hold a note).'],
      [['diff', '--file', GROWSURF, '--enrich'], {}, 'error: --enrich works only with Cello exports: add --source cello, or drop --enrich.', undefined],
      [['sync', '--file', GROWSURF, '--quick'], {}, 'error: --quick works only with --source growsurf (the API): drop it, since a file is always read whole.', undefined],
      [
        ['diff', '--source', 'growsurf', '--campaign', 'c1'],
        {},
        'error: --source growsurf needs GROWSURF_API_KEY: set it (GrowSurf → Settings → API Keys).',
        'Or export the participants to CSV and pass --file instead of --source growsurf.',
      ],
    ];
    for (const [args, env, message, hint] of cases) {
      const result = await runCliInProcess(args, { cwd, env });
      expect(result.code).toBe(64);
      const [first, ...rest] = errorLines(result.stderr);
      expect(first!.startsWith(message)).toBe(true);
      expect(rest).toEqual(hint === undefined ? [] : [hint]);
    }
  });

  it('a GrowSurf export with a column map naming a header it lacks lists the columns it has (exit 64)', async () => {
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [{ ID: 'p1', Email: 'a@example.com' }]);
    writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ columns: { email: 'Mail' } }));
    const result = await runCliInProcess(['diff', '--file', file], { cwd });
    expect(result.code).toBe(64);
    expect(errorLines(result.stderr)).toEqual([
      `error: The config maps "email" to column "Mail", which ${file} does not have; its 2 columns, read as comma-separated, are: ID, Email.`,
      'Change "email" in the config\'s "columns" to one of those headers.',
    ]);
  });
});
