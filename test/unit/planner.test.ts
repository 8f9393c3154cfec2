import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { computeTraits, destinationTraits } from '../../src/model/traits.js';
import { stableHash } from '../../src/model/ids.js';
import { type BaselineView, type DeliveryStatus, type PlanItem, type Operation } from '../../src/plan/types.js';
import { participant } from '../support/participants.js';
import { PLAN_NOW, planItems } from '../support/planner.js';

const NOW = PLAN_NOW;

const plan = planItems;

const operations = (items: PlanItem[]): Operation[] => items.flatMap((i) => (i.type === 'operation' ? [i.operation] : []));

/** A baseline holding what earlier syncs of these plans acknowledged, every event sent. */
function baselineFrom(...plans: PlanItem[][]): BaselineView {
  const identities = new Map<string, { traits: Record<string, string | number | boolean | null>; hash: string; tierChanges: number }>();
  const sent = new Set<string>();
  for (const op of plans.flatMap(operations)) {
    if (op.kind === 'identify') identities.set(`${op.destination}|${op.userId}`, { traits: op.traits, hash: op.traitsHash, tierChanges: op.tierChanges });
    else sent.add(`${op.destination}|${op.key}`);
  }
  return {
    identity: (d, u) => identities.get(`${d}|${u}`),
    delivery: (d, k): DeliveryStatus | undefined => (sent.has(`${d}|${k}`) ? 'sent' : undefined),
    account: () => undefined,
  };
}

const program = [
  participant({ id: 'r1', email: 'rita@example.com', referralCount: 1, createdAt: new Date('2025-01-01T00:00:00Z') }),
  participant({
    id: 'f1',
    email: 'fred@example.com',
    referrerId: 'r1',
    referralStatus: 'converted',
    convertedAt: new Date('2025-01-05T00:00:00Z'),
    createdAt: new Date('2025-01-02T00:00:00Z'),
    referralCount: 0,
  }),
];

