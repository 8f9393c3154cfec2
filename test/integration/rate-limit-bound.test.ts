import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, it } from 'vitest';
import { MAX_RATE_LIMIT_WAITS } from '../../src/apply/retry.js';
import { runCliInProcess, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServicesFor } from '../support/services.js';

/**
 * Issue 17, guarantee 2 for the destinations: a 429 that says how long to wait costs no attempt, but a service
 * that says "wait 0 s" forever is asked a bounded number of times. The run ends with the operations failed (kept
 * for the next run), and a healthy run then delivers every id exactly once.
 */
describe.concurrent('a destination that answers 429 forever', () => {
  const cases = [
    { destination: 'segment' as const, api: [] as string[] },
    { destination: 'customerio' as const, api: ['--customerio-api', 'v2'] },
    { destination: 'customerio' as const, api: ['--customerio-api', 'v1'] },
  ];
  for (const { destination, api } of cases) {
    it(`${destination} ${api.join(' ')}: bounded, failed not sent, then delivered once`, async ({ expect, onTestFinished }) => {
      const services = await startServicesFor(onTestFinished, { [destination]: { rate429: 1, retryAfterSeconds: 0, spareGets: true } });
      const cwd = tempDir();
      const file = writeProgram(cwd, 3, 41);
      const result = await runCliInProcess(['sync', '--file', file, '--to', destination, ...api], { cwd, env: services.env });
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      const fake = services[destination];
      expect(fake.log.byStatus.get(429)).toBeGreaterThan(0);
      // Each operation was asked about at most the bound plus its own attempts: far from "forever".
      expect(fake.log.total).toBeLessThan(1_000);
      const db = new Database(join(cwd, '.referral-sync', 'state.db'), { readonly: true });
      const rows = db.prepare(`SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status`).all() as { status: string; n: number }[];
      const errors = db.prepare(`SELECT DISTINCT last_error AS e FROM deliveries WHERE status = 'failed'`).all() as { e: string }[];
      db.close();
      expect(rows.map((r) => r.status)).toEqual(['failed']);
      expect(errors.some((r) => r.e.includes(`rate limited ${MAX_RATE_LIMIT_WAITS} times in a row`))).toBe(true);

      fake.setFaults({});
      const again = await runCliInProcess(['sync', '--file', file, '--to', destination, ...api], { cwd, env: services.env });
      expect(again.code).toBe(0);
      if (destination === 'segment') {
        expect(services.segment.arrivals.length).toBe(new Set(services.segment.arrivals).size);
        expect(services.segment.arrivals.length).toBeGreaterThan(0);
      } else {
        expect(services.customerio.eventArrivals.length).toBe(new Set(services.customerio.eventArrivals).size);
        expect(services.customerio.eventArrivals.length).toBeGreaterThan(0);
      }
    }, 60_000);
  }
});
