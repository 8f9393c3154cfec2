import { UnavailableError, UsageError } from '../errors.js';
import { ENDPOINT_SETTINGS, HttpError, unreachableHint } from '../http/errors.js';
import { header, NOT_JSON, type HttpClient, type ResponseHeaders, type ServiceHooks } from '../http/client.js';
import type { SlidingWindowLimiter } from '../http/window-limiter.js';
import { describeDateProblem, describeUnusualYear, plausibleYears, readDate, readEpochMs, type DateReading, type YearRange } from '../model/dates.js';
import { normalizeEmail } from '../model/identity.js';
import { normalizeReferralStatus, type MetadataValue, type Participant, type Reward, type SourceRecord } from '../model/participant.js';
import { ReadMeter } from './read-meter.js';
import type { Source } from './source.js';

/** GrowSurf REST API v2 shapes (research/growsurf.md §2–§4), as tolerant as the research says to be. */
interface GsReward {
  id: string;
  rewardId?: string;
  status?: string;
  isReferrer?: boolean;
  approvedAt?: number | string | null;
  fulfilledAt?: number | string | null;
}

export interface GsParticipant {
  id: string;
  email?: string;
  firstName?: string | null;
  lastName?: string | null;
  createdAt?: number | string;
  shareUrl?: string;
  vanityKeys?: string[];
  referralCount?: number;
  leadCount?: number;
  referralSource?: string;
  referralStatus?: string;
  referredBy?: string;
  referrer?: { id?: string; email?: string; metadata?: Record<string, unknown> } | null;
  rewards?: GsReward[];
  metadata?: Record<string, unknown>;
  [extra: string]: unknown;
}

interface GsReferral {
  id: string;
  referralStatus?: string;
  referredBy?: string;
  updatedAt?: number;
}

export interface GsCampaign {
  id: string;
  name?: string;
  participantCount?: number;
}

export const GROWSURF_API_URL = 'https://api.growsurf.com/v2';
export const PAGE_SIZE = 100;

/** GrowSurf's rate-limit headers: how long to wait, and the limits it announces (research/growsurf.md §5.1). */
export const growsurfHooks: ServiceHooks = {
  retryAfterMs(headers: ResponseHeaders): number | undefined {
    const waits = ['Hour', 'Minute', 'Second']
      .map((policy) => Number(header(headers, `growsurf-retry-after-${policy.toLowerCase()}-milliseconds`)))
      .filter((ms) => Number.isFinite(ms) && ms > 0);
    return waits.length > 0 ? Math.max(...waits) : undefined;
  },
  observe(headers: ResponseHeaders, limiter: SlidingWindowLimiter): void {
    // Adopt what GrowSurf announces, with a margin: its documented limits differ between copies of the docs.
    for (const [policy, name] of [['minute', 'minute'], ['hour', 'hour']] as const) {
      const limit = Number(header(headers, `growsurf-ratelimit-${policy}-limit`));
      if (Number.isFinite(limit) && limit > 0) {
        const adopted = Math.max(1, Math.floor(limit * 0.95));
        if (limiter.limitOf(name) !== adopted) limiter.setLimit(name, adopted);
      }
    }
  },
  describeLimit(body: unknown): string | undefined {
    const policy = (body as { policyName?: string } | undefined)?.policyName;
    return policy ? `${policy.toLowerCase()} policy` : undefined;
  },
};

export interface GrowsurfApiOptions {
  client: HttpClient;
  campaignId: string;
  /**
   * Quick mode (`sync --quick`): only referral rows updated at or after this time (epoch ms, the safety margin
   * already taken off), and the participants and referrers they name.
   */
  changedSince?: number;
  /** For the plausible-year check of dates (default: now). */
  now?: Date;
}

/**
 * The GrowSurf API source: the campaign, every referral row (for conversion times), then every participant,
 * page by page, each page handed on before the next is fetched. A full scan costs one request per 100
 * participants plus one per 100 referrals. The API offers no "changed since" filter on participants, so
 * this scan is the source of truth (research/growsurf.md §8).
 */
export function growsurfApiSource(options: GrowsurfApiOptions): Source & { readonly requests: number } {
  const meter = new ReadMeter('participants');
  return {
    description:
      options.changedSince === undefined
        ? `GrowSurf API, campaign ${options.campaignId}`
        : `GrowSurf API, campaign ${options.campaignId}, referrals changed since ${new Date(options.changedSince).toISOString()}`,
    rereadable: false,
    partial: options.changedSince !== undefined,
    get requests() {
      return options.client.requests;
    },
    records: () => {
      meter.start('participants');
      return options.changedSince === undefined ? readCampaign(options, meter) : readChanges(options, options.changedSince, meter);
    },
    readProgress: () => meter.progress(),
  };
}

