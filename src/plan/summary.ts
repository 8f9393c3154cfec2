import { CUSTOMERIO_CAMPAIGN_WINDOW_MS, EVENT_KINDS, type Destination, type EventKind } from '../config/defaults.js';
import type { RecordLocation } from '../model/participant.js';
import { problemEntry, problemKind, type ProblemItem } from './plan-file.js';
import type { AccountPlan, EventOperation, PlanItem, TraitChange } from './types.js';

export interface DestinationCounts {
  identify: { new: number; changed: number; refresh: number; unchanged: number };
  events: Record<EventKind, { send: number; deduped: number }>;
  /** B2B (`--group-id`): accounts by what happens to their traits, and members related to them. */
  accounts: { new: number; changed: number; refresh: number; unchanged: number; membersToAdd: number; membersRelated: number };
  /** Events the ledger holds as dead: only `retry` sends them. */
  dead: number;
  /** Events the campaign guard skipped for good in an earlier run (`--recent-events skip`): never sent. */
  skipped: number;
  /** Recent events this plan withholds as decided (held or skipped, `--recent-events`): not among the operations. */
  withheld: number;
  operations: number;
  bytes: number;
}

/** A pilot's people: `people` of `participants` (valid rows planned), chosen by `limit` and/or `only`. */
export interface PilotSummary {
  people: number;
  /** Unknown when a pilot's plan is applied: the plan holds the pilot's people only. */
  participants?: number;
  limit?: number;
  only?: readonly string[];
}

/** "pilot: 5 of 2,000 people (--limit 5)": how a summary says it was a pilot. */
export function describePilot(pilot: PilotSummary): string {
  const how = [pilot.limit !== undefined ? `--limit ${pilot.limit}` : '', pilot.only !== undefined ? `--only ${pilot.only.join(', ')}` : ''].filter(Boolean).join(', ');
  const of = pilot.participants === undefined ? `${pilot.people === 1 ? 'person' : 'people'}` : `of ${pilot.participants.toLocaleString('en-US')} ${pilot.participants === 1 ? 'person' : 'people'}`;
  return `pilot: ${pilot.people.toLocaleString('en-US')} ${of} (${how}); the others are left for the full run`;
}

export interface PersonChange {
  userId: string;
  participantId: string;
  change: 'new' | 'changed' | 'refresh';
  changes: TraitChange[];
}

export interface Problem {
  location: RecordLocation | undefined;
  message: string;
  /** The item itself, for its JSON form. */
  item: ProblemItem;
}

/**
 * The campaign guard's events in a plan: `guarded` in all; `undecided` still to be decided (a history load without
 * a decision: they are counted in the operations to send, and the run asks or stops before sending anything);
 * `send` among the operations as decided; `skip` and `hold` withheld as decided (not among the operations).
 */
export interface RecentEventsSummary {
  guarded: number;
  undecided: number;
  send: number;
  skip: number;
  hold: number;
  examples: { destination: Destination; userId: string; event: string; time: string }[];
}

/** Guarded events shown as examples (person, event, timestamp). */
export const RECENT_EXAMPLES = 5;

/** Invalid rows and warnings kept for text output; every one of them is in `--json` and `--out` (cli/). */
export const PROBLEM_SAMPLE_LIMIT = 50;

/** Problems of one kind (`problemKind`): how many, and the first few. */
export interface ProblemKindCount {
  kind: string;
  count: number;
  examples: Problem[];
}

/** Examples kept per kind. */
export const KIND_EXAMPLES = 3;
/** Kinds counted apart; rows of any further kind are counted together under OTHER_KINDS. */
const KINDS_KEPT = 200;
export const OTHER_KINDS = '(other kinds)';

/** Counts problems by kind in bounded memory: a few examples per kind and at most KINDS_KEPT kinds. */
export class ProblemTally {
  private readonly byKind = new Map<string, ProblemKindCount>();

  add(problem: Problem): void {
    let kind = problemKind(problem.item);
    if (!this.byKind.has(kind) && this.byKind.size >= KINDS_KEPT) kind = OTHER_KINDS;
    let entry = this.byKind.get(kind);
    if (!entry) {
      entry = { kind, count: 0, examples: [] };
      this.byKind.set(kind, entry);
    }
    entry.count += 1;
    if (entry.examples.length < KIND_EXAMPLES) entry.examples.push(problem);
  }

