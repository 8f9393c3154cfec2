import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CUSTOMERIO_LIMITS,
  SEGMENT_LIMITS,
  SEGMENT_SDK_LIBRARY,
  describeViolation,
  measureOperation,
  withinAttributeLimits,
} from '../../src/destinations/limits.js';
import { SegmentDestination } from '../../src/destinations/segment.js';
import type { Operation } from '../../src/plan/types.js';
import { FakeSegment } from '../fakes/segment.js';
import { ROOT } from '../support/cli.js';

let fake: FakeSegment | undefined;
afterEach(async () => {
  await fake?.stop();
  fake = undefined;
});

function segmentOperation(kind: 'identify' | 'track', payload: Record<string, unknown>): Operation {
  const base = { destination: 'segment' as const, key: String(payload.messageId), userId: String(payload.userId), participantId: 'p', payload, bytes: 0 };
  return kind === 'identify'
    ? { ...base, kind, change: 'new', changes: [], traits: {}, traitsHash: 'h', tierChanges: 0 }
    : { ...base, kind, event: 'joined', name: String(payload.event), time: undefined };
}

describe('Segment: the size of a message as analytics-node sends it', () => {
  it('is computed exactly: what the fake Segment receives from the real SDK has the measured size', async () => {
    fake = new FakeSegment('wk');
    const host = await fake.start();
    const destination = new SegmentDestination({ writeKey: 'wk', host, flushAt: 10 });
    const identify = { type: 'identify', userId: 'zoë@example.com', traits: { firstName: 'Zoë 日本', referral_count: 3, ok: true, none: null }, messageId: 'rs1-a' };
    const track = { type: 'track', userId: 'zoë@example.com', event: 'Referral Made', properties: { friend: 'ß', n: 1.5 }, timestamp: '2025-01-02T03:04:05.000Z', messageId: 'rs1-b' };
    const outcomes = await destination.send([segmentOperation('identify', identify), segmentOperation('track', track)]);
    await destination.close();
    expect(outcomes.map((o) => o.verdict.kind)).toEqual(['sent', 'sent']);
    for (const payload of [identify, track]) {
      const received = fake.messages.get(payload.messageId)!;
      expect(Buffer.byteLength(JSON.stringify(received))).toBe(measureOperation('segment', payload).wireBytes);
      // The additions are the SDK's, not guesses: library, runtime metadata, integrations, a timestamp.
      expect(received.context).toEqual({ library: SEGMENT_SDK_LIBRARY });
      expect(received._metadata).toEqual({ nodeVersion: process.version, jsRuntime: 'node' });
    }
    expect(measureOperation('segment', identify).wireBytes).toBeGreaterThan(Buffer.byteLength(JSON.stringify(identify)) + 150);
  });

  it('names the SDK version the project pins', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(pkg.dependencies['@segment/analytics-node']).toBe(SEGMENT_SDK_LIBRARY.version);
  });

  it('reports a message over 32 KB with its size and how far over', () => {
    const payload = { type: 'identify', userId: 'u', traits: { bio: 'x'.repeat(SEGMENT_LIMITS.eventBytes) }, messageId: 'm' };
    const { wireBytes, violations } = measureOperation('segment', payload);
    expect(violations).toEqual([{ destination: 'segment', limit: 'segment.event_bytes', size: wireBytes, max: 32_768, unit: 'bytes' }]);
    expect(describeViolation(violations[0]!)).toBe(
      `the message as the Segment SDK sends it is ${wireBytes.toLocaleString('en-US')} bytes, ${(wireBytes - 32_768).toLocaleString('en-US')} over Segment's 32,768-byte per-event limit`,
    );
  });
});