async function* readCampaign(options: GrowsurfApiOptions, meter: ReadMeter): AsyncGenerator<SourceRecord> {
  const { client, campaignId } = options;
  const base = `/campaign/${encodeURIComponent(campaignId)}`;
  const campaign = expectObject(await call(() => client.getJson<GsCampaign>(base), campaignId), base);
  // The campaign says how many participants there are: the progress total (research/growsurf.md §2.5).
  if (typeof campaign.participantCount === 'number') meter.setTotal(campaign.participantCount);
  const conversions = await conversionTimes(client, base, campaignId);
  const years = plausibleYears(options.now ?? new Date());

  const seen = new Set<string>();
  let pages = 0;
  let nextId: string | undefined;
  for (;;) {
    const page = await call(
      () => client.getJson<{ participants?: GsParticipant[]; nextId?: string | null }>(`${base}/participants`, { limit: PAGE_SIZE, nextId }),
      campaignId,
    );
    pages += 1;
    const participants = listIn<GsParticipant>(page, 'participants', `${base}/participants`);
    for (const raw of participants) {
      // The order is undocumented and a cursor may repeat a row: each participant counts once.
      if (!raw?.id || seen.has(raw.id)) continue;
      seen.add(raw.id);
      meter.add(1);
      yield* participantRecords(raw, campaignId, conversions.get(raw.id), years);
    }
    if (!page.nextId || participants.length === 0) break;
    nextId = page.nextId;
  }
  if (campaign.participantCount !== undefined && campaign.participantCount !== seen.size) {
    yield {
      kind: 'warning',
      message: `GrowSurf says campaign ${campaignId} has ${campaign.participantCount} participants, but ${pages} pages gave ${seen.size}; deleted or blocked participants may be counted differently.`,
    };
  }
}

/**
 * Quick mode: page referrals newest first down to `since`, then fetch each participant they name (the
 * referred friend and the referrer, whose counts moved). Direct signups and counter changes without a
 * referral event wait for the next full scan (research/growsurf.md §8).
 */
async function* readChanges(options: GrowsurfApiOptions, since: number, meter: ReadMeter): AsyncGenerator<SourceRecord> {
  const { client, campaignId } = options;
  const base = `/campaign/${encodeURIComponent(campaignId)}`;
  expectObject(await call(() => client.getJson<GsCampaign>(base), campaignId), base);
  const years = plausibleYears(options.now ?? new Date());
  const conversions = new Map<string, number>();
  const touched = new Set<string>();
  let nextId: string | undefined;
  paging: for (;;) {
    const page = await call(
      () => client.getJson<{ referrals?: GsReferral[]; nextId?: string | null; more?: boolean }>(`${base}/referrals`, { sortBy: 'updatedAt', desc: true, limit: PAGE_SIZE, nextId }),
      campaignId,
    );
    const referrals = listIn<GsReferral>(page, 'referrals', `${base}/referrals`);
    for (const row of referrals) {
      if (typeof row.updatedAt === 'number' && row.updatedAt < since) break paging;
      // Invite rows name no participant yet (their email is masked); their referrer's counts did not move.
      if (row.referralStatus === 'INVITE_SENT') continue;
      touched.add(row.id);
      if (row.referredBy) touched.add(row.referredBy);
      if (row.referralStatus === 'CREDIT_AWARDED' && typeof row.updatedAt === 'number' && !conversions.has(row.id)) conversions.set(row.id, row.updatedAt);
    }
    if (!page.nextId || referrals.length === 0 || page.more === false) break;
    nextId = page.nextId;
  }
  // Only now is it known how many participants there are to fetch.
  meter.setTotal(touched.size);
  for (const id of touched) {
    let raw: GsParticipant;
    try {
      raw = await client.getJson<GsParticipant>(`${base}/participant/${encodeURIComponent(id)}`);
      meter.add(1);
    } catch (error) {
      // A participant deleted since its referral row was written: nothing to sync for it.
      if (error instanceof HttpError && error.status === 404) {
        meter.add(1);
        yield { kind: 'warning', message: `participant ${id} named by a referral row no longer exists in GrowSurf` };
        continue;
      }
      throw explain(error, campaignId);
    }
    yield* participantRecords(expectObject(raw, `${base}/participant/${id}`), campaignId, conversions.get(raw.id), years);
  }
}

