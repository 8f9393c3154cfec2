import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, runCliInProcess, tempDir } from '../support/cli.js';
import { backends, readDeliveries, withPostgres, type StateLocation } from '../support/backends.js';
import { readPlan, type PlanLine } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

/**
 * `sync --plan` / `backfill --plan` (issue 19, point 2): what `diff --out` wrote is sent exactly, with its ids, once;
 * a plan made for another program, destination set, set of credentials or state, or against a state that moved
 * since, is refused (64); a damaged line is a data error (65). Nothing is sent by a refused plan.
 */

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');
const PROGRAM = ['--campaign', 'grsf_demo'];

let services: Services | undefined;
let state: StateLocation | undefined;
afterEach(async () => {
  await services?.stop();
  await state?.drop();
  services = undefined;
  state = undefined;
});

/** Everything the fakes received that carries an id (Segment messageIds, Customer.io event ids) or a person. */
function received(s: Services): { segment: string[]; customerioEvents: string[]; customerioIdentifies: string[] } {
  return { segment: [...s.segment.arrivals], customerioEvents: [...s.customerio.eventArrivals], customerioIdentifies: [...s.customerio.identifyArrivals] };
}

/** The same, as the plan file says they will arrive (the ids the senders take from each line's payload). */
function expectedFrom(plan: PlanLine[]): { segment: string[]; customerioEvents: string[]; customerioIdentifies: string[] } {
  return {
    segment: plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string),
    customerioEvents: plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string),
    customerioIdentifies: plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').map((l) => `email:${l.userId}`),
  };
}

const sorted = (values: string[]): string[] => [...values].sort();

/** Runs SQL on a test state of either backend (to stand for what a concurrent run would have done). */
async function execute(location: string, sql: string): Promise<void> {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    const schema = new URL(location).searchParams.get('schema')!;
    await withPostgres(async (client) => {
      await client.query(`SET search_path TO ${schema}`);
      await client.query(sql);
    });
    return;
  }
  const db = new Database(location);
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

