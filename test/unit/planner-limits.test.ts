import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import type { Destination } from '../../src/config/defaults.js';
import { measureOperation } from '../../src/destinations/limits.js';
import type { Participant } from '../../src/model/participant.js';
import { type BaselineView, type IdentifyOperation, type Operation, type PlanItem } from '../../src/plan/types.js';
import { participant } from '../support/participants.js';
import { planItems } from '../support/planner.js';


const plan = planItems;

const operations = (items: PlanItem[]): Operation[] => items.flatMap((i) => (i.type === 'operation' ? [i.operation] : []));
const identifies = (items: PlanItem[], destination: Destination): IdentifyOperation[] =>
  operations(items).filter((o): o is IdentifyOperation => o.kind === 'identify' && o.destination === destination);
const warnings = (items: PlanItem[]): Extract<PlanItem, { type: 'warning' }>[] => items.flatMap((i) => (i.type === 'warning' ? [i] : []));
const invalid = (items: PlanItem[]): Extract<PlanItem, { type: 'invalid' }>[] => items.flatMap((i) => (i.type === 'invalid' ? [i] : []));

/** A baseline holding what these identifies acknowledged. */
function acknowledged(ops: IdentifyOperation[]): BaselineView {
  const map = new Map(ops.map((op) => [`${op.destination}|${op.userId}`, { traits: op.traits, hash: op.traitsHash }]));
  return { identity: (d, u) => map.get(`${d}|${u}`), delivery: () => undefined, account: () => undefined };
}

describe('Segment: the 32 KB check is on the message as the SDK sends it', () => {
  /** A participant whose Segment identify is exactly `target` bytes on the wire. */
  async function personOfWireSize(target: number): Promise<Participant> {
    const probe = participant({ id: 'p1', firstName: '' });
    const [op] = identifies(await plan([probe], { destinations: ['segment'] }), 'segment');
    return participant({ id: 'p1', firstName: 'x'.repeat(target - measureOperation('segment', op!.payload).wireBytes) });
  }

  it('plans an identify of exactly 32,768 wire bytes with its wire size, and reports one a byte over', async () => {
    const at = await plan([await personOfWireSize(32_768)], { destinations: ['segment'] });
    expect(identifies(at, 'segment')[0]!.bytes).toBe(32_768);
    expect(invalid(at)).toEqual([]);

    const over = await plan([await personOfWireSize(32_769)], { destinations: ['segment'] });
    expect(identifies(over, 'segment')).toEqual([]);
    const [item] = invalid(over);
    // The payload alone is well under 32 KB: only the wire size catches it.
    expect(item).toMatchObject({ participantId: 'p1', destination: 'segment', limits: [{ limit: 'segment.event_bytes', size: 32_769, max: 32_768 }] });
    expect(item!.reason).toBe(
      "Segment identify for p1@example.com is not sent: the message as the Segment SDK sends it is 32,769 bytes, 1 over Segment's 32,768-byte per-event limit",
    );
    // The person's events are unaffected.
    expect(operations(over).map((o) => o.kind)).toEqual(['track']);
  });
});