/** `updatedAt` of each CREDIT_AWARDED referral row: the best-known conversion time (research/growsurf.md §4.1). */
async function conversionTimes(client: HttpClient, base: string, campaignId: string): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  let nextId: string | undefined;
  for (;;) {
    const page = await call(
      () => client.getJson<{ referrals?: GsReferral[]; nextId?: string | null; more?: boolean }>(`${base}/referrals`, { sortBy: 'updatedAt', limit: PAGE_SIZE, nextId }),
      campaignId,
    );
    const referrals = listIn<GsReferral>(page, 'referrals', `${base}/referrals`);
    for (const row of referrals) {
      if (row.referralStatus === 'CREDIT_AWARDED' && typeof row.updatedAt === 'number' && !times.has(row.id)) times.set(row.id, row.updatedAt);
    }
    if (!page.nextId || referrals.length === 0 || page.more === false) break;
    nextId = page.nextId;
  }
  return times;
}

/** Runs a campaign-level request, explaining its failure. */
async function call<T>(request: () => Promise<T>, campaignId: string): Promise<T> {
  try {
    return await request();
  } catch (error) {
    throw explain(error, campaignId);
  }
}

/**
 * An answer that is JSON but not what the API documents (no list where a page has one) is treated like one that
 * is not JSON: it did not come from the GrowSurf API (a proxy, a wrong GROWSURF_API_URL), and read as an empty
 * page it would silently end the listing. Exit 69, like an unreachable service: nothing was read or sent.
 */
function notTheApi(what: string): UnavailableError {
  return new UnavailableError(`${what}; it does not look like an answer from the GrowSurf API.`, { hint: NOT_THE_API_HINT });
}

const NOT_THE_API_HINT = 'Nothing was sent. Check GROWSURF_API_URL (default https://api.growsurf.com/v2) and any proxy between here and GrowSurf.';

function listIn<T>(page: unknown, key: 'participants' | 'referrals', path: string): T[] {
  const list = typeof page === 'object' && page !== null ? (page as Record<string, unknown>)[key] : undefined;
  if (Array.isArray(list)) return list as T[];
  throw notTheApi(`GrowSurf's answer to GET ${path} has no "${key}" list`);
}

function expectObject<T>(value: T, path: string): T {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value;
  throw notTheApi(`GrowSurf's answer to GET ${path} is not an object`);
}

/** GrowSurf's errors as the sentences and exit codes of DESIGN.md §9 (404 here: the campaign). */
function explain(error: unknown, campaignId: string): unknown {
  if (!(error instanceof HttpError)) return error;
  const said = error.message.replace(/\.$/, '');
  // DESIGN.md §9: the answer is not from the GrowSurf API, which is as good as unreachable (69), not bad data (65).
  if (error.details.code === NOT_JSON) return new UnavailableError(`${said} (GET ${error.details.path ?? ''}).`, { hint: NOT_THE_API_HINT });
  if (error.status === 404) {
    return new UsageError(`GrowSurf has no campaign "${campaignId}" (404: ${said}).`, {
      hint: 'Check --campaign / GROWSURF_CAMPAIGN_ID: the program id is in the dashboard URL and under Program → Settings.',
    });
  }
  if (error.status === 401 || error.status === 403) {
    const paid = /paid plan/i.test(said);
    return new UnavailableError(`GrowSurf refused the request (${error.status}: ${said}).`, {
      hint: paid
        ? 'The GrowSurf REST API needs a paid plan; export the participants to CSV and use --file instead.'
        : 'Check GROWSURF_API_KEY (Settings → API Keys) and that the key\'s account has access to this campaign.',
    });
  }
  if (error.status === undefined) {
    return new UnavailableError(`${said}.`, { hint: `Nothing was sent. ${unreachableHint(ENDPOINT_SETTINGS.growsurf)}` });
  }
  return new UnavailableError(`GrowSurf answered ${error.status}: ${said}.`, { hint: 'Nothing was sent; run again later.' });
}

/** One participant from the API as records: the participant and any warnings about it, or why it is invalid. */
function participantRecords(raw: GsParticipant, campaignId: string, convertedAtMs: number | undefined, years: YearRange): SourceRecord[] {
  const result = normalizeGrowsurfParticipant(raw, campaignId, convertedAtMs, years);
  if ('invalid' in result) return [{ kind: 'invalid', reason: `GrowSurf participant ${raw.id}: ${result.invalid}`, participantId: raw.id }];
  return [
    { kind: 'participant', participant: result.participant },
    ...result.warnings.map((message): SourceRecord => ({ kind: 'warning', message: `GrowSurf participant ${raw.id}: ${message}` })),
  ];
}

export type NormalizedParticipant = { participant: Participant; warnings: string[] } | { invalid: string };

