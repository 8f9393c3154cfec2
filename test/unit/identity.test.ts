import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { canonicalKey, normalizeEmail } from '../../src/model/identity.js';
import type { Participant } from '../../src/model/participant.js';
import { scanDirectory } from '../../src/model/referrer-directory.js';
import type { Operation, PlanItem } from '../../src/plan/types.js';
import { participant } from '../support/participants.js';
import { planItems } from '../support/planner.js';

/**
 * Guarantee 6: identity is one person, whatever the bytes. Identity keys compare (and are sent) in canonical
 * form; referrals that make no sense (self, a referrer nobody in the program is, a cycle) earn no credit.
 */

const operations = (items: PlanItem[]): Operation[] => items.flatMap((i) => (i.type === 'operation' ? [i.operation] : []));
const invalid = (items: PlanItem[]) => items.flatMap((i) => (i.type === 'invalid' ? [i] : []));
const warnings = (items: PlanItem[]) => items.flatMap((i) => (i.type === 'warning' ? [i.message] : []));
const identifies = (items: PlanItem[]) => operations(items).filter((o) => o.kind === 'identify');
const made = (items: PlanItem[]) => operations(items).filter((o) => o.kind === 'track' && o.event === 'referralMade');
const segmentTraits = (items: PlanItem[], userId: string) =>
  identifies(items).find((o) => o.destination === 'segment' && o.userId === userId)?.payload.traits as Record<string, unknown> | undefined;

const NFC = 'josé@x.com'.normalize('NFC');
const NFD = NFC.normalize('NFD');

/** The ways a key's bytes can differ while every person reading it sees the same text. */
const VARIANTS: [string, (key: string) => string][] = [
  ['NFD (decomposed accents)', (k) => k.normalize('NFD')],
  ['a zero-width space inside', (k) => `${k.slice(0, 2)}\u200b${k.slice(2)}`],
  ['a zero-width joiner and non-joiner', (k) => `\u200d${k.slice(0, 3)}\u200c${k.slice(3)}`],
  ['a byte order mark in front', (k) => `\ufeff${k}`],
  ['a word joiner', (k) => `${k}\u2060`],
  ['a soft hyphen', (k) => `${k.slice(0, 1)}\u00ad${k.slice(1)}`],
  ['bidi marks', (k) => `\u200e${k}\u200f`],
  ['a bidi embedding/override pair', (k) => `\u202a\u202e${k}\u202c`],
  ['a bidi isolate', (k) => `\u2066${k}\u2069`],
  ['a variation selector', (k) => `${k.slice(0, 1)}\ufe0f${k.slice(1)}`],
  ['surrounding spaces and a no-break space', (k) => ` \u00a0${k}\t`],
  ['NFD with a zero-width space between letter and accent', (k) => k.normalize('NFD').replace('\u0301', '\u200b\u0301')],
];

describe('canonical identity keys', () => {
  it.each(VARIANTS)('%s: the same key as the plain NFC text', (_name, variant) => {
    expect(canonicalKey(variant(NFC))).toBe(NFC);
    expect(normalizeEmail(variant(NFC.toUpperCase()))).toBe(NFC);
  });

  it('any string with invisible code points inserted, in NFC or NFD, with spaces around, has one key; the key is its own key', () => {
    const invisible = fc.constantFrom('\u00ad', '\u034f', '\u061c', '\u180e', '\u200b', '\u200c', '\u200d', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2060', '\u2061', '\u2066', '\u2067', '\u2068', '\u2069', '\ufeff', '\ufe0f', '\u{e0001}', '\u{e0041}');
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.array(fc.tuple(fc.nat(), invisible)), fc.boolean(), fc.constantFrom('', ' ', '\u00a0', '\t', '\u3000'), (text, inserts, decompose, pad) => {
        let variant = decompose ? text.normalize('NFD') : text;
        for (const [at, char] of inserts) {
          // Between code points, never inside a surrogate pair.
          const points = [...variant];
          const i = at % (points.length + 1);
          variant = [...points.slice(0, i), char, ...points.slice(i)].join('');
        }
        const key = canonicalKey(text);
        expect(canonicalKey(`${pad}${variant}${pad}`)).toBe(key);
        expect(canonicalKey(key)).toBe(key);
        expect(key).not.toMatch(/\p{Default_Ignorable_Code_Point}/u);
        expect(key).toBe(key.normalize('NFC'));
      }),
      { numRuns: 500 },
    );
  });
});

