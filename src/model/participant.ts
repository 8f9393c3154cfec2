/** The normalized participant of DESIGN.md §3: what every source produces and the planner consumes. */

export type SourceKind = 'growsurf' | 'cello';
export type ReferralStatus = 'pending' | 'converted' | 'expired';
export type MetadataValue = string | number | boolean | null;

export interface Reward {
  id: string;
  configId?: string;
  /** true when earned as the referrer, false when earned as the referred friend (double-sided rewards). */
  isReferrer: boolean;
  status: string;
  at?: Date;
}

export interface Participant {
  source: SourceKind;
  /** GrowSurf campaign id / Cello product or campaign. Part of every idempotency key. */
  programId: string;
  /** Source id: GrowSurf participant id / Cello productUserId. */
  id: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  createdAt?: Date;
  referralCode?: string;
  referralLink?: string;
  /** The referrer as the source names it: a source id or an email address. Resolved by the ReferrerDirectory. */
  referrerId?: string;
  /**
   * What the source says about the referrer alongside the participant (GrowSurf embeds a `referrer` summary),
   * enough to compute the referrer's identity without looking it up.
   */
  referrerProfile?: { id: string; email?: string; metadata: Record<string, MetadataValue> };
  /** Credit owed to the referrer for THIS person; only for referred people. */
  referralStatus?: ReferralStatus;
  /** The source's own status string, kept when it is not one we know (unknown enum values pass through). */
  referralStatusRaw?: string;
  convertedAt?: Date;
  /** Successful referrals (GrowSurf referralCount). Undefined when the source does not say: derived from the data. */
  referralCount?: number;
  pendingCount?: number;
  /** How the source says the person joined (GrowSurf referralSource: DIRECT, PARTICIPANT, …), passed through. */
  joinedVia?: string;
  rewards: Reward[];
  metadata: Record<string, MetadataValue>;
}

/** Where a record came from, for messages a person can act on. */
export interface RecordLocation {
  file: string;
  line: number;
}

export interface ParticipantRecord {
  kind: 'participant';
  participant: Participant;
  location?: RecordLocation;
}

export interface InvalidRecord {
  kind: 'invalid';
  reason: string;
  location?: RecordLocation;
  /** The participant id, when the row got far enough to have one. */
  participantId?: string;
}

/** Something about the source as a whole a person should know (a count that does not add up). */
export interface WarningRecord {
  kind: 'warning';
  message: string;
  location?: RecordLocation;
}

export type SourceRecord = ParticipantRecord | InvalidRecord | WarningRecord;

/** Maps a source's status vocabulary onto ours; anything else passes through as raw. */
export function normalizeReferralStatus(raw: string | undefined): {
  status?: ReferralStatus;
  raw?: string;
} {
  if (raw === undefined) return {};
  const value = raw.trim();
  if (value === '') return {};
  const key = value.toLowerCase().replace(/[^a-z]/g, '');
  switch (key) {
    case 'creditpending':
    case 'pending':
    case 'lead':
      return { status: 'pending' };
    case 'creditawarded':
    case 'awarded':
    case 'converted':
    case 'approved':
    case 'paid':
    case 'purchased':
      return { status: 'converted' };
    case 'creditexpired':
    case 'expired':
      return { status: 'expired' };
    default:
      return { raw: value };
  }
}

export function formatLocation(location: RecordLocation | undefined): string {
  return location ? `${location.file}:${location.line}` : '(source)';
}
