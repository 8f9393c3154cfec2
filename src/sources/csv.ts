import { createReadStream, statSync } from 'node:fs';
import { parse, type InfoRecord, type Options } from 'csv-parse';
import { DataError, UsageError } from '../errors.js';

/**
 * Shared CSV reading for every export-based source: streaming (a file never sits in memory whole), line numbers
 * on every row, and malformed rows reported as rows with a reason instead of ending the file.
 */

export type CsvRow = { kind: 'row'; fields: string[]; line: number } | { kind: 'error'; line: number; reason: string };

export interface CsvFile {
  path: string;
  header: string[];
  rows: AsyncIterable<CsvRow>;
}

/** Fails with exit 64 and the path when the file is missing or not a file; checked before any reading starts. */
export function assertReadableFile(path: string): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`File not found: ${path}`, { hint: 'Check the path given to --file.' });
    throw new UsageError(`Cannot read ${path}: ${code ?? String(error)}`);
  }
  if (!isFile) throw new UsageError(`Not a file: ${path}`, { hint: 'Give --file the path of a CSV export.' });
}

/** Opens a CSV file and reads its header row; the remaining rows are read lazily from `rows`. */
export async function openCsv(path: string): Promise<CsvFile> {
  assertReadableFile(path);
  const skipped: CsvRow[] = [];
  const parser = createReadStream(path).pipe(
    parse({
      bom: true,
      relax_column_count: true,
      skip_empty_lines: true,
      skip_records_with_error: true,
      on_skip: (error) => {
        if (!error) return undefined;
        const line = Number(error.lines);
        // One broken row can raise several errors; report it once.
        if (skipped.at(-1)?.line !== line) skipped.push({ kind: 'error', line, reason: describeCsvError(error.code, error.message) });
        return undefined;
      },
      // csv-parse types on_record as returning a row; we return the row with its line number.
      on_record: ((fields: string[], context: InfoRecord) => ({ fields, line: context.lines })) as unknown as Options['on_record'],
    }),
  );
  const iterator = (parser as AsyncIterable<{ fields: string[]; line: number }>)[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) {
    throw new DataError(`${path} is empty: expected a header row.`);
  }
  const header = first.value.fields.map((h) => h.trim());
  async function* rows(): AsyncGenerator<CsvRow> {
    try {
      for (;;) {
        const next = await iterator.next();
        // csv-parse reports skipped rows as it parses a chunk, ahead of the rows we have yet to take from it:
        // merge them back in line order.
        while (skipped.length > 0 && (next.done || skipped[0]!.line < next.value.line)) yield skipped.shift()!;
        if (next.done) break;
        yield { kind: 'row', fields: next.value.fields, line: next.value.line };
      }
    } finally {
      await iterator.return?.();
      parser.destroy();
    }
  }
  return { path, header, rows: rows() };
}

function describeCsvError(code: string, message: string): string {
  switch (code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'a quoted field is never closed';
    case 'CSV_INVALID_CLOSING_QUOTE':
    case 'INVALID_OPENING_QUOTE':
    case 'CSV_INVALID_OPENING_QUOTE':
      return 'malformed quotes (a quote inside an unquoted field, or text after a closing quote)';
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH':
      return 'wrong number of fields';
    default:
      return message.replace(/^Invalid .*?: /, '').replace(/\.$/, '');
  }
}

/** Header comparison ignores case, spaces and punctuation: `Referred By`, `referred_by` and `ReferredBy` match. */
export function normalizeHeader(header: string): string {
  return header.toLowerCase().replace(/[^a-z0-9]/g, '');
}
