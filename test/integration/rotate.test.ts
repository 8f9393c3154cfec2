import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { secretFingerprint } from '../../src/model/ids.js';
import { FakeCustomerio } from '../fakes/customerio.js';
import { FakeSegment } from '../fakes/segment.js';
import { backends, type StateLocation } from '../support/backends.js';
import { runCliInProcess, tempDir } from '../support/cli.js';
import { generateProgram, writeProgram } from '../support/program.js';
import { writeCsv } from '../support/cli.js';
import { CIO_KEY, CIO_SITE, SEGMENT_KEY, startServices, type Services } from '../support/services.js';

/**
 * Issue 19 point 5: a new credential for the same destination. `state rotate` records the new fingerprint as an
 * alias of the one the history was delivered under, so ids stay the same and nothing is sent again; without it a
 * run stops (exit 64) naming both ways; diff needs no credentials and says which namespace it assumed.
 */

let services: Services | undefined;
const stops: (() => Promise<void>)[] = [];
const dropped: StateLocation[] = [];
afterEach(async () => {
  await services?.stop();
  services = undefined;
  for (const stop of stops.splice(0)) await stop();
  for (const state of dropped.splice(0)) await state.drop();
});

/** The fake that answers the new credentials (Segment and Customer.io keep nothing sent under another key). */
interface Rotated {
  /** Everything this fake accepted, by the id the destination dedupes on. */
  ids(): string[];
  env: Record<string, string>;
}

interface DestinationCase {
  destination: 'segment' | 'customerio';
  variable: string;
  oldSecret: string;
  newSecret: string;
  /** Ids the original fake accepted. */
  accepted(s: Services): string[];
  /** Starts a fake that accepts only the new credentials, and the env that points the CLI at it. */
  rotate(): Promise<Rotated>;
  /** The ids a plan file line would be accepted under. */
  planIds(line: PlanLine): string[];
}

interface PlanLine {
  destination: string;
  kind: string;
  userId: string;
  payload: Record<string, unknown>;
}

const CASES: DestinationCase[] = [
  {
    destination: 'segment',
    variable: 'SEGMENT_WRITE_KEY',
    oldSecret: SEGMENT_KEY,
    newSecret: 'seg_wk_rotated_91aa',
    accepted: (s) => [...s.segment.arrivals],
    rotate: async () => {
      const fake = new FakeSegment('seg_wk_rotated_91aa');
      const url = await fake.start();
      stops.push(() => fake.stop());
      return { ids: () => [...fake.arrivals], env: { SEGMENT_WRITE_KEY: 'seg_wk_rotated_91aa', SEGMENT_HOST: url } };
    },
    planIds: (line) => [line.payload.messageId as string],
  },
  {
    destination: 'customerio',
    variable: 'CUSTOMERIO_SITE_ID',
    oldSecret: CIO_SITE,
    newSecret: 'site_rotated_5c',
    accepted: (s) => [...s.customerio.eventArrivals],
    rotate: async () => {
      const fake = new FakeCustomerio('site_rotated_5c', CIO_KEY);
      const url = await fake.start();
      stops.push(() => fake.stop());
      // Customer.io dedupes events on their id; identifies carry none, so its events are what can be compared.
      return { ids: () => [...fake.eventArrivals], env: { CUSTOMERIO_SITE_ID: 'site_rotated_5c', CUSTOMERIO_TRACK_URL: url } };
    },
    planIds: (line) => (line.kind === 'track' ? [line.payload.id as string] : []),
  },
];

function readPlan(path: string, destination: string): PlanLine[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as PlanLine & { type?: string })
    .filter((l) => l.type === undefined && l.destination === destination);
}

