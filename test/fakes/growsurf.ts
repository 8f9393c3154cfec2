import type { IncomingMessage, ServerResponse } from 'node:http';
import { FakeService, seededRandom, type FaultOptions } from './http.js';

/** A participant as GrowSurf's REST API returns it (research/growsurf.md §3), plus the fake's bookkeeping. */
export interface FakeParticipant {
  id: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  createdAt: number;
  shareUrl: string;
  vanityKeys: string[];
  referralCount: number;
  leadCount: number;
  referralSource: string;
  referralStatus?: string;
  /**
   * The fake's own bookkeeping of who referred this participant. GrowSurf's REST examples carry only the nested
   * `referrer` (research/growsurf.md §3), so it is served only when `servesReferredBy` is set.
   */
  referredBy?: string;
  referrer: Record<string, unknown> | null;
  rewards: Record<string, unknown>[];
  metadata: Record<string, string | number>;
  rank: number | string;
  shareCount: Record<string, number>;
  ipAddress: string;
  fingerprint: string;
  notes: string | null;
}

export interface FakeReferral {
  id: string;
  email: string;
  firstName: string | null;
  lastName: string | null;
  referralStatus: string;
  referredBy: string;
  createdAt: number;
  updatedAt: number;
}

export interface GrowsurfProgram {
  campaignId: string;
  participants: FakeParticipant[];
  referrals: FakeReferral[];
}

/**
 * A program of `size` participants from a seed: direct signups, chains, all statuses, vanity keys on some,
 * invite rows with masked emails, metadata, and the quirks (string `rank`, PII fields) a client must handle.
 */
export function generateGrowsurfProgram(size: number, seed = 1, options: { rewards?: boolean; campaignId?: string } = {}): GrowsurfProgram {
  const random = seededRandom(seed);
  const start = Date.UTC(2025, 0, 1);
  const participants: FakeParticipant[] = [];
  const referrals: FakeReferral[] = [];
  for (let i = 0; i < size; i += 1) {
    const id = `s${seed}p${i.toString(36)}`;
    const referred = i > 2 && random() < 0.6;
    const referrer = referred ? participants[Math.floor(random() ** 2 * i)]! : undefined;
    const status = referred ? ['CREDIT_AWARDED', 'CREDIT_PENDING', 'CREDIT_EXPIRED'][Math.floor(random() * 3)]! : undefined;
    const createdAt = start + i * 90_000 + Math.floor(random() * 60_000);
    const p: FakeParticipant = {
      id,
      email: `gs${seed}.member${i}@example.com`,
      firstName: random() < 0.9 ? `First${i}` : null,
      lastName: random() < 0.9 ? `Last${i}` : null,
      createdAt,
      shareUrl: `https://example.com/?grsf=${id}`,
      vanityKeys: random() < 0.2 ? [`vip-${id}`] : [],
      referralCount: 0,
      leadCount: 0,
      referralSource: referred ? 'PARTICIPANT' : 'DIRECT',
      referrer: null,
      rewards: [],
      metadata: { company: `Company ${i % 50}`, seats: i % 7 },
      rank: i % 10 === 0 ? String(i) : -1,
      shareCount: { email: i % 3, twitter: i % 2 },
      ipAddress: `10.1.${i % 250}.${i % 200}`,
      fingerprint: `fp${i}`,
      notes: i % 13 === 0 ? 'internal note' : null,
    };
    if (referrer && status) {
      p.referralStatus = status;
      p.referredBy = referrer.id;
      p.referrer = { id: referrer.id, email: referrer.email, firstName: referrer.firstName, metadata: referrer.metadata, referralCount: referrer.referralCount };
      if (status === 'CREDIT_AWARDED') referrer.referralCount += 1;
      if (status === 'CREDIT_PENDING') referrer.leadCount += 1;
      referrals.push({
        id,
        email: p.email,
        firstName: p.firstName,
        lastName: p.lastName,
        referralStatus: status,
        referredBy: referrer.id,
        createdAt,
        updatedAt: createdAt + (status === 'CREDIT_PENDING' ? 0 : 3_600_000 + Math.floor(random() * 86_400_000)),
      });
      if (options.rewards && status === 'CREDIT_AWARDED') {
        referrer.rewards.push({ id: `prew_${id}`, rewardId: 'crew_single', status: 'FULFILLED', isReferrer: true, approved: true, approvedAt: createdAt + 7_200_000, fulfilledAt: createdAt + 9_000_000, referredId: id, referrerId: referrer.id });
      }
    }
    if (random() < 0.05) {
      referrals.push({ id: `inv${seed}x${i}`, email: '***************', firstName: null, lastName: null, referralStatus: 'INVITE_SENT', referredBy: id, createdAt, updatedAt: createdAt });
    }
    participants.push(p);
  }
  return { campaignId: options.campaignId ?? `camp${seed}`, participants, referrals };
}

