import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataError } from '../../src/errors.js';
import { delimiterFromFlag, describeColumns, openCsv, otherDelimiterHint, type CsvRow } from '../../src/sources/csv/reader.js';
import { CsvTokenizer, type CsvToken } from '../../src/sources/csv/tokenizer.js';
import { tempDir } from '../support/cli.js';

/** Tokenizes `text` fed in pieces of `chunk` characters; each token as one readable line. */
function tokens(text: string, chunk = text.length || 1, maxRecordChars?: number): string[] {
  const tokenizer = new CsvTokenizer(maxRecordChars === undefined ? {} : { maxRecordChars });
  const out: CsvToken[] = [];
  for (let i = 0; i < text.length; i += chunk) out.push(...tokenizer.push(text.slice(i, i + chunk)));
  out.push(...tokenizer.end());
  return out.map((t) => (t.kind === 'record' ? `${t.line}: ${t.fields.join('|')}` : `${t.line}: ${t.malformation.problem}`));
}

async function rows(path: string): Promise<string[]> {
  const csv = await openCsv(path);
  const out: string[] = [];
  for await (const row of csv.rows as AsyncIterable<CsvRow>) out.push(row.kind === 'row' ? `${row.line}: ${row.fields.join('|')}` : `${row.line}: ${row.reason}`);
  return out;
}

const MESSY: Record<string, string> = {
  'text after a closing quote': 'a,b,c\n1,"free"x,3\n2,y,3\n',
  'a quote that never closes': 'a,b,c\n1,"free,3\n2,y,3\n3,z,3\n',
  'a stray quote closed by a later row': 'a,b,c\n1,"free,3\n2,y,3\n3,"Company, 1",3\n4,w,3\n',
  'a real multi-line note': 'a,b,c\n1,"note\nwith newline",3\n2,"x ""q"" y",3\r\n3,z,3',
  'CRLF and blank lines': 'a,b,c\r\n1,2,3\r\n\r\n4,5,6\r\n',
  'old Mac line ends': 'a,b,c\r1,2,3\r4,5,6\r',
  'blanks around quotes and empty rows': 'a,b,c\n1, "two" ,3\n,,\n\n4,5,6\n',
  'a quote inside an unquoted field': 'a,b,c\n1,f"o"o,3\n2,ok,3\n',
  'a multi-line record with the wrong count': 'a,b,c\n1,"x\ny"\n2,3,4\n',
  'a quote that never closes on the last line': 'a,b,c\n1,2,3\n4,"5,6',
  'bad lines ending in CRLF and CR': 'a,b\r\n1,"x"y\r\n2,3\r\n4,z"\r5,6\r',
};

