import { existsSync } from 'node:fs';
import type { Clock } from '../../apply/limiter.js';
import type { AccountPlanning } from '../../plan/context.js';
import type { StateReader } from '../../state/store.js';
import { DEFAULT_OBJECT_TYPE_ID, defaultConfig, parseDestinations, parseIdentityRule, type Config } from '../../config/config.js';
import { DEFAULT_CONFIG_FILE, DEFAULT_STATE_PATH, type Destination } from '../../config/defaults.js';
import { loadConfigFile } from '../../config/load.js';
import { parseDuration } from './duration.js';
import { UsageError } from '../../errors.js';
import { secretFingerprint } from '../../model/ids.js';
import { delimiterFromFlag, type Delimiter } from '../../sources/csv/reader.js';
import { ENCODING_CHOICES, encodingFromFlag, type EncodingName } from '../../sources/csv/encoding.js';
import { growsurfCsvSource } from '../../sources/growsurf/csv.js';
import type { Source } from '../../sources/source.js';
import { parseRates } from './destinations.js';
import { assertStateLocation, openState } from '../../state/open.js';
import { createCelloSource } from './cello.js';
import { createGrowsurfSource } from './growsurf.js';
import type { LogFormat, Output } from '../output/output.js';
import type { Env } from './env.js';

/** Flags shared by every command (DESIGN.md §9). Commander fills them; env fills what flags leave out. */
export interface CommonFlags {
  state?: string;
  config?: string;
  userId?: string;
  groupId?: string;
  to?: string;
  logFormat?: string;
  progress?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  syncNulls?: boolean;
}

export interface SourceFlags {
  source?: string;
  campaign?: string;
  file?: string[];
  /** --encoding: how to decode the files, instead of detecting it per file. */
  encoding?: string;
  /** --delimiter: how the files' fields are separated, instead of detecting it from each header line. */
  delimiter?: string;
  format?: string;
  maxWait?: string;
  rate?: string;
  /** `--rate-mode adaptive|fixed`. */
  rateMode?: string;
  /** sync --quick: only what GrowSurf's referral list says changed since the last successful run. */
  quick?: boolean;
  /** --source cello: look codes and referrers up through Cello's API. */
  enrich?: boolean;
  /** Confirms that the program id differs from the one the state delivered on purpose. */
  newProgram?: boolean;
  /** Confirms that destination credentials other than the ones the state delivered with are another workspace. */
  newDestination?: boolean;
}

export interface CommonSettings {
  config: Config;
  configFile: string | undefined;
  statePath: string;
  destinations: Destination[];
  logFormat: LogFormat;
}

export function resolveCommon(flags: CommonFlags, env: Env, cwd: string): CommonSettings {
  const logFormat = flags.logFormat ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw new UsageError(`--log-format must be "text" or "json", not "${logFormat}".`);
  }
  const configFile = flags.config ?? env.REFERRAL_SYNC_CONFIG ?? (existsSync(`${cwd}/${DEFAULT_CONFIG_FILE}`) ? DEFAULT_CONFIG_FILE : undefined);
  if (configFile !== undefined && !existsSync(configFile)) {
    throw new UsageError(`Config file not found: ${configFile}`, { hint: 'Check --config or REFERRAL_SYNC_CONFIG.' });
  }
  const config = configFile === undefined ? defaultConfig() : loadConfigFile(configFile);
  if (flags.userId !== undefined) {
    const rule = parseIdentityRule(flags.userId);
    if (!rule) throw new UsageError(`--user-id must be "email", "id" or "metadata.<key>", not "${flags.userId}".`);
    config.identity = rule;
    config.identityExplicit = true;
  }
  if (flags.groupId !== undefined) {
    const rule = parseIdentityRule(flags.groupId);
    if (!rule) throw new UsageError(`--group-id must be "metadata.<key>", "id" or "email" (the field holding the account id), not "${flags.groupId}".`);
    config.group = { objectTypeId: DEFAULT_OBJECT_TYPE_ID, ...config.group, id: rule };
  }
  if (flags.syncNulls) config.syncNulls = true;
  let destinations = config.destinations;
  if (flags.to !== undefined) {
    const parsed = parseDestinations(flags.to);
    if (parsed.unknown.length > 0 || parsed.destinations.length === 0) {
      throw new UsageError(`--to takes segment, customerio or both (comma-separated), not "${flags.to}".`);
    }
    destinations = parsed.destinations;
  }
  const statePath = flags.state ?? env.REFERRAL_SYNC_STATE ?? DEFAULT_STATE_PATH;
  assertStateLocation(statePath);
  return { config, configFile, statePath, destinations, logFormat };
}