export interface GrowsurfPolicy {
  name: 'SECOND' | 'MINUTE' | 'HOUR';
  limit: number;
  windowMs: number;
}

/**
 * A GrowSurf REST API v2 emulator: Bearer auth, campaign, participants and referrals with `nextId` paging
 * (limit ≤ 100, else 400), a participant by id or email, GrowSurf's error body, its rate-limit headers and
 * policies (429 per policy), 429 on a fourth concurrent connection, and the shared fault injection.
 */
export class FakeGrowsurf extends FakeService {
  paidPlan = true;
  /** Serve `referredBy` on participants too, as the SDK types and webhooks have it (the REST examples do not). */
  servesReferredBy = false;
  /** Answer requests whose path matches `path` (every request without one) with this instead: a proxy's HTML page. */
  rawAnswer: { status: number; contentType: string; body: string; path?: RegExp; headers?: Record<string, string> } | undefined;
  /**
   * Rewrites each page of a listing before it is served (a cursor that cycles, a page served again, pages that
   * never end): gets the page as the fake would serve it and the `nextId` it was asked for; returns the body.
   */
  rewritePage: ((listing: 'participants' | 'referrals', page: { items: unknown[]; limit: number; nextId: string | null }, askedNextId: string | null) => unknown) | undefined;
  /** What `GET /campaign/:id` says the participant count is, when it should disagree with the pages. */
  reportedParticipantCount: number | undefined;
  policies: GrowsurfPolicy[] = [];
  maxConnectionsAllowed = 3;
  /** Requests by path kind, e.g. participants pages, for cost reports. */
  readonly requestsByKind = new Map<string, number>();
  private readonly accepted: number[] = [];

  constructor(
    readonly apiKey: string,
    public program: GrowsurfProgram,
    faults: FaultOptions = {},
  ) {
    super(faults);
  }

  /** Changes a referral's status now, as GrowSurf would (counts, referral row updatedAt). */
  setReferralStatus(participantId: string, status: 'CREDIT_AWARDED' | 'CREDIT_EXPIRED', at: number): void {
    const p = this.program.participants.find((x) => x.id === participantId)!;
    const referrer = this.program.participants.find((x) => x.id === p.referredBy)!;
    if (p.referralStatus === 'CREDIT_PENDING') referrer.leadCount -= 1;
    if (p.referralStatus === 'CREDIT_AWARDED') referrer.referralCount -= 1;
    if (status === 'CREDIT_AWARDED') referrer.referralCount += 1;
    p.referralStatus = status;
    const row = this.program.referrals.find((r) => r.id === participantId)!;
    row.referralStatus = status;
    row.updatedAt = at;
  }

