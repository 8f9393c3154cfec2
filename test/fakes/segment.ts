import type { IncomingMessage, ServerResponse } from 'node:http';
import { FakeService, type FaultOptions } from './http.js';

export interface SegmentMessage {
  type: string;
  userId?: string;
  messageId: string;
  event?: string;
  traits?: Record<string, unknown>;
  properties?: Record<string, unknown>;
  timestamp?: string;
  [key: string]: unknown;
}

/**
 * A Segment HTTP Tracking API emulator (research/destinations.md §1, §7): `POST /v1/batch`, auth by Basic
 * header or body writeKey, 32 KB per event and 500 KB per request (400), over 2500 events accepted with 200
 * and dropped — and, like Segment, 200 for a wrong write key. Records every message it accepts.
 */
export class FakeSegment extends FakeService {
  /** Accepted messages by messageId (Segment dedupes on it). */
  readonly messages = new Map<string, SegmentMessage>();
  /** Every accepted messageId in arrival order, duplicates included. */
  readonly arrivals: string[] = [];
  readonly writeKeysSeen = new Set<string>();
  /** Requests whose write key was not the expected one (answered 200 all the same). */
  badKeyRequests = 0;
  /** A batch holding a message this returns a status for is refused whole with that status. */
  rejectMessage: ((message: SegmentMessage) => number | undefined) | undefined;

  constructor(
    readonly writeKey: string,
    faults: FaultOptions = {},
  ) {
    super(faults);
  }

  protected handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'POST' || !['/v1/batch', '/v1/identify', '/v1/track'].includes(path ?? '')) {
      this.json(res, 404, { success: false, message: 'not found' });
      return;
    }
    if (body.length > 500 * 1024) {
      this.json(res, 400, { success: false, message: 'request too large' });
      return;
    }
    let envelope: { batch?: SegmentMessage[]; writeKey?: string } & Partial<SegmentMessage>;
    try {
      envelope = JSON.parse(body.toString('utf8')) as typeof envelope;
    } catch {
      this.json(res, 400, { success: false, message: 'invalid json' });
      return;
    }
    const key = basicUser(req.headers.authorization) ?? envelope.writeKey;
    if (key) this.writeKeysSeen.add(key);
    if (key !== this.writeKey) this.badKeyRequests += 1;
    const batch: SegmentMessage[] = path === '/v1/batch' ? (envelope.batch ?? []) : [{ ...(envelope as SegmentMessage), type: path!.slice(4) }];
    for (const message of batch) {
      if (Buffer.byteLength(JSON.stringify(message)) > 32 * 1024) {
        this.json(res, 400, { success: false, message: 'event too large' });
        return;
      }
      const status = this.rejectMessage?.(message);
      if (status !== undefined) {
        this.json(res, status, { success: false, message: `rejected ${message.messageId}` });
        return;
      }
    }
    // Segment answers 200 for a wrong key or more than 2500 events, and keeps nothing.
    if (key === this.writeKey && batch.length <= 2500) {
      for (const message of batch) {
        this.arrivals.push(message.messageId);
        if (!this.messages.has(message.messageId)) this.messages.set(message.messageId, message);
      }
    }
    this.json(res, 200, { success: true });
  }

  identifies(): SegmentMessage[] {
    return [...this.messages.values()].filter((m) => m.type === 'identify');
  }

  tracks(): SegmentMessage[] {
    return [...this.messages.values()].filter((m) => m.type === 'track');
  }
}

function basicUser(header: string | undefined): string | undefined {
  const match = /^Basic\s+(.+)$/i.exec(header ?? '');
  if (!match) return undefined;
  return Buffer.from(match[1]!, 'base64').toString('utf8').split(':')[0];
}
