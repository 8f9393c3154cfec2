import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { CustomerioDestination } from '../../src/destinations/customerio.js';
import { SegmentDestination } from '../../src/destinations/segment.js';
import type { DeliveryOutcome, DestinationClient } from '../../src/destinations/types.js';
import { UnavailableError } from '../../src/errors.js';
import type { Operation } from '../../src/plan/types.js';
import { runCli, tempDir } from '../support/cli.js';
import { plannedIds } from '../support/plan.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';

/**
 * Issue 17, guarantee 1 for the destinations: an operation is `sent` only on the service's documented success
 * answer (Segment `200 {"success": true}`; Customer.io 200 with JSON, or 207 with per-item errors on a v2 batch),
 * and guarantee 2's rule for the SDKs: no redirect is followed. Every answer in the table below only looks like
 * success to an SDK (@segment/analytics-node takes 200–399; customerio-node any 2xx, an empty body as `{}`, and
 * follows redirects itself); the real SDKs are driven against a server that gives it, and `check` gets it too.
 */

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

interface Asked {
  method: string;
  path: string;
}

/** A loopback server that answers whatever `answer` says, and remembers what it was asked. */
class AnswerServer {
  readonly asked: Asked[] = [];
  base = '';
  private server: Server | undefined;

  constructor(public answer: (req: Asked, server: AnswerServer) => Answer) {}

