import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { DataError, UsageError } from '../../errors.js';
import { HttpError } from '../../http/errors.js';
import { describeDateProblem, describeUnusualYear, plausibleYears, readDate, type YearRange } from '../../model/dates.js';
import type { Participant, RecordLocation, SourceRecord } from '../../model/participant.js';
import { celloFailure, type CelloApi } from './api.js';
import { closeCsv, describeColumns, InputFiles, normalizeHeader, openCsv, otherDelimiterHint, type CsvFile, type Delimiter } from '../csv/reader.js';
import { celloExportOf, looksLikeGrowsurfExport } from '../csv/known-exports.js';
import { mapConcurrent } from '../map-concurrent.js';
import { ReadMeter, totalBytes } from '../read-meter.js';
import type { EncodingName } from '../csv/encoding.js';
import type { Source } from '../source.js';

/**
 * Cello's portal/S3 exports (research/cello.md §6): `conv_signups` (one row per attributed signup: the
 * referred user, the referrer, the code, the time, Included/Excluded) and the per-referrer aggregates
 * (`event_details_aggregates-all`, and `-daily` for the first day each referrer was active). conv_signups is
 * told from the aggregates by its columns; the all-time aggregates from the daily ones, which Cello documents
 * with the same columns, by the file's name, a date column, or a referrer on more than one row (see
 * `aggregatesKind`): daily rows must never overwrite the all-time totals.
 */

export type CelloTierBasis = 'signups' | 'purchases';

export interface CelloCsvOptions {
  paths: string[];
  programId: string;
  tierBasis: CelloTierBasis;
  /** --enrich: confirm each code's referrer and campaign, and fetch each referrer's active link. */
  api?: CelloApi;
  /** Lookups in flight at once (default 16); the API client's limiter sets the pace. */
  lookupConcurrency?: number;
  /** Called once the lookups are done, before the first participant is yielded (to report them). */
  onEnriched?: () => void;
  /** `--encoding`: overrides detection for every file. */
  encoding?: EncodingName;
  /** `--delimiter`: overrides detection for every file. */
  delimiter?: Delimiter;
  /** For the plausible-year check of dates (default: now). */
  now?: Date;
}

type ExportKind = 'signups' | 'aggregates-all' | 'aggregates-daily';

/** Aggregate columns → metadata keys (forward them as traits with `metadataTraits`). */
const AGGREGATES: Record<string, string> = {
  ractive: 'cello_widget_opens',
  rsharing: 'cello_shares',
  rreward: 'cello_rewards',
  nuviews: 'cello_views',
  nuviewsunique: 'cello_unique_views',
  nusignups: 'cello_signups',
  nupurchases: 'cello_purchases',
};

export function celloCsvSource(options: CelloCsvOptions): Source {
  let loaded: Promise<SourceRecord[]> | undefined;
  const inputs = new InputFiles(options.encoding, options.delimiter);
  const meter = new ReadMeter('bytes');
  return {
    description: `Cello exports ${options.paths.join(', ')}${options.api ? ' (enriched through the Cello API)' : ''}`,
    // Read once into memory (a program's referrers and signups), then replayed for both planner passes.
    rereadable: true,
    records: () => {
      // The first read loads the files (bytes, then any lookups); every read then replays what was loaded.
      if (!loaded) meter.start('bytes', totalBytes(filesOrNone(options.paths)));
      loaded ??= loadCello(options, inputs, meter);
      return replay(loaded, meter);
    },
    inputs: () => inputs.list(),
    readProgress: () => meter.progress(),
  };
}

async function* replay(loaded: Promise<SourceRecord[]>, meter: ReadMeter): AsyncGenerator<SourceRecord> {
  const records = await loaded;
  meter.start('records', records.length);
  for (const record of records) {
    meter.add(1);
    yield record;
  }
}

/** The files for the progress total; a bad path is left to the read, which stops with its own message. */
function filesOrNone(paths: string[]): string[] {
  try {
    return celloFiles(paths);
  } catch {
    return [];
  }
}

/** Expands folders to the CSV files in them; a path that does not exist stops the run with exit 64. */
export function celloFiles(paths: string[]): string[] {
  const files: string[] = [];
  for (const path of paths) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch {
      throw new UsageError(`File not found: ${path}`, { hint: 'Check the path: give --file the Cello export files, or the folder they are in.' });
    }
    if (!isDirectory) files.push(path);
    else {
      const csvs = readdirSync(path).filter((name) => name.toLowerCase().endsWith('.csv')).sort();
      if (csvs.length === 0) throw new UsageError(`No .csv files in ${path}.`, { hint: 'Download the exports from the Cello Portal (Download, top right) or the S3 bucket.' });
      files.push(...csvs.map((name) => join(path, name)));
    }
  }
  return files;
}

