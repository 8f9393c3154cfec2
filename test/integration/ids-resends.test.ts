import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Issue 17, guarantees 3 and 4 end to end: the examples against the fake Segment, which keeps the first
 * message of each messageId and drops a repeat, as Segment does for about a day. The properties behind them, over
 * any history of snapshots and faults, are test/unit/ledger-properties.test.ts.
 */

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

const write = (cwd: string, count: number): string => writeCsv(cwd, 'export.csv', [{ ID: 't1', Email: 'tess@x.com', 'Referral Count': String(count), 'Created At': '2025-01-01' }]);

/** What Segment holds for Tess: the traits of the identifies it kept (a dropped repeat changes nothing), in order. */
function segmentTraits(s: Services): Record<string, unknown> {
  return Object.assign({}, ...s.segment.identifies().filter((m) => m.userId === 'tess@x.com').map((m) => m.traits));
}

describe('an id names one send of one value (guarantee 3)', () => {
  it('referral_count 4 → 5 → 4 over three syncs: three identifies with three messageIds, and Segment keeps 4, as the state believes', async () => {
    services = await startServices();
    const cwd = tempDir();
    for (const count of [4, 5, 4]) {
      const result = await runCli(['sync', '--file', write(cwd, count), '--to', 'segment'], { cwd, env: services.env });
      expect(result.code).toBe(0);
      expect(segmentTraits(services)).toMatchObject({ referral_count: count });
    }
    const identifies = services.segment.arrivals.filter((id) => services!.segment.messages.get(id)?.type === 'identify');
    expect(identifies).toHaveLength(3);
    expect(new Set(identifies).size).toBe(3);
    const db = new Database(join(cwd, '.referral-sync', 'state.db'), { readonly: true });
    const baseline = db.prepare(`SELECT traits FROM identities WHERE user_id = 'tess@x.com'`).get() as { traits: string };
    db.close();
    expect(JSON.parse(baseline.traits)).toMatchObject({ referral_count: 4 });
  });
});

describe('what is resent is still true (guarantee 4)', () => {
  it('4 is sent, the identify with 5 fails, the source goes back to 4: the next sync sends neither 5 nor the reverted tier move, and says what it superseded', async () => {
    // In process, on a clock that skips the backoff between the 503s (the built CLI: the 400 cases below).
    services = await startServices();
    const cwd = tempDir();
    expect((await runCliInProcess(['sync', '--file', write(cwd, 4), '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);
    // Segment fails Tess's messages (5xx on every attempt): the identify with 5 and its Referral Tier Changed end failed.
    services.segment.rejectMessage = (m) => (m.userId === 'tess@x.com' ? 503 : undefined);
    expect((await runCliInProcess(['sync', '--file', write(cwd, 5), '--to', 'segment'], { cwd, env: services.env })).code).toBe(1);
    services.segment.rejectMessage = undefined;
    const before = services.segment.arrivals.length;

    const third = await runCliInProcess(['sync', '--file', write(cwd, 4), '--to', 'segment', '--json'], { cwd, env: services.env });
    expect(third.code).toBe(0);
    // The tier move is superseded at the end of the run; the identify with 5, when the new identify replaced it.
    expect(third.stderr).toContain('1 operation earlier runs could not deliver is superseded, not sent: the source no longer shows it.');
    const sent = services.segment.arrivals.slice(before).map((id) => services!.segment.messages.get(id)!);
    expect(sent.filter((m) => m.type === 'track')).toEqual([]);
    // The failed 5 may have been applied (an answer lost on the way back): 4 goes again, under an id of its own.
    expect(sent.map((m) => [m.type, m.traits?.referral_count])).toEqual([['identify', 4]]);
    expect(segmentTraits(services)).toMatchObject({ referral_count: 4, referral_tier: 'active' });

    // Nothing stale is left for retry, which does not read the source.
    const retry = await runCliInProcess(['retry', '--to', 'segment'], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    expect(retry.stdout).toContain('nothing to retry');
    const db = new Database(join(cwd, '.referral-sync', 'state.db'), { readonly: true });
    const rows = db.prepare(`SELECT kind, status FROM deliveries WHERE status <> 'sent' ORDER BY kind`).all();
    db.close();
    expect(rows).toEqual([
      { kind: 'identify', status: 'superseded' },
      { kind: 'tierChanged', status: 'superseded' },
    ]);
  });

  it.for([
    { name: 'the source went back to 4: sync supersedes the dead 5 and its move, retry sends nothing', back: 4, resent: [] as number[] },
    { name: 'the source still shows 5: sync keeps the dead 5 for retry, which sends it', back: 5, resent: [5] },
  ])('4 is sent, Segment refuses the identify with 5 for good (400): $name', async ({ back, resent }) => {
    services = await startServices();
    const cwd = tempDir();
    expect((await runCli(['sync', '--file', write(cwd, 4), '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);
    services.segment.rejectMessage = (m) => (m.userId === 'tess@x.com' ? 400 : undefined);
    expect((await runCli(['sync', '--file', write(cwd, 5), '--to', 'segment'], { cwd, env: services.env })).code).toBe(1);
    services.segment.rejectMessage = undefined;
    expect((await runCli(['sync', '--file', write(cwd, back), '--to', 'segment'], { cwd, env: services.env })).code).toBe(0);
    const before = services.segment.arrivals.length;
    // The cause of the refusal fixed, the user runs retry, which reads no source.
    const retry = await runCli(['retry', '--to', 'segment'], { cwd, env: services.env });
    expect(retry.code).toBe(0);
    const sent = services.segment.arrivals.slice(before).map((id) => services!.segment.messages.get(id)!);
    expect(sent.filter((m) => m.type === 'identify').map((m) => m.traits?.referral_count)).toEqual(resent);
    if (back === 4) expect(sent).toEqual([]);
    expect(segmentTraits(services)).toMatchObject({ referral_count: back });
  });
});
