import { UnavailableError, UsageError } from '../../errors.js';
import { ENDPOINT_SETTINGS, HttpError, unreachableHint } from '../../http/errors.js';
import { header, NOT_JSON, RATE_LIMIT_REPEATED, REDIRECT, type HttpClient, type ResponseHeaders, type ServiceHooks } from '../../http/client.js';
import type { SlidingWindowLimiter } from '../../http/window-limiter.js';
import { describeDateProblem, describeUnusualYear, plausibleYears, readDate, readEpochMs, type DateReading, type YearRange } from '../../model/dates.js';
import { normalizeEmail } from '../../model/identity.js';
import { normalizeReferralStatus, type MetadataValue, type Participant, type Reward, type SourceRecord } from '../../model/participant.js';
import { cursorPages } from '../paging.js';
import { ReadMeter } from '../read-meter.js';
import type { Source } from '../source.js';
import { describeValue, isObject } from '../../http/json-shape.js';

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
  /** Email invites sent (research/growsurf.md §2.5): with the participants, the referral rows there can be. */
  inviteCount?: number;
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

/**
 * `check`: the cheapest request a run makes first, GET /campaign/:id. It proves the key (401/403 name
 * GROWSURF_API_KEY, or the paid plan) and the campaign (404 names --campaign); throws what a run would.
 */
export async function checkGrowsurfCampaign(client: HttpClient, campaignId: string): Promise<GsCampaign> {
  const base = `/campaign/${encodeURIComponent(campaignId)}`;
  return decodeCampaign(await call(() => client.getJson<unknown>(base), campaignId), base);
}

