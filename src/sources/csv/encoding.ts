import { isUtf8 } from 'node:buffer';
import { open, type FileHandle } from 'node:fs/promises';
import { TextDecoder } from 'node:util';

/**
 * Which text encoding an export is in. Excel saves "CSV" as Windows-1252 on most Western machines, "CSV UTF-8"
 * with a byte-order mark, and "Unicode Text" as UTF-16 LE with a BOM. Decoding one as another sends `Jos\uFFFD`
 * or `JosÃ©` to a CDP, where it cannot be taken back, so every file is checked whole before it is read.
 */

export type EncodingName = 'utf-8' | 'utf-16le' | 'utf-16be' | 'windows-1252';

/** What `--encoding` accepts. `latin1` is read as windows-1252, its superset (as browsers do). */
export const ENCODING_CHOICES = ['utf-8', 'utf-16le', 'utf-16be', 'windows-1252', 'latin1'] as const;

const ALIASES: Record<string, EncodingName> = {
  'utf-8': 'utf-8',
  utf8: 'utf-8',
  'utf-16le': 'utf-16le',
  utf16le: 'utf-16le',
  'utf-16be': 'utf-16be',
  utf16be: 'utf-16be',
  'windows-1252': 'windows-1252',
  cp1252: 'windows-1252',
  latin1: 'windows-1252',
  'latin-1': 'windows-1252',
  'iso-8859-1': 'windows-1252',
};

/** Reads an `--encoding` value (any case, common aliases); undefined when it is not one we decode. */
export function encodingFromFlag(value: string): EncodingName | undefined {
  return ALIASES[value.trim().toLowerCase()];
}

export interface FileEncoding {
  encoding: EncodingName;
  /** false when `--encoding` said so. */
  detected: boolean;
  /** How it was decided, for people: "byte-order mark", "valid UTF-8", "not valid UTF-8 (first at line 3)". */
  reason: string;
  /** Something a person should check (a file mostly UTF-8 with some bytes that are not). */
  warning?: string;
}

const CHUNK_BYTES = 1 << 20;
/** Bytes looked at to recognise UTF-16 without a byte-order mark. */
const SNIFF_BYTES = 4096;

/** Decides a file's encoding: its BOM, else whether the whole file is valid UTF-8, else Windows-1252. */
export async function detectEncoding(path: string): Promise<FileEncoding> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await handle.read(head, 0, SNIFF_BYTES, 0);
    const start = head.subarray(0, bytesRead);
    const bom = byteOrderMark(start);
    if (bom) return { encoding: bom, detected: true, reason: 'byte-order mark' };
    const utf16 = utf16WithoutBom(start);
    if (utf16) return { encoding: utf16, detected: true, reason: 'no byte-order mark, but a zero byte in every other byte' };
    if (await wholeFileIsUtf8(handle)) return { encoding: 'utf-8', detected: true, reason: 'valid UTF-8' };
    return decideInvalidUtf8(await analyzeBytes(handle));
  } finally {
    await handle.close();
  }
}

/** The encoding `--encoding` asked for; a byte-order mark that says otherwise is worth a warning. */
export async function requestedEncoding(path: string, encoding: EncodingName): Promise<FileEncoding> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    const bom = byteOrderMark(head.subarray(0, bytesRead));
    const result: FileEncoding = { encoding, detected: false, reason: 'as asked (--encoding)' };
    if (bom && bom !== encoding) {
      result.warning = `${path} starts with a ${bom} byte-order mark but --encoding ${encoding} was given; if names look wrong, drop --encoding`;
    }
    return result;
  } finally {
    await handle.close();
  }
}

/** A decoder for the file's encoding; it drops a matching byte-order mark and turns bad bytes into U+FFFD. */
export function decoderFor(encoding: EncodingName): TextDecoder {
  return new TextDecoder(encoding);
}

function byteOrderMark(bytes: Buffer): EncodingName | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return 'utf-8';
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  return undefined;
}

/**
 * UTF-16 text without a BOM: mostly-ASCII text puts a zero byte in every other byte (odd offsets for LE, even
 * for BE). Zero bytes are valid UTF-8, so without this such a file would be read as UTF-8 full of NULs.
 */
function utf16WithoutBom(bytes: Buffer): EncodingName | undefined {
  const pairs = Math.floor(bytes.length / 2);
  if (pairs < 8) return undefined;
  let evenZeros = 0;
  let oddZeros = 0;
  for (let i = 0; i < pairs * 2; i += 2) {
    if (bytes[i] === 0) evenZeros += 1;
    if (bytes[i + 1] === 0) oddZeros += 1;
  }
  if (oddZeros >= pairs * 0.3 && evenZeros <= pairs * 0.02) return 'utf-16le';
  if (evenZeros >= pairs * 0.3 && oddZeros <= pairs * 0.02) return 'utf-16be';
  return undefined;
}

