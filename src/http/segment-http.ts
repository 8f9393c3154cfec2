import { STATUS_CODES } from 'node:http';
import type { HTTPClient, HTTPClientRequest, HTTPResponse } from '@segment/analytics-node';
import { Pool } from './undici.js';

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
 */
export class UndiciSegmentHttpClient implements HTTPClient {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(private readonly options: SegmentHttpOptions = {}) {}

  async makeRequest(request: HTTPClientRequest): Promise<HTTPResponse> {
    if (this.closed) throw new Error('internal: Segment HTTP client used after close');
    const url = new URL(request.url);
    const timeout = AbortSignal.timeout(request.httpRequestTimeout);
    // Rejects with the reason of whichever fired: a TimeoutError DOMException, as fetch's would be, or the stop's.
    const signal = this.options.signal ? AbortSignal.any([this.options.signal, timeout]) : timeout;
    const response = await this.pool(url.origin).request({
      path: `${url.pathname}${url.search}`,
      method: request.method,
      headers: request.headers,
      body: request.body,
      signal,
    });
    // Always read to the end: the connection goes back to the pool only then.
    const bodyText = await response.body.text();
    const headers = flatten(response.headers);
    this.options.onResponse?.(response.statusCode, headers, bodyText);
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
