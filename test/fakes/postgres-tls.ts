import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { TLSSocket } from 'node:tls';

/**
 * A PostgreSQL server that speaks just enough of the protocol's start to test TLS (Frontend/Backend Protocol,
 * "Message Flow: Start-up" and "SSL Session Encryption"; byte layouts from "Message Formats"):
 *
 * - SSLRequest: Int32(8) length including self, Int32(80877103). The server answers the single byte 'S' and the
 *   client starts a TLS handshake on the same connection.
 * - StartupMessage: Int32 length including self, Int32(196608) protocol 3.0, then name/value pairs of
 *   NUL-terminated strings, ended by one more NUL byte.
 * - ErrorResponse: Byte1('E'), Int32 length including self (not the type byte), then fields of Byte1 type and a
 *   NUL-terminated string, ended by a zero byte.
 *
 * Whatever startup arrives, over TLS or in plaintext, it answers with a FATAL ErrorResponse (28000, as a real
 * server's pg_hba.conf refusal) and closes, so no password is ever asked for or sent. It records what it saw.
 */

export const SSL_REQUEST_CODE = 80877103;
export const PROTOCOL_3_0 = 196608;

export interface StartupSeen {
  /** Whether it arrived on the TLS session (true) or on the bare connection (false). */
  encrypted: boolean;
  protocol: number;
  parameters: Record<string, string>;
}

export interface FakePostgresTls {
  port: number;
  /** SSLRequests received (one per connection that asked for TLS). */
  sslRequests: number;
  /** TLS handshakes the fake completed (the 'secure' event on its side). */
  handshakes: number;
  /** Errors on the fake's TLS side, e.g. the client refusing the certificate and resetting. */
  tlsErrors: string[];
  startups: StartupSeen[];
  /** The fatal message it answers every startup with. */
  readonly refusal: (encrypted: boolean, parameters: Record<string, string>) => string;
  close(): Promise<void>;
}

export const REFUSAL_CODE = '28000';

/** A real server's refusal when no pg_hba.conf line matches, naming whether the connection was encrypted. */
function refusalText(encrypted: boolean, parameters: Record<string, string>): string {
  return `no pg_hba.conf entry for host "127.0.0.1", user "${parameters.user ?? ''}", database "${parameters.database ?? ''}", ${encrypted ? 'SSL encryption' : 'no encryption'}`;
}

export async function startFakePostgresTls(tls: { key: string; cert: string }): Promise<FakePostgresTls> {
  const sockets = new Set<Socket>();
  const state = {
    port: 0,
    sslRequests: 0,
    handshakes: 0,
    tlsErrors: [] as string[],
    startups: [] as StartupSeen[],
    refusal: refusalText,
  };

  const answer = (stream: Socket, encrypted: boolean, message: Buffer): void => {
    const protocol = message.readInt32BE(4);
    const parameters: Record<string, string> = {};
    const parts = message.subarray(8).toString('utf8').split('\0');
    // The list ends with an empty name (the final NUL), then the split's empty tail.
    for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) parameters[parts[i]!] = parts[i + 1]!;
    state.startups.push({ encrypted, protocol, parameters });
    stream.end(errorResponse({ S: 'FATAL', V: 'FATAL', C: REFUSAL_CODE, M: refusalText(encrypted, parameters) }));
  };

  /** Collects one length-prefixed startup-phase packet (no type byte) from `stream`, then calls `done` once. */
  const readPacket = (stream: Socket, done: (packet: Buffer) => void): void => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 4) return;
      const length = buffered.readInt32BE(0);
      if (buffered.length < length) return;
      stream.off('data', onData);
      done(buffered.subarray(0, length));
    };
    stream.on('data', onData);
  };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    readPacket(socket, (first) => {
      if (first.length === 8 && first.readInt32BE(4) === SSL_REQUEST_CODE) {
        state.sslRequests += 1;
        socket.pause();
        socket.write('S', () => {
          const secure = new TLSSocket(socket, { isServer: true, key: tls.key, cert: tls.cert });
          secure.on('secure', () => (state.handshakes += 1));
          secure.on('error', (error: Error & { code?: string }) => state.tlsErrors.push(error.code ?? error.message));
          readPacket(secure, (startup) => answer(secure, true, startup));
        });
      } else {
        answer(socket, false, first);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  });
}

/** An ErrorResponse: 'E', Int32 length (self included, type byte not), type-byte + NUL-terminated fields, then 0. */
export function errorResponse(fields: Record<string, string>): Buffer {
  const body = Buffer.concat([
    ...Object.entries(fields).map(([type, value]) => Buffer.concat([Buffer.from(type, 'ascii'), Buffer.from(value, 'utf8'), Buffer.from([0])])),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'ascii');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/**
 * A throwaway self-signed certificate for localhost and 127.0.0.1, made with openssl in `dir` (a temporary
 * directory: keys are never committed), or the reason it could not be made (no openssl).
 */
export function selfSignedCertificate(dir: string): { key: string; cert: string; certPath: string } | { skip: string } {
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', keyPath, '-out', certPath],
      { stdio: 'ignore' },
    );
  } catch (error) {
    return { skip: `openssl could not make a test certificate (${(error as Error).message.split('\n')[0]})` };
  }
  return { key: readFileSync(keyPath, 'utf8'), cert: readFileSync(certPath, 'utf8'), certPath };
}
