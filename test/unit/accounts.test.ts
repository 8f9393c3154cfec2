import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { accountTraits, type AccountMember } from '../../src/model/accounts.js';
import type { AccountPlanning } from '../../src/plan/context.js';
import { issuedGeneration, type AccountOperation, type AccountPlan, type BaselineView, type DeliveryStatus, type IssuedGeneration, type PlanItem } from '../../src/plan/types.js';
import { participant } from '../support/participants.js';
import { planItems } from '../support/planner.js';

const member = (overrides: Partial<AccountMember> & { userId: string }): AccountMember => ({
  participantId: overrides.userId,
  location: undefined,
  referred: false,
  count: 0,
  joinedAt: undefined,
  name: undefined,
  ...overrides,
});

describe('account traits', () => {
  it('are computed over the members; the channel and name are the earliest member\'s, whatever the read order', () => {
    const traits = accountTraits(
      {
        id: 'acme',
        // As AccountBook.list() orders them: by join date, undated last.
        members: [
          member({ userId: 'first', referred: true, count: 0, joinedAt: 1, name: undefined }),
          member({ userId: 'second', referred: false, count: 3, joinedAt: 2, name: 'Acme Inc' }),
          member({ userId: 'undated', referred: true, count: 1, joinedAt: undefined, name: 'ACME' }),
        ],
      },
      'growsurf',
    );
    expect(traits).toEqual({ referral_source: 'growsurf', referred_members: 2, referring_members: 2, referral_count: 4, acquisition_channel: 'referral', name: 'Acme Inc' });
  });
});

const FULL: AccountPlanning = { objectTypeId: '1', traits: true, customerioObjects: true };

function groupConfig(): Config {
  const config = defaultConfig();
  config.group = { id: { kind: 'metadata', key: 'company_id' }, objectTypeId: '1' };
  return config;
}

/** Bo joined Acme through Ann; Cy is alone at Initech. */
const people = (bo: { referralCount?: number; company?: string } = {}) => [
  participant({ id: 'ann', referralCount: 1, createdAt: new Date('2025-01-01T00:00:00Z'), metadata: { company_id: 'acme' } }),
  participant({ id: 'bo', referrerId: 'ann', referralCount: bo.referralCount ?? 0, createdAt: new Date('2025-01-02T00:00:00Z'), metadata: { company_id: bo.company ?? 'acme' } }),
  participant({ id: 'cy', createdAt: new Date('2025-01-03T00:00:00Z'), metadata: { company_id: 'initech' } }),
];

const accountOps = (items: PlanItem[]): AccountOperation[] =>
  items.flatMap((i) => (i.type === 'operation' && i.operation.kind !== 'identify' && i.operation.kind !== 'track' ? [i.operation] : []));
const accountPlans = (items: PlanItem[]): AccountPlan[] => items.flatMap((i) => (i.type === 'account' ? [i.account] : []));
const describeOp = (op: AccountOperation): string => `${op.destination} ${op.kind} ${op.userId} → ${op.accountId}${op.accountTraits ? ' +traits' : ''}`;

/** What the destinations acknowledged after sending these plans: every operation sent, account traits kept. */
function acknowledged(...plans: PlanItem[][]): BaselineView {
  const sent = new Map<string, DeliveryStatus>();
  const accounts = new Map<string, { traits: Record<string, string | number | boolean | null>; hash: string }>();
  const generations = new Map<string, IssuedGeneration>();
  for (const item of plans.flat()) {
    if (item.type !== 'operation') continue;
    const op = item.operation;
    sent.set(`${op.destination}|${op.key}`, 'sent');
    const issued = issuedGeneration(op);
    if (issued) generations.set(`${op.destination}|${issued.subject}|${issued.id}`, issued);
    if (op.kind !== 'identify' && op.kind !== 'track' && op.accountTraits) accounts.set(`${op.destination}|${op.accountId}`, op.accountTraits);
  }
  return {
    identity: () => undefined,
    delivery: (d, k) => sent.get(`${d}|${k}`),
    account: (d, a) => accounts.get(`${d}|${a}`),
    generation: (d, subject, id) => generations.get(`${d}|${subject}|${id}`),
  };
}

