import { UnavailableError } from '../errors.js';
import { HttpError } from '../http/errors.js';
import type { HttpClient } from '../http/client.js';
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

/**
 * Read-only Cello lookups with a per-run cache: each distinct code and each referrer is asked once however
 * many rows name it. Re-authenticates when the token nears expiry or Cello answers 401. Never calls
 * `depersonalize` or `/events`: this client has no method for them.
 */
export class CelloApi {
  /** Lookups actually sent (cache misses), for reports. */
  lookups = 0;
  private token: { value: string; expiresAt: number } | undefined;
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
      const stored = this.cache.current?.get('cello:code', ucc, CODE_MAX_AGE_MS) as CodeInfo | undefined;
      cached = stored
        ? Promise.resolve(stored)
        : this.authorized((headers) => this.client.getJson<CodeInfo>(`/referral-codes/${encodeURIComponent(ucc)}`, {}, headers)).then((info) => {
            // Only valid codes are kept: an unknown code may yet be created.
            if (info.valid) this.cache.current?.put('cello:code', ucc, info);
            return info;
          });
      this.codes.set(ucc, cached);
    }
    return cached;
  }

  /** The referrer's active code and link; undefined when Cello has none for this user. */
  activeLink(productUserId: string): Promise<ActiveLink | undefined> {
    let cached = this.links.get(productUserId);
    if (!cached) {
      const stored = this.cache.current?.get('cello:link', productUserId, LINK_MAX_AGE_MS) as ActiveLink | undefined;
      cached = stored
        ? Promise.resolve(stored)
        : this.authorized((headers) => this.client.getJson<ActiveLink>(`/referral-codes/active-link/${encodeURIComponent(productUserId)}`, {}, headers)).then(
            (link) => {
              this.cache.current?.put('cello:link', productUserId, link);
              return link;
            },
            (error: unknown) => {
              if (error instanceof HttpError && error.status === 404) return undefined;
              throw error;
            },
          );
      this.links.set(productUserId, cached);
    }
    return cached;
  }

  private async authorized<T>(call: (headers: Record<string, string>) => Promise<T>): Promise<T> {
    this.lookups += 1;
    try {
      return await call({ authorization: `Bearer ${await this.accessToken()}` });
    } catch (error) {
      if (!(error instanceof HttpError) || error.status !== 401) throw error;
      // Expired or revoked early: one fresh token, one more try.
      this.token = undefined;
      return call({ authorization: `Bearer ${await this.accessToken()}` });
    }
  }

  private async accessToken(): Promise<string> {
    if (this.token && this.now() < this.token.expiresAt) return this.token.value;
    try {
      const response = await this.client.postJson<{ accessToken: string; expiresIn: number }>('/token', this.keys);
      this.token = { value: response.accessToken, expiresAt: this.now() + Math.max(0, response.expiresIn * 1000 - TOKEN_MARGIN_MS) };
      return response.accessToken;
    } catch (error) {
      if (error instanceof HttpError && (error.status === 400 || error.status === 401 || error.status === 403)) {
        // Both documented shapes carry `message`: {message} and NestJS's {statusCode, timestamp, path, message}.
        throw new UnavailableError(`Cello refused the access keys (${error.status}: ${error.message.replace(/\.$/, '')}).`, {
          hint: 'Check CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY (Cello Portal → Integrations → Access Keys; sandbox and production keys differ, see CELLO_API_URL).',
        });
      }
      if (error instanceof HttpError) throw new UnavailableError(`Cello token request failed: ${error.message}.`, { hint: 'Check CELLO_API_URL and the network.' });
      throw error;
    }
  }
}