/**
 * `check`: the export files a run would read (folders expanded), each opened for its header only, as a run would:
 * which Cello export it is. Throws what the run would throw (a missing path, a file that is not a Cello export).
 */
export async function checkCelloExports(paths: string[], options: { encoding?: EncodingName; delimiter?: Delimiter } = {}): Promise<{ file: string; kind: 'signups' | 'aggregates'; encoding: string }[]> {
  const inputs = new InputFiles(options.encoding, options.delimiter);
  const found: { file: string; kind: 'signups' | 'aggregates'; encoding: string }[] = [];
  for (const file of celloFiles(paths)) {
    const csv = await openCsv(file, inputs);
    try {
      found.push({ file, kind: kindOf(csv), encoding: csv.encoding.encoding });
    } finally {
      await closeCsv(csv);
    }
  }
  return found;
}

/** conv_signups or the aggregates, by the columns (the all-time/daily question is `aggregatesKind`'s). */
function kindOf(csv: CsvFile): 'signups' | 'aggregates' {
  const columns = csv.header.map(normalizeHeader);
  const kind = celloExportOf(csv.header);
  if (kind === 'conv_signups') {
    for (const required of ['productuserid', 'datetime']) {
      if (!columns.includes(required)) {
        throw new DataError(`${csv.path} looks like Cello's conv_signups but has no "${required}" column; ${describeColumns(csv)}.`, {
          hint: otherDelimiterHint(csv) ?? 'Download conv_signups again from the Cello Portal (Download, top right) or the S3 bucket, without removing columns.',
        });
      }
    }
    return 'signups';
  }
  if (kind === 'event_details_aggregates') return 'aggregates';
  if (looksLikeGrowsurfExport(csv.header)) {
    throw new UsageError(`${csv.path} is a GrowSurf participant export, not a Cello export: read it without --source cello (and without --format cello).`, {
      hint: `For example: npx referral-sync diff --file ${csv.path}`,
    });
  }
  throw new DataError(
    `${csv.path} is not a Cello export (conv_signups: datetime, productuserid, campaign_ucc, newuserproductuserid, status; ` +
      `or event_details_aggregates: productuserid, R_Active, R_Sharing, NU_Signups, NU_Purchases…); ${describeColumns(csv)}.`,
    { hint: otherDelimiterHint(csv) ?? 'Give --file the files Cello exports (conv_signups, event_details_aggregates-all, -daily) as downloaded, or their folder.' },
  );
}

interface Draft {
  participant: Participant;
  /** Where this person was first seen, for messages. */
  location: RecordLocation;
}

const NAMING_HINT =
  'Rename it as Cello names them: event_details_aggregates-all.csv for the all-time totals, event_details_aggregates-daily.csv for the per-day rows.';

/** What a file's name says it is: Cello names them `…aggregates-all` and `…aggregates-daily`. */
function kindNamed(path: string): 'aggregates-all' | 'aggregates-daily' | undefined {
  const name = basename(path).toLowerCase();
  const daily = /daily|per[-_ ]?day/.test(name);
  const all = /(^|[^a-z])all([^a-z]|time|$)/.test(name);
  if (daily === all) return undefined;
  return daily ? 'aggregates-daily' : 'aggregates-all';
}

/**
 * All-time or daily aggregates. Cello documents both with the same columns (research/cello.md §6), and a daily
 * file read as the all-time one would overwrite every referrer's totals with one day's counts. So:
 * the name decides when it says which; a date column or a referrer on two rows mean daily; a name that says
 * all-time contradicted by those, or a file that gives no sign either way, stops the run (exit 65) and asks.
 */
