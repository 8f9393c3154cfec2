import { closeSync, createReadStream, openSync, readSync, statSync } from 'node:fs';
import { DataError, UsageError } from '../../errors.js';
import { CsvTokenizer, type CsvToken, type Malformation } from './tokenizer.js';
import { decoderFor, detectEncoding, requestedEncoding, type EncodingName, type FileEncoding } from './encoding.js';

/**
 * Shared CSV reading for every export-based source: streaming (a file never sits in memory whole), decoded in
 * its own encoding (detected once per file per run), line numbers on every row, and malformed rows reported
 * as rows with a reason instead of ending the file. A row's field count must match the header's.
 */

export type CsvRow = { kind: 'row'; fields: string[]; line: number } | { kind: 'error'; line: number; reason: string };

export interface CsvFile {
  path: string;
  header: string[];
  encoding: FileEncoding;
  /** The field delimiter the header was read with: `,`, `;` or a tab. */
  delimiter: string;
  rows: AsyncIterable<CsvRow>;
}

/** How a file was read, for the run's summary. */
export interface InputFile {
  file: string;
  encoding: EncodingName;
  /** false when `--encoding` said so. */
  detected: boolean;
  /** Why this encoding: "valid UTF-8", "byte-order mark", "not valid UTF-8 (first at line 3, byte 0xE9)". */
  reason: string;
  delimiter: string;
}

/**
 * The input files of one run: each file's encoding is decided once (the whole file is checked, and a file is
 * read twice: once to index referrers, once to plan), and what was decided is kept for the summary.
 */
export class InputFiles {
  private readonly encodings = new Map<string, Promise<FileEncoding>>();
  private readonly read = new Map<string, InputFile>();

  /**
   * `encoding`: what `--encoding` asked for, if anything: it overrides detection for every file. `delimiter`:
   * what `--delimiter` asked for, else each file's header line decides.
   */
  constructor(
    private readonly encoding?: EncodingName,
    readonly delimiter?: Delimiter,
  ) {}

  encodingOf(path: string): Promise<FileEncoding> {
    let decided = this.encodings.get(path);
    if (!decided) {
      decided = this.encoding === undefined ? detectEncoding(path) : requestedEncoding(path, this.encoding);
      this.encodings.set(path, decided);
    }
    return decided;
  }

  /** Every file opened so far, in the order first opened. */
  list(): InputFile[] {
    return [...this.read.values()];
  }

  /** @internal openCsv records what it read. */
  noteRead(input: InputFile): void {
    if (!this.read.has(input.file)) this.read.set(input.file, input);
  }
}

/** Fails with exit 64 and the path when the file is missing or not a file; checked before any reading starts. */
export function assertReadableFile(path: string): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`File not found: ${path}`, { hint: 'Check the path given to --file.' });
    throw new UsageError(`Cannot read ${path}: ${code ?? String(error)}.`, { hint: 'Check that you may read it (its permissions and its folder\'s), or copy it somewhere you can.' });
  }
  if (!isFile) {
    throw new UsageError(`Not a file: ${path}`, { hint: 'Give --file the path of a CSV export; a folder is read only as Cello exports, with --source cello.' });
  }
}

const READ_CHUNK_BYTES = 1 << 18;
/**
 * Characters that only appear in decoded text when the encoding is wrong or the file is damaged: U+FFFD (bytes
 * the encoding has no character for), NUL (UTF-16 read as something else), and the C1 controls U+0080–U+009F
 * (what Windows-1252's five undefined bytes decode to, and what no export holds on purpose).
 */
const UNREADABLE = /[\uFFFD\u0000\u0080-\u009F]/;

/** Spreadsheets given instead of their CSV export: their first bytes, and what to do. */
const NOT_CSV: { magic: number[]; what: string }[] = [
  { magic: [0x50, 0x4b, 0x03, 0x04], what: 'a zip archive (an Excel .xlsx workbook?)' },
  { magic: [0xd0, 0xcf, 0x11, 0xe0], what: 'an Excel .xls workbook' },
];

