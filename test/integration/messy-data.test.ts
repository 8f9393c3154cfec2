import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Issue 8: messy identities, self-referrals, tier history, config and program mistakes and `retry` after newer
 * traits, each checked by what reached the fake Segment and Customer.io, what the state holds and the exit code.
 */

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

const state = (cwd: string) => new Database(join(cwd, '.referral-sync', 'state.db'), { readonly: true });

describe('identity collisions', () => {
  it('emails differing only in case are one person: one identify per destination, the second row reported with both ids', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [
      { ID: 'p1', Email: 'Alice@X.com', 'Referral Count': '1', 'Created At': '2025-01-01' },
      { ID: 'p2', Email: 'alice@x.com', 'Referral Count': '5', 'Created At': '2025-01-02' },
      { ID: 'p3', Email: 'bob@x.com', 'Referral Count': '0', 'Created At': '2025-01-03', 'Referred By': 'p1' },
    ]);
    const json = await runCliInProcess(['sync', '--file', file, '--json'], { cwd, env: services.env });
    expect(json.code).toBe(0);
    const summary = JSON.parse(json.stdout) as { plan: { invalid: number; invalidRows: { file: string; line: number; reason: string }[] } };
    expect(summary.plan.invalid).toBe(1);
    expect(summary.plan.invalidRows[0]).toMatchObject({ file, line: 3 });
    expect(summary.plan.invalidRows[0]!.reason).toMatch(/"alice@x\.com" already belongs to participant p1 \(.*export\.csv:2\).*participant p2/);

    const aliceIdentifies = services.segment.identifies().filter((m) => m.userId === 'alice@x.com');
    expect(aliceIdentifies).toHaveLength(1);
    expect(aliceIdentifies[0]!.traits).toMatchObject({ referral_count: 1, referral_tier: 'active' });
    expect(services.customerio.identifyArrivals.filter((id) => id === 'email:alice@x.com')).toHaveLength(1);

    // No flip-flop: a second sync of the same file sends nothing at all.
    const segmentBefore = services.segment.arrivals.length;
    const cioBefore = services.customerio.log.total;
    const again = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(again.code).toBe(0);
    expect(services.segment.arrivals.length).toBe(segmentBefore);
    expect(services.customerio.log.total).toBe(cioBefore + 1); // the credentials check only
    expect(services.segment.tracks().filter((m) => m.event === 'Referral Tier Changed')).toEqual([]);
  });

  it('--user-id metadata.<key> shared by seven people identifies the first and reports six', async () => {
    services = await startServices();
    const cwd = tempDir();
    const rows = Array.from({ length: 7 }, (_, i) => ({ ID: `c${i}`, Email: `m${i}@acme.com`, Company: 'acme-inc', 'Created At': '2025-03-01' }));
    const file = writeCsv(cwd, 'export.csv', rows);
    const result = await runCliInProcess(['sync', '--file', file, '--user-id', 'metadata.Company', '--to', 'segment'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('1 participants, 6 invalid');
    expect(services.segment.identifies().map((m) => m.userId)).toEqual(['acme-inc']);
    expect(services.segment.tracks().filter((m) => m.event === 'Referral Program Joined')).toHaveLength(1);
    // One kind: counted on one line with the first in full, and a few more places (--json lists every one).
    expect(result.stdout).toMatch(/ {2}6 × \S*export\.csv:3: user id "acme-inc" already belongs to participant c0/);
    expect(result.stdout).toMatch(/ {6}and 5 more like it, e\.g\. \S*export\.csv:4, \S*export\.csv:5\n/);
  });
});

describe('self-referral', () => {
  it('is a warning: no Referral Made about themself, no credit, organic channel', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [
      { ID: 's1', Email: 'sam@x.com', 'Created At': '2025-01-01', 'Referred By': 'SAM@x.com', 'Referral Status': 'CREDIT_AWARDED', 'Referral Source': 'PARTICIPANT' },
      { ID: 'f1', Email: 'fay@x.com', 'Created At': '2025-01-02', 'Referred By': 's1', 'Referral Status': 'CREDIT_PENDING' },
    ]);
    const diff = await runCliInProcess(['diff', '--file', file, '--json'], { cwd, env: services.env });
    const plan = JSON.parse(diff.stdout) as { warnings: number; warningSamples: { reason: string }[] };
    expect(plan.warnings).toBe(1);
    expect(plan.warningSamples[0]!.reason).toContain('participant s1 is named as their own referrer');

    const result = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(result.code).toBe(0);
    const made = services.segment.tracks().filter((m) => m.event === 'Referral Made');
    expect(made.map((m) => [m.userId, (m.properties as Record<string, unknown>).friend_id])).toEqual([['sam@x.com', 'f1']]);
    const sam = services.segment.identifies().find((m) => m.userId === 'sam@x.com')!;
    expect(sam.traits).toMatchObject({ acquisition_channel: 'organic', referral_count: 0 });
    expect(sam.traits).not.toHaveProperty('referred_by');
    expect([...services.customerio.events.values()].filter((e) => e.name === 'referral_converted')).toEqual([]);
  });
});

