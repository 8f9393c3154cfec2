import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import type { Operation } from '../../src/plan/types.js';
import { openState } from '../../src/state/open.js';
import { PG_MIGRATIONS } from '../../src/state/postgres/schema.js';
import { MIGRATIONS } from '../../src/state/sqlite/schema.js';
import { backends, postgresBackend, POSTGRES_SKIP_NOTE, withPostgres, type StateLocation } from '../support/backends.js';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { readPlan, type PlanLine } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

/**
 * The campaign guard (issue 19, point 1), end to end against the fakes: a history load (a backfill, or the first
 * sync into Customer.io) sends Customer.io events under 72 hours old only as the user decides.
 */

const HOUR = 3_600_000;
const ago = (ms: number): string => new Date(Date.now() - ms).toISOString();

/**
 * Old history (2025) and four recent Customer.io events: c joined 2 h ago (and so Referral Made for a), d joined
 * 30 h ago, e converted 5 h ago. f joined 80 h ago: outside the window.
 */
function program(cwd: string, extra: Record<string, string>[] = []): string {
  return writeCsv(cwd, 'program.csv', [
    { ID: 'a', Email: 'ann@example.com', 'Created At': '2025-01-01T10:00:00Z', 'Referral Count': '1' },
    { ID: 'b', Email: 'bob@example.com', 'Referred By': 'a', 'Referral Status': 'CREDIT_AWARDED', 'Created At': '2025-01-02T10:00:00Z', 'Converted At': '2025-01-03T10:00:00Z' },
    { ID: 'c', Email: 'cat@example.com', 'Referred By': 'a', 'Referral Status': 'CREDIT_PENDING', 'Created At': ago(2 * HOUR) },
    { ID: 'd', Email: 'dan@example.com', 'Created At': ago(30 * HOUR) },
    { ID: 'e', Email: 'eve@example.com', 'Referred By': 'a', 'Referral Status': 'CREDIT_AWARDED', 'Created At': '2025-02-01T10:00:00Z', 'Converted At': ago(5 * HOUR) },
    { ID: 'f', Email: 'fay@example.com', 'Created At': ago(80 * HOUR) },
    ...extra,
  ]);
}

let services: Services | undefined;
const states: StateLocation[] = [];
afterEach(async () => {
  await services?.stop();
  services = undefined;
  for (const state of states.splice(0)) await state.drop();
});

/** Every id the fakes received, per destination (Customer.io identifies by identifier). */
function received(s: Services): { segment: string[]; cioEvents: string[]; cioIdentifies: string[] } {
  return { segment: [...s.segment.arrivals], cioEvents: [...s.customerio.eventArrivals], cioIdentifies: [...s.customerio.identifyArrivals] };
}

/** The plan a run would send, by destination, with the Customer.io events under 72 hours old picked out. */
function idsOf(plan: PlanLine[]): { segment: string[]; cioEvents: string[]; cioRecent: string[]; cioOld: string[]; cioIdentifies: string[] } {
  const cioEvents = plan.filter((l) => l.destination === 'customerio' && l.kind === 'track');
  const recent = (l: PlanLine): boolean => Date.now() / 1000 - (l.payload.timestamp as number) < 72 * 3600;
  return {
    segment: plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string).sort(),
    cioEvents: cioEvents.map((l) => l.payload.id as string).sort(),
    cioRecent: cioEvents.filter(recent).map((l) => l.payload.id as string).sort(),
    cioOld: cioEvents.filter((l) => !recent(l)).map((l) => l.payload.id as string).sort(),
    cioIdentifies: plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').map((l) => `email:${l.userId}`).sort(),
  };
}

