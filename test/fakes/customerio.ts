import type { IncomingMessage, ServerResponse } from 'node:http';
import { FakeService, type FaultOptions } from './http.js';

/** Customer.io's documented Track API limits (research/destinations.md §3.3, §4). */
export const CIO_LIMITS = {
  personIdBytes: 150,
  attributeNameBytes: 150,
  attributeValueBytes: 1000,
  attributes: 300,
  eventNameBytes: 100,
  eventDataBytes: 100_000,
  operationBytes: 32 * 1024,
  requestBytes: 500 * 1024,
} as const;

export interface CioEvent {
  id?: string;
  name: string;
  identifier: string;
  timestamp?: number;
  attributes?: Record<string, unknown>;
}

export interface CioRelationship {
  identifiers?: Record<string, string>;
  relationship_attributes?: Record<string, unknown>;
}

export interface CioOperation {
  type?: string;
  action?: string;
  identifiers?: Record<string, string>;
  cio_relationships?: CioRelationship[];
  name?: string;
  id?: string;
  timestamp?: number;
  attributes?: Record<string, unknown>;
}

/**
 * A Customer.io Track API emulator (research/destinations.md §3–§4, §7): v1 identify/track, v2 batch and
 * entity, the account region lookup; Basic `site:key` auth (401 otherwise); the documented size limits; 207
 * with `batch_index` for items it refuses, 400 `{"errors":[{reason, field, message}]}` (v2) or
 * `{"meta":{"errors":[…]}}` (v1) for requests it refuses; events deduped by `id`; JSON bodies only, never text.
 */
export class FakeCustomerio extends FakeService {
  /** Person attributes by identifier (`email:…` / `id:…`), merged like an upsert. */
  readonly people = new Map<string, Record<string, unknown>>();
  /** Identify calls in arrival order, as `identifier`. */
  readonly identifyArrivals: string[] = [];
  /** Events kept, by id (Customer.io dedupes on it). */
  readonly events = new Map<string, CioEvent>();
  /** Every accepted event id in arrival order, duplicates included. */
  readonly eventArrivals: string[] = [];
  readonly batchSizes: number[] = [];
  /** Objects (Track v2 `type: "object"`) by `object_type_id/object_id`, attributes merged like an upsert. */
  readonly objects = new Map<string, Record<string, unknown>>();
  /** Object identify operations in arrival order, as `object_type_id/object_id`. */
  readonly objectArrivals: string[] = [];
  /** Person–object relationships held, as `person identifier → object_type_id/object_id`. */
  readonly relationships = new Set<string>();
  /** Relationship operations in arrival order (each relationship they carry), duplicates included. */
  readonly relationshipArrivals: string[] = [];
  /** A v2 request this returns an error for is refused whole: 400 `{"errors":[{reason, field, message}]}`. */
  refuseRequest: ((ops: CioOperation[]) => { reason: string; field: string; message: string } | undefined) | undefined;
  /** Operations refused for breaking a documented limit. */
  limitRefusals = 0;
  /** An item this returns a reason for is refused in a 207 (v2) or with a 400 (v1). */
  rejectOperation: ((op: CioOperation) => string | undefined) | undefined;
  region: 'us' | 'eu' = 'us';

  constructor(
    readonly siteId: string,
    readonly apiKey: string,
    faults: FaultOptions = {},
  ) {
    super(faults);
  }

