/**
 * An incremental RFC 4180 tokenizer over decoded text, with physical line numbers, that recovers from bad
 * quoting instead of letting one stray quote swallow the rest of the file.
 *
 * - A record's line is the physical line it starts on (a quoted field may hold line breaks).
 * - A malformed record on one line (a quote inside an unquoted field, text after a closing quote) costs that
 *   line: it is reported and reading goes on at the next line.
 * - A record that spans lines and then turns out malformed (text after a closing quote, the end of the file
 *   inside quotes, a quoted field longer than `maxRecordChars`, or a field count that does not match the
 *   header) is the sign of a quote that opened by mistake: its first line is reported and reading resumes at
 *   the next physical line, so the rows the quote swallowed are read after all.
 * - A row on one line longer than `maxRecordChars` (a 5 MB field) is reported as such, naming its longest field
 *   when that field alone is past the limit, and reading goes on at the next line; whatever the chunks, the
 *   text of such a row is never held whole.
 * - Blanks around a quoted field (`a, "b" ,c`) are tolerated; `\n`, `\r\n` and a lone `\r` all end a line.
 *
 * Work is linear in the input: text is re-read only after a failed multi-line record, and only the text that
 * record covered, which held no further quote (else the record would have ended there).
 */

export type Malformation =
  /** `ab"c`: a quote inside a field that did not start with one. */
  | { problem: 'quote-in-unquoted-field'; field: number }
  /** `"ab"c`: something other than a delimiter or line end after a closing quote. */
  | { problem: 'text-after-closing-quote'; field: number; openedOn: number; closedOn: number }
  /** The file ends inside a quoted field. */
  | { problem: 'unclosed-quote'; field: number; openedOn: number }
  /** A quoted field runs on over line breaks past `maxRecordChars` characters (a stray quote, most likely). */
  | { problem: 'record-too-long'; field: number; openedOn: number; limit: number }
  /** One field of a row longer than `maxRecordChars` characters (unquoted, or quoted on one line): the row is not read. */
  | { problem: 'field-too-long'; field: number; limit: number }
  /** A row longer than `maxRecordChars` characters, though no one field of it is: the row is not read. */
  | { problem: 'row-too-long'; limit: number }
  /** A record spanning lines has another number of fields than the header. */
  | { problem: 'field-count'; fields: number; expected: number; lastLine: number }
  /** A quoted field spanning lines holds a line shaped like a whole row of its own (a stray quote that closed later). */
  | { problem: 'swallowed-rows'; field: number; lastLine: number };

export type CsvToken =
  | { kind: 'record'; line: number; fields: string[] }
  | { kind: 'malformed'; line: number; malformation: Malformation };

export interface CsvTokenizerOptions {
  /** `,`, `;` or a tab; when not given, the first line decides (whichever of them it has most of, outside quotes). */
  delimiter?: string;
  /** Longest record (in characters) kept in memory while waiting for its closing quote. */
  maxRecordChars?: number;
}

const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
export const DEFAULT_MAX_RECORD_CHARS = 1 << 20;

type Scan =
  /** `breaks`: line breaks inside quoted fields; `terminated`: a line break (not the end of the text) ended it. */
  | { type: 'record'; fields: string[]; next: number; breaks: number; terminated: boolean; spanned: boolean }
  | { type: 'more' }
  /** Line numbers in `malformation` are relative to the record's first line (0); `withLines` makes them absolute. */
  | { type: 'bad'; malformation: Malformation; spanned: boolean; failAt: number };

const MORE: Scan = { type: 'more' };

export class CsvTokenizer {
  private text = '';
  private pos = 0;
  /** Physical line number of `pos`. */
  private line = 1;
  /** Discarding the rest of a bad line that continues past the text we have. */
  private skippingLine = false;
  /** Reading through a line longer than maxRecordChars, measuring its fields, to report it at its end. */
  private overlong: Overlong | undefined;
  private delimiterCode: number | undefined;
  /** The header's field count (the first record's): a multi-line record with another count is malformed. */
  private expectedFields: number | undefined;
  private readonly maxRecordChars: number;

