import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { jsonChunks, StreamedArray } from '../../src/cli/output/json-stream.js';
import { ProblemLog } from '../../src/cli/output/problem-log.js';

async function text(chunks: AsyncIterable<string>): Promise<string> {
  let out = '';
  for await (const chunk of chunks) out += chunk;
  return out;
}

async function* from<T>(items: T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

describe('jsonChunks', () => {
  it('writes exactly what JSON.stringify writes with the arrays in place, indented or compact', async () => {
    const rows = [{ file: 'a.csv', line: 2, reason: 'bad\n"quote"' }, { file: null, line: null, reason: 'x', limits: [{ size: 1 }] }];
    const expected = { command: 'diff', plan: { invalid: 2, invalidRows: rows, warningRows: [], nested: { deep: rows } }, after: true };
    const streamed = {
      command: 'diff',
      plan: { invalid: 2, invalidRows: new StreamedArray(() => from(rows)), warningRows: new StreamedArray(() => from([])), nested: { deep: new StreamedArray(() => from(rows)) } },
      after: true,
    };
    expect(await text(jsonChunks(streamed, 2))).toBe(JSON.stringify(expected, null, 2));
    expect(await text(jsonChunks(streamed))).toBe(JSON.stringify(expected));
  });
});

describe('ProblemLog', () => {
  it('keeps every entry in order, spilling past its memory limit to a temporary file it removes on close', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('referral-sync-problems-')));
    const log = new ProblemLog(3);
    const entries = Array.from({ length: 2500 }, (_, i) => ({ file: 'big.csv', line: i + 2, reason: `row ${i}` }));
    for (const entry of entries) log.add(entry);
    const spilled = readdirSync(tmpdir()).filter((n) => n.startsWith('referral-sync-problems-') && !before.has(n));
    expect(spilled).toHaveLength(1);
    const read: unknown[] = [];
    for await (const entry of log.entries()) read.push(entry);
    expect(read).toEqual(entries);
    expect(log.count).toBe(2500);
    log.close();
    expect(existsSync(`${tmpdir()}/${spilled[0]}`)).toBe(false);
  });
});