  protected handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const auth = Buffer.from((/^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? ''), 'base64').toString('utf8');
    if (auth !== `${this.siteId}:${this.apiKey}`) {
      this.json(res, 401, { meta: { error: 'Unauthorized request' } });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    if (req.method === 'GET' && path === '/api/v1/accounts/region') {
      this.json(res, 200, { url: 'https://track.customer.io', region: this.region, environment_id: 1 });
      return;
    }
    if (body.length > CIO_LIMITS.requestBytes) {
      this.json(res, 400, { errors: [{ reason: 'too_large', message: 'request body over 500 KB' }] });
      return;
    }
    let data: Record<string, unknown> = {};
    if (body.length > 0) {
      try {
        data = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        this.json(res, 400, { meta: { errors: ['invalid json'] } });
        return;
      }
    }
    const v1Person = /^\/api\/v1\/customers\/([^/]+)$/.exec(path);
    const v1Event = /^\/api\/v1\/customers\/([^/]+)\/events$/.exec(path);
    if (req.method === 'PUT' && v1Person) {
      const identifier = decodeURIComponent(v1Person[1]!);
      const op: CioOperation = { type: 'person', action: 'identify', identifiers: identifierOf(identifier), attributes: data };
      const reason = this.overLimit(op, body.length)?.message ?? this.rejectOperation?.(op);
      if (reason) return this.json(res, 400, { meta: { errors: [reason] } });
      this.applyIdentify(op);
      return this.json(res, 200, {});
    }
    if (req.method === 'POST' && v1Event) {
      const identifier = decodeURIComponent(v1Event[1]!);
      const op: CioOperation = {
        type: 'person',
        action: 'event',
        identifiers: identifierOf(identifier),
        name: data.name as string,
        id: data.id as string,
        timestamp: data.timestamp as number,
        attributes: data.data as Record<string, unknown>,
      };
      const reason = this.overLimit(op, body.length)?.message ?? this.rejectOperation?.(op) ?? (op.name ? undefined : 'name is required');
      if (reason) return this.json(res, 400, { meta: { errors: [reason] } });
      this.applyEvent(op);
      return this.json(res, 200, {});
    }
    if (req.method === 'POST' && (path === '/api/v2/batch' || path === '/api/v2/entity')) {
      const ops = path === '/api/v2/batch' ? (data.batch as CioOperation[] | undefined) : [data as CioOperation];
      if (!Array.isArray(ops)) return this.json(res, 400, { errors: [{ reason: 'required', field: 'batch', message: 'batch is required' }] });
      this.batchSizes.push(ops.length);
      const refused = this.refuseRequest?.(ops);
      if (refused) return this.json(res, 400, { errors: [refused] });
      const errors: { batch_index: number; reason: string; field: string; message: string }[] = [];
      ops.forEach((op, index) => {
        const limit = this.overLimit(op, Buffer.byteLength(JSON.stringify(op)));
        const reason = limit ? undefined : (validate(op) ?? this.rejectOperation?.(op));
        if (limit) errors.push({ batch_index: index, ...limit });
        else if (reason) errors.push({ batch_index: index, reason: 'invalid', field: 'batch', message: reason });
        else if (op.type === 'object') this.applyObject(op);
        else if (op.action === 'identify') this.applyIdentify(op);
        else if (op.action === 'add_relationships') this.applyRelationships(key(op.identifiers!), op.cio_relationships ?? []);
        else this.applyEvent(op);
      });
      // /entity carries one operation: a refusal is the whole request's, a 400 with the same error shape.
      if (errors.length > 0 && path === '/api/v2/entity') {
        const [{ reason, field, message }] = errors as [(typeof errors)[number]];
        return this.json(res, 400, { errors: [{ reason, field, message }] });
      }
      if (errors.length > 0) return this.json(res, 207, { errors });
      return this.json(res, 200, {});
    }
    this.json(res, 404, { meta: { error: 'not found' } });
  }

  /**
   * The documented Track API limits (research/destinations.md §3.3, §4), checked on what arrived: the first one
   * an operation breaks, as Customer.io's `{reason, field, message}`.
   */
  private overLimit(op: CioOperation, operationBytes: number): { reason: string; field: string; message: string } | undefined {
    const refuse = (field: string, message: string): { reason: string; field: string; message: string } => {
      this.limitRefusals += 1;
      return { reason: 'too_large', field, message };
    };
    if (operationBytes > CIO_LIMITS.operationBytes) return refuse('', `operation is ${operationBytes} bytes, over the 32 KB limit`);
    for (const [kind, value] of Object.entries(op.identifiers ?? {})) {
      if (Buffer.byteLength(value) > CIO_LIMITS.personIdBytes) return refuse(`identifiers.${kind}`, `identifier is over ${CIO_LIMITS.personIdBytes} bytes`);
    }
    const attributes = op.attributes ?? {};
    if (op.action === 'identify') {
      if (Object.keys(attributes).length > CIO_LIMITS.attributes) return refuse('attributes', `more than ${CIO_LIMITS.attributes} attributes`);
      for (const [name, value] of Object.entries(attributes)) {
        if (Buffer.byteLength(name) > CIO_LIMITS.attributeNameBytes) return refuse(`attributes.${name}`, `attribute name is over ${CIO_LIMITS.attributeNameBytes} bytes`);
        const size = Buffer.byteLength(typeof value === 'string' ? value : JSON.stringify(value));
        if (size > CIO_LIMITS.attributeValueBytes) return refuse(`attributes.${name}`, `attribute value is ${size} bytes, over ${CIO_LIMITS.attributeValueBytes}`);
      }
    } else if (op.action === 'event') {
      if (Buffer.byteLength(op.name ?? '') > CIO_LIMITS.eventNameBytes) return refuse('name', `event name is over ${CIO_LIMITS.eventNameBytes} bytes`);
      if (Buffer.byteLength(JSON.stringify(attributes)) > CIO_LIMITS.eventDataBytes) return refuse('attributes', `event data is over ${CIO_LIMITS.eventDataBytes} bytes`);
    }
    return undefined;
  }

