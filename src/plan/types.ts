import type { Destination, EventKind } from '../config/defaults.js';
import type { LimitViolation } from '../destinations/limits.js';
import type { RecordLocation } from '../model/participant.js';
import type { CanonicalTraits, TraitMap, TraitValue } from '../model/traits.js';

/** `superseded`: a refused identify replaced by a newer acknowledged one; never resent. */
export type DeliveryStatus = 'pending' | 'sent' | 'failed' | 'dead' | 'superseded';

/**
 * The read-only view of state the planner is handed: last acknowledged traits and the delivery ledger. The
 * planner asks synchronously, once per person and operation, so the answers must be at hand: a backend that
 * reads in-process (SQLite) answers directly; one that reads over the network loads them first (`prefetch`).
 */
export interface BaselineView {
  identity(destination: Destination, userId: string): IdentityBaseline | undefined;
  /** `sentThisRun`: acknowledged during the run that is planning (a queue it resumed): sent, but not "already sent". */
  delivery(destination: Destination, key: string): DeliveryStatus | 'sentThisRun' | undefined;
  /**
   * Set when the view answers only what was loaded into it: before planning each chunk of records, plan-run
   * loads the identities their planning reads, then the ledger rows of the keys it will compute from them.
   * Unset: every question is answered directly, and nothing is loaded.
   */
  readonly prefetch?: BaselinePrefetch;
  /** What a destination last acknowledged for one account (B2B, DESIGN.md §11). */
  account(destination: Destination, accountId: string): AccountBaseline | undefined;
}

/** One account's last acknowledged traits at one destination, as the planner asks for them. */
export interface AccountRef {
  destination: Destination;
  accountId: string;
}

export interface AccountBaseline {
  traits: TraitMap;
  hash: string;
  acknowledgedAt?: Date;
}

/** One person's last acknowledged traits at one destination, as the planner asks for them. */
export interface IdentityRef {
  destination: Destination;
  userId: string;
}

/** One ledger row, by the key the planner computed. */
export interface DeliveryRef {
  destination: Destination;
  key: string;
}

/** Loads what the planner will ask about the next chunk of records; what an earlier chunk loaded may be dropped. */
export interface BaselinePrefetch {
  identities(refs: readonly IdentityRef[]): Promise<void>;
  /** Called after `identities` for the same chunk: the identify and tier-change keys depend on them. */
  deliveries(refs: readonly DeliveryRef[]): Promise<void>;
  /** Accounts are planned after every person: their baselines load a chunk of accounts at a time. */
  accounts(refs: readonly AccountRef[]): Promise<void>;
}

/** What a destination last acknowledged for one user id. */
export interface IdentityBaseline {
  traits: TraitMap;
  hash: string;
  acknowledgedAt?: Date;
  /** How many tier transitions were acknowledged for this user id: the ordinal in the next transition's key. */
  tierChanges?: number;
}

/** An empty state: everything is new. */
export const EMPTY_BASELINE: BaselineView = {
  identity: () => undefined,
  delivery: () => undefined,
  account: () => undefined,
};

export interface TraitChange {
  trait: string;
  before: TraitValue | undefined;
  after: TraitValue;
}

interface OperationBase {
  destination: Destination;
  /** Ledger key: sha256 of the namespace, source, program, kind, subject and object (DESIGN.md §6). */
  key: string;
  userId: string;
  participantId: string;
  /** The exact body this operation sends: a Segment message, or a Customer.io Track v2 batch operation. */
  payload: Record<string, unknown>;
  /** Size on the wire (Segment: the message as the SDK sends it; Customer.io: the v2 operation), limits checked. */
  bytes: number;
}

export interface IdentifyOperation extends OperationBase {
  kind: 'identify';
  change: 'new' | 'changed' | 'refresh';
  changes: TraitChange[];
  traits: TraitMap;
  traitsHash: string;
  /** Tier transitions acknowledged once this identify is: the baseline's count, plus one if it moves the tier. */
  tierChanges: number;
}

export interface EventOperation extends OperationBase {
  kind: 'track';
  event: EventKind;
  name: string;
  /** Event time; undefined when the fact is only observed now. */
  time: Date | undefined;
}

/**
 * An account operation (DESIGN.md §11). Segment `group`: a person joins an account, or (`userId` a member's) the
 * account's traits changed; either carries the account's traits. Customer.io `object`: the account as an object
 * with its traits; `relationship`: a person related to it.
 */
export interface AccountOperation extends OperationBase {
  kind: 'group' | 'object' | 'relationship';
  accountId: string;
  /** Set when the operation adds `userId` to the account. */
  membership: boolean;
  /** The account traits this operation carries: acknowledged, they become the account's baseline. */
  accountTraits?: { traits: TraitMap; hash: string };
}

export type Operation = IdentifyOperation | EventOperation | AccountOperation;

/** Acknowledged at or after `since`: what a backfill being resumed already sent again (identities, accounts). */
export function acknowledgedSince(acknowledgedAt: Date | undefined, since: Date | undefined): boolean {
  return acknowledgedAt !== undefined && since !== undefined && acknowledgedAt.getTime() >= since.getTime();
}

/** The ledger's `kind` of an operation: identify, the event kind, or the account operation's kind. */
export function ledgerKind(operation: Operation): string {
  return operation.kind === 'track' ? operation.event : operation.kind;
}

/** One account as a destination will hold it after this plan: for diff's accounts section and counts. */
export interface AccountPlan {
  destination: Destination;
  accountId: string;
  /** new: no traits acknowledged yet; changed; unchanged; refresh: backfill sends them again unchanged. */
  change: 'new' | 'changed' | 'unchanged' | 'refresh';
  changes: TraitChange[];
  traits: TraitMap;
  members: number;
  /** Members this plan relates to the account (a group call or relationship each). */
  newMembers: number;
}

/** Everything the planner says, in order: operations to send and what it decided not to send, and why. */
export type PlanItem =
  | { type: 'operation'; operation: Operation }
  /** `thisRun`: the traits were acknowledged during this very run (a resumed queue), so not counted as unchanged. */
  | { type: 'unchanged'; destination: Destination; userId: string; thisRun?: boolean }
  | { type: 'deduped'; destination: Destination; event: EventKind | 'identify' | AccountOperation['kind']; key: string; status: DeliveryStatus | 'sentThisRun' }
  | { type: 'participant'; participantId: string; userId: string; traits: CanonicalTraits }
  | { type: 'account'; account: AccountPlan }
  | {
      type: 'invalid';
      reason: string;
      location: RecordLocation | undefined;
      participantId?: string;
      /** Set when a destination limit made it invalid: which destination, and every limit broken. */
      destination?: Destination;
      limits?: LimitViolation[];
    }
  | { type: 'warning'; message: string; location: RecordLocation | undefined; destination?: Destination; limits?: LimitViolation[] };

export type PlanMode = 'sync' | 'backfill';
