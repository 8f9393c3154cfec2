import { Analytics } from '@segment/analytics-node';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_RETRY } from '../../src/apply/retry.js';
import { HttpClient, NOT_JSON } from '../../src/http/client.js';
import { describeNetworkError, HttpError, isNetworkError, unreachableMessage } from '../../src/http/errors.js';
import { UndiciSegmentHttpClient } from '../../src/http/segment-http.js';
import { rateWindow, SlidingWindowLimiter } from '../../src/http/window-limiter.js';
import { FakeService, type FaultOptions } from '../fakes/http.js';
import { FakeSegment } from '../fakes/segment.js';

const SECRET = 'Bearer sk_live_do_not_show_3f9a';

/** A scripted service: answers from `script` in order (then 200 JSON), remembering which socket each request came on. */
class ScriptedService extends FakeService {
  readonly sockets = new Set<Socket>();
  readonly seen: { method: string; path: string; headers: IncomingMessage['headers']; body: string }[] = [];
  script: { status: number; body: string; headers?: Record<string, string> }[] = [];
  /** The answer once the script is used up; by default 200 JSON naming the path. */
  fallback: { status: number; body: string; headers?: Record<string, string> } | undefined;
  delayMs = 0;

  constructor(faults: FaultOptions = {}) {
    super(faults);
  }

  protected handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    this.sockets.add(req.socket);
    this.seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: body.toString('utf8') });
    const next = this.script.shift() ?? this.fallback ?? { status: 200, body: JSON.stringify({ ok: true, path: req.url }), headers: { 'content-type': 'application/json' } };
    setTimeout(() => {
      this.count(next.status);
      res.writeHead(next.status, next.headers ?? {});
      res.end(next.body);
    }, this.delayMs);
  }
}

const started: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const s of started.splice(0)) await s.stop();
});

async function start<T extends FakeService>(service: T): Promise<{ service: T; url: string }> {
  const url = await service.start();
  started.push(service);
  return { service, url };
}

function client(baseUrl: string, overrides: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}): HttpClient {
  const http = new HttpClient({
    service: 'Test',
    baseUrl,
    headers: { authorization: SECRET },
    connections: 2,
    limiter: new SlidingWindowLimiter([rateWindow('rate', 10_000)]),
    retry: { ...DEFAULT_RETRY, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    maxWaitMs: 60_000,
    ...overrides,
  });
  started.push({ stop: () => http.close() });
  return http;
}

describe('HttpClient (undici Pool)', () => {
  it('keeps to the connection cap and reuses its connections (keep-alive), with the base path and credentials on each request', async () => {
    const { service, url } = await start(new ScriptedService());
    service.delayMs = 20;
    const http = client(`${url}/v2`);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => http.getJson<{ path: string }>(`/items/${i}`, { page: 2 })));
    expect(answers.map((a) => a.path)).toEqual(Array.from({ length: 20 }, (_, i) => `/v2/items/${i}?page=2`));
    expect(service.log.maxConnections).toBeLessThanOrEqual(2);
    expect(service.sockets.size).toBeLessThanOrEqual(2);
    expect(service.seen.every((r) => r.headers.authorization === SECRET && r.headers.accept === 'application/json')).toBe(true);
    expect(http.requests).toBe(20);
  });

  it('posts JSON with its length, and gives 204 as undefined', async () => {
    const { service, url } = await start(new ScriptedService());
    service.script = [{ status: 204, body: '' }];
    const http = client(url);
    await expect(http.postJson('/token', { a: 'é' })).resolves.toBeUndefined();
    expect(service.seen[0]).toMatchObject({ method: 'POST', body: '{"a":"é"}' });
    expect(service.seen[0]!.headers['content-type']).toBe('application/json');
    expect(service.seen[0]!.headers['content-length']).toBe(String(Buffer.byteLength('{"a":"é"}')));
  });

  it('a 200 that is not JSON is an HttpError NOT_JSON naming what came, never an empty answer; no credentials in it', async () => {
    const { service, url } = await start(new ScriptedService());
    service.script = [{ status: 200, body: '<html><body>Sign in to the hotel Wi-Fi</body></html>', headers: { 'content-type': 'text/html' } }];
    const error = await client(url).getJson('/participants').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpError);
    expect((error as HttpError).details.code).toBe(NOT_JSON);
    expect((error as HttpError).message).toBe('Test answered 200 with a body starting "<html><body>Sign in to the hotel Wi-Fi</body></html>" (text/html), not JSON');
    expect(JSON.stringify(error) + String((error as Error).stack)).not.toContain('sk_live');
  });

  it('retries a 5xx and tells the pace: throttled on 429/5xx, healthy on any other answer', async () => {
    const { service, url } = await start(new ScriptedService());
    service.script = [
      { status: 503, body: '{"message":"busy"}' },
      { status: 200, body: '{"n":1}' },
      { status: 404, body: '{"message":"Not Found"}' },
    ];
    const pace = { healthy: 0, throttled: 0 };
    const http = client(url, { pace: { healthy: () => void (pace.healthy += 1), throttled: () => void (pace.throttled += 1) } });
    await expect(http.getJson('/a')).resolves.toEqual({ n: 1 });
    const missing = await http.getJson('/b').catch((e: unknown) => e);
    expect(missing).toMatchObject({ status: 404, message: 'Not Found' });
    expect(pace).toEqual({ healthy: 2, throttled: 1 });
    expect(service.log.total).toBe(3);
  });

  it('a service that never answers fails after the timeout and the retries, as unreachable, in words', async () => {
    const { service, url } = await start(new ScriptedService({ hangPosts: true }));
    const http = client(url, { bodyTimeoutMs: 300, retry: { ...DEFAULT_RETRY, maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 5 } });
    const started = performance.now();
    const error = await http.postJson('/token', {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpError);
    expect((error as HttpError).message).toBe(`Test is unreachable at ${url}: no answer within 0.3 s`);
    expect(service.log.total).toBe(2);
    // Generous: two 0.3 s timeouts, far from the 30 s default (which would take 60 s).
    expect(performance.now() - started).toBeLessThan(30_000);
  });
});

