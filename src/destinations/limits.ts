import type { Destination } from '../config/defaults.js';

/**
 * What each destination accepts, measured on what actually goes on the wire (DESIGN.md §8,
 * research/destinations.md §1.4, §3.3, §4). Pure: the planner asks before it yields an operation, so an
 * operation a destination would refuse is reported as invalid and never sent.
 */

/** Segment HTTP Tracking API. */
export const SEGMENT_LIMITS = {
  /** One message, as Segment receives it inside `/v1/batch` (the SDK's additions included). */
  eventBytes: 32 * 1024,
  /** One `/v1/batch` request body. */
  requestBytes: 500 * 1024,
  /** Above this Segment answers 200 and drops the batch. */
  eventsPerRequest: 2500,
} as const;

/** Customer.io Track API (v1 and v2). */
export const CUSTOMERIO_LIMITS = {
  personIdBytes: 150,
  /** An object's id: "our default id limit is set to 150 characters" (Customer.io, Objects). */
  objectIdBytes: 150,
  attributeNameBytes: 150,
  attributeValueBytes: 1000,
  attributesPerCall: 300,
  eventNameBytes: 100,
  eventDataBytes: 100_000,
  /** One v2 operation (`/entity`, or one item of `/batch`). */
  operationBytes: 32 * 1024,
  /** One v2 `/batch` request body. */
  requestBytes: 500 * 1024,
} as const;

/**
 * What `@segment/analytics-node` 3.1.0 adds to each message (node_modules/@segment/analytics-node:
 * `plugins/segmentio/index.js` normalizeEvent, and analytics-core's `CoreEventFactory.normalize`): `context.library`,
 * `_metadata` with the Node version and runtime, `integrations: {}`, and `timestamp` when the caller gives none.
 * Pinned with the SDK version in package.json; test/unit/limits.test.ts compares this with what the SDK sends.
 */
export const SEGMENT_SDK_LIBRARY = { name: '@segment/analytics-node', version: '3.1.0' } as const;
/** The SDK's default timestamp is `new Date()`, which JSON writes as 24 characters, whatever the date. */
const SDK_DEFAULT_TIMESTAMP = new Date(0).toISOString();

export type LimitName =
  | 'segment.event_bytes'
  | 'customerio.person_id_bytes'
  | 'customerio.object_id_bytes'
  | 'customerio.attribute_name_bytes'
  | 'customerio.attribute_value_bytes'
  | 'customerio.attributes_per_call'
  | 'customerio.event_name_bytes'
  | 'customerio.event_data_bytes'
  | 'customerio.operation_bytes'
  | 'replacement_character';

/** One limit an operation breaks: which, where, how big it is and how big it may be. */
export interface LimitViolation {
  destination: Destination;
  limit: LimitName;
  /** Measured size and the largest allowed, in `unit`. */
  size: number;
  max: number;
  unit: 'bytes' | 'attributes' | 'characters';
  /** Where in the payload, e.g. `traits.first_name`, `name`, `identifiers.email`. */
  field?: string;
  /** The identify attribute this concerns: leaving that attribute out fixes it. */
  attribute?: string;
}

const LABEL: Record<Destination, string> = { segment: 'Segment', customerio: 'Customer.io' };

/** The message exactly as analytics-node 3.1 serializes it into the batch, for an operation's payload. */
export function segmentWireMessage(payload: Record<string, unknown>, nodeVersion: string = process.version): Record<string, unknown> {
  return {
    timestamp: payload.timestamp ?? SDK_DEFAULT_TIMESTAMP,
    integrations: {},
    ...payload,
    context: { library: { ...SEGMENT_SDK_LIBRARY } },
    _metadata: { nodeVersion, jsRuntime: 'node' },
  };
}

export function byteLength(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}

/** Size of an attribute value as Customer.io counts it: a string's bytes, anything else as JSON. */
function valueBytes(value: unknown): number {
  return typeof value === 'string' ? byteLength(value) : byteLength(JSON.stringify(value) ?? '');
}

/**
 * The limits one identify attribute (trait) breaks on its own: its name and value sizes at Customer.io, and a
 * U+FFFD in either at any destination. Leaving the attribute out of the identify clears every one of them.
 */
export function attributeViolations(destination: Destination, name: string, value: unknown): LimitViolation[] {
  const found: LimitViolation[] = [];
  const field = `${destination === 'segment' ? 'traits' : 'attributes'}.${name}`;
  if (destination === 'customerio') {
    const nameBytes = byteLength(name);
    if (nameBytes > CUSTOMERIO_LIMITS.attributeNameBytes) {
      found.push({ destination, limit: 'customerio.attribute_name_bytes', size: nameBytes, max: CUSTOMERIO_LIMITS.attributeNameBytes, unit: 'bytes', field, attribute: name });
    }
    const bytes = valueBytes(value);
    if (bytes > CUSTOMERIO_LIMITS.attributeValueBytes) {
      found.push({ destination, limit: 'customerio.attribute_value_bytes', size: bytes, max: CUSTOMERIO_LIMITS.attributeValueBytes, unit: 'bytes', field, attribute: name });
    }
  }
  const lost = containsReplacement(name) || containsReplacement(value) ? replacementCount(name) + replacementCount(value) : 0;
  if (lost > 0) found.push({ destination, limit: 'replacement_character', size: lost, max: 0, unit: 'characters', field, attribute: name });
  return found;
}

