import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fault-injecting HTTP proxy for any fake service (test/fakes/*.ts) or any HTTP server at all: point the CLI at
 * the proxy's `url` instead of the fake's, and say which requests get which fault. A request that gets a fault is
 * answered by the proxy and never reaches the fake (like a service that failed before committing), except
 * `lostAck`, which the fake processes and whose answer is then lost. Every other request is passed through as is,
 * so once the rules are used up (or `heal()`ed) the fake behaves healthily, and what it recorded is exactly what
 * it accepted.
 *
 * Refused connections need no proxy: `closedPortUrl()` is a loopback URL nothing listens on.
 */

/** What the proxy answers instead of the service. */
export type Fault =
  /** Any status, with its headers and body (default: a JSON error body). */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string; contentType?: string }
  /** A redirect: to the same path over https (the proxy speaks only http), or to the very same URL (a loop). */
  | { kind: 'redirect'; to: 'https' | 'self'; status?: 301 | 302 | 307 | 308 }
  /** A 200 whose head and part of the body arrive, then the connection is destroyed. */
  | { kind: 'reset' }
  /** Passed to the service, which processes it; then the connection is destroyed before the answer gets back. */
  | { kind: 'lostAck' }
  /** Received and never answered; the connection stays open until the client gives up (or the proxy stops). */
  | { kind: 'hang' }
  /** A 200 with its head at once, then one byte of its body every `intervalMs` (slower than a body timeout). */
  | { kind: 'trickle'; intervalMs: number; body?: string };

export interface FaultRule {
  fault: Fault;
  /** Which requests the rule is about (default: every request). A string matches a path prefix (query left out). */
  match?: { method?: string; path?: string | RegExp };
  /** Matching requests let through before the fault starts (2 = the fault begins at the 3rd). */
  skip?: number;
  /** How many matching requests get the fault (default: all of them, for as long as the rule is in place). */
  times?: number;
}

/** The named faults of the fault matrix: every answer a sick service or a box on the way can give. */
export const FAULTS = {
  status: (status: number, headers: Record<string, string> = {}): Fault => ({ kind: 'status', status, headers }),
  redirectHttps: (): Fault => ({ kind: 'redirect', to: 'https', status: 301 }),
  redirectLoop: (): Fault => ({ kind: 'redirect', to: 'self', status: 302 }),
  /** A captive portal's or a proxy's page. */
  html200: (): Fault => ({ kind: 'status', status: 200, contentType: 'text/html; charset=utf-8', body: '<!doctype html><html><body><h1>Welcome</h1><p>Sign in to continue.</p></body></html>' }),
  text200: (): Fault => ({ kind: 'status', status: 200, contentType: 'text/plain', body: 'OK' }),
  empty200: (): Fault => ({ kind: 'status', status: 200, contentType: 'application/json', body: '' }),
  /** A JSON body cut short: the answer is complete at the HTTP level (Content-Length matches), the JSON is not. */
  truncated200: (): Fault => ({ kind: 'status', status: 200, contentType: 'application/json', body: '{"success": true, "participants": [{"id": "x' }),
  /** A JSON 200 in a shape the service does not document for this request (give the shape: it depends on the service). */
  shape200: (body: unknown): Fault => ({ kind: 'status', status: 200, contentType: 'application/json', body: JSON.stringify(body) }),
  reset: (): Fault => ({ kind: 'reset' }),
  lostAck: (): Fault => ({ kind: 'lostAck' }),
  hang: (): Fault => ({ kind: 'hang' }),
  trickle: (intervalMs: number): Fault => ({ kind: 'trickle', intervalMs }),
} as const;

export interface ProxiedRequest {
  method: string;
  path: string;
  /** The fault it got, or undefined when it was passed through. */
  fault: Fault['kind'] | undefined;
  /** When it arrived (performance.now()). */
  at: number;
}

interface ActiveRule extends FaultRule {
  seen: number;
  given: number;
}

export class FaultProxy {
  /** Every request, in arrival order. */
  readonly requests: ProxiedRequest[] = [];
  /** Called with every request as it arrives, before it is answered (e.g. to stop a client caught in a loop). */
  onRequest: ((request: ProxiedRequest, count: number) => void) | undefined;
  private rules: ActiveRule[] = [];
  private heals = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** Connections a hung or trickling answer holds open. */
  private readonly held = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private origin = '';
  private readonly upstream: URL;

  /** `upstream`: the service's base URL (only its origin is used; paths are passed through unchanged). */
  constructor(upstream: string) {
    this.upstream = new URL(upstream);
  }