describe('tier history', () => {
  it('4 → 5 → 4 → 5 sends three Referral Tier Changed with three ids to each destination', async () => {
    services = await startServices();
    const cwd = tempDir();
    const write = (count: number) => writeCsv(cwd, 'export.csv', [{ ID: 't1', Email: 'tess@x.com', 'Referral Count': String(count), 'Created At': '2025-01-01' }]);
    const file = write(4);
    for (const count of [4, 5, 4, 5]) {
      write(count);
      expect((await runCliInProcess(['sync', '--file', file], { cwd, env: services.env })).code).toBe(0);
    }
    const tiers = services.segment.tracks().filter((m) => m.event === 'Referral Tier Changed');
    expect(tiers.map((m) => `${(m.properties as Record<string, unknown>).previous_tier}>${(m.properties as Record<string, unknown>).tier}`)).toEqual([
      'active>power_referrer',
      'power_referrer>active',
      'active>power_referrer',
    ]);
    expect(new Set(tiers.map((m) => m.messageId)).size).toBe(3);
    const cioTiers = [...services.customerio.events.values()].filter((e) => e.name === 'referral_tier_changed');
    expect(cioTiers).toHaveLength(3);
    const db = state(cwd);
    expect(db.prepare(`SELECT destination, tier_changes FROM identities ORDER BY destination`).all()).toEqual([
      { destination: 'customerio', tier_changes: 3 },
      { destination: 'segment', tier_changes: 3 },
    ]);
    db.close();
    // Nothing changed: nothing more is sent.
    const before = services.segment.arrivals.length;
    expect((await runCliInProcess(['sync', '--file', file], { cwd, env: services.env })).code).toBe(0);
    expect(services.segment.arrivals.length).toBe(before);
  });
});

describe('config mistakes', () => {
  it('two traits mapped to one destination name stop the run with exit 64 before anything is sent', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [{ ID: 'a', Email: 'a@x.com' }]);
    writeFileSync(join(cwd, 'referral-sync.config.json'), JSON.stringify({ traits: { segment: { tier: 'email' }, customerio: { tier: 'email' } } }));
    const result = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain('traits.segment.tier and traits.segment.email are sent to segment under the same name "email"');
    expect(result.stderr).toContain('traits.customerio.tier and traits.customerio.email are sent to customerio under the same name "email"');
    expect(services.segment.log.total + services.customerio.log.total).toBe(0);
  });
});

describe('program change', () => {
  it('a run under another program id than the state delivered stops with exit 64 naming both; --new-program confirms', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [{ ID: 'a', Email: 'a@x.com', 'Created At': '2025-01-01' }]);
    expect((await runCliInProcess(['sync', '--file', file, '--campaign', 'progA'], { cwd, env: services.env })).code).toBe(0);
    const before = { segment: services.segment.arrivals.length, cio: services.customerio.eventArrivals.length };

    const other = await runCliInProcess(['sync', '--file', file, '--campaign', 'progB'], { cwd, env: services.env });
    expect(other.code).toBe(64);
    expect(other.stderr).toMatch(/program id is "progB".*already delivered program "progA"/);
    expect(other.stderr).toContain('--new-program');
    const forgot = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(forgot.code).toBe(64);
    expect(forgot.stderr).toContain('"default" (no --campaign was given)');
    expect(forgot.stderr).toContain('--campaign progA');
    const diff = await runCliInProcess(['diff', '--file', file, '--campaign', 'progB'], { cwd, env: services.env });
    expect(diff.code).toBe(64);
    expect(services.segment.arrivals.length).toBe(before.segment);
    expect(services.customerio.eventArrivals.length).toBe(before.cio);

    const confirmed = await runCliInProcess(['sync', '--file', file, '--campaign', 'progB', '--new-program'], { cwd, env: services.env });
    expect(confirmed.code).toBe(0);
    expect(services.segment.tracks().filter((m) => m.event === 'Referral Program Joined')).toHaveLength(2);
    // Both programs are known from now on: each syncs without the flag and sends nothing new.
    const segmentNow = services.segment.arrivals.length;
    expect((await runCliInProcess(['sync', '--file', file, '--campaign', 'progA'], { cwd, env: services.env })).code).toBe(0);
    expect((await runCliInProcess(['sync', '--file', file, '--campaign', 'progB'], { cwd, env: services.env })).code).toBe(0);
    expect(services.segment.arrivals.length).toBe(segmentNow);
  });
});