export interface Measurement {
  /** Bytes of the operation as it goes on the wire (Segment: the SDK's message; Customer.io: the v2 operation). */
  wireBytes: number;
  violations: LimitViolation[];
}

/**
 * Measures an operation's payload as it will be sent and returns every limit it breaks. `payloadBytes`, the
 * size of `JSON.stringify(payload)`, spares serializing it again when the caller already knows it.
 */
export function measureOperation(destination: Destination, payload: Record<string, unknown>, payloadBytes?: number): Measurement {
  const bytes = payloadBytes ?? byteLength(JSON.stringify(payload));
  const violations = destination === 'segment' ? [] : customerioViolations(payload, bytes);
  const wireBytes = destination === 'segment' ? segmentWireBytes(payload, bytes) : bytes;
  if (destination === 'segment' && wireBytes > SEGMENT_LIMITS.eventBytes) {
    violations.push({ destination, limit: 'segment.event_bytes', size: wireBytes, max: SEGMENT_LIMITS.eventBytes, unit: 'bytes' });
  }
  if (containsReplacement(payload)) {
    const attributeKey = destination === 'segment' ? (payload.type === 'identify' ? 'traits' : undefined) : payload.action === 'identify' ? 'attributes' : undefined;
    violations.push(...replacementViolations(destination, payload, attributeKey));
  }
  return { wireBytes, violations };
}

/** The SDK's fields around ours, as JSON, by whether we set the timestamp ourselves. */
const SEGMENT_ADDED = {
  withTimestamp: byteLength(JSON.stringify(segmentWireMessage({ timestamp: '' }))) - byteLength(JSON.stringify({ timestamp: '' })),
  withoutTimestamp: byteLength(JSON.stringify(segmentWireMessage({ type: '' }))) - byteLength(JSON.stringify({ type: '' })),
};

/**
 * Bytes of the SDK's message: our payload's bytes plus the fields the SDK adds (exact: JSON's size does not depend
 * on key order). A payload that sets one of those fields itself is serialized whole.
 */
function segmentWireBytes(payload: Record<string, unknown>, payloadBytes: number): number {
  if ('integrations' in payload || 'context' in payload || '_metadata' in payload || Object.keys(payload).length === 0) {
    return byteLength(JSON.stringify(segmentWireMessage(payload)));
  }
  return payloadBytes + ('timestamp' in payload ? SEGMENT_ADDED.withTimestamp : SEGMENT_ADDED.withoutTimestamp);
}

function customerioViolations(payload: Record<string, unknown>, operationBytes: number): LimitViolation[] {
  // The v2 operation holds everything a v1 call sends (its body, and the identifier in the path), so its size
  // bounds both transports.
  const violations: LimitViolation[] = [];
  const push = (limit: LimitName, size: number, max: number, field?: string, unit: LimitViolation['unit'] = 'bytes'): void => {
    if (size > max) violations.push({ destination: 'customerio', limit, size, max, unit, ...(field ? { field } : {}) });
  };
  push('customerio.operation_bytes', operationBytes, CUSTOMERIO_LIMITS.operationBytes);
  const identifiers = (payload.identifiers ?? {}) as Record<string, unknown>;
  for (const [kind, value] of Object.entries(identifiers)) {
    if (kind === 'object_id') push('customerio.object_id_bytes', valueBytes(value), CUSTOMERIO_LIMITS.objectIdBytes, 'identifiers.object_id');
    else if (kind !== 'object_type_id') push('customerio.person_id_bytes', valueBytes(value), CUSTOMERIO_LIMITS.personIdBytes, `identifiers.${kind}`);
  }
  const attributes = (payload.attributes ?? {}) as Record<string, unknown>;
  if (payload.action === 'identify') {
    push('customerio.attributes_per_call', Object.keys(attributes).length, CUSTOMERIO_LIMITS.attributesPerCall, 'attributes', 'attributes');
    for (const [name, value] of Object.entries(attributes)) {
      violations.push(...attributeViolations('customerio', name, value).filter((v) => v.limit !== 'replacement_character'));
    }
  } else {
    push('customerio.event_name_bytes', valueBytes(payload.name ?? ''), CUSTOMERIO_LIMITS.eventNameBytes, 'name');
    // The data is part of the operation: only an operation over the data limit can hold data over it.
    if (operationBytes > CUSTOMERIO_LIMITS.eventDataBytes) {
      push('customerio.event_data_bytes', byteLength(JSON.stringify(attributes)), CUSTOMERIO_LIMITS.eventDataBytes, 'attributes');
    }
  }
  return violations;
}

/**
 * U+FFFD anywhere in the payload: a character lost to a wrong encoding is never sent. Inside the identify's
 * attribute map (`attributeKey`) each one is tied to its attribute, so that attribute alone can be left out.
 */