  /** Starts listening on a loopback port; returns the proxy's origin (append the service's path prefix, if any). */
  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.dispatch(req, res));
    // A client that speaks TLS to this plain-HTTP port (a followed redirect to https) gets its connection closed.
    this.server.on('clientError', (_error, socket) => socket.destroy());
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.origin = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.origin;
  }

  get url(): string {
    return this.origin;
  }

  /** Adds a rule; rules are looked at in the order they were added, the first one that applies wins. */
  inject(rule: FaultRule): this {
    this.rules.push({ ...rule, seen: 0, given: 0 });
    return this;
  }

  /**
   * The service is healthy again: every request from now on is passed through. Answers already hung or trickling
   * stay as they are until `stop()`, as a sick service's would: their client ends them (a timeout, a stall bound).
   */
  heal(): void {
    this.heals += 1;
    this.rules = [];
  }

  /** Requests that got a fault. */
  get injected(): number {
    return this.requests.filter((r) => r.fault !== undefined).length;
  }

  async stop(): Promise<void> {
    this.endHeld();
    const server = this.server;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private endHeld(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.clear();
    // Hung and trickling answers hold their sockets: a healthy service does not.
    for (const socket of this.held) socket.destroy();
    this.held.clear();
  }

  private pick(method: string, path: string): Fault | undefined {
    for (const rule of this.rules) {
      const m = rule.match;
      if (m?.method && m.method.toUpperCase() !== method) continue;
      if (m?.path !== undefined && !(typeof m.path === 'string' ? path.startsWith(m.path) : m.path.test(path))) continue;
      rule.seen += 1;
      if (rule.seen <= (rule.skip ?? 0)) continue;
      if (rule.given >= (rule.times ?? Number.POSITIVE_INFINITY)) continue;
      rule.given += 1;
      return rule.fault;
    }
    return undefined;
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    let fault = this.pick(method, path);
    const request: ProxiedRequest = { method, path, fault: fault?.kind, at: performance.now() };
    this.requests.push(request);
    const heals = this.heals;
    this.onRequest?.(request, this.requests.length);
    // Healed by the hook: this request is passed through too.
    if (this.heals !== heals) {
      fault = undefined;
      request.fault = undefined;
    }
    if (!fault) return void (await this.forward(req, body, res));
    switch (fault.kind) {
      case 'status': {
        const text = fault.body ?? JSON.stringify({ message: `injected ${fault.status}`, errors: [{ message: `injected ${fault.status}` }] });
        res.writeHead(fault.status, { 'content-type': fault.contentType ?? 'application/json', 'content-length': Buffer.byteLength(text), ...fault.headers });
        res.end(text);
        return;
      }
      case 'redirect': {
        const location = fault.to === 'https' ? `https://127.0.0.1:${(this.server!.address() as AddressInfo).port}${req.url ?? '/'}` : `${this.origin}${req.url ?? '/'}`;
        res.writeHead(fault.status ?? 302, { location, 'content-type': 'text/html', 'content-length': 0 });
        res.end();
        return;
      }
      case 'reset': {
        const text = JSON.stringify({ success: true, message: 'this answer never arrives whole' });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.write(text.slice(0, 10));
        // Let the head and the first bytes leave before the connection goes.
        setTimeout(() => req.socket.destroy(), 20);
        return;
      }
      case 'lostAck': {
        // The service applies it; its answer is dropped with the connection.
        await this.exchange(req, body).catch(() => undefined);
        req.socket.destroy();
        return;
      }
      case 'hang': {
        this.held.add(req.socket);
        return;
      }
      case 'trickle': {
        this.held.add(req.socket);
        const text = fault.body ?? JSON.stringify({ success: true, message: 'x'.repeat(200) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        let sent = 0;
        const timer = setInterval(() => {
          if (res.destroyed || sent >= text.length) {
            clearInterval(timer);
            this.timers.delete(timer);
            if (!res.destroyed) res.end();
            return;
          }
          res.write(text[sent]!);
          sent += 1;
        }, fault.intervalMs);
        this.timers.add(timer);
        return;
      }
    }
  }

  /** Sends the request on to the service and returns its whole answer. */
  private exchange(req: IncomingMessage, body: Buffer): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const out = httpRequest(
        { host: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: this.upstream.host } },
        (answer) => {
          const parts: Buffer[] = [];
          answer.on('data', (chunk: Buffer) => parts.push(chunk));
          answer.on('end', () => resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: Buffer.concat(parts) }));
          answer.on('error', reject);
        },
      );
      out.on('error', reject);
      out.end(body);
    });
  }

  private async forward(req: IncomingMessage, body: Buffer, res: ServerResponse): Promise<void> {
    try {
      const answer = await this.exchange(req, body);
      const headers = { ...answer.headers };
      // The body is passed whole: its length is known, whatever encoding the service used.
      delete headers['transfer-encoding'];
      headers['content-length'] = String(answer.body.length);
      res.writeHead(answer.status, headers);
      res.end(answer.body);
    } catch {
      // The service behind is gone (stopped at the end of a test): the client sees a dropped connection.
      req.socket.destroy();
    }
  }
}

/** A loopback URL on which nothing listens: connecting to it is refused. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