describe.each(backends())('$name state', (backend) => {
  describe.each([
    { command: 'sync', preview: ['diff'], json: false },
    { command: 'backfill', preview: ['backfill', '--dry-run'], json: true },
  ] as const)('$command --plan', ({ command, preview, json }) => {
    it('sends each operation of the plan exactly once, with the ids the plan holds; applied again, it is refused and sends nothing', async () => {
      services = await startServices();
      state = await backend.fresh();
      const cwd = tempDir();
      const at = ['--state', state.location];
      const out = join(cwd, 'plan.jsonl');
      const made = await runCliInProcess([...preview, '--file', FIXTURE, ...PROGRAM, ...at, '--out', out, '--quiet'], { cwd, env: services.env });
      expect(made.code).toBe(0);
      const plan = readPlan(out);
      expect(plan.length).toBeGreaterThan(100);
      const header = JSON.parse(readFileSync(out, 'utf8').split('\n')[0]!) as Record<string, unknown>;
      expect(header).toMatchObject({ type: 'plan', format: 1, mode: command, program: { source: 'growsurf', id: 'grsf_demo' }, pilot: null, state: { lastRunId: null, acknowledged: 0 } });
      // Fingerprints of the credentials, never the credentials.
      for (const secret of Object.values(services.env).filter((v) => !v.startsWith('http'))) expect(readFileSync(out, 'utf8').split('\n')[0]).not.toContain(secret);

      const applied = await runCliInProcess([command, '--plan', out, ...at, ...(json ? ['--json'] : [])], { cwd, env: services.env });
      expect(applied.stderr).toBe('');
      expect(applied.code).toBe(0);
      if (json) {
        expect(JSON.parse(applied.stdout)).toMatchObject({ command, outcome: 'done', planFile: { path: out, mode: command, createdAt: header.createdAt }, plan: { operations: plan.length } });
      } else {
        expect(applied.stdout).toContain(`  plan ${out} (made ${header.createdAt as string}): ${plan.length} operations sent as reviewed`);
      }
      const expected = expectedFrom(plan);
      expect(sorted(received(services).segment)).toEqual(sorted(expected.segment));
      expect(sorted(received(services).customerioEvents)).toEqual(sorted(expected.customerioEvents));
      expect(sorted(received(services).customerioIdentifies)).toEqual(sorted(expected.customerioIdentifies));
      // The payloads are the file's, exactly.
      for (const line of plan.filter((l) => l.destination === 'segment')) {
        expect(services.segment.messages.get(line.payload.messageId as string)).toMatchObject(line.payload);
      }

      const before = received(services);
      const again = await runCliInProcess([command, '--plan', out, ...at], { cwd, env: services.env });
      expect(again.code).toBe(64);
      expect(again.stderr).toMatch(/error: The state moved since .*plan\.jsonl was made .*: it then had no run yet for program "grsf_demo", and run #\d+ was recorded since/);
      expect(received(services)).toEqual(before);

      // And the run after it plans nothing more: the plan was the whole of it.
      const sync = await runCliInProcess(['sync', '--file', FIXTURE, ...PROGRAM, ...at], { cwd, env: services.env });
      expect(sync.code).toBe(0);
      expect(received(services)).toEqual(before);
    });
  });

  describe('refusals: nothing is sent', () => {
    /** A state with one run in it (a pilot of one person), and a plan made against it. */
    async function planned(): Promise<{ cwd: string; at: string[]; out: string }> {
      services = await startServices();
      state = await backend.fresh();
      const cwd = tempDir();
      const at = ['--state', state.location];
      expect((await runCliInProcess(['sync', '--file', FIXTURE, ...PROGRAM, ...at, '--limit', '1'], { cwd, env: services.env })).code).toBe(0);
      const out = join(cwd, 'plan.jsonl');
      expect((await runCliInProcess(['diff', '--file', FIXTURE, ...PROGRAM, ...at, '--out', out, '--quiet'], { cwd, env: services.env })).code).toBe(0);
      return { cwd, at, out };
    }

    it.each([
      {
        name: 'another run in between',
        prepare: async (p: { cwd: string; at: string[] }) => void (await runCliInProcess(['sync', '--file', FIXTURE, ...PROGRAM, ...p.at, '--limit', '2'], { cwd: p.cwd, env: services!.env })),
        args: () => [],
        error: /The state moved since .* it then had run #1 last for program "grsf_demo", and run #2 was recorded since/,
      },
      {
        name: 'operations acknowledged since (a run under way while the plan was made)',
        prepare: async () =>
          execute(
            state!.location,
            `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, created_at, updated_at, program_id) VALUES ('segment', '${'f'.repeat(64)}', 'joined', 'x@example.com', 'sent', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 'grsf_demo')`,
          ),
        args: () => [],
        error: /The state moved since .*: 1 more deliveries of program "grsf_demo" were acknowledged since/,
      },
      { name: 'another program', prepare: async () => undefined, args: () => ['--campaign', 'other'], error: /was made for program "grsf_demo", and this run names program "other"/ },
      { name: 'another destination set', prepare: async () => undefined, args: () => ['--to', 'segment'], error: /was made for Segment and Customer\.io, and this run sends to Segment\./ },
      { name: 'changed credentials', prepare: async () => undefined, args: () => [], env: { SEGMENT_WRITE_KEY: 'seg_wk_rotated_000' }, error: /was made for other Segment credentials .*its ids carry the fingerprint default\/segment\/[0-9a-f]+, and this run's credentials give default\/segment\/[0-9a-f]+\./ },
      { name: 'another state', prepare: async () => undefined, args: (p: { cwd: string }) => ['--state', join(p.cwd, 'other.db')], error: /was made against the state .*, and this run uses .*other\.db\./ },
      { name: 'another command (a sync plan given to backfill)', prepare: async () => undefined, args: () => [], command: 'backfill', error: /plan\.jsonl is a sync plan .*: apply it with `referral-sync sync --plan .*plan\.jsonl`, not backfill\./ },
    ])('$name: exit 64, a sentence that says why', async ({ prepare, args, error, ...rest }) => {
      const p = await planned();
      await prepare(p);
      const before = received(services!);
      const env = { ...services!.env, ...('env' in rest ? rest.env : {}) };
      const hasState = args(p).includes('--state');
      const result = await runCliInProcess([('command' in rest ? rest.command : 'sync') as string, '--plan', p.out, ...(hasState ? [] : p.at), ...args(p)], { cwd: p.cwd, env });
      expect(result.stderr).toMatch(error);
      expect(result.code).toBe(64);
      expect(received(services!)).toEqual(before);
    });

    it.each([
      { name: 'not JSON', edit: (lines: string[]) => lines.splice(5, 1, '{"destination":"segment",'), line: 6, why: /not JSON/ },
      { name: 'an unknown destination', edit: (lines: string[]) => lines.splice(3, 1, lines[3]!.replace('"destination":"segment"', '"destination":"mixpanel"').replace('"destination":"customerio"', '"destination":"mixpanel"')), line: 4, why: /unknown destination "mixpanel"/ },
      { name: 'a kind the destination does not take', edit: (lines: string[]) => lines.splice(2, 1, lines[2]!.replace(/"kind":"[a-z]+"/, '"kind":"object"')), line: 3, why: /kind "object" is not one segment takes/ },
      { name: 'an edited key', edit: (lines: string[]) => lines.splice(2, 1, lines[2]!.replace(/"key":"[0-9a-f]{8}/, '"key":"00000000')), line: 3, why: /messageId is not the one its key gives/ },
      { name: 'a line given twice', edit: (lines: string[]) => lines.splice(3, 0, lines[2]!), line: 4, why: /the same operation appears on an earlier line/ },
    ])('a damaged line ($name): exit 65 with file:line, nothing sent', async ({ edit, line, why }) => {
      const p = await planned();
      const lines = readFileSync(p.out, 'utf8').trimEnd().split('\n');
      expect(JSON.parse(lines[2]!)).toMatchObject({ destination: 'segment' });
      edit(lines);
      // The damage is placed after good lines and before others: nothing at all is sent, not even the good ones.
      writeFileSync(p.out, `${lines.join('\n')}\n`);
      const before = received(services!);
      const result = await runCliInProcess(['sync', '--plan', p.out, ...p.at], { cwd: p.cwd, env: services!.env });
      expect(result.stderr).toContain(`${p.out}:${line}: not an operation of this plan`);
      expect(result.stderr).toMatch(why);
      expect(result.code).toBe(65);
      expect(received(services!)).toEqual(before);
      // Refused before the state was touched: no run recorded, nothing queued (the last run is still the pilot).
      expect((await readDeliveries(state!.location)).lastRunStatus).toBe('succeeded');
    });

    it.each([
      { name: 'a CSV, not a plan', content: () => readFileSync(FIXTURE, 'utf8'), error: /is not a plan referral-sync can apply: its first line is not JSON/ },
      { name: 'a plan without a header (an older diff --out)', content: (plan: string) => plan.split('\n').slice(1).join('\n'), error: /is not a plan referral-sync can apply: it has no header line/ },
      { name: 'another format version', content: (plan: string) => plan.replace('"format":1', '"format":2'), error: /it is written in plan format 2, and this version reads format 1/ },
      { name: 'another tool version', content: (plan: string) => plan.replace(/"version":"[^"]+"/, '"version":"0.0.9"'), error: /was made by referral-sync 0\.0\.9, and this is .*: a plan is applied by the version that made it/ },
    ])('$name: exit 64', async ({ content, error }) => {
      const p = await planned();
      writeFileSync(p.out, content(readFileSync(p.out, 'utf8')));
      const before = received(services!);
      const result = await runCliInProcess(['sync', '--plan', p.out, ...p.at], { cwd: p.cwd, env: services!.env });
      expect(result.stderr).toMatch(error);
      expect(result.code).toBe(64);
      expect(received(services!)).toEqual(before);
    });
  });
});

describe('--plan and the flags that read a source or plan', () => {
  it.each([
    { args: ['--file', FIXTURE], named: '--file' },
    { args: ['--source', 'growsurf'], named: '--source' },
    { args: ['--quick'], named: '--quick' },
    { args: ['--limit', '5'], named: '--limit' },
    { args: ['--only', 'a@example.com'], named: '--only' },
    { args: ['--user-id', 'id', '--sync-nulls'], named: '--user-id, --sync-nulls' },
    { args: ['--dry-run'], named: '--dry-run' },
  ])('$named: a usage error that names the conflict', async ({ args, named }) => {
    const cwd = tempDir();
    const out = join(cwd, 'plan.jsonl');
    writeFileSync(out, '');
    const result = await runCliInProcess(['sync', '--plan', out, ...args], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain(`error: --plan sends a plan exactly as it was made, reading no source: ${named} cannot be combined with it.`);
  });

  it('a plan file that does not exist: exit 64 naming it', async () => {
    const cwd = tempDir();
    const result = await runCliInProcess(['backfill', '--plan', join(cwd, 'nope.jsonl')], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain(`error: Cannot read the plan ${join(cwd, 'nope.jsonl')}: no such file.`);
  });
});
