import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { backends, type StateLocation } from '../support/backends.js';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { readPlan } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

let services: Services | undefined;
let state: StateLocation | undefined;
afterEach(async () => {
  await services?.stop();
  await state?.drop();
  services = undefined;
  state = undefined;
});

type Row = Record<string, string>;

/** Whether a Segment group call carries account traits (a membership carries none; the SDK sends it `{}`). */
const carriesTraits = (group: { traits?: Record<string, unknown> }): boolean => group.traits !== undefined && Object.keys(group.traits).length > 0;

/** Three accounts: Acme (organic founder who referred two colleagues), Globex (joined through Acme's founder), Initech. */
const PEOPLE: Row[] = [
  { ID: 'a1', Email: 'ada@acme.example', 'Referral Count': '2', 'Created At': '2025-01-01', 'Company ID': 'acme', Company: 'Acme Inc' },
  { ID: 'a2', Email: 'al@acme.example', 'Referral Count': '0', 'Created At': '2025-01-02', 'Referred By': 'a1', 'Referral Status': 'CREDIT_AWARDED', 'Company ID': 'acme', Company: 'Acme Inc' },
  { ID: 'a3', Email: 'amy@acme.example', 'Referral Count': '0', 'Created At': '2025-01-03', 'Referred By': 'a1', 'Referral Status': 'CREDIT_PENDING', 'Company ID': 'acme', Company: 'Acme Inc' },
  { ID: 'g1', Email: 'gus@globex.example', 'Referral Count': '1', 'Created At': '2025-01-04', 'Referred By': 'a1', 'Referral Status': 'CREDIT_AWARDED', 'Company ID': 'globex', Company: 'Globex' },
  { ID: 'g2', Email: 'gia@globex.example', 'Referral Count': '0', 'Created At': '2025-01-05', 'Referred By': 'g1', 'Referral Status': 'CREDIT_AWARDED', 'Company ID': 'globex', Company: 'Globex' },
  { ID: 'i1', Email: 'ivy@initech.example', 'Referral Count': '0', 'Created At': '2025-01-06', 'Company ID': 'initech', Company: 'Initech' },
];

const ACCOUNT_TRAITS = {
  acme: { referral_source: 'growsurf', referred_members: 2, referring_members: 1, referral_count: 2, acquisition_channel: 'organic', name: 'Acme Inc' },
  globex: { referral_source: 'growsurf', referred_members: 2, referring_members: 1, referral_count: 1, acquisition_channel: 'referral', name: 'Globex' },
  initech: { referral_source: 'growsurf', referred_members: 0, referring_members: 0, referral_count: 0, acquisition_channel: 'organic', name: 'Initech' },
};

const MEMBERS: Record<string, string> = {
  'ada@acme.example': 'acme',
  'al@acme.example': 'acme',
  'amy@acme.example': 'acme',
  'gus@globex.example': 'globex',
  'gia@globex.example': 'globex',
  'ivy@initech.example': 'initech',
};

/** The name rule and object type come from the config; the id rule from the flag (the config may hold all three). */
function writeConfig(cwd: string): void {
  writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ group: { name: 'metadata.company', objectTypeId: '3' } }));
}