function replacementViolations(destination: Destination, payload: Record<string, unknown>, attributeKey: string | undefined): LimitViolation[] {
  const found: LimitViolation[] = [];
  for (const [key, value] of Object.entries(payload)) {
    if (key === attributeKey && value !== null && typeof value === 'object') {
      for (const [name, attribute] of Object.entries(value as Record<string, unknown>)) {
        found.push(...attributeViolations(destination, name, attribute).filter((v) => v.limit === 'replacement_character'));
      }
      continue;
    }
    const lost = replacementCount(key) + replacementCount(value);
    if (lost > 0) found.push({ destination, limit: 'replacement_character', size: lost, max: 0, unit: 'characters', field: key });
  }
  return found;
}

/** Whether a value holds U+FFFD in a key or a string at any depth; runs on every operation, so allocates nothing. */
function containsReplacement(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\uFFFD');
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) {
    for (const item of value) if (containsReplacement(item)) return true;
    return false;
  }
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (key.includes('\uFFFD') || containsReplacement(record[key])) return true;
  }
  return false;
}

/** How many U+FFFD characters a value holds, in keys and strings at any depth. */
function replacementCount(value: unknown): number {
  if (typeof value === 'string') {
    let count = 0;
    for (let index = value.indexOf('\uFFFD'); index >= 0; index = value.indexOf('\uFFFD', index + 1)) count += 1;
    return count;
  }
  if (Array.isArray(value)) return value.reduce((sum: number, item) => sum + replacementCount(item), 0);
  if (value !== null && typeof value === 'object') {
    let count = 0;
    for (const [key, item] of Object.entries(value)) count += replacementCount(key) + replacementCount(item);
    return count;
  }
  return 0;
}

const LIMIT_TEXT: Record<LimitName, string> = {
  'segment.event_bytes': 'per-event limit',
  'customerio.person_id_bytes': 'limit on a person identifier',
  'customerio.object_id_bytes': 'limit on an object id',
  'customerio.attribute_name_bytes': 'limit on an attribute name',
  'customerio.attribute_value_bytes': 'limit on an attribute value',
  'customerio.attributes_per_call': 'limit on attributes per identify',
  'customerio.event_name_bytes': 'limit on an event name',
  'customerio.event_data_bytes': 'limit on event data',
  'customerio.operation_bytes': 'per-operation limit',
  'replacement_character': '',
};

/** One phrase for people: which limit, where, how big, and by how much it is over. */
export function describeViolation(violation: LimitViolation): string {
  const where = violation.field ? ` in ${violation.field}` : '';
  if (violation.limit === 'replacement_character') {
    return `${plural(violation.size, 'U+FFFD character')}${where} (text lost to a wrong file encoding; check --encoding or the export)`;
  }
  const label = LABEL[violation.destination];
  const what =
    violation.limit === 'segment.event_bytes'
      ? 'the message as the Segment SDK sends it'
      : violation.limit === 'customerio.operation_bytes'
        ? 'the operation'
        : violation.field ?? 'the value';
  const size = `${formatNumber(violation.size)} ${violation.unit}`;
  return `${what} is ${size}, ${formatNumber(violation.size - violation.max)} over ${label}'s ${formatNumber(violation.max)}-${singular(violation.unit)} ${LIMIT_TEXT[violation.limit]}`;
}

function singular(unit: LimitViolation['unit']): string {
  return unit === 'bytes' ? 'byte' : unit === 'attributes' ? 'attribute' : 'character';
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function formatNumber(value: number): string {
  return value.toLocaleString('en-US');
}

/**
 * An identify's attributes with every one that breaks a limit on its own left out, and what was left out
 * (grouped by attribute). The rest of the identify can then be sent; the caller treats a left-out attribute
 * like one it does not know, so the destination keeps its current value.
 */
export function withinAttributeLimits<V>(
  destination: Destination,
  attributes: Record<string, V>,
): { attributes: Record<string, V>; leftOut: { attribute: string; violations: LimitViolation[] }[] } {
  const leftOut: { attribute: string; violations: LimitViolation[] }[] = [];
  for (const name in attributes) {
    if (!mayBreakAttributeLimit(destination, name, attributes[name])) continue;
    const violations = attributeViolations(destination, name, attributes[name]);
    if (violations.length > 0) leftOut.push({ attribute: name, violations });
  }
  if (leftOut.length === 0) return { attributes, leftOut };
  const kept: Record<string, V> = { ...attributes };
  for (const { attribute } of leftOut) delete kept[attribute];
  return { attributes: kept, leftOut };
}

/** A cheap first look (runs for every trait of every person): false means no attribute limit can be broken. */
function mayBreakAttributeLimit(destination: Destination, name: string, value: unknown): boolean {
  if (name.includes('\uFFFD')) return true;
  // A UTF-16 code unit is at most 3 bytes in UTF-8.
  if (destination === 'customerio' && name.length * 3 > CUSTOMERIO_LIMITS.attributeNameBytes) return true;
  if (typeof value === 'string') {
    return value.includes('\uFFFD') || (destination === 'customerio' && value.length * 3 > CUSTOMERIO_LIMITS.attributeValueBytes);
  }
  return value !== null && typeof value === 'object';
}
