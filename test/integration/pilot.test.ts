import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeGrowsurf, generateGrowsurfProgram } from '../fakes/growsurf.js';
import { backends, withPostgres, type StateLocation } from '../support/backends.js';
import { FIXTURES, runCliInProcess, tempDir } from '../support/cli.js';
import { readPlan } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

/**
 * A pilot (issue 19, point 3): `--limit N` / `--only <id>` send a few people (their identifies, events and
 * memberships, with their real ids); the full run after it sends everything else and nothing twice, so that
 * pilot + full run deliver exactly what one full run delivers. A pilot never moves the --quick watermark nor
 * counts as a finished backfill.
 */

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const PROGRAM = ['--file', FIXTURE, '--campaign', 'grsf_demo'];
/** Richard by his GrowSurf participant id, Monica by her email in another letter case. */
const ONLY = ['--only', 'ujzde8', '--only', 'Monica.Hall@Example.com'];
const ONLY_USERS = ['richard.hendricks@example.com', 'monica.hall@example.com'];

const opened: { services: Services[]; states: StateLocation[]; growsurf: FakeGrowsurf[] } = { services: [], states: [], growsurf: [] };
afterEach(async () => {
  for (const s of opened.services.splice(0)) await s.stop();
  for (const s of opened.states.splice(0)) await s.drop();
  for (const g of opened.growsurf.splice(0)) await g.stop();
});

/** Everything the fakes received, each id as often as it arrived, sorted (a multiset to compare). */
function received(s: Services): Record<string, string[]> {
  return {
    segment: [...s.segment.arrivals].sort(),
    customerioEvents: [...s.customerio.eventArrivals].sort(),
    customerioIdentifies: [...s.customerio.identifyArrivals].sort(),
    customerioObjects: [...s.customerio.objectArrivals].sort(),
    customerioRelationships: [...s.customerio.relationshipArrivals].sort(),
  };
}

/** The Segment users and Customer.io people anything was sent for. */
function people(s: Services): { segment: Set<string>; customerio: Set<string> } {
  return {
    segment: new Set([...s.segment.messages.values()].map((m) => m.userId as string)),
    customerio: new Set(s.customerio.identifyArrivals.map((id) => id.replace(/^email:/, ''))),
  };
}

