import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { POSTGRES_SKIP_NOTE, postgresBackend, withPostgres, type StateLocation } from '../support/backends.js';
import { FIXTURES, runCli, tempDir } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const backend = postgresBackend();

let services: Services | undefined;
let state: StateLocation | undefined;
afterEach(async () => {
  await services?.stop();
  await state?.drop();
  services = undefined;
  state = undefined;
});

/** Every row of the state's tables with its row version (xmin, ctid): any insert, update or delete changes it. */
async function fingerprint(schema: string): Promise<string> {
  return withPostgres(async (client) => {
    const tables = await client.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename', [schema]);
    const parts: string[] = [];
    for (const { tablename } of tables.rows) {
      const rows = await client.query<{ v: string | null }>(`SELECT string_agg(xmin::text || ctid::text, ',' ORDER BY ctid) AS v FROM ${schema}.${tablename}`);
      parts.push(`${tablename}=${rows.rows[0]?.v ?? ''}`);
    }
    return parts.join('\n');
  });
}

describe.skipIf(!backend)(`sync with --state postgres:// (${backend ? 'against REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, () => {
  it('delivers the fixture, sends nothing the second time, and diff and status write nothing', async () => {
    services = await startServices();
    state = await backend!.fresh();
    const schema = new URL(state.location).searchParams.get('schema')!;
    const cwd = tempDir();
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo', '--state', state.location];

    const first = await runCli(['sync', ...args], { cwd, env: services.env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/Segment\s+146\s+0\s+0\s+0/);
    expect(first.stdout).toMatch(/Customer\.io\s+146\s+0\s+0\s+0/);
    expect(new Set(services.segment.arrivals).size).toBe(146);
    expect(services.customerio.people.size).toBe(48);

    const sent = services.segment.arrivals.length + services.customerio.eventArrivals.length + services.customerio.identifyArrivals.length;
    const second = await runCli(['sync', ...args], { cwd, env: services.env });
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/Segment\s+0\s+146\s+0\s+0/);
    expect(services.segment.arrivals.length + services.customerio.eventArrivals.length + services.customerio.identifyArrivals.length).toBe(sent);

    const before = await fingerprint(schema);
    const diff = await runCli(['diff', ...args], { cwd, env: services.env });
    expect(diff.code).toBe(0);
    const status = await runCli(['status', '--json', '--state', state.location], { cwd, env: services.env });
    expect(status.code).toBe(0);
    const summary = JSON.parse(status.stdout) as { exists: boolean; runs: { status: string }[]; locks: unknown[]; identities: { count: number }[] };
    expect(summary).toMatchObject({ exists: true, locks: [] });
    expect(summary.runs.map((run) => run.status)).toEqual(['succeeded', 'succeeded']);
    expect(summary.identities.map((row) => row.count)).toEqual([48, 48]);
    expect(await fingerprint(schema)).toBe(before);
    expect(services.segment.arrivals.length + services.customerio.eventArrivals.length + services.customerio.identifyArrivals.length).toBe(sent);
  });
});
