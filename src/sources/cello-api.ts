import { UnavailableError } from '../errors.js';
import { ENDPOINT_SETTINGS, HttpError, unreachableHint } from '../http/errors.js';
import { NOT_JSON, type HttpClient } from '../http/client.js';
import type { LookupCache } from '../state/store.js';

/** A code's owner never changes; a referrer's active link may, so it is asked again after a day. */
const CODE_MAX_AGE_MS = 365 * 24 * 3_600_000;
const LINK_MAX_AGE_MS = 24 * 3_600_000;

/** Cello's lookup API (research/cello.md §1–§2): a token from the access keys, then one lookup per key. */
export const CELLO_API_URL = 'https://api.cello.so';
/** Renew this long before Cello's `expiresIn` runs out, so a long run never sends an expired token. */
const TOKEN_MARGIN_MS = 60_000;

export interface CodeInfo {
  code: string;
  productUserId: string;
  valid: boolean;
  campaignId: string;
}

export interface ActiveLink {
  activeUcc: string;
  link: string;
}

interface Token {
  value: string;
  expiresAt: number;
}

/**
 * Read-only Cello lookups with a per-run cache: each distinct code and each referrer is asked once however
 * many rows name it, also when many lookups are in flight at once (the cache holds the pending answer).
 * Re-authenticates when the token nears expiry or Cello answers 401, with one token request however many
 * lookups need it. Never calls `depersonalize` or `/events`: this client has no method for them.
 */
export class CelloApi {
  /** Lookups sent to Cello (misses of both caches), for reports. */
  lookups = 0;
  /** Lookups answered from the state's cache (earlier runs). */
  cached = 0;
  /** When the first lookup was sent and the last one answered (`now` clock), for reports. */
  firstLookupAt: number | undefined;
  lastAnswerAt: number | undefined;
  /** The token, or the request for one that every lookup needing a token shares. */
  private token: Promise<Token> | undefined;
  private readonly codes = new Map<string, Promise<CodeInfo>>();
  private readonly links = new Map<string, Promise<ActiveLink | undefined>>();

  constructor(
    private readonly client: HttpClient,
    private readonly keys: { accessKeyId: string; secretAccessKey: string },
    /** The state's cache, filled in once the state is open; lookups fall back to the API. */
    private readonly cache: { current?: LookupCache } = {},
    private readonly now: () => number = Date.now,
  ) {}

  codeInfo(ucc: string): Promise<CodeInfo> {
    let cached = this.codes.get(ucc);
    if (!cached) {
      // Kept before its first await: every later ask of this code, in flight or not, shares this one answer.
      cached = this.lookUpCode(ucc);
      this.codes.set(ucc, cached);
    }
    return cached;
  }

  /** The referrer's active code and link; undefined when Cello has none for this user. */
  activeLink(productUserId: string): Promise<ActiveLink | undefined> {
    let cached = this.links.get(productUserId);
    if (!cached) {
      cached = this.lookUpLink(productUserId);
      this.links.set(productUserId, cached);
    }
    return cached;
  }

  private async lookUpCode(ucc: string): Promise<CodeInfo> {
    const stored = (await this.cache.current?.get('cello:code', ucc, CODE_MAX_AGE_MS)) as CodeInfo | undefined;
    if (stored) {
      this.cached += 1;
      return stored;
    }
    const info = await this.authorized((headers) => this.client.getJson<CodeInfo>(`/referral-codes/${encodeURIComponent(ucc)}`, {}, headers));
    // Only valid codes are kept: an unknown code may yet be created.
    if (info.valid) await this.cache.current?.put('cello:code', ucc, info);
    return info;
  }

  private async lookUpLink(productUserId: string): Promise<ActiveLink | undefined> {
    const stored = (await this.cache.current?.get('cello:link', productUserId, LINK_MAX_AGE_MS)) as ActiveLink | undefined;
    if (stored) {
      this.cached += 1;
      return stored;
    }
    let link: ActiveLink;
    try {
      link = await this.authorized((headers) => this.client.getJson<ActiveLink>(`/referral-codes/active-link/${encodeURIComponent(productUserId)}`, {}, headers));
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) return undefined;
      throw error;
    }
    await this.cache.current?.put('cello:link', productUserId, link);
    return link;
  }

  private async authorized<T>(call: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    this.lookups += 1;
    this.firstLookupAt ??= this.now();
    try {
      const token = await this.accessToken();
      try {
        return await call({ authorization: `Bearer ${token}` });
      } catch (error) {
        if (!(error instanceof HttpError) || error.status !== 401) throw error;
        // Expired or revoked early: one fresh token (shared with every lookup this one failed for), one more try.
        return await call({ authorization: `Bearer ${await this.accessToken(token)}` });
      }
    } finally {
      this.lastAnswerAt = this.now();
    }
  }

  /** A valid token; `rejected` is one Cello just refused, which is replaced rather than handed out again. */
  private async accessToken(rejected?: string): Promise<string> {
    const pending = this.token;
    if (pending) {
      const token = await pending;
      if (token.value !== rejected && this.now() < token.expiresAt) return token.value;
      // Another lookup may have started the renewal while this one waited: share it.
      if (this.token !== pending) return this.accessToken(rejected);
    }
    const renewal = this.requestToken();
    this.token = renewal;
    return (await renewal).value;
  }

  private async requestToken(): Promise<Token> {
    try {
      const response = await this.client.postJson<{ accessToken: string; expiresIn: number }>('/token', this.keys);
      return { value: response.accessToken, expiresAt: this.now() + Math.max(0, response.expiresIn * 1000 - TOKEN_MARGIN_MS) };
    } catch (error) {
      if (error instanceof HttpError && (error.status === 400 || error.status === 401 || error.status === 403)) {
        // Both documented shapes carry `message`: {message} and NestJS's {statusCode, timestamp, path, message}.
        throw new UnavailableError(`Cello refused the access keys (${error.status}: ${error.message.replace(/\.$/, '')}).`, {
          hint: 'Check CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY (Cello Portal → Integrations → Access Keys; sandbox and production keys differ, see CELLO_API_URL).',
        });
      }
      if (error instanceof HttpError) throw celloFailure(error, 'token request');
      throw error;
    }
  }
}

/**
 * A Cello request that failed for good, as one sentence: an unreachable Cello in the words every service uses,
 * else what Cello answered; the hint says what to change, or to run without the lookups.
 */
export function celloFailure(error: HttpError, what: string): UnavailableError {
  if (error.status === undefined) {
    return new UnavailableError(`${error.message}.`, { hint: `${unreachableHint(ENDPOINT_SETTINGS.cello)} Or run without --enrich.` });
  }
  if (error.details.code === NOT_JSON) {
    return new UnavailableError(`${error.message.replace(/\.$/, '')} (${what}).`, { hint: 'Something other than the Cello API answered: check CELLO_API_URL and any proxy on the way, or run without --enrich.' });
  }
  return new UnavailableError(`Cello answered a ${what} with ${error.status}: ${error.message.replace(/\.$/, '')}.`, {
    hint: 'Run again later, or without --enrich; check CELLO_API_URL if it persists.',
  });
}