async function aggregatesKind(csv: CsvFile, inputs: InputFiles): Promise<Exclude<ExportKind, 'signups'>> {
  const named = kindNamed(csv.path);
  if (named === 'aggregates-daily') return named;
  const columns = csv.header.map(normalizeHeader);
  const dateColumn = columns.find((c) => c === 'date' || c === 'day');
  const signs: string[] = [];
  if (dateColumn) signs.push(`it has a "${csv.header[columns.indexOf(dateColumn)]}" column`);
  if (signs.length === 0 || named === 'aggregates-all') {
    const repeat = await firstRepeatedReferrer(csv.path, inputs);
    if (repeat) signs.push(`referrer ${repeat.id} has more than one row (lines ${repeat.lines[0]} and ${repeat.lines[1]})`);
  }
  if (named === 'aggregates-all') {
    if (signs.length === 0) return named;
    throw new DataError(
      `${csv.path} is named as Cello's all-time aggregates, but ${signs.join(' and ')}, as in the daily aggregates; ` +
        'read as all-time totals, those rows would overwrite each other, so nothing was read.',
      { hint: `If it is the daily export, rename it …-daily.csv. ${NAMING_HINT}` },
    );
  }
  if (signs.length > 0) return 'aggregates-daily';
  throw new DataError(
    `${csv.path} could be Cello's all-time or daily aggregates: Cello gives both the same columns, its name says neither, ` +
      'and each referrer has one row. Read as the wrong one, the referral counts and tiers would be wrong, so nothing was read.',
    { hint: NAMING_HINT },
  );
}

/** The first referrer with a second row in an aggregates file (a pre-pass of its own, stopping there). */
async function firstRepeatedReferrer(path: string, inputs: InputFiles): Promise<{ id: string; lines: [number, number] } | undefined> {
  const csv = await openCsv(path, inputs);
  const index = csv.header.map(normalizeHeader).indexOf('productuserid');
  const seen = new Map<string, number>();
  for await (const row of csv.rows) {
    if (row.kind !== 'row') continue;
    const id = row.fields[index]?.trim();
    if (!id) continue;
    const first = seen.get(id);
    if (first !== undefined) {
      // Leaving the loop closes the file.
      return { id, lines: [first, row.line] };
    }
    seen.set(id, row.line);
  }
  return undefined;
}