  constructor(options: CsvTokenizerOptions = {}) {
    if (options.delimiter !== undefined) this.delimiterCode = options.delimiter.charCodeAt(0);
    this.maxRecordChars = options.maxRecordChars ?? DEFAULT_MAX_RECORD_CHARS;
  }

  /** The delimiter in use (known once the first line has been seen). */
  get delimiter(): string | undefined {
    return this.delimiterCode === undefined ? undefined : String.fromCharCode(this.delimiterCode);
  }

  /** Feeds the next piece of decoded text; returns the records it completes. */
  push(chunk: string): CsvToken[] {
    this.text = this.pos === 0 ? this.text + chunk : this.text.slice(this.pos) + chunk;
    this.pos = 0;
    return this.drain(false);
  }

  /** Ends the input; returns the records left. */
  end(): CsvToken[] {
    const tokens = this.drain(true);
    this.text = '';
    this.pos = 0;
    return tokens;
  }

  private drain(final: boolean): CsvToken[] {
    const out: CsvToken[] = [];
    const text = this.text;
    if (this.delimiterCode === undefined) {
      const lineEnd = firstLineBreak(text, this.pos);
      if (lineEnd === -1 && !final && text.length - this.pos < this.maxRecordChars) return out;
      this.delimiterCode = sniffDelimiter(text.slice(this.pos, lineEnd === -1 ? text.length : lineEnd));
    }
    const delimiter = this.delimiterCode;
    while (this.pos < text.length || (final && this.overlong)) {
      if (this.overlong) {
        if (!this.readOverlong(text, final, out)) break;
        continue;
      }
      if (this.skippingLine) {
        const end = lineBreakEnd(text, this.pos, final);
        if (end === -1) {
          this.pos = text.length;
          break;
        }
        if (end === -2) break; // a \r at the end of the text: is it \r\n?
        this.pos = end;
        this.line += 1;
        this.skippingLine = false;
        continue;
      }
      const scan = scanRecord(text, this.pos, final, delimiter);
      if (scan.type === 'more') {
        if (text.length - this.pos <= this.maxRecordChars) break;
        this.recoverTooLong(text, out);
        continue;
      }
      if (scan.type === 'record') {
        this.takeRecord(scan, out);
        continue;
      }
      this.recoverBad(text, scan, final, out);
    }
    return out;
  }

  private takeRecord(scan: Extract<Scan, { type: 'record' }>, out: CsvToken[]): void {
    const line = this.line;
    const { fields } = scan;
    if (scan.next - this.pos > this.maxRecordChars) {
      // Whole in this text, but past the limit all the same: the verdict must not depend on where chunks end.
      this.rejectLong(scan, out);
      return;
    }
    const expected = this.expectedFields;
    if (scan.spanned && expected !== undefined && fields.length !== expected && !isBlank(fields)) {
      // A quote that opened by mistake and closed at some later quote: resume on the next line.
      out.push({ kind: 'malformed', line, malformation: { problem: 'field-count', fields: fields.length, expected, lastLine: line + scan.breaks } });
      this.resumeAfterFirstLine();
      return;
    }
    const swallowed = scan.spanned && expected !== undefined ? fieldHoldingRows(fields, expected, String.fromCharCode(this.delimiterCode!)) : -1;
    if (swallowed >= 0) {
      out.push({ kind: 'malformed', line, malformation: { problem: 'swallowed-rows', field: swallowed, lastLine: line + scan.breaks } });
      this.resumeAfterFirstLine();
      return;
    }
    this.pos = scan.next;
    this.line += scan.breaks + (scan.terminated ? 1 : 0);
    if (isBlank(fields)) return;
    this.expectedFields ??= fields.length;
    out.push({ kind: 'record', line, fields });
  }

