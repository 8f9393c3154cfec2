import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy on loopback in front of a real server (the test PostgreSQL, or any fake), to make the network fail
 * under a client that knows nothing of it: `cut()` resets every connection open now, as a dropped link, a
 * restarted NAT or a crashed server would; `refuse()` resets every new one at once, as a server that is gone does,
 * until `restore()`. Bytes pass through untouched otherwise, so TLS, protocols and timeouts are the real ones.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly links = new Set<{ client: Socket; upstream: Socket }>();
  private refusing = false;
  /** Connections accepted so far (refused ones included): a test can wait until its client has connected. */
  accepted = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  /** Starts listening; returns the port to point the client at (host 127.0.0.1). */
  async start(): Promise<number> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  /** Connections passing through now. */
  get open(): number {
    return this.links.size;
  }

  /** Resets every connection open now, both ways: the client reads ECONNRESET, the server sees its peer vanish. */
  cut(): number {
    const count = this.links.size;
    for (const link of [...this.links]) this.drop(link);
    return count;
  }

  /** From now on every new connection is reset as soon as it is accepted, until `restore()`. */
  refuse(): void {
    this.refusing = true;
  }

  restore(): void {
    this.refusing = false;
  }

  async stop(): Promise<void> {
    this.cut();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted += 1;
    client.on('error', () => undefined);
    if (this.refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    upstream.on('error', () => undefined);
    const link = { client, upstream };
    this.links.add(link);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = (): void => this.drop(link);
    client.on('close', done);
    upstream.on('close', done);
  }

  private drop(link: { client: Socket; upstream: Socket }): void {
    if (!this.links.delete(link)) return;
    // A reset, not a polite FIN: the client gets no end-of-stream it could mistake for the server closing.
    if (!link.client.destroyed) link.client.resetAndDestroy();
    if (!link.upstream.destroyed) link.upstream.resetAndDestroy();
  }
}