async function* readCampaign(options: GrowsurfApiOptions, meter: ReadMeter): AsyncGenerator<SourceRecord> {
  const { client, campaignId } = options;
  const base = `/campaign/${encodeURIComponent(campaignId)}`;
  const campaign = decodeCampaign(await call(() => client.getJson<unknown>(base), campaignId), base);
  // The campaign says how many participants there are: the progress total (research/growsurf.md §2.5).
  if (campaign.participantCount !== undefined) meter.setTotal(campaign.participantCount);
  const conversions = await conversionTimes(client, campaignId, campaign);
  const years = plausibleYears(options.now ?? new Date());

  let read = 0;
  let pages = 0;
  for await (const participants of listing(client, campaignId, 'participants', {}, participantPageCap(campaign))) {
    pages += 1;
    for (const raw of participants) {
      meter.add(1);
      read += 1;
      yield* participantRecords(raw, campaignId, conversions, years, `an entry of page ${pages}`);
    }
  }
  if (campaign.participantCount !== undefined && campaign.participantCount !== read) {
    yield {
      kind: 'warning',
      message: `GrowSurf says campaign ${campaignId} has ${campaign.participantCount} participants, but ${pages} pages gave ${read}; deleted or blocked participants may be counted differently.`,
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
  const campaign = decodeCampaign(await call(() => client.getJson<unknown>(base), campaignId), base);
  const years = plausibleYears(options.now ?? new Date());
  const conversions = new Map<string, number>();
  const touched = new Set<string>();
  paging: for await (const referrals of listing(client, campaignId, 'referrals', { sortBy: 'updatedAt', desc: true }, referralPageCap(campaign))) {
    for (const row of referrals.map(referralRow)) {
      if (row === undefined) continue;
      if (row.updatedAt !== undefined && row.updatedAt < since) break paging;
      // Invite rows name no participant yet (their email is masked); their referrer's counts did not move.
      if (row.referralStatus === 'INVITE_SENT') continue;
      touched.add(row.id);
      if (row.referredBy) touched.add(row.referredBy);
      if (row.referralStatus === 'CREDIT_AWARDED' && row.updatedAt !== undefined && !conversions.has(row.id)) conversions.set(row.id, row.updatedAt);
    }
  }
  // Only now is it known how many participants there are to fetch.
  meter.setTotal(touched.size);
  for (const id of touched) {
    const path = `${base}/participant/${encodeURIComponent(id)}`;
    let raw: unknown;
    try {
      raw = await client.getJson<unknown>(path);
      meter.add(1);
    } catch (error) {
      // A participant deleted since its referral row was written: nothing to sync for it. Only GrowSurf's own
      // (JSON) 404 says so: a proxy's 404 page says the URL is wrong, and would turn every participant into this.
      if (error instanceof HttpError && error.status === 404 && error.details.json === true) {
        meter.add(1);
        yield { kind: 'warning', message: `participant ${id} named by a referral row no longer exists in GrowSurf` };
        continue;
      }
      throw explain(error, campaignId);
    }
    yield* participantRecords(decodeParticipant(raw, path), campaignId, conversions, years, `participant ${id}`);
  }
}

/** `updatedAt` of each CREDIT_AWARDED referral row: the best-known conversion time (research/growsurf.md §4.1). */
async function conversionTimes(client: HttpClient, campaignId: string, campaign: GsCampaign): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  for await (const referrals of listing(client, campaignId, 'referrals', { sortBy: 'updatedAt' }, referralPageCap(campaign))) {
    for (const row of referrals.map(referralRow)) {
      if (row?.referralStatus === 'CREDIT_AWARDED' && row.updatedAt !== undefined && !times.has(row.id)) times.set(row.id, row.updatedAt);
    }
  }
  return times;
}

/**
 * Pages at most in a listing whose size nothing announces (GrowSurf's referrals without an invite count): 20
 * million rows at 100 a page. A listing that runs into it is inventing rows (DESIGN.md §8: every loop bounded).
 */
export const MAX_PAGES = 200_000;

/**
 * The pages the participants listing may take: twice what the campaign's participant count fills (people join
 * while it is read, and pages may come back short), plus 10, and never more than MAX_PAGES.
 */
export function participantPageCap(campaign: GsCampaign): { maxPages: number; reason: string } {
  if (campaign.participantCount === undefined) return { maxPages: MAX_PAGES, reason: `the most referral-sync reads; campaign ${campaign.id} reports no participant count` };
  const maxPages = Math.min(MAX_PAGES, Math.ceil((2 * campaign.participantCount) / PAGE_SIZE) + 10);
  return { maxPages, reason: `twice what campaign ${campaign.id}'s ${campaign.participantCount} participants fill, plus 10` };
}

/** The referral rows are the referred participants and the invites: bounded like participants when both are counted. */
function referralPageCap(campaign: GsCampaign): { maxPages: number; reason: string } {
  if (campaign.participantCount === undefined || campaign.inviteCount === undefined) {
    return { maxPages: MAX_PAGES, reason: `the most referral-sync reads; campaign ${campaign.id} reports no participant or invite count` };
  }
  const rows = campaign.participantCount + campaign.inviteCount;
  const maxPages = Math.min(MAX_PAGES, Math.ceil((2 * rows) / PAGE_SIZE) + 10);
  return { maxPages, reason: `twice what campaign ${campaign.id}'s ${campaign.participantCount} participants and ${campaign.inviteCount} invites fill, plus 10` };
}

const PAGING_HINT =
  'GrowSurf\'s API is misbehaving; run again later. If it persists, export the participants to CSV (GrowSurf → Participants → Export) and use --file, and tell GrowSurf support.';

/** GrowSurf's `nextId` paging of one listing (research/growsurf.md §2.1), with the bounds of cursorPages. */
function listing(
  client: HttpClient,
  campaignId: string,
  key: 'participants' | 'referrals',
  query: Record<string, string | boolean>,
  cap: { maxPages: number; reason: string },
): AsyncGenerator<unknown[]> {
  const path = `/campaign/${encodeURIComponent(campaignId)}/${key}`;
  return cursorPages<unknown>({
    service: 'GrowSurf',
    items: key === 'participants' ? 'participants' : 'referral rows',
    cursorName: 'nextId',
    maxPages: cap.maxPages,
    maxPagesReason: cap.reason,
    hint: PAGING_HINT,
    fetch: async (nextId) => {
      const page = decodePage(await call(() => client.getJson<unknown>(path, { ...query, limit: PAGE_SIZE, nextId }), campaignId), key, path);
      // `more: false` (the referrals listing) ends it as surely as a missing nextId.
      return { items: page.items, next: page.more === false ? undefined : page.nextId };
    },
    idOf: (item) => idOf(item),
  });
}

/** Runs a campaign-level request, explaining its failure. */
async function call<T>(request: () => Promise<T>, campaignId: string): Promise<T> {
  try {
    return await request();
  } catch (error) {
    throw explain(error, campaignId);
  }
}

// GrowSurf's answers, checked. Every shape the source relies on is checked here, against research/growsurf.md:
// an answer that is JSON but not what the API documents (no list where a page has one, a cursor that is not
// text) did not come from the GrowSurf API (a proxy, a wrong GROWSURF_API_URL), and read as an empty page it
// would silently end the listing. Exit 69, like an unreachable service: the service misbehaves.

function notTheApi(what: string): UnavailableError {
  return new UnavailableError(`${what}; it does not look like an answer from the GrowSurf API.`, { hint: NOT_THE_API_HINT });
}

const NOT_THE_API_HINT = 'Nothing was sent. Check GROWSURF_API_URL (default https://api.growsurf.com/v2) and any proxy between here and GrowSurf.';

function objectAt(value: unknown, path: string): Record<string, unknown> {
  if (isObject(value)) return value;
  throw notTheApi(`GrowSurf's answer to GET ${path} is ${describeValue(value)}, not an object`);
}

/** GET /campaign/:id: the counts are kept only when they are counts. */
function decodeCampaign(body: unknown, path: string): GsCampaign {
  const raw = objectAt(body, path);
  const campaign: GsCampaign = { id: typeof raw.id === 'string' && raw.id !== '' ? raw.id : decodeURIComponent(path.slice('/campaign/'.length)) };
  if (typeof raw.name === 'string') campaign.name = raw.name;
  if (isCount(raw.participantCount)) campaign.participantCount = raw.participantCount;
  if (isCount(raw.inviteCount)) campaign.inviteCount = raw.inviteCount;
  return campaign;
}

/** A page of a `nextId` listing: `{ <key>: [...], nextId: string | null, more?: boolean }`. */
function decodePage(body: unknown, key: 'participants' | 'referrals', path: string): { items: unknown[]; nextId: string | undefined; more: boolean | undefined } {
  const raw = objectAt(body, path);
  const items = raw[key];
  if (!Array.isArray(items)) throw notTheApi(`GrowSurf's answer to GET ${path} has no "${key}" list${key in raw ? ` (it is ${describeValue(items)})` : ''}`);
  const nextId = raw.nextId;
  if (nextId !== undefined && nextId !== null && typeof nextId !== 'string') throw notTheApi(`GrowSurf's answer to GET ${path} has a "nextId" that is ${describeValue(nextId)}, not a cursor`);
  const more = raw.more;
  if (more !== undefined && more !== null && typeof more !== 'boolean') throw notTheApi(`GrowSurf's answer to GET ${path} has a "more" that is ${describeValue(more)}, not true or false`);
  return { items, nextId: nextId === null || nextId === '' ? undefined : nextId, more: more ?? undefined };
}

/** GET /campaign/:id/participant/:id: one participant object. */
function decodeParticipant(body: unknown, path: string): unknown {
  const raw = objectAt(body, path);
  if (idOf(raw) === undefined) throw notTheApi(`GrowSurf's answer to GET ${path} has no participant "id"`);
  return raw;
}

/** A referral row with what the source uses from it; undefined for an entry with no id (nothing to key it by). */
function referralRow(item: unknown): GsReferral | undefined {
  const id = idOf(item);
  if (id === undefined || !isObject(item)) return undefined;
  const row: GsReferral = { id };
  if (typeof item.referralStatus === 'string') row.referralStatus = item.referralStatus;
  if (typeof item.referredBy === 'string' && item.referredBy !== '') row.referredBy = item.referredBy;
  if (typeof item.updatedAt === 'number' && Number.isFinite(item.updatedAt)) row.updatedAt = item.updatedAt;
  return row;
}

function idOf(item: unknown): string | undefined {
  return isObject(item) && typeof item.id === 'string' && item.id.trim() !== '' ? item.id : undefined;
}


function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}