  private recoverBad(text: string, scan: Extract<Scan, { type: 'bad' }>, final: boolean, out: CsvToken[]): void {
    out.push({ kind: 'malformed', line: this.line, malformation: withLines(scan.malformation, this.line) });
    if (scan.spanned) {
      this.resumeAfterFirstLine();
      return;
    }
    // The problem is on the record's first line: drop the rest of that line.
    const end = lineBreakEndFrom(text, scan.failAt, final);
    if (end < 0) {
      this.pos = text.length;
      this.skippingLine = end === -2 || !final;
      // keep the \r for the next push to tell \r from \r\n
      if (end === -2) this.pos = text.length - 1;
      return;
    }
    this.pos = end;
    this.line += 1;
  }

  /**
   * A record still open after maxRecordChars. Over line breaks: a quote that opened by mistake; report it and
   * resume on its second line. On one line: read on to the line's end, measuring its fields (readOverlong).
   */
  private recoverTooLong(text: string, out: CsvToken[]): void {
    if (firstLineBreak(text, this.pos) !== -1) {
      const opened = quoteOpening(text, this.pos, this.delimiterCode!);
      out.push({ kind: 'malformed', line: this.line, malformation: { problem: 'record-too-long', field: opened.field, openedOn: this.line + opened.breaksBefore, limit: this.maxRecordChars } });
      this.resumeAfterFirstLine();
      return;
    }
    this.overlong = { line: this.line, field: 0, fieldLength: 0, longestField: 0, longestLength: 0, inQuotes: false };
  }

  /**
   * Consumes the overlong line from `pos`; at its end (a line break, or the end of the input) reports it and
   * returns true. Returns false when the text ends first: the next push goes on where this one stopped.
   */
  private readOverlong(text: string, final: boolean, out: CsvToken[]): boolean {
    const state = this.overlong!;
    const delimiter = this.delimiterCode!;
    let i = this.pos;
    for (; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      if (c === LF || c === CR) break;
      if (c === QUOTE) state.inQuotes = !state.inQuotes;
      if (c === delimiter && !state.inQuotes) {
        measureField(state);
        state.field += 1;
        state.fieldLength = 0;
      } else {
        state.fieldLength += 1;
      }
    }
    if (i >= text.length && !final) {
      this.pos = text.length;
      return false;
    }
    let next = i;
    if (i < text.length) {
      const end = lineBreakEnd(text, i, final);
      if (end === -2) {
        // A \r at the end of the text: whether \r\n, the next push says.
        this.pos = i;
        return false;
      }
      next = end;
    }
    measureField(state);
    const malformation: Malformation =
      state.longestLength > this.maxRecordChars ? { problem: 'field-too-long', field: state.longestField, limit: this.maxRecordChars } : { problem: 'row-too-long', limit: this.maxRecordChars };
    out.push({ kind: 'malformed', line: state.line, malformation });
    this.overlong = undefined;
    this.pos = next;
    if (i < text.length) this.line += 1;
    return true;
  }

  /** A whole record past maxRecordChars: reported as readOverlong would (one line) or recoverTooLong (over lines). */
  private rejectLong(scan: Extract<Scan, { type: 'record' }>, out: CsvToken[]): void {
    const { fields } = scan;
    let longest = 0;
    for (let i = 1; i < fields.length; i += 1) if (fields[i]!.length > fields[longest]!.length) longest = i;
    if (scan.spanned) {
      const spanning = Math.max(0, fields.findIndex((field) => /[\r\n]/.test(field)));
      const breaksBefore = fields.slice(0, spanning).reduce((sum, field) => sum + lineBreaks(field), 0);
      out.push({ kind: 'malformed', line: this.line, malformation: { problem: 'record-too-long', field: spanning, openedOn: this.line + breaksBefore, limit: this.maxRecordChars } });
      this.resumeAfterFirstLine();
      return;
    }
    const malformation: Malformation =
      fields[longest]!.length > this.maxRecordChars ? { problem: 'field-too-long', field: longest, limit: this.maxRecordChars } : { problem: 'row-too-long', limit: this.maxRecordChars };
    out.push({ kind: 'malformed', line: this.line, malformation });
    this.pos = scan.next;
    this.line += scan.terminated ? 1 : 0;
  }

