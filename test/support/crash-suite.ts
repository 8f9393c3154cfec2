import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { readDeliveries, type Backend, type StateLocation } from './backends.js';
import { BIN, runCli, runCliInProcess, tempDir, type CliResult } from './cli.js';
import { readPlan } from './plan.js';
import { writeProgram } from './program.js';
import { startServices, type Services } from './services.js';


/** Runs the CLI again until it is not refused with exit 75: a PostgreSQL server may take a moment to end a killed runner's session (and free its advisory lock). Nobody unlocks anything. */
async function runOnceUnlocked(args: string[], options: { cwd: string; env: Record<string, string> }): Promise<CliResult> {
  let result = await runCli(args, options);
  for (let attempt = 0; result.code === ExitCode.locked && attempt < 20; attempt += 1) {
    await new Promise((r) => setTimeout(r, 100));
    result = await runCli(args, options);
  }
  return result;
}

/**
 * The crash cases, the same on every backend. Each backend's run is a test file of its own (crash.test.ts,
 * crash-postgres.test.ts) so that the two run side by side: together in one file they take longer than the rest
 * of the suite.
 */
export function crashSuite(backend: Backend): void {
  let services: Services | undefined;
  const states: StateLocation[] = [];
  afterEach(async () => {
    await services?.stop();
    services = undefined;
    for (const state of states.splice(0)) await state.drop();
  });

  describe(`crash and resume, ${backend.name} state`, () => {
  async function fresh(): Promise<StateLocation> {
    const state = await backend.fresh();
    states.push(state);
    return state;
  }

  it('a backfill killed with SIGKILL and run again delivers every operation once by id, resending nothing acknowledged', async () => {
    const RATES = ['--rate', 'segment=8000,customerio=150'];
    services = await startServices();
    const state = await fresh();
    const cwd = tempDir();
    const file = writeProgram(cwd, 3_000, 21);
    const env = { PATH: process.env.PATH ?? '', CI: 'true', ...services.env };
    const backfill = ['backfill', '--file', file, '--state', state.location, ...RATES];

    const child = spawn(process.execPath, [BIN, ...backfill], { cwd, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // The plan of the same file against an empty state of its own, computed while the backfill runs (the
    // backfill's state fills up meanwhile) rather than before it, in a process of its own.
    const planState = await fresh();
    const planPath = join(tempDir(), 'plan.jsonl');
    expect((await runCli(['diff', '--file', file, '--out', planPath, '--quiet', '--state', planState.location], { cwd, env: services.env })).code).toBe(0);
    const plan = readPlan(planPath);
    const segmentPlanned = plan.filter((l) => l.destination === 'segment');
    // Kill it in the middle: once a third of Segment's messages have arrived.
    while (services.segment.arrivals.length < segmentPlanned.length / 3) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(services.segment.arrivals.length).toBeLessThan(segmentPlanned.length);

    // What the killed run had recorded as acknowledged.
    const { acknowledged, lastRunStatus } = await readDeliveries(state.location);
    expect(lastRunStatus).toBe('running');
    expect(acknowledged.length).toBeGreaterThan(0);
    const segmentArrivedBefore = services.segment.arrivals.length;
    const cioEventsBefore = services.customerio.eventArrivals.length;
    const cioIdentifiesBefore = services.customerio.identifyArrivals.length;

    const resumed = await runOnceUnlocked(backfill, { cwd, env: services.env });
    expect(resumed.stderr).not.toMatch(/error|warning/i);
    expect(resumed.code).toBe(0);

    // Every planned operation arrived, by id.
    const { segment, customerio } = services;
    expect(new Set(segment.arrivals)).toEqual(new Set(segmentPlanned.map((l) => l.payload.messageId as string)));
    const cioEvents = plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string);
    expect(new Set(customerio.eventArrivals)).toEqual(new Set(cioEvents));
    expect(customerio.people.size).toBe(plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').length);

    // Nothing the first run had acknowledged was sent again.
    const sentSegmentIds = new Set(acknowledged.filter((a) => a.destination === 'segment').map((a) => `rs1-${a.key.slice(0, 40)}`));
    const resentSegment = segment.arrivals.slice(segmentArrivedBefore).filter((id) => sentSegmentIds.has(id));
    expect(resentSegment).toEqual([]);
    const planByKey = new Map(plan.map((l) => [`${l.destination}|${l.key}`, l]));
    const sentCioEventIds = new Set(
      acknowledged.filter((a) => a.destination === 'customerio' && a.kind !== 'identify').map((a) => planByKey.get(`customerio|${a.key}`)!.payload.id as string),
    );
    expect(customerio.eventArrivals.slice(cioEventsBefore).filter((id) => sentCioEventIds.has(id))).toEqual([]);
    const identifiedBefore = new Set(acknowledged.filter((a) => a.destination === 'customerio' && a.kind === 'identify').map((a) => `email:${a.userId}`));
    expect(customerio.identifyArrivals.slice(cioIdentifiesBefore).filter((id) => identifiedBefore.has(id))).toEqual([]);

    // Any id that arrived twice was in flight when the process died (never acknowledged), not a resend.
    const seen = new Map<string, number>();
    for (const id of segment.arrivals) seen.set(id, (seen.get(id) ?? 0) + 1);
    for (const [id, count] of seen) if (count > 1) expect(sentSegmentIds.has(id)).toBe(false);

    const status = await runCliInProcess(['status', '--json', '--state', state.location], { cwd });
    const summary = JSON.parse(status.stdout) as { runs: { command: string; status: string }[]; locks: unknown[] };
    expect(summary.runs.map((r) => `${r.command} ${r.status}`)).toEqual(['backfill succeeded', 'backfill crashed']);
    expect(summary.locks).toEqual([]);
  }, 180_000);

  it('a second runner exits 75 at once; a backfill killed with SIGKILL frees the lock, and the next one delivers the rest, resending nothing acknowledged', async () => {
    services = await startServices({ segment: { delayMs: 20 } });
    const state = await fresh();
    const cwd = tempDir();
    const file = writeProgram(cwd, 600, 21);
    const planPath = join(cwd, 'plan.jsonl');
    // The plan against the same fresh state, before the backfill: diff writes nothing.
    expect((await runCli(['diff', '--file', file, '--out', planPath, '--quiet', '--state', state.location], { cwd, env: services.env })).code).toBe(0);
    const plan = readPlan(planPath);
    const segmentPlanned = plan.filter((l) => l.destination === 'segment');

    // Slow enough (about 8 s for Segment) that the second runner's check and the kill land mid-run on a loaded machine.
    const backfill = ['backfill', '--file', file, '--state', state.location];
    const env = { PATH: process.env.PATH ?? '', CI: 'true', ...services.env };
    const child = spawn(process.execPath, [BIN, ...backfill, '--rate', 'segment=200,customerio=200'], { cwd, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    while (services.segment.arrivals.length < segmentPlanned.length / 4) await new Promise((r) => setTimeout(r, 10));

    // Another process, while the first runs: SQLite finds the lock row of a live pid, PostgreSQL a held advisory lock.
    const started = performance.now();
    const second = await runCli(['sync', '--file', file, '--state', state.location], { cwd, env: services.env });
    expect(second.code).toBe(ExitCode.locked);
    expect(second.stderr).toMatch(/Another run holds the lock on program .* \(backfill, pid \d+ on /);
    // Generous (the exit code already says it did not wait for the lock): a busy machine starts a process slowly.
    expect(performance.now() - started).toBeLessThan(30_000);

    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(services.segment.arrivals.length).toBeLessThan(segmentPlanned.length);
    const { acknowledged } = await readDeliveries(state.location);
    expect(acknowledged.length).toBeGreaterThan(0);
    const arrivedBefore = services.segment.arrivals.length;

    // No unlock: SQLite's lock row names a pid that is gone, and PostgreSQL ended the killed runner's session,
    // and its advisory lock with it.
    const resumed = await runOnceUnlocked([...backfill, '--rate', 'segment=1500,customerio=1000'], { cwd, env: services.env });
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
}
