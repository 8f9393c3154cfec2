import { UnavailableError } from '../../errors.js';
import { ENDPOINT_SETTINGS, HttpError, unreachableHint } from '../../http/errors.js';
import { NOT_JSON, RATE_LIMIT_REPEATED, REDIRECT, type HttpClient } from '../../http/client.js';
import type { LookupCache } from '../../state/store.js';
import { describeValue, isObject } from '../../http/json-shape.js';

/** A code's owner never changes; a referrer's active link may, so it is asked again after a day. */
const CODE_MAX_AGE_MS = 365 * 24 * 3_600_000;
const LINK_MAX_AGE_MS = 24 * 3_600_000;

/** Cello's lookup API (research/cello.md §1–§2): a token from the access keys, then one lookup per key. */
export const CELLO_API_URL = 'https://api.cello.so';
/** Renew this long before Cello's `expiresIn` runs out, so a long run never sends an expired token. */
const TOKEN_MARGIN_MS = 60_000;

export interface CodeInfo {
  code: string;
  /** '' when Cello names no owner. */
  productUserId: string;
  valid: boolean;
  /** '' when Cello names no campaign. */
  campaignId: string;
  /** For a code that is not valid: what Cello answered ("valid: false", "404: Not Found"), for the row's report. */
  answered?: string;
}

/** A referrer's active code and invite link; at least one of the two is there. */
export interface ActiveLink {
  activeUcc?: string;
  link?: string;
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

  /**
   * `check`: a token from the key pair (a refusal names CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY), then one
   * lookup with it of a code nobody has (Cello answers 200 valid:false), proving the token is accepted. Reads
   * nothing of anybody's and touches neither cache.
   */
  async check(probe: string): Promise<{ expiresInSeconds: number }> {
    const token = await this.requestToken();
    const path = `/referral-codes/${encodeURIComponent(probe)}`;
    try {
      decodeCodeInfo(await this.client.getJson<unknown>(path, {}, { authorization: `Bearer ${token.value}` }), probe);
    } catch (error) {
      if (error instanceof HttpError && error.status === 401) {
        throw new UnavailableError(`Cello issued a token for the access keys but refused it on a lookup (401: ${error.message.replace(/\.$/, '')}).`, {
          hint: 'Check that CELLO_API_URL is the environment the keys belong to (sandbox and production keys differ), then try again.',
        });
      }
      if (error instanceof HttpError) throw celloFailure(error, 'lookup');
      throw error;
    }
    return { expiresInSeconds: Math.round((token.expiresAt - this.now()) / 1000 + TOKEN_MARGIN_MS / 1000) };
  }

  private async lookUpCode(ucc: string): Promise<CodeInfo> {
    // A cached answer is decoded like a fresh one: an older version may have stored what Cello sent as it came.
    const stored = readCached(await this.cache.current?.get('cello:code', ucc, CODE_MAX_AGE_MS), (value) => decodeCodeInfo(value, ucc));
    if (stored?.valid) {
      this.cached += 1;
      return stored;
    }
    const path = `/referral-codes/${encodeURIComponent(ucc)}`;
    let body: unknown;
    try {
      body = await this.authorized((headers) => this.client.getJson<unknown>(path, {}, headers));
    } catch (error) {
      // Cello documents an unknown code as 200 valid:false; a 404 in its own words says the same of this one code.
      const unknown = oneKeyNotFound(error);
      if (unknown !== undefined) return { code: ucc, productUserId: '', valid: false, campaignId: '', answered: unknown };
      throw error;
    }
    const info = decodeCodeInfo(body, ucc);
    // Only valid codes are kept: an unknown code may yet be created.
    if (info.valid) await this.cache.current?.put('cello:code', ucc, info);
    return info;
  }

