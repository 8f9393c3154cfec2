import { UnavailableError, UsageError } from '../errors.js';
import { HttpError } from '../http/errors.js';
import { header, type HttpClient, type ResponseHeaders, type ServiceHooks } from '../http/client.js';
import type { SlidingWindowLimiter } from '../http/window-limiter.js';
import { normalizeEmail } from '../model/identity.js';
import { normalizeReferralStatus, type MetadataValue, type Participant, type Reward, type SourceRecord } from '../model/participant.js';
import type { Source } from './source.js';

/** GrowSurf REST API v2 shapes (research/growsurf.md §2–§4), as tolerant as the research says to be. */
interface GsReward {
  id: string;
  rewardId?: string;
  status?: string;
  isReferrer?: boolean;
  approvedAt?: number | null;
  fulfilledAt?: number | null;
}

export interface GsParticipant {
  id: string;
  email?: string;
  firstName?: string | null;
  lastName?: string | null;
  createdAt?: number;
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
  /** Told how many participants GrowSurf says there are, once known (progress total). */
  onTotal?: (total: number) => void;
}

/**
 * The GrowSurf API source: the campaign, every referral row (for conversion times), then every participant,
 * page by page, each page handed on before the next is fetched. A full scan costs one request per 100
 * participants plus one per 100 referrals. The API offers no "changed since" filter on participants, so
 * this scan is the source of truth (research/growsurf.md §8).
 */
export function growsurfApiSource(options: GrowsurfApiOptions): Source & { readonly requests: number } {
  return {
    description:
      options.changedSince === undefined
        ? `GrowSurf API, campaign ${options.campaignId}`
        : `GrowSurf API, campaign ${options.campaignId}, referrals changed since ${new Date(options.changedSince).toISOString()}`,
    rereadable: false,
    get requests() {
      return options.client.requests;
    },
    records: () => (options.changedSince === undefined ? readCampaign(options) : readChanges(options, options.changedSince)),
  };
}

async function* readCampaign(options: GrowsurfApiOptions): AsyncGenerator<SourceRecord> {
  const { client, campaignId } = options;
  const base = `/campaign/${encodeURIComponent(campaignId)}`;
  const campaign = await call(() => client.getJson<GsCampaign>(base), campaignId);
  if (campaign.participantCount !== undefined) options.onTotal?.(campaign.participantCount);
  const conversions = await conversionTimes(client, base, campaignId);

  const seen = new Set<string>();
  let pages = 0;
  let nextId: string | undefined;
  for (;;) {
    const page = await call(
      () => client.getJson<{ participants?: GsParticipant[]; nextId?: string | null }>(`${base}/participants`, { limit: PAGE_SIZE, nextId }),
      campaignId,
    );
    pages += 1;
    const participants = page.participants ?? [];
    for (const raw of participants) {
      // The order is undocumented and a cursor may repeat a row: each participant counts once.
      if (!raw?.id || seen.has(raw.id)) continue;
      seen.add(raw.id);
      yield { kind: 'participant', participant: normalizeGrowsurfParticipant(raw, campaignId, conversions.get(raw.id)) };
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
async function* readChanges(options: GrowsurfApiOptions, since: number): AsyncGenerator<SourceRecord> {
  const { client, campaignId } = options;
  const base = `/campaign/${encodeURIComponent(campaignId)}`;
  await call(() => client.getJson<GsCampaign>(base), campaignId);
  const conversions = new Map<string, number>();
  const touched = new Set<string>();
  let nextId: string | undefined;
  paging: for (;;) {
    const page = await call(
      () => client.getJson<{ referrals?: GsReferral[]; nextId?: string | null; more?: boolean }>(`${base}/referrals`, { sortBy: 'updatedAt', desc: true, limit: PAGE_SIZE, nextId }),
      campaignId,
    );
    const referrals = page.referrals ?? [];
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
  for (const id of touched) {
    let raw: GsParticipant;
    try {
      raw = await client.getJson<GsParticipant>(`${base}/participant/${encodeURIComponent(id)}`);
    } catch (error) {
      // A participant deleted since its referral row was written: nothing to sync for it.
      if (error instanceof HttpError && error.status === 404) {
        yield { kind: 'warning', message: `participant ${id} named by a referral row no longer exists in GrowSurf` };
        continue;
      }
      throw explain(error, campaignId);
    }
    yield { kind: 'participant', participant: normalizeGrowsurfParticipant(raw, campaignId, conversions.get(raw.id)) };
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
    const referrals = page.referrals ?? [];
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

/** GrowSurf's errors as the sentences and exit codes of DESIGN.md §9 (404 here: the campaign). */
function explain(error: unknown, campaignId: string): unknown {
  if (!(error instanceof HttpError)) return error;
  const said = error.message.replace(/\.$/, '');
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
    return new UnavailableError(`${said}.`, { hint: 'Check GROWSURF_API_URL and the network. Nothing was sent.' });
  }
  return new UnavailableError(`GrowSurf answered ${error.status}: ${said}.`, { hint: 'Nothing was sent; run again later.' });
}

/** DESIGN.md §3 for GrowSurf: referredBy ?? referrer.id, vanityKeys[0] ?? id, unknown enums kept, PII dropped. */
export function normalizeGrowsurfParticipant(raw: GsParticipant, programId: string, convertedAtMs?: number): Participant {
  const participant: Participant = {
    source: 'growsurf',
    programId,
    id: raw.id,
    rewards: (raw.rewards ?? []).map(normalizeReward),
    metadata: normalizeMetadata(raw.metadata),
  };
  if (raw.email) participant.email = normalizeEmail(raw.email);
  if (raw.firstName) participant.firstName = raw.firstName;
  if (raw.lastName) participant.lastName = raw.lastName;
  if (typeof raw.createdAt === 'number') participant.createdAt = new Date(raw.createdAt);
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
  if (participant.referralStatus === 'converted' && convertedAtMs !== undefined) participant.convertedAt = new Date(convertedAtMs);
  if (typeof raw.referralCount === 'number') participant.referralCount = raw.referralCount;
  else if (typeof raw.referralCount === 'string' && /^\d+$/.test(raw.referralCount)) participant.referralCount = Number(raw.referralCount);
  if (typeof raw.leadCount === 'number') participant.pendingCount = raw.leadCount;
  if (raw.referralSource) participant.joinedVia = raw.referralSource;
  return participant;
}

function normalizeReward(raw: GsReward): Reward {
  const reward: Reward = { id: raw.id, isReferrer: raw.isReferrer === true, status: raw.status ?? 'UNKNOWN' };
  if (raw.rewardId) reward.configId = raw.rewardId;
  const at = raw.approvedAt ?? raw.fulfilledAt;
  if (typeof at === 'number') reward.at = new Date(at);
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
