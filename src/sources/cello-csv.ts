import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataError, UnavailableError, UsageError } from '../errors.js';
import { HttpError } from '../http/errors.js';
import { parseDate } from '../model/dates.js';
import type { Participant, RecordLocation, SourceRecord } from '../model/participant.js';
import type { CelloApi } from './cello-api.js';
import { normalizeHeader, openCsv, type CsvFile } from './csv.js';
import type { Source } from './source.js';

/**
 * Cello's portal/S3 exports (research/cello.md §6): `conv_signups` (one row per attributed signup: the
 * referred user, the referrer, the code, the time, Included/Excluded) and the per-referrer aggregates
 * (`event_details_aggregates-all`, and `-daily` for the first day each referrer was active). Files are told
 * apart by their columns, so they may come in any order, under any name, or as one folder.
 */

export type CelloTierBasis = 'signups' | 'purchases';

export interface CelloCsvOptions {
  paths: string[];
  programId: string;
  tierBasis: CelloTierBasis;
  /** --enrich: confirm each code's referrer and campaign, and fetch each referrer's active link. */
  api?: CelloApi;
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
  return {
    description: `Cello exports ${options.paths.join(', ')}${options.api ? ' (enriched through the Cello API)' : ''}`,
    // Read once into memory (a program's referrers and signups), then replayed for both planner passes.
    rereadable: true,
    records: async function* () {
      loaded ??= loadCello(options);
      yield* await loaded;
    },
  };
}

/** Expands folders to the CSV files in them; a path that does not exist stops the run with exit 64. */
export function celloFiles(paths: string[]): string[] {
  const files: string[] = [];
  for (const path of paths) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch {
      throw new UsageError(`File not found: ${path}`, { hint: 'Give --file the Cello export files, or the folder they are in.' });
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

function kindOf(csv: CsvFile): ExportKind {
  const columns = csv.header.map(normalizeHeader);
  if (columns.includes('newuserproductuserid')) {
    for (const required of ['productuserid', 'datetime']) {
      if (!columns.includes(required)) throw new DataError(`${csv.path} looks like conv_signups but has no "${required}" column.`);
    }
    return 'signups';
  }
  if (columns.includes('productuserid') && columns.includes('nusignups')) {
    return columns.includes('date') || columns.includes('day') ? 'aggregates-daily' : 'aggregates-all';
  }
  throw new DataError(
    `${csv.path} is not a Cello export: expected conv_signups (datetime, productuserid, campaign_ucc, newuserproductuserid, status) ` +
      `or event_details_aggregates (productuserid, R_Active, R_Sharing, NU_Signups, NU_Purchases…); its columns are ${csv.header.join(', ')}.`,
  );
}

interface Draft {
  participant: Participant;
  /** Where this person was first seen, for messages. */
  location: RecordLocation;
}

async function loadCello(options: CelloCsvOptions): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  const people = new Map<string, Draft>();
  const referredRows = new Map<string, RecordLocation>();
  const kinds = new Set<ExportKind>();
  const draft = (id: string, location: RecordLocation): Draft => {
    let entry = people.get(id);
    if (!entry) {
      entry = { participant: { source: 'cello', programId: options.programId, id, rewards: [], metadata: {} }, location };
      people.set(id, entry);
    }
    return entry;
  };

  for (const path of celloFiles(options.paths)) {
    const csv = await openCsv(path);
    const kind = kindOf(csv);
    kinds.add(kind);
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
        const rawTime = at(row.fields, 'datetime');
        const createdAt = rawTime === undefined ? undefined : parseDate(rawTime);
        if (!createdAt) {
          out.push({ kind: 'invalid', reason: `unparseable date "${rawTime ?? ''}" in column "datetime"`, location, participantId: id });
          continue;
        }
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
        // Daily rows: the first day with any activity is when this referrer joined the program.
        const day = parseDate(at(row.fields, 'date') ?? at(row.fields, 'day') ?? '');
        const active = Object.keys(AGGREGATES).some((column) => Number(at(row.fields, column) ?? 0) > 0);
        if (day && active && (p.metadata.cello_first_active === undefined || day.toISOString() < String(p.metadata.cello_first_active))) {
          p.metadata.cello_first_active = day.toISOString();
        }
      }
    }
  }
  if (!kinds.has('signups')) {
    out.push({ kind: 'warning', message: 'no conv_signups export given: referred users and Referral Made events come only from that file' });
  }

  finishDrafts(people, options.tierBasis);
  if (options.api) out.push(...(await enrich(people, options.api)));
  for (const { participant, location } of people.values()) out.push({ kind: 'participant', participant, location });
  return out;
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

/** --enrich: each distinct code and referrer looked up once; what Cello says wins over the export, with a word. */
async function enrich(people: Map<string, Draft>, api: CelloApi): Promise<SourceRecord[]> {
  const notes: SourceRecord[] = [];
  try {
    for (const { participant: p, location } of people.values()) {
      const ucc = p.metadata.cello_referral_ucc;
      if (typeof ucc !== 'string' || p.referrerId === undefined) continue;
      const info = await api.codeInfo(ucc);
      if (!info.valid) {
        notes.push({ kind: 'warning', message: `referral code ${ucc} is not valid in Cello: ${p.id} is kept without a referrer`, location });
        delete p.referrerId;
        continue;
      }
      if (info.productUserId && info.productUserId !== p.referrerId) {
        notes.push({ kind: 'warning', message: `Cello says code ${ucc} belongs to ${info.productUserId}, the export says ${p.referrerId}; using Cello's`, location });
        p.referrerId = info.productUserId;
      }
      if (info.campaignId) p.metadata.cello_campaign_id = info.campaignId;
    }
    const referrers = new Set([...people.values()].map((d) => d.participant.referrerId).filter((id): id is string => id !== undefined));
    for (const id of referrers) {
      const entry = people.get(id);
      if (!entry) continue;
      const link = await api.activeLink(id);
      if (link) {
        entry.participant.referralLink = link.link;
        entry.participant.referralCode = link.activeUcc;
      }
    }
  } catch (error) {
    if (error instanceof HttpError) {
      throw new UnavailableError(`Cello lookup failed (${error.status ?? 'network'}: ${error.message}).`, { hint: 'Run without --enrich, or check CELLO_API_URL and the access keys.' });
    }
    throw error;
  }
  return notes;
}

