import { describe, expect, it } from 'vitest';
import { reasonKey } from '../../src/plan/reason-key.js';

/** Reasons that must land in one group (each row: the reasons, then the key they share). */
const SAME: readonly (readonly [string, readonly string[], string])[] = [
  ['emails', ['Customer.io refused it: ann@example.com is invalid', 'Customer.io refused it: bob.smith+x@mail.example.org is invalid'], 'Customer.io refused it: <email> is invalid'],
  ['byte counts', ['event is 40123 bytes, over the limit', 'event is 33,001 bytes, over the limit'], 'event is <n> bytes, over the limit'],
  ['attempts', ['Segment: [503] unavailable (gave up after 8 attempts)', 'Segment: [503] unavailable (gave up after 3 attempts)'], 'Segment: [503] unavailable (gave up after <n> attempts)'],
  ['durations', ['no progress for 300s; kept for the next run', 'no progress for 45s; kept for the next run'], 'no progress for <n>s; kept for the next run'],
  ['uuids', ['object 0f8fad5b-d9cb-469f-a165-70867728950e refused', 'object 7c9e6679-7425-40de-944b-e07fc1f90ae7 refused'], 'object <id> refused'],
  ['message ids', ['duplicate messageId rs-1a2b3c4d5e6f7a8b9c0d', 'duplicate messageId rs-ffee00112233445566aa'], 'duplicate messageId <id>'],
  ['participant ids', ['participant p123 has no account id', 'participant 98 has no account id'], 'participant <id> has no account id'],
  ['quoted values', ['unparseable date "sometime in June" in column "Created At" (expected ISO-8601)', 'unparseable date "31/02/2025" in column "Created At" (expected ISO-8601)'], 'unparseable date "…" in column "Created At" (expected ISO-8601)'],
  ['quoted ids', ["referrer 'gone1' is not in the data", "referrer 'x' is not in the data"], "referrer '…' is not in the data"],
  ['line numbers', ['bad quote at line 12', 'bad quote at line 3,401'], 'bad quote at line <id>'],
  ['rate limits', ['429 (rate limited 20 times in a row; left for the next run)', '429 (rate limited 7 times in a row; left for the next run)'], '429 (rate limited <n> times in a row; left for the next run)'],
  ['URL paths', ['Customer.io unreachable at http://127.0.0.1:4010/api/v2/batch?x=1: ECONNRESET', 'Customer.io unreachable at http://127.0.0.1:4010/api/v1/customers/ann: ECONNRESET'], 'Customer.io unreachable at http://127.0.0.1:4010/…: ECONNRESET'],
  ['whitespace', ['Segment:  [400]\n bad   request', 'Segment: [400] bad request'], 'Segment: [400] bad request'],
];

/** Reasons that must stay apart: their difference is the cause, not a detail. */
const APART: readonly (readonly [string, string, string])[] = [
  ['HTTP status in brackets', 'Segment: [400] bad request', 'Segment: [413] bad request'],
  ['HTTP status in words', 'HTTP 503 from Customer.io', 'HTTP 502 from Customer.io'],
  ['field names', 'Customer.io refused it: invalid, field batch, attribute too long', 'Customer.io refused it: invalid, field email, attribute too long'],
  ['quoted attribute names', 'attribute "plan" is too long', 'attribute "tier" is too long'],
  ['quoted column names', '"x" in column "Email" is not an email address', '"x" in column "Name" is not an email address'],
  ['destinations', 'Segment: [400] bad request', 'Customer.io: [400] bad request'],
  ['wording', 'Customer.io refused it: invalid', 'Customer.io refused it: not found'],
];

describe('reasonKey: reasons that differ only in a detail group together', () => {
  it.each(SAME)('%s', (_name, reasons, key) => {
    for (const reason of reasons) expect(reasonKey(reason)).toBe(key);
  });

  it.each(APART)('keeps apart: %s', (_name, a, b) => {
    expect(reasonKey(a)).not.toBe(reasonKey(b));
  });

  it.each([...SAME.flatMap(([, reasons]) => reasons), ...APART.flatMap(([, a, b]) => [a, b]), 'x'.repeat(1000), `${'id 12 '.repeat(100)}`])('is idempotent: %s', (reason) => {
    expect(reasonKey(reasonKey(reason))).toBe(reasonKey(reason));
  });

  it('has no key for no reason, and cuts a long one', () => {
    expect(reasonKey(null)).toBe('');
    expect(reasonKey(undefined)).toBe('');
    expect(reasonKey('a '.repeat(500)).length).toBeLessThanOrEqual(241);
  });
});
