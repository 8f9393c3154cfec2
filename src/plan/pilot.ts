import { canonicalKey, normalizeEmail } from '../model/identity.js';
import type { PlanItem } from './types.js';

/** `--limit N` and `--only <id>` (repeatable): plan and send only a few people (a pilot). */
export interface PilotSpec {
  /** The first N people, in source order, that have something to send. */
  limit?: number;
  /** People by their user id (as sent downstream) or their participant id in the source. */
  only?: readonly string[];
}

/**
 * Picks a pilot's people out of the planner's items, so that what reaches the plan, the summary and the queue is
 * theirs alone: their identifies, their events (every event's subject is the person whose row planned it), their
 * account memberships, and what the planner says about them (unchanged, already sent). The others' items are
 * dropped, so nothing of theirs is queued or recorded and a later full run plans them exactly as it would have.
 *
 * `--only` is decided when a person's row begins (its `participant` item). `--limit` needs to know whether a person
 * has anything to send, so a person's items are held until their row ends: a pilot of 5 is 5 people who receive
 * something, not 5 rows of which some were already up to date (repeating `sync --limit 5` takes the next 5).
 * Invalid rows and warnings always pass: they are about the data, whoever is piloted.
 *
 * Accounts are planned after everyone (their traits are computed over every member): a pilot plans no account
 * traits (the caller turns them off), and keeps the memberships of its own people only.
 */
export class PilotSelection {
  private readonly selected = new Set<string>();
  private readonly wanted: ReadonlyMap<string, string>;
  private readonly matched = new Set<string>();
  /** The row under way: its user id, whether it is in, and (for --limit) its items held until it ends. */
  private current: { userId: string; in: boolean | undefined; held: PlanItem[]; sends: boolean } | undefined;
  private seen = 0;

  constructor(readonly spec: PilotSpec) {
    // Each --only value, in the forms it is compared in, back to what the user typed.
    const wanted = new Map<string, string>();
    for (const value of spec.only ?? []) for (const form of forms(value)) wanted.set(form, value);
    this.wanted = wanted;
  }

  /** The items to keep now, for one item of the planner (in order). */
  pass(item: PlanItem): PlanItem[] {
    switch (item.type) {
      case 'invalid':
      case 'warning':
        return [item];
      case 'participant': {
        const out = this.closeRow();
        this.seen += 1;
        this.current = { userId: item.userId, in: this.spec.only ? this.onlyMatches(item.userId, item.participantId) : undefined, held: [], sends: false };
        return [...out, ...this.route(item)];
      }
      case 'account':
        // Account traits are not planned in a pilot; what is left of an account's summary would not be the pilot's.
        return this.closeRow();
      case 'operation': {
        const op = item.operation;
        if (op.kind === 'group' || op.kind === 'object' || op.kind === 'relationship') {
          const out = this.closeRow();
          return this.selected.has(op.userId) ? [...out, item] : out;
        }
        if (this.current === undefined || op.userId !== this.current.userId) {
          // Not expected (every operation of a person is planned on their row): kept only for someone chosen.
          return this.selected.has(op.userId) ? [item] : [];
        }
        this.current.sends = true;
        return this.route(item);
      }
      case 'withheld': {
        // A recent event the campaign guard holds back or skips: the person's, like their other events, so that a
        // pilot decides nothing for anyone it leaves for the full run.
        const op = item.operation;
        if (this.current === undefined || op.userId !== this.current.userId) return this.selected.has(op.userId) ? [item] : [];
        this.current.sends = true;
        return this.route(item);
      }
      case 'unchanged':
        return this.current !== undefined && item.userId === this.current.userId ? this.route(item) : [];
      case 'deduped':
        // Memberships and account traits already sent belong to the accounts' part; identify/events to the row.
        if (item.event === 'group' || item.event === 'relationship' || item.event === 'object') return [];
        return this.current !== undefined ? this.route(item) : [];
    }
  }

  /** What is still held when the planner is done. */
  end(): PlanItem[] {
    return this.closeRow();
  }

  /** People chosen so far. */
  get people(): number {
    return this.selected.size;
  }

  /** People (valid rows) the planner went through. */
  get participants(): number {
    return this.seen;
  }

  /** The --only values no participant matched, as given. */
  unmatched(): string[] {
    return (this.spec.only ?? []).filter((value) => !this.matched.has(value));
  }

  private route(item: PlanItem): PlanItem[] {
    const row = this.current!;
    if (row.in === true) return [item];
    if (row.in === false) return [];
    row.held.push(item);
    return [];
  }

  /** Ends the row under way: under --limit, it is in when it sends something and the pilot is not full. */
  private closeRow(): PlanItem[] {
    const row = this.current;
    this.current = undefined;
    if (row === undefined) return [];
    if (row.in === true) {
      this.selected.add(row.userId);
      return [];
    }
    if (row.in === false) return [];
    if (row.sends && this.selected.size < (this.spec.limit ?? Number.POSITIVE_INFINITY)) {
      this.selected.add(row.userId);
      return row.held;
    }
    return [];
  }

  private onlyMatches(userId: string, participantId: string): boolean {
    let found = false;
    for (const form of [...forms(userId), canonicalKey(participantId)]) {
      const given = this.wanted.get(form);
      if (given !== undefined) {
        this.matched.add(given);
        found = true;
      }
    }
    if (!found) return false;
    // --limit with --only: the first N of those named.
    return this.selected.size < (this.spec.limit ?? Number.POSITIVE_INFINITY);
  }
}

/** The forms a user id or an --only value compares in: as written (canonical), and as an email without case. */
function forms(value: string): string[] {
  const canonical = canonicalKey(value);
  return canonical.includes('@') ? [canonical, normalizeEmail(value)] : [canonical];
}
