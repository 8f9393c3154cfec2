import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { DataError } from '../../src/errors.js';
import type { SourceRecord } from '../../src/model/participant.js';
import { InputFiles, openCsv } from '../../src/sources/csv/reader.js';
import { detectEncoding, encodingFromFlag } from '../../src/sources/csv/encoding.js';
import { growsurfCsvSource } from '../../src/sources/growsurf/csv.js';
import { tempDir } from '../support/cli.js';

const TEXT = 'ID,Email,First Name\np1,jose@example.com,José\np2,zoe@example.com,Zoë Ñúñez\n';

function utf16be(text: string): Buffer {
  const le = Buffer.from(text, 'utf16le');
  for (let i = 0; i < le.length; i += 2) [le[i], le[i + 1]] = [le[i + 1]!, le[i]!];
  return le;
}

/** The same export in every encoding Excel and friends write. */
const FILES: Record<string, { bytes: Buffer; encoding: string; reason: string }> = {
  'utf8.csv': { bytes: Buffer.from(TEXT, 'utf8'), encoding: 'utf-8', reason: 'valid UTF-8' },
  'utf8-bom.csv': { bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(TEXT, 'utf8')]), encoding: 'utf-8', reason: 'byte-order mark' },
  'utf16le.csv': { bytes: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(TEXT, 'utf16le')]), encoding: 'utf-16le', reason: 'byte-order mark' },
  'utf16be.csv': { bytes: Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(TEXT)]), encoding: 'utf-16be', reason: 'byte-order mark' },
  'utf16le-no-bom.csv': { bytes: Buffer.from(TEXT, 'utf16le'), encoding: 'utf-16le', reason: 'no byte-order mark, but a zero byte in every other byte' },
  'windows-1252.csv': { bytes: Buffer.from(TEXT, 'latin1'), encoding: 'windows-1252', reason: 'not valid UTF-8 (first at line 2, byte 0xE9)' },
};

async function firstNames(path: string, inputs = new InputFiles()): Promise<string[]> {
  const csv = await openCsv(path, inputs);
  const names: string[] = [];
  for await (const row of csv.rows) names.push(row.kind === 'row' ? row.fields[2]! : `error: ${row.reason}`);
  return names;
}

