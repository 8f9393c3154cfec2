import { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import { ENDPOINT_SETTINGS } from './errors.js';
import { parseBody, unacknowledged, type AnswerProblem, type UnacknowledgedAnswer } from './acknowledgement.js';
import { Agent, type Dispatcher } from './undici.js';
import { isObject } from './json-shape.js';

/** Customer.io's documented success answers (research/destinations.md §3.3, §4). */
export const CUSTOMERIO_SUCCESS = '200 with JSON';
export const CUSTOMERIO_BATCH_SUCCESS = '200 with JSON, or 207 with per-item errors';

/**
 * The transport customerio-node 5.2 sends through: its `dispatcher` setting, which the SDK forwards to global
 * fetch with each request (the one setting of its transport it lets a caller give; `redirect` it sets itself).
 *
 * Why: the SDK fetches with `redirect: 'manual'` and then follows 301/302/307/308 itself, with no hop limit and
 * outside our rate limiter, and it reads any 2xx as success, an empty body as `{}`. So every answer is judged
 * here, before fetch hands it to the SDK (`judgeCustomerioAnswer`): one that is not Customer.io's success and not
 * a refusal becomes a failed request whose cause is an UnacknowledgedAnswer (fetch rejects with
 * `TypeError('fetch failed', { cause })`); the SDK never sees the redirect, so it cannot follow it. Refusals
 * (4xx, 5xx) pass untouched, for the SDK's CustomerIORequestError.
 *
 * The requests run on an undici Agent of this destination's own, from ./undici.js, given per request: global
 * fetch keeps its own dispatcher (src/http/undici.ts). test/integration/acknowledgement.test.ts fails if an undici
 * upgrade stops this from carrying the SDK's requests.
 */
export class CustomerioTransport {
  readonly dispatcher: Dispatcher;
  private readonly agent: Agent;

  constructor(trackUrl: string) {
    this.agent = new Agent({ keepAliveTimeout: 4_000 });
    this.dispatcher = this.agent.compose((dispatch) => (options, handler) => {
      const url = new URL(options.path, options.origin).href;
      return dispatch(withSingleContentLength(options), new JudgedAnswer(handler, (status, headers, body) => judgeCustomerioAnswer(trackUrl, url, status, headers, body)));
    });
  }

  /** Waits up to `timeoutMs` for requests in flight, then closes the connections. */
  async close(timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
      timer.unref();
    });
    try {
      if ((await Promise.race([this.agent.close(), late])) === 'late') await this.agent.destroy();
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Whether an answer is Customer.io's documented success: 200 with a JSON object (v1 answers `{}`), or for a v2
 * `/batch` also 207 with its `errors` list (which items failed is the destination's to read). Undefined for that
 * and for a refusal (4xx, 5xx); an UnacknowledgedAnswer naming what came back for anything else: a redirect (any
 * 3xx), another 2xx (201, 204), a body that is empty, not JSON, cut short, or JSON of another shape.
 */
export function judgeCustomerioAnswer(
  trackUrl: string,
  requestUrl: string,
  status: number,
  headers: Readonly<Record<string, string>>,
  bodyText: string,
): UnacknowledgedAnswer | undefined {
  if (status < 200 || status >= 400) return undefined;
  const batch = /\/api\/v2\/batch$/.test(new URL(requestUrl).pathname);
  let problem: AnswerProblem | undefined;
  if (status >= 300) problem = 'redirect';
  else if (status !== 200 && !(status === 207 && batch)) problem = 'wrong-status';
  else {
    const body = parseBody(bodyText);
    if (body.kind === 'truncated') problem = 'truncated';
    else if (body.kind !== 'json') problem = 'not-json';
    else if (!isObject(body.value) || (status === 207 && !Array.isArray(body.value.errors))) problem = 'wrong-shape';
  }
  if (problem === undefined) return undefined;
  return unacknowledged(
    {
      service: 'Customer.io',
      baseUrl: trackUrl,
      expected: batch ? CUSTOMERIO_BATCH_SUCCESS : CUSTOMERIO_SUCCESS,
      endpointSetting: 'CUSTOMERIO_TRACK_URL',
      endpointSettings: ENDPOINT_SETTINGS.customerio,
    },
    { status, problem, requestUrl, location: headers.location, body: bodyText, contentType: headers['content-type'] },
  );
}

type Judge = (status: number, headers: Record<string, string>, body: string) => UnacknowledgedAnswer | undefined;

/**
 * fetch's response handler, wrapped: a refusal (4xx, 5xx) streams through as it comes; any other answer is held
 * until it is complete, judged, and then either handed on whole or turned into the request's error.
 */
class JudgedAnswer implements Dispatcher.DispatchHandlers {
  private held: { status: number; rawHeaders: Buffer[]; resume: () => void; statusText: string } | undefined;
  private readonly chunks: Buffer[] = [];

  constructor(
    private readonly inner: Dispatcher.DispatchHandlers,
    private readonly judge: Judge,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.inner.onConnect?.(abort);
  }

  onResponseStarted(): void {
    this.inner.onResponseStarted?.();
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: import('node:stream').Duplex): void {
    this.inner.onUpgrade?.(statusCode, headers, socket);
  }

  onBodySent(chunkSize: number, totalBytesSent: number): void {
    this.inner.onBodySent?.(chunkSize, totalBytesSent);
  }

  onError(err: Error): void {
    this.inner.onError?.(err);
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (status < 200 || status >= 400) return this.inner.onHeaders?.(status, rawHeaders, resume, statusText) ?? true;
    this.held = { status, rawHeaders, resume, statusText };
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (!this.held) return this.inner.onData?.(chunk) ?? true;
    this.chunks.push(chunk);
    return true;
  }

  onComplete(trailers: string[] | null): void {
    const held = this.held;
    if (!held) {
      this.inner.onComplete?.(trailers);
      return;
    }
    const body = Buffer.concat(this.chunks);
    const headers = headerRecord(held.rawHeaders);
    const problem = this.judge(held.status, headers, decoded(body, headers['content-encoding']));
    if (problem) {
      this.inner.onError?.(problem);
      return;
    }
    this.inner.onHeaders?.(held.status, held.rawHeaders, held.resume, held.statusText);
    if (body.length > 0) this.inner.onData?.(body);
    this.inner.onComplete?.(trailers);
  }
}

/** Lower-case names; repeated ones joined with ", ". */
function headerRecord(raw: readonly Buffer[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return headers;
}

/**
 * The body as text, for judging only (fetch still gets the bytes as they came and decodes them itself): fetch
 * asks for gzip and deflate, and a service may use them. A body that does not decode reads as cut short.
 */
function decoded(body: Buffer, encoding: string | undefined): string {
  const coding = encoding?.trim().toLowerCase();
  if (!coding || coding === 'identity' || body.length === 0) return body.toString('utf8');
  try {
    if (coding === 'gzip' || coding === 'x-gzip') return gunzipSync(body).toString('utf8');
    if (coding === 'br') return brotliDecompressSync(body).toString('utf8');
    if (coding === 'deflate') {
      try {
        return inflateSync(body).toString('utf8');
      } catch {
        return inflateRawSync(body).toString('utf8');
      }
    }
  } catch {
    // Judged as JSON cut short, a passing fault, and the sentence says what it was.
    return `{"(a ${coding} body that does not decode)"`;
  }
  return body.toString('utf8');
}

/**
 * customerio-node sets Content-Length itself and fetch adds its own, so the header arrives as "49, 49". undici 6
 * reads the first number; undici 7 refuses the request (UND_ERR_INVALID_ARG). One value is what was meant.
 */
function withSingleContentLength(options: Dispatcher.DispatchOptions): Dispatcher.DispatchOptions {
  const headers = options.headers;
  if (!headers || Array.isArray(headers) || typeof headers !== 'object' || Symbol.iterator in headers) return options;
  const record = headers as Record<string, string | string[] | undefined>;
  for (const [name, value] of Object.entries(record)) {
    if (name.toLowerCase() !== 'content-length' || typeof value !== 'string' || !value.includes(',')) continue;
    const values = new Set(value.split(',').map((v) => v.trim()));
    if (values.size === 1) return { ...options, headers: { ...record, [name]: [...values][0]! } };
  }
  return options;
}