describe('rows that differ only by invisible bytes are one person', () => {
  it.each(VARIANTS)('emails, %s: one identify per destination, the second row reported like a case-variant email', async (_name, variant) => {
    const items = await planItems([participant({ id: 'p1', email: NFC }), participant({ id: 'p2', email: variant(NFC) })]);
    expect(identifies(items).map((o) => `${o.destination} ${o.userId}`).sort()).toEqual([`customerio ${NFC}`, `segment ${NFC}`]);
    expect(invalid(items)).toEqual([
      expect.objectContaining({ participantId: 'p2', reason: expect.stringContaining(`user id "${NFC}" already belongs to participant p1`) as unknown }),
    ]);
  });

  it.each(VARIANTS)('participant ids under --user-id id, %s: one person, the repeated id reported', async (_name, variant) => {
    const config = idRule();
    const id = 'usr_josé_1'.normalize('NFC');
    const items = await planItems([participant({ id, email: 'a@x.com' }), participant({ id: variant(id), email: 'b@x.com' })], { config });
    expect(identifies(items).map((o) => `${o.destination} ${o.userId}`).sort()).toEqual([`customerio ${id}`, `segment ${id}`]);
    // Without file locations the directory's repeated-id check cannot name the row; the user id's claim reports it.
    expect(invalid(items)).toEqual([expect.objectContaining({ reason: expect.stringContaining(`user id "${id}" already belongs to participant ${id}`) as unknown })]);
  });

  it.each(VARIANTS)('metadata user ids, %s: one person, the second reported', async (_name, variant) => {
    const config = defaultConfig();
    config.identity = { kind: 'metadata', key: 'uid' };
    const uid = 'Zoë-7'.normalize('NFC');
    const items = await planItems([participant({ id: 'a', metadata: { uid } }), participant({ id: 'b', metadata: { uid: variant(uid) } })], { config, destinations: ['segment'] });
    expect(identifies(items).map((o) => o.userId)).toEqual([uid]);
    expect(invalid(items).map((i) => i.participantId)).toEqual(['b']);
  });

  it.each(VARIANTS)('a referrer named with %s is the one person, credited once', async (_name, variant) => {
    const people = [
      participant({ id: 'r1', email: NFC }),
      participant({ id: 'f1', email: 'f1@x.com', referrerId: variant(NFC), referralStatus: 'converted' }),
      participant({ id: 'f2', email: 'f2@x.com', referrerId: variant('r1'), referralStatus: 'converted' }),
    ];
    const items = await planItems(people);
    expect(warnings(items)).toEqual([]);
    expect(made(items).map((o) => `${o.destination} ${o.userId}`).sort()).toEqual([`customerio ${NFC}`, `customerio ${NFC}`, `segment ${NFC}`, `segment ${NFC}`]);
    expect(segmentTraits(items, NFC)).toMatchObject({ referral_count: 2 });
    expect(segmentTraits(items, 'f1@x.com')).toMatchObject({ referred_by: NFC });
  });

  it.each(VARIANTS)('a participant id repeated with %s is the same participant: the later row is a duplicate', async (_name, variant) => {
    const id = 'usr_josé_1'.normalize('NFC');
    async function* rows() {
      yield { kind: 'participant' as const, participant: participant({ id, email: 'a@x.com' }), location: { file: 'x.csv', line: 2 } };
      yield { kind: 'participant' as const, participant: participant({ id: variant(id), email: 'b@x.com' }), location: { file: 'x.csv', line: 3 } };
    }
    // Under any rule: one id names one participant, whose operations are keyed by it.
    const { directory, duplicates } = await scanDirectory(rows(), { kind: 'email' });
    expect([...duplicates]).toEqual(['x.csv:3']);
    expect(directory.resolve(variant(id))).toBe('a@x.com');
    directory.close();
  });

  it('sends the canonical form: an NFD email with a BOM is identified, and its email trait set, as NFC', async () => {
    const items = await planItems([participant({ id: '\ufeffp1\u200b', email: `\ufeff${NFD.toUpperCase()}` })]);
    const [segment, customerio] = ['segment', 'customerio'].map((d) => identifies(items).find((o) => o.destination === d)!);
    expect(segment!.userId).toBe(NFC);
    expect(segment!.payload).toMatchObject({ userId: NFC, traits: { email: NFC } });
    expect(JSON.stringify(customerio!.payload)).toContain(JSON.stringify(NFC));
    expect(JSON.stringify(customerio!.payload)).not.toContain(NFD);
    // The participant id in events and keys is canonical too.
    const joined = operations(items).find((o) => o.kind === 'track' && o.destination === 'segment')!;
    expect(joined.participantId).toBe('p1');
    expect(joined.payload).toMatchObject({ properties: { participant_id: 'p1' } });
  });

  it('the same participant written NFC in one run and NFD in the next plans the same operation ids', async () => {
    const once = operations(await planItems([participant({ id: 'josé'.normalize('NFC'), email: NFC })]));
    const again = operations(await planItems([participant({ id: 'josé'.normalize('NFD'), email: `${NFD}\u200b` })]));
    expect(again.map((o) => o.key)).toEqual(once.map((o) => o.key));
  });

  it('account ids compare canonical: two spellings of one company are one account', async () => {
    const rule = { kind: 'metadata' as const, key: 'company' };
    const { accountIdOf } = await import('../../src/model/accounts.js');
    expect(accountIdOf(participant({ id: 'a', metadata: { company: 'Société\u200b' } }), rule)).toEqual({ id: 'Société'.normalize('NFC') });
    expect(accountIdOf(participant({ id: 'a', metadata: { company: '\u2066Société\u2069'.normalize('NFD') } }), rule)).toEqual({ id: 'Société'.normalize('NFC') });
  });
});