  /** Moves to the physical line after the current record's first line. */
  private resumeAfterFirstLine(): void {
    const breakAt = firstLineBreak(this.text, this.pos);
    // A record spans lines only through a line break, so there is one.
    const end = breakAt + (this.text.charCodeAt(breakAt) === CR && this.text.charCodeAt(breakAt + 1) === LF ? 2 : 1);
    this.pos = end;
    this.line += 1;
  }
}

/** A line longer than maxRecordChars being read through: the field in progress, and the longest so far. */
interface Overlong {
  line: number;
  field: number;
  fieldLength: number;
  longestField: number;
  longestLength: number;
  inQuotes: boolean;
}

function measureField(state: Overlong): void {
  if (state.fieldLength > state.longestLength) {
    state.longestLength = state.fieldLength;
    state.longestField = state.field;
  }
}

/** Line breaks in a field's text (\r\n counts once). */
function lineBreaks(text: string): number {
  return text.match(/\r\n|\r|\n/g)?.length ?? 0;
}

/**
 * The field (index) of a multi-line record that holds, after its first line, a line with as many delimiters as a
 * whole row (header of five or more columns): a quote that opened by mistake and closed at the end of a later
 * row, swallowing the rows between, which the field count alone cannot tell. -1 when there is none.
 */
function fieldHoldingRows(fields: readonly string[], expected: number, delimiter: string): number {
  if (expected < 5) return -1;
  return fields.findIndex((field) =>
    field
      .split(/\r\n|\r|\n/)
      .slice(1)
      .some((line) => line.split(delimiter).length >= expected),
  );
}

/** Makes the line numbers of a malformation, found relative to the record's first line, absolute. */
function withLines(found: Malformation, recordLine: number): Malformation {
  switch (found.problem) {
    case 'text-after-closing-quote':
      return { ...found, openedOn: recordLine + found.openedOn, closedOn: recordLine + found.closedOn };
    case 'unclosed-quote':
    case 'record-too-long':
      return { ...found, openedOn: recordLine + found.openedOn };
    default:
      return found;
  }
}

/** An empty line, or one of only delimiters and blanks (spreadsheets leave `,,,,` rows at the end). */
function isBlank(fields: string[]): boolean {
  for (const field of fields) if (field !== '' && field.trim() !== '') return false;
  return true;
}

/** Scans one record starting at `start`; `more` when the text ends before the record does (and is not final). */
function scanRecord(text: string, start: number, final: boolean, delimiter: number): Scan {
  const fields: string[] = [];
  const length = text.length;
  let i = start;
  let breaks = 0;
  let spanned = false;
  const blank = (code: number): boolean => code === SPACE || (code === TAB && delimiter !== TAB);
  for (;;) {
    let q = i;
    while (q < length && blank(text.charCodeAt(q))) q += 1;
    if (q < length && text.charCodeAt(q) === QUOTE) {
      const field = fields.length;
      const openedOn = breaks;
      let value = '';
      let j = q + 1;
      let segment = j;
      for (;;) {
        if (j >= length) {
          if (!final) return MORE;
          return { type: 'bad', malformation: { problem: 'unclosed-quote', field, openedOn }, spanned, failAt: length };
        }
        const c = text.charCodeAt(j);
        if (c === QUOTE) {
          if (j + 1 >= length && !final) return MORE;
          if (text.charCodeAt(j + 1) === QUOTE) {
            value += text.slice(segment, j + 1);
            j += 2;
            segment = j;
            continue;
          }
          value += text.slice(segment, j);
          j += 1;
          break;
        }
        if (c === LF) {
          breaks += 1;
          spanned = true;
        } else if (c === CR) {
          if (j + 1 >= length && !final) return MORE;
          if (text.charCodeAt(j + 1) !== LF) {
            breaks += 1;
            spanned = true;
          }
        }
        j += 1;
      }
      while (j < length && blank(text.charCodeAt(j))) j += 1;
      if (j >= length) {
        if (!final) return MORE;
        fields.push(value);
        return { type: 'record', fields, next: length, breaks, terminated: false, spanned };
      }
      const c = text.charCodeAt(j);
      if (c === delimiter) {
        fields.push(value);
        i = j + 1;
        continue;
      }
      if (c === LF || c === CR) {
        if (c === CR && j + 1 >= length && !final) return MORE;
        fields.push(value);
        return { type: 'record', fields, next: j + (c === CR && text.charCodeAt(j + 1) === LF ? 2 : 1), breaks, terminated: true, spanned };
      }
      return { type: 'bad', malformation: { problem: 'text-after-closing-quote', field, openedOn, closedOn: breaks }, spanned, failAt: j };
    }
    let j = i;
    for (; j < length; j += 1) {
      const c = text.charCodeAt(j);
      if (c === delimiter || c === LF || c === CR) break;
      if (c === QUOTE) return { type: 'bad', malformation: { problem: 'quote-in-unquoted-field', field: fields.length }, spanned, failAt: j };
    }
    if (j >= length) {
      if (!final) return MORE;
      fields.push(text.slice(i, j));
      return { type: 'record', fields, next: length, breaks, terminated: false, spanned };
    }
    fields.push(text.slice(i, j));
    const c = text.charCodeAt(j);
    if (c === delimiter) {
      i = j + 1;
      continue;
    }
    if (c === CR && j + 1 >= length && !final) return MORE;
    return { type: 'record', fields, next: j + (c === CR && text.charCodeAt(j + 1) === LF ? 2 : 1), breaks, terminated: true, spanned };
  }
}