  protected handle(req: IncomingMessage, _body: Buffer, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (this.rawAnswer && (!this.rawAnswer.path || this.rawAnswer.path.test(url.pathname))) {
      this.count(this.rawAnswer.status);
      res.writeHead(this.rawAnswer.status, { 'content-type': this.rawAnswer.contentType, 'content-length': Buffer.byteLength(this.rawAnswer.body), ...this.rawAnswer.headers });
      res.end(this.rawAnswer.body);
      return;
    }
    if (this.openConnections > this.maxConnectionsAllowed) {
      this.log.rateLimited += 1;
      return this.error(res, 429, 'RateLimit', 'RATE_LIMIT', 'Too many concurrent connections.', { 'retry-after': '1' });
    }
    if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
      return this.error(res, 403, 'Forbidden', 'FORBIDDEN_ERROR', 'Invalid API key.');
    }
    if (!this.paidPlan) {
      return this.error(res, 403, 'PaidPlanRequired', 'PAID_PLAN_REQUIRED', 'A paid plan is required to use the GrowSurf REST API.');
    }
    const limited = this.checkPolicies();
    if (limited) {
      this.log.rateLimited += 1;
      return this.error(res, 429, 'RateLimit', 'RATE_LIMIT', `You have reached your ${limited.policy.name.toLowerCase()} limit.`, {
        ...this.limitHeaders(),
        [`growsurf-retry-after-${limited.policy.name.toLowerCase()}-milliseconds`]: String(limited.waitMs),
      }, { policyName: limited.policy.name });
    }
    const match = /^\/v2\/campaign\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (!match || decodeURIComponent(match[1]!) !== this.program.campaignId) {
      return this.error(res, 404, 'NotFound', 'NOT_FOUND_ERROR', 'Campaign not found.');
    }
    const rest = match[2] ?? '';
    const kind = rest === '' ? 'campaign' : rest.split('/')[1]!;
    this.requestsByKind.set(kind, (this.requestsByKind.get(kind) ?? 0) + 1);
    const limit = Number(url.searchParams.get('limit') ?? '20');
    if (limit > 100 || limit < 1) {
      return this.error(res, 400, 'BadRequest', 'BAD_REQUEST_ERROR', 'Invalid query.', {}, {
        errors: [{ location: 'query', param: 'limit', value: String(limit), msg: 'Must be a value less than or equal to 100' }],
      });
    }
    const nextId = url.searchParams.get('nextId');
    if (rest === '') {
      return this.ok(res, { id: this.program.campaignId, name: 'Fake program', participantCount: this.reportedParticipantCount ?? this.program.participants.length });
    }
    if (rest === '/participants') {
      // Newest first, as the MCP docs describe; clients must not rely on it.
      const all = [...this.program.participants].reverse();
      const page = paginate(all, (p) => p.id, nextId, limit);
      const items = page.items.map((p) => this.served(p));
      if (this.rewritePage) return this.ok(res, this.rewritePage('participants', { items, limit, nextId: page.nextId }, nextId));
      return this.ok(res, { participants: items, limit, nextId: page.nextId });
    }
    if (rest === '/referrals') {
      const desc = url.searchParams.get('desc') !== 'false';
      const sorted = [...this.program.referrals].sort((a, b) => (desc ? b.updatedAt - a.updatedAt : a.updatedAt - b.updatedAt) || a.id.localeCompare(b.id));
      const page = paginate(sorted, (r) => r.id, nextId, limit);
      if (this.rewritePage) return this.ok(res, this.rewritePage('referrals', { items: page.items, limit, nextId: page.nextId }, nextId));
      return this.ok(res, { referrals: page.items, limit, nextId: page.nextId, more: page.nextId !== null });
    }
    const single = /^\/participant\/([^/]+)$/.exec(rest);
    if (single) {
      const key = decodeURIComponent(single[1]!);
      const p = this.program.participants.find((x) => x.id === key || x.email === key);
      if (!p) return this.error(res, 404, 'NotFound', 'NOT_FOUND_ERROR', 'Participant not found.');
      return this.ok(res, this.served(p));
    }
    this.error(res, 404, 'NotFound', 'NOT_FOUND_ERROR', 'Not found.');
  }

  /** A participant as the REST API shows it: the referrer nested, `referredBy` only when asked for. */
  private served(p: FakeParticipant): Omit<FakeParticipant, 'referredBy'> & { referredBy?: string } {
    if (this.servesReferredBy) return p;
    const { referredBy: _bookkeeping, ...documented } = p;
    return documented;
  }

  private ok(res: ServerResponse, body: unknown): void {
    this.json(res, 200, body, this.limitHeaders());
  }

  private error(res: ServerResponse, status: number, name: string, code: string, message: string, headers: Record<string, string> = {}, extra: Record<string, unknown> = {}): void {
    this.json(res, status, { name, code, message, status, supportUrl: 'https://growsurf.com/settings#contact_support', level: 'error', timestamp: new Date().toISOString(), ...extra }, headers);
  }

  private limitHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    const now = this.clock.now();
    for (const policy of this.policies) {
      const used = this.accepted.filter((t) => t > now - policy.windowMs).length;
      headers[`growsurf-ratelimit-${policy.name.toLowerCase()}-limit`] = String(policy.limit);
      headers[`growsurf-ratelimit-${policy.name.toLowerCase()}-remaining`] = String(Math.max(0, policy.limit - used));
    }
    return headers;
  }

  private checkPolicies(): { policy: GrowsurfPolicy; waitMs: number } | undefined {
    const now = this.clock.now();
    for (const policy of this.policies) {
      const inWindow = this.accepted.filter((t) => t > now - policy.windowMs);
      if (inWindow.length >= policy.limit) {
        const oldest = inWindow[inWindow.length - policy.limit]!;
        return { policy, waitMs: Math.max(1, Math.ceil(oldest + policy.windowMs - now)) };
      }
    }
    this.accepted.push(now);
    if (this.accepted.length > 50_000) this.accepted.splice(0, 25_000);
    return undefined;
  }
}

/** GrowSurf's cursor: `nextId` names the first item of the next page. */
function paginate<T>(items: T[], idOf: (item: T) => string, nextId: string | null, limit: number): { items: T[]; nextId: string | null } {
  const start = nextId === null ? 0 : Math.max(0, items.findIndex((item) => idOf(item) === nextId));
  const page = items.slice(start, start + limit);
  const next = items[start + limit];
  return { items: page, nextId: next === undefined ? null : idOf(next) };
}