describe.each(backends().map((b) => [b.name, b] as const))('rotated credentials (%s state)', (_name, backend) => {
  it.each(CASES.map((c) => [c.destination, c] as const))('%s: with `state rotate`, a sync under the new credential resends nothing and sends what is new under the same ids', async (_d, c) => {
    services = await startServices();
    const state = await backend.fresh();
    dropped.push(state);
    const cwd = tempDir();
    const rows = generateProgram(40, 11);
    const file = writeCsv(cwd, 'program.csv', rows.slice(0, 30));
    const args = ['--file', file, '--campaign', 'camp1', '--to', c.destination, '--state', state.location];
    const first = await runCliInProcess(['sync', ...args], { cwd, env: services.env });
    expect(first.code, first.stderr).toBe(0);
    const firstIds = c.accepted(services);
    expect(firstIds.length).toBeGreaterThan(0);

    const rotated = await c.rotate();
    const env = { ...services.env, ...rotated.env };
    // Without the record: exit 64, nothing sent, and the message names both ways out.
    const refused = await runCliInProcess(['sync', ...args], { cwd, env });
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain(`${c.variable} (fingerprint ${secretFingerprint(c.newSecret)}; or the config's namespace) is not the one used then (fingerprint ${secretFingerprint(c.oldSecret)})`);
    expect(refused.stderr).toContain(`\`npx referral-sync state rotate --to ${c.destination}\``);
    expect(refused.stderr).toContain('pass --new-destination');
    expect(rotated.ids()).toEqual([]);

    const rotate = await runCliInProcess(['state', 'rotate', '--to', c.destination, '--state', state.location], { cwd, env });
    expect(rotate.code, rotate.stderr).toBe(0);
    expect(rotate.stdout).toContain(`fingerprint ${secretFingerprint(c.newSecret)} recorded as rotated from ${secretFingerprint(c.oldSecret)} (program camp1)`);
    // Fingerprints only: neither credential is printed.
    expect(rotate.stdout + rotate.stderr).not.toContain(c.newSecret);
    expect(rotate.stdout + rotate.stderr).not.toContain(c.oldSecret);

    // The same source again: nothing is new, nothing goes out under the new credential.
    const again = await runCliInProcess(['sync', ...args], { cwd, env });
    expect(again.code, again.stderr).toBe(0);
    expect(rotated.ids()).toEqual([]);

    // Ten more people: the plan under the OLD credential gives their ids; the sync under the new one sends exactly those.
    writeCsv(cwd, 'program.csv', rows);
    const plan = join(cwd, 'plan.jsonl');
    const diff = await runCliInProcess(['diff', ...args, '--out', plan], { cwd, env: services.env });
    expect(diff.code, diff.stderr).toBe(0);
    const expected = readPlan(plan, c.destination).flatMap(c.planIds);
    expect(expected.length).toBeGreaterThan(0);
    const grown = await runCliInProcess(['sync', ...args], { cwd, env });
    expect(grown.code, grown.stderr).toBe(0);
    expect(rotated.ids().sort()).toEqual([...expected].sort());
    expect(rotated.ids().filter((id) => firstIds.includes(id))).toEqual([]);

    // Recorded once: a second rotate records nothing; status shows the rotation by fingerprint.
    const twice = await runCliInProcess(['state', 'rotate', '--to', c.destination, '--state', state.location], { cwd, env });
    expect(twice.code).toBe(0);
    expect(twice.stdout).toContain('already recorded as rotated');
    const status = await runCliInProcess(['status', '--state', state.location], { cwd });
    expect(status.stdout).toContain(`rotated: fingerprint ${secretFingerprint(c.newSecret)} stands for ${secretFingerprint(c.oldSecret)}`);
    const json = JSON.parse((await runCliInProcess(['status', '--state', state.location, '--json'], { cwd })).stdout) as { credentials: { rotated: { destination: string }[] } };
    expect(json.credentials.rotated).toMatchObject([{ destination: c.destination }]);

    // `state copy` carries the rotation: a sync on the copy under the new credential sends nothing again.
    const copied = join(cwd, 'copied.db');
    const copy = await runCliInProcess(['state', 'copy', '--from', state.location, '--to', copied], { cwd });
    expect(copy.code, copy.stderr).toBe(0);
    expect(copy.stdout).toMatch(/namespace_aliases +1 -> +1/);
    const sent = rotated.ids().length;
    const onCopy = await runCliInProcess(['sync', ...args.slice(0, -2), '--state', copied], { cwd, env });
    expect(onCopy.code, onCopy.stderr).toBe(0);
    expect(rotated.ids().length).toBe(sent);
  }, 120_000);
});