function idRule(): Config {
  const config = defaultConfig();
  config.identity = { kind: 'id' };
  return config;
}

describe('an identity holding a control character is not sent', () => {
  it.for(['\u0000', '\u0007', '\u001b', '\u007f', '\u0085', '\u009b'])('%j in a user id (email, id, metadata): the row is invalid, naming it', async (control) => {
    const code = `U+${control.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    const byId = idRule();
    const byMetadata = defaultConfig();
    byMetadata.identity = { kind: 'metadata', key: 'uid' };
    for (const [config, person] of [
      [defaultConfig(), participant({ id: 'p1', email: `a${control}b@x.com` })],
      [byId, participant({ id: `usr${control}1`, email: 'a@x.com' })],
      [byMetadata, participant({ id: 'p1', metadata: { uid: `u${control}1` } })],
    ] as const) {
      const items = await planItems([person, participant({ id: 'p2', email: 'ok@x.com', metadata: { uid: 'ok' } })], { config, destinations: ['segment'] });
      expect(identifies(items)).toHaveLength(1);
      expect(invalid(items)).toEqual([expect.objectContaining({ reason: `the user id holds the control character ${code}; the row is not sent (fix it in the source)` })]);
    }
  });
});

describe('referrals that make no sense earn no credit', () => {
  const at = (day: number) => new Date(Date.UTC(2025, 0, day));

  it('a cycle of two: both reported, neither credited, both still identified', async () => {
    const people = [
      participant({ id: 'a', email: 'a@x.com', referrerId: 'b', referralStatus: 'converted', createdAt: at(1) }),
      participant({ id: 'b', email: 'b@x.com', referrerId: 'a@x.com', referralStatus: 'converted', createdAt: at(2) }),
    ];
    const items = await planItems(people);
    expect(warnings(items)).toEqual([
      expect.stringContaining('participant a is on a referral cycle (a@x.com → b@x.com → a@x.com, each referred by the next)'),
      expect.stringContaining('participant b is on a referral cycle (b@x.com → a@x.com → b@x.com, each referred by the next)'),
    ]);
    expect(made(items)).toEqual([]);
    for (const userId of ['a@x.com', 'b@x.com']) {
      const traits = segmentTraits(items, userId)!;
      expect(traits).toMatchObject({ referral_count: 0, referral_tier: 'new_participant', acquisition_channel: 'organic' });
      expect(traits).not.toHaveProperty('referred_by');
    }
    expect(operations(items).filter((o) => o.kind === 'track' && o.event === 'converted')).toEqual([]);
  });

  it('a cycle of three under --user-id id; a friend of a cycle member is still credited to them', async () => {
    const people = [
      participant({ id: 'a', referrerId: 'c', createdAt: at(1) }),
      participant({ id: 'b', referrerId: 'a', createdAt: at(2) }),
      participant({ id: 'c', referrerId: 'b', createdAt: at(3) }),
      participant({ id: 'd', referrerId: 'a', referralStatus: 'converted', createdAt: at(4) }),
    ];
    const items = await planItems(people, { config: idRule(), destinations: ['segment'] });
    expect(warnings(items)).toEqual([
      expect.stringContaining('participant a is on a referral cycle (a → c → b → a,'),
      expect.stringContaining('participant b is on a referral cycle (b → a → c → b,'),
      expect.stringContaining('participant c is on a referral cycle (c → b → a → c,'),
    ]);
    // Only d's referral of... d by a is real: one Referral Made, on a, and a's count is 1 (b's referral left out).
    expect(made(items).map((o) => `${o.userId} ${o.participantId}`)).toEqual(['a d']);
    expect(segmentTraits(items, 'a')).toMatchObject({ referral_count: 1, referral_tier: 'active' });
    expect(segmentTraits(items, 'b')).toMatchObject({ referral_count: 0 });
    expect(segmentTraits(items, 'd')).toMatchObject({ referred_by: 'a', acquisition_channel: 'referral' });
  });

  it('a long cycle is named by its first members and its length', async () => {
    const n = 40;
    const people = Array.from({ length: n }, (_, i) => participant({ id: `p${i}`, referrerId: `p${(i + 1) % n}` }));
    const items = await planItems(people, { config: idRule(), destinations: ['segment'] });
    expect(warnings(items)).toHaveLength(n);
    expect(warnings(items)[0]).toContain('(p0 → p1 → p2 → p3 → p4 → … (40 in all),');
    expect(made(items)).toEqual([]);
  });

  it.each([
    ['an id nobody has, --user-id email', defaultConfig(), 'gone42'],
    ['an id nobody has, --user-id id (a deleted participant keeps no credit)', idRule(), 'gone42'],
    ['an email nobody has, --user-id email', defaultConfig(), 'Ghost@X.com'],
    ['an email nobody has, --user-id id', idRule(), 'ghost@x.com'],
  ])('a referrer who is not in the program (%s): reported, not credited, the friend still planned', async (_name, config, referrer) => {
    const people = [participant({ id: 'f', email: 'f@x.com', referrerId: referrer, referralStatus: 'converted', joinedVia: 'PARTICIPANT' })];
    const items = await planItems(people, { config, destinations: ['segment'] });
    expect(warnings(items)).toEqual([expect.stringContaining(`referrer "${referrer}" of participant f is not in the data`)]);
    expect(made(items)).toEqual([]);
    const userId = config.identity.kind === 'id' ? 'f' : 'f@x.com';
    const traits = segmentTraits(items, userId)!;
    expect(traits).not.toHaveProperty('referred_by');
    // The friend did come through a referral: their own channel and status stay.
    expect(traits).toMatchObject({ acquisition_channel: 'referral', referral_status: 'converted' });
    // Nobody is identified for the missing referrer.
    expect(identifies(items).map((o) => o.userId)).toEqual([userId]);
  });

  it('a referrer the source describes alongside (GrowSurf API, Cello) is in the program, even when not read', async () => {
    const people = [participant({ id: 'f', referrerId: 'r9', referrerProfile: { id: 'r9', email: 'r9@x.com', metadata: {} } })];
    const items = await planItems(people, { destinations: ['segment'] });
    expect(warnings(items)).toEqual([]);
    expect(made(items).map((o) => o.userId)).toEqual(['r9@x.com']);
  });

  /**
   * Any referral graph: each person names a referrer who may be anyone (themself included) or nobody in the
   * data. A referral is credited exactly when its referrer is another participant and it is on no cycle, as a
   * walk of the graph decides on its own; counts, referred_by and Referral Made all agree.
   */
  it('any referral graph: credited exactly when the referrer exists, is someone else and the referral is on no cycle', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 9 }).chain((n) =>
          fc.tuple(fc.constant(n), fc.array(fc.option(fc.integer({ min: 0, max: n + 1 }), { nil: undefined }), { minLength: n, maxLength: n }), fc.array(fc.boolean(), { minLength: n, maxLength: n })),
        ),
        fc.boolean(),
        async ([n, referrers, byEmail], useIdRule) => {
          // Referrer index n and n + 1 name nobody in the data.
          const name = (i: number, email: boolean): string => (i >= n ? (email ? `gone${i}@x.com` : `gone${i}`) : email ? `P${i}@X.com` : `p${i}`);
          const people: Participant[] = referrers.map((r, i) =>
            participant({ id: `p${i}`, email: `p${i}@x.com`, referralStatus: 'converted', ...(r === undefined ? {} : { referrerId: name(r, byEmail[i]!) }) }),
          );
          const config = useIdRule ? idRule() : defaultConfig();
          const items = await planItems(people, { config, destinations: ['segment'] });
          const userId = (i: number): string => (useIdRule ? `p${i}` : `p${i}@x.com`);
          // The model, by brute force: i is on a cycle when following referrers from i comes back to i.
          const next = (i: number): number | undefined => {
            const r = referrers[i];
            return r === undefined || r >= n || r === i ? undefined : r;
          };
          const onCycle = (i: number): boolean => {
            let at = next(i);
            for (let steps = 0; at !== undefined && steps < n; steps += 1, at = next(at)) if (at === i) return true;
            return false;
          };
          const credited = (i: number): boolean => next(i) !== undefined && !onCycle(i);
          const madeOn = made(items).map((o) => `${o.userId}<${o.participantId}`).sort();
          const expected = referrers.flatMap((r, i) => (credited(i) ? [`${userId(r!)}<p${i}`] : [])).sort();
          expect(madeOn).toEqual(expected);
          for (let i = 0; i < n; i += 1) {
            const traits = segmentTraits(items, userId(i))!;
            const friends = referrers.filter((r, j) => r === i && credited(j)).length;
            expect(traits.referral_count).toBe(friends);
            if (credited(i)) expect(traits.referred_by).toBe(userId(referrers[i]!));
            else expect(traits).not.toHaveProperty('referred_by');
          }
          // Every referral not credited is reported once, on its own row.
          const reported = referrers.filter((r, i) => r !== undefined && !credited(i)).length;
          expect(warnings(items)).toHaveLength(reported);
        },
      ),
      { numRuns: 300 },
    );
  });
});
