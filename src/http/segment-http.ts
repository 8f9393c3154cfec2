import { STATUS_CODES } from 'node:http';
import type { HTTPClient, HTTPClientRequest, HTTPResponse } from '@segment/analytics-node';
import { ENDPOINT_SETTINGS } from './errors.js';
import { parseBody, unacknowledged, type AnswerProblem, type UnacknowledgedAnswer } from './acknowledgement.js';
import { Pool } from './undici.js';
import { isObject } from './json-shape.js';

/** Segment's documented success answer (research/destinations.md §1.4). */
export const SEGMENT_SUCCESS = '200 {"success": true}';

export interface SegmentHttpOptions {
  /** Connections per origin (default 8): the SDK has several batches in flight at once. */
  connections?: number;
  /** Aborting it abandons every request in flight (a graceful stop's deadline): they reject with its reason. */
  signal?: AbortSignal;
  /**
   * Every answer, before the SDK sees it: status, headers (lower-case names, repeated ones joined with ", ")
   * and the body as text, so the destination can read Segment's error message and Retry-After.
   */
  onResponse?: (status: number, headers: Readonly<Record<string, string>>, bodyText: string) => void;
}

/**
 * The HTTP client injected into @segment/analytics-node (its `httpClient` setting) instead of global fetch:
 * one undici Pool per origin with keep-alive and a connection cap, `httpRequestTimeout` as the limit for the
 * whole request, an AbortSignal to abandon what is in flight, and the raw answer for the caller. It posts what
 * the SDK built, untouched. undici comes from ./undici.js, so global fetch keeps its own dispatcher.
 *
 * It is also where "delivered" is decided (issue 17, guarantee 1). The SDK takes any status from 200 to 399 for
 * success and never reads the body, so an answer that is not Segment's success (`judgeSegmentAnswer`) never
 * reaches it as one: it is thrown as an UnacknowledgedAnswer, which the SDK hands to every message's callback as
 * the failure reason. A redirect is never followed (the Pool follows none): its request would leave the rate
 * limiter, and it is no acknowledgement. Refusals (4xx, 5xx) go to the SDK as they are.
 */
export class UndiciSegmentHttpClient implements HTTPClient {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(private readonly options: SegmentHttpOptions = {}) {}

  async makeRequest(request: HTTPClientRequest): Promise<HTTPResponse> {
    return this.exchange(request.url, request.method, request.headers, request.body, request.httpRequestTimeout);
  }

  /**
   * `GET url` (the check: it carries no data), answered and judged like a send: an answer that is not Segment's
   * success and not a refusal throws the same UnacknowledgedAnswer. Resolves with the status otherwise.
   */
  async get(url: string, timeoutMs: number): Promise<number> {
    return (await this.exchange(url, 'GET', {}, undefined, timeoutMs)).status;
  }

  private async exchange(target: string, method: 'GET' | 'POST', requestHeaders: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<HTTPResponse> {
    if (this.closed) throw new Error('internal: Segment HTTP client used after close');
    const url = new URL(target);
    const timeout = AbortSignal.timeout(timeoutMs);
    // Rejects with the reason of whichever fired: a TimeoutError DOMException, as fetch's would be, or the stop's.
    const signal = this.options.signal ? AbortSignal.any([this.options.signal, timeout]) : timeout;
    const response = await this.pool(url.origin).request({
      path: `${url.pathname}${url.search}`,
      method,
      headers: requestHeaders,
      ...(body === undefined ? {} : { body }),
      signal,
    });
    // Always read to the end: the connection goes back to the pool only then.
    const bodyText = await response.body.text();
    const headers = flatten(response.headers);
    this.options.onResponse?.(response.statusCode, headers, bodyText);
    const problem = judgeSegmentAnswer(target, response.statusCode, headers, bodyText);
    if (problem) throw problem;
    return { status: response.statusCode, statusText: statusText(response.statusCode), headers, text: async () => bodyText };
  }

  /** Closes every connection; requests in flight fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.pools.values()].map((pool) => pool.destroy()));
    this.pools.clear();
  }

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, { connections: this.options.connections ?? 8, pipelining: 1, keepAliveTimeout: 4_000 });
      this.pools.set(origin, pool);
    }
    return pool;
  }
}

/**
 * Whether an answer is Segment's documented success, `200 {"success": true}` (research/destinations.md §1.4);
 * undefined for that and for a refusal (4xx, 5xx: the SDK and the destination read those). Anything else that
 * is not a refusal is an UnacknowledgedAnswer naming what came back: a redirect (any 3xx), another 2xx, a body
 * that is empty, not JSON, cut short, or JSON without `"success": true`.
 */
export function judgeSegmentAnswer(requestUrl: string, status: number, headers: Readonly<Record<string, string>>, bodyText: string): UnacknowledgedAnswer | undefined {
  if (status < 200 || status >= 400) return undefined;
  let problem: AnswerProblem | undefined;
  if (status >= 300) problem = 'redirect';
  else if (status !== 200) problem = 'wrong-status';
  else {
    const body = parseBody(bodyText);
    if (body.kind === 'truncated') problem = 'truncated';
    else if (body.kind !== 'json') problem = 'not-json';
    else if (!isObject(body.value) || body.value.success !== true) problem = 'wrong-shape';
  }
  if (problem === undefined) return undefined;
  return unacknowledged(
    { service: 'Segment', baseUrl: originOf(requestUrl), expected: SEGMENT_SUCCESS, endpointSetting: 'SEGMENT_HOST', endpointSettings: ENDPOINT_SETTINGS.segment },
    { status, problem, requestUrl, location: headers.location, body: bodyText, contentType: headers['content-type'] },
  );
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

function flatten(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return flat;
}

/** undici does not keep the reason phrase; the SDK only puts it in its error messages ("[429] Too Many Requests"). */
function statusText(status: number): string {
  return STATUS_CODES[status] ?? '';
}