  async start(): Promise<string> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        const asked = { method: req.method ?? '', path: req.url ?? '' };
        this.asked.push(asked);
        const { status, headers = {}, body = '' } = this.answer(asked, this);
        res.writeHead(status, headers);
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.base;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const stops: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

async function serve(answer: (req: Asked, server: AnswerServer) => Answer): Promise<AnswerServer> {
  const server = new AnswerServer(answer);
  await server.start();
  stops.push(() => server.stop());
  return server;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const SEGMENT_OK: Answer = { status: 200, headers: JSON_TYPE, body: '{"success":true}' };
const CIO_OK: Answer = { status: 200, headers: JSON_TYPE, body: '{}' };

type Target = 'Segment' | 'Customer.io v1' | 'Customer.io v2';
const TARGETS: readonly Target[] = ['Segment', 'Customer.io v1', 'Customer.io v2'];

interface Row {
  name: string;
  /** Which destinations it is a wrong answer for (default: all). */
  for?: readonly Target[];
  answer: (req: Asked, server: AnswerServer, success: Answer) => Answer;
  /** What the sentence says came back (after "answered "). */
  says: RegExp;
  /** A passing fault: retried, never stops the run. */
  transient?: boolean;
}

const HTML = '<!DOCTYPE html>\n<html><head><title>Sign in to the hotel Wi-Fi</title></head><body>…</body></html>';

const ROWS: readonly Row[] = [
  { name: '301 from http:// to https:// (the issue\'s example)', answer: (req, s) => ({ status: 301, headers: { location: `${s.base.replace('http:', 'https:')}${req.path}` } }), says: /^301 \(a redirect to https:\/\/127\.0\.0\.1:\d+\/\S+\)$/ },
  { name: '302 to a relative path', answer: () => ({ status: 302, headers: { location: '/elsewhere' }, body: 'Found' }), says: /^302 \(a redirect to http:\/\/127\.0\.0\.1:\d+\/elsewhere\)$/ },
  { name: '303 to another host', answer: () => ({ status: 303, headers: { location: 'https://login.example.net/?token=abc' } }), says: /^303 \(a redirect to https:\/\/login\.example\.net\/\?token=\*\*\*\)$/ },
  { name: '307 without a Location', answer: () => ({ status: 307 }), says: /^307 \(a redirect without a Location\)$/ },
  { name: '308 with a body', answer: (req, s) => ({ status: 308, headers: { location: `${s.base}/v9${req.path}`, ...JSON_TYPE }, body: '{"success":true}' }), says: /^308 \(a redirect to http:\/\/127\.0\.0\.1:\d+\/v9\/\S+\)$/ },
  // Followed, a loop would be asked again and again; after 25 hops this one gives in, so an unbounded follower ends.
  { name: 'a redirect loop', answer: (req, s, ok) => (s.asked.length > 25 ? ok : { status: 301, headers: { location: `${s.base}${req.path}` } }), says: /^301 \(a redirect to http:\/\/127\.0\.0\.1:\d+\/\S+\)$/ },
  { name: '200 with an HTML page', answer: () => ({ status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: HTML }), says: /^200 with a body starting "<!DOCTYPE html> <html><head><title>Sign in to the hotel Wi-F…" \(text\/html\)$/ },
  { name: '200 with an empty body', answer: () => ({ status: 200, headers: JSON_TYPE }), says: /^200 with an empty body \(application\/json\)$/ },
  { name: '200 with text/plain "OK"', answer: () => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: 'OK' }), says: /^200 with a body starting "OK" \(text\/plain\)$/ },
  { name: '200 with JSON cut short', answer: (_req, _s, ok) => ({ status: 200, headers: JSON_TYPE, body: String(ok.body).slice(0, -1) || '{' }), says: /^200 with JSON cut short "\{.*" \(application\/json\)$/, transient: true },
  { name: '200 gzip that does not decode', answer: () => ({ status: 200, headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: gzipSync('{"success":true}').subarray(0, 12) }), for: ['Customer.io v1', 'Customer.io v2'], says: /^200 with JSON cut short .*does not decode/, transient: true },
  { name: '200 with a JSON array', answer: () => ({ status: 200, headers: JSON_TYPE, body: '[]' }), says: /^200 with \[\] \(application\/json\)$/ },
  { name: '200 with a JSON string', answer: () => ({ status: 200, headers: JSON_TYPE, body: '"ok"' }), says: /^200 with "ok" \(application\/json\)$/ },
  { name: '204 No Content', answer: () => ({ status: 204 }), says: /^204 with an empty body \(no content type\)$/ },
  { name: '202 with the success body', answer: (_req, _s, ok) => ({ ...ok, status: 202 }), says: /^202 with \{.*\} \(application\/json\)$/ },
  { name: '201 Created', answer: () => ({ status: 201, headers: JSON_TYPE, body: '{"id":1}' }), says: /^201 with \{"id":1\} \(application\/json\)$/ },
  { name: '200 {} (not Segment\'s success)', for: ['Segment'], answer: () => ({ status: 200, headers: JSON_TYPE, body: '{}' }), says: /^200 with \{\} \(application\/json\)$/ },
  { name: '200 {"success": false}', for: ['Segment'], answer: () => ({ status: 200, headers: JSON_TYPE, body: '{"success":false}' }), says: /^200 with \{"success":false\} \(application\/json\)$/ },
  { name: '200 {"success": "true"} (a string)', for: ['Segment'], answer: () => ({ status: 200, headers: JSON_TYPE, body: '{"success":"true"}' }), says: /^200 with \{"success":"true"\} \(application\/json\)$/ },
  { name: '207 on a v1 call', for: ['Customer.io v1'], answer: () => ({ status: 207, headers: JSON_TYPE, body: '{"errors":[]}' }), says: /^207 with \{"errors":\[\]\} \(application\/json\)$/ },
  { name: '207 without its errors list', for: ['Customer.io v2'], answer: () => ({ status: 207, headers: JSON_TYPE, body: '{"failed":1}' }), says: /^207 with \{"failed":1\} \(application\/json\)$/ },
  { name: '207 with an item error that names no operation', for: ['Customer.io v2'], answer: () => ({ status: 207, headers: JSON_TYPE, body: '{"errors":[{"batch_index":9,"reason":"invalid"}]}' }), says: /^207 with \{"errors":\[\{"batch_index":9,"reason":"invalid"\}\]\} \(application\/json\)$/ },
];

/** Answers the table does not count as wrong, so the rule is no blanket refusal: the body decides, not its labels. */
const GOOD: readonly { name: string; for: readonly Target[]; answer: Answer }[] = [
  { name: 'Segment\'s success labelled text/plain', for: ['Segment'], answer: { status: 200, headers: { 'content-type': 'text/plain' }, body: '{"success": true}' } },
  { name: 'Customer.io\'s {} gzipped', for: ['Customer.io v1', 'Customer.io v2'], answer: { status: 200, headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body: gzipSync('{}') } },
  { name: 'Customer.io\'s {} without a content type', for: ['Customer.io v1', 'Customer.io v2'], answer: { status: 200, body: '{}' } },
];

