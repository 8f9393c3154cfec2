import type { Config, IdentityRule } from '../../config/config.js';
import { DataError, UsageError } from '../../errors.js';
import { describeDateProblem, describeUnusualYear, plausibleYears, readDate, type YearRange } from '../../model/dates.js';
import { looksLikeEmail, normalizeEmail } from '../../model/identity.js';
import {
  normalizeReferralStatus,
  type MetadataValue,
  type Participant,
  type SourceRecord,
} from '../../model/participant.js';
import { closeCsv, describeColumns, InputFiles, normalizeHeader, openCsv, otherDelimiterHint, type CsvFile, type Delimiter } from '../csv/reader.js';
import type { EncodingName } from '../csv/encoding.js';
import { celloExportOf } from '../csv/known-exports.js';
import { ReadMeter, totalBytes } from '../read-meter.js';
import type { Source } from '../source.js';

/**
 * GrowSurf participant exports. GrowSurf does not publish the export's headers (research/growsurf.md §7), so
 * columns are found by aliases compared without case or punctuation, extended by the config's column map;
 * every other column becomes metadata.
 */

export const GROWSURF_CSV_FIELDS = {
  id: ['ID', 'Participant ID', 'GrowSurf ID'],
  email: ['Email', 'Email Address', 'E-mail', 'Participant Email'],
  firstName: ['First Name', 'Firstname', 'Given Name'],
  lastName: ['Last Name', 'Lastname', 'Surname', 'Family Name'],
  createdAt: ['Created At', 'Created', 'Signup Date', 'Sign Up Date', 'Signed Up At', 'Date Joined', 'Joined At', 'Joined'],
  referralCount: ['Referral Count', 'Referrals', 'Successful Referrals', 'Total Referrals'],
  pendingCount: ['Lead Count', 'Leads', 'Pending Referrals'],
  referrerId: ['Referred By', 'Referrer ID', 'Referred By ID', 'Referrer Email', 'Referred By Email', 'Referrer'],
  referralStatus: ['Referral Status', 'Credit Status', 'Status'],
  referralLink: ['Share URL', 'Referral Link', 'Share Link', 'Referral URL'],
  referralCode: ['Referral Code', 'Vanity Key', 'Vanity Keys', 'Code'],
  joinedVia: ['Referral Source', 'Source', 'Joined Via'],
  convertedAt: ['Converted At', 'Referral Converted At', 'Credit Awarded At', 'Conversion Date'],
} as const;

export type GrowsurfCsvField = keyof typeof GROWSURF_CSV_FIELDS;

/** PII the destinations do not need is never read (DESIGN.md §3). */
const DROPPED = new Set(['ipaddress', 'ip', 'fingerprint', 'notes', 'mobileinstanceid']);

interface ColumnLayout {
  /** For each field, the column indexes that can hold it, best first (e.g. Referrer ID before Referrer Email). */
  fields: Partial<Record<GrowsurfCsvField, { index: number; header: string }[]>>;
  metadata: { index: number; key: string }[];
}

export interface GrowsurfCsvOptions {
  files: string[];
  programId: string;
  config: Pick<Config, 'columns' | 'identity' | 'group'>;
  /** `--encoding`: overrides detection for every file. */
  encoding?: EncodingName;
  /** `--delimiter`: overrides detection for every file. */
  delimiter?: Delimiter;
  /** For the plausible-year check of dates (default: now). */
  now?: Date;
}

export function growsurfCsvSource(options: GrowsurfCsvOptions): Source {
  // One per run: each file's encoding is detected once, although the file is read twice.
  const inputs = new InputFiles(options.encoding, options.delimiter);
  const meter = new ReadMeter('bytes');
  return {
    description: `GrowSurf export ${options.files.join(', ')}`,
    rereadable: true,
    records: () => {
      // Started here, not in the generator: the display asks before the first row is pulled.
      meter.start('bytes', totalBytes(options.files));
      return readGrowsurfCsv(options, inputs, (bytes) => meter.add(bytes));
    },
    inputs: () => inputs.list(),
    readProgress: () => meter.progress(),
  };
}

export async function* readGrowsurfCsv(
  options: GrowsurfCsvOptions,
  inputs = new InputFiles(options.encoding, options.delimiter),
  onBytes?: (bytes: number) => void,
): AsyncGenerator<SourceRecord> {
  const years = plausibleYears(options.now ?? new Date());
  for (const path of options.files) {
    const csv = await openCsv(path, inputs, onBytes);
    if (csv.encoding.warning) yield { kind: 'warning', message: `${path}: ${csv.encoding.warning}` };
    const layout = resolveLayout(csv, options.config);
    for await (const row of csv.rows) {
      const location = { file: path, line: row.line };
      if (row.kind === 'error') {
        yield { kind: 'invalid', reason: row.reason, location };
        continue;
      }
      const result = toParticipant(row.fields, layout, options.programId, years);
      if ('invalid' in result) {
        const id = layout.fields.id?.[0] ? row.fields[layout.fields.id[0].index]?.trim() : undefined;
        yield { kind: 'invalid', reason: result.invalid, location, ...(id ? { participantId: id } : {}) };
        continue;
      }
      yield { kind: 'participant', participant: result.participant, location };
      for (const message of result.warnings) yield { kind: 'warning', message, location };
    }
  }
}

