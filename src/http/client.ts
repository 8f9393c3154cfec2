import { realClock, type Clock } from '../apply/limiter.js';
import { backoffDelay, MAX_RATE_LIMIT_WAITS, parseRetryAfter, type RetryOptions } from '../apply/retry.js';
import { UnavailableError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { describeNetworkError, HttpError, unreachableMessage } from './errors.js';
import { describeRedirect } from './acknowledgement.js';
import { Pool } from './undici.js';
import type { SlidingWindowLimiter } from './window-limiter.js';

export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** What a service adds to the generic client: how it says "wait", and how it announces its limits. */
export interface ServiceHooks {
  /** Milliseconds to wait before retrying a 429, from the service's own headers or body. */
  retryAfterMs?(headers: ResponseHeaders, body: unknown): number | undefined;
  /** Called with every response's headers (e.g. to adopt announced rate limits). */
  observe?(headers: ResponseHeaders, limiter: SlidingWindowLimiter): void;
  /** A one-line reason for a rate-limit wait, from the error body (e.g. "hour policy"). */
  describeLimit?(body: unknown): string | undefined;
}

export interface HttpClientOptions {
  /** For messages: "GrowSurf". */
  service: string;
  /** Base URL, path prefix included (https://api.growsurf.com/v2). http:// works too (proxies, tests). */
  baseUrl: string;
  /** Sent on every request; never logged, never put in errors. */
  headers: Record<string, string>;
  /** Connections at once (GrowSurf allows 3 per IP). */
  connections: number;
  limiter: SlidingWindowLimiter;
  retry: RetryOptions;
  /** Longest rate-limit wait accepted; past it the run stops with a sentence saying when to come back. */
  maxWaitMs: number;
  /** No byte for this long ends the request (connect included), retried like any network error. */
  bodyTimeoutMs?: number;
  hooks?: ServiceHooks;
  /** Told about every wait longer than a few seconds, so a person sees why nothing moves. */
  onWait?: (ms: number, reason: string) => void;
  /**
   * Told how each answer went, for an adaptive rate: `throttled` on a 429 or 5xx, `healthy` on any other
   * answer. Network errors are neither: they say nothing certain about the service's load.
   */
  pace?: { healthy(): void; throttled(): void };
  clock?: Clock;
  random?: () => number;
}

const LONG_WAIT_MS = 5_000;

/** The sources' bound on 429s in a row that say how long to wait (shared with the destinations' sender). */
export { MAX_RATE_LIMIT_WAITS } from '../apply/retry.js';

/**
 * The one HTTP client of the API sources (DESIGN.md §2): an undici Pool per service (keep-alive, a connection
 * cap, pipelining off), a timeout for the headers and for each gap in the body, the shared window limiter,
 * retries of 429/5xx/network errors with backoff (429s that say how long to wait cost no attempt, up to
 * MAX_RATE_LIMIT_WAITS in a row), and typed errors that never carry the credentials.
 *
 * Success is a 2xx with a JSON body (204: none); what that JSON must hold is the service's decoder's to check.
 * A redirect is a failure naming where it points: never followed (the Pool and each request say
 * maxRedirections 0, so no undici default can turn it on), and not retried, since it would answer the same.
 *
 * undici comes from ./undici.js, which keeps it from installing a global dispatcher: Node's own fetch, used by
 * the Segment and Customer.io SDKs, must keep its own (undici 7's breaks them with UND_ERR_INVALID_ARG).
 */
export class HttpClient {
  /** Requests sent, retries included (reported: "a full scan cost N requests"). */
  requests = 0;
  private readonly pool: Pool;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly timeoutMs: number;

  constructor(private readonly options: HttpClientOptions) {
    const base = new URL(options.baseUrl);
    this.prefix = base.pathname.replace(/\/+$/, '');
    this.timeoutMs = options.bodyTimeoutMs ?? 30_000;
    this.pool = new Pool(base.origin, {
      connections: options.connections,
      pipelining: 1,
      // Idle keep-alive connections live 4 s unless the server says otherwise (Keep-Alive: timeout=…).
      keepAliveTimeout: 4_000,
      connect: { timeout: Math.min(this.timeoutMs, 10_000) },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      // Never follow a redirect: a 3xx is the answer, and a failure (see requestJson).
      maxRedirections: 0,
    });
    this.clock = options.clock ?? realClock;
  }

  getJson<T>(path: string, query: Record<string, string | number | boolean | undefined> = {}, headers: Record<string, string> = {}): Promise<T> {
    return this.requestJson<T>('GET', path, { query, headers });
  }

  postJson<T>(path: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
    return this.requestJson<T>('POST', path, { body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
  }

  private async requestJson<T>(
    method: 'GET' | 'POST',
    path: string,
    { query = {}, body: requestBody, headers: extraHeaders = {} }: { query?: Record<string, string | number | boolean | undefined>; body?: string; headers?: Record<string, string> },
  ): Promise<T> {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) if (value !== undefined) search.set(key, String(value));
    const target = `${this.prefix}${path}${search.size > 0 ? `?${search.toString()}` : ''}`;
    const { retry, hooks, limiter } = this.options;
    let rateLimitWaits = 0;
    for (let attempt = 1; ; ) {
      this.beforeWait(limiter.delay());
      await limiter.take();
      this.requests += 1;
      let status: number | undefined;
      let headers: ResponseHeaders = {};
      let body: unknown;
      let text = '';
      let isJson = false;
      let networkError: unknown;
      try {
        const response = await this.send(method, target, requestBody, extraHeaders);
        status = response.status;
        headers = response.headers;
        text = response.text;
        ({ body, isJson } = parseJson(text));
      } catch (error) {
        networkError = error;
      }
      if (status !== undefined) {
        hooks?.observe?.(headers, limiter);
        if (status === 429 || status >= 500) this.options.pace?.throttled();
        else this.options.pace?.healthy();
      }
      if (status !== undefined && status >= 200 && status < 300) {
        if (status === 204) return undefined as T;
        // A 200 that is not JSON is not an answer from the API (a proxy's or a captive portal's HTML page, a wrong
        // base URL): read as JSON it would look like an empty page and end the listing early, silently.
        if (!isJson) throw this.notJson(status, headers, text, target);
        return body as T;
      }

      if (status !== undefined && status >= 300 && status < 400) throw this.redirect(status, headers, target);
      if (status === 429) {
        const wait = hooks?.retryAfterMs?.(headers, body) ?? parseRetryAfter(header(headers, 'retry-after'));
        if (wait !== undefined) {
          rateLimitWaits += 1;
          if (rateLimitWaits > MAX_RATE_LIMIT_WAITS) throw this.endlessRateLimit(rateLimitWaits, wait, body, target);
          limiter.pause(wait);
          this.beforeWait({ ms: wait, policy: hooks?.describeLimit?.(body) ?? 'rate limit' });
          continue; // a 429 that says how long to wait costs no attempt (up to MAX_RATE_LIMIT_WAITS in a row)
        }
      }
      if (status !== 429) rateLimitWaits = 0;
      const retryable = status === undefined || status === 408 || status === 429 || status >= 500;
      if (!retryable || attempt >= retry.maxAttempts) {
        throw this.failure(status, body, isJson, networkError, target);
      }
      const delay = backoffDelay(attempt, retry, this.options.random);
      if (delay >= LONG_WAIT_MS) this.options.onWait?.(delay, status === undefined ? 'network error' : `HTTP ${status}`);
      await this.clock.sleep(delay);
      attempt += 1;
    }
  }

  /** Says why nothing moves during a long wait, and refuses one longer than --max-wait. */
  private beforeWait({ ms, policy }: { ms: number; policy: string | undefined }): void {
    if (ms < LONG_WAIT_MS) return;
    const reason = policy === undefined || policy === 'pause' ? 'rate limit' : policy.endsWith('policy') ? policy : `${policy} policy`;
    if (ms > this.options.maxWaitMs) {
      throw new UnavailableError(
        `${this.options.service} rate limit reached (${reason}); it resets in ${formatDuration(ms)}, longer than --max-wait ${formatDuration(this.options.maxWaitMs)}.`,
        { hint: 'Run again later, or raise --max-wait to wait it out. Nothing was sent.' },
      );
    }
    this.options.onWait?.(ms, reason);
  }

  /** Closes the connections; requests still in flight fail (the run is over or has failed). */
  async close(): Promise<void> {
    await this.pool.destroy();
  }

  private async send(method: 'GET' | 'POST', path: string, body: string | undefined, headers: Record<string, string>): Promise<{ status: number; headers: ResponseHeaders; text: string }> {
    const response = await this.pool.request({
      path,
      method,
      maxRedirections: 0,
      headers: { accept: 'application/json', ...this.options.headers, ...headers },
      ...(body === undefined ? {} : { body }),
    });
    // Read to the end whatever the status: an unread body keeps its connection from going back to the pool.
    const text = await response.body.text();
    return { status: response.statusCode, headers: response.headers, text };
  }

  private notJson(status: number, headers: ResponseHeaders, text: string, path: string): HttpError {
    const type = header(headers, 'content-type')?.split(';')[0]?.trim() || 'no content type';
    const start = text.replace(/\s+/g, ' ').trim();
    const shown = start === '' ? 'an empty body' : `a body starting "${start.length > 80 ? `${start.slice(0, 80)}…` : start}"`;
    return new HttpError(this.options.service, status, `${this.options.service} answered ${status} with ${shown} (${type}), not JSON`, {
      code: NOT_JSON,
      path: path.split('?')[0] ?? path,
    });
  }

  /** A 3xx: where it points (redacted), never followed. */
  private redirect(status: number, headers: ResponseHeaders, path: string): HttpError {
    const location = header(headers, 'location');
    // Described as the destinations describe theirs: the target resolved against the request, redacted.
    const where = describeRedirect(location, new URL(path, this.options.baseUrl).href);
    return new HttpError(this.options.service, status, `${this.options.service} answered ${status}, ${where}, which referral-sync does not follow`, {
      code: REDIRECT,
      path: path.split('?')[0] ?? path,
      ...(location === undefined ? {} : { location: redactUrl(location.trim()) }),
    });
  }

  private endlessRateLimit(times: number, lastWaitMs: number, body: unknown, path: string): HttpError {
    const shown = path.split('?')[0] ?? path;
    return new HttpError(
      this.options.service,
      429,
      `${this.options.service} answered 429 (rate limit) ${times} times in a row to ${shown}, each time asking to wait (last ${lastWaitMs} ms); the limit never lifted`,
      { code: RATE_LIMIT_REPEATED, path: shown, body },
    );
  }

  private failure(status: number | undefined, body: unknown, isJson: boolean, networkError: unknown, path: string): HttpError {
    const shown = path.split('?')[0] ?? path;
    if (status === undefined) {
      const reason = describeNetworkError(networkError, this.timeoutMs);
      return new HttpError(this.options.service, undefined, unreachableMessage(this.options.service, this.options.baseUrl, reason), { path: shown });
    }
    const error = (typeof body === 'object' && body !== null ? body : {}) as { message?: string; code?: string; requestId?: string };
    const message = error.message ?? `HTTP ${status}`;
    const details: HttpError['details'] = { path: shown, body, json: isJson };
    if (error.code) details.code = error.code;
    if (error.requestId) details.requestId = error.requestId;
    return new HttpError(this.options.service, status, message, details);
  }
}

export function header(headers: ResponseHeaders, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** HttpError code of a success status whose body is not JSON. */
export const NOT_JSON = 'NOT_JSON';
/** HttpError code of a 3xx (never followed). */
export const REDIRECT = 'REDIRECT';
/** HttpError code of more than MAX_RATE_LIMIT_WAITS 429s in a row for one request. */
export const RATE_LIMIT_REPEATED = 'RATE_LIMIT_REPEATED';

function parseJson(text: string): { body: unknown; isJson: boolean } {
  if (text.trim() === '') return { body: undefined, isJson: false };
  try {
    return { body: JSON.parse(text) as unknown, isJson: true };
  } catch {
    // Non-JSON bodies (an HTML error page from a proxy) are kept as text for the message.
    return { body: { message: text.slice(0, 200) }, isJson: false };
  }
}

export function formatDuration(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  if (seconds < 90) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 90) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