function operations(target: Target): Operation[] {
  const base = { userId: 'u1', participantId: 'p1', bytes: 0 };
  const identify = (destination: 'segment' | 'customerio', payload: Record<string, unknown>): Operation => ({
    ...base,
    destination,
    kind: 'identify',
    key: `identify-${destination}`,
    payload,
    change: 'new',
    changes: [],
    traits: {},
    traitsHash: 'h',
    tierChanges: 0,
  });
  const track = (destination: 'segment' | 'customerio', payload: Record<string, unknown>): Operation =>
    ({ ...base, destination, kind: 'track', key: `track-${destination}`, event: 'referral_converted', payload }) as unknown as Operation;
  if (target === 'Segment') {
    return [
      identify('segment', { traits: { referral_count: 1 }, messageId: 'rs1-ack-identify' }),
      track('segment', { event: 'Referral Converted', properties: { n: 1 }, timestamp: '2025-01-01T00:00:00Z', messageId: 'rs1-ack-track' }),
    ];
  }
  if (target === 'Customer.io v1') return [identify('customerio', { attributes: { referral_count: 1 } })];
  return [
    identify('customerio', { type: 'person', action: 'identify', identifiers: { id: 'u1' }, attributes: { referral_count: 1 } }),
    track('customerio', { type: 'person', action: 'event', identifiers: { id: 'u1' }, name: 'referral_converted', id: '01HZX3Y8K6ZQ2T9V7W5N4M3B2A', timestamp: 1_700_000_000 }),
  ];
}

function destination(target: Target, url: string): DestinationClient {
  const client =
    target === 'Segment'
      ? new SegmentDestination({ writeKey: 'wk_ack', host: url, httpTimeoutMs: 10_000 })
      : new CustomerioDestination({ siteId: 'site', apiKey: 'key', trackUrl: url, api: target === 'Customer.io v1' ? 'v1' : 'v2', timeoutMs: 10_000 });
  stops.push(() => client.close(1_000));
  return client;
}

/** The API paths a send of these operations asks, once each: anything else was a redirect followed. */
function apiPaths(target: Target): string[] {
  if (target === 'Segment') return ['POST /v1/batch'];
  if (target === 'Customer.io v1') return ['PUT /api/v1/customers/u1'];
  return ['POST /api/v2/batch'];
}

const cells = TARGETS.flatMap((target) => ROWS.filter((row) => !row.for || row.for.includes(target)).map((row) => ({ target, row })));

describe('an answer that is not the documented success is never `sent`', () => {
  it.each(cells.map((c) => [c.target, c.row.name, c] as const))('%s, %s: failed with the reason naming what came back, and no redirect followed', async (target, _name, { row }) => {
    const success = target === 'Segment' ? SEGMENT_OK : CIO_OK;
    const server = await serve((req, s) => row.answer(req, s, success));
    const client = destination(target, server.base);
    const ops = operations(target);
    const result = await client.send(ops).then(
      (outcomes) => ({ outcomes, error: undefined }),
      (error: unknown) => ({ outcomes: [] as DeliveryOutcome[], error }),
    );
    const service = target === 'Segment' ? 'Segment' : 'Customer.io';
    const sentence = new RegExp(`^${service.replace('.', '\\.')} at http://127\\.0\\.0\\.1:\\d+ answered (.*), not its success answer \\(.+\\)\\.?$`);
    if (row.transient) {
      // A passing fault: every operation comes back to be retried, with the sentence as its reason.
      expect(result.error).toBeUndefined();
      expect(result.outcomes.map((o) => o.key).sort()).toEqual(ops.map((o) => o.key).sort());
      for (const { verdict } of result.outcomes) {
        expect(verdict.kind).toBe('retry');
        const reason = verdict.kind === 'retry' ? verdict.reason : '';
        expect(reason).toMatch(sentence);
        expect(sentence.exec(reason)![1]).toMatch(row.says);
      }
    } else {
      // The endpoint is wrong for every request: the run stops with exit 69, as with refused credentials, and no
      // outcome is recorded (the operations stay queued).
      expect(result.error).toBeInstanceOf(UnavailableError);
      const error = result.error as UnavailableError;
      expect(error.exitCode).toBe(69);
      expect(error.message).toMatch(sentence);
      expect(sentence.exec(error.message)![1]).toMatch(row.says);
      expect(error.message).not.toMatch(/token=abc/);
      expect(error.hint).toMatch(row.says.source.startsWith('^3') ? /follows no redirect/ : /points at something other than the/);
    }
    // Each API path asked once: the Location of a redirect (the loop's included) never.
    expect(server.asked.map((a) => `${a.method} ${a.path}`)).toEqual(apiPaths(target));
  });

  it.each(TARGETS.flatMap((target) => GOOD.filter((g) => g.for.includes(target)).map((g) => [target, g.name, g.answer] as const)))('%s, %s: sent', async (target, _name, answer) => {
    const server = await serve(() => answer);
    const client = destination(target, server.base);
    const outcomes = await client.send(operations(target));
    expect(outcomes.map((o) => o.verdict)).toEqual(operations(target).map(() => ({ kind: 'sent' })));
  });

  it('Customer.io v2: a 207 still fails only the items it names, and the rest are sent', async () => {
    const server = await serve(() => ({ status: 207, headers: JSON_TYPE, body: '{"errors":[{"batch_index":1,"reason":"invalid","field":"name","message":"too long"}]}' }));
    const outcomes = await destination('Customer.io v2', server.base).send(operations('Customer.io v2'));
    expect(outcomes.map((o) => o.verdict)).toEqual([{ kind: 'sent' }, { kind: 'dead', reason: 'Customer.io refused it: invalid, field name, too long' }]);
  });
});

