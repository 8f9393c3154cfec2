import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import type { Participant, SourceRecord } from '../../src/model/participant.js';
import { computeTraits, destinationTraits } from '../../src/model/traits.js';
import type { BaselineView, Operation, PlanItem } from '../../src/plan/types.js';
import { celloCsvSource } from '../../src/sources/cello/csv.js';
import { normalizeGrowsurfParticipant, type GsParticipant } from '../../src/sources/growsurf/api.js';
import { tempDir } from '../support/cli.js';
import { participant } from '../support/participants.js';
import { planItems } from '../support/planner.js';

/**
 * Issue 17, guarantee 8: a null from a source (a GrowSurf field sent as null, a Cello blank) is no value. It is
 * never sent as a trait; only `--sync-nulls` sends null, and only for a trait the destination holds that the
 * source no longer has. A field of the wrong type never crashes the read either.
 */

const YEARS = { min: 2000, max: 2030 };
const METADATA_KEYS = ['plan', 'company', 'seats', 'vip'];

function configWithMetadata(syncNulls = false): Config {
  const config = defaultConfig();
  config.metadataTraits = [...METADATA_KEYS];
  config.syncNulls = syncNulls;
  return config;
}

const operations = (items: PlanItem[]): Operation[] => items.flatMap((i) => (i.type === 'operation' ? [i.operation] : []));

/** Every trait value an identify payload carries (Segment `traits`, Customer.io `attributes`). */
function payloadTraits(op: Operation): Record<string, unknown> {
  const payload = op.payload as { traits?: Record<string, unknown>; attributes?: Record<string, unknown> };
  return payload.traits ?? payload.attributes ?? {};
}

/** A field as a source may send it: absent, null, empty, what the API documents, or something of another type. */
function field<T>(documented: fc.Arbitrary<T>): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constant(undefined),
    fc.constant(null),
    fc.constant(''),
    documented,
    documented,
    fc.oneof(fc.integer(), fc.boolean(), fc.constant({ nested: true }), fc.constant(['x'])),
  );
}

const text = fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/);
const metadataValue = fc.oneof(fc.constant(null), text, fc.integer({ min: 0, max: 99 }), fc.boolean(), fc.constant({ deep: 1 }));

/** A GrowSurf participant object with any field null, empty, missing or mistyped (research/growsurf.md §3). */
const growsurfParticipant = fc.record(
  {
    id: text,
    email: field(text.map((t) => `${t}@example.com`)),
    firstName: field(text),
    lastName: field(text),
    createdAt: field(fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2026, 0, 1) })),
    shareUrl: field(text.map((t) => `https://x.example/?grsf=${t}`)),
    vanityKeys: field(fc.array(fc.oneof(text, fc.constant(null), fc.constant('')), { maxLength: 2 })),
    referralCount: field(fc.nat(30)),
    leadCount: field(fc.nat(30)),
    referralSource: field(fc.constantFrom('DIRECT', 'PARTICIPANT')),
    referralStatus: field(fc.constantFrom('CREDIT_PENDING', 'CREDIT_AWARDED', 'CREDIT_EXPIRED', 'SOMETHING_NEW')),
    referredBy: field(text),
    referrer: field(fc.record({ id: field(text), email: field(text.map((t) => `${t}@example.com`)), metadata: field(fc.dictionary(fc.constantFrom(...METADATA_KEYS), metadataValue)) })),
    rewards: field(fc.array(field(fc.record({ id: field(text), status: field(fc.constantFrom('PENDING', 'FULFILLED')), approvedAt: field(fc.integer({ min: Date.UTC(2024, 0, 1), max: Date.UTC(2026, 0, 1) })) })), { maxLength: 2 })),
    metadata: field(fc.dictionary(fc.constantFrom(...METADATA_KEYS), metadataValue)),
  },
  { requiredKeys: ['id'] },
);

