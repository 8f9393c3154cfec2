import type { IncomingMessage, ServerResponse } from 'node:http';
import { FakeService, type FaultOptions } from './http.js';

/** Segment HTTP Tracking API limits (research/destinations.md §1.4): 32 KB per event, 500 KB per request. */
export const SEGMENT_EVENT_LIMIT = 32 * 1024;
export const SEGMENT_REQUEST_LIMIT = 500 * 1024;

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
 * header or body writeKey, 32 KB per event and 500 KB per request (400 `{"message": …}` for the whole batch),
 * over 2500 events accepted with 200 and dropped — and, like Segment, 200 for a wrong write key. Records every
 * message it accepts.
 */
export class FakeSegment extends FakeService {
  /** Accepted messages by messageId (Segment dedupes on it). */
  readonly messages = new Map<string, SegmentMessage>();
  /** Every accepted messageId in arrival order, duplicates included. */
  readonly arrivals: string[] = [];
  readonly writeKeysSeen = new Set<string>();
  /** Requests whose write key was not the expected one (answered 200 all the same). */
  badKeyRequests = 0;
  /** Size of the largest message received (as Segment measures it: the message's JSON inside the batch). */
  largestMessage = 0;
  /** Requests refused because one of their messages was over 32 KB. */
  oversizeRefusals = 0;
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
    if (req.method !== 'POST' || !['/v1/batch', '/v1/identify', '/v1/track', '/v1/group'].includes(path ?? '')) {
      this.json(res, 404, { success: false, message: 'not found' });
      return;
    }
    // Segment's documented limits, on what it receives; a refusal names why, in `{"message": …}`.
    if (body.length > SEGMENT_REQUEST_LIMIT) {
      this.json(res, 400, { message: `request body is ${body.length} bytes, over the 500 KB limit` });
      return;
    }
    let envelope: { batch?: SegmentMessage[]; writeKey?: string } & Partial<SegmentMessage>;
    try {
      envelope = JSON.parse(body.toString('utf8')) as typeof envelope;
    } catch {
      this.json(res, 400, { message: 'invalid JSON' });
      return;
    }
    const key = basicUser(req.headers.authorization) ?? envelope.writeKey;
    if (key) this.writeKeysSeen.add(key);
    if (key !== this.writeKey) this.badKeyRequests += 1;
    const batch: SegmentMessage[] = path === '/v1/batch' ? (envelope.batch ?? []) : [{ ...(envelope as SegmentMessage), type: path!.slice(4) }];
    for (const message of batch) {
      const size = Buffer.byteLength(JSON.stringify(message));
      this.largestMessage = Math.max(this.largestMessage, size);
      if (size > SEGMENT_EVENT_LIMIT) {
        this.oversizeRefusals += 1;
        this.json(res, 400, { message: `event ${message.messageId} is ${size} bytes, over the 32 KB limit` });
        return;
      }
      // The spec requires a groupId on a group call (and a userId or anonymousId on every call).
      if (message.type === 'group' && (typeof message.groupId !== 'string' || message.groupId === '')) {
        this.json(res, 400, { message: `group ${message.messageId} has no groupId` });
        return;
      }
      const status = this.rejectMessage?.(message);
      if (status !== undefined) {
        this.json(res, status, { message: `rejected ${message.messageId}` });
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

  /** Group calls kept (deduped by messageId), in arrival order. */
  groups(): SegmentMessage[] {
    return [...this.messages.values()].filter((m) => m.type === 'group');
  }
}

function basicUser(header: string | undefined): string | undefined {
  const match = /^Basic\s+(.+)$/i.exec(header ?? '');
  if (!match) return undefined;
  return Buffer.from(match[1]!, 'base64').toString('utf8').split(':')[0];
}