/** Stops with exit 65 on a spreadsheet workbook, which would otherwise read as a header of garbage. */
function assertNotWorkbook(path: string): void {
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  const match = NOT_CSV.find(({ magic }) => magic.every((byte, i) => head[i] === byte));
  if (match) {
    throw new DataError(`${path} is ${match.what}, not CSV text.`, { hint: 'Export it as CSV: in Excel, File → Save As → "CSV UTF-8 (Comma delimited)".' });
  }
}

/**
 * Opens a CSV file and reads its header row; the remaining rows are read lazily from `rows`. `onBytes` is told
 * of each chunk of the file as it is read (progress by bytes: a file's size is known before its row count).
 */
export async function openCsv(path: string, inputs: InputFiles = new InputFiles(), onBytes?: (bytes: number) => void): Promise<CsvFile> {
  assertReadableFile(path);
  assertNotWorkbook(path);
  const encoding = await inputs.encodingOf(path);
  const tokens = tokenize(path, encoding.encoding, inputs.delimiter, onBytes);
  const first = await firstRecord(tokens, path);
  const header = first.fields.map((h) => h.trim());
  if (header.some((name) => UNREADABLE.test(name))) {
    await tokens.return(undefined);
    throw new DataError(`The header row of ${path} is not readable as ${encoding.encoding} (${describeEncoding(encoding)}): ${header.join(', ')}`, {
      hint: 'Pass --encoding with the file\'s encoding: utf-8, utf-16le, utf-16be or windows-1252.',
    });
  }
  const delimiter = first.tokenizer.delimiter ?? ',';
  inputs.noteRead({ file: path, encoding: encoding.encoding, detected: encoding.detected, reason: encoding.reason, delimiter });

  async function* rows(): AsyncGenerator<CsvRow> {
    try {
      for (;;) {
        const next = await tokens.next();
        if (next.done) break;
        const token = next.value;
        if (token.kind === 'malformed') {
          yield { kind: 'error', line: token.line, reason: describeMalformation(token.malformation, header) };
          continue;
        }
        const { fields, line } = token;
        if (fields.length !== header.length) {
          yield { kind: 'error', line, reason: `row has ${fields.length} fields but the header has ${header.length}` };
          continue;
        }
        const unreadable = token.suspect ? fields.findIndex((f) => UNREADABLE.test(f)) : -1;
        if (unreadable !== -1) {
          yield { kind: 'error', line, reason: describeUnreadable(fields[unreadable]!, header[unreadable] ?? `#${unreadable + 1}`, encoding) };
          continue;
        }
        yield { kind: 'row', fields, line };
      }
    } finally {
      await tokens.return(undefined);
    }
  }
  return { path, header, encoding, delimiter, rows: rows() };
}

/**
 * Lets go of a file whose header was all that was wanted (`check`). Its rows generator holds the open file once
 * started and closes it in its `finally`, so it is started (one row read) and returned.
 */
export async function closeCsv(csv: CsvFile): Promise<void> {
  const rows = csv.rows[Symbol.asyncIterator]();
  try {
    const first = await rows.next();
    if (!first.done) await rows.return?.(undefined);
  } catch {
    // Only closing: what the row said is not asked for, and must not hide why the check stopped.
  }
}

type Token = CsvToken & { suspect: boolean };

/** The tokens of a file, and its tokenizer (for the header's field count and the delimiter). */
interface Tokens extends AsyncGenerator<Token, void, undefined> {
  tokenizer: CsvTokenizer;
}