export interface SourceSettings {
  source: Source;
  /** The `source` part of every key (growsurf for its API and its exports alike). */
  sourceKind: 'growsurf' | 'cello';
  programId: string;
  /** True when the program id was not given and defaulted: ids then will not match a later API sync. */
  programIdDefaulted: boolean;
  /** Set for API sources: a successful run records where it started, for the next `--quick`. */
  watermarkSource?: string;
}

/** How far back `--quick` looks: GrowSurf caches /referrals for up to 5 minutes, so overlap by more. */
export const QUICK_SAFETY_MARGIN_MS = 10 * 60_000;

/** The source to read; with --quick, where the last successful sync left off (read from the state). */
export async function resolveSource(flags: SourceFlags, env: Env, config: Config, output: Output, statePath?: string, clock?: Clock): Promise<SourceSettings> {
  const files = flags.file ?? [];
  const kind = (flags.source ?? (files.length > 0 ? 'csv' : env.GROWSURF_API_KEY ? 'growsurf' : undefined))?.toLowerCase();
  if (kind === undefined) {
    throw new UsageError('No source given: pass --file <export.csv> (a GrowSurf participant export) or --source growsurf --campaign <id>.', {
      hint: 'For example: npx referral-sync diff --file export.csv --campaign <id>',
    });
  }
  const given = flags.campaign ?? env.GROWSURF_CAMPAIGN_ID;
  const campaign = given?.trim() || undefined;
  if (flags.quick && kind !== 'growsurf') throw new UsageError('--quick works only with --source growsurf (the API): drop it, since a file is always read whole.');
  const encoding = resolveEncoding(flags.encoding);
  // Checked whatever the source: a bad value is a usage error even where no source would wait.
  parseDuration(flags.maxWait, 0, '--max-wait');
  const delimiter = resolveDelimiter(flags.delimiter);
  // Checked for every command that takes it, diff included, although a file source never uses it.
  parseRates(flags.rate);
  if (kind === 'growsurf') {
    if (files.length > 0) throw new UsageError('--source growsurf reads the API; drop --file (or use --source csv for an export).');
    if (encoding) throw new UsageError('--encoding applies to --file exports; the GrowSurf API always answers in UTF-8, so drop --encoding.');
    if (delimiter) throw new UsageError('--delimiter applies to --file exports; the GrowSurf API answers in JSON, so drop --delimiter.');
    let changedSince: number | undefined;
    if (flags.quick && campaign && statePath) {
      const state = await openState(statePath, { mode: 'read' });
      let watermark: number | undefined;
      try {
        watermark = await state.watermark(campaign, 'growsurf');
      } finally {
        await state.close();
      }
      if (watermark === undefined) output.info('--quick: no earlier successful sync of this campaign to start from; reading everything this time.');
      else changedSince = watermark - QUICK_SAFETY_MARGIN_MS;
    }
    const source = createGrowsurfSource(campaign, {
      rate: parseRates(flags.rate).growsurf,
      env,
      output,
      ...(flags.maxWait ? { maxWait: flags.maxWait } : {}),
      ...(changedSince !== undefined ? { changedSince } : {}),
      clock,
    });
    return { source, sourceKind: 'growsurf', programId: campaign!, programIdDefaulted: false, watermarkSource: 'growsurf' };
  }
  if (kind !== 'csv' && kind !== 'cello') throw new UsageError(`--source must be csv, growsurf or cello, not "${flags.source}".`);
  const format = (flags.format ?? (kind === 'cello' ? 'cello' : 'growsurf')).toLowerCase();
  if (format !== 'growsurf' && format !== 'cello') throw new UsageError(`--format must be growsurf or cello, not "${flags.format}".`);
  if (flags.enrich && format !== 'cello') throw new UsageError('--enrich works only with Cello exports: add --source cello, or drop --enrich.');
  if (format === 'cello') {
    if (files.length === 0) throw new UsageError('--source cello needs --file with the Cello exports (conv_signups, event_details_aggregates-all/-daily) or their folder.');
    // Cello's productUserId is already the customer's own user id (DESIGN.md §4); exports carry no email.
    if (!config.identityExplicit) config.identity = { kind: 'id' };
    const programId = campaign ?? 'default';
    const source = createCelloSource({ files, programId, config, env, output, rateFlag: flags.rate, rateMode: flags.rateMode, enrich: flags.enrich === true, ...(encoding ? { encoding } : {}), ...(delimiter ? { delimiter } : {}), clock });
    return { source, sourceKind: 'cello', programId, programIdDefaulted: campaign === undefined };
  }
  if (files.length === 0) throw new UsageError('--source csv needs --file <path> (one or more exports).');
  const programId = campaign ?? 'default';
  return {
    source: growsurfCsvSource({ files, programId, config, ...(encoding ? { encoding } : {}), ...(delimiter ? { delimiter } : {}) }),
    sourceKind: 'growsurf',
    programId,
    programIdDefaulted: campaign === undefined,
  };
}

