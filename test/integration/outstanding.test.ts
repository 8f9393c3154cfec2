import { afterEach, describe, expect, it } from 'vitest';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

interface Group {
  programId: string | null;
  destination: string;
  status: string;
  reason: string;
  count: number;
  example: { userId: string; kind: string; at: string; lastError: string };
  retry: string;
}
interface OutstandingJson {
  total: number;
  dead: number;
  failed: number;
  groups: Group[];
}

/** 300 people; Customer.io refuses the identify of the first 120 for good, each refusal naming the person. */
async function runWithDeadDeliveries(): Promise<{ cwd: string; file: string; env: Record<string, string> }> {
  services = await startServices();
  const cwd = tempDir();
  const rows = Array.from({ length: 300 }, (_, i) => ({ ID: `p${i}`, Email: `p${i}@example.com`, 'Created At': '2025-01-01' }));
  const file = writeCsv(cwd, 'export.csv', rows);
  const refused = new Set(rows.slice(0, 120).map((r) => r.Email));
  services.customerio.rejectOperation = (op) => {
    const id = op.identifiers?.email ?? op.identifiers?.id;
    return op.action === 'identify' && typeof id === 'string' && refused.has(id) ? `email ${id} is on the suppression list` : undefined;
  };
  const first = await runCliInProcess(['sync', '--file', file, '--campaign', 'abc123'], { cwd, env: services.env });
  expect(first.code).toBe(1);
  return { cwd, file, env: services.env };
}

describe('failures stay visible until they are dealt with', () => {
  it('the next sync shows earlier dead deliveries grouped, with an example and what to run; --fail-on-outstanding exits 1', async () => {
    const { cwd, file, env } = await runWithDeadDeliveries();
    const next = await runCliInProcess(['sync', '--file', file, '--campaign', 'abc123'], { cwd, env });
    expect(next.code).toBe(0);
    const lines = next.stdout.split('\n');
    const at = lines.findIndex((l) => l.startsWith('Still not delivered from earlier runs: 120: 120 dead, in 1 group'));
    expect(at, next.stdout).toBeGreaterThan(0);
    // One group line, not 120: the reasons differ only in the email.
    expect(lines[at + 1]).toMatch(/^ {2}Customer\.io +dead +120 {2}Customer\.io refused it: .*email <email> is on the suppression list$/);
    expect(lines[at + 2]).toMatch(/^ {4}e\.g\. p\d+@example\.com \(identify, \d{4}-\d\d-\d\dT[^)]+\): Customer\.io refused it: .*email p\d+@example\.com is on the suppression list$/);
    expect(lines[at + 3]).toContain('refused for good: fix what the reason names');
    expect(lines[at + 3]).toContain('`npx referral-sync retry --campaign abc123 --to customerio`');
    expect(next.stdout.split('\n').filter((l) => l.includes('suppression list'))).toHaveLength(2);
    // stderr, for a cron job that keeps only that.
    expect(next.stderr).toContain('sync: 120 deliveries of earlier runs are still not delivered (120 dead)');
    expect(next.stderr).toContain('--fail-on-outstanding makes a run exit 1');

    const json = await runCliInProcess(['sync', '--file', file, '--campaign', 'abc123', '--json'], { cwd, env });
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as { exitCode: number; outcome: string; outstanding: OutstandingJson };
    expect(report).toMatchObject({ exitCode: 0, outcome: 'done' });
    expect(report.outstanding).toMatchObject({ total: 120, dead: 120, failed: 0 });
    expect(report.outstanding.groups).toEqual([
      expect.objectContaining({ programId: 'abc123', destination: 'customerio', status: 'dead', count: 120, retry: 'npx referral-sync retry --campaign abc123 --to customerio' }),
    ]);

    for (const args of [[], ['--json']]) {
      const strict = await runCliInProcess(['sync', '--file', file, '--campaign', 'abc123', '--fail-on-outstanding', ...args], { cwd, env });
      expect(strict.code).toBe(1);
      expect(strict.stderr).toContain('sync: exit 1: --fail-on-outstanding, and 120 deliveries of earlier runs are still not delivered.');
      if (args.length > 0) expect((JSON.parse(strict.stdout) as { exitCode: number }).exitCode).toBe(1);
    }
    // backfill says the same.
    const backfill = await runCliInProcess(['backfill', '--file', file, '--campaign', 'abc123', '--fail-on-outstanding'], { cwd, env });
    expect(backfill.stdout).toContain('Still not delivered from earlier runs: 120: 120 dead, in 1 group');
    expect(backfill.code).toBe(1);
  });

  it('status groups them in text, lists every one grouped in --json, and exits 1 with --fail-on-outstanding until retry delivers them', async () => {
    const { cwd, env } = await runWithDeadDeliveries();
    const text = await runCliInProcess(['status'], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('Failed and dead deliveries, by reason: 120: 120 dead, in 1 group');
    expect(text.stdout.split('\n').filter((l) => l.includes('suppression list'))).toHaveLength(2);
    expect(text.stdout).toContain('program abc123  Customer.io  dead         120  Customer.io refused it: ');

    const json = await runCliInProcess(['status', '--json'], { cwd });
    const status = JSON.parse(json.stdout) as { exitCode: number; outstanding: OutstandingJson; problems: { userId: string; reason: string; programId: string; destination: string; status: string }[] };
    expect(status.exitCode).toBe(0);
    expect(status.outstanding.groups).toHaveLength(1);
    const group = status.outstanding.groups[0]!;
    expect(group).toMatchObject({ programId: 'abc123', destination: 'customerio', status: 'dead', count: 120 });
    expect(status.problems).toHaveLength(120);
    expect(new Set(status.problems.map((p) => p.userId)).size).toBe(120);
    // Every delivery names its group.
    expect(status.problems.every((p) => p.reason === group.reason && p.programId === 'abc123' && p.destination === 'customerio' && p.status === 'dead')).toBe(true);

    const strict = await runCliInProcess(['status', '--fail-on-outstanding'], { cwd });
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain('120 failed and dead deliveries are outstanding (exit 1, --fail-on-outstanding).');
    expect((JSON.parse((await runCliInProcess(['status', '--json', '--fail-on-outstanding'], { cwd })).stdout) as { exitCode: number }).exitCode).toBe(1);

    // Dealt with: the cause fixed, retry sends them; nothing is outstanding any more.
    services!.customerio.rejectOperation = undefined;
    const retry = await runCliInProcess(['retry', '--fail-on-outstanding'], { cwd, env });
    expect(retry.code).toBe(0);
    expect(retry.stdout).not.toContain('Still not delivered');
    const after = await runCliInProcess(['status', '--fail-on-outstanding'], { cwd });
    expect(after.code).toBe(0);
    expect(after.stdout).not.toContain('Failed and dead deliveries');
  });
});