/** Validates every byte of the file as UTF-8, a chunk at a time, carrying sequences cut at a chunk's end. */
async function wholeFileIsUtf8(handle: FileHandle): Promise<boolean> {
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES + 4);
  let carried = 0;
  let position = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, carried, CHUNK_BYTES, position);
    position += bytesRead;
    const total = carried + bytesRead;
    if (bytesRead === 0) return carried === 0; // a sequence cut off by the end of the file is not UTF-8
    const complete = completeSequencesEnd(buffer, total);
    if (!isUtf8(buffer.subarray(0, complete))) return false;
    buffer.copy(buffer, 0, complete, total);
    carried = total - complete;
  }
}

/** Where the last complete UTF-8 sequence of `buffer[0, length)` ends (a multi-byte one may be cut). */
function completeSequencesEnd(buffer: Buffer, length: number): number {
  for (let back = 1; back <= 3 && back <= length; back += 1) {
    const byte = buffer[length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back for the lead
    const needed = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return needed > back ? length - back : length;
  }
  return length;
}

interface ByteAnalysis {
  /** Well-formed multi-byte UTF-8 sequences (non-ASCII characters that read as UTF-8). */
  validMultibyte: number;
  /** Bytes that cannot be part of UTF-8 where they are. */
  invalid: number;
  /** 1-based line of the first invalid byte, and the byte. */
  firstInvalidLine: number;
  firstInvalidByte: number;
}

/** The slow path, for files that are not valid UTF-8: count what reads as UTF-8 and what does not. */
async function analyzeBytes(handle: FileHandle): Promise<ByteAnalysis> {
  const result: ByteAnalysis = { validMultibyte: 0, invalid: 0, firstInvalidLine: 0, firstInvalidByte: 0 };
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES + 4);
  let carried = 0;
  let position = 0;
  let line = 1;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, carried, CHUNK_BYTES, position);
    position += bytesRead;
    const total = carried + bytesRead;
    const atEnd = bytesRead === 0;
    let i = 0;
    while (i < total) {
      const byte = buffer[i]!;
      if (byte < 0x80) {
        if (byte === 0x0a) line += 1;
        i += 1;
        continue;
      }
      const length = sequenceLength(buffer, i, total);
      if (length === -1 && !atEnd) break; // cut at the chunk's end: finish it with the next chunk
      if (length > 0) {
        result.validMultibyte += 1;
        i += length;
        continue;
      }
      if (result.invalid === 0) {
        result.firstInvalidLine = line;
        result.firstInvalidByte = byte;
      }
      result.invalid += 1;
      i += 1;
    }
    if (atEnd) return result;
    buffer.copy(buffer, 0, i, total);
    carried = total - i;
  }
}

/** Length of the well-formed UTF-8 sequence at `i`; 0 when it is not one; -1 when the buffer ends inside it. */
function sequenceLength(buffer: Buffer, i: number, end: number): number {
  const lead = buffer[i]!;
  let length: number;
  let min = 0x80;
  let max = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) length = 2;
  else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead === 0xe0) min = 0xa0; // overlong
    if (lead === 0xed) max = 0x9f; // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead === 0xf0) min = 0x90;
    if (lead === 0xf4) max = 0x8f;
  } else return 0;
  for (let k = 1; k < length; k += 1) {
    if (i + k >= end) return -1;
    const byte = buffer[i + k]!;
    if (byte < (k === 1 ? min : 0x80) || byte > (k === 1 ? max : 0xbf)) return 0;
  }
  return length;
}

/**
 * A file that is not valid UTF-8 all the way through is Windows-1252, unless most of its non-ASCII text does
 * read as UTF-8: then it is UTF-8 with some damaged bytes, and reading it as Windows-1252 would silently turn
 * every `é` into `Ã©`. Read as UTF-8, only the damaged rows are affected, and they are reported invalid.
 */
function decideInvalidUtf8(analysis: ByteAnalysis): FileEncoding {
  const where = `line ${analysis.firstInvalidLine}, byte 0x${analysis.firstInvalidByte.toString(16).toUpperCase().padStart(2, '0')}`;
  if (analysis.validMultibyte > analysis.invalid) {
    return {
      encoding: 'utf-8',
      detected: true,
      reason: `mostly UTF-8 (${analysis.invalid} byte${analysis.invalid === 1 ? '' : 's'} not, first at ${where})`,
      warning:
        `mostly valid UTF-8, but ${analysis.invalid} byte${analysis.invalid === 1 ? ' is' : 's are'} not (first at ${where}): ` +
        'read as UTF-8, and the rows with those bytes are reported invalid; pass --encoding if the file is in another encoding',
    };
  }
  return { encoding: 'windows-1252', detected: true, reason: `not valid UTF-8 (first at ${where})` };
}
