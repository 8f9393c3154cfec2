import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { readPlan, readPlanProblems } from '../support/plan.js';
import { startServices, type Services } from '../support/services.js';

let services: Services | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
});

interface Row {
  file: string | null;
  line: number | null;
  reason: string;
}

/** 40 good people, 60 of whose referrers are unknown (warnings), and `bad` rows with an impossible date. */
function messyExport(dir: string, bad: number): string {
  const rows: Record<string, string>[] = [];
  for (let i = 0; i < 40; i += 1) rows.push({ ID: `g${i}`, Email: `good${i}@example.com`, 'Created At': '2025-01-01', 'Referred By': '' });
  for (let i = 0; i < 60; i += 1) {
    rows.push({ ID: `w${i}`, Email: `warn${i}@example.com`, 'Created At': '2025-01-02', 'Referred By': `gone${i}`, 'Referral Status': 'CREDIT_PENDING' });
  }
  for (let i = 0; i < bad; i += 1) rows.push({ ID: `b${i}`, Email: `bad${i}@example.com`, 'Created At': 'sometime in June', 'Referred By': '' });
  return writeCsv(dir, 'messy.csv', rows);
}

describe('reports are never capped where machines read them', () => {
  it('diff with 3,000 bad rows: text groups them by kind in a few lines and says where the rest is; --json and --out list every one', async () => {
    const cwd = tempDir();
    const file = messyExport(cwd, 3000);
    const text = await runCliInProcess(['diff', '--file', file], { cwd });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('Participants: 100 planned, 3000 invalid, 60 warnings');
    // One kind each: its count, its first row in full, and where a few more are.
    expect(text.stdout).toContain(`Invalid rows (3,000, not planned):\n  3,000 × ${file}:102: unparseable date "sometime in June"`);
    expect(text.stdout).toContain(`        and 2,999 more like it, e.g. ${file}:103, ${file}:104\n  --json (or --out plan.jsonl) lists every one`);
    expect(text.stdout).toContain(`Warnings (60):\n  60 × ${file}:42: referrer "gone0" of participant w0 is not in the data`);
    expect(text.stdout).toContain(`     and 59 more like it, e.g. ${file}:43, ${file}:44\n  --json (or --out plan.jsonl) lists every one`);
    expect(text.stdout.split('\n').filter((l) => l.includes(file))).toHaveLength(5);

    const out = join(cwd, 'plan.jsonl');
    const json = await runCliInProcess(['diff', '--file', file, '--json', '--out', out], { cwd });
    expect(json.code).toBe(0);
    const summary = JSON.parse(json.stdout) as { invalid: number; invalidRows: Row[]; warnings: number; warningRows: Row[] };
    expect(summary.invalidRows).toHaveLength(3000);
    expect(summary.invalidRows.map((r) => r.line)).toEqual(Array.from({ length: 3000 }, (_, i) => i + 102));
    expect(summary.invalidRows.every((r) => r.file === file && r.reason.startsWith('unparseable date "sometime in June"'))).toBe(true);
    expect(summary.warningRows).toHaveLength(60);
    expect(summary.warningRows[59]).toMatchObject({ file, line: 101, reason: expect.stringContaining('referrer "gone59"') as unknown });

    // The plan file: a line per invalid row and per warning beside the unchanged operation lines.
    const problems = readPlanProblems(out);
    expect(problems.filter((p) => p.type === 'invalid')).toHaveLength(3000);
    expect(problems.filter((p) => p.type === 'warning')).toHaveLength(60);
    expect(problems[problems.length - 1]).toMatchObject({ type: 'invalid', file, line: 3101, participantId: 'b2999' });
    expect(readPlan(out)).toHaveLength(400);
    expect(json.stderr).toContain('(400 operations, 3000 invalid, 60 warnings)');
  });

  it('sync --json lists every invalid row and warning', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = messyExport(cwd, 120);
    const result = await runCliInProcess(['sync', '--file', file, '--json'], { cwd, env: services.env });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { plan: { invalid: number; invalidRows: Row[]; warningRows: Row[] } };
    expect(report.plan.invalid).toBe(120);
    expect(report.plan.invalidRows).toHaveLength(120);
    expect(report.plan.warningRows).toHaveLength(60);
    const text = await runCliInProcess(['sync', '--file', file], { cwd, env: services.env });
    expect(text.stdout).toContain(`Invalid rows (120, not sent):\n  120 × ${file}:102: unparseable date`);
    expect(text.stdout).toContain(`      and 119 more like it, e.g. ${file}:103, ${file}:104\n  --json lists every one`);
  });

  it('status shows 250 refusals of one reason as one group in text, and every one of them in --json', async () => {
    services = await startServices();
    const cwd = tempDir();
    const rows = Array.from({ length: 250 }, (_, i) => ({ ID: `p${i}`, Email: `p${i}@example.com`, 'Created At': '2025-01-01' }));
    const file = writeCsv(cwd, 'export.csv', rows);
    services.customerio.rejectOperation = (op) => (op.action === 'identify' ? 'attribute refused for the test' : undefined);
    expect((await runCliInProcess(['sync', '--file', file], { cwd, env: services.env })).code).toBe(1);

    const text = await runCliInProcess(['status'], { cwd });
    // One line for the group (the example's reason is the group's, so it is not repeated).
    expect(text.stdout.split('\n').filter((l) => l.includes('attribute refused for the test'))).toHaveLength(1);
    expect(text.stdout).toContain('Failed and dead deliveries, by reason: 250: 250 dead, in 1 group');
    expect(text.stdout).toMatch(/ {2}program default {2}Customer\.io {2}dead +250 {2}Customer\.io refused it: invalid, field batch, attribute refused for the test\n {4}e\.g\. p\d+@example\.com \(identify, /);
    const json = JSON.parse((await runCliInProcess(['status', '--json'], { cwd })).stdout) as { problems: { userId: string; status: string; lastError: string }[] };
    expect(json.problems).toHaveLength(250);
    expect(new Set(json.problems.map((p) => p.userId)).size).toBe(250);
    expect(json.problems.every((p) => p.status === 'dead' && p.lastError === 'Customer.io refused it: invalid, field batch, attribute refused for the test')).toBe(true);
  });
});
