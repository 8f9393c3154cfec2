import type { Destination, EventKind } from '../config/defaults.js';
import type { LimitViolation } from '../destinations/limits.js';
import type { RecordLocation } from '../model/participant.js';
import type { CanonicalTraits, TraitMap, TraitValue } from '../model/traits.js';

/**
 * `superseded`: a refused identify replaced by a newer acknowledged one; never resent. `held` and `skipped`: an event
 * a history load did not send because it could trigger campaigns (the campaign guard, plan/recent-events.ts):
 * held ones wait for a later run's decision, skipped ones are never sent.
 */
export type DeliveryStatus = 'pending' | 'sent' | 'failed' | 'dead' | 'superseded' | 'held' | 'skipped';

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
  /**
   * The newest traits operation issued for a person (an identify) or an account (its traits) at a destination,
   * acknowledged or not: its generation and key (DESIGN.md §6). Loaded with the identities (or accounts) it
   * belongs to. Both state backends answer it; a view without it (a test's hand-made baseline) knows of none.
   */
  generation?(destination: Destination, subject: GenerationSubject, id: string): IssuedGeneration | undefined;
}

/** Whose traits a generation counts: a person's identifies, or an account's traits operations. */
export type GenerationSubject = 'identify' | 'account';

/**
 * The newest traits operation issued for one person or account. Generations count operations issued, not
 * acknowledged: one that failed or was lost in flight may have been applied, so the next one (whatever its
 * traits) takes the next generation, and with it an id never sent before.
 */
export interface IssuedGeneration {
  generation: number;
  /** Its ledger key: its status says whether the destination acknowledged it, refused it, or is in doubt. */
  key: string;
  /** An identify that moved the tier: the move, whose Referral Tier Changed belongs with it. */
  tierMove?: TierMove;
}

/** A tier transition as its Referral Tier Changed key names it. */
export interface TierMove {
  from: string;
  to: string;
  /** The referral count it was observed at. */
  count: number;
  /** Its ordinal among the person's transitions (1 for the first). */
  ordinal: number;
}

/** One generation row a bulk read asks for. */
export interface GenerationRef {
  destination: Destination;
  subject: GenerationSubject;
  id: string;
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
  /** Accounts are planned after every person: their baselines (and generations) load a chunk of accounts at a time. */
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
  generation: () => undefined,
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
  /**
   * Its generation among the identifies issued for this person (DESIGN.md §6), part of its key. Absent from
   * operations an older version stored.
   */
  generation?: number;
  /** The tier move this identify carries (its Referral Tier Changed is planned with it). */
  tierMove?: TierMove;
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
  /** Set on the operation that carries the account's traits alone: its generation among them (DESIGN.md §6). */
  generation?: number;
}

export type Operation = IdentifyOperation | EventOperation | AccountOperation;

/** Acknowledged at or after `since`: what a backfill being resumed already sent again (identities, accounts). */
export function acknowledgedSince(acknowledgedAt: Date | undefined, since: Date | undefined): boolean {
  return acknowledgedAt !== undefined && since !== undefined && acknowledgedAt.getTime() >= since.getTime();
}

/**
 * The generation row an operation writes when it is queued: an identify, or the operation that carries an account's
 * traits alone, when it was planned with a generation (operations an older version stored carry none).
 */
export function issuedGeneration(operation: Operation): (GenerationRef & IssuedGeneration) | undefined {
  if (operation.kind === 'track' || typeof operation.generation !== 'number') return undefined;
  const { destination, key, generation } = operation;
  if (operation.kind === 'identify') return { destination, subject: 'identify', id: operation.userId, generation, key, ...(operation.tierMove ? { tierMove: operation.tierMove } : {}) };
  if (operation.kind === 'relationship' || operation.membership) return undefined;
  return { destination, subject: 'account', id: operation.accountId, generation, key };
}

/** Why a queued operation that a newer one replaces is never sent: in the ledger, as its last error. */
export const REPLACED_REASON = 'superseded: a newer operation carrying these traits was planned, so this one is never sent again';

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
  /**
   * `recent`: an event the campaign guard judged (plan/recent-events.ts): sent as decided, or `undecided` (a history
   * load without a decision, which decides once planning is over and sends nothing before).
   */
  | { type: 'operation'; operation: Operation; recent?: 'send' | 'undecided' }
  /** An event the campaign guard keeps from being sent, as decided: held for a later run, or skipped for good. */
  | { type: 'withheld'; operation: EventOperation; action: 'skip' | 'hold' }
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
      /** What kind of problem it is, stable across rows and runs (text output groups by it; see problemKind). */
      code?: string;
    }
  | { type: 'warning'; message: string; location: RecordLocation | undefined; destination?: Destination; limits?: LimitViolation[]; code?: string };

export type PlanMode = 'sync' | 'backfill';