describe('Customer.io: an attribute over its limit is left out; the rest of the identify goes', () => {
  const long = 'Ä'.repeat(600); // 1,200 bytes in UTF-8

  it('sends the identify without it, warns naming the attribute, limit and size, and Segment still gets it', async () => {
    const items = await plan([participant({ id: 'p1', firstName: long, lastName: 'Short' })]);
    const [cio] = identifies(items, 'customerio');
    expect(cio!.payload.attributes).not.toHaveProperty('first_name');
    expect(cio!.payload.attributes).toMatchObject({ last_name: 'Short', email: 'p1@example.com', referral_tier: 'new_participant' });
    expect(cio!.traits).not.toHaveProperty('first_name');
    expect(identifies(items, 'segment')[0]!.payload.traits).toMatchObject({ firstName: long });
    expect(warnings(items)).toEqual([
      {
        type: 'warning',
        message:
          'Customer.io attribute "first_name" of p1@example.com is left out of the identify: attributes.first_name is 1,200 bytes, 200 over ' +
          "Customer.io's 1,000-byte limit on an attribute value. The rest is sent; Customer.io keeps its current value",
        location: undefined,
        destination: 'customerio',
        limits: [{ destination: 'customerio', limit: 'customerio.attribute_value_bytes', size: 1200, max: 1000, unit: 'bytes', field: 'attributes.first_name', attribute: 'first_name' }],
        code: 'attribute-left-out/customerio/first_name',
      },
    ]);
  });

  it('keeps the old value in the baseline, so the next sync sends no identify for it', async () => {
    const first = await plan([participant({ id: 'p1', firstName: 'Anna' })]);
    const baseline = acknowledged([...identifies(first, 'customerio'), ...identifies(first, 'segment')]);
    const next = await plan([participant({ id: 'p1', firstName: long })], { baseline, destinations: ['customerio'] });
    expect(identifies(next, 'customerio')).toEqual([]);
    expect(next).toContainEqual({ type: 'unchanged', destination: 'customerio', userId: 'p1@example.com' });
    expect(warnings(next)).toHaveLength(1);
  });

  it('with --sync-nulls, still never sends null over the value it left out', async () => {
    const config = defaultConfig();
    config.syncNulls = true;
    const first = await plan([participant({ id: 'p1', firstName: 'Anna', lastName: 'Old' })], { config, destinations: ['customerio'] });
    const baseline = acknowledged(identifies(first, 'customerio'));
    const next = await plan([participant({ id: 'p1', firstName: long })], { config, baseline, destinations: ['customerio'] });
    const [op] = identifies(next, 'customerio');
    expect(op!.payload.attributes).toMatchObject({ last_name: null, first_name: 'Anna' });
    expect(op!.traits.first_name).toBe('Anna');
  });

  it('reports an event whose name is over 100 bytes as invalid, and an attribute name over 150 bytes is left out', async () => {
    const config = defaultConfig();
    config.eventNames.customerio.joined = 'j'.repeat(101);
    const key = 'k'.repeat(151);
    config.metadataTraits = [key];
    const items = await plan([participant({ id: 'p1', metadata: { [key]: 'v' } })], { config, destinations: ['customerio'] });
    expect(invalid(items).map((i) => i.limits?.map((l) => l.limit))).toEqual([['customerio.event_name_bytes']]);
    expect(invalid(items)[0]!.reason).toMatch(/^Customer\.io event "j+" for p1@example\.com is not sent: name is 101 bytes, 1 over Customer\.io's 100-byte limit on an event name$/);
    expect(warnings(items).map((w) => w.limits?.[0]?.limit)).toEqual(['customerio.attribute_name_bytes']);
    expect(identifies(items, 'customerio')[0]!.payload.attributes).not.toHaveProperty(key);
  });
});

describe('U+FFFD is never sent', () => {
  it('leaves out an identify attribute holding it (every destination) and reports an event holding it', async () => {
    const items = await plan([participant({ id: 'p1', firstName: 'Jos\uFFFD' }), participant({ id: 'p2', referralCode: 'C\uFFFDDE' })]);
    expect(warnings(items).map((w) => `${w.destination} ${w.limits?.[0]?.limit} ${w.limits?.[0]?.attribute}`).sort()).toEqual([
      'customerio replacement_character first_name',
      'customerio replacement_character referral_code',
      'segment replacement_character firstName',
      'segment replacement_character referral_code',
    ]);
    // p2's joined event carries the code: it is reported for each destination, not sent.
    expect(invalid(items).map((i) => `${i.destination} ${i.participantId} ${i.limits?.[0]?.field}`).sort()).toEqual([
      'customerio p2 attributes',
      'segment p2 properties',
    ]);
    for (const op of operations(items)) expect(JSON.stringify(op.payload)).not.toContain('\uFFFD');
    expect(identifies(items, 'segment')).toHaveLength(2);
    expect(identifies(items, 'customerio')).toHaveLength(2);
  });
});