  /** An object identify: the object upserted, and any person in `cio_relationships` related to it. */
  private applyObject(op: CioOperation): void {
    const object = objectKey(op.identifiers!);
    this.objectArrivals.push(object);
    this.objects.set(object, { ...this.objects.get(object), ...op.attributes });
    for (const relationship of op.cio_relationships ?? []) this.relate(key(relationship.identifiers!), object);
  }

  /** A person's `add_relationships`: each object named is created if missing and related to the person. */
  private applyRelationships(person: string, relationships: readonly CioRelationship[]): void {
    for (const relationship of relationships) {
      const object = objectKey(relationship.identifiers!);
      if (!this.objects.has(object)) this.objects.set(object, {});
      this.relate(person, object);
    }
  }

  private relate(person: string, object: string): void {
    const relationship = `${person} → ${object}`;
    this.relationshipArrivals.push(relationship);
    this.relationships.add(relationship);
  }

  private applyIdentify(op: CioOperation): void {
    const identifier = key(op.identifiers!);
    this.identifyArrivals.push(identifier);
    this.people.set(identifier, { ...this.people.get(identifier), ...op.attributes });
  }

  private applyEvent(op: CioOperation): void {
    const identifier = key(op.identifiers!);
    if (op.id) {
      this.eventArrivals.push(op.id);
      if (this.events.has(op.id)) return;
      this.events.set(op.id, { id: op.id, name: op.name!, identifier, timestamp: op.timestamp, attributes: op.attributes });
    } else {
      this.events.set(`noid-${this.events.size}`, { name: op.name!, identifier, timestamp: op.timestamp, attributes: op.attributes });
    }
  }
}

function identifierOf(value: string): Record<string, string> {
  return value.includes('@') ? { email: value } : { id: value };
}

function key(identifiers: Record<string, string>): string {
  const [kind, value] = Object.entries(identifiers)[0] ?? ['id', ''];
  return `${kind}:${value}`;
}

function objectKey(identifiers: Record<string, string>): string {
  return `${identifiers.object_type_id}/${identifiers.object_id}`;
}

/** An object's identifiers: `object_type_id` and `object_id`, both strings, the id within 150 bytes. */
function objectIdentifiersProblem(identifiers: Record<string, unknown> | undefined): string | undefined {
  if (!identifiers || typeof identifiers.object_type_id !== 'string' || typeof identifiers.object_id !== 'string' || identifiers.object_id === '') {
    return 'an object needs identifiers.object_type_id and identifiers.object_id (strings)';
  }
  if (Buffer.byteLength(identifiers.object_id) > CIO_LIMITS.personIdBytes) return `object_id is over ${CIO_LIMITS.personIdBytes} bytes`;
  return undefined;
}

function validate(op: CioOperation): string | undefined {
  if (op.type === 'object') {
    if (op.action !== 'identify') return `unsupported object action ${op.action}`;
    const problem = objectIdentifiersProblem(op.identifiers);
    if (problem) return problem;
    for (const relationship of op.cio_relationships ?? []) {
      if (!relationship.identifiers || Object.keys(relationship.identifiers).length !== 1) return 'a relationship names exactly one person identifier';
    }
    return undefined;
  }
  if (op.type !== 'person') return 'type must be person or object';
  if (!op.identifiers || Object.keys(op.identifiers).length !== 1) return 'exactly one identifier is required';
  if (op.action === 'event' && !op.name) return 'name is required';
  if (op.action === 'add_relationships') {
    if (!Array.isArray(op.cio_relationships) || op.cio_relationships.length === 0) return 'cio_relationships is required';
    for (const relationship of op.cio_relationships) {
      const problem = objectIdentifiersProblem(relationship.identifiers);
      if (problem) return problem;
    }
    return undefined;
  }
  if (op.action !== 'identify' && op.action !== 'event') return `unsupported action ${op.action}`;
  return undefined;
}