describe.each(backends())('$name state', (backend) => {
  async function setUp(): Promise<{ cwd: string; file: string; env: Record<string, string>; at: string[]; plan: ReturnType<typeof idsOf> }> {
    services = await startServices();
    const state = await backend.fresh();
    states.push(state);
    const cwd = tempDir();
    const file = program(cwd);
    const at = ['--state', state.location, '--campaign', 'p1'];
    const out = join(cwd, 'all.jsonl');
    expect((await runCliInProcess(['diff', '--file', file, ...at, '--recent-events', 'send', '--out', out, '--quiet'], { cwd, env: services.env })).code).toBe(0);
    const plan = idsOf(readPlan(out));
    // The data holds what the cases need: four recent Customer.io events among older ones.
    expect(plan.cioRecent).toHaveLength(4);
    expect(plan.cioOld.length).toBeGreaterThan(0);
    return { cwd, file, env: services.env, at, plan };
  }

  describe.each(['backfill', 'sync'] as const)('a first %s with recent events', (command) => {
    it('stops without a terminal and without a decision: exit 64, the count and the flag named, nothing sent (no identify either), nothing sent later by retry', async () => {
      const { cwd, file, env, at, plan } = await setUp();
      const result = await runCliInProcess([command, '--file', file, ...at], { cwd, env });
      expect(result.code).toBe(ExitCode.usage);
      expect(result.stderr).toMatch(/error: 4 Customer\.io events of (a backfill|the first load of this program into Customer\.io) are timestamped within the last 72 hours and could trigger campaigns; nothing was sent\. Decide with --recent-events send\|skip\|hold\./);
      expect(result.stderr).toContain('cat@example.com');
      expect(received(services!)).toEqual({ segment: [], cioEvents: [], cioIdentifies: [] });
      // The stop leaves the state as it was: no run, no program recorded under these credentials, nothing held.
      const status = await runCliInProcess(['status', '--state', at[1]!, '--json'], { cwd, env });
      const written = JSON.parse(status.stdout) as { runs: unknown[]; deliveries: unknown[]; credentials?: { delivered: unknown[] } };
      expect({ runs: written.runs, deliveries: written.deliveries, delivered: written.credentials?.delivered ?? [] }).toEqual({ runs: [], deliveries: [], delivered: [] });

      // What the stopped run queued is not sent by surprise: retry finds nothing to send.
      const retry = await runCliInProcess(['retry', '--state', at[1]!], { cwd, env });
      expect(retry.code).toBe(0);
      expect(received(services!)).toEqual({ segment: [], cioEvents: [], cioIdentifies: [] });

      // The next run is still a first load, guarded the same way; with a decision it sends everything, once.
      const again = await runCliInProcess([command, '--file', file, ...at], { cwd, env });
      expect(again.code).toBe(ExitCode.usage);
      expect(received(services!).segment).toEqual([]);
      const sent = await runCliInProcess([command, '--file', file, ...at, '--recent-events', 'send'], { cwd, env });
      expect(sent.stderr).not.toMatch(/error|warning/);
      expect(sent.code).toBe(0);
      const got = received(services!);
      expect(got.segment.sort()).toEqual(plan.segment);
      expect(got.cioEvents.sort()).toEqual(plan.cioEvents);
      expect(got.cioIdentifies.sort()).toEqual(plan.cioIdentifies);
    });
  });

  it.each([
    { decision: 'send', cio: (p: ReturnType<typeof idsOf>) => p.cioEvents },
    { decision: 'skip', cio: (p: ReturnType<typeof idsOf>) => p.cioOld },
    { decision: 'hold', cio: (p: ReturnType<typeof idsOf>) => p.cioOld },
  ] as const)('a first backfill with --recent-events $decision sends exactly that: Segment everything, Customer.io its events as decided', async ({ decision, cio }) => {
    const { cwd, file, env, at, plan } = await setUp();
    // The dry run shows the same decision and lists what the run then sends.
    const out = join(cwd, 'dry.jsonl');
    const dry = await runCliInProcess(['backfill', '--dry-run', '--file', file, ...at, '--recent-events', decision, '--out', out], { cwd, env });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/! 4 Customer\.io events of a backfill are timestamped within the last 72 hours and could trigger campaigns, for example:/);
    expect(dry.stdout).toMatch(new RegExp(`backfill (sends|skips|holds) them.*\\(--recent-events ${decision}\\)`));
    const result = await runCliInProcess(['backfill', '--file', file, ...at, '--recent-events', decision], { cwd, env });
    expect(result.code).toBe(0);
    const got = received(services!);
    expect(got.segment.sort()).toEqual(plan.segment);
    expect(got.cioEvents.sort()).toEqual(cio(plan));
    expect(got.cioIdentifies.sort()).toEqual(plan.cioIdentifies);
    expect(idsOf(readPlan(out)).cioEvents).toEqual(cio(plan));
    if (decision !== 'send') expect(result.stderr).toMatch(new RegExp(`4 ${decision === 'skip' ? 'skipped for good' : 'held'}`));
  });

  it('skip: a later sync, a later backfill with --recent-events send, and backfill --resend never send the skipped events', async () => {
    const { cwd, file, env, at, plan } = await setUp();
    expect((await runCliInProcess(['backfill', '--file', file, ...at, '--recent-events', 'skip'], { cwd, env })).code).toBe(0);
    for (const args of [['sync'], ['sync', '--recent-events', 'send'], ['backfill', '--recent-events', 'send'], ['backfill', '--resend', '--recent-events', 'send']]) {
      const result = await runCliInProcess([...args, '--file', file, ...at], { cwd, env });
      expect(result.code).toBe(0);
    }
    const events = received(services!).cioEvents;
    for (const id of plan.cioRecent) expect(events).not.toContain(id);
  });

  it('hold: status shows them, a later sync keeps them held, a sync with --recent-events send sends each exactly once', async () => {
    const { cwd, file, env, at, plan } = await setUp();
    expect((await runCliInProcess(['backfill', '--file', file, ...at, '--recent-events', 'hold'], { cwd, env })).code).toBe(0);
    const status = await runCliInProcess(['status', '--state', at[1]!], { cwd, env });
    expect(status.stdout).toMatch(/customerio\s+held\s+4/);
    expect(status.stdout).toContain('4 recent events held from campaigns: `sync --recent-events send` sends them');

    // An incremental sync (Customer.io has acknowledged this program) does not send them, and asks nothing.
    const sync = await runCliInProcess(['sync', '--file', file, ...at], { cwd, env });
    expect(sync.code).toBe(0);
    expect(received(services!).cioEvents.filter((id) => plan.cioRecent.includes(id))).toEqual([]);
    const diff = await runCliInProcess(['diff', '--file', file, ...at], { cwd, env });
    expect(diff.stdout).toContain('sync keeps them held: they were held by an earlier run (--recent-events send sends them).');

    const send = await runCliInProcess(['sync', '--file', file, ...at, '--recent-events', 'send'], { cwd, env });
    expect(send.code).toBe(0);
    expect(send.stderr).toBe('');
    const again = await runCliInProcess(['sync', '--file', file, ...at, '--recent-events', 'send'], { cwd, env });
    expect(again.code).toBe(0);
    const events = received(services!).cioEvents;
    expect(events.sort()).toEqual(plan.cioEvents);
    const statusAfter = await runCliInProcess(['status', '--state', at[1]!], { cwd, env });
    expect(statusAfter.stdout).not.toMatch(/held/);
  });

  it('a plan made with --recent-events send, applied without a decision, stops before the run is recorded: applied with it, it sends once', async () => {
    const { cwd, file, env, at, plan } = await setUp();
    const out = join(cwd, 'reviewed.jsonl');
    expect((await runCliInProcess(['backfill', '--dry-run', '--file', file, ...at, '--recent-events', 'send', '--out', out], { cwd, env })).code).toBe(0);
    const undecided = await runCliInProcess(['backfill', '--plan', out, '--state', at[1]!], { cwd, env });
    expect(undecided.code).toBe(ExitCode.usage);
    expect(undecided.stderr).toMatch(/--recent-events send\|skip\|hold/);
    expect(received(services!)).toEqual({ segment: [], cioEvents: [], cioIdentifies: [] });
    const applied = await runCliInProcess(['backfill', '--plan', out, '--state', at[1]!, '--recent-events', 'send'], { cwd, env });
    expect(applied.stderr).not.toMatch(/moved/);
    expect(applied.code).toBe(0);
    expect(received(services!).cioEvents.sort()).toEqual(plan.cioEvents);
    expect(received(services!).segment.sort()).toEqual(plan.segment);
  });

  it('a pilot loads no history: the whole sync after it is still guarded for everyone the pilot left', async () => {
    const { cwd, file, env, at, plan } = await setUp();
    // The pilot sends ann as decided (her Referral Made for cat is recent) and decides nothing for the others.
    const pilot = await runCliInProcess(['sync', '--file', file, ...at, '--only', 'ann@example.com', '--recent-events', 'send'], { cwd, env });
    expect(pilot.code).toBe(0);
    const piloted = received(services!).cioEvents.filter((id) => plan.cioRecent.includes(id));
    expect(piloted.length).toBe(1);
    const sync = await runCliInProcess(['sync', '--file', file, ...at], { cwd, env });
    expect(sync.code).toBe(64);
    expect(sync.stderr).toMatch(/--recent-events/);
    expect(received(services!).cioEvents.filter((id) => plan.cioRecent.includes(id))).toEqual(piloted);
  });

  it.each(['skip', 'hold'] as const)('a plan made with --recent-events %s records them so when applied: a later sync does not take them for new', async (decision) => {
    const { cwd, file, env, at, plan } = await setUp();
    const out = join(cwd, 'reviewed.jsonl');
    expect((await runCliInProcess(['backfill', '--dry-run', '--file', file, ...at, '--recent-events', decision, '--out', out], { cwd, env })).code).toBe(0);
    // The withheld events are in the file as such, not among its operations.
    expect(idsOf(readPlan(out)).cioEvents).toEqual(plan.cioOld);
    const applied = await runCliInProcess(['backfill', '--plan', out, '--state', at[1]!], { cwd, env });
    expect(applied.code).toBe(0);
    const sync = await runCliInProcess(['sync', '--file', file, ...at], { cwd, env });
    expect(sync.code).toBe(0);
    expect(received(services!).cioEvents.sort()).toEqual(plan.cioOld);
    const status = await runCliInProcess(['status', '--state', at[1]!], { cwd, env });
    if (decision === 'hold') expect(status.stdout).toMatch(/held/);
  });

  it('an incremental sync after the first load sends new recent events without asking and without a decision', async () => {
    const { cwd, file, env, at } = await setUp();
    expect((await runCliInProcess(['backfill', '--file', file, ...at, '--recent-events', 'skip'], { cwd, env })).code).toBe(0);
    const before = received(services!).cioEvents.length;
    program(cwd, [{ ID: 'g', Email: 'gus@example.com', 'Referred By': 'a', 'Referral Status': 'CREDIT_PENDING', 'Created At': ago(HOUR) }]);
    const sync = await runCliInProcess(['sync', '--file', file, ...at], { cwd, env });
    expect(sync.code).toBe(0);
    expect(sync.stderr).toBe('');
    // gus joined, and Referral Made for ann: both recent, both sent.
    expect(received(services!).cioEvents.length - before).toBe(2);
    expect(services!.customerio.people.has('email:gus@example.com')).toBe(true);
  });

  it('the first load is per destination: Segment with history and Customer.io new is guarded for Customer.io, and stops before sending to either', async () => {
    const { cwd, file, env, at, plan } = await setUp();
    expect((await runCliInProcess(['sync', '--to', 'segment', '--file', file, ...at], { cwd, env })).code).toBe(0);
    expect(received(services!).segment.sort()).toEqual(plan.segment);
    const arrived = services!.segment.arrivals.length;
    program(cwd, [{ ID: 'g', Email: 'gus@example.com', 'Created At': '2025-03-01T10:00:00Z' }]);
    const both = await runCliInProcess(['sync', '--file', file, ...at], { cwd, env });
    expect(both.code).toBe(ExitCode.usage);
    expect(both.stderr).toContain('of the first load of this program into Customer.io');
    expect(services!.segment.arrivals.length).toBe(arrived);
    expect(received(services!).cioIdentifies).toEqual([]);
  });

  it('the config\'s "recentEvents" is the default; the flag wins over it', async () => {
    const { cwd, file, env, at, plan } = await setUp();
    writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ recentEvents: 'hold' }));
    const held = await runCliInProcess(['backfill', '--file', file, ...at], { cwd, env });
    expect(held.code).toBe(0);
    expect(received(services!).cioEvents.sort()).toEqual(plan.cioOld);
    const sent = await runCliInProcess(['backfill', '--file', file, ...at, '--recent-events', 'send'], { cwd, env });
    expect(sent.code).toBe(0);
    expect([...new Set(received(services!).cioEvents)].sort()).toEqual(plan.cioEvents);
    writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ recentEvents: 'later' }));
    const bad = await runCliInProcess(['diff', '--file', file, ...at], { cwd, env });
    expect(bad.code).toBe(ExitCode.usage);
    expect(bad.stderr).toMatch(/"recentEvents" must be "send", "skip", "hold"/);
  });

  describe('on a terminal', () => {
    it.each([
      { typed: 'send\n', decision: 'send' },
      { typed: 'skip\n', decision: 'skip' },
      { typed: 'hold\n', decision: 'hold' },
      { typed: 'h\n', decision: 'hold' },
      { typed: 'later\nskip\n', decision: 'skip' },
    ] as const)('asks once, with the count and examples, and applies the answer ($typed)', async ({ typed, decision }) => {
      const { cwd, file, env, at, plan } = await setUp();
      const input = new PassThrough();
      input.end(typed);
      const result = await runCliInProcess(['backfill', '--file', file, ...at, '--no-progress'], { cwd, env: { ...env, CI: 'false' }, terminal: { input } });
      expect(result.code).toBe(0);
      expect(result.stderr.match(/What should this run do with them\? \[send\/skip\/hold\]/g)).toHaveLength(1);
      expect(result.stderr).toMatch(/4 Customer\.io events of a backfill are timestamped within the last 72 hours and could trigger campaigns, for example:\n {2}\S+@example\.com {2}referral_\w+ {2}\d{4}-/);
      const got = received(services!);
      expect(got.cioEvents.sort()).toEqual(decision === 'send' ? plan.cioEvents : plan.cioOld);
      expect(got.segment.sort()).toEqual(plan.segment);
    });

    it('an answer that never comes (end of input) stops with exit 64 and sends nothing', async () => {
      const { cwd, file, env, at } = await setUp();
      const input = new PassThrough();
      input.end();
      const result = await runCliInProcess(['backfill', '--file', file, ...at, '--no-progress'], { cwd, env: { ...env, CI: 'false' }, terminal: { input } });
      expect(result.code).toBe(ExitCode.usage);
      expect(received(services!)).toEqual({ segment: [], cioEvents: [], cioIdentifies: [] });
    });

    it('asks nothing with a decision, under CI, or with --log-format json', async () => {
      const { cwd, file, env, at } = await setUp();
      for (const [extra, environment, code] of [
        [['--recent-events', 'hold'], { CI: 'false' }, 0],
        [[], { CI: 'true' }, ExitCode.usage],
        [['--log-format', 'json'], { CI: 'false' }, ExitCode.usage],
      ] as const) {
        const input = new PassThrough();
        const result = await runCliInProcess(['backfill', '--file', file, ...at, '--no-progress', ...extra], { cwd, env: { ...env, ...environment }, terminal: { input } });
        expect(result.code).toBe(code);
        expect(result.stderr).not.toContain('What should this run do');
      }
    });
  });
});