  /** The kinds, most rows first (first seen first among equals). */
  kinds(): ProblemKindCount[] {
    return [...this.byKind.values()].sort((a, b) => b.count - a.count);
  }
}

/** Lists too long for the summary (every invalid row, every warning), supplied by the caller for `toJSON`. */
export interface ProblemLists {
  invalidRows: unknown;
  warningRows: unknown;
}

/**
 * Folds plan items into what a person reads at a glance. Keeps counts for everything and samples (never every
 * row) of changes, invalid rows and warnings, so a million-row plan summarizes in constant memory.
 */
export class PlanSummary {
  participants = 0;
  invalid = 0;
  warnings = 0;
  readonly invalidSamples: Problem[] = [];
  readonly warningSamples: Problem[] = [];
  /** Invalid rows and warnings counted by kind, for text output that stays a few lines however many rows there are. */
  readonly invalidKinds = new ProblemTally();
  readonly warningKinds = new ProblemTally();
  readonly destinations: Partial<Record<Destination, DestinationCounts>> = {};
  readonly tiers = new Map<string, number>();
  readonly channels = { referral: 0, organic: 0 };
  readonly changes: PersonChange[] = [];
  /** Accounts whose traits this plan sends (first destination), up to the change limit: diff shows them like people. */
  readonly accountChanges: AccountPlan[] = [];
  /** Accounts planned (first destination that has them); 0 without `--group-id`. */
  accounts = 0;
  /** The destination whose account items are listed. */
  accountsFrom: Destination | undefined;
  /** Customer.io events timestamped within 72 hours of now: they can trigger campaigns. */
  customerioRecentEvents = 0;
  /** Set for a pilot (`--limit`, `--only`): how many people it took, of how many planned. */
  pilot: PilotSummary | undefined;
  /** The campaign guard's events (plan/recent-events.ts): how many, what becomes of them, a few examples. */
  readonly recentEvents: RecentEventsSummary = { guarded: 0, undecided: 0, send: 0, skip: 0, hold: 0, examples: [] };

  constructor(
    readonly destinationOrder: readonly Destination[],
    readonly now: Date,
    /** How many people's trait changes to keep; Infinity for `diff --full`. */
    readonly changeLimit: number,
    readonly tierOrder: readonly string[],
  ) {
    for (const destination of destinationOrder) this.destinations[destination] = emptyCounts();
  }

  add(item: PlanItem): void {
    switch (item.type) {
      case 'participant':
        this.participants += 1;
        this.tiers.set(item.traits.tier, (this.tiers.get(item.traits.tier) ?? 0) + 1);
        this.channels[item.traits.channel] += 1;
        return;
      case 'invalid':
        this.invalid += 1;
        this.invalidKinds.add({ location: item.location, message: item.reason, item });
        if (this.invalidSamples.length < PROBLEM_SAMPLE_LIMIT) this.invalidSamples.push({ location: item.location, message: item.reason, item });
        return;
      case 'warning':
        this.warnings += 1;
        this.warningKinds.add({ location: item.location, message: item.message, item });
        if (this.warningSamples.length < PROBLEM_SAMPLE_LIMIT) this.warningSamples.push({ location: item.location, message: item.message, item });
        return;
      case 'unchanged':
        // Acknowledged by this run itself (it resumed a queue): sent now, reported with what was sent.
        if (!item.thisRun) this.counts(item.destination).identify.unchanged += 1;
        return;
      case 'account': {
        const { account } = item;
        const counts = this.counts(account.destination).accounts;
        counts[account.change] += 1;
        counts.membersToAdd += account.newMembers;
        // Listed once, by the first destination that plans accounts (Customer.io may not: --customerio-api v1).
        this.accountsFrom ??= account.destination;
        if (account.destination === this.accountsFrom) {
          this.accounts += 1;
          if (account.change !== 'unchanged' && this.accountChanges.length < this.changeLimit) this.accountChanges.push(account);
        }
        return;
      }
      case 'withheld':
        this.counts(item.operation.destination).withheld += 1;
        this.recentEvent(item.operation, item.action);
        return;
      case 'deduped': {
        const counts = this.counts(item.destination);
        if (item.status === 'dead') counts.dead += 1;
        else if (item.status === 'skipped') counts.skipped += 1;
        else if (item.event === 'group' || item.event === 'relationship') counts.accounts.membersRelated += 1;
        else if (item.event !== 'identify' && item.event !== 'object' && item.status !== 'sentThisRun') counts.events[item.event].deduped += 1;
        return;
      }
      case 'operation': {
        const op = item.operation;
        const counts = this.counts(op.destination);
        counts.operations += 1;
        counts.bytes += op.bytes;
        if (op.kind === 'identify') {
          counts.identify[op.change] += 1;
          if (op.destination === this.destinationOrder[0] && this.changes.length < this.changeLimit) {
            this.changes.push({ userId: op.userId, participantId: op.participantId, change: op.change, changes: op.changes });
          }
        } else if (op.kind === 'track') {
          counts.events[op.event].send += 1;
          if (item.recent) this.recentEvent(op, item.recent);
          // "In the past 72 hours": an event dated in the future is not in that window.
          const age = this.now.getTime() - (op.time ?? this.now).getTime();
          if (op.destination === 'customerio' && age >= 0 && age < CUSTOMERIO_CAMPAIGN_WINDOW_MS) {
            this.customerioRecentEvents += 1;
          }
        }
      }
    }
  }

