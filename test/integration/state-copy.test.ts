import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { POSTGRES_SKIP_NOTE, postgresBackend, type StateLocation } from '../support/backends.js';
import { FIXTURES, runCliInProcess, tempDir } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const backend = postgresBackend();

let services: Services | undefined;
const dropped: StateLocation[] = [];
afterEach(async () => {
  await services?.stop();
  services = undefined;
  for (const state of dropped.splice(0)) await state.drop();
});

function sentSoFar(s: Services): number {
  return s.segment.arrivals.length + s.customerio.eventArrivals.length + s.customerio.identifyArrivals.length;
}

interface CopyJson {
  command: string;
  outcome: string;
  exitCode: number;
  counts: { source: { tables: Record<string, number> }; target: { tables: Record<string, number> } };
}

describe('state copy', () => {
  it('refuses a missing source and a non-empty target (exit 64)', async () => {
    const cwd = tempDir();
    const missing = await runCliInProcess(['state', 'copy', '--from', join(cwd, 'nope.db'), '--to', join(cwd, 'to.db')], { cwd });
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain('There is no state at');
    expect(existsSync(join(cwd, 'to.db'))).toBe(false);

    services = await startServices();
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo', '--to', 'segment'];
    expect((await runCliInProcess(['sync', ...args, '--state', 'a.db'], { cwd, env: services.env })).code).toBe(0);
    expect((await runCliInProcess(['sync', ...args, '--state', 'b.db'], { cwd, env: services.env })).code).toBe(0);
    const full = await runCliInProcess(['state', 'copy', '--from', 'a.db', '--to', 'b.db'], { cwd });
    expect(full.code).toBe(64);
    expect(full.stderr).toContain('already holds a state');
  }, 30_000);

  it.skipIf(!backend)(`SQLite -> PostgreSQL -> SQLite: sync then sends nothing and retry resends the failed one (${backend ? 'PostgreSQL' : POSTGRES_SKIP_NOTE})`, async () => {
    services = await startServices();
    const cwd = tempDir();
    let bad: string | undefined;
    services.segment.rejectMessage = (m) => {
      if (m.type !== 'identify') return undefined;
      bad ??= m.userId;
      return m.userId === bad ? 400 : undefined;
    };
    const args = ['--file', FIXTURE, '--campaign', 'grsf_demo'];
    const first = await runCliInProcess(['sync', ...args, '--state', 'local.db'], { cwd, env: services.env });
    expect(first.code).toBe(1);
    services.segment.rejectMessage = undefined;

    const pg = await backend!.fresh();
    dropped.push(pg);
    const copy = await runCliInProcess(['state', 'copy', '--from', 'local.db', '--to', pg.location, '--log-format', 'json'], { cwd });
    expect(copy.code).toBe(0);
    const report = JSON.parse(copy.stdout) as CopyJson;
    expect(report).toMatchObject({ command: 'state copy', outcome: 'done', exitCode: 0 });
    expect(report.counts.target.tables).toEqual(report.counts.source.tables);
    expect(report.counts.source.tables.deliveries).toBeGreaterThan(0);
    expect(report.counts.source.tables.runs).toBe(1);

    const sent = sentSoFar(services);
    const again = await runCliInProcess(['sync', ...args, '--state', pg.location], { cwd, env: services.env });
    expect(again.stderr).not.toContain('error');
    expect(sentSoFar(services)).toBe(sent);

    // Copied back into a fresh SQLite file, before retry: the failed delivery is still there, nothing else to send.
    const text = await runCliInProcess(['state', 'copy', '--from', pg.location, '--to', 'back.db'], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout.trim().split('\n').at(-1)).toMatch(/^state copy: copied .* every count matches\.$/);
    expect(text.stdout).toMatch(/deliveries segment\/dead: 1 -> 1|deliveries segment\/failed: 1 -> 1/);
    await runCliInProcess(['sync', ...args, '--state', 'back.db'], { cwd, env: services.env });
    expect(sentSoFar(services)).toBe(sent);

    expect(services.segment.identifies().filter((m) => m.userId === bad)).toHaveLength(0);
    const retry = await runCliInProcess(['retry', '--campaign', 'grsf_demo', '--state', pg.location], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    expect(services.segment.identifies().filter((m) => m.userId === bad).length).toBeGreaterThan(0);
  }, 60_000);
});
