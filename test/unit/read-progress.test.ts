import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { celloCsvSource } from '../../src/sources/cello/csv.js';
import { growsurfCsvSource } from '../../src/sources/growsurf/csv.js';
import type { ReadProgress, Source } from '../../src/sources/source.js';
import { FIXTURES, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';

/** Reads a source once, noting what it says of its progress at every record. */
async function readNoting(source: Source): Promise<ReadProgress[]> {
  const seen: ReadProgress[] = [];
  const records = source.records();
  seen.push(source.readProgress!());
  for await (const record of records) {
    void record;
    seen.push(source.readProgress!());
  }
  seen.push(source.readProgress!());
  return seen;
}

describe('what sources say of their reading', () => {
  it('a GrowSurf export: bytes of the file, from 0 on every read, never past the file\'s size', async () => {
    const file = writeProgram(tempDir(), 3_000);
    const size = statSync(file).size;
    const source = growsurfCsvSource({ files: [file], programId: 'camp1', config: defaultConfig() });
    for (let pass = 0; pass < 2; pass += 1) {
      const seen = await readNoting(source);
      // Known before the first row: the file's size.
      expect(seen[0]).toEqual({ done: 0, total: size, unit: 'bytes' });
      expect(seen.at(-1)).toEqual({ done: size, total: size, unit: 'bytes' });
      const dones = seen.map((p) => p.done);
      expect(dones).toEqual([...dones].sort((a, b) => a - b));
      // A 400 KB file is read in chunks: the count moves during the read, not only at its end.
      expect(new Set(dones).size).toBeGreaterThan(2);
    }
  });

  it('Cello exports: the files\' bytes while loading, then the loaded records on each replay', async () => {
    const dir = join(FIXTURES, 'cello');
    const source = celloCsvSource({ paths: [dir], programId: 'prog', tierBasis: 'signups' });
    const first = await readNoting(source);
    expect(first[0]).toMatchObject({ done: 0, unit: 'bytes' });
    expect(first[0]!.total).toBeGreaterThan(0);
    const last = first.at(-1)!;
    expect(last).toMatchObject({ unit: 'records' });
    expect(last.done).toBe(last.total);
    const second = await readNoting(source);
    expect(second.at(-1)).toEqual(last);
  });
});