async function loadCello(options: CelloCsvOptions, inputs: InputFiles, meter: ReadMeter): Promise<SourceRecord[]> {
  const years = plausibleYears(options.now ?? new Date());
  const out: SourceRecord[] = [];
  const people = new Map<string, Draft>();
  const referredRows = new Map<string, RecordLocation>();
  const kinds = new Set<ExportKind>();
  const allTimeFiles: string[] = [];
  const draft = (id: string, location: RecordLocation): Draft => {
    let entry = people.get(id);
    if (!entry) {
      entry = { participant: { source: 'cello', programId: options.programId, id, rewards: [], metadata: {} }, location };
      people.set(id, entry);
    }
    return entry;
  };

  for (const path of celloFiles(options.paths)) {
    const csv = await openCsv(path, inputs, (bytes) => meter.add(bytes));
    if (csv.encoding.warning) out.push({ kind: 'warning', message: `${path}: ${csv.encoding.warning}` });
    const kind = kindOf(csv) === 'signups' ? 'signups' : await aggregatesKind(csv, inputs);
    kinds.add(kind);
    if (kind === 'aggregates-all') allTimeFiles.push(path);
    if (kind === 'aggregates-daily' && !csv.header.map(normalizeHeader).some((c) => c === 'date' || c === 'day')) {
      out.push({ kind: 'warning', message: `${path} (daily aggregates) has no date column: it gives no first-active day, and its counts are not used (the all-time aggregates give the totals)` });
    }
    const columns = csv.header.map(normalizeHeader);
    const at = (fields: string[], name: string): string | undefined => {
      const index = columns.indexOf(name);
      const value = index === -1 ? undefined : fields[index]?.trim();
      return value === '' ? undefined : value;
    };
    for await (const row of csv.rows) {
      const location = { file: path, line: row.line };
      if (row.kind === 'error') {
        out.push({ kind: 'invalid', reason: row.reason, location });
        continue;
      }
      const referrerId = at(row.fields, 'productuserid');
      if (kind === 'signups') {
        const id = at(row.fields, 'newuserproductuserid');
        const status = at(row.fields, 'status');
        if (!id) {
          out.push({ kind: 'invalid', reason: 'no newuserproductuserid', location });
          continue;
        }
        if (status && status.toLowerCase() !== 'included') {
          // Cello excluded it (self-referral, fraud, …): reported, never sent.
          out.push({ kind: 'invalid', reason: `signup of ${id} has status "${status}" in Cello; excluded signups are not sent`, location, participantId: id });
          continue;
        }
        const rawTime = at(row.fields, 'datetime') ?? '';
        const reading = readDate(rawTime, years);
        if (!reading.ok) {
          out.push({ kind: 'invalid', reason: describeDateProblem(reading, rawTime, 'column "datetime"'), location, participantId: id });
          continue;
        }
        const createdAt = reading.date;
        if (reading.unusualYear) out.push({ kind: 'warning', message: describeUnusualYear(createdAt, rawTime, 'column "datetime"', years), location });
        const first = referredRows.get(id);
        if (first) {
          out.push({ kind: 'invalid', reason: `signup of ${id} appears again (first at ${first.file}:${first.line}); the first row wins`, location, participantId: id });
          continue;
        }
        referredRows.set(id, location);
        const p = draft(id, location).participant;
        p.createdAt = createdAt;
        if (referrerId) p.referrerId = referrerId;
        const code = at(row.fields, 'campaignucc');
        if (code) {
          // The code the signup came through; a referred user who refers in turn gets their own from --enrich.
          p.referralCode = code;
          p.metadata.cello_referral_ucc = code;
        }
        // Everything else the row has (date, month, week, …) is derivable; unknown columns go to metadata.
        csv.header.forEach((name, i) => {
          const key = columns[i]!;
          if (!['datetime', 'date', 'month', 'week', 'productuserid', 'campaignucc', 'newuserproductuserid', 'status'].includes(key)) {
            const value = row.fields[i]?.trim();
            if (value) p.metadata[name] = value;
          }
        });
        continue;
      }
      if (!referrerId) {
        out.push({ kind: 'invalid', reason: 'no productuserid', location });
        continue;
      }
      const p = draft(referrerId, location).participant;
      if (kind === 'aggregates-all') {
        for (const [column, key] of Object.entries(AGGREGATES)) {
          const value = at(row.fields, column);
          if (value !== undefined && /^\d+$/.test(value)) p.metadata[key] = Number(value);
          else if (value !== undefined) out.push({ kind: 'warning', message: `"${value}" in column ${column} is not a count; ignored`, location });
        }
        // Columns Cello may add later are kept as metadata under their own names.
        csv.header.forEach((name, i) => {
          const value = row.fields[i]?.trim();
          if (columns[i] !== 'productuserid' && !(columns[i]! in AGGREGATES) && value) p.metadata[name] = value;
        });
      } else {
        // Daily rows: the first day with any activity is when this referrer joined the program. Their counts are
        // one day's and are never taken as totals.
        const day = dailyDate(row.fields, at, years, location, out);
        const active = Object.keys(AGGREGATES).some((column) => Number(at(row.fields, column) ?? 0) > 0);
        if (day && active && (p.metadata.cello_first_active === undefined || day.toISOString() < String(p.metadata.cello_first_active))) {
          p.metadata.cello_first_active = day.toISOString();
        }
      }
    }
  }
  if (allTimeFiles.length > 1) {
    out.push({ kind: 'warning', message: `${allTimeFiles.length} all-time aggregates files (${allTimeFiles.join(', ')}): a referrer in more than one gets the totals of the last one read (${allTimeFiles.at(-1)}); give only the newest` });
  }
  if (!kinds.has('signups')) {
    out.push({ kind: 'warning', message: 'no conv_signups export given: referred users and Referral Made events come only from that file' });
  }

  finishDrafts(people, options.tierBasis);
  if (options.api) {
    out.push(...(await enrich(people, options.api, options.lookupConcurrency ?? DEFAULT_LOOKUP_CONCURRENCY, meter)));
    options.onEnriched?.();
  }
  for (const { participant, location } of people.values()) {
    // Cello keys referrers on the customer's own user id and includes only the signups it attributed to one, so
    // an Included row vouches for its referrer being in the program, even one no aggregates file lists (a
    // referrer named by nothing in the data is not credited, DESIGN.md §10).
    if (participant.referrerId !== undefined) participant.referrerProfile = { id: participant.referrerId, metadata: {} };
    out.push({ kind: 'participant', participant, location });
  }
  return out;
}

/** A daily row's day; a bad date is reported (the row gives no first-active day), an odd year warned about. */
function dailyDate(
  fields: string[],
  at: (fields: string[], name: string) => string | undefined,
  years: YearRange,
  location: RecordLocation,
  out: SourceRecord[],
): Date | undefined {
  const column = at(fields, 'date') !== undefined ? 'date' : 'day';
  const raw = at(fields, column);
  if (raw === undefined) return undefined;
  const reading = readDate(raw, years);
  if (!reading.ok) {
    out.push({ kind: 'invalid', reason: describeDateProblem(reading, raw, `column "${column}"`), location });
    return undefined;
  }
  if (reading.unusualYear) out.push({ kind: 'warning', message: describeUnusualYear(reading.date, raw, `column "${column}"`, years), location });
  return reading.date;
}