describe('planning accounts', () => {
  it('plans a Segment group per person and one carrying the account traits, and Customer.io objects before their relationships', async () => {
    const items = await planItems(people(), { config: groupConfig(), accounts: FULL });
    expect(accountOps(items).map(describeOp)).toEqual([
      'segment group ann@example.com → acme +traits',
      'segment group ann@example.com → acme',
      'segment group bo@example.com → acme',
      'customerio object acme → acme +traits',
      'customerio relationship ann@example.com → acme',
      'customerio relationship bo@example.com → acme',
      'segment group cy@example.com → initech +traits',
      'segment group cy@example.com → initech',
      'customerio object initech → initech +traits',
      'customerio relationship cy@example.com → initech',
    ]);
    expect(accountPlans(items).filter((a) => a.destination === 'segment').map((a) => [a.accountId, a.change, a.members, a.newMembers])).toEqual([
      ['acme', 'new', 2, 2],
      ['initech', 'new', 1, 1],
    ]);
    // The same input plans the same keys (and so the same Segment messageIds) on every run.
    const again = await planItems(people(), { config: groupConfig(), accounts: FULL });
    expect(accountOps(again).map((o) => o.key)).toEqual(accountOps(items).map((o) => o.key));
  });

  it('plans nothing once everything is acknowledged; a traits change alone sends the first member\'s group call and the object', async () => {
    const first = await planItems(people(), { config: groupConfig(), accounts: FULL });
    const settled = acknowledged(first);
    expect(accountOps(await planItems(people(), { config: groupConfig(), accounts: FULL, baseline: settled }))).toEqual([]);

    const changed = await planItems(people({ referralCount: 2 }), { config: groupConfig(), accounts: FULL, baseline: settled });
    expect(accountOps(changed).map(describeOp)).toEqual(['segment group ann@example.com → acme +traits', 'customerio object acme → acme +traits']);
    const acme = accountPlans(changed).find((a) => a.destination === 'segment' && a.accountId === 'acme')!;
    expect(acme.change).toBe('changed');
    expect(acme.changes).toEqual([
      { trait: 'referring_members', before: 1, after: 2 },
      { trait: 'referral_count', before: 1, after: 3 },
    ]);
  });

  it('a move: exactly the new membership and the traits of both accounts', async () => {
    const first = await planItems(people(), { config: groupConfig(), accounts: FULL });
    const moved = await planItems(people({ company: 'initech' }), { config: groupConfig(), accounts: FULL, baseline: acknowledged(first) });
    expect(accountOps(moved).map(describeOp).sort()).toEqual(
      [
        'segment group bo@example.com → initech',
        // Initech's first member, by join date, speaks for its traits.
        'segment group bo@example.com → initech +traits',
        'segment group ann@example.com → acme +traits',
        'customerio object acme → acme +traits',
        'customerio object initech → initech +traits',
        'customerio relationship bo@example.com → initech',
      ].sort(),
    );
  });

  it('account traits that go A → B → A get three ids; a membership says the same whatever the traits (one id, one payload)', async () => {
    const a = await planItems(people(), { config: groupConfig(), accounts: FULL });
    const b = await planItems(people({ referralCount: 2 }), { config: groupConfig(), accounts: FULL, baseline: acknowledged(a) });
    const again = await planItems(people(), { config: groupConfig(), accounts: FULL, baseline: acknowledged(a, b) });
    const traitsKeys = (items: PlanItem[]): string[] => accountOps(items).filter((o) => o.accountId === 'acme' && o.accountTraits).map((o) => o.key);
    const keys = [a, b, again].flatMap(traitsKeys);
    // Segment's group call and Customer.io's object, in each of the three runs.
    expect(keys).toHaveLength(6);
    expect(new Set(keys).size).toBe(6);
    expect(accountOps(again).filter((o) => o.accountId === 'acme').map((o) => o.accountTraits?.traits.referral_count)).toEqual([1, 1]);

    // Bo's membership, refused by a run that had the traits A, planned again under B: the same id, the same payload.
    const bo = (items: PlanItem[]): AccountOperation => accountOps(items).find((o) => o.destination === 'segment' && o.userId === 'bo@example.com' && o.membership)!;
    const refused: BaselineView = { ...acknowledged(a), delivery: (d, k) => (k === bo(a).key ? 'failed' : acknowledged(a).delivery(d, k)) };
    const later = await planItems(people({ referralCount: 2 }), { config: groupConfig(), accounts: FULL, baseline: refused });
    expect(bo(later).key).toBe(bo(a).key);
    expect(bo(later).payload).toEqual(bo(a).payload);
    expect(bo(a).payload).not.toHaveProperty('traits');
  });

  it('--quick: memberships without traits and a warning; --customerio-api v1: nothing for Customer.io and a warning', async () => {
    const quick = await planItems(people(), { config: groupConfig(), accounts: { ...FULL, traits: false } });
    expect(accountOps(quick).map(describeOp)).toEqual([
      'segment group ann@example.com → acme',
      'segment group bo@example.com → acme',
      'customerio relationship ann@example.com → acme',
      'customerio relationship bo@example.com → acme',
      'segment group cy@example.com → initech',
      'customerio relationship cy@example.com → initech',
    ]);
    expect(accountOps(quick).every((o) => !('traits' in o.payload))).toBe(true);
    expect(quick.filter((i) => i.type === 'warning').map((i) => (i.type === 'warning' ? i.message : ''))).toEqual([expect.stringContaining('--quick reads only part of the program')]);

    const v1 = await planItems(people(), { config: groupConfig(), accounts: { ...FULL, customerioObjects: false } });
    expect(accountOps(v1).every((o) => o.destination === 'segment')).toBe(true);
    expect(v1.filter((i) => i.type === 'warning')).toEqual([expect.objectContaining({ destination: 'customerio', message: expect.stringContaining('need Track API v2') })]);
  });

  it('backfill re-sends account traits unchanged; a dead membership waits for retry unless --resend', async () => {
    const first = await planItems(people(), { config: groupConfig(), accounts: FULL });
    const settled = acknowledged(first);
    const backfill = await planItems(people(), { config: groupConfig(), accounts: FULL, baseline: settled, mode: 'backfill' });
    expect(accountOps(backfill).map(describeOp)).toEqual([
      'segment group ann@example.com → acme +traits',
      'customerio object acme → acme +traits',
      'segment group cy@example.com → initech +traits',
      'customerio object initech → initech +traits',
    ]);
    // A refresh is a new operation: not the ids of the first sends, which Segment would drop.
    const firstKeys = new Set(accountOps(first).map((o) => o.key));
    expect(accountOps(backfill).some((o) => firstKeys.has(o.key))).toBe(false);
    expect(accountPlans(backfill).every((a) => a.change === 'refresh')).toBe(true);

    const bo = accountOps(first).find((o) => o.destination === 'segment' && o.userId === 'bo@example.com' && o.membership)!;
    const dead: BaselineView = { ...settled, delivery: (d, k) => (d === 'segment' && k === bo.key ? 'dead' : settled.delivery(d, k)) };
    const withDead = await planItems(people(), { config: groupConfig(), accounts: FULL, baseline: dead });
    expect(accountOps(withDead)).toEqual([]);
    expect(withDead).toContainEqual({ type: 'deduped', destination: 'segment', event: 'group', key: bo.key, status: 'dead' });
    const resent = await planItems(people(), { config: groupConfig(), accounts: FULL, baseline: dead, resend: true });
    expect(accountOps(resent).filter((o) => o.destination === 'segment').map((o) => o.userId)).toEqual(['ann@example.com', 'bo@example.com', 'cy@example.com']);
  });

  it('a stop that cut the read short plans no account: traits over part of the members would be wrong', async () => {
    const stopped = new AbortController();
    stopped.abort('SIGINT');
    const items = await planItems(people(), { config: groupConfig(), accounts: FULL, signal: stopped.signal });
    expect(accountOps(items)).toEqual([]);
    expect(accountPlans(items)).toEqual([]);
  });

  it('reports ids that differ only by case on the later spelling\'s rows, and accounts the state holds that no one belongs to any more', async () => {
    const variants = [...people(), participant({ id: 'di', createdAt: new Date('2025-01-04T00:00:00Z'), metadata: { company_id: 'ACME' } })];
    const items = await planItems(variants, { config: groupConfig(), accounts: FULL });
    const warnings = items.flatMap((i) => (i.type === 'warning' ? [i.message] : []));
    expect(warnings).toEqual(['account id "acme" of ann@example.com differs from "ACME" only by letter case: they are sent as two accounts; correct the data if they are one', 'account id "acme" of bo@example.com differs from "ACME" only by letter case: they are sent as two accounts; correct the data if they are one']);
    expect(new Set(accountOps(items).map((o) => o.accountId))).toEqual(new Set(['ACME', 'acme', 'initech']));

    // Cy leaves Initech for Acme: the state still holds Initech (and one more account this data never had).
    const first = await planItems(people(), { config: groupConfig(), accounts: FULL });
    const everyoneLeft = [people()[0]!, people()[1]!, participant({ ...people()[2]!, metadata: { company_id: 'acme' } })];
    const later = await planItems(everyoneLeft, { config: groupConfig(), accounts: { ...FULL, known: { segment: 3, customerio: 3 } }, baseline: acknowledged(first) });
    expect(later.flatMap((i) => (i.type === 'warning' ? [i.message] : []))).toEqual([
      '2 accounts the state holds for Segment have no members in this data: nothing is sent for them, so their account traits stay as last sent (referral-sync never deletes an account or a relationship)',
    ]);
  });
});