/** GrowSurf's errors as the sentences and exit codes of DESIGN.md §9 (404 here: the campaign). */
function explain(error: unknown, campaignId: string): unknown {
  if (!(error instanceof HttpError)) return error;
  const said = error.message.replace(/\.$/, '');
  // DESIGN.md §9: the answer is not from the GrowSurf API, which is as good as unreachable (69), not bad data (65).
  if (error.details.code === NOT_JSON) return new UnavailableError(`${said} (GET ${error.details.path ?? ''}).`, { hint: NOT_THE_API_HINT });
  if (error.details.code === REDIRECT) {
    return new UnavailableError(`${said} (GET ${error.details.path ?? ''}).`, {
      hint: 'Nothing was sent. Set GROWSURF_API_URL to where the API really is (default https://api.growsurf.com/v2; https, not http), or fix the proxy that redirects.',
    });
  }
  if (error.details.code === RATE_LIMIT_REPEATED) return new UnavailableError(`${said}.`, { hint: 'Run again later; lower --rate growsurf if it keeps happening.' });
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

/**
 * One entry of a participants page (or a participant fetched by id) as records: the participant and any
 * warnings about it, or why it is invalid. An entry that is no participant at all is reported, not skipped.
 */
function participantRecords(raw: unknown, campaignId: string, conversions: Map<string, number>, years: YearRange, where: string): SourceRecord[] {
  const id = idOf(raw);
  if (id === undefined || !isObject(raw)) {
    return [{ kind: 'invalid', reason: `GrowSurf sent ${where} as ${isObject(raw) ? 'an object with no participant "id"' : describeValue(raw)}, not a participant; it is not sent` }];
  }
  const result = normalizeGrowsurfParticipant(raw as GsParticipant, campaignId, conversions.get(id), years);
  if ('invalid' in result) return [{ kind: 'invalid', reason: `GrowSurf participant ${id}: ${result.invalid}`, participantId: id }];
  return [
    { kind: 'participant', participant: result.participant },
    ...result.warnings.map((message): SourceRecord => ({ kind: 'warning', message: `GrowSurf participant ${id}: ${message}` })),
  ];
}

export type NormalizedParticipant = { participant: Participant; warnings: string[] } | { invalid: string };

/**
 * DESIGN.md §3 for GrowSurf: referredBy ?? referrer.id, vanityKeys[0] ?? id, unknown enums kept, PII dropped.
 * Times follow the rule of every source (model/dates.ts): a time that is not one makes the participant
 * invalid; one in an unusual year is kept with a warning. Text GrowSurf sent as invalid UTF-8 is never sent on.
 * Null, absent and empty fields are no value (never a trait); a field of another type than documented is
 * reported: the participant is invalid when it is the email or the referrer (who they are, who referred them),
 * else the field is left out with a warning.
 */
export function normalizeGrowsurfParticipant(raw: GsParticipant, programId: string, convertedAtMs?: number, years: YearRange = plausibleYears(new Date())): NormalizedParticipant {
  const warnings: string[] = [];
  const fields = raw as Record<string, unknown>;
  const time = (value: unknown, field: string): Date | undefined | { invalid: string } => {
    if (value === undefined || value === null || value === '') return undefined;
    const reading: DateReading =
      typeof value === 'number' ? readEpochMs(value, years) : typeof value === 'string' ? readDate(value, years) : { ok: false, problem: 'unparseable' };
    if (!reading.ok) return { invalid: describeDateProblem(reading, String(typeof value === 'object' ? JSON.stringify(value) : value), `field "${field}"`) };
    if (reading.unusualYear) warnings.push(describeUnusualYear(reading.date, String(value), `field "${field}"`, years));
    return reading.date;
  };
  /** Text, or no value; anything else is left out with a warning (`identity`: makes the participant invalid). */
  let wrongIdentity: string | undefined;
  const text = (value: unknown, field: string, identity = false): string | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value === 'string') return value.trim() === '' ? undefined : value;
    const problem = `field "${field}" is ${describeValue(value)}, not text`;
    if (identity) wrongIdentity ??= `${problem}; the participant is not sent`;
    else warnings.push(`${problem}; it is left out`);
    return undefined;
  };
  const count = (value: unknown, field: string): number | undefined => {
    if (value === undefined || value === null) return undefined;
    if (isCount(value)) return value;
    if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value.trim());
    warnings.push(`field "${field}" is ${describeValue(value)}, not a count; it is left out`);
    return undefined;
  };
  const object = (value: unknown, field: string): Record<string, unknown> | undefined => {
    if (value === undefined || value === null) return undefined;
    if (isObject(value)) return value;
    warnings.push(`field "${field}" is ${describeValue(value)}, not an object; it is left out`);
    return undefined;
  };

  const createdAt = time(fields.createdAt, 'createdAt');
  if (createdAt && 'invalid' in createdAt) return createdAt;
  const rewards: Reward[] = [];
  const rawRewards = fields.rewards;
  if (rawRewards !== undefined && rawRewards !== null && !Array.isArray(rawRewards)) warnings.push(`field "rewards" is ${describeValue(rawRewards)}, not a list; no reward is sent`);
  for (const [index, rawReward] of (Array.isArray(rawRewards) ? rawRewards : []).entries()) {
    const rewardId = isObject(rawReward) ? text(rawReward.id, `rewards[${index}].id`) : undefined;
    if (!isObject(rawReward) || rewardId === undefined) {
      warnings.push(`rewards[${index}] is ${isObject(rawReward) ? 'a reward with no id' : describeValue(rawReward)}; its event is not sent`);
      continue;
    }
    const field = rawReward.approvedAt !== undefined && rawReward.approvedAt !== null ? 'approvedAt' : 'fulfilledAt';
    const at = time(rawReward[field], `rewards[${index}].${field}`);
    if (at && 'invalid' in at) return at;
    rewards.push(normalizeReward(rawReward, rewardId, index, at, text));
  }
  const participant: Participant = {
    source: 'growsurf',
    programId,
    id: raw.id,
    rewards,
    metadata: normalizeMetadata(object(fields.metadata, 'metadata')),
  };
  const email = text(fields.email, 'email', true);
  if (email) participant.email = normalizeEmail(email);
  const firstName = text(fields.firstName, 'firstName');
  if (firstName) participant.firstName = firstName;
  const lastName = text(fields.lastName, 'lastName');
  if (lastName) participant.lastName = lastName;
  if (createdAt) participant.createdAt = createdAt;
  const vanityKeys = fields.vanityKeys;
  let vanityKey: string | undefined;
  if (Array.isArray(vanityKeys)) vanityKey = vanityKeys.map((key, i) => text(key, `vanityKeys[${i}]`)).find((key) => key !== undefined);
  else if (vanityKeys !== undefined && vanityKeys !== null) warnings.push(`field "vanityKeys" is ${describeValue(vanityKeys)}, not a list; it is left out`);
  participant.referralCode = vanityKey ?? raw.id;
  const shareUrl = text(fields.shareUrl, 'shareUrl');
  if (shareUrl) participant.referralLink = shareUrl;
  const referrer = object(fields.referrer, 'referrer');
  const referrerId = text(fields.referredBy, 'referredBy', true) ?? (referrer ? text(referrer.id, 'referrer.id', true) : undefined);
  if (referrerId) {
    participant.referrerId = referrerId;
    const profileId = referrer ? text(referrer.id, 'referrer.id', true) : undefined;
    if (referrer && profileId) {
      participant.referrerProfile = { id: profileId, metadata: normalizeMetadata(object(referrer.metadata, 'referrer.metadata')) };
      const referrerEmail = text(referrer.email, 'referrer.email', true);
      if (referrerEmail) participant.referrerProfile.email = normalizeEmail(referrerEmail);
    }
  }
  if (wrongIdentity) return { invalid: wrongIdentity };
  const status = normalizeReferralStatus(text(fields.referralStatus, 'referralStatus'));
  if (status.status) participant.referralStatus = status.status;
  if (status.raw) participant.referralStatusRaw = status.raw;
  if (participant.referralStatus === 'converted' && convertedAtMs !== undefined) {
    const convertedAt = time(convertedAtMs, 'updatedAt of its referral row');
    if (convertedAt && 'invalid' in convertedAt) return convertedAt;
    if (convertedAt) participant.convertedAt = convertedAt;
  }
  const referralCount = count(fields.referralCount, 'referralCount');
  if (referralCount !== undefined) participant.referralCount = referralCount;
  const leadCount = count(fields.leadCount, 'leadCount');
  if (leadCount !== undefined) participant.pendingCount = leadCount;
  const joinedVia = text(fields.referralSource, 'referralSource');
  if (joinedVia) participant.joinedVia = joinedVia;
  if (JSON.stringify(participant).includes('\uFFFD')) {
    return { invalid: 'GrowSurf sent text that is not valid UTF-8 (it reads as U+FFFD); the participant is not sent' };
  }
  return { participant, warnings };
}

function normalizeReward(
  raw: Record<string, unknown>,
  id: string,
  index: number,
  at: Date | undefined,
  text: (value: unknown, field: string) => string | undefined,
): Reward {
  const reward: Reward = { id, isReferrer: raw.isReferrer === true, status: text(raw.status, `rewards[${index}].status`) ?? 'UNKNOWN' };
  const configId = text(raw.rewardId, `rewards[${index}].rewardId`);
  if (configId) reward.configId = configId;
  if (at) reward.at = at;
  return reward;
}

/**
 * Metadata is a shallow map of strings, numbers and booleans; anything nested is kept as JSON text. A null is
 * kept as GrowSurf's "no value" (an account rule reads it as missing); traits never send it (model/traits.ts).
 */
function normalizeMetadata(raw: Record<string, unknown> | undefined): Record<string, MetadataValue> {
  const out: Record<string, MetadataValue> = {};
  for (const [key, value] of Object.entries(raw ?? {})) {
    if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') out[key] = value;
    else if (value !== undefined) out[key] = JSON.stringify(value);
  }
  return out;
}
