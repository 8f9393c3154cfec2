import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { CustomerioDestination } from '../../src/destinations/customerio.js';
import { measureOperation } from '../../src/destinations/limits.js';
import { SegmentDestination } from '../../src/destinations/segment.js';
import type { Operation } from '../../src/plan/types.js';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { readPlan } from '../support/plan.js';
import { CIO_KEY, CIO_SITE, SEGMENT_KEY, startServices, type Services } from '../support/services.js';

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

function query(path: string, sql: string): Record<string, unknown>[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(sql).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

const person = (id: string, firstName: string, extra: Record<string, string> = {}): Record<string, string> => ({
  ID: id,
  Email: `${id}@example.com`,
  'First Name': firstName,
  'Last Name': 'Doe',
  'Created At': '2025-01-01T00:00:00Z',
  ...extra,
});

describe('Segment: 32 KB per message as the SDK sends it', () => {
  it('a message of exactly 32,768 bytes on the wire is accepted; one a byte over is reported with file and line and never sent', async () => {
    services = await startServices();
    const cwd = tempDir();
    const env = services.env;
    // Find the first-name length that puts p1's identify at exactly 32,768 bytes as Segment receives it.
    const file = writeCsv(cwd, 'export.csv', [person('p1', 'x')]);
    const probe = join(cwd, 'probe.jsonl');
    expect((await runCliInProcess(['diff', '--file', file, '--to', 'segment', '--out', probe, '--quiet'], { cwd, env })).code).toBe(0);
    const identify = readPlan(probe).find((l) => l.kind === 'identify')!;
    const pad = 1 + 32_768 - measureOperation('segment', identify.payload).wireBytes;
    writeCsv(cwd, 'export.csv', [person('p1', 'x'.repeat(pad)), person('p2', 'x'.repeat(pad + 1))]);

    const plan = join(cwd, 'plan.jsonl');
    await runCliInProcess(['diff', '--file', file, '--to', 'segment', '--out', plan, '--quiet'], { cwd, env });
    const p2 = readPlan(plan).filter((l) => l.userId === 'p2@example.com');
    // What the old check measured (our payload alone) is under 32 KB: only the wire size tells.
    expect(p2.map((l) => l.kind)).toEqual(['track']);

    const sync = await runCliInProcess(['sync', '--file', file, '--to', 'segment'], { cwd, env });
    expect(sync.code).toBe(0);
    const { segment } = services;
    const p1 = segment.identifies().find((m) => m.userId === 'p1@example.com')!;
    expect(Buffer.byteLength(JSON.stringify(p1))).toBe(32_768);
    expect(segment.identifies().map((m) => m.userId)).toEqual(['p1@example.com']);
    expect(segment.tracks().map((m) => m.userId).sort()).toEqual(['p1@example.com', 'p2@example.com']);
    expect(segment.oversizeRefusals).toBe(0);
    expect(sync.stdout).toContain('Invalid rows (1, not sent):');
    expect(sync.stdout).toContain(
      `${file}:3: Segment identify for p2@example.com is not sent: the message as the Segment SDK sends it is 32,769 bytes, 1 over Segment's 32,768-byte per-event limit`,
    );
    expect(query(join(cwd, '.referral-sync', 'state.db'), `SELECT COUNT(*) AS n FROM deliveries WHERE status != 'sent'`)).toEqual([{ n: 0 }]);
  });
});

describe('Customer.io: an attribute over its limit is left out, the rest of the identify goes', () => {
  it('sends the person without the attribute, warns, keeps the old value, and does not re-send the identify on the next sync', async () => {
    services = await startServices();
    const cwd = tempDir();
    const env = services.env;
    const statePath = join(cwd, '.referral-sync', 'state.db');
    const file = writeCsv(cwd, 'export.csv', [person('p1', 'Anna'), person('p2', 'Ä'.repeat(600))]);
    const first = await runCliInProcess(['sync', '--file', file, '--to', 'customerio'], { cwd, env });
    expect(first.code).toBe(0);
    const { customerio } = services;
    expect(customerio.people.get('email:p2@example.com')).toMatchObject({ last_name: 'Doe', referral_tier: 'new_participant', email: 'p2@example.com' });
    expect(customerio.people.get('email:p2@example.com')).not.toHaveProperty('first_name');
    expect(customerio.limitRefusals).toBe(0);
    expect(first.stdout).toContain('Warnings (1):');
    expect(first.stdout).toContain(
      `${file}:3: Customer.io attribute "first_name" of p2@example.com is left out of the identify: attributes.first_name is 1,200 bytes, 200 over Customer.io's 1,000-byte limit on an attribute value.`,
    );
    const baseline = query(statePath, `SELECT traits FROM identities WHERE destination = 'customerio' AND user_id = 'p2@example.com'`);
    expect(JSON.parse(String(baseline[0]!.traits))).not.toHaveProperty('first_name');

    // p1's name becomes too long: nothing else changed, so nothing is sent and Customer.io keeps "Anna".
    writeCsv(cwd, 'export.csv', [person('p1', 'B'.repeat(1001)), person('p2', 'Ä'.repeat(600))]);
    const identifiesBefore = customerio.identifyArrivals.length;
    for (let run = 0; run < 2; run += 1) {
      const again = await runCliInProcess(['sync', '--file', file, '--to', 'customerio'], { cwd, env });
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('Warnings (2):');
      expect(again.stdout).toMatch(/Customer\.io\s+0\s+4\s+0\s+0/);
    }
    expect(customerio.identifyArrivals.length).toBe(identifiesBefore);
    expect(customerio.people.get('email:p1@example.com')).toMatchObject({ first_name: 'Anna' });
    const kept = query(statePath, `SELECT traits FROM identities WHERE destination = 'customerio' AND user_id = 'p1@example.com'`);
    expect(JSON.parse(String(kept[0]!.traits))).toMatchObject({ first_name: 'Anna' });
  });
});

describe('the fakes enforce the documented limits, and refusals keep the destination’s reason', () => {
  const identify = (destination: 'segment' | 'customerio', payload: Record<string, unknown>): Operation => ({
    destination,
    kind: 'identify',
    key: `k-${destination}`,
    userId: 'u1',
    participantId: 'p1',
    payload,
    bytes: 0,
    change: 'new',
    changes: [],
    traits: {},
    traitsHash: 'h',
    tierChanges: 0,
  });

  it('Segment refuses a message over 32 KB as received: dead, with Segment’s message', async () => {
    services = await startServices();
    const client = new SegmentDestination({ writeKey: SEGMENT_KEY, host: services.env.SEGMENT_HOST! });
    const op = identify('segment', { type: 'identify', userId: 'u1', traits: { bio: 'x'.repeat(33_000) }, messageId: 'rs1-big' });
    const [outcome] = await client.send([op]);
    await client.close();
    expect(services.segment.oversizeRefusals).toBe(1);
    expect(outcome!.verdict).toEqual({ kind: 'dead', wholeBatch: true, reason: expect.stringMatching(/^Segment answered \[400\] Bad Request: event rs1-big is \d+ bytes, over the 32 KB limit$/) as unknown });
  });

  it.each(['v1', 'v2'] as const)('Customer.io %s refuses an attribute over 1,000 bytes: dead, with Customer.io’s reason and field', async (api) => {
    services = await startServices();
    const client = new CustomerioDestination({ siteId: CIO_SITE, apiKey: CIO_KEY, trackUrl: services.env.CUSTOMERIO_TRACK_URL!, api });
    const op = identify('customerio', { type: 'person', action: 'identify', identifiers: { id: 'u1' }, attributes: { first_name: 'x'.repeat(1200) } });
    const [outcome] = await client.send([op]);
    expect(outcome!.verdict).toEqual({
      kind: 'dead',
      reason:
        api === 'v2'
          ? 'Customer.io refused it: too_large, field attributes.first_name, attribute value is 1200 bytes, over 1000'
          : 'Customer.io answered 400: attribute value is 1200 bytes, over 1000',
    });
    expect(services.customerio.people.size).toBe(0);
  });

  it('a Customer.io v2 400 for the whole request names its reason and field (not "Unknown error")', async () => {
    services = await startServices();
    services.customerio.refuseRequest = () => ({ reason: 'invalid_json', field: 'batch[0].identifiers', message: 'identifiers must hold exactly one key' });
    const client = new CustomerioDestination({ siteId: CIO_SITE, apiKey: CIO_KEY, trackUrl: services.env.CUSTOMERIO_TRACK_URL!, api: 'v2' });
    const [outcome] = await client.send([identify('customerio', { type: 'person', action: 'identify', identifiers: { id: 'u1' }, attributes: {} })]);
    expect(outcome!.verdict).toEqual({ kind: 'dead', wholeBatch: true, reason: 'Customer.io answered 400: invalid_json, field batch[0].identifiers, identifiers must hold exactly one key' });
  });
});

describe('reasons reach the ledger and status', () => {
  it('keeps Segment’s 400 message and Customer.io’s v2 400 reason and field in last_error, status text and status --json', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [person('p1', 'Anna'), person('p2', 'Ben')]);
    services.segment.rejectMessage = (m) => (m.userId === 'p2@example.com' ? 400 : undefined);
    services.customerio.refuseRequest = () => ({ reason: 'invalid', field: 'batch', message: 'batch refused for the test' });
    const sync = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(sync.code).toBe(1);
    const rows = query(join(cwd, '.referral-sync', 'state.db'), `SELECT destination, last_error FROM deliveries WHERE status = 'dead'`);
    const segment = rows.filter((r) => r.destination === 'segment').map((r) => String(r.last_error));
    const cio = rows.filter((r) => r.destination === 'customerio').map((r) => String(r.last_error));
    expect(segment.length).toBeGreaterThan(0);
    expect(segment.every((e) => /^Segment answered \[400\] Bad Request: rejected rs1-[0-9a-f]+$/.test(e))).toBe(true);
    expect(cio).toHaveLength(4);
    expect(new Set(cio)).toEqual(new Set(['Customer.io answered 400: invalid, field batch, batch refused for the test']));

    const status = await runCliInProcess(['status'], { cwd });
    expect(status.stdout).toContain('Customer.io answered 400: invalid, field batch, batch refused for the test');
    expect(status.stdout).toMatch(/Segment answered \[400\] Bad Request: rejected rs1-/);
    const json = JSON.parse((await runCliInProcess(['status', '--json'], { cwd })).stdout) as { problems: { destination: string; lastError: string }[] };
    expect(json.problems.filter((p) => p.destination === 'customerio').map((p) => p.lastError)).toEqual(cio);
  });
});