describe('Customer.io limits', () => {
  const identify = (attributes: Record<string, unknown>, identifiers: Record<string, string> = { id: 'u1' }): Record<string, unknown> => ({
    type: 'person',
    action: 'identify',
    identifiers,
    attributes,
  });

  it('accepts values at each limit and reports each one a byte over', () => {
    const at = identify({ ['n'.repeat(150)]: 'v'.repeat(1000), é: 'é'.repeat(500) }, { id: 'i'.repeat(150) });
    expect(measureOperation('customerio', at).violations).toEqual([]);
    const over = identify({ ['n'.repeat(151)]: 1, bio: `${'é'.repeat(500)}x` }, { email: `${'e'.repeat(140)}@example.com` });
    expect(measureOperation('customerio', over).violations.map((v) => [v.limit, v.field, v.size, v.max])).toEqual([
      ['customerio.person_id_bytes', 'identifiers.email', 152, 150],
      ['customerio.attribute_name_bytes', `attributes.${'n'.repeat(151)}`, 151, 150],
      ['customerio.attribute_value_bytes', 'attributes.bio', 1001, 1000],
    ]);
  });

  it('counts attributes per identify, and checks event names, event data and the operation size', () => {
    const many = Object.fromEntries(Array.from({ length: 301 }, (_, i) => [`a${i}`, i]));
    expect(measureOperation('customerio', identify(many)).violations.map((v) => [v.limit, v.size, v.max])).toEqual([['customerio.attributes_per_call', 301, 300]]);
    const event = (name: string, attributes: Record<string, unknown>): Record<string, unknown> => ({ type: 'person', action: 'event', identifiers: { id: 'u' }, name, id: 'x', attributes });
    expect(measureOperation('customerio', event('n'.repeat(100), { a: 'x'.repeat(30_000) })).violations).toEqual([]);
    expect(measureOperation('customerio', event('n'.repeat(101), {})).violations.map((v) => v.limit)).toEqual(['customerio.event_name_bytes']);
    const big = measureOperation('customerio', event('e', { a: 'x'.repeat(CUSTOMERIO_LIMITS.eventDataBytes) }));
    expect(big.violations.map((v) => v.limit)).toEqual(['customerio.operation_bytes', 'customerio.event_data_bytes']);
    expect(describeViolation(big.violations[0]!)).toMatch(/^the operation is [\d,]+ bytes, [\d,]+ over Customer\.io's 32,768-byte per-operation limit$/);
  });
});

describe('U+FFFD (text lost to a wrong encoding) is never sent', () => {
  it('is a violation wherever it is, tied to the attribute when it is in an identify attribute', () => {
    const event = { type: 'track', userId: 'u', event: 'Referral Made', properties: { friend: 'Jos\uFFFD' }, messageId: 'm' };
    expect(measureOperation('segment', event).violations).toEqual([
      { destination: 'segment', limit: 'replacement_character', size: 1, max: 0, unit: 'characters', field: 'properties' },
    ]);
    const person = { type: 'person', action: 'identify', identifiers: { id: 'u' }, attributes: { first_name: '\uFFFD\uFFFD', ok: 'yes' } };
    const [violation] = measureOperation('customerio', person).violations;
    expect(violation).toMatchObject({ limit: 'replacement_character', size: 2, attribute: 'first_name', field: 'attributes.first_name' });
    expect(describeViolation(violation!)).toBe('2 U+FFFD characters in attributes.first_name (text lost to a wrong file encoding; check --encoding or the export)');
  });
});

describe('withinAttributeLimits', () => {
  it('leaves out exactly the attributes that break a limit on their own', () => {
    const { attributes, leftOut } = withinAttributeLimits('customerio', { first_name: 'x'.repeat(1001), last_name: 'Ok', city: 'Gen\uFFFDve' });
    expect(attributes).toEqual({ last_name: 'Ok' });
    expect(leftOut.map((l) => [l.attribute, l.violations.map((v) => v.limit)])).toEqual([
      ['first_name', ['customerio.attribute_value_bytes']],
      ['city', ['replacement_character']],
    ]);
    // Segment has no per-trait size limit; only the lost character is left out there.
    expect(withinAttributeLimits('segment', { firstName: 'x'.repeat(5000), city: 'Gen\uFFFDve' }).attributes).toEqual({ firstName: 'x'.repeat(5000) });
  });
});