/**
 * DESIGN.md §3 for GrowSurf: referredBy ?? referrer.id, vanityKeys[0] ?? id, unknown enums kept, PII dropped.
 * Times follow the rule of every source (model/dates.ts): a time that is not one makes the participant
 * invalid; one in an unusual year is kept with a warning. Text GrowSurf sent as invalid UTF-8 is never sent on.
 */
export function normalizeGrowsurfParticipant(raw: GsParticipant, programId: string, convertedAtMs?: number, years: YearRange = plausibleYears(new Date())): NormalizedParticipant {
  const warnings: string[] = [];
  const time = (value: unknown, field: string): Date | undefined | { invalid: string } => {
    if (value === undefined || value === null || value === '') return undefined;
    const reading: DateReading =
      typeof value === 'number' ? readEpochMs(value, years) : typeof value === 'string' ? readDate(value, years) : { ok: false, problem: 'unparseable' };
    if (!reading.ok) return { invalid: describeDateProblem(reading, String(typeof value === 'object' ? JSON.stringify(value) : value), `field "${field}"`) };
    if (reading.unusualYear) warnings.push(describeUnusualYear(reading.date, String(value), `field "${field}"`, years));
    return reading.date;
  };
  const createdAt = time(raw.createdAt, 'createdAt');
  if (createdAt && 'invalid' in createdAt) return createdAt;
  const rewards: Reward[] = [];
  for (const [index, rawReward] of (raw.rewards ?? []).entries()) {
    const field = rawReward.approvedAt !== undefined && rawReward.approvedAt !== null ? 'approvedAt' : 'fulfilledAt';
    const at = time(rawReward[field], `rewards[${index}].${field}`);
    if (at && 'invalid' in at) return at;
    rewards.push(normalizeReward(rawReward, at));
  }
  const participant: Participant = {
    source: 'growsurf',
    programId,
    id: raw.id,
    rewards,
    metadata: normalizeMetadata(raw.metadata),
  };
  if (raw.email) participant.email = normalizeEmail(raw.email);
  if (raw.firstName) participant.firstName = raw.firstName;
  if (raw.lastName) participant.lastName = raw.lastName;
  if (createdAt) participant.createdAt = createdAt;
  participant.referralCode = raw.vanityKeys?.[0] ?? raw.id;
  if (raw.shareUrl) participant.referralLink = raw.shareUrl;
  const referrerId = raw.referredBy ?? raw.referrer?.id ?? undefined;
  if (referrerId) {
    participant.referrerId = referrerId;
    if (raw.referrer?.id) {
      participant.referrerProfile = { id: raw.referrer.id, metadata: normalizeMetadata(raw.referrer.metadata) };
      if (raw.referrer.email) participant.referrerProfile.email = normalizeEmail(raw.referrer.email);
    }
  }
  const status = normalizeReferralStatus(raw.referralStatus);
  if (status.status) participant.referralStatus = status.status;
  if (status.raw) participant.referralStatusRaw = status.raw;
  if (participant.referralStatus === 'converted' && convertedAtMs !== undefined) {
    const convertedAt = time(convertedAtMs, 'updatedAt of its referral row');
    if (convertedAt && 'invalid' in convertedAt) return convertedAt;
    if (convertedAt) participant.convertedAt = convertedAt;
  }
  if (typeof raw.referralCount === 'number') participant.referralCount = raw.referralCount;
  else if (typeof raw.referralCount === 'string' && /^\d+$/.test(raw.referralCount)) participant.referralCount = Number(raw.referralCount);
  if (typeof raw.leadCount === 'number') participant.pendingCount = raw.leadCount;
  if (raw.referralSource) participant.joinedVia = raw.referralSource;
  if (JSON.stringify(participant).includes('\uFFFD')) {
    return { invalid: 'GrowSurf sent text that is not valid UTF-8 (it reads as U+FFFD); the participant is not sent' };
  }
  return { participant, warnings };
}

function normalizeReward(raw: GsReward, at: Date | undefined): Reward {
  const reward: Reward = { id: raw.id, isReferrer: raw.isReferrer === true, status: raw.status ?? 'UNKNOWN' };
  if (raw.rewardId) reward.configId = raw.rewardId;
  if (at) reward.at = at;
  return reward;
}

/** Metadata is a shallow map of strings and numbers; anything nested is kept as JSON text. */
function normalizeMetadata(raw: Record<string, unknown> | undefined): Record<string, MetadataValue> {
  const out: Record<string, MetadataValue> = {};
  for (const [key, value] of Object.entries(raw ?? {})) {
    if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') out[key] = value;
    else if (value !== undefined) out[key] = JSON.stringify(value);
  }
  return out;
}