describe('retry after newer traits', () => {
  it('a refused identify the next sync no longer finds in the source is superseded, never retried, and the newer traits stay', async () => {
    services = await startServices();
    const cwd = tempDir();
    const rows = (name: string) => [
      { ID: 'a', Email: 'ann@x.com', 'First Name': name, 'Created At': '2025-01-01' },
      { ID: 'b', Email: 'bo@x.com', 'First Name': 'Bo', 'Created At': '2025-01-02' },
    ];
    const file = writeCsv(cwd, 'export.csv', rows('Annie'));
    services.customerio.rejectOperation = (op) => (op.action === 'identify' && op.identifiers?.email === 'ann@x.com' ? 'attribute first_name is refused' : undefined);
    const first = await runCliInProcess(['sync', '--file', file, '--to', 'customerio'], { cwd, env: services.env });
    expect(first.code).toBe(1);

    services.customerio.rejectOperation = undefined;
    writeCsv(cwd, 'export.csv', rows('Ann'));
    const second = await runCliInProcess(['sync', '--file', file, '--to', 'customerio'], { cwd, env: services.env });
    expect(second.code).toBe(0);
    // The sync read the whole source, which no longer shows "Annie": the refused identify is superseded there.
    // (retry's own rule, for a refusal no sync has looked at since, is test/unit/retry-selection.test.ts's.)
    expect(second.stderr).toContain('1 operation earlier runs could not deliver is superseded, not sent: the source no longer shows it.');
    expect(services.customerio.people.get('email:ann@x.com')).toMatchObject({ first_name: 'Ann' });
    const identifiesBefore = services.customerio.identifyArrivals.length;

    const retry = await runCliInProcess(['retry', '--to', 'customerio'], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    expect(retry.stdout).toContain('nothing to retry');
    expect(services.customerio.identifyArrivals.length).toBe(identifiesBefore);
    expect(services.customerio.people.get('email:ann@x.com')).toMatchObject({ first_name: 'Ann' });

    const db = state(cwd);
    expect(db.prepare(`SELECT status, COUNT(*) AS n FROM deliveries WHERE kind = 'identify' AND user_id = 'ann@x.com' GROUP BY status ORDER BY status`).all()).toEqual([
      { status: 'sent', n: 1 },
      { status: 'superseded', n: 1 },
    ]);
    const baseline = db.prepare(`SELECT traits FROM identities WHERE destination = 'customerio' AND user_id = 'ann@x.com'`).get() as { traits: string };
    expect(JSON.parse(baseline.traits)).toMatchObject({ first_name: 'Ann' });
    db.close();
    const status = await runCliInProcess(['status', '--json'], { cwd, env: services.env });
    const deliveries = (JSON.parse(status.stdout) as { deliveries: { status: string; count: number }[] }).deliveries;
    expect(deliveries.find((d) => d.status === 'superseded')?.count).toBe(1);
  });
});

describe('smaller rules', () => {
  it('a missing credential suggests --to only with a destination that has its credentials', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [{ ID: 'a', Email: 'a@x.com' }]);
    const { SEGMENT_WRITE_KEY: _key, ...withoutSegment } = services.env;
    const one = await runCliInProcess(['sync', '--file', file], { cwd, env: withoutSegment });
    expect(one.code).toBe(64);
    expect(one.stderr).toContain('Missing credentials: set SEGMENT_WRITE_KEY (for Segment).');
    expect(one.stderr).toContain('--to customerio');
    const none = await runCliInProcess(['sync', '--file', file], { cwd, env: {} });
    expect(none.code).toBe(64);
    expect(none.stderr).not.toContain('--to');
  });

  it('the 72-hour campaign warning counts only events dated in the last 72 hours, not in the future', async () => {
    const cwd = tempDir();
    const file = writeCsv(cwd, 'export.csv', [
      { ID: 'a', Email: 'a@x.com', 'Created At': '1/1/2199' },
      { ID: 'b', Email: 'b@x.com', 'Created At': new Date(Date.now() - 3_600_000).toISOString() },
    ]);
    const diff = JSON.parse((await runCliInProcess(['diff', '--file', file, '--json'], { cwd })).stdout) as { customerioRecentEvents: number };
    expect(diff.customerioRecentEvents).toBe(1);
  });
});