const checkCells = (['Segment', 'Customer.io'] as const).flatMap((service) =>
  ROWS.filter((row) => !row.for || row.for.includes(service === 'Segment' ? 'Segment' : 'Customer.io v1'))
    // A 207 is wrong for the region lookup as for a v1 call; the gzip row is Customer.io's.
    .map((row) => ({ service, row })),
);

describe('check reports the same answers as failing, with the same sentence', () => {
  it.each(checkCells.map((c) => [c.service, c.row.name, c] as const))('%s, %s', async (service, _name, { row }) => {
    const target: Target = service === 'Segment' ? 'Segment' : 'Customer.io v1';
    const success = service === 'Segment' ? SEGMENT_OK : CIO_OK;
    const server = await serve((req, s) => row.answer(req, s, success));
    const result = await destination(target, server.base).check();
    expect(result.ok).toBe(false);
    expect(result.transient === true).toBe(row.transient === true);
    const sentence = new RegExp(`^${service.replace('.', '\\.')} at http://127\\.0\\.0\\.1:\\d+ answered (.*), not its success answer \\(.+\\)\\.$`);
    expect(result.message).toMatch(sentence);
    expect(sentence.exec(result.message)![1]).toMatch(row.says);
    expect(result.message).not.toMatch(/reachable/);
    if (!row.transient) {
      // What a send gets from the same server is the same sentence (the redirect's target aside, for
      // Customer.io: the check asks another path).
      const sent = await destination(target, server.base).send(operations(target)).catch((error: unknown) => error);
      expect(sent).toBeInstanceOf(UnavailableError);
      if (service === 'Segment' || !/^\^3/.test(row.says.source)) expect((sent as UnavailableError).message).toBe(result.message);
    }
    // One request for the check: no redirect followed.
    expect(server.asked.length).toBe(row.transient ? 1 : 2);
  });

  it('a GET refused with 404 still shows Segment is reachable (only a send can get its success answer)', async () => {
    const server = await serve(() => ({ status: 404, headers: JSON_TYPE, body: '{"message":"not found"}' }));
    const result = await destination('Segment', server.base).check();
    expect(result).toMatchObject({ ok: true, message: expect.stringContaining('is reachable') as unknown });
  });
});