  /** Counts a guarded event, with what becomes of it (undecided: the run decides once planning is over). */
  private recentEvent(operation: EventOperation, action: 'send' | 'skip' | 'hold' | 'undecided'): void {
    const recent = this.recentEvents;
    recent.guarded += 1;
    recent[action] += 1;
    if (recent.examples.length < RECENT_EXAMPLES) {
      recent.examples.push({ destination: operation.destination, userId: operation.userId, event: operation.name, time: (operation.time ?? this.now).toISOString() });
    }
  }

  get operations(): number {
    return Object.values(this.destinations).reduce((sum, c) => sum + (c?.operations ?? 0), 0);
  }

  get hasChanges(): boolean {
    return this.operations > 0;
  }

  /** Tiers in configured order (highest first), including empty ones, so the chart always has the same rows. */
  tierDistribution(): { tier: string; count: number }[] {
    const rows = this.tierOrder.map((tier) => ({ tier, count: this.tiers.get(tier) ?? 0 }));
    for (const [tier, count] of this.tiers) if (!this.tierOrder.includes(tier)) rows.push({ tier, count });
    return rows;
  }

  /**
   * The summary as data. `lists` carries every invalid row and warning (the caller streams them from where it
   * kept them); without it, the samples stand in. `warningSamples` (the first 50) stays for older readers.
   */
  toJSON(lists?: ProblemLists): Record<string, unknown> {
    return {
      participants: this.participants,
      invalid: this.invalid,
      invalidRows: lists ? lists.invalidRows : this.invalidSamples.map(problemJson),
      warnings: this.warnings,
      warningRows: lists ? lists.warningRows : this.warningSamples.map(problemJson),
      warningSamples: this.warningSamples.map(problemJson),
      invalidKinds: this.invalidKinds.kinds().map(kindJson),
      warningKinds: this.warningKinds.kinds().map(kindJson),
      destinations: this.destinations,
      operations: this.operations,
      tiers: Object.fromEntries(this.tierDistribution().map((r) => [r.tier, r.count])),
      channels: this.channels,
      customerioRecentEvents: this.customerioRecentEvents,
      recentEvents: this.recentEvents,
      changes: this.changes,
      accounts: this.accounts,
      accountChanges: this.accountChanges,
      ...(this.pilot ? { pilot: this.pilot } : {}),
    };
  }

  private counts(destination: Destination): DestinationCounts {
    let counts = this.destinations[destination];
    if (!counts) {
      counts = emptyCounts();
      this.destinations[destination] = counts;
    }
    return counts;
  }
}

function emptyCounts(): DestinationCounts {
  const events = {} as Record<EventKind, { send: number; deduped: number }>;
  for (const kind of EVENT_KINDS) events[kind] = { send: 0, deduped: 0 };
  return {
    identify: { new: 0, changed: 0, refresh: 0, unchanged: 0 },
    events,
    accounts: { new: 0, changed: 0, refresh: 0, unchanged: 0, membersToAdd: 0, membersRelated: 0 },
    dead: 0,
    skipped: 0,
    withheld: 0,
    operations: 0,
    bytes: 0,
  };
}

function kindJson(kind: ProblemKindCount): Record<string, unknown> {
  return { kind: kind.kind, count: kind.count, examples: kind.examples.map(problemJson) };
}

function problemJson(problem: Problem): Record<string, unknown> {
  return problemEntry(problem.item);
}
