import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { backends, type StateLocation } from '../support/backends.js';
import { BIN, runCliInProcess, tempDir, type CliResult } from '../support/cli.js';
import { readPlan } from '../support/plan.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Issue 19, point 8: after a run killed part-way, `sync --dry-run` / `backfill --dry-run` list exactly what the
 * following real run sends, per destination: what the killed run left queued (the real run takes it back and plans
 * it again) and what it acknowledged (a backfill resumes the unfinished one: who it re-identified is not again).
 */

let services: Services | undefined;
const states: StateLocation[] = [];
afterEach(async () => {
  await services?.stop();
  services = undefined;
  for (const state of states.splice(0)) await state.drop();
});

/** A killed runner's PostgreSQL session may take a moment to end (and free its advisory lock): run again on 75. */
async function runUnlocked(args: string[], options: { cwd: string; env: Record<string, string> }): Promise<CliResult> {
  let result = await runCliInProcess(args, options);
  for (let attempt = 0; result.code === ExitCode.locked && attempt < 20; attempt += 1) {
    await new Promise((r) => setTimeout(r, 100));
    result = await runCliInProcess(args, options);
  }
  return result;
}

describe.each(backends())('$name state', (backend) => {
  it.each(['backfill', 'sync'] as const)('--dry-run after a killed %s lists, per destination, exactly the ids the real run then sends', async (command) => {
    // Segment slow, Customer.io fast: when the run is killed, Customer.io has much more of it than Segment.
    services = await startServices({ segment: { delayMs: 20 } });
    const state = await backend.fresh();
    states.push(state);
    const cwd = tempDir();
    const file = writeProgram(cwd, 400, 23);
    const at = ['--file', file, '--state', state.location];
    const env = { PATH: process.env.PATH ?? '', CI: 'true', ...services.env };

    const child = spawn(process.execPath, [BIN, command, ...at, '--rate', 'segment=150,customerio=2000'], { cwd, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    while (services.segment.arrivals.length < 200 && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(services.segment.arrivals.length).toBeGreaterThan(0);
    expect(services.customerio.identifyArrivals.length).toBeGreaterThan(0);

    const out = join(cwd, 'plan.jsonl');
    const dry = await runCliInProcess([command, '--dry-run', ...at, '--out', out, '--quiet'], { cwd, env: services.env });
    expect(dry.code).toBe(0);
    const plan = readPlan(out);

    const before = { segment: services.segment.arrivals.length, identifies: services.customerio.identifyArrivals.length, events: services.customerio.eventArrivals.length };
    const real = await runUnlocked([command, ...at], { cwd, env: services.env });
    expect(real.stderr).not.toMatch(/error|warning/i);
    expect(real.code).toBe(0);

    const sent = {
      segment: services.segment.arrivals.slice(before.segment).sort(),
      identifies: services.customerio.identifyArrivals.slice(before.identifies).sort(),
      events: services.customerio.eventArrivals.slice(before.events).sort(),
    };
    const listed = {
      segment: plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string).sort(),
      identifies: plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').map((l) => `email:${l.userId}`).sort(),
      events: plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string).sort(),
    };
    expect(sent).toEqual(listed);
    // Part of the history was acknowledged already: the dry run does not list everything again.
    expect(listed.segment.length + listed.identifies.length + listed.events.length).toBeLessThan(before.segment + before.identifies + before.events + sent.segment.length + sent.identifies.length + sent.events.length);
  }, 120_000);
});