function stateRows(cwd: string, sql: string): Record<string, unknown>[] {
  const db = new Database(join(cwd, '.referral-sync', 'state.db'), { readonly: true });
  try {
    return db.prepare(sql).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

const STACK_TRACE = /\n\s+at .+:\d+:\d+\)?$/m;

describe('end to end through the built CLI', () => {
  let services: Services | undefined;
  afterEach(async () => {
    await services?.stop();
    services = undefined;
  });

  /** A healthy run after the failed one: exit 0, and every planned id has arrived exactly once. */
  async function healthyRunDeliversEachIdOnce(cwd: string, file: string, ids: { segment: string[]; customerioEvents: string[] }): Promise<void> {
    const again = await runCli(['sync', '--file', file], { cwd, env: services!.env });
    expect(again.stderr).not.toMatch(STACK_TRACE);
    expect(again.code).toBe(0);
    expect([...services!.segment.arrivals].sort()).toEqual([...ids.segment].sort());
    expect([...services!.customerio.eventArrivals].sort()).toEqual([...ids.customerioEvents].sort());
    expect(stateRows(cwd, `SELECT COUNT(*) AS n FROM deliveries WHERE status != 'sent'`)).toEqual([{ n: 0 }]);
  }

  it('SEGMENT_HOST at an http:// URL answering 301 to https://: check and sync fail with exit 69 and the sentence, nothing is sent; fixed, each id is delivered once', async () => {
    services = await startServices();
    const redirecting = await serve((req, s) => ({ status: 301, headers: { location: `${s.base.replace('http:', 'https:')}${req.path}` } }));
    const cwd = tempDir();
    const file = writeProgram(cwd, 12);
    const ids = await plannedIds(cwd, file, services.env);
    const env = { ...services.env, SEGMENT_HOST: redirecting.base };
    const sentence = `Segment at ${redirecting.base} answered 301 (a redirect to ${redirecting.base.replace('http:', 'https:')}/v1/batch), not its success answer (200 {"success": true}).`;

    const check = await runCli(['check'], { cwd, env });
    expect(check.code).toBe(69);
    expect(check.stdout).toContain(`FAIL ${sentence}\n     Set SEGMENT_HOST to the URL it redirects to: referral-sync follows no redirect.`);
    expect(check.stdout).not.toContain('is reachable');

    const sync = await runCli(['sync', '--file', file], { cwd, env });
    expect(sync.code).toBe(69);
    expect(sync.stderr.split('\n')[0]).toBe(`error: ${sentence}`);
    expect(sync.stderr).not.toMatch(STACK_TRACE);
    // The check before the run stopped it: nothing reached either destination, nothing is recorded sent.
    expect(redirecting.asked.every((a) => a.method === 'GET')).toBe(true);
    expect(services.segment.arrivals).toEqual([]);
    expect(services.customerio.eventArrivals).toEqual([]);
    expect(stateRows(cwd, `SELECT COUNT(*) AS n FROM deliveries WHERE status = 'sent'`)).toEqual([{ n: 0 }]);

    await healthyRunDeliversEachIdOnce(cwd, file, ids);
  });

  const midRun = [
    {
      name: 'Segment answers its check, then every batch with a 301 to https://',
      service: 'segment' as const,
      answer: (req: Asked, s: AnswerServer): Answer =>
        req.method === 'GET' ? { status: 404, headers: JSON_TYPE, body: '{"success":false}' } : { status: 301, headers: { location: `${s.base.replace('http:', 'https:')}${req.path}` } },
      says: (base: string) => `Segment at ${base} answered 301 (a redirect to ${base.replace('http:', 'https:')}/v1/batch), not its success answer (200 {"success": true}).`,
    },
    {
      name: 'Customer.io answers its check, then every v2 batch with an HTML 200',
      service: 'customerio' as const,
      answer: (req: Asked): Answer =>
        req.method === 'GET' ? { status: 200, headers: JSON_TYPE, body: '{"region":"us","url":"https://track.customer.io"}' } : { status: 200, headers: { 'content-type': 'text/html' }, body: HTML },
      says: (base: string) => `Customer.io at ${base} answered 200 with a body starting "<!DOCTYPE html> <html><head><title>Sign in to the hotel Wi-F…" (text/html), not its success answer (200 with JSON, or 207 with per-item errors).`,
    },
  ];

  it.each(midRun.map((m) => [m.name, m] as const))('mid-run, %s: exit 69 with the sentence, none of it recorded sent, the run failed; a healthy run delivers each id once', async (_name, cell) => {
    services = await startServices();
    const wrong = await serve(cell.answer);
    const cwd = tempDir();
    const file = writeProgram(cwd, 12);
    const ids = await plannedIds(cwd, file, services.env);
    const env = { ...services.env, ...(cell.service === 'segment' ? { SEGMENT_HOST: wrong.base } : { CUSTOMERIO_TRACK_URL: wrong.base }) };

    const sync = await runCli(['sync', '--file', file], { cwd, env });
    expect(sync.code).toBe(69);
    expect(sync.stderr.split('\n')[0]).toBe(`error: ${cell.says(wrong.base)}`);
    expect(sync.stderr.split('\n')[1]).toMatch(/ What it did not acknowledge is kept, and the next run sends it\.$/);
    expect(sync.stderr).not.toMatch(STACK_TRACE);
    // It was asked to deliver, and nothing it answered is recorded sent.
    expect(wrong.asked.some((a) => a.method !== 'GET')).toBe(true);
    expect(stateRows(cwd, `SELECT COUNT(*) AS n FROM deliveries WHERE destination = '${cell.service}' AND status = 'sent'`)).toEqual([{ n: 0 }]);
    expect(stateRows(cwd, `SELECT status FROM runs ORDER BY id DESC LIMIT 1`)).toEqual([{ status: 'failed' }]);

    await healthyRunDeliversEachIdOnce(cwd, file, ids);
  });
});
