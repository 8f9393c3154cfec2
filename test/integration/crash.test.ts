import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, runCli, runCliInProcess, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';
import type { PlanLine } from '../support/plan.js';


let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

const RATES = ['--rate', 'segment=8000,customerio=150'];

describe('crash and resume', () => {
  it('a backfill killed with SIGKILL and run again delivers every operation once by id, resending nothing acknowledged', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeProgram(cwd, 20_000, 21);
    const env = { PATH: process.env.PATH ?? '', CI: 'true', ...services.env };

    const child = spawn(process.execPath, [BIN, 'backfill', '--file', file, ...RATES], { cwd, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // The plan of the same file against the same empty state, computed while the backfill runs (in a directory of
    // its own: the backfill's state fills up meanwhile) rather than before it, in a process of its own.
    const planDir = tempDir();
    const planPath = join(planDir, 'plan.jsonl');
    expect((await runCli(['diff', '--file', file, '--out', planPath, '--quiet'], { cwd: planDir, env: services.env })).code).toBe(0);
    const plan = readFileSync(planPath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as PlanLine);
    const segmentPlanned = plan.filter((l) => l.destination === 'segment');
    // Kill it in the middle: once a third of Segment's messages have arrived.
    while (services.segment.arrivals.length < segmentPlanned.length / 3) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    expect(services.segment.arrivals.length).toBeLessThan(segmentPlanned.length);

    // What the killed run had recorded as acknowledged.
    const db = new Database(join(cwd, '.referral-sync', 'state.db'), { readonly: true });
    const acknowledged = db.prepare(`SELECT destination, key, kind, user_id AS userId FROM deliveries WHERE status = 'sent'`).all() as {
      destination: string;
      key: string;
      kind: string;
      userId: string;
    }[];
    const run = db.prepare(`SELECT status FROM runs ORDER BY id DESC LIMIT 1`).get() as { status: string };
    db.close();
    expect(run.status).toBe('running');
    expect(acknowledged.length).toBeGreaterThan(0);
    const segmentArrivedBefore = services.segment.arrivals.length;
    const cioEventsBefore = services.customerio.eventArrivals.length;
    const cioIdentifiesBefore = services.customerio.identifyArrivals.length;

    const resumed = await runCli(['backfill', '--file', file, ...RATES], { cwd, env: services.env });
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

    const status = await runCliInProcess(['status', '--json'], { cwd });
    const runs = (JSON.parse(status.stdout) as { runs: { command: string; status: string }[] }).runs;
    expect(runs.map((r) => `${r.command} ${r.status}`)).toEqual(['backfill succeeded', 'backfill crashed']);
  }, 180_000);
});