describe('encoding detection', () => {
  it('reads UTF-8 with and without BOM, UTF-16 LE/BE and Windows-1252 alike: José stays José', async () => {
    const dir = tempDir();
    for (const [name, file] of Object.entries(FILES)) {
      const path = join(dir, name);
      writeFileSync(path, file.bytes);
      expect(await detectEncoding(path), name).toEqual({ encoding: file.encoding, detected: true, reason: file.reason });
      expect(await firstNames(path), name).toEqual(['José', 'Zoë Ñúñez']);
    }
  });

  it('looks at the whole file: one Windows-1252 byte near the end of a 3 MB file decides', async () => {
    const dir = tempDir();
    const path = join(dir, 'big.csv');
    const rows = ['ID,Email,First Name'];
    for (let i = 0; i < 60_000; i += 1) rows.push(`p${i},member${i}@example.com,Name${i}`);
    const head = Buffer.from(`${rows.join('\n')}\n`, 'utf8');
    writeFileSync(path, Buffer.concat([head, Buffer.from('p-last,last@example.com,Jos\xe9\n', 'latin1')]));
    expect(head.length).toBeGreaterThan(2 << 20);
    expect(await detectEncoding(path)).toEqual({ encoding: 'windows-1252', detected: true, reason: 'not valid UTF-8 (first at line 60002, byte 0xE9)' });
    expect((await firstNames(path)).at(-1)).toBe('José');
  });

  it('keeps a UTF-8 character cut by a read boundary whole', async () => {
    const dir = tempDir();
    const path = join(dir, 'boundary.csv');
    // '€' is three bytes; place one across the 1 MiB mark where detection reads its next chunk.
    const prefix = 'ID,Email,First Name\np1,a@example.com,';
    const filler = 'x'.repeat((1 << 20) - Buffer.byteLength(prefix) - 1);
    writeFileSync(path, `${prefix}${filler}€\n`);
    expect(await detectEncoding(path)).toMatchObject({ encoding: 'utf-8', reason: 'valid UTF-8' });
    expect((await firstNames(path))[0]!.endsWith('x€')).toBe(true);
  });

  it('reads a file that is mostly UTF-8 as UTF-8, warns, and reports only the damaged row', async () => {
    const dir = tempDir();
    const path = join(dir, 'mixed.csv');
    writeFileSync(path, Buffer.concat([Buffer.from('ID,Email,First Name\np1,a@example.com,José\np2,b@example.com,Zoë\n', 'utf8'), Buffer.from('p3,c@example.com,Ren\xe9\n', 'latin1')]));
    const detected = await detectEncoding(path);
    expect(detected).toMatchObject({ encoding: 'utf-8', detected: true, reason: 'mostly UTF-8 (1 byte not, first at line 4, byte 0xE9)' });
    expect(detected.warning).toContain('rows with those bytes are reported invalid');
    const names = await firstNames(path);
    expect(names.slice(0, 2)).toEqual(['José', 'Zoë']);
    expect(names[2]).toMatch(/^error: column "First Name" holds bytes that are not valid utf-8 \("Ren\uFFFD"; .*pass --encoding/);
  });

  it('never lets U+FFFD through: a wrong --encoding makes the rows invalid, naming --encoding', async () => {
    const dir = tempDir();
    const path = join(dir, 'latin.csv');
    writeFileSync(path, FILES['windows-1252.csv']!.bytes);
    const names = await firstNames(path, new InputFiles('utf-8'));
    expect(names).toEqual([
      'error: column "First Name" holds bytes that are not valid utf-8 ("Jos\uFFFD"; the file was read as utf-8, as --encoding asked): pass --encoding with the file\'s encoding (utf-8, utf-16le, utf-16be or windows-1252); the row is not sent',
      expect.stringContaining('error: column "First Name" holds bytes that are not valid utf-8 ("Zo\uFFFD'),
    ]);
  });

  it('treats the bytes Windows-1252 leaves undefined as unreadable: no control characters are sent', async () => {
    const dir = tempDir();
    const path = join(dir, 'cp850.csv');
    // A DOS code page export read as Windows-1252: 0x81 (ü in CP850) has no Windows-1252 character.
    writeFileSync(path, Buffer.from('ID,Email,First Name\np1,a@example.com,M\x81ller\np2,b@example.com,Jos\xe9\n', 'latin1'));
    const names = await firstNames(path);
    expect(names[0]).toMatch(/^error: column "First Name" holds bytes that are not valid windows-1252 \("M\\u0081ller"; the file was read as windows-1252, detected: not valid UTF-8/);
    expect(names[1]).toBe('José');
  });

  it.for([
    { name: 'NUL', char: '\u0000', code: 'U+0000' },
    { name: 'NEL (C1)', char: '\u0085', code: 'U+0085' },
    { name: 'a C1 control', char: '\u009b', code: 'U+009B' },
  ])('a valid UTF-8 file holding $name in a cell: the row is invalid, naming the control character, not the encoding', async ({ char, code }) => {
    const dir = tempDir();
    const path = join(dir, 'control.csv');
    writeFileSync(path, `ID,Email,First Name\np1,a@example.com,Jo${char}e\np2,b@example.com,José\n`, 'utf8');
    const names = await firstNames(path);
    const shown = `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
    expect(names[0]).toBe(
      `error: column "First Name" holds the control character ${code}, which no export writes on purpose ("Jo${shown}e"; the file was read as utf-8, detected: valid UTF-8): fix that cell, or pass --encoding if the file is not utf-8; the row is not sent`,
    );
    expect(names[0]).not.toContain('not valid utf-8');
    expect(names[1]).toBe('José');
  });

  it('stops with exit 65 when the header itself does not decode, and says --encoding', async () => {
    const dir = tempDir();
    const path = join(dir, 'header.csv');
    writeFileSync(path, Buffer.concat([Buffer.from('ID,Email,Pr\xe9nom\n', 'latin1'), Buffer.from('p1,a@example.com,x\n')]));
    const error = await openCsv(path, new InputFiles('utf-8')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataError);
    expect((error as DataError).message).toContain(`The header row of ${path} is not readable as utf-8 (as --encoding asked)`);
    expect((error as DataError).hint).toContain('--encoding');
  });

  it('decides each file once per run, though the source reads it twice, and lists how each was read', async () => {
    const dir = tempDir();
    const path = join(dir, 'latin.csv');
    writeFileSync(path, FILES['windows-1252.csv']!.bytes);
    const inputs = new InputFiles();
    expect(inputs.encodingOf(path)).toBe(inputs.encodingOf(path));
    const source = growsurfCsvSource({ files: [path], programId: 'camp', config: defaultConfig() });
    for (let pass = 0; pass < 2; pass += 1) {
      const records: SourceRecord[] = [];
      for await (const record of source.records()) records.push(record);
      expect(records.map((r) => r.kind === 'participant' && r.participant.firstName)).toEqual(['José', 'Zoë Ñúñez']);
    }
    expect(source.inputs?.()).toEqual([{ file: path, encoding: 'windows-1252', detected: true, reason: 'not valid UTF-8 (first at line 2, byte 0xE9)', delimiter: ',' }]);
  });

  it('accepts the --encoding names people type', () => {
    expect(['UTF-8', 'utf8', 'UTF-16LE', 'utf-16be', 'cp1252', 'latin1', 'ISO-8859-1'].map(encodingFromFlag)).toEqual([
      'utf-8',
      'utf-8',
      'utf-16le',
      'utf-16be',
      'windows-1252',
      'windows-1252',
      'windows-1252',
    ]);
    expect(encodingFromFlag('ebcdic')).toBeUndefined();
  });
});