describe('nulls from a source are never trait values (guarantee 8)', () => {
  it('GrowSurf: any field null, empty, missing or mistyped: never a crash, never a null or empty trait, at either destination', () => {
    const config = configWithMetadata();
    fc.assert(
      fc.property(growsurfParticipant, (raw) => {
        const result = normalizeGrowsurfParticipant(raw as GsParticipant, 'camp', 1_750_000_000_000, YEARS);
        if ('invalid' in result) {
          // Only the fields that say who someone is make a participant invalid.
          expect(result.invalid).toMatch(/field "(email|referredBy|referrer\.id|referrer\.email)" is .*, not text; the participant is not sent|date/);
          return;
        }
        const p = result.participant;
        for (const key of ['email', 'firstName', 'lastName', 'referralCode', 'referralLink', 'referrerId', 'joinedVia', 'referralStatusRaw'] as const) {
          const value = p[key];
          if (value !== undefined) expect(typeof value === 'string' && value.trim() !== '', `${key} = ${JSON.stringify(value)}`).toBe(true);
        }
        for (const reward of p.rewards) expect(typeof reward.id === 'string' && reward.id !== '').toBe(true);
        const traits = computeTraits(p, { referredBy: p.referrerId, count: p.referralCount ?? 0 }, config);
        for (const destination of ['segment', 'customerio'] as const) {
          const out = destinationTraits(traits, destination, config);
          for (const [name, value] of Object.entries(out)) expect(value === null || value === '', `${destination} trait ${name}`).toBe(false);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('the planner, given null metadata: without --sync-nulls no null at all; with it, null only over a value the destination holds', async () => {
    const snapshot = fc.dictionary(fc.constantFrom(...METADATA_KEYS), fc.oneof(fc.constant(null), text, fc.nat(9)));
    // The interesting case must come up: a null sent, with --sync-nulls, over a value held.
    let nullsSent = 0;
    await fc.assert(
      fc.asyncProperty(snapshot, snapshot, fc.boolean(), async (before, after, syncNulls) => {
        const config = configWithMetadata(syncNulls);
        const first = operations(await planItems([participant({ id: 'p1', metadata: before })], { config }));
        for (const op of first.filter((o) => o.kind === 'identify')) expect(Object.values(payloadTraits(op))).not.toContain(null);
        // What the destinations hold after the first sync: its identifies, acknowledged.
        const held = new Map(first.flatMap((o) => (o.kind === 'identify' ? [[`${o.destination}|${o.userId}`, { traits: o.traits, hash: o.traitsHash, tierChanges: o.tierChanges }] as const] : [])));
        const baseline: BaselineView = { identity: (d, u) => held.get(`${d}|${u}`), delivery: () => 'sent', account: () => undefined };
        const second = operations(await planItems([participant({ id: 'p1', metadata: after })], { config, baseline }));
        for (const op of second.filter((o) => o.kind === 'identify')) {
          const holds = held.get(`${op.destination}|${op.userId}`)!.traits;
          for (const [name, value] of Object.entries(payloadTraits(op))) {
            if (value !== null) continue;
            nullsSent += 1;
            expect(syncNulls, `null ${name} sent without --sync-nulls`).toBe(true);
            expect(holds[name], `null ${name} sent over nothing`).not.toBeUndefined();
            expect(holds[name]).not.toBeNull();
            expect(after[name] ?? null, `null ${name} sent though the source has a value`).toBeNull();
          }
        }
      }),
      { numRuns: 150 },
    );
    expect(nullsSent).toBeGreaterThan(0);
  });

  it('Cello: blank cells in every optional column are no value, never a trait', async () => {
    const dir = tempDir();
    const signups = join(dir, 'conv_signups.csv');
    writeFileSync(
      signups,
      'datetime,date,month,week,productuserid,campaign_ucc,newuserproductuserid,status,plan\n' +
        '2025-06-01T10:00:00Z,,,,ref_1,,nu_1,Included,\n' +
        '2025-06-02T10:00:00Z,,,,,,nu_2,,\n',
    );
    const aggregates = join(dir, 'event_details_aggregates-all.csv');
    writeFileSync(aggregates, 'productuserid,R_Active,R_Sharing,R_Reward,NU_Views,NU_Views_Unique,NU_Signups,NU_Purchases,plan\nref_1,,,,,,,,\n');
    const source = celloCsvSource({ paths: [signups, aggregates], programId: 'prog', tierBasis: 'signups' });
    const people: Participant[] = [];
    for await (const record of source.records() as AsyncIterable<SourceRecord>) if (record.kind === 'participant') people.push(record.participant);
    expect(people.map((p) => p.id).sort()).toEqual(['nu_1', 'nu_2', 'ref_1']);
    const config = configWithMetadata();
    config.metadataTraits.push('cello_signups', 'cello_shares', 'cello_referral_ucc');
    config.identity = { kind: 'id' };
    const ops = operations(await planItems(people, { config }));
    const identifies = ops.filter((o) => o.kind === 'identify');
    expect(identifies).toHaveLength(6);
    for (const op of identifies) {
      for (const [name, value] of Object.entries(payloadTraits(op))) expect(value === null || value === '', `${op.userId} ${name}`).toBe(false);
    }
  });
});
