import { createServer, type Server } from 'node:net';
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStateForWriting } from '../../src/state/sqlite/store.js';
import { FIXTURES, ROOT, runCli, tempDir, writeCsv } from '../support/cli.js';
import { readPlan, type PlanLine } from '../support/plan.js';

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const BAD_ROW_FIXTURE = join(FIXTURES, 'growsurf', 'participants-bad-row.csv');
const EXPECTED_PLAN = join(FIXTURES, 'growsurf', 'expected-plan.jsonl');



/** Writes a state as a finished sync of this plan would leave it: identities acknowledged, events sent. */
async function seedStateFromPlan(statePath: string, plan: PlanLine[]): Promise<void> {
  const state = openSqliteStateForWriting(statePath);
  const now = new Date('2026-01-01T00:00:00Z');
  await state.saveIdentities(
    plan
      .filter((l) => l.kind === 'identify')
      .map((l) => {
        const traits = (l.destination === 'segment' ? l.payload.traits : l.payload.attributes) as Record<string, string | number | boolean | null>;
        return { destination: l.destination, userId: l.userId, traits, hash: stableHashOf(traits) };
      }),
    now,
  );
  await state.recordDeliveries(
    plan.filter((l) => l.kind === 'track').map((l) => ({ destination: l.destination, key: l.key, kind: 'track', userId: l.userId, status: 'sent' as const })),
    now,
  );
  const run = await state.startRun('sync', 'grsf_demo', now);
  await state.finishRun(run, 'succeeded', { sent: plan.length }, now);
  await state.close();
}

let stableHashOf: (value: unknown) => string;
beforeAll(async () => {
  ({ stableHash: stableHashOf } = await import('../../src/model/ids.js'));
});