describe('a state an older version wrote', () => {
  const row = {
    destination: 'customerio', key: 'k1', kind: 'joined', user_id: 'ann@x', status: 'failed', attempts: 2, last_error: 'HTTP 503',
    payload: '{"kind":"track"}', run_id: 3, created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-02T00:00:00Z', program_id: 'p1', seq: 7,
  };

  it('SQLite: migrates with every ledger column intact, and the ledger then takes held and skipped rows', async () => {
    const path = join(tempDir(), 'state.db');
    const db = new Database(path);
    // The schema just before the migration that brought held and skipped (later ones come after it).
    const before = MIGRATIONS.findIndex((sql) => sql.includes("'held', 'skipped'"));
    expect(before).toBeGreaterThan(0);
    for (let index = 0; index < before; index += 1) db.exec(MIGRATIONS[index]!);
    db.pragma(`user_version = ${before}`);
    db.prepare(`INSERT INTO deliveries (${Object.keys(row).join(', ')}) VALUES (${Object.keys(row).map(() => '?').join(', ')})`).run(...Object.values(row));
    expect(() => db.prepare(`UPDATE deliveries SET status = 'held'`).run()).toThrow(/CHECK constraint/);
    db.close();
    const state = await openState(path, { mode: 'write' });
    try {
      await state.queue('p1').setAside([{ destination: 'customerio', kind: 'track', event: 'joined', key: 'k2', userId: 'bo@x' } as Operation], 'held', 'held', 4, new Date());
      await state.queue('p1').setAside([{ destination: 'customerio', kind: 'track', event: 'joined', key: 'k3', userId: 'cy@x' } as Operation], 'skipped', 'skipped', 4, new Date());
      expect((await state.deliveryStatuses([{ destination: 'customerio', key: 'k3' }]))[0]?.status).toBe('skipped');
    } finally {
      await state.close();
    }
    const reopened = new Database(path, { readonly: true });
    expect(reopened.prepare(`SELECT * FROM deliveries WHERE key = 'k1'`).get()).toEqual(row);
    expect(reopened.prepare(`SELECT status, run_id, program_id FROM deliveries WHERE key = 'k2'`).get()).toEqual({ status: 'held', run_id: 4, program_id: 'p1' });
    reopened.close();
  });

  const postgres = postgresBackend();
  it.skipIf(!postgres)(`PostgreSQL: the same (${postgres ? 'REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, async () => {
    const location = await postgres!.fresh();
    states.push(location);
    const schema = new URL(location.location).searchParams.get('schema')!;
    const before = PG_MIGRATIONS.findIndex((sql) => sql.includes("'held', 'skipped'"));
    expect(before).toBeGreaterThan(0);
    await withPostgres(async (client) => {
      await client.query(`CREATE SCHEMA ${schema}`);
      await client.query(`SET search_path TO ${schema}`);
      for (let index = 0; index < before; index += 1) await client.query(PG_MIGRATIONS[index]!);
      await client.query('CREATE TABLE schema_version (version integer NOT NULL)');
      await client.query('INSERT INTO schema_version (version) VALUES ($1)', [before]);
      await client.query(`INSERT INTO deliveries (${Object.keys(row).join(', ')}) VALUES (${Object.keys(row).map((_, i) => `$${i + 1}`).join(', ')})`, Object.values(row));
    });
    const state = await openState(location.location, { mode: 'write' });
    try {
      await state.queue('p1').setAside([{ destination: 'customerio', kind: 'track', event: 'joined', key: 'k2', userId: 'bo@x' } as Operation], 'held', 'held', 4, new Date());
      await state.queue('p1').setAside([{ destination: 'customerio', kind: 'track', event: 'joined', key: 'k3', userId: 'cy@x' } as Operation], 'skipped', 'skipped', 4, new Date());
      expect((await state.deliveryStatuses([{ destination: 'customerio', key: 'k3' }]))[0]?.status).toBe('skipped');
    } finally {
      await state.close();
    }
    await withPostgres(async (client) => {
      const k1 = await client.query(`SELECT * FROM ${schema}.deliveries WHERE key = 'k1'`);
      expect({ ...k1.rows[0], seq: Number(k1.rows[0].seq) }).toEqual(row);
      const k2 = await client.query(`SELECT status, run_id, program_id FROM ${schema}.deliveries WHERE key = 'k2'`);
      expect(k2.rows[0]).toEqual({ status: 'held', run_id: 4, program_id: 'p1' });
    });
  });
});
