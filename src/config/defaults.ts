/** Default trait names, event names and tiers of DESIGN.md §4–§5. Every one is configurable. */

export const DESTINATIONS = ['segment', 'customerio'] as const;
export type Destination = (typeof DESTINATIONS)[number];
/** How people write the destinations' names. */
export const DESTINATION_LABELS: Record<Destination, string> = { segment: 'Segment', customerio: 'Customer.io' };

/** Canonical trait keys; each destination maps them to its own attribute names. */
export const TRAIT_KEYS = [
  'tier',
  'channel',
  'source',
  'referredBy',
  'count',
  'code',
  'link',
  'status',
  'email',
  'firstName',
  'lastName',
  'createdAt',
] as const;
export type TraitKey = (typeof TRAIT_KEYS)[number];

export const EVENT_KINDS = ['joined', 'referralMade', 'converted', 'rewardEarned', 'tierChanged'] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export const DEFAULT_TRAIT_NAMES: Record<Destination, Record<TraitKey, string>> = {
  segment: {
    tier: 'referral_tier',
    channel: 'acquisition_channel',
    source: 'referral_source',
    referredBy: 'referred_by',
    count: 'referral_count',
    code: 'referral_code',
    link: 'referral_link',
    status: 'referral_status',
    email: 'email',
    firstName: 'firstName',
    lastName: 'lastName',
    createdAt: 'createdAt',
  },
  customerio: {
    tier: 'referral_tier',
    channel: 'acquisition_channel',
    source: 'referral_source',
    referredBy: 'referred_by',
    count: 'total_referrals',
    code: 'referral_code',
    link: 'referral_link',
    status: 'referral_status',
    email: 'email',
    firstName: 'first_name',
    lastName: 'last_name',
    createdAt: 'created_at',
  },
};

// Segment: Object + past-tense Action in Title Case; Customer.io: snake_case (each vendor's own convention).
export const DEFAULT_EVENT_NAMES: Record<Destination, Record<EventKind, string>> = {
  segment: {
    joined: 'Referral Program Joined',
    referralMade: 'Referral Made',
    converted: 'Referral Converted',
    rewardEarned: 'Referral Reward Earned',
    tierChanged: 'Referral Tier Changed',
  },
  customerio: {
    joined: 'referral_program_joined',
    referralMade: 'referral_friend_signed_up',
    converted: 'referral_converted',
    rewardEarned: 'referral_reward_claimed',
    tierChanged: 'referral_tier_changed',
  },
};

/** Minimum successful referrals for each tier, highest first; the tier with 0 is everyone else. */
export const DEFAULT_TIERS: ReadonlyArray<{ name: string; min: number }> = [
  { name: 'champion', min: 10 },
  { name: 'power_referrer', min: 5 },
  { name: 'active', min: 1 },
  { name: 'new_participant', min: 0 },
];

export const DEFAULT_CONFIG_FILE = 'referral-sync.config.json';
export const DEFAULT_STATE_PATH = '.referral-sync/state.db';
/** Customer.io: "Events with a timestamp in the past 72 hours can trigger campaigns". */
export const CUSTOMERIO_CAMPAIGN_WINDOW_MS = 72 * 60 * 60 * 1000;

/**
 * What a history load (a backfill, or the first sync into a destination) does with the events a destination could
 * act on as live (Customer.io events within CUSTOMERIO_CAMPAIGN_WINDOW_MS): send them, skip them for good, or hold
 * them for a later run. `--recent-events` and the config's "recentEvents" choose; nothing chooses by default.
 */
export const RECENT_EVENT_DECISIONS = ['send', 'skip', 'hold'] as const;
export type RecentEventDecision = (typeof RECENT_EVENT_DECISIONS)[number];
