import { createHash } from 'node:crypto';

/**
 * Deterministic operation ids (DESIGN.md §6). The same input gives the same bytes on every run and machine:
 * only sha256 over fixed-order UTF-8 parts, no clock, no randomness, no locale.
 */

/** Inputs of one operation's key, in the order they are hashed. */
export interface KeyParts {
  namespace: string;
  source: string;
  programId: string;
  kind: string;
  subjectId: string;
  objectId: string;
}

/** Hex sha256 of the parts joined by `|`; `|` inside a part is escaped so two different tuples never collide. */
export function operationKey(parts: KeyParts): string {
  const fields = [parts.namespace, parts.source, parts.programId, parts.kind, parts.subjectId, parts.objectId];
  const joined = fields.map(escapePart).join('|');
  return createHash('sha256').update(joined, 'utf8').digest('hex');
}

function escapePart(part: string): string {
  if (!part.includes('|') && !part.includes('\\')) return part;
  return part.replaceAll('\\', '\\\\').replaceAll('|', '\\|');
}

/**
 * The object part of the key of an operation that carries traits (an identify, an account's traits): the
 * generation it was issued in, then the hashes of what it carries (DESIGN.md §6). A new operation takes the next
 * generation, so traits that go A → B → A get three keys, and a resend of the same operation (same generation,
 * same traits) gets the same one. Generation 0 is the key an older version gave (the first hash alone): a failed
 * operation it recorded is still resent under its own id.
 */
export function traitsObjectId(generation: number, hashes: readonly [string, ...string[]]): string {
  if (generation === 0) return hashes[0];
  return `g${generation}:${hashes.join(':')}`;
}

/** Segment messageId: `rs1-` + 40 hex chars (44 chars, well under Segment's 100). */
export function segmentMessageId(key: string): string {
  return `rs1-${key.slice(0, 40)}`;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const MAX_ULID_TIME = 2 ** 48 - 1;

/**
 * Customer.io event id: a ULID whose 48-bit time part is the event time and whose 80 "random" bits are the
 * first 80 bits of the key. Customer.io dedupes events on this id.
 */
export function customerioEventId(key: string, time: Date | undefined): string {
  const ms = time === undefined ? 0 : Math.min(Math.max(0, time.getTime()), MAX_ULID_TIME);
  return encodeTime(ms) + encodeRandom(key.slice(0, 20));
}

function encodeTime(ms: number): string {
  let out = '';
  let value = ms;
  for (let i = 0; i < 10; i += 1) {
    out = CROCKFORD[value % 32] + out;
    value = Math.floor(value / 32);
  }
  return out;
}

/** 20 hex chars = 80 bits = 16 Crockford base32 chars: four 20-bit chunks of four characters each. */
function encodeRandom(hex20: string): string {
  let out = '';
  for (let chunk = 0; chunk < 4; chunk += 1) {
    let value = Number.parseInt(hex20.slice(chunk * 5, chunk * 5 + 5), 16);
    let part = '';
    for (let i = 0; i < 4; i += 1) {
      part = CROCKFORD[value & 31] + part;
      value >>>= 5;
    }
    out += part;
  }
  return out;
}

/** Short, non-reversible fingerprint of a secret (a write key, a site id) for use inside a namespace. */
export function secretFingerprint(secret: string): string {
  return createHash('sha256').update(`referral-sync:${secret}`, 'utf8').digest('hex').slice(0, 16);
}

/** Hash of a JSON value with sorted keys: equal traits give equal hashes whatever their key order. */
export function stableHash(value: unknown): string {
  return createHash('sha256').update(stableStringify(value), 'utf8').digest('hex');
}

export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((k) => record[k] !== undefined)
    .sort();
  // Flat maps (traits are) take the fast path: a copy in sorted key order, stringified natively.
  const sorted: Record<string, unknown> = {};
  let flat = true;
  for (const key of keys) {
    const item = record[key];
    if (item !== null && typeof item === 'object') flat = false;
    sorted[key] = item;
  }
  if (flat) return JSON.stringify(sorted);
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(record[k])}`).join(',')}}`;
}
