import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import type { Destination } from '../../src/config/defaults.js';
import type { Participant } from '../../src/model/participant.js';
import { scanDirectory } from '../../src/model/referrer-directory.js';
import { computeTraits, destinationTraits } from '../../src/model/traits.js';
import { stableHash } from '../../src/model/ids.js';
import { planOperations } from '../../src/plan/planner.js';
import { EMPTY_BASELINE, type BaselineView, type DeliveryStatus, type PlanItem, type Operation } from '../../src/plan/types.js';
import { participant, records } from '../support/participants.js';

const NOW = new Date('2026-11-23T12:00:00Z');
const NAMESPACES = { segment: 'ns/segment/-', customerio: 'ns/customerio/-' };

async function plan(
  people: Participant[],
  options: { baseline?: BaselineView; mode?: 'sync' | 'backfill'; config?: Config; destinations?: Destination[]; resend?: boolean } = {},
): Promise<PlanItem[]> {
  const config = options.config ?? defaultConfig();
  const { directory, duplicates } = await scanDirectory(records(people), config.identity);
  const items: PlanItem[] = [];
  for await (const item of planOperations(records(people), {
    config,
    destinations: options.destinations ?? ['segment', 'customerio'],
    mode: options.mode ?? 'sync',
    resend: options.resend ?? false,
    now: NOW,
    namespaces: NAMESPACES,
    directory,
    duplicates,
    baseline: options.baseline ?? EMPTY_BASELINE,
  })) {
    items.push(item);
  }
  return items;
}

const operations = (items: PlanItem[]): Operation[] => items.flatMap((i) => (i.type === 'operation' ? [i.operation] : []));

/** A baseline holding what earlier syncs of these plans acknowledged, every event sent. */
function baselineFrom(...plans: PlanItem[][]): BaselineView {
  const identities = new Map<string, { traits: Record<string, string | number | boolean | null>; hash: string }>();
  const sent = new Set<string>();
  for (const op of plans.flatMap(operations)) {
    if (op.kind === 'identify') identities.set(`${op.destination}|${op.userId}`, { traits: op.traits, hash: op.traitsHash });
    else sent.add(`${op.destination}|${op.key}`);
  }
  return {
    identity: (d, u) => identities.get(`${d}|${u}`),
    delivery: (d, k): DeliveryStatus | undefined => (sent.has(`${d}|${k}`) ? 'sent' : undefined),
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
    const summary = ops.map((o) => `${o.destination} ${o.kind === 'identify' ? 'identify' : o.name} ${o.userId}`);
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
