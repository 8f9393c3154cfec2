import {
  DEFAULT_EVENT_NAMES,
  DEFAULT_TIERS,
  DEFAULT_TRAIT_NAMES,
  DESTINATIONS,
  EVENT_KINDS,
  TRAIT_KEYS,
  type Destination,
  type EventKind,
  type RecentEventDecision,
  type TraitKey,
} from './defaults.js';

/** How a participant becomes a downstream userId (DESIGN.md §4). */
export type IdentityRule = { kind: 'email' } | { kind: 'id' } | { kind: 'metadata'; key: string };

/**
 * Accounts (B2B, DESIGN.md §11): which participant field holds the account id, which its name, and the
 * Customer.io object type accounts are created as.
 */
export interface AccountConfig {
  /** Unset only while a config file names the rest and `--group-id` is still to come (checked once flags apply). */
  id?: IdentityRule;
  name?: IdentityRule;
  /** Customer.io `object_type_id` (a workspace's first object type is "1"). */
  objectTypeId: string;
}

export const DEFAULT_OBJECT_TYPE_ID = '1';

export interface Tier {
  name: string;
  min: number;
}

/** The validated configuration every layer below `cli/` receives. Nothing here reads the environment. */
export interface Config {
  /** Mixed into every idempotency key, so two programs or two tenants never share an id. */
  namespace: string;
  identity: IdentityRule;
  /** Highest first; the last has min 0. */
  tiers: Tier[];
  traitNames: Record<Destination, Record<TraitKey, string>>;
  eventNames: Record<Destination, Record<EventKind, string>>;
  /** Extra CSV header names: canonical field (or `metadata.<key>`) → header as it appears in the file. */
  columns: Record<string, string>;
  /** Metadata keys forwarded as traits/attributes under the same name. */
  metadataTraits: string[];
  /** Send null for a trait that had a value before and has none now. Off: nulls never overwrite. */
  syncNulls: boolean;
  destinations: Destination[];
  /** Whether the identity rule was chosen by the user (config file or --user-id), not defaulted. */
  identityExplicit: boolean;
  cello: { tierBasis: 'signups' | 'purchases' };
  /** Set: people are grouped into accounts (Segment group, Customer.io objects). */
  group?: AccountConfig;
  /** The default of `--recent-events`: what a history load does with events that could trigger campaigns. */
  recentEvents?: RecentEventDecision;
}

export function defaultConfig(): Config {
  return {
    namespace: 'default',
    identity: { kind: 'email' },
    tiers: DEFAULT_TIERS.map((tier) => ({ ...tier })),
    traitNames: {
      segment: { ...DEFAULT_TRAIT_NAMES.segment },
      customerio: { ...DEFAULT_TRAIT_NAMES.customerio },
    },
    eventNames: {
      segment: { ...DEFAULT_EVENT_NAMES.segment },
      customerio: { ...DEFAULT_EVENT_NAMES.customerio },
    },
    columns: {},
    metadataTraits: [],
    syncNulls: false,
    destinations: [...DESTINATIONS],
    identityExplicit: false,
    cello: { tierBasis: 'signups' },
  };
}

/** Parses `email`, `id` or `metadata.<key>`; returns undefined for anything else. */
export function parseIdentityRule(value: string): IdentityRule | undefined {
  if (value === 'email') return { kind: 'email' };
  if (value === 'id') return { kind: 'id' };
  const match = /^metadata\.(.+)$/.exec(value);
  if (match?.[1]) return { kind: 'metadata', key: match[1] };
  return undefined;
}

export function describeIdentityRule(rule: IdentityRule): string {
  return rule.kind === 'metadata' ? `metadata.${rule.key}` : rule.kind;
}

/** Parses a comma list of destinations (`segment,customerio`); returns the unknown names it met. */
export function parseDestinations(value: string): { destinations: Destination[]; unknown: string[] } {
  const destinations: Destination[] = [];
  const unknown: string[] = [];
  for (const raw of value.split(',')) {
    const name = raw.trim().toLowerCase();
    if (name === '') continue;
    if ((DESTINATIONS as readonly string[]).includes(name)) {
      if (!destinations.includes(name as Destination)) destinations.push(name as Destination);
    } else {
      unknown.push(raw.trim());
    }
  }
  return { destinations, unknown };
}

export { DESTINATIONS, EVENT_KINDS, TRAIT_KEYS };