function tokenize(path: string, encoding: EncodingName, delimiter: Delimiter | undefined, onBytes: ((bytes: number) => void) | undefined): Tokens {
  const tokenizer = new CsvTokenizer(delimiter === undefined ? {} : { delimiter });
  async function* generate(): AsyncGenerator<Token, void, undefined> {
    const decoder = decoderFor(encoding);
    const stream = createReadStream(path, { highWaterMark: READ_CHUNK_BYTES });
    // Once the text has held an unreadable character, every later row is checked for one (cheap before that).
    let suspect = false;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        onBytes?.(chunk.length);
        const text = decoder.decode(chunk, { stream: true });
        if (!suspect && UNREADABLE.test(text)) suspect = true;
        for (const token of tokenizer.push(text)) yield Object.assign(token, { suspect });
      }
      const rest = decoder.decode();
      if (!suspect && UNREADABLE.test(rest)) suspect = true;
      if (rest !== '') for (const token of tokenizer.push(rest)) yield Object.assign(token, { suspect });
      for (const token of tokenizer.end()) yield Object.assign(token, { suspect });
    } finally {
      stream.destroy();
    }
  }
  return Object.assign(generate(), { tokenizer });
}

async function firstRecord(tokens: Tokens, path: string): Promise<{ fields: string[]; tokenizer: CsvTokenizer }> {
  const first = await tokens.next();
  if (first.done) throw new DataError(`${path} is empty: expected a header row.`, { hint: 'Give the export with its header row: its first line must name the columns.' });
  if (first.value.kind === 'malformed') {
    await tokens.return(undefined);
    throw new DataError(`The header row of ${path} (line ${first.value.line}) cannot be read: ${describeMalformation(first.value.malformation, [])}.`, {
      hint: 'Fix the quotes in the first line of the file (or export it again), then run again.',
    });
  }
  return { fields: first.value.fields, tokenizer: tokens.tokenizer };
}

/** "1,048,576 characters": the limit (DEFAULT_MAX_RECORD_CHARS unless a reader set another) as a person reads it. */
function characters(limit: number): string {
  return `${limit.toLocaleString('en-US')} characters`;
}

function columnName(header: string[], field: number): string {
  const name = header[field];
  return name ? `column "${name}"` : `field ${field + 1}`;
}

/** One sentence a person can act on, naming the column and the lines involved. */
export function describeMalformation(found: Malformation, header: string[]): string {
  switch (found.problem) {
    case 'quote-in-unquoted-field':
      return `a stray quote in ${columnName(header, found.field)} (a field with a quote in it must be quoted whole, its quotes doubled)`;
    case 'text-after-closing-quote':
      return found.closedOn === found.openedOn
        ? `text after the closing quote in ${columnName(header, found.field)} (a quote inside a quoted field must be doubled)`
        : `a quote opened in ${columnName(header, found.field)} on line ${found.openedOn} closes on line ${found.closedOn} and text follows it: a stray quote; the lines after ${found.openedOn} were read on their own`;
    case 'unclosed-quote':
      return `a quote opened in ${columnName(header, found.field)} on line ${found.openedOn} never closes; the rest of the file is read as if it were not there`;
    case 'record-too-long':
      return `a quote opened in ${columnName(header, found.field)} on line ${found.openedOn} does not close within ${characters(found.limit)}: a stray quote; the rest of the file is read as if it were not there`;
    case 'field-too-long':
      return `a field longer than ${characters(found.limit)} in ${columnName(header, found.field)} (the most one row may hold); the row is not read`;
    case 'row-too-long':
      return `a row longer than ${characters(found.limit)} (the most one row may hold); it is not read`;
    case 'swallowed-rows':
      return `a quote opened in ${columnName(header, found.field)} on this line runs to line ${found.lastLine} over lines shaped like rows of their own: a stray quote; the lines after this one were read on their own`;
    case 'field-count':
      return `a quoted field runs from this line to line ${found.lastLine} and the row then has ${found.fields} fields, not ${found.expected}: a stray quote; the lines after this one were read on their own`;
  }
}

function describeEncoding(encoding: FileEncoding): string {
  return encoding.detected ? `detected: ${encoding.reason}` : 'as --encoding asked';
}