  private async lookUpLink(productUserId: string): Promise<ActiveLink | undefined> {
    const stored = readCached(await this.cache.current?.get('cello:link', productUserId, LINK_MAX_AGE_MS), (value) => decodeActiveLink(value, productUserId));
    if (stored) {
      this.cached += 1;
      return stored;
    }
    let body: unknown;
    try {
      body = await this.authorized((headers) => this.client.getJson<unknown>(`/referral-codes/active-link/${encodeURIComponent(productUserId)}`, {}, headers));
    } catch (error) {
      // Undocumented (research/cello.md §2.2): a user with no code may be a 404. For this one user: no link.
      if (oneKeyNotFound(error) !== undefined) return undefined;
      throw error;
    }
    const link = decodeActiveLink(body, productUserId);
    if (link) await this.cache.current?.put('cello:link', productUserId, link);
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
      const response = decodeToken(await this.client.postJson<unknown>('/token', this.keys));
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
  if (error.details.code === REDIRECT) {
    return new UnavailableError(`${error.message.replace(/\.$/, '')} (${what}).`, {
      hint: 'Set CELLO_API_URL to where the API really is (default https://api.cello.so; https, not http), or fix the proxy that redirects; or run without --enrich.',
    });
  }
  if (error.details.code === RATE_LIMIT_REPEATED) {
    return new UnavailableError(`${error.message.replace(/\.$/, '')}.`, { hint: 'Run again later, lower --rate cello, or run without --enrich.' });
  }
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

// Cello's answers, checked (research/cello.md §1–§2). Every shape the lookups rely on is checked here: a 2xx
// whose JSON is not what Cello documents is a failure naming what is missing (exit 69: the service, or
// whatever answers in its place, misbehaves), never a lookup read as "no owner" or "no link".

/** A 200 whose JSON is not the documented shape. */
function notCello(what: string): UnavailableError {
  return new UnavailableError(`${what}; it does not look like an answer from the Cello API.`, {
    hint: 'Check CELLO_API_URL (default https://api.cello.so) and any proxy on the way, or run without --enrich.',
  });
}



/** Text, or '' for null, absent or empty; anything else is not Cello's answer. */
function optionalText(body: Record<string, unknown>, field: string, where: string): string {
  const value = body[field];
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value.trim();
  throw notCello(`Cello's answer to ${where} has a "${field}" that is ${describeValue(value)}, not text`);
}

/** POST /token → 201 `{accessToken, expiresIn, …}`; both required. */
export function decodeToken(body: unknown): { accessToken: string; expiresIn: number } {
  const where = 'POST /token';
  if (!isObject(body)) throw notCello(`Cello's answer to ${where} is ${describeValue(body)}, not an object`);
  const { accessToken, expiresIn } = body;
  if (typeof accessToken !== 'string' || accessToken.trim() === '') throw notCello(`Cello's answer to ${where} has no "accessToken" (it is ${describeValue(accessToken)})`);
  if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn <= 0) throw notCello(`Cello's answer to ${where} has no "expiresIn" in seconds (it is ${describeValue(expiresIn)})`);
  return { accessToken, expiresIn };
}

/** GET /referral-codes/{code} → `{code, valid, productUserId?, campaignId?}`; `valid` required. */
export function decodeCodeInfo(body: unknown, ucc: string): CodeInfo {
  const where = `GET /referral-codes/${ucc}`;
  if (!isObject(body)) throw notCello(`Cello's answer to ${where} is ${describeValue(body)}, not an object`);
  if (typeof body.valid !== 'boolean') throw notCello(`Cello's answer to ${where} has no "valid" true or false (it is ${describeValue(body.valid)})`);
  const info: CodeInfo = {
    code: optionalText(body, 'code', where) || ucc,
    productUserId: optionalText(body, 'productUserId', where),
    valid: body.valid,
    campaignId: optionalText(body, 'campaignId', where),
  };
  if (!info.valid) info.answered = 'valid: false';
  return info;
}

/**
 * GET /referral-codes/active-link/{productUserId} → `{activeUcc, link}`. Both null, empty or absent is Cello's
 * "no link" for this user (undefined), reported for the referrer; a field of another type is not Cello's answer.
 */
export function decodeActiveLink(body: unknown, productUserId: string): ActiveLink | undefined {
  const where = `GET /referral-codes/active-link/${productUserId}`;
  if (!isObject(body)) throw notCello(`Cello's answer to ${where} is ${describeValue(body)}, not an object`);
  const activeUcc = optionalText(body, 'activeUcc', where);
  const link = optionalText(body, 'link', where);
  if (activeUcc === '' && link === '') return undefined;
  return { ...(activeUcc === '' ? {} : { activeUcc }), ...(link === '' ? {} : { link }) };
}

/** A cached answer that decodes, else undefined (asked again). */
function readCached<T>(value: unknown, decode: (value: unknown) => T): T | undefined {
  if (value === undefined) return undefined;
  try {
    return decode(value);
  } catch {
    return undefined;
  }
}

/**
 * A 404 in Cello's own words (`{message}`, research/cello.md §4) for a lookup of one key: "404: Not Found", said
 * of that key alone; undefined for anything else (a 404 page that is not Cello's JSON says the URL is wrong).
 */
function oneKeyNotFound(error: unknown): string | undefined {
  if (!(error instanceof HttpError) || error.status !== 404) return undefined;
  const body = error.details.body;
  if (error.details.json !== true || !isObject(body) || typeof body.message !== 'string') return undefined;
  return `404: ${body.message.replace(/\.$/, '')}`;
}
