import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCsv, type CsvRow } from '../../src/sources/csv/reader.js';
import { CsvTokenizer, DEFAULT_MAX_RECORD_CHARS, type CsvToken } from '../../src/sources/csv/tokenizer.js';
import { tempDir } from '../support/cli.js';

/**
 * Issue 17, guarantee 8: a problem's reason names the real cause. A row past the tokenizer's limit
 * (DEFAULT_MAX_RECORD_CHARS) is "a field longer than N characters" when one field is that long (quoted or not),
 * "a row longer than N characters" when only the row is, and a quote that opened by mistake only when a quote
 * really runs on over lines. Whatever the chunks the text comes in, the verdict is the same, and the next row
 * is read.
 */

const LIMIT = 64;
const LONG = 'x'.repeat(200);

/** Tokens as one line each: a record's fields, or a malformation with the field it names. */
function tokens(text: string, chunk: number): string[] {
  const tokenizer = new CsvTokenizer({ maxRecordChars: LIMIT });
  const out: CsvToken[] = [];
  for (let i = 0; i < text.length; i += chunk) out.push(...tokenizer.push(text.slice(i, i + chunk)));
  out.push(...tokenizer.end());
  return out.map((t) => {
    if (t.kind === 'record') return `${t.line}: ${t.fields.map((f) => (f.length > 20 ? `${f.length} chars` : f)).join('|')}`;
    const m = t.malformation;
    return `${t.line}: ${m.problem}${'field' in m ? ` #${m.field}` : ''}`;
  });
}

const header20 = Array.from({ length: 20 }, (_, i) => String.fromCharCode(97 + i)).join(',');
const row20 = Array.from({ length: 20 }, () => 'yyyyy').join(',');

const CASES: { name: string; text: string; expected: string[] }[] = [
  { name: 'an unquoted field past the limit', text: `a,b,c\n1,${LONG},3\n2,y,3\n`, expected: ['1: a|b|c', '2: field-too-long #1', '3: 2|y|3'] },
  { name: 'an unquoted field past the limit, last in its row', text: `a,b\n1,${LONG}\n2,y\n`, expected: ['1: a|b', '2: field-too-long #1', '3: 2|y'] },
  { name: 'a quoted field past the limit on one line', text: `a,b,c\n1,"${LONG}",3\n2,y,3\n`, expected: ['1: a|b|c', '2: field-too-long #1', '3: 2|y|3'] },
  { name: 'a quoted field with doubled quotes past the limit', text: `a,b\n"${'q""'.repeat(70)}",1\n2,y\n`, expected: ['1: a|b', '2: field-too-long #0', '3: 2|y'] },
  { name: 'a long field on the last line, with no line end', text: `a,b\n1,y\n2,${LONG}`, expected: ['1: a|b', '2: 1|y', '3: field-too-long #1'] },
  { name: 'a long field with CRLF line ends', text: `a,b\r\n1,${LONG}\r\n2,y\r\n`, expected: ['1: a|b', '2: field-too-long #1', '3: 2|y'] },
  { name: 'a long field with old Mac line ends', text: `a,b\r1,${LONG}\r2,y\r`, expected: ['1: a|b', '2: field-too-long #1', '3: 2|y'] },
  { name: 'a row past the limit, no field of it', text: `${header20}\n${row20}\n${row20.replaceAll('y', 'z').slice(0, 39)}\n`, expected: [`1: ${header20.replaceAll(',', '|')}`, '2: row-too-long', `3: ${row20.replaceAll('y', 'z').slice(0, 39).replaceAll(',', '|')}`] },
  { name: 'a stray quote running on over lines (the real "quote opened")', text: `a,b\n1,"open\n${'2,x\n'.repeat(30)}3,y\n`, expected: ['1: a|b', '2: record-too-long #1'] },
];

describe('CSV rows past the limit are named for what they are (guarantee 8)', () => {
  it.each(CASES)('$name, whatever the chunks', ({ text, expected }) => {
    for (const chunk of [1, 2, 3, 7, 16, 63, 64, 65, 200, text.length]) {
      const got = tokens(text, chunk);
      expect(got.slice(0, expected.length), `chunk ${chunk}`).toEqual(expected);
    }
  });

  it('a 5 MB unquoted field is "a field longer than 1,048,576 characters", and the next row is read', async () => {
    expect(DEFAULT_MAX_RECORD_CHARS).toBe(1_048_576);
    const dir = tempDir();
    const path = join(dir, 'export.csv');
    writeFileSync(path, `ID,Email,Notes\np1,p1@example.com,${'n'.repeat(5 * 1024 * 1024)}\np2,p2@example.com,short\n`);
    const csv = await openCsv(path);
    const rows: CsvRow[] = [];
    for await (const row of csv.rows) rows.push(row);
    expect(rows).toEqual([
      { kind: 'error', line: 2, reason: 'a field longer than 1,048,576 characters in column "Notes" (the most one row may hold); the row is not read' },
      { kind: 'row', line: 3, fields: ['p2', 'p2@example.com', 'short'] },
    ]);
  });
});