describe.each(backends())('accounts (--group-id), $name state', (backend) => {
  it('sends a group per person → account and one with the account traits, and the Customer.io objects and relationships; a second sync sends nothing; a move sends exactly the new membership and the changed traits', async () => {
    services = await startServices();
    state = await backend.fresh();
    const cwd = tempDir();
    writeConfig(cwd);
    const file = writeCsv(cwd, 'export.csv', PEOPLE);
    // Its conversions carry no date: sent as now, they are recent, and a first load sends them only as decided.
    const args = ['--file', file, '--campaign', 'grsf_b2b', '--group-id', 'metadata.company_id', '--state', state.location, '--recent-events', 'send'];
    const { segment, customerio } = services;

    // diff first: the accounts, their members and their traits, and every operation with its payload in --out.
    const planPath = join(cwd, 'plan.jsonl');
    const diff = await runCliInProcess(['diff', ...args, '--out', planPath], { cwd, env: services.env });
    expect(diff.code).toBe(0);
    expect(diff.stdout).toContain('Accounts: 3 (3 new, 0 changed, 0 unchanged), 6 members to add');
    expect(diff.stdout).toMatch(/\+ acme \(new, 3 members, 3 joining\)\s+referral_source=growsurf, referred_members=2, referring_members=1, referral_count=2, acquisition_channel=organic, name=Acme Inc/);
    expect(diff.stdout).toMatch(/accounts\s+new\s+3\s+3/);
    const plan = readPlan(planPath);
    const groupLines = plan.filter((l) => l.destination === 'segment' && l.kind === 'group');
    // A membership per person, and the traits of each account (from its first member).
    expect(groupLines).toHaveLength(9);

    const first = await runCliInProcess(['sync', ...args], { cwd, env: services.env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);

    // Segment: one group call per person, to their account, and one per account from its first member carrying its
    // traits (a membership carries none: one id always says the same thing), with the planned ids.
    const groups = segment.groups();
    const memberships = groups.filter((g) => !carriesTraits(g));
    expect(memberships.map((g) => `${g.userId} → ${g.groupId as string}`).sort()).toEqual(Object.entries(MEMBERS).map(([u, a]) => `${u} → ${a}`).sort());
    const carrying = groups.filter(carriesTraits);
    expect(Object.fromEntries(carrying.map((g) => [g.groupId as string, g.traits]))).toEqual(ACCOUNT_TRAITS);
    expect(carrying.map((g) => g.userId).sort()).toEqual(['ada@acme.example', 'gus@globex.example', 'ivy@initech.example']);
    expect(groups.map((g) => g.messageId).sort()).toEqual(groupLines.map((l) => l.payload.messageId as string).sort());

    // Customer.io: each account an object of the configured type with the same traits, each person related to it.
    expect(Object.fromEntries(customerio.objects)).toEqual({ '3/acme': ACCOUNT_TRAITS.acme, '3/globex': ACCOUNT_TRAITS.globex, '3/initech': ACCOUNT_TRAITS.initech });
    expect([...customerio.relationships].sort()).toEqual(Object.entries(MEMBERS).map(([u, a]) => `email:${u} → 3/${a}`).sort());
    expect(customerio.relationshipArrivals).toHaveLength(6);

    // A second sync sends nothing: memberships are in the ledger, account traits in the accounts baseline.
    const sent = (): number[] => [segment.arrivals.length, customerio.objectArrivals.length, customerio.relationshipArrivals.length, customerio.identifyArrivals.length, customerio.eventArrivals.length];
    const before = sent();
    const second = await runCliInProcess(['sync', ...args], { cwd, env: services.env });
    expect(second.code).toBe(0);
    expect(sent()).toEqual(before);
    const quiet = await runCliInProcess(['diff', ...args], { cwd, env: services.env });
    expect(quiet.stdout).toContain('Accounts: 3 (0 new, 0 changed, 3 unchanged), 0 members to add');
    expect(quiet.stdout.trim().split('\n').at(-1)).toBe('No changes: nothing would be sent.');

    // Al moves from Acme to Globex: his membership of Globex, and the traits of both accounts, nothing else.
    writeCsv(cwd, 'export.csv', PEOPLE.map((p) => (p.ID === 'a2' ? { ...p, 'Company ID': 'globex', Company: 'Globex' } : p)));
    const moved = await runCliInProcess(['diff', ...args], { cwd, env: services.env });
    expect(moved.stdout).toContain('Accounts: 3 (0 new, 2 changed, 1 unchanged), 1 member to add');
    expect(moved.stdout).toMatch(/~ acme \(3 members|~ acme \(2 members/);
    expect(moved.stdout).toContain('referred_members: 2 → 1');
    const segmentBefore = segment.arrivals.length;
    const objectsBefore = customerio.objectArrivals.length;
    const relationshipsBefore = customerio.relationshipArrivals.length;
    const third = await runCliInProcess(['sync', ...args], { cwd, env: services.env });
    expect(third.code).toBe(0);
    const newSegment = segment.arrivals.slice(segmentBefore).map((id) => segment.messages.get(id)!);
    // Al joins Globex; each account gets its new traits from its first member.
    const globex = { ...ACCOUNT_TRAITS.globex, referred_members: 3 };
    const acme = { ...ACCOUNT_TRAITS.acme, referred_members: 1 };
    expect(newSegment.map((m) => ({ type: m.type, userId: m.userId, groupId: m.groupId, traits: m.traits }))).toEqual(
      expect.arrayContaining([
        { type: 'group', userId: 'al@acme.example', groupId: 'globex', traits: {} },
        { type: 'group', userId: 'al@acme.example', groupId: 'globex', traits: globex },
        { type: 'group', userId: 'ada@acme.example', groupId: 'acme', traits: acme },
      ]),
    );
    expect(newSegment).toHaveLength(3);
    expect(customerio.relationshipArrivals.slice(relationshipsBefore)).toEqual(['email:al@acme.example → 3/globex']);
    expect(customerio.objectArrivals.slice(objectsBefore).sort()).toEqual(['3/acme', '3/globex']);
    expect(customerio.objects.get('3/globex')).toEqual(globex);
    expect(customerio.objects.get('3/acme')).toEqual(acme);

    // status counts the accounts each destination acknowledged.
    const status = await runCliInProcess(['status', '--json', '--state', state.location], { cwd });
    expect(status.stderr).toBe('');
    expect((JSON.parse(status.stdout) as { accounts: unknown }).accounts).toEqual([
      { destination: 'customerio', count: 3 },
      { destination: 'segment', count: 3 },
    ]);

    // And once more: nothing.
    const after = sent();
    expect((await runCliInProcess(['sync', ...args], { cwd, env: services.env })).code).toBe(0);
    expect(sent()).toEqual(after);
  });
});

describe.each(backends())('accounts and retry, $name state', (backend) => {
  it('retry never sends account traits older than those acknowledged since: a refused object is superseded, a refused membership goes as it was planned', async () => {
    services = await startServices();
    state = await backend.fresh();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', PEOPLE);
    const args = ['--file', file, '--group-id', 'metadata.company_id', '--state', state.location, '--recent-events', 'send'];
    const { segment, customerio } = services;
    // Customer.io refuses Acme's object; Segment refuses Al's group call.
    customerio.rejectOperation = (op) => (op.type === 'object' && op.identifiers?.object_id === 'acme' ? 'refused for the test' : undefined);
    segment.rejectMessage = (m) => (m.type === 'group' && m.userId === 'al@acme.example' ? 400 : undefined);
    expect((await runCliInProcess(['sync', ...args], { cwd, env: services.env })).code).toBe(1);
    expect(customerio.objects.get('1/acme')).toEqual({});
    // diff after it: nothing to send but the refused ones, which wait for retry.
    const pending = await runCliInProcess(['diff', ...args], { cwd, env: services.env });
    expect(pending.stdout).toMatch(/dead \(see retry\)\s+1\s+1/);
    expect(pending.stdout.trim().split('\n').at(-1)).toBe('No changes: nothing would be sent.');

    // Acme's traits change (Ada's referrals), and the refusals are over: the sync sends the new traits.
    customerio.rejectOperation = undefined;
    segment.rejectMessage = undefined;
    writeCsv(cwd, 'export.csv', PEOPLE.map((p) => (p.ID === 'a1' ? { ...p, 'Referral Count': '4' } : p)));
    const second = await runCliInProcess(['sync', ...args], { cwd, env: services.env });
    expect(second.code).toBe(0);
    // It read the whole source, which no longer shows the refused object's traits: superseded, never to be retried.
    expect(second.stderr).toContain('1 operation earlier runs could not deliver is superseded, not sent: the source no longer shows it.');
    // No name rule in this run: the traits without a name.
    const { name: _name, ...acme } = { ...ACCOUNT_TRAITS.acme, referral_count: 4 };
    expect(customerio.objects.get('1/acme')).toEqual(acme);

    // retry: the old object is not sent (the sync superseded it); Al's membership goes, as it was planned (it
    // carries no traits, and the source still shows it).
    const objectsBefore = customerio.objectArrivals.length;
    const segmentBefore = segment.arrivals.length;
    const retry = await runCliInProcess(['retry', '--json', '--state', state.location], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    expect(customerio.objectArrivals.length).toBe(objectsBefore);
    expect(customerio.objects.get('1/acme')).toEqual(acme);
    const resent = segment.arrivals.slice(segmentBefore).map((id) => segment.messages.get(id)!);
    expect(resent.map((m) => ({ type: m.type, userId: m.userId, groupId: m.groupId, traits: m.traits }))).toEqual([{ type: 'group', userId: 'al@acme.example', groupId: 'acme', traits: {} }]);
    expect(segment.groups().filter((g) => g.groupId === 'acme' && carriesTraits(g)).at(-1)!.traits).toEqual(acme);

    // And a sync after it sends nothing.
    const after = [segment.arrivals.length, customerio.objectArrivals.length, customerio.relationshipArrivals.length];
    expect((await runCliInProcess(['sync', ...args], { cwd, env: services.env })).code).toBe(0);
    expect([segment.arrivals.length, customerio.objectArrivals.length, customerio.relationshipArrivals.length]).toEqual(after);
  });
});

describe('accounts: problems and limits', () => {
  it('reports a person without an account id and an account id over Customer.io\'s 150 bytes on their rows; the rest goes', async () => {
    services = await startServices();
    const cwd = tempDir();
    const long = 'x'.repeat(151);
    const file = writeCsv(cwd, 'export.csv', [
      { ID: 'p1', Email: 'pat@a.example', 'Created At': '2025-01-01', 'Company ID': 'a' },
      { ID: 'p2', Email: 'pia@b.example', 'Created At': '2025-01-02', 'Company ID': '' },
      { ID: 'p3', Email: 'pete@long.example', 'Created At': '2025-01-03', 'Company ID': long },
    ]);
    const result = await runCliInProcess(['sync', '--file', file, '--group-id', 'metadata.company_id', '--json'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as { plan: { warningRows: { file: string; line: number; reason: string; destination?: string }[] } };
    expect(json.plan.warningRows).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ line: 3, reason: expect.stringContaining('participant p2 has no account id') }),
        expect.objectContaining({ line: 4, destination: 'customerio', reason: expect.stringContaining('151 bytes, over Customer.io\'s 150-byte limit') }),
      ]),
    );
    // Segment takes both accounts (it has no such limit); Customer.io only the one that fits.
    expect(services.segment.groups().filter((g) => !carriesTraits(g)).map((g) => g.groupId).sort()).toEqual(['a', long]);
    expect([...services.customerio.objects.keys()]).toEqual(['1/a']);
    expect([...services.customerio.relationships]).toEqual(['email:pat@a.example → 1/a']);
  });

  it('with --customerio-api v1 sends Segment groups and says Customer.io objects need v2', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', PEOPLE);
    const result = await runCliInProcess(['sync', '--file', file, '--group-id', 'metadata.company_id', '--customerio-api', 'v1', '--recent-events', 'send', '--json'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as { plan: { warningRows: { reason: string; destination?: string }[] } };
    expect(json.plan.warningRows).toEqual([expect.objectContaining({ destination: 'customerio', reason: expect.stringContaining('Customer.io objects need Track API v2') })]);
    expect(services.segment.groups().filter((g) => !carriesTraits(g))).toHaveLength(6);
    expect(services.customerio.objects.size).toBe(0);
    expect(services.customerio.identifyArrivals.length).toBe(6);
  });

  it('a config whose "group" has no id rule: diff and sync exit 64 naming the fix; status, which plans nothing, runs', async () => {
    const cwd = tempDir();
    writeConfig(cwd);
    const file = writeCsv(cwd, 'export.csv', PEOPLE);
    for (const command of ['diff', 'sync']) {
      const result = await runCliInProcess([command, '--file', file], { cwd });
      expect(result.code).toBe(64);
      expect(result.stderr).toContain('The config\'s "group" names no account id rule.');
      expect(result.stderr).toContain('--group-id metadata.<key>');
    }
    expect((await runCliInProcess(['status'], { cwd })).code).toBe(0);
    expect((await runCliInProcess(['diff', '--file', file, '--group-id', 'id'], { cwd })).code).toBe(0);
  });

  it('a file without the account column stops before anything is sent (exit 65), naming the columns it has', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', PEOPLE.map(({ 'Company ID': _id, ...rest }) => rest));
    const result = await runCliInProcess(['sync', '--file', file, '--group-id', 'metadata.company_id'], { cwd, env: services.env });
    expect(result.code).toBe(65);
    expect(result.stderr).toContain('has no column for metadata "company_id", which holds the account id');
    expect(services.segment.arrivals).toEqual([]);
    expect(services.customerio.identifyArrivals).toEqual([]);
  });
});
