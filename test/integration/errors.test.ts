import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, FIXTURES, runCliInProcess, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { CIO_KEY, CIO_SITE, SEGMENT_KEY, startServices, type Services } from '../support/services.js';

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const SECRETS = [SEGMENT_KEY, CIO_KEY];

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

function stateRows(path: string, sql: string): Record<string, unknown>[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(sql).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

describe('permanent errors', () => {
  it('marks refused items dead with the reason, exits 1, lists them in status, and resends them with retry once fixed', async () => {
    services = await startServices();
    const cwd = tempDir();
    const refused = new Set(['jian.yang@example.com', 'gavin.belson@example.com']);
    services.customerio.rejectOperation = (op) => (op.identifiers?.email && refused.has(op.identifiers.email) ? 'attribute value too long' : undefined);
    services.segment.rejectMessage = (m) => (m.userId === 'jian.yang@example.com' ? 400 : undefined);

    const sync = await runCliInProcess(['sync', '--file', FIXTURE, '--campaign', 'grsf_demo'], { cwd, env: services.env });
    expect(sync.code).toBe(1);
    // The run's verdict is its last line, on stderr, with the exit code and the commands that help.
    expect(sync.stderr.trim().split('\n').at(-1)).toMatch(
      /^error: sync: finished in [\d.]+s with \d+ deliveries not through: [\d,]+ sent, 0 failed, [\d,]+ dead \(exit 1\); `npx referral-sync status` lists them, `npx referral-sync retry` resends them\.$/,
    );
    const dead = stateRows(join(cwd, '.referral-sync', 'state.db'), `SELECT destination, user_id, last_error FROM deliveries WHERE status = 'dead'`);
    const cioDead = dead.filter((r) => r.destination === 'customerio');
    expect(new Set(cioDead.map((r) => r.user_id))).toEqual(refused);
    expect(cioDead.every((r) => String(r.last_error).includes('attribute value too long'))).toBe(true);
    // Segment refuses a whole batch with 400: everything in the batch that held Jian is dead, with the status.
    const segmentDead = dead.filter((r) => r.destination === 'segment');
    expect(segmentDead.length).toBeGreaterThan(0);
    expect(segmentDead.every((r) => String(r.last_error).includes('[400]'))).toBe(true);

    const status = await runCliInProcess(['status'], { cwd });
    expect(status.stdout).toContain('jian.yang@example.com');
    expect(status.stdout).toContain('attribute value too long');

    // Nothing changes until someone fixes it: the next sync does not resend dead deliveries.
    const before = services.customerio.eventArrivals.length;
    const idle = await runCliInProcess(['sync', '--file', FIXTURE, '--campaign', 'grsf_demo'], { cwd, env: services.env });
    expect(services.customerio.eventArrivals.length).toBe(before);
    expect(idle.code).toBe(0);

    services.customerio.rejectOperation = undefined;
    services.segment.rejectMessage = undefined;
    const retry = await runCliInProcess(['retry', '--campaign', 'grsf_demo'], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    expect(retry.stdout).toContain(`referral-sync retry: ${dead.length} deliveries retried, ${dead.length} went through (program grsf_demo)`);
    expect(services.customerio.people.get('email:jian.yang@example.com')).toMatchObject({ referral_tier: 'new_participant' });
    expect(stateRows(join(cwd, '.referral-sync', 'state.db'), `SELECT * FROM deliveries WHERE status != 'sent'`)).toEqual([]);
    const final = await runCliInProcess(['sync', '--file', FIXTURE, '--campaign', 'grsf_demo'], { cwd, env: services.env });
    expect(final.stdout).toMatch(/Segment\s+0\s+146/);
  });
});

describe('credentials', () => {
  it('check exits 69 with one sentence when Customer.io refuses the key, and 0 when it accepts it', async () => {
    services = await startServices();
    const cwd = tempDir();
    const bad = await runCliInProcess(['check'], { cwd, env: { ...services.env, CUSTOMERIO_API_KEY: 'wrong-key-value-123' } });
    expect(bad.code).toBe(69);
    expect(bad.stdout).toContain('FAIL Customer.io refused the site id and API key (401).');
    expect(bad.stdout + bad.stderr).not.toContain('wrong-key-value-123');
    const good = await runCliInProcess(['check'], { cwd, env: services.env });
    expect(good.code).toBe(0);
    expect(good.stdout).toContain('ok   Customer.io accepted the site id and API key');
    expect(good.stdout).toContain('Segment accepts any write key with 200, so the key itself cannot be checked');
    expect(services.segment.arrivals).toEqual([]);
    expect(services.customerio.people.size).toBe(0);
  });

  it('sync with a refused Customer.io key exits 69 before anything is marked sent', async () => {
    services = await startServices();
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--file', FIXTURE], { cwd, env: { ...services.env, CUSTOMERIO_API_KEY: 'wrong-key-value-123' } });
    expect(result.code).toBe(69);
    expect(result.stderr.split('\n')[0]).toBe('error: Customer.io refused the site id and API key (401).');
    expect(services.segment.arrivals).toEqual([]);
    const sent = stateRows(join(cwd, '.referral-sync', 'state.db'), `SELECT COUNT(*) AS n FROM deliveries WHERE status = 'sent'`);
    expect(sent).toEqual([{ n: 0 }]);
  });

  it('exits 64 naming the variables when credentials are missing', async () => {
    const cwd = tempDir();
    const result = await runCliInProcess(['sync', '--file', FIXTURE], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain('Missing credentials: set SEGMENT_WRITE_KEY (for Segment) and CUSTOMERIO_SITE_ID and CUSTOMERIO_API_KEY (for Customer.io).');
  });

  it('never writes a secret to output, logs, plan files or state', async () => {
    services = await startServices({ customerio: { error5xxRate: 0.2, seed: 3 } });
    const cwd = tempDir();
    services.customerio.rejectOperation = (op) => (op.name === 'referral_converted' ? 'nope' : undefined);
    const outputs = [
      await runCliInProcess(['sync', '--file', FIXTURE, '--log-format', 'json', '--verbose'], { cwd, env: services.env }),
      await runCliInProcess(['diff', '--file', FIXTURE, '--out', join(cwd, 'plan.jsonl'), '--verbose'], { cwd, env: services.env }),
      await runCliInProcess(['status', '--json'], { cwd, env: services.env }),
      await runCliInProcess(['check', '--verbose'], { cwd, env: services.env }),
      await runCliInProcess(['retry'], { cwd, env: services.env }),
    ];
    const files = [join(cwd, 'plan.jsonl'), ...readdirSync(join(cwd, '.referral-sync')).map((f) => join(cwd, '.referral-sync', f))];
    const everything = outputs.map((o) => o.stdout + o.stderr).join('\n') + files.map((f) => readFileSync(f).toString('latin1')).join('\n');
    for (const secret of SECRETS) expect(everything).not.toContain(secret);
    expect(everything).not.toContain(Buffer.from(`${CIO_SITE}:${CIO_KEY}`).toString('base64'));
  });
});

describe('lock', () => {
  it('a second concurrent run exits 75 at once and leaves the first alone', async () => {
    services = await startServices({ segment: { delayMs: 300 }, customerio: { delayMs: 300 } });
    const cwd = tempDir();
    const file = writeProgram(cwd, 400);
    const first = spawn(process.execPath, [BIN, 'sync', '--file', file], { cwd, env: { PATH: process.env.PATH ?? '', CI: 'true', ...services.env }, stdio: 'ignore' });
    const firstDone = new Promise<number | null>((resolve) => first.on('close', resolve));
    // Wait until the first run holds the lock (its first requests reach the fakes).
    while (services.segment.log.total + services.customerio.log.total < 3) await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const second = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(second.code).toBe(75);
    expect(second.stderr).toMatch(/^error: Another run holds the lock on program default in .+ \(sync, pid \d+ on [^,]+, since [^)]+\)\.\nWait for it to finish; if that run is gone for good, free its lock with: npx referral-sync unlock --campaign default\n$/);
    // Far from any real wait (the first run takes seconds): the exit code already says it did not wait for the lock.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await firstDone).toBe(0);
  });
});