/** Index of the first \n or \r at or after `from`, or -1. */
function firstLineBreak(text: string, from: number): number {
  for (let i = from; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === LF || c === CR) return i;
  }
  return -1;
}

function firstLineBreakOrEnd(text: string, from: number): number {
  const at = firstLineBreak(text, from);
  return at === -1 ? text.length : at;
}

/**
 * Where the line break at `at` ends: -1 when `at` is past the text (no break yet), -2 when it is a \r at the
 * very end of text that is not final (a \n may follow in the next chunk).
 */
function lineBreakEnd(text: string, at: number, final: boolean): number {
  if (at >= text.length) return -1;
  const c = text.charCodeAt(at);
  if (c === LF) return at + 1;
  if (c === CR) {
    if (at + 1 >= text.length) return final ? at + 1 : -2;
    return text.charCodeAt(at + 1) === LF ? at + 2 : at + 1;
  }
  return lineBreakEnd(text, firstLineBreakOrEnd(text, at), final);
}

/** The end of the line break that ends the line holding `from` (see lineBreakEnd for -1 and -2). */
function lineBreakEndFrom(text: string, from: number, final: boolean): number {
  return lineBreakEnd(text, firstLineBreakOrEnd(text, from), final);
}

/** For a record still open: which field's quote is open, and on which line (relative) it opened. */
function quoteOpening(text: string, start: number, delimiter: number): { field: number; breaksBefore: number } {
  let field = 0;
  let breaks = 0;
  let inQuotes = false;
  let openField = 0;
  let openBreaks = 0;
  for (let i = start; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      if (!inQuotes) {
        openField = field;
        openBreaks = breaks;
      }
      inQuotes = !inQuotes;
    } else if (c === LF) breaks += 1;
    else if (!inQuotes && c === delimiter) field += 1;
  }
  return { field: openField, breaksBefore: openBreaks };
}

/** The delimiter of a header line: the most frequent of `,` `;` tab outside quotes; a comma on a tie. */
export function sniffDelimiter(line: string): number {
  const counts = new Map<number, number>([
    [0x2c, 0],
    [0x3b, 0],
    [TAB, 0],
  ]);
  let inQuotes = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line.charCodeAt(i);
    if (c === QUOTE) inQuotes = !inQuotes;
    else if (!inQuotes && counts.has(c)) counts.set(c, counts.get(c)! + 1);
  }
  let best = 0x2c;
  for (const [code, count] of counts) if (count > counts.get(best)!) best = code;
  return best;
}
