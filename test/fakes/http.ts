import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What every fake service shares: a loopback HTTP server, a seeded random source, and faults injected before
 * a request is processed (so a faulted request changes nothing on the fake's side, as with a real service
 * that failed before committing).
 */
export interface FaultOptions {
  /** Share of requests answered 500/502/503 (chosen at random). */
  error5xxRate?: number;
  /** Share of requests answered 429 with Retry-After. */
  rate429?: number;
  retryAfterSeconds?: number;
  /** Share of requests whose connection is destroyed without an answer. */
  dropRate?: number;
  /** Delay before answering every request. */
  delayMs?: number;
  /** A hung service: every POST is received and never answered (GETs, such as a credentials check, still are). */
  hangPosts?: boolean;
  /** A real rate limit: at most `perSecond` requests a second (bucket of one second); beyond it, 429. */
  rateLimitPerSecond?: number;
  /** The injected faults (drops, 429s, 5xx) spare GETs (a credentials check): they hit only what carries data. */
  spareGets?: boolean;
  seed?: number;
}

export interface RequestLog {
  total: number;
  byStatus: Map<number | 'dropped' | 'hung', number>;
  /** 429s answered because the rate limit was exceeded (not injected ones). */
  rateLimited: number;
  /** Arrival time (ms, on the fake's `clock`) and path of every request. */
  arrivals: { at: number; path: string }[];
  /** Most TCP connections open at once. */
  maxConnections: number;
}

export function seededRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    // xorshift32: fast, deterministic, good enough for fault dice.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

export abstract class FakeService {
  faults: FaultOptions;
  /**
   * The fake's time: arrivals, its rate limit and (GrowSurf) its policy windows. Real by default; a test that runs
   * the CLI in-process with a fake clock (test/support/clock.ts) gives the fake the same one, so both agree.
   */
  clock: { now(): number } = { now: () => performance.now() };
  readonly log: RequestLog = { total: 0, byStatus: new Map(), rateLimited: 0, arrivals: [], maxConnections: 0 };
  private server: Server | undefined;
  /** TCP connections open right now (keep-alive ones included). */
  protected openConnections = 0;
  private random: () => number;
  private tokens = 0;
  private lastRefill: number | undefined;

  constructor(faults: FaultOptions = {}) {
    this.faults = faults;
    this.random = seededRandom(faults.seed ?? 1);
  }

  /** Replaces the faults (e.g. "the fake is fixed"). */
  setFaults(faults: FaultOptions): void {
    this.faults = faults;
    this.random = seededRandom(faults.seed ?? 1);
    this.tokens = faults.rateLimitPerSecond ?? 0;
  }

  async start(): Promise<string> {
    this.tokens = this.faults.rateLimitPerSecond ?? 0;
    this.server = createServer((req, res) => {
      void this.dispatch(req, res);
    });
    this.server.keepAliveTimeout = 5000;
    this.server.on('connection', (socket) => {
      this.openConnections += 1;
      this.log.maxConnections = Math.max(this.log.maxConnections, this.openConnections);
      socket.on('close', () => (this.openConnections -= 1));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  protected abstract handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void;

  protected json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    this.count(status);
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  protected count(status: number | 'dropped' | 'hung'): void {
    this.log.byStatus.set(status, (this.log.byStatus.get(status) ?? 0) + 1);
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    this.log.total += 1;
    this.log.arrivals.push({ at: this.clock.now(), path: (req.url ?? '').split('?')[0] ?? '' });
    if (this.faults.hangPosts && req.method === 'POST') {
      this.count('hung');
      return;
    }
    if (this.faults.delayMs) await new Promise((resolve) => setTimeout(resolve, this.faults.delayMs));
    if (this.faults.rateLimitPerSecond && !this.takeToken(this.faults.rateLimitPerSecond)) {
      this.log.rateLimited += 1;
      this.json(res, 429, { errors: [{ message: 'rate limit exceeded' }] }, { 'retry-after': '1' });
      return;
    }
    const dice = this.faults.spareGets && req.method === 'GET' ? 1 : this.random();
    const drop = this.faults.dropRate ?? 0;
    const e429 = this.faults.rate429 ?? 0;
    const e5xx = this.faults.error5xxRate ?? 0;
    if (dice < drop) {
      this.count('dropped');
      req.socket.destroy();
      return;
    }
    if (dice < drop + e429) {
      this.json(res, 429, { errors: [{ message: 'slow down' }] }, { 'retry-after': String(this.faults.retryAfterSeconds ?? 1) });
      return;
    }
    if (dice < drop + e429 + e5xx) {
      this.json(res, [500, 502, 503][Math.floor(this.random() * 3)]!, { errors: [{ message: 'injected failure' }] });
      return;
    }
    try {
      this.handle(req, body, res);
    } catch (error) {
      // A bug in a fake must fail the test loudly, not hang the client until its timeout.
      this.json(res, 500, { errors: [{ message: `fake crashed: ${String(error)}` }] });
    }
  }

  private takeToken(perSecond: number): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(perSecond, this.tokens + ((now - (this.lastRefill ?? now)) / 1000) * perSecond);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
