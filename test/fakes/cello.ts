import type { IncomingMessage, ServerResponse } from 'node:http';
import { FakeService, type FaultOptions } from './http.js';

/**
 * Cello's lookup API (research/cello.md §1–§2): `POST /token` (201; both documented error shapes), tokens that
 * expire, `GET /referral-codes/{code}` (200 with valid:false for an unknown code), `GET
 * /referral-codes/active-link/{productUserId}`. Counts every lookup so tests can check caching.
 */
export class FakeCello extends FakeService {
  /** code → owner and campaign. */
  readonly codes = new Map<string, { productUserId: string; campaignId: string }>();
  /** productUserId → active code and link. */
  readonly links = new Map<string, { activeUcc: string; link: string }>();
  readonly lookups = new Map<string, number>();
  tokensIssued = 0;
  /** Seconds a token lives, as Cello's `expiresIn` says. */
  expiresIn = 18_000;
  /** The 401 shape of `/token` for bad keys: Cello's OpenAPI (400 {message}) or what was seen live (NestJS 401). */
  tokenErrorShape: 'openapi' | 'nestjs' = 'nestjs';
  /** A token stops working after this many uses (an early expiry the client must survive). */
  tokenUses = Number.POSITIVE_INFINITY;
  /**
   * Answers a request this way instead (a redirect, a proxy's page, an odd or misshapen lookup answer) when it
   * returns one: gets the method and path; undefined lets the fake answer as usual.
   */
  answer: ((method: string, path: string) => { status: number; body: string; contentType?: string; headers?: Record<string, string> } | undefined) | undefined;
  private readonly issued = new Map<string, { expiresAt: number; uses: number }>();

  constructor(
    readonly accessKeyId: string,
    readonly secretAccessKey: string,
    faults: FaultOptions = {},
  ) {
    super(faults);
  }

  protected handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    const instead = this.answer?.(req.method ?? 'GET', path);
    if (instead) {
      this.lookups.set(path, (this.lookups.get(path) ?? 0) + 1);
      this.count(instead.status);
      res.writeHead(instead.status, { 'content-type': instead.contentType ?? 'application/json', 'content-length': Buffer.byteLength(instead.body), ...instead.headers });
      res.end(instead.body);
      return;
    }
    if (req.method === 'POST' && path === '/token') {
      const keys = JSON.parse(body.toString('utf8') || '{}') as { accessKeyId?: string; secretAccessKey?: string };
      if (keys.accessKeyId !== this.accessKeyId || keys.secretAccessKey !== this.secretAccessKey) {
        if (this.tokenErrorShape === 'openapi') return this.json(res, 400, { message: 'Invalid credentials' });
        return this.json(res, 401, { statusCode: 401, timestamp: new Date().toISOString(), path: '/api/token', message: 'Invalid API Credentials' });
      }
      this.tokensIssued += 1;
      const token = `tok-${this.tokensIssued}-${Math.random().toString(36).slice(2)}`;
      this.issued.set(token, { expiresAt: Date.now() + this.expiresIn * 1000, uses: 0 });
      return this.json(res, 201, { accessToken: token, refreshToken: `r-${token}`, expiresIn: this.expiresIn, refreshTokenExpiresIn: 432_000 });
    }
    if (req.method === 'POST' && /\/(depersonalize|events)$/.test(path)) {
      // referral-sync must never call these; the tests assert on this counter.
      this.lookups.set(`FORBIDDEN ${path}`, (this.lookups.get(`FORBIDDEN ${path}`) ?? 0) + 1);
      return this.json(res, 400, { message: 'not allowed in tests' });
    }
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const state = token === undefined ? undefined : this.issued.get(token);
    if (!state || state.expiresAt < Date.now() || state.uses >= this.tokenUses) return this.json(res, 401, { message: 'Unauthorized' });
    state.uses += 1;
    this.lookups.set(path, (this.lookups.get(path) ?? 0) + 1);
    const link = /^\/referral-codes\/active-link\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && link) {
      const found = this.links.get(decodeURIComponent(link[1]!));
      return found ? this.json(res, 200, found) : this.json(res, 404, { message: 'Not Found' });
    }
    const code = /^\/referral-codes\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && code) {
      const value = decodeURIComponent(code[1]!);
      const owner = this.codes.get(value);
      return this.json(res, 200, owner ? { code: value, productUserId: owner.productUserId, valid: true, campaignId: owner.campaignId } : { code: value, productUserId: '', valid: false, campaignId: '' });
    }
    this.json(res, 404, { message: 'Not Found' });
  }
}
