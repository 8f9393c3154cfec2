import type { Config, Tier } from '../config/config.js';
import type { Destination, TraitKey } from '../config/defaults.js';
import { toUnixSeconds } from './dates.js';
import { normalizeEmail } from './identity.js';
import type { MetadataValue, Participant } from './participant.js';

export type TraitValue = string | number | boolean | null;
export type TraitMap = Record<string, TraitValue>;

/** Traits before they are named for a destination (DESIGN.md §4). Undefined means "unknown": never sent. */
export interface CanonicalTraits {
  tier: string;
  channel: 'referral' | 'organic';
  source: string;
  referredBy?: string;
  count: number;
  code?: string;
  link?: string;
  status?: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  createdAt?: Date;
  metadata: Record<string, MetadataValue>;
}

/** The highest tier whose minimum the count reaches; tiers are sorted highest first and end at 0. */
export function tierFor(count: number, tiers: readonly Tier[]): string {
  for (const tier of tiers) {
    if (count >= tier.min) return tier.name;
  }
  return tiers[tiers.length - 1]?.name ?? 'new_participant';
}

export function isReferred(participant: Participant): boolean {
  if (participant.referrerId !== undefined && participant.referrerId.trim() !== '') return true;
  return participant.joinedVia?.toUpperCase() === 'PARTICIPANT';
}

/**
 * A metadata value by the name the config gives it. Export columns are matched without case, spaces or
 * punctuation (`Plan`, `plan`, `PLAN`), so metadata keys are too; the exact key wins.
 */
export function metadataValue(metadata: Record<string, MetadataValue>, key: string): MetadataValue | undefined {
  if (key in metadata) return metadata[key];
  const wanted = looseKey(key);
  for (const [name, value] of Object.entries(metadata)) if (looseKey(name) === wanted) return value;
  return undefined;
}

function looseKey(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}

export function computeTraits(
  participant: Participant,
  resolved: { referredBy: string | undefined; count: number },
  config: Config,
): CanonicalTraits {
  const referred = isReferred(participant);
  const metadata: Record<string, MetadataValue> = {};
  for (const key of config.metadataTraits) {
    const value = metadataValue(participant.metadata, key);
    // A null from the source (GrowSurf's `"plan": null`) is no value, like a blank cell: never a trait. Only the
    // planner, with --sync-nulls, sends null, for a trait the destination holds and the source no longer has.
    if (value !== undefined && value !== null) metadata[key] = value;
  }
  const traits: CanonicalTraits = {
    tier: tierFor(resolved.count, config.tiers),
    channel: referred ? 'referral' : 'organic',
    source: participant.source,
    count: resolved.count,
    metadata,
  };
  if (referred && resolved.referredBy !== undefined) traits.referredBy = resolved.referredBy;
  if (participant.referralCode !== undefined) traits.code = participant.referralCode;
  if (participant.referralLink !== undefined) traits.link = participant.referralLink;
  // Status describes the credit owed to the referrer, so only referred people carry it.
  if (referred) {
    const status = participant.referralStatus ?? participant.referralStatusRaw;
    if (status !== undefined) traits.status = status;
  }
  if (participant.email !== undefined) traits.email = normalizeEmail(participant.email);
  if (participant.firstName !== undefined) traits.firstName = participant.firstName;
  if (participant.lastName !== undefined) traits.lastName = participant.lastName;
  if (participant.createdAt !== undefined) traits.createdAt = participant.createdAt;
  return traits;
}

/**
 * Names and formats traits for one destination: Segment dates are ISO strings, Customer.io's unix seconds.
 * The traits a run sends are built here, so here is where a null never becomes one (issue 17, guarantee 8):
 * undefined and null alike mean "no value", which never overwrites what the destination holds. `--sync-nulls`
 * is the planner's (knownTraits): it turns a trait the destination holds and this map lacks into null.
 */
export function destinationTraits(traits: CanonicalTraits, destination: Destination, config: Config): TraitMap {
  const names = config.traitNames[destination];
  const out: TraitMap = {};
  const put = (key: TraitKey, value: TraitValue | undefined): void => {
    if (value !== undefined && value !== null) out[names[key]] = value;
  };
  put('tier', traits.tier);
  put('channel', traits.channel);
  put('source', traits.source);
  put('referredBy', traits.referredBy);
  put('count', traits.count);
  put('code', traits.code);
  put('link', traits.link);
  put('status', traits.status);
  put('email', traits.email);
  put('firstName', traits.firstName);
  put('lastName', traits.lastName);
  if (traits.createdAt !== undefined) {
    put('createdAt', destination === 'segment' ? traits.createdAt.toISOString() : toUnixSeconds(traits.createdAt));
  }
  for (const [key, value] of Object.entries(traits.metadata)) {
    if (!(key in out) && value !== undefined && value !== null) out[key] = value;
  }
  return out;
}