describe('state rotate refuses what it cannot decide (exit 64, state untouched)', () => {
  it.each([
    ['no state', 'none', {}, 'There is no state at'],
    ['the new key is not set', 'synced', { SEGMENT_WRITE_KEY: '' }, 'needs the new SEGMENT_WRITE_KEY set'],
    ['two workspaces delivered, none named', 'two', { SEGMENT_WRITE_KEY: 'seg_wk_third' }, 'Which one does the new SEGMENT_WRITE_KEY replace?'],
    ['a --previous the state never used', 'synced', { SEGMENT_WRITE_KEY: 'seg_wk_third' }, 'delivered nothing to Segment under fingerprint 0123456789abcdef'],
    ['a --previous that is not a fingerprint', 'synced', { SEGMENT_WRITE_KEY: 'seg_wk_third' }, '--previous takes a credential fingerprint'],
  ] as const)('%s', async (name, setup, extraEnv, message) => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeProgram(cwd, 10, 3);
    const sync = (env: Record<string, string>, extra: string[] = []) => runCliInProcess(['sync', '--file', file, '--to', 'segment', ...extra], { cwd, env: { ...services!.env, ...env } });
    if (setup !== 'none') expect((await sync({})).code).toBe(0);
    if (setup === 'two') expect((await sync({ SEGMENT_WRITE_KEY: 'seg_wk_second' }, ['--new-destination'])).code).toBe(0);
    const previous = name.startsWith('a --previous the') ? ['--previous', '0123456789abcdef'] : name.startsWith('a --previous that') ? ['--previous', 'seg_wk_test'] : [];
    const status = (await runCliInProcess(['status', '--json'], { cwd })).stdout;
    const result = await runCliInProcess(['state', 'rotate', '--to', 'segment', ...previous], { cwd, env: { ...services.env, ...extraEnv } });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain(message);
    expect((await runCliInProcess(['status', '--json'], { cwd })).stdout).toBe(status);
  }, 60_000);

  it('with two workspaces, --previous picks the one the new key replaces', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeProgram(cwd, 10, 3);
    expect((await runCliInProcess(['sync', '--file', file, '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);
    expect((await runCliInProcess(['sync', '--file', file, '--to', 'segment', '--new-destination'], { cwd, env: { ...services.env, SEGMENT_WRITE_KEY: 'seg_wk_second' } })).code).toBe(0);
    const result = await runCliInProcess(['state', 'rotate', '--to', 'segment', '--previous', secretFingerprint(SEGMENT_KEY), '--json'], { cwd, env: { ...services.env, SEGMENT_WRITE_KEY: 'seg_wk_third' } });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      command: 'state rotate',
      exitCode: 0,
      destinations: [{ destination: 'segment', outcome: 'recorded', fingerprint: secretFingerprint('seg_wk_third'), previous: secretFingerprint(SEGMENT_KEY), programs: ['default'] }],
    });
  }, 60_000);
});

describe('diff without destination keys', () => {
  it.each([
    ['an empty state: a placeholder, said so', 'empty', 0, 'ids      Segment: SEGMENT_WRITE_KEY is not set and nothing was delivered yet; ids use the placeholder namespace default/segment/-'],
    ['one namespace delivered: that one, said so', 'synced', 0, `ids      Segment: SEGMENT_WRITE_KEY is not set; ids use namespace default/segment/${secretFingerprint(SEGMENT_KEY)}, the one this state delivered program default under`],
    ['two namespaces delivered: exit 64, asks for the key', 'two', 64, 'SEGMENT_WRITE_KEY is not set, and .referral-sync/state.db delivered program "default" to Segment under 2 namespaces'],
  ] as const)('%s', async (_name, setup, code, said) => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeProgram(cwd, 12, 5);
    const args = ['--file', file, '--to', 'segment'];
    if (setup !== 'empty') expect((await runCliInProcess(['sync', ...args], { cwd, env: services.env })).code).toBe(0);
    if (setup === 'two') expect((await runCliInProcess(['sync', ...args, '--new-destination'], { cwd, env: { ...services.env, SEGMENT_WRITE_KEY: 'seg_wk_second' } })).code).toBe(0);
    const withKey = join(cwd, 'with-key.jsonl');
    const without = join(cwd, 'without-key.jsonl');
    writeProgram(cwd, 15, 5);
    if (setup === 'synced') expect((await runCliInProcess(['diff', ...args, '--out', withKey], { cwd, env: services.env })).code).toBe(0);
    const bare = await runCliInProcess(['diff', ...args, '--out', without], { cwd });
    expect(bare.code).toBe(code);
    expect(code === 0 ? bare.stdout : bare.stderr).toContain(said);
    // Planned under the state's namespace, the ids are the ones a diff with the key shows, and sync sends.
    // (Compared by id: a Referral Tier Changed event is timestamped when it is planned.)
    if (setup === 'synced') expect(readPlan(without, 'segment').map((l) => l.payload.messageId)).toEqual(readPlan(withKey, 'segment').map((l) => l.payload.messageId));
    if (code === 0) {
      const json = JSON.parse((await runCliInProcess(['diff', ...args, '--json'], { cwd })).stdout) as { namespaces: Record<string, { origin: string }> };
      expect(json.namespaces.segment?.origin).toBe(setup === 'empty' ? 'placeholder' : 'state');
    }
  }, 60_000);
});
