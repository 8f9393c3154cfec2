import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { readPlanProblems } from '../support/plan.js';
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
  kind: string;
}
interface Kind {
  kind: string;
  count: number;
  examples: Row[];
}

/** 2,000 participants, every other one without an account id (column company_id), 30 of those with an unknown referrer too. */
function b2bExport(dir: string): string {
  const rows = Array.from({ length: 2000 }, (_, i) => ({
    ID: `p${i}`,
    Email: `p${i}@example.com`,
    'Created At': '2025-01-01',
    'Referred By': i % 2 === 1 && i < 60 ? `gone${i}` : '',
    company_id: i % 2 === 0 ? `acme${i % 7}` : '',
  }));
  return writeCsv(dir, 'b2b.csv', rows);
}

describe('per-row warnings of one kind are one line with a count', () => {
  it.each([
    ['diff', ['diff'], '--json (or --out plan.jsonl)'],
    ['sync', ['sync'], '--json'],
  ])('%s --group-id with 1,000 people without an account: a handful of lines; --json (and --out) list every one', async (_name, command, where) => {
    const cwd = tempDir();
    const file = b2bExport(cwd);
    const env = command[0] === 'sync' ? (services = await startServices()).env : {};
    const text = await runCliInProcess([...command, '--file', file, '--group-id', 'metadata.company_id'], { cwd, env });
    expect(text.code, text.stderr).toBe(0);
    const mentions = text.stdout.split('\n').filter((l) => l.includes(`${file}:`) && !l.startsWith('  read '));
    // Two kinds (no account id; unknown referrer): two lines each, whatever the number of rows.
    expect(mentions.length, text.stdout).toBe(4);
    expect(text.stdout).toContain(`Warnings (1,030), 2 kinds:\n  1,000 × ${file}:3: participant p1 has no account id`);
    expect(text.stdout).toContain(`        and 999 more like it, e.g. ${file}:5, ${file}:7\n`);
    expect(text.stdout).toMatch(new RegExp(`\\n {5}30 × ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: referrer "gone1" of participant p1 is not in the data`));
    expect(text.stdout).toContain(`  ${where} lists every one`);
    expect(text.stdout.split('\n').length).toBeLessThan(80);

    const out = join(cwd, 'plan.jsonl');
    const json = await runCliInProcess([...command, '--file', file, '--group-id', 'metadata.company_id', '--json', ...(command[0] === 'diff' ? ['--out', out] : [])], { cwd, env });
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as { warningRows?: Row[]; warningKinds?: Kind[]; plan?: { warningRows: Row[]; warningKinds: Kind[] } };
    const plan = parsed.plan ?? (parsed as { warningRows: Row[]; warningKinds: Kind[] });
    expect(plan.warningRows).toHaveLength(1030);
    const noAccount = plan.warningRows.filter((r) => r.kind === 'account-id-missing');
    expect(noAccount).toHaveLength(1000);
    expect(new Set(noAccount.map((r) => r.line))).toEqual(new Set(Array.from({ length: 1000 }, (_, i) => 2 * i + 3)));
    expect(plan.warningKinds.map((k) => [k.kind, k.count])).toEqual([
      ['account-id-missing', 1000],
      ['referrer-left-out/missing', 30],
    ]);
    expect(plan.warningKinds[0]!.examples.map((e) => e.line)).toEqual([3, 5, 7]);
    if (command[0] === 'diff') {
      const lines = readPlanProblems(out).filter((p) => p.type === 'warning') as unknown as Row[];
      expect(lines).toHaveLength(1030);
      expect(lines.filter((l) => l.kind === 'account-id-missing')).toHaveLength(1000);
    }
  });

  it('invalid rows of one kind (a reason differing only in the value) are grouped the same way', async () => {
    const cwd = tempDir();
    const rows = Array.from({ length: 500 }, (_, i) => ({ ID: `b${i}`, Email: `b${i}@example.com`, 'Created At': `the ${i}th of June` }));
    const file = writeCsv(cwd, 'dates.csv', rows);
    const text = await runCliInProcess(['diff', '--file', file], { cwd });
    expect(text.stdout).toContain(`Invalid rows (500, not planned):\n  500 × ${file}:2: unparseable date "the 0th of June"`);
    expect(text.stdout.split('\n').filter((l) => l.includes(`${file}:`))).toHaveLength(2);
    const json = JSON.parse((await runCliInProcess(['diff', '--file', file, '--json'], { cwd })).stdout) as { invalidRows: Row[]; invalidKinds: Kind[] };
    expect(json.invalidRows).toHaveLength(500);
    expect(json.invalidKinds).toEqual([expect.objectContaining({ count: 500, kind: expect.stringContaining('unparseable date "…"') as unknown })]);
  });
});