/**
 * `check`: opens one export and reads its header only, as a run would (readable, a known encoding, the columns
 * the id rules need), and closes it; throws what the run would throw. Says which columns it recognised.
 */
export async function checkGrowsurfExport(path: string, options: Pick<GrowsurfCsvOptions, 'config' | 'encoding' | 'delimiter'>): Promise<{ encoding: string; recognised: string[] }> {
  const csv = await openCsv(path, new InputFiles(options.encoding, options.delimiter));
  try {
    const layout = resolveLayout(csv, options.config);
    const recognised = Object.values(layout.fields).flatMap((matches) => matches.map((match) => match.header));
    return { encoding: csv.encoding.encoding, recognised };
  } finally {
    await closeCsv(csv);
  }
}

function resolveLayout(csv: CsvFile, config: GrowsurfCsvOptions['config']): ColumnLayout {
  const { header, path } = csv;
  const cello = celloExportOf(header);
  if (cello) {
    throw new UsageError(`${path} is Cello's ${cello} export, not a GrowSurf participant export: read it with --source cello.`, {
      hint: 'Give the Cello exports together, e.g. --source cello --file conv_signups.csv event_details_aggregates-all.csv, or their folder.',
    });
  }
  const normalized = header.map(normalizeHeader);
  const claimed = new Set<number>();
  const layout: ColumnLayout = { fields: {}, metadata: [] };
  const metadataRenames = new Map<number, string>();
  // A missing column is most often a file split on the wrong delimiter: say so first, else how to map one.
  const hint = (fix: string): string => otherDelimiterHint(csv) ?? fix;

  // The config's column map comes first: it is the user telling us what a column is.
  for (const [field, headerName] of Object.entries(config.columns)) {
    const index = normalized.indexOf(normalizeHeader(headerName));
    if (index === -1) {
      throw new UsageError(`The config maps "${field}" to column "${headerName}", which ${path} does not have; ${describeColumns(csv)}.`, {
        hint: hint(`Change "${field}" in the config's "columns" to one of those headers.`),
      });
    }
    if (field.startsWith('metadata.')) {
      metadataRenames.set(index, field.slice('metadata.'.length));
    } else if (field in GROWSURF_CSV_FIELDS) {
      layout.fields[field as GrowsurfCsvField] = [{ index, header: header[index]! }];
    } else {
      throw new UsageError(
        `The config's "columns" names an unknown field "${field}": use one of ${Object.keys(GROWSURF_CSV_FIELDS).join(', ')}, or metadata.<key> for any other column.`,
      );
    }
    claimed.add(index);
  }
  for (const [field, aliases] of Object.entries(GROWSURF_CSV_FIELDS) as [GrowsurfCsvField, readonly string[]][]) {
    if (layout.fields[field]) continue;
    const matches: { index: number; header: string }[] = [];
    for (const alias of aliases) {
      const index = normalized.indexOf(normalizeHeader(alias));
      if (index !== -1 && !claimed.has(index)) {
        matches.push({ index, header: header[index]! });
        claimed.add(index);
      }
    }
    if (matches.length > 0) layout.fields[field] = matches;
  }
  for (const field of requiredFields(config.identity)) {
    if (!layout.fields[field]) {
      const aliases = GROWSURF_CSV_FIELDS[field].map((a) => `"${a}"`).join(', ');
      const other = field === 'email' ? 'id' : 'email';
      throw new DataError(`${path} has no ${field === 'email' ? 'email' : 'participant id'} column (looked for ${aliases}); ${describeColumns(csv)}.`, {
        hint: hint(`Map yours with "columns": {"${field}": "<header>"} in referral-sync.config.json, or use --user-id ${other}.`),
      });
    }
  }
  if (!layout.fields.id && !layout.fields.email) {
    const aliases = [...GROWSURF_CSV_FIELDS.id, ...GROWSURF_CSV_FIELDS.email].map((a) => `"${a}"`).join(', ');
    throw new DataError(`${path} has neither an id nor an email column (looked for ${aliases}); ${describeColumns(csv)}.`, {
      hint: hint('Map one with "columns": {"id": "<header>"} (or "email") in referral-sync.config.json.'),
    });
  }
  header.forEach((name, index) => {
    if (claimed.has(index) && !metadataRenames.has(index)) return;
    if (DROPPED.has(normalized[index]!) || name === '') return;
    layout.metadata.push({ index, key: metadataRenames.get(index) ?? name });
  });
  if (config.identity.kind === 'metadata') {
    const key = config.identity.key;
    if (!layout.metadata.some((m) => m.key === key)) {
      throw new DataError(`${path} has no column for metadata "${key}", which is the user id (--user-id metadata.${key}); ${describeColumns(csv)}.`, {
        hint: hint(`Map it with "columns": {"metadata.${key}": "<header>"} in referral-sync.config.json, or choose another --user-id.`),
      });
    }
  }
  const group = config.group?.id;
  if (group?.kind === 'metadata' && !layout.metadata.some((m) => looseKey(m.key) === looseKey(group.key))) {
    throw new DataError(`${path} has no column for metadata "${group.key}", which holds the account id (--group-id metadata.${group.key}); ${describeColumns(csv)}.`, {
      hint: hint(`Map it with "columns": {"metadata.${group.key}": "<header>"} in referral-sync.config.json, or choose another --group-id.`),
    });
  }
  return layout;
}