function describeUnreadable(value: string, column: string, encoding: FileEncoding): string {
  const shown = value.replace(/[\u0000\u0080-\u009F]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  const quoted = `"${shown.length > 60 ? `${shown.slice(0, 57)}…` : shown}"`;
  const control = /[\u0000\u0080-\u009F]/.exec(value)?.[0];
  if (control !== undefined && !value.includes('\uFFFD') && encoding.encoding.startsWith('utf-')) {
    // Decoded without a fault: the file really holds the control character (a damaged cell, or text pasted with
    // it). Its encoding is the likely cause only when the file is not what it was read as.
    const code = `U+${control.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    return (
      `column "${column}" holds the control character ${code}, which no export writes on purpose (${quoted}; the file was read as ${encoding.encoding}, ` +
      `${describeEncoding(encoding)}): fix that cell, or pass --encoding if the file is not ${encoding.encoding}; the row is not sent`
    );
  }
  return (
    `column "${column}" holds bytes that are not valid ${encoding.encoding} (${quoted}; ` +
    `the file was read as ${encoding.encoding}, ${describeEncoding(encoding)}): pass --encoding with the file's encoding ` +
    `(utf-8, utf-16le, utf-16be or windows-1252); the row is not sent`
  );
}

/** The field delimiters a file can have: `--delimiter` names them, the header line picks one when it is not given. */
export type Delimiter = ',' | ';' | '\t';

const DELIMITERS: Record<string, { delimiter: Delimiter; name: string }> = {
  ',': { delimiter: ',', name: 'comma' },
  comma: { delimiter: ',', name: 'comma' },
  ';': { delimiter: ';', name: 'semicolon' },
  semicolon: { delimiter: ';', name: 'semicolon' },
  '\t': { delimiter: '\t', name: 'tab' },
  '\\t': { delimiter: '\t', name: 'tab' },
  tab: { delimiter: '\t', name: 'tab' },
};

/** `--delimiter`: `comma` or `,`, `semicolon` or `;`, `tab` (or `\t`); undefined for anything else. */
export function delimiterFromFlag(value: string): Delimiter | undefined {
  return DELIMITERS[value.toLowerCase()]?.delimiter;
}

/** `comma`, `semicolon`, `tab`: the word `--delimiter` takes, for messages. */
export function delimiterName(delimiter: string): string {
  return DELIMITERS[delimiter]?.name ?? JSON.stringify(delimiter);
}

const COLUMNS_LISTED = 40;

/**
 * `its 3 columns, read as semicolon-separated, are: ID, Name, Mail`: what a message about a missing column
 * shows, so a person sees the headers the file really has and how it was split.
 */
export function describeColumns(csv: Pick<CsvFile, 'header' | 'delimiter'>): string {
  const { header } = csv;
  const shown = header.slice(0, COLUMNS_LISTED).map((name) => (name === '' ? '(blank)' : name));
  const more = header.length > COLUMNS_LISTED ? ` and ${header.length - COLUMNS_LISTED} more` : '';
  const count = header.length === 1 ? 'its one column' : `its ${header.length} columns`;
  return `${count}, read as ${delimiterName(csv.delimiter)}-separated, ${header.length === 1 ? 'is' : 'are'}: ${shown.join(', ')}${more}`;
}

/**
 * When a header split by one delimiter holds another at least as often (`Email;Name,Company` read as
 * comma-separated, a tie the header line cannot settle; or a wrong --delimiter), the file is probably split by
 * that other one: the hint naming the flag that reads it so; undefined otherwise (a comma inside one header of a
 * tab-separated file is not a sign).
 */
export function otherDelimiterHint(csv: Pick<CsvFile, 'header' | 'delimiter'>): string | undefined {
  for (const other of [',', ';', '\t'] as const) {
    const count = csv.header.reduce((sum, name) => sum + name.split(other).length - 1, 0);
    if (other === csv.delimiter || count === 0 || count < csv.header.length - 1) continue;
    const name = delimiterName(other);
    return `Its header also holds ${other === '\t' ? 'tabs' : `"${other}"`}: if the file is ${name}-separated, pass --delimiter ${name}.`;
  }
  return undefined;
}

/** Header comparison ignores case, spaces and punctuation: `Referred By`, `referred_by` and `ReferredBy` match. */
export function normalizeHeader(header: string): string {
  return header.toLowerCase().replace(/[^a-z0-9]/g, '');
}
