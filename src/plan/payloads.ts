import type { Config } from '../config/config.js';
import type { Destination } from '../config/defaults.js';
import { toUnixSeconds } from '../model/dates.js';
import type { EventFact } from '../model/events.js';
import { looksLikeEmail } from '../model/identity.js';
import { customerioEventId, segmentMessageId } from '../model/ids.js';
import type { TraitMap } from '../model/traits.js';

/**
 * The exact bodies each destination receives (research/destinations.md §1.3, §4): Segment messages for
 * `/v1/batch`, Customer.io Track v2 person operations for `/api/v2/batch`. Pure functions of their inputs.
 */

/** Customer.io infers the identifier type from its shape; we say it explicitly the same way (DESIGN.md §9). */
export function customerioIdentifiers(userId: string): { email: string } | { id: string } {
  return looksLikeEmail(userId) ? { email: userId } : { id: userId };
}

export function identifyPayload(destination: Destination, userId: string, traits: TraitMap, key: string): Record<string, unknown> {
  if (destination === 'segment') {
    return { type: 'identify', userId, traits, messageId: segmentMessageId(key) };
  }
  return { type: 'person', action: 'identify', identifiers: customerioIdentifiers(userId), attributes: traits };
}

export function eventPayload(
  destination: Destination,
  fact: EventFact,
  key: string,
  config: Config,
  now: Date,
): Record<string, unknown> {
  const name = config.eventNames[destination][fact.kind];
  const time = fact.time ?? now;
  if (destination === 'segment') {
    return {
      type: 'track',
      userId: fact.userId,
      event: name,
      properties: fact.properties,
      timestamp: time.toISOString(),
      messageId: segmentMessageId(key),
    };
  }
  return {
    type: 'person',
    action: 'event',
    identifiers: customerioIdentifiers(fact.userId),
    name,
    // The ULID's time part is the fact's own time; observed facts use 0 so the id stays the same on every run.
    id: customerioEventId(key, fact.time),
    timestamp: toUnixSeconds(time),
    attributes: fact.properties,
  };
}

/** Segment `group`: the person joins the account (or, for a traits change, a member speaks for it) with its traits. */
export function groupPayload(userId: string, accountId: string, traits: TraitMap | undefined, key: string): Record<string, unknown> {
  return { type: 'group', userId, groupId: accountId, ...(traits ? { traits } : {}), messageId: segmentMessageId(key) };
}

/** Customer.io Track v2: the account as an object with its attributes. */
export function objectPayload(accountId: string, objectTypeId: string, traits: TraitMap): Record<string, unknown> {
  return { type: 'object', action: 'identify', identifiers: { object_type_id: objectTypeId, object_id: accountId }, attributes: traits };
}

/** Customer.io Track v2: the person related to the account object. */
export function relationshipPayload(userId: string, accountId: string, objectTypeId: string): Record<string, unknown> {
  return {
    type: 'person',
    action: 'add_relationships',
    identifiers: customerioIdentifiers(userId),
    cio_relationships: [{ identifiers: { object_type_id: objectTypeId, object_id: accountId } }],
  };
}