describe('UndiciSegmentHttpClient', () => {
  it('carries the real SDK: identify + closeAndFlush reach the fake Segment through it, and onResponse sees each answer', async () => {
    const { service: segment, url } = await start(new FakeSegment('wk_unit'));
    const responses: { status: number; body: string }[] = [];
    const http = new UndiciSegmentHttpClient({ onResponse: (status, _headers, body) => responses.push({ status, body }) });
    started.push({ stop: () => http.close() });
    const analytics = new Analytics({ writeKey: 'wk_unit', host: url, httpClient: http, flushAt: 2, maxRetries: 0 });
    analytics.identify({ userId: 'u1', traits: { referral_tier: 'champion' } });
    analytics.identify({ userId: 'u2', traits: { referral_tier: 'active' } });
    await analytics.closeAndFlush();
    expect(segment.identifies().map((m) => m.userId).sort()).toEqual(['u1', 'u2']);
    expect(responses).toEqual([{ status: 200, body: '{"success":true}' }]);
  });

  it('posts body and headers as given and returns status, reason, headers and the body text (Retry-After, error message)', async () => {
    const { service, url } = await start(new ScriptedService());
    service.script = [{ status: 429, body: '{"success":false,"message":"slow down"}', headers: { 'retry-after': '7', 'content-type': 'application/json' } }];
    const seen: { status: number; headers: Record<string, string>; body: string }[] = [];
    const http = new UndiciSegmentHttpClient({ onResponse: (status, headers, body) => seen.push({ status, headers: { ...headers }, body }) });
    started.push({ stop: () => http.close() });
    const response = await http.makeRequest({ url: `${url}/v1/batch?x=1`, method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Basic d2s6' }, body: '{"batch":[]}', httpRequestTimeout: 5_000 });
    expect(response).toMatchObject({ status: 429, statusText: 'Too Many Requests' });
    expect((response.headers as Record<string, string>)['retry-after']).toBe('7');
    await expect(response.text!()).resolves.toBe('{"success":false,"message":"slow down"}');
    expect(seen).toEqual([{ status: 429, headers: expect.objectContaining({ 'retry-after': '7' }), body: '{"success":false,"message":"slow down"}' }]);
    expect(service.seen[0]).toMatchObject({ method: 'POST', path: '/v1/batch?x=1', body: '{"batch":[]}' });
    expect(service.seen[0]!.headers.authorization).toBe('Basic d2s6');
  });

  it('keeps one pool per origin under its connection cap', async () => {
    const a = await start(new ScriptedService());
    const b = await start(new ScriptedService());
    a.service.delayMs = 20;
    b.service.delayMs = 20;
    // Segment's success answer: the client throws on any other 2xx (acknowledgement.test.ts).
    a.service.fallback = b.service.fallback = { status: 200, body: '{"success":true}', headers: { 'content-type': 'application/json' } };
    const http = new UndiciSegmentHttpClient({ connections: 3 });
    started.push({ stop: () => http.close() });
    const post = (url: string) => http.makeRequest({ url: `${url}/v1/batch`, method: 'POST', headers: {}, body: '{}', httpRequestTimeout: 5_000 });
    const answers = await Promise.all([...Array.from({ length: 15 }, () => post(a.url)), ...Array.from({ length: 15 }, () => post(b.url))]);
    expect(answers.every((r) => r.status === 200)).toBe(true);
    expect(a.service.log.total).toBe(15);
    expect(b.service.log.total).toBe(15);
    expect(a.service.sockets.size).toBeLessThanOrEqual(3);
    expect(b.service.sockets.size).toBeLessThanOrEqual(3);
  });

  it('gives up after httpRequestTimeout with a TimeoutError, as fetch would', async () => {
    const { url } = await start(new ScriptedService({ hangPosts: true }));
    const http = new UndiciSegmentHttpClient();
    started.push({ stop: () => http.close() });
    const error = await http.makeRequest({ url: `${url}/v1/batch`, method: 'POST', headers: {}, body: '{}', httpRequestTimeout: 200 }).catch((e: unknown) => e);
    expect((error as Error).name).toBe('TimeoutError');
  });

  it('abandons requests in flight when its signal is aborted', async () => {
    const { service, url } = await start(new ScriptedService({ hangPosts: true }));
    const stop = new AbortController();
    const http = new UndiciSegmentHttpClient({ signal: stop.signal });
    started.push({ stop: () => http.close() });
    const pending = Promise.all(
      Array.from({ length: 3 }, () => http.makeRequest({ url: `${url}/v1/batch`, method: 'POST', headers: {}, body: '{}', httpRequestTimeout: 60_000 }).catch((e: unknown) => e)),
    );
    while (service.log.total < 3) await new Promise((resolve) => setTimeout(resolve, 10));
    stop.abort(new Error('stopping: SIGTERM'));
    const errors = await pending;
    expect(errors.map((e) => (e as Error).message)).toEqual(['stopping: SIGTERM', 'stopping: SIGTERM', 'stopping: SIGTERM']);
  });
});

describe('network errors in words (issue 10)', () => {
  it('names the code in words, looks through fetch\'s causes, and redacts what it quotes', () => {
    const fetchFailed = (cause: unknown): Error => Object.assign(new TypeError('fetch failed'), { cause });
    expect(describeNetworkError(fetchFailed(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' })))).toBe('connection refused (ECONNREFUSED)');
    const aggregate = new AggregateError([Object.assign(new Error('x'), { code: 'ENOTFOUND' })]);
    expect(describeNetworkError(fetchFailed(aggregate))).toBe('host not found (ENOTFOUND)');
    expect(describeNetworkError(Object.assign(new Error('t'), { code: 'UND_ERR_HEADERS_TIMEOUT' }), 15_000)).toBe('no answer within 15 s');
    expect(describeNetworkError(new DOMException('The operation was aborted due to timeout', 'TimeoutError'), 10_000)).toBe('no answer within 10 s');
    expect(describeNetworkError(fetchFailed(new Error('bad port')))).toBe('bad port');
    expect(describeNetworkError(new Error('cannot reach http://u:pw@proxy:8080/'))).toBe('cannot reach http://***@proxy:8080/');
    expect(isNetworkError(Object.assign(new Error('aborted'), { code: 'UND_ERR_ABORTED' }))).toBe(false);
    expect(unreachableMessage('Segment', 'https://x.example/?write_key=abc', 'connection reset (ECONNRESET)')).toBe(
      'Segment is unreachable at https://x.example/?write_key=***: connection reset (ECONNRESET)',
    );
  });
});