function resolveDelimiter(flag: string | undefined): Delimiter | undefined {
  if (flag === undefined) return undefined;
  const delimiter = delimiterFromFlag(flag);
  if (!delimiter) throw new UsageError(`--delimiter must be comma, semicolon or tab, not "${flag}".`, { hint: 'Leave it out to have it detected from each file\'s header line.' });
  return delimiter;
}

function resolveEncoding(flag: string | undefined): EncodingName | undefined {
  if (flag === undefined) return undefined;
  const encoding = encodingFromFlag(flag);
  if (!encoding) throw new UsageError(`--encoding must be one of ${ENCODING_CHOICES.join(', ')}, not "${flag}".`, { hint: 'Leave it out to have each file\'s encoding detected.' });
  return encoding;
}

/**
 * Per-destination key namespaces: the config namespace plus a fingerprint of the destination's credentials.
 * Segment dedupes messageIds across all its customers, so ids must differ between workspaces (DESIGN.md §6).
 */
export function destinationNamespaces(config: Config, env: Env): Record<Destination, string> {
  const segmentKey = env.SEGMENT_WRITE_KEY;
  const siteId = env.CUSTOMERIO_SITE_ID ?? env.CIO_SITE_ID;
  return {
    segment: `${config.namespace}/segment/${segmentKey ? secretFingerprint(segmentKey) : '-'}`,
    customerio: `${config.namespace}/customerio/${siteId ? secretFingerprint(siteId) : '-'}`,
  };
}

/**
 * The plan run's accounts option (`--group-id`, DESIGN.md §11): empty without a group rule. A partial read
 * (--quick) sends memberships but no account traits; Customer.io objects need its Track API v2.
 */
export async function accountPlanning(
  config: Config,
  source: Source,
  customerioApi: string | undefined,
  state: Pick<StateReader, 'summary'>,
  pilot = false,
): Promise<{ accounts?: AccountPlanning }> {
  if (config.group === undefined) return {};
  // The accounts the state holds, so that those this run no longer meets are reported.
  const known = Object.fromEntries((await state.summary(0)).accounts.map((row) => [row.destination, row.count]));
  // A pilot sends a few people: traits computed over them alone would be wrong (the full run sends them).
  return { accounts: { objectTypeId: config.group.objectTypeId, traits: source.partial !== true && !pilot, ...(pilot ? { pilot } : {}), customerioObjects: (customerioApi ?? 'v2').toLowerCase() !== 'v1', known } };
}

/**
 * The commands that plan (diff, sync, backfill) need an account id rule once the config turns accounts on; the
 * others (status, retry, check, unlock) read the same config and do not.
 */
export function assertAccountRule(config: Config): void {
  if (config.group !== undefined && config.group.id === undefined) {
    throw new UsageError(`The config's "group" names no account id rule.`, { hint: 'Add "id": "metadata.<key>" to "group" in the config, or pass --group-id metadata.<key>.' });
  }
}