describe('diff on the bundled fixture (the README quick start)', () => {
  it('prints the summary a person reads at a glance and exits 0', async () => {
    const cwd = tempDir();
    const result = await runCli(['diff', '--file', FIXTURE], { cwd });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('referral-sync diff: what sync would send (dry run)');
    expect(result.stdout).toMatch(/identify\s+new\s+48\s+48/);
    expect(result.stdout).toMatch(/events\s+joined\s+48\s+48/);
    expect(result.stdout).toMatch(/referral made\s+28\s+28/);
    expect(result.stdout).toMatch(/converted\s+22\s+22/);
    expect(result.stdout).toMatch(/champion\s+1\s+█/);
    expect(result.stdout).toMatch(/referral\s+28\s+█+\s+58%/);
    expect(result.stdout).toContain('+ richard.hendricks@example.com (new)  referral_tier=champion');
    expect(result.stdout).toContain('Nothing was sent and the state was not changed.');
    // diff writes no state, not even an empty file
    expect(existsSync(join(cwd, '.referral-sync'))).toBe(false);
  });

  it('writes the exact plan, identical to the reviewed expected plan, on every run', async () => {
    const cwd = tempDir();
    const first = join(cwd, 'plan1.jsonl');
    const second = join(cwd, 'plan2.jsonl');
    expect((await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--out', first], { cwd })).code).toBe(0);
    expect((await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--out', second, '--quiet'], { cwd })).code).toBe(0);
    // The first line is the plan's header (what it was made for, and when: applying it checks that); the
    // operations follow, the same bytes on every run.
    const [header, ...operations] = readFileSync(first, 'utf8').split('\n');
    const bytes = operations.join('\n');
    expect(readFileSync(second, 'utf8').split('\n').slice(1).join('\n')).toBe(bytes);
    expect(JSON.parse(header!)).toMatchObject({ type: 'plan', format: 1, mode: 'sync', program: { source: 'growsurf', id: 'grsf_demo', defaulted: false }, state: { location: join(cwd, '.referral-sync', 'state.db'), lastRunId: null, acknowledged: 0 } });
    // expected-plan.jsonl was produced once and reviewed; any change to ids or payloads shows up here.
    expect(bytes).toBe(readFileSync(EXPECTED_PLAN, 'utf8'));
  });

  it('plans the good rows and reports the bad one with file, line and reason', async () => {
    const cwd = tempDir();
    const result = await runCli(['diff', '--file', FIXTURE, BAD_ROW_FIXTURE, '--json'], { cwd });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as { participants: number; invalid: number; invalidRows: { file: string; line: number; reason: string }[] };
    expect(summary.participants).toBe(50);
    expect(summary.invalid).toBe(1);
    expect(summary.invalidRows).toEqual([
      {
        file: BAD_ROW_FIXTURE,
        line: 3,
        participantId: 'zz02cd',
        reason: 'unparseable date "sometime in June" in column "Created At" (expected epoch ms or s, ISO-8601, or M/D/YYYY h:mm AM)',
        kind: 'unparseable date "…" in column "Created At" (expected epoch ms or s, ISO-8601, or M/D/YYYY h:mm AM)',
      },
    ]);
    const text = await runCli(['diff', '--file', FIXTURE, BAD_ROW_FIXTURE], { cwd });
    expect(text.stdout).toContain(`${BAD_ROW_FIXTURE}:3: unparseable date "sometime in June"`);
  });

  it('--detailed-exitcode exits 2 with changes and 0 once a sync has acknowledged everything', async () => {
    const cwd = tempDir();
    const statePath = join(cwd, 'state.db');
    const planPath = join(cwd, 'plan.jsonl');
    const before = await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--state', statePath, '--out', planPath, '--detailed-exitcode'], { cwd });
    expect(before.code).toBe(2);
    await seedStateFromPlan(statePath, readPlan(planPath));
    const after = await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--state', statePath, '--detailed-exitcode'], { cwd });
    expect(after.code).toBe(0);
    expect(after.stdout).toMatch(/identify\s+new\s+0\s+0/);
    expect(after.stdout).toMatch(/unchanged\s+48\s+48/);
    expect(after.stdout).toMatch(/already sent\s+98\s+98/);
    expect(after.stdout).toContain('No changes: nothing would be sent.');
  });

  it('shows trait changes before → after against the state', async () => {
    const cwd = tempDir();
    const statePath = join(cwd, 'state.db');
    const planPath = join(cwd, 'plan.jsonl');
    const people = [
      { ID: 'r1', Email: 'rita@example.com', 'Referral Count': '4', 'Created At': '2025-01-01' },
      { ID: 'f1', Email: 'fred@example.com', 'Referral Count': '0', 'Created At': '2025-01-02', 'Referred By': 'r1', 'Referral Status': 'CREDIT_PENDING' },
    ];
    const file = writeCsv(cwd, 'export.csv', people);
    await runCli(['diff', '--file', file, '--state', statePath, '--out', planPath], { cwd });
    await seedStateFromPlan(statePath, readPlan(planPath));
    writeCsv(cwd, 'export.csv', [
      { ...people[0]!, 'Referral Count': '5' },
      { ...people[1]!, 'Referral Status': 'CREDIT_AWARDED' },
    ]);
    const result = await runCli(['diff', '--file', file, '--state', statePath], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('~ rita@example.com\n      referral_tier: active → power_referrer\n      referral_count: 4 → 5');
    expect(result.stdout).toContain('~ fred@example.com\n      referral_status: pending → converted');
    expect(result.stdout).toMatch(/tier changed\s+1\s+1/);
    expect(result.stdout).toMatch(/converted\s+1\s+1/);
  });

  it('resolves a referrer given by id as well as by email', async () => {
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [
      { ID: 'r1', Email: 'rita@example.com', 'Referral Count': '2', 'Created At': '2025-01-01' },
      { ID: 'f1', Email: 'fred@example.com', 'Created At': '2025-01-02', 'Referred By': 'r1' },
      { ID: 'f2', Email: 'fay@example.com', 'Created At': '2025-01-03', 'Referred By': 'Rita@Example.com' },
    ]);
    const out = join(cwd, 'plan.jsonl');
    expect((await runCli(['diff', '--file', file, '--out', out, '--to', 'segment'], { cwd })).code).toBe(0);
    const plan = readPlan(out);
    const referredBy = plan.filter((l) => l.kind === 'identify').map((l) => [l.userId, (l.payload.traits as Record<string, unknown>).referred_by]);
    expect(referredBy).toEqual([
      ['rita@example.com', undefined],
      ['fred@example.com', 'rita@example.com'],
      ['fay@example.com', 'rita@example.com'],
    ]);
    const made = plan.filter((l) => l.kind === 'track' && l.payload.event === 'Referral Made').map((l) => l.userId);
    expect(made).toEqual(['rita@example.com', 'rita@example.com']);
  });
});

describe('diff leaves everything as it found it', () => {
  let server: Server;
  let connections = 0;
  let port = 0;
  beforeAll(async () => {
    server = createServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('opens no network connection, even with every credential and endpoint set', async () => {
    const cwd = tempDir();
    const log = join(cwd, 'connections.log');
    const endpoint = `http://127.0.0.1:${port}`;
    const result = await runCli(['diff', '--file', FIXTURE], {
      cwd,
      nodeOptions: ['--import', join(ROOT, 'test', 'support', 'no-network.mjs')],
      env: {
        NO_NETWORK_LOG: log,
        SEGMENT_WRITE_KEY: 'wk_test_0123456789abcdef',
        SEGMENT_HOST: endpoint,
        CUSTOMERIO_SITE_ID: 'site_test',
        CUSTOMERIO_API_KEY: 'cio_test_key_0123456789',
        CUSTOMERIO_TRACK_URL: endpoint,
        GROWSURF_API_KEY: 'gs_test_key_0123456789',
        GROWSURF_API_URL: endpoint,
      },
    });
    expect(result.code).toBe(0);
    expect(existsSync(log)).toBe(false);
    expect(connections).toBe(0);
    for (const secret of ['wk_test_0123456789abcdef', 'cio_test_key_0123456789', 'gs_test_key_0123456789', 'site_test']) {
      expect(result.stdout + result.stderr).not.toContain(secret);
    }
  });

  it('never changes the state file: same bytes, same mtime, no new files beside it', async () => {
    const cwd = tempDir();
    const statePath = join(cwd, 'state', 'state.db');
    const planPath = join(cwd, 'plan.jsonl');
    await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--out', planPath], { cwd });
    const plan = readPlan(planPath);
    await seedStateFromPlan(statePath, plan.slice(0, 100));
    const bytes = readFileSync(statePath);
    const mtime = statSync(statePath).mtimeMs;
    const files = readdirSync(join(cwd, 'state'));
    const result = await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo'], { cwd, env: { REFERRAL_SYNC_STATE: statePath } });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`state    ${statePath}`);
    expect(readFileSync(statePath).equals(bytes)).toBe(true);
    expect(statSync(statePath).mtimeMs).toBe(mtime);
    expect(readdirSync(join(cwd, 'state'))).toEqual(files);
  });

  it('creates state files readable by the owner only', () => {
    const cwd = tempDir();
    const statePath = join(cwd, 'nested', 'state.db');
    openSqliteStateForWriting(statePath).close();
    expect(statSync(statePath).mode & 0o777).toBe(0o600);
  });
});

describe('diff errors', () => {
  it('exits 65 naming the missing column and the aliases tried', async () => {
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [{ ID: 'p1', Name: 'Ann' }]);
    const result = await runCli(['diff', '--file', file], { cwd });
    expect(result.code).toBe(65);
    expect(result.stderr).toContain(`error: ${file} has no email column (looked for "Email", "Email Address", "E-mail", "Participant Email")`);
    expect(result.stdout).toBe('');
  });

  it('exits 64 with the path of a file that does not exist', async () => {
    const cwd = tempDir();
    const result = await runCli(['diff', '--file', 'exports/nope.csv'], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain('error: File not found: exports/nope.csv');
  });

  it('reports a corrupt state file with exit 65 and leaves it untouched', async () => {
    const cwd = tempDir();
    const statePath = join(cwd, 'state.db');
    const garbage = Buffer.from('this is not a database '.repeat(200));
    writeFileSync(statePath, garbage);
    chmodSync(statePath, 0o600);
    const result = await runCli(['diff', '--file', FIXTURE, '--state', statePath], { cwd });
    expect(result.code).toBe(65);
    expect(result.stderr).toContain(`error: State file ${statePath} cannot be read (file is not a database); it was left untouched.`);
    expect(readFileSync(statePath).equals(garbage)).toBe(true);
    const status = await runCli(['status', '--state', statePath], { cwd });
    expect(status.code).toBe(65);
  });

  it('exits 64 on a bad config file, listing each problem', async () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ tiers: { gold: -1 }, colour: 'red' }));
    const result = await runCli(['diff', '--file', FIXTURE], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain('referral-sync.config.json has 2 problems');
    expect(result.stderr).toContain('unknown key "colour"');
  });

  it('exits 64 on an unknown flag and shows help for every command', async () => {
    const cwd = tempDir();
    expect((await runCli(['diff', '--nope'], { cwd })).code).toBe(64);
    for (const command of ['diff', 'status']) {
      const help = await runCli([command, '--help'], { cwd });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: referral-sync ${command}`);
    }
  });
});

describe('status', () => {
  it('says there is no state yet without creating one', async () => {
    const cwd = tempDir();
    const result = await runCli(['status'], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('State: .referral-sync/state.db');
    expect(result.stdout).toContain('No state yet');
    expect(existsSync(join(cwd, '.referral-sync'))).toBe(false);
  });

  it('lists runs and delivery counts', async () => {
    const cwd = tempDir();
    const statePath = join(cwd, 'state.db');
    const planPath = join(cwd, 'plan.jsonl');
    await runCli(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--out', planPath], { cwd });
    await seedStateFromPlan(statePath, readPlan(planPath));
    const result = await runCli(['status', '--state', statePath, '--json'], { cwd });
    expect(result.code).toBe(0);
    const status = JSON.parse(result.stdout) as { identities: unknown[]; deliveries: unknown[]; runs: { command: string; status: string }[] };
    expect(status.identities).toEqual([
      { destination: 'customerio', count: 48 },
      { destination: 'segment', count: 48 },
    ]);
    expect(status.deliveries).toEqual([
      { destination: 'customerio', status: 'sent', count: 98 },
      { destination: 'segment', status: 'sent', count: 98 },
    ]);
    expect(status.runs).toMatchObject([{ command: 'sync', status: 'succeeded' }]);
  });
});