describe('CSV tokenizer', () => {
  it('reads every messy sample the same whatever the chunk boundaries', () => {
    for (const text of Object.values(MESSY)) {
      const whole = tokens(text);
      for (const chunk of [1, 2, 3, 5, 7]) expect(tokens(text, chunk)).toEqual(whole);
    }
  });

  it('costs a stray quote its own row only', () => {
    expect(tokens(MESSY['text after a closing quote']!)).toEqual(['1: a|b|c', '2: text-after-closing-quote', '3: 2|y|3']);
    expect(tokens(MESSY['a quote inside an unquoted field']!)).toEqual(['1: a|b|c', '2: quote-in-unquoted-field', '3: 2|ok|3']);
    expect(tokens(MESSY['bad lines ending in CRLF and CR']!)).toEqual(['1: a|b', '2: text-after-closing-quote', '3: 2|3', '4: quote-in-unquoted-field', '5: 5|6']);
  });

  it('reports the line where a quote opened and reads the rows it swallowed', () => {
    expect(tokens(MESSY['a quote that never closes']!)).toEqual(['1: a|b|c', '2: unclosed-quote', '3: 2|y|3', '4: 3|z|3']);
    expect(tokens(MESSY['a stray quote closed by a later row']!)).toEqual(['1: a|b|c', '2: text-after-closing-quote', '3: 2|y|3', '4: 3|Company, 1|3', '5: 4|w|3']);
    expect(tokens(MESSY['a quote that never closes on the last line']!)).toEqual(['1: a|b|c', '2: 1|2|3', '3: unclosed-quote']);
  });

  it('a quote that closes at the end of a later row, over lines shaped like rows, is reported, and so is the stray closing quote: nothing is lost silently', () => {
    const text = 'ID,Name,Email,Created At,Notes\np1,A,a@ex.com,2025-03-01,"oops\np2,B,b@ex.com,2025-03-01,ok"\np3,C,c@ex.com,2025-03-02,fine\n';
    expect(tokens(text)).toEqual(['1: ID|Name|Email|Created At|Notes', '2: swallowed-rows', '3: quote-in-unquoted-field', '4: p3|C|c@ex.com|2025-03-02|fine']);
    // A note whose lines are not row-shaped is still one field.
    expect(tokens('ID,Name,Email,Created At,Notes\np1,A,a@ex.com,2025-03-01,"call back\nTuesday, after 3"\n')).toEqual([
      '1: ID|Name|Email|Created At|Notes',
      '2: p1|A|a@ex.com|2025-03-01|call back\nTuesday, after 3',
    ]);
  });

  it('keeps real multi-line fields, numbering each record by its first line', () => {
    expect(tokens(MESSY['a real multi-line note']!)).toEqual(['1: a|b|c', '2: 1|note\nwith newline|3', '4: 2|x "q" y|3', '5: 3|z|3']);
  });

  it('takes \\n, \\r\\n and \\r as line ends, tolerates blanks around quotes, and skips empty rows', () => {
    expect(tokens(MESSY['CRLF and blank lines']!)).toEqual(['1: a|b|c', '2: 1|2|3', '4: 4|5|6']);
    expect(tokens(MESSY['old Mac line ends']!)).toEqual(['1: a|b|c', '2: 1|2|3', '3: 4|5|6']);
    expect(tokens(MESSY['blanks around quotes and empty rows']!)).toEqual(['1: a|b|c', '2: 1|two|3', '5: 4|5|6']);
  });

  it('treats a multi-line record whose field count does not match the header as a stray quote', () => {
    // Its first line is reported; the line the quote swallowed is read (and is bad on its own).
    expect(tokens(MESSY['a multi-line record with the wrong count']!)).toEqual(['1: a|b|c', '2: field-count', '3: quote-in-unquoted-field', '4: 2|3|4']);
  });

  it('gives up on a quoted field longer than the limit and reads on from the next line', () => {
    const text = `a,b\n1,"open\n${'2,x\n'.repeat(50)}3,y\n`;
    const out = tokens(text, 16, 64);
    expect(out[1]).toBe('2: record-too-long');
    expect(out.slice(2, 4)).toEqual(['3: 2|x', '4: 2|x']);
    expect(out.at(-1)).toBe('53: 3|y');
    expect(out).toHaveLength(53);
  });

  it('finds the delimiter from the header line: comma, semicolon or tab', () => {
    expect(tokens('a;b;c\n1;2,5;3\n')).toEqual(['1: a|b|c', '2: 1|2,5|3']);
    expect(tokens('a\tb\n"x, y"\tz\n')).toEqual(['1: a|b', '2: x, y|z']);
    expect(tokens('"a;b",c\n1,2\n')).toEqual(['1: a;b|c', '2: 1|2']);
  });
});

