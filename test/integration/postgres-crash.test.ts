import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { POSTGRES_SKIP_NOTE, postgresBackend, withPostgres, type StateLocation } from '../support/backends.js';
import { BIN, runCli, tempDir } from '../support/cli.js';
import type { PlanLine } from '../support/plan.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';

const backend = postgresBackend();
const RATES = ['--rate', 'segment=1500,customerio=1000'];

let services: Services | undefined;
let state: StateLocation | undefined;
afterEach(async () => {
  await services?.stop();
  await state?.drop();
  services = undefined;
  state = undefined;
});

describe.skipIf(!backend)(`a PostgreSQL state under a crash (${backend ? 'against REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, () => {
  it('a second runner exits 75 at once; a backfill killed with SIGKILL frees the lock, and the next one delivers the rest, resending nothing acknowledged', async () => {
    services = await startServices({ segment: { delayMs: 20 } });
    state = await backend!.fresh();
    const schema = new URL(state.location).searchParams.get('schema')!;
    const cwd = tempDir();
    const file = writeProgram(cwd, 600, 21);
    const planPath = join(cwd, 'plan.jsonl');
    expect((await runCli(['diff', '--file', file, '--out', planPath, '--quiet'], { cwd, env: services.env })).code).toBe(0);
    const plan = readFileSync(planPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as PlanLine);
    const segmentPlanned = plan.filter((l) => l.destination === 'segment');

    // Slow enough (about 8 s for Segment) that the second runner's check and the kill land mid-run on a loaded machine.
    const backfill = ['backfill', '--file', file, '--state', state.location];
    const args = [...backfill, '--rate', 'segment=200,customerio=200'];
    const env = { PATH: process.env.PATH ?? '', CI: 'true', ...services.env };
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    while (services.segment.arrivals.length < segmentPlanned.length / 4) await new Promise((r) => setTimeout(r, 10));

    const started = performance.now();
    const second = await runCli(['sync', '--file', file, '--state', state.location], { cwd, env: services.env });
    expect(second.code).toBe(ExitCode.locked);
    expect(second.stderr).toMatch(/Another run holds the lock on program .* \(backfill, pid \d+ on /);
    expect(performance.now() - started).toBeLessThan(5_000);

    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(services.segment.arrivals.length).toBeLessThan(segmentPlanned.length);
    const acknowledged = await withPostgres(
      async (client) => (await client.query<{ destination: string; key: string }>(`SELECT destination, key FROM ${schema}.deliveries WHERE status = 'sent'`)).rows,
    );
    expect(acknowledged.length).toBeGreaterThan(0);
    const arrivedBefore = services.segment.arrivals.length;

    // No unlock: the server ended the killed runner's session, and its advisory lock with it.
    let resumed = await runCli([...backfill, ...RATES], { cwd, env: services.env });
    for (let attempt = 0; resumed.code === ExitCode.locked && attempt < 20; attempt += 1) {
      await new Promise((r) => setTimeout(r, 100));
      resumed = await runCli([...backfill, ...RATES], { cwd, env: services.env });
    }
    expect(resumed.stderr).not.toMatch(/error|warning/i);
    expect(resumed.code).toBe(0);
    expect(new Set(services.segment.arrivals)).toEqual(new Set(segmentPlanned.map((l) => l.payload.messageId as string)));
    const sentIds = new Set(acknowledged.filter((a) => a.destination === 'segment').map((a) => `rs1-${a.key.slice(0, 40)}`));
    expect(services.segment.arrivals.slice(arrivedBefore).filter((id) => sentIds.has(id))).toEqual([]);

    const status = await runCli(['status', '--json', '--state', state.location], { cwd });
    const summary = JSON.parse(status.stdout) as { runs: { command: string; status: string }[]; locks: unknown[] };
    expect(summary.runs.map((r) => `${r.command} ${r.status}`)).toEqual(['backfill succeeded', 'backfill crashed']);
    expect(summary.locks).toEqual([]);
  }, 60_000);
});