/** Metadata keys compare as account and trait rules read them: without case, spaces or punctuation. */
function looseKey(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}

function requiredFields(rule: IdentityRule): GrowsurfCsvField[] {
  if (rule.kind === 'email') return ['email'];
  if (rule.kind === 'id') return ['id'];
  return [];
}

/** Turns one row into a participant (with warnings about it), or says why it cannot be one. */
function toParticipant(
  fields: string[],
  layout: ColumnLayout,
  programId: string,
  years: YearRange,
): { participant: Participant; warnings: string[] } | { invalid: string } {
  const text = (field: GrowsurfCsvField): string | undefined => {
    for (const column of layout.fields[field] ?? []) {
      const value = fields[column.index]?.trim();
      if (value) return value;
    }
    return undefined;
  };
  const columnOf = (field: GrowsurfCsvField): string => layout.fields[field]?.[0]?.header ?? field;

  const rawEmail = text('email');
  if (rawEmail !== undefined && !looksLikeEmail(rawEmail)) {
    return { invalid: `"${rawEmail}" in column "${columnOf('email')}" is not an email address` };
  }
  const email = rawEmail === undefined ? undefined : normalizeEmail(rawEmail);
  const id = text('id') ?? email;
  if (id === undefined) return { invalid: 'no participant id and no email' };

  const warnings: string[] = [];
  const dates: Partial<Record<'createdAt' | 'convertedAt', Date>> = {};
  for (const field of ['createdAt', 'convertedAt'] as const) {
    const raw = text(field);
    if (raw === undefined) continue;
    const reading = readDate(raw, years);
    const where = `column "${columnOf(field)}"`;
    if (!reading.ok) return { invalid: describeDateProblem(reading, raw, where) };
    if (reading.unusualYear) warnings.push(describeUnusualYear(reading.date, raw, where, years));
    dates[field] = reading.date;
  }
  const counts: Partial<Record<'referralCount' | 'pendingCount', number>> = {};
  for (const field of ['referralCount', 'pendingCount'] as const) {
    const raw = text(field);
    if (raw === undefined) continue;
    const count = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(count)) {
      return { invalid: `"${raw}" in column "${columnOf(field)}" is not a whole number` };
    }
    counts[field] = count;
  }
  const status = normalizeReferralStatus(text('referralStatus'));
  const referrer = text('referrerId');
  const code = text('referralCode')?.split(/[,;\s]+/)[0];

  const metadata: Record<string, MetadataValue> = {};
  for (const column of layout.metadata) {
    const value = fields[column.index]?.trim();
    if (value) metadata[column.key] = value;
  }

  const participant: Participant = { source: 'growsurf', programId, id, rewards: [], metadata };
  if (email !== undefined) participant.email = email;
  assign(participant, 'firstName', text('firstName'));
  assign(participant, 'lastName', text('lastName'));
  assign(participant, 'createdAt', dates.createdAt);
  assign(participant, 'convertedAt', dates.convertedAt);
  assign(participant, 'referralCount', counts.referralCount);
  assign(participant, 'pendingCount', counts.pendingCount);
  assign(participant, 'referrerId', referrer);
  assign(participant, 'referralStatus', status.status);
  assign(participant, 'referralStatusRaw', status.raw);
  assign(participant, 'referralLink', text('referralLink'));
  // GrowSurf has no referralCode field: the first vanity key, else the participant id, is the code.
  participant.referralCode = code ?? text('id') ?? undefined;
  if (participant.referralCode === undefined) delete participant.referralCode;
  assign(participant, 'joinedVia', text('joinedVia'));
  return { participant, warnings };
}

function assign<K extends keyof Participant>(target: Participant, key: K, value: Participant[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}