describe('openCsv', () => {
  it('reads a 1,000-row file with one stray quote as 999 rows and one error on the right line', async () => {
    const dir = tempDir();
    const path = join(dir, 'export.csv');
    const lines = ['ID,Email,Plan,Company'];
    for (let i = 0; i < 1000; i += 1) lines.push(i === 400 ? `p${i},p${i}@example.com,"free"x,"Acme, Inc"` : `p${i},p${i}@example.com,free,"Acme, Inc"`);
    writeFileSync(path, `${lines.join('\n')}\n`);
    const out = await rows(path);
    expect(out).toHaveLength(1000);
    expect(out.filter((r) => !r.includes('|'))).toEqual(['402: text after the closing quote in column "Plan" (a quote inside a quoted field must be doubled)']);
    expect(out.at(-1)).toBe('1001: p999|p999@example.com|free|Acme, Inc');
  });

  it('names the line where a quote opened that never closes, and reads every row after it', async () => {
    const dir = tempDir();
    const path = join(dir, 'export.csv');
    const lines = ['ID,Email,Plan'];
    for (let i = 0; i < 1000; i += 1) lines.push(i === 10 ? `p${i},p${i}@example.com,"free` : `p${i},p${i}@example.com,free`);
    writeFileSync(path, `${lines.join('\n')}\n`);
    const out = await rows(path);
    expect(out).toHaveLength(1000);
    expect(out[10]).toBe('12: a quote opened in column "Plan" on line 12 never closes; the rest of the file is read as if it were not there');
    expect(out[11]).toBe('13: p11|p11@example.com|free');
  });

  it('reports the field count of single-line rows, and reads multi-line notes whole', async () => {
    const dir = tempDir();
    const path = join(dir, 'export.csv');
    writeFileSync(path, 'ID,Email,Note\np1,a@example.com,"call back\non Monday"\np2,b@example.com\np3,c@example.com,ok\n');
    expect(await rows(path)).toEqual(['2: p1|a@example.com|call back\non Monday', '4: row has 2 fields but the header has 3', '5: p3|c@example.com|ok']);
  });

  it('says an Excel workbook is not CSV, and how to export one (exit 65)', async () => {
    const dir = tempDir();
    const path = join(dir, 'participants.csv');
    writeFileSync(path, Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00]), Buffer.from('[Content_Types].xml')]));
    const error = await openCsv(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataError);
    expect((error as DataError).message).toBe(`${path} is a zip archive (an Excel .xlsx workbook?), not CSV text.`);
    expect((error as DataError).hint).toContain('CSV UTF-8');
  });

  it('calls a file holding only a byte-order mark empty', async () => {
    const dir = tempDir();
    const path = join(dir, 'bom.csv');
    writeFileSync(path, Buffer.from([0xef, 0xbb, 0xbf]));
    await expect(openCsv(path)).rejects.toThrow(`${path} is empty: expected a header row.`);
  });

  it('stops with exit 65 when the header row itself cannot be read', async () => {
    const dir = tempDir();
    const path = join(dir, 'export.csv');
    writeFileSync(path, 'ID,"Email"x,Plan\np1,a@example.com,free\n');
    const error = await openCsv(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataError);
    expect((error as DataError).message).toBe(
      `The header row of ${path} (line 1) cannot be read: text after the closing quote in field 2 (a quote inside a quoted field must be doubled).`,
    );
  });
});

describe('columns and delimiters in messages', () => {
  it('lists the columns found and how the header was split', () => {
    expect(describeColumns({ header: ['ID', '', 'Mail'], delimiter: ';' })).toBe('its 3 columns, read as semicolon-separated, are: ID, (blank), Mail');
    expect(describeColumns({ header: ['ID\tMail'], delimiter: ',' })).toBe('its one column, read as comma-separated, is: ID\tMail');
    const many = Array.from({ length: 45 }, (_, i) => `c${i}`);
    expect(describeColumns({ header: many, delimiter: '\t' })).toMatch(/^its 45 columns, read as tab-separated, are: c0, c1, .*, c39 and 5 more$/);
  });

  it('names --delimiter only when the header holds another delimiter at least as often as the one it was split by', () => {
    expect(otherDelimiterHint({ header: ['Email;Company', 'Inc'], delimiter: ',' })).toBe(
      'Its header also holds ";": if the file is semicolon-separated, pass --delimiter semicolon.',
    );
    expect(otherDelimiterHint({ header: ['ID,Email,Name'], delimiter: '\t' })).toBe('Its header also holds ",": if the file is comma-separated, pass --delimiter comma.');
    expect(otherDelimiterHint({ header: ['ID', 'Email', 'Name, First'], delimiter: '\t' })).toBeUndefined();
    expect(otherDelimiterHint({ header: ['ID', 'Email'], delimiter: ',' })).toBeUndefined();
  });

  it('--delimiter takes comma, semicolon, tab or the character itself', () => {
    expect(['comma', ',', 'Semicolon', ';', 'tab', '\\t', '\t'].map(delimiterFromFlag)).toEqual([',', ',', ';', ';', '\t', '\t', '\t']);
    expect(delimiterFromFlag('|')).toBeUndefined();
  });
});