/** Counts and times from the aggregates: the tier basis, and createdAt for referrers who were not referred. */
function finishDrafts(people: Map<string, Draft>, basis: CelloTierBasis): void {
  for (const { participant: p } of people.values()) {
    const count = p.metadata[basis === 'purchases' ? 'cello_purchases' : 'cello_signups'];
    if (typeof count === 'number') p.referralCount = count;
    // Referrers only in conv_signups get their count from the Included rows naming them (the directory does it).
    if (p.createdAt === undefined && typeof p.metadata.cello_first_active === 'string') p.createdAt = new Date(p.metadata.cello_first_active);
  }
}

const DEFAULT_LOOKUP_CONCURRENCY = 16;

/**
 * --enrich: each distinct code and referrer looked up once; what Cello says wins over the export, with a word.
 * Many lookups are in flight at once (the rate is the API client's); answers are applied in the export's order,
 * so the notes and the participants come out as they would one lookup at a time.
 */
async function enrich(people: Map<string, Draft>, api: CelloApi, concurrency: number, meter: ReadMeter): Promise<SourceRecord[]> {
  const notes: SourceRecord[] = [];
  try {
    // Codes first: Cello may name another referrer than the export, and links are asked for the referrers it names.
    const referred = [...people.values()].filter(({ participant: p }) => typeof p.metadata.cello_referral_ucc === 'string' && p.referrerId !== undefined);
    // Distinct codes, so no lookup slot waits on an answer another slot is already getting.
    const codes = [...new Set(referred.map(({ participant: p }) => p.metadata.cello_referral_ucc as string))];
    // Lookups can take minutes at Cello's pace: counted for progress. The referrers' count is the export's until
    // the codes' answers say which referrers Cello names (usually the same).
    const exportReferrers = new Set(referred.map(({ participant: p }) => p.referrerId).filter((id) => id !== undefined && people.has(id)));
    meter.start('lookups', codes.length + exportReferrers.size);
    const counted = <T>(lookup: Promise<T>): Promise<T> => lookup.finally(() => meter.add(1));
    const answers = await mapConcurrent(codes, concurrency, (ucc) => counted(api.codeInfo(ucc)));
    const infos = new Map(codes.map((ucc, i) => [ucc, answers[i]!]));
    for (const { participant: p, location } of referred) {
      const ucc = p.metadata.cello_referral_ucc as string;
      const info = infos.get(ucc)!;
      if (!info.valid) {
        // Cello's documented "unknown code" (200 valid:false), or a 404 for this one code: data about this row.
        const said = info.answered === undefined || info.answered === 'valid: false' ? '' : ` (Cello answered ${info.answered})`;
        notes.push({ kind: 'warning', message: `referral code ${ucc} is not valid in Cello${said}: ${p.id} is kept without a referrer`, location });
        delete p.referrerId;
        continue;
      }
      if (info.productUserId && info.productUserId !== p.referrerId) {
        notes.push({ kind: 'warning', message: `Cello says code ${ucc} belongs to ${info.productUserId}, the export says ${p.referrerId}; using Cello's`, location });
        p.referrerId = info.productUserId;
      }
      if (info.campaignId) p.metadata.cello_campaign_id = info.campaignId;
    }
    const referrers = [...new Set([...people.values()].map((d) => d.participant.referrerId).filter((id): id is string => id !== undefined))].filter((id) =>
      people.has(id),
    );
    meter.setTotal(codes.length + referrers.length);
    const links = await mapConcurrent(referrers, concurrency, (id) => counted(api.activeLink(id)));
    for (const [i, id] of referrers.entries()) {
      const link = links[i];
      const entry = people.get(id)!;
      if (!link) {
        // "No link" for one referrer (an empty answer or a 404 for them) is data about that referrer, not a failure.
        notes.push({ kind: 'warning', message: `Cello has no active referral link for referrer ${id}: it is sent without one`, location: entry.location });
        continue;
      }
      if (link.link !== undefined) entry.participant.referralLink = link.link;
      if (link.activeUcc !== undefined) entry.participant.referralCode = link.activeUcc;
    }
  } catch (error) {
    if (error instanceof HttpError) {
      throw celloFailure(error, 'lookup');
    }
    throw error;
  }
  return notes;
}