describe('planner on an empty state', () => {
  it('identifies everyone in both destinations and derives the history events', async () => {
    const ops = operations(await plan(program));
    const summary = ops.map((o) => `${o.destination} ${o.kind === 'track' ? o.name : o.kind} ${o.userId}`);
    expect(summary.sort()).toEqual(
      [
        'segment identify rita@example.com',
        'segment Referral Program Joined rita@example.com',
        'customerio identify rita@example.com',
        'customerio referral_program_joined rita@example.com',
        'segment identify fred@example.com',
        'segment Referral Program Joined fred@example.com',
        'segment Referral Made rita@example.com',
        'segment Referral Converted fred@example.com',
        'customerio identify fred@example.com',
        'customerio referral_program_joined fred@example.com',
        'customerio referral_friend_signed_up rita@example.com',
        'customerio referral_converted fred@example.com',
      ].sort(),
    );
  });

  it('shapes the exact Segment and Customer.io payloads', async () => {
    const ops = operations(await plan(program));
    const made = ops.find((o) => o.kind === 'track' && o.event === 'referralMade' && o.destination === 'segment')!;
    expect(made.payload).toMatchObject({
      type: 'track',
      userId: 'rita@example.com',
      event: 'Referral Made',
      timestamp: '2025-01-02T00:00:00.000Z',
      properties: { friend_id: 'f1', referrer_id: 'r1', campaign_id: 'camp1' },
    });
    expect(made.payload.messageId).toMatch(/^rs1-[0-9a-f]{40}$/);
    const converted = ops.find((o) => o.kind === 'track' && o.event === 'converted' && o.destination === 'customerio')!;
    expect(converted.payload).toMatchObject({
      type: 'person',
      action: 'event',
      identifiers: { email: 'fred@example.com' },
      name: 'referral_converted',
      timestamp: Date.parse('2025-01-05T00:00:00Z') / 1000,
    });
    const identify = ops.find((o) => o.kind === 'identify' && o.destination === 'customerio' && o.userId === 'fred@example.com')!;
    expect(identify.payload).toMatchObject({
      type: 'person',
      action: 'identify',
      identifiers: { email: 'fred@example.com' },
      attributes: { referred_by: 'rita@example.com', acquisition_channel: 'referral', referral_status: 'converted' },
    });
  });

  it('reports a participant without an identity as invalid and plans the rest', async () => {
    const items = await plan([...program, participant({ id: 'x', email: undefined })]);
    expect(items.filter((i) => i.type === 'invalid')).toEqual([
      expect.objectContaining({ reason: expect.stringContaining('no email address') as unknown, participantId: 'x' }),
    ]);
    expect(operations(items).filter((o) => o.kind === 'identify')).toHaveLength(4);
  });

  it('reports an operation over 32 KB as invalid instead of planning it', async () => {
    const config = defaultConfig();
    config.metadataTraits = ['bio'];
    const big = participant({ id: 'big', metadata: { bio: 'x'.repeat(40_000) } });
    const items = await plan([big], { config, destinations: ['segment'] });
    expect(items.filter((i) => i.type === 'invalid').map((i) => (i.type === 'invalid' ? i.reason : ''))).toEqual([
      expect.stringMatching(/^Segment identify for big@example.com is not sent: the message as the Segment SDK sends it is [\d,]+ bytes, [\d,]+ over Segment's 32,768-byte per-event limit$/),
    ]);
  });
});

describe('planner against a baseline', () => {
  it('plans nothing when nothing changed and every event was sent', async () => {
    const first = await plan(program);
    const again = await plan(program, { baseline: baselineFrom(first) });
    expect(operations(again)).toEqual([]);
    expect(again.filter((i) => i.type === 'unchanged')).toHaveLength(4);
    expect(again.filter((i) => i.type === 'deduped')).toHaveLength(8);
  });

  it('re-identifies with before → after and adds Referral Tier Changed when the tier moves', async () => {
    const first = await plan(program);
    const moved = [{ ...program[0]!, referralCount: 5 }, program[1]!];
    const ops = operations(await plan(moved, { baseline: baselineFrom(first) }));
    const identify = ops.find((o) => o.kind === 'identify' && o.destination === 'segment')!;
    expect(identify).toMatchObject({ change: 'changed', userId: 'rita@example.com' });
    expect(identify.kind === 'identify' && identify.changes).toEqual([
      { trait: 'referral_tier', before: 'active', after: 'power_referrer' },
      { trait: 'referral_count', before: 1, after: 5 },
    ]);
    const tier = ops.filter((o) => o.kind === 'track' && o.event === 'tierChanged');
    expect(tier.map((o) => [o.destination, o.payload])).toEqual([
      ['segment', expect.objectContaining({ event: 'Referral Tier Changed', properties: expect.objectContaining({ previous_tier: 'active', tier: 'power_referrer' }) as unknown })],
      ['customerio', expect.objectContaining({ name: 'referral_tier_changed', timestamp: NOW.getTime() / 1000 })],
    ]);
    expect(ops).toHaveLength(4);
  });

  it('backfill re-identifies everyone but keeps events deduped by the ledger', async () => {
    const first = await plan(program);
    const ops = operations(await plan(program, { baseline: baselineFrom(first), mode: 'backfill' }));
    expect(ops.map((o) => o.kind)).toEqual(['identify', 'identify', 'identify', 'identify']);
    expect(ops.every((o) => o.kind === 'identify' && o.change === 'refresh')).toBe(true);
  });

  it('backfill --resend sends the events again with the same ids', async () => {
    const first = await plan(program);
    const again = operations(await plan(program, { baseline: baselineFrom(first), mode: 'backfill', resend: true }));
    const ids = (ops: Operation[]) => ops.filter((o) => o.kind === 'track').map((o) => o.payload.messageId ?? o.payload.id);
    expect(ids(again)).toEqual(ids(operations(first)));
  });

  it('never sends null over a known value unless syncNulls is on', async () => {
    const first = await plan(program, { destinations: ['segment'] });
    const withoutName = [{ ...program[0]!, firstName: undefined }, program[1]!];
    const withName = [{ ...program[0]!, firstName: 'Rita' }, program[1]!];
    const named = await plan(withName, { destinations: ['segment'], baseline: baselineFrom(first) });
    const baseline = baselineFrom(first, named);
    expect(operations(await plan(withoutName, { destinations: ['segment'], baseline }))).toEqual([]);
    const config = defaultConfig();
    config.syncNulls = true;
    const ops = operations(await plan(withoutName, { destinations: ['segment'], baseline, config }));
    expect(ops).toHaveLength(1);
    expect(ops[0]!.payload).toMatchObject({ traits: { firstName: null } });
  });

  it('hashes identify traits the way the state stores them', () => {
    const config = defaultConfig();
    const traits = destinationTraits(computeTraits(program[0]!, { referredBy: undefined, count: 1 }, config), 'segment', config);
    expect(stableHash(traits)).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('planner on messy identities', () => {
  const invalid = (items: PlanItem[]) => items.flatMap((i) => (i.type === 'invalid' ? [i] : []));
  const warnings = (items: PlanItem[]) => items.flatMap((i) => (i.type === 'warning' ? [i.message] : []));

  it('plans one identity once: emails differing in case and spaces are one person, the first row wins', async () => {
    const people = [
      participant({ id: 'p1', email: 'Alice@X.com' }),
      participant({ id: 'p2', email: ' alice@x.com ' }),
      participant({ id: 'p3', email: 'bob@x.com', referrerId: 'p2' }),
    ];
    const items = await plan(people);
    expect(invalid(items)).toEqual([
      expect.objectContaining({ participantId: 'p2', reason: expect.stringMatching(/user id "alice@x\.com" already belongs to participant p1.*participant p2/) as unknown }),
    ]);
    const identifies = operations(items).filter((o) => o.kind === 'identify');
    expect(identifies.map((o) => `${o.destination} ${o.userId}`).sort()).toEqual([
      'customerio alice@x.com',
      'customerio bob@x.com',
      'segment alice@x.com',
      'segment bob@x.com',
    ]);
    // The friend referred through the second row's id still credits the one person.
    const made = operations(items).filter((o) => o.kind === 'track' && o.event === 'referralMade');
    expect(made.map((o) => o.userId)).toEqual(['alice@x.com', 'alice@x.com']);
  });

  it('with --user-id metadata.<key>, people sharing the value are reported, not identified seven times', async () => {
    const config = defaultConfig();
    config.identity = { kind: 'metadata', key: 'Company' };
    const people = Array.from({ length: 7 }, (_, i) => participant({ id: `c${i}`, metadata: { Company: 'Acme' } }));
    const items = await plan(people, { config, destinations: ['segment'] });
    expect(operations(items).filter((o) => o.kind === 'identify')).toHaveLength(1);
    expect(invalid(items).map((i) => i.participantId)).toEqual(['c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
  });

  it('a participant named as their own referrer gets a warning, no Referral Made and no credit', async () => {
    const people = [
      participant({ id: 's1', email: 'sam@x.com', referrerId: 's1', referralStatus: 'converted', joinedVia: 'PARTICIPANT' }),
      participant({ id: 's2', email: 'sue@x.com', referrerId: 'SUE@x.com ' }),
    ];
    const items = await plan(people);
    expect(warnings(items)).toEqual([
      expect.stringContaining('participant s1 is named as their own referrer ("s1")'),
      expect.stringContaining('participant s2 is named as their own referrer ("SUE@x.com ")'),
    ]);
    const ops = operations(items);
    expect(ops.filter((o) => o.kind === 'track' && (o.event === 'referralMade' || o.event === 'converted'))).toEqual([]);
    const sam = ops.find((o) => o.kind === 'identify' && o.destination === 'segment' && o.userId === 'sam@x.com')!;
    expect(sam.payload.traits).toMatchObject({ referral_count: 0, referral_tier: 'new_participant', acquisition_channel: 'organic' });
    expect(sam.payload.traits).not.toHaveProperty('referred_by');
    expect(sam.payload.traits).not.toHaveProperty('referral_status');
  });

  it('gives every tier transition its own key: 4 → 5 → 4 → 5 is three Referral Tier Changed', async () => {
    const at = (count: number) => [participant({ id: 't1', email: 'tess@x.com', referralCount: count })];
    const plans = [await plan(at(4))];
    const tierKeys: string[] = [];
    for (const count of [5, 4, 5]) {
      const next = await plan(at(count), { baseline: baselineFrom(...plans) });
      plans.push(next);
      tierKeys.push(...operations(next).filter((o) => o.kind === 'track' && o.event === 'tierChanged' && o.destination === 'segment').map((o) => o.key));
    }
    expect(tierKeys).toHaveLength(3);
    expect(new Set(tierKeys).size).toBe(3);
    // A run that crashed before its identify was acknowledged plans the same transition with the same key.
    const replay = await plan(at(5), { baseline: baselineFrom(...plans.slice(0, 3)) });
    const replayKeys = operations(replay).filter((o) => o.kind === 'track' && o.event === 'tierChanged' && o.destination === 'segment').map((o) => o.key);
    expect(replayKeys).toEqual([tierKeys[2]]);
  });
});