/** Rows of a test state of either backend. */
async function query<T>(location: string, sql: string): Promise<T[]> {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    const schema = new URL(location).searchParams.get('schema')!;
    return withPostgres(async (client) => {
      await client.query(`SET search_path TO ${schema}`);
      return (await client.query(sql)).rows as T[];
    });
  }
  const db = new Database(location, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

describe.each(backends())('$name state', (backend) => {
  const fresh = async (): Promise<{ services: Services; at: string[]; location: string }> => {
    const services = await startServices();
    const state = await backend.fresh();
    opened.services.push(services);
    opened.states.push(state);
    return { services, at: ['--state', state.location], location: state.location };
  };

  describe.each(['sync', 'backfill'] as const)('%s', (command) => {
    it.each([
      { name: '--limit 5', pilots: [['--limit', '5']], people: 5, only: undefined },
      { name: '--only (a participant id, an email in another case)', pilots: [ONLY], people: 2, only: ONLY_USERS },
      { name: '--limit 2, then --limit 3', pilots: [['--limit', '2'], ['--limit', '3']], people: 5, only: undefined },
      { name: 'B2B (--group-id): --limit 5', pilots: [['--limit', '5']], people: 5, only: undefined, extra: ['--group-id', 'metadata.company'] },
    ])('$name, then the full run: every id once, and the union is what one full run sends', async ({ pilots, people: expected, only, ...rest }) => {
      const extra: string[] = 'extra' in rest && rest.extra ? rest.extra : [];
      const cwd = tempDir();
      const piloted = await fresh();
      for (const pilot of pilots) {
        const result = await runCliInProcess([command, ...PROGRAM, ...extra, ...piloted.at, ...pilot], { cwd, env: piloted.services.env });
        expect(result.code).toBe(0);
        expect(result.stdout).toMatch(/pilot: \d+ of 48 people \(--(limit|only) /);
      }
      const after = people(piloted.services);
      expect(after.segment.size).toBe(expected);
      expect(after.customerio).toEqual(after.segment);
      if (only) expect([...after.segment].sort()).toEqual([...only].sort());
      // Their events went with them, under their own ids.
      expect([...piloted.services.segment.messages.values()].filter((m) => m.type === 'track').length).toBeGreaterThan(expected);
      if (extra.length > 0) {
        const groups = [...piloted.services.segment.messages.values()].filter((m) => m.type === 'group');
        expect(groups.length).toBe(expected);
        // Memberships only: account traits are computed over every member, by the full run.
        expect(groups.every((m) => Object.keys((m.traits ?? {}) as object).length === 0)).toBe(true);
        expect(piloted.services.customerio.objectArrivals).toEqual([]);
      }

      const full = await runCliInProcess([command, ...PROGRAM, ...extra, ...piloted.at], { cwd, env: piloted.services.env });
      expect(full.code).toBe(0);
      expect(full.stdout).not.toContain('pilot:');

      const once = await fresh();
      expect((await runCliInProcess([command, ...PROGRAM, ...extra, ...once.at], { cwd, env: once.services.env })).code).toBe(0);
      const total = received(piloted.services);
      for (const ids of [total.segment!, total.customerioEvents!, total.customerioIdentifies!]) expect(new Set(ids).size).toBe(ids.length);
      expect(total).toEqual(received(once.services));
      if (extra.length > 0) expect(total.customerioObjects!.length).toBeGreaterThan(0);
    });
  });

  it('diff --limit 5 --out, sync --plan, then sync: the pilot as reviewed, then the rest, every id once', async () => {
    const cwd = tempDir();
    const piloted = await fresh();
    const out = join(cwd, 'pilot.jsonl');
    const diff = await runCliInProcess(['diff', ...PROGRAM, ...piloted.at, '--limit', '5', '--out', out], { cwd, env: piloted.services.env });
    expect(diff.code).toBe(0);
    expect(diff.stdout).toContain('pilot: 5 of 48 people (--limit 5); the others are left for the full run');
    const plan = readPlan(out);
    expect(new Set(plan.map((l) => l.userId)).size).toBe(5);
    const applied = await runCliInProcess(['sync', '--plan', out, ...piloted.at], { cwd, env: piloted.services.env });
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain('pilot: 5 people (--limit 5)');
    expect([...piloted.services.segment.arrivals].sort()).toEqual(plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string).sort());
    expect((await query<{ command: string }>(piloted.location, 'SELECT command FROM runs ORDER BY id')).map((r) => r.command)).toEqual(['sync pilot']);

    expect((await runCliInProcess(['sync', ...PROGRAM, ...piloted.at], { cwd, env: piloted.services.env })).code).toBe(0);
    const once = await fresh();
    expect((await runCliInProcess(['sync', ...PROGRAM, ...once.at], { cwd, env: once.services.env })).code).toBe(0);
    expect(received(piloted.services)).toEqual(received(once.services));
  });

  it('a pilot of the GrowSurf API does not move the --quick watermark; the full sync does', async () => {
    const program = generateGrowsurfProgram(40, 2);
    const growsurf = new FakeGrowsurf('gs_key_test_pilot', program);
    opened.growsurf.push(growsurf);
    const url = await growsurf.start();
    const { services, at, location } = await fresh();
    const env = { ...services.env, GROWSURF_API_KEY: 'gs_key_test_pilot', GROWSURF_API_URL: `${url}/v2`, GROWSURF_CAMPAIGN_ID: program.campaignId };
    const cwd = tempDir();
    const watermarks = (): Promise<unknown[]> => query(location, 'SELECT program_id FROM watermarks');

    const pilot = await runCliInProcess(['sync', '--source', 'growsurf', ...at, '--limit', '5', '--rate', 'growsurf=1000'], { cwd, env });
    expect(pilot.stderr).toBe('');
    expect(pilot.code).toBe(0);
    expect(people(services).segment.size).toBe(5);
    expect(await watermarks()).toEqual([]);
    const quick = await runCliInProcess(['sync', '--source', 'growsurf', '--quick', ...at, '--rate', 'growsurf=1000'], { cwd, env });
    expect(quick.stderr).toContain('--quick: no earlier successful sync of this campaign to start from; reading everything this time.');

    expect(await watermarks()).toEqual([{ program_id: program.campaignId }]);
  });
});

describe('pilot flags', () => {
  it.each([
    { args: ['--limit', '0'], error: 'error: --limit takes a whole number of people, 1 or more, not "0".' },
    { args: ['--limit', 'five'], error: 'error: --limit takes a whole number of people, 1 or more, not "five".' },
    { args: ['--only', ' '], error: 'error: --only takes a user id (an email by default) or a participant id, not an empty value.' },
  ])('$args: exit 64', async ({ args, error }) => {
    const cwd = tempDir();
    for (const command of [['diff'], ['sync'], ['backfill'], ['sync', '--dry-run']]) {
      const result = await runCliInProcess([...command, ...PROGRAM, ...args], { cwd });
      expect(result.code).toBe(64);
      expect(result.stderr.split('\n')[0]).toBe(error);
    }
  });

  it('an --only that matches no one is said, and nothing is planned for it', async () => {
    const cwd = tempDir();
    const result = await runCliInProcess(['diff', ...PROGRAM, '--only', 'nobody@example.com', '--only', 'ujzde8'], { cwd });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('pilot: 1 of 48 people (--only nobody@example.com, ujzde8)');
    expect(result.stderr).toContain('--only nobody@example.com matched no participant (by user id or participant id): nothing is planned for it.');
  });
});
