import { CUSTOMERIO_CAMPAIGN_WINDOW_MS, type Destination, type RecentEventDecision } from '../config/defaults.js';
import type { PlanItem } from './types.js';

/**
 * The campaign guard (issue 19, point 1). A history load (a backfill, or the first sync into a destination) finds
 * the events a destination could act on as live and sends them only as the user decided. The research
 * (destinations.md §3.2) supports one such case: "Events with a timestamp in the past 72 hours can trigger
 * campaigns" in Customer.io. It says nothing of the kind for Segment (its Tracking API only records), so Segment
 * events are never guarded. An event without its own time is timestamped when it is sent, so it is always recent.
 */
export const GUARDED_DESTINATIONS: readonly Destination[] = ['customerio'];

/** The campaign guard's part of the plan context. */
export interface RecentEventsGuard {
  /**
   * The destinations this run loads history into: every guarded one for a backfill; for a sync, those where the
   * state holds nothing acknowledged for this program yet.
   */
  historyLoad: readonly Destination[];
  /** What the user decided; undefined: a history load decides once planning is over (a prompt, or exit 64). */
  decision: RecentEventDecision | undefined;
}

/** Whether an event's timestamp is within the window in which its destination may act on it as live. */
export function isRecentEvent(destination: Destination, time: Date | undefined, now: Date): boolean {
  if (!GUARDED_DESTINATIONS.includes(destination)) return false;
  // "In the past 72 hours": an event dated in the future is not in that window; one without a time is sent as now.
  const age = now.getTime() - (time ?? now).getTime();
  return age >= 0 && age < CUSTOMERIO_CAMPAIGN_WINDOW_MS;
}

/**
 * What the guard makes of one planned event item. `heldBefore`: an earlier run held it. Left as it was: an event
 * that is not recent (a held one older than the window included: it can no longer trigger anything), or a recent
 * one of an incremental sync (triggering campaigns on new referrals is its purpose). Otherwise the decision applies:
 * send (the item is marked `recent`), skip or hold (a `withheld` item); without one, a history load marks it
 * `recent` to be decided after planning, and an incremental sync keeps what an earlier run held, held.
 */
export function guardEvent(item: PlanItem, heldBefore: boolean, guard: RecentEventsGuard | undefined, now: Date): PlanItem {
  if (guard === undefined || item.type !== 'operation' || item.operation.kind !== 'track') return item;
  const operation = item.operation;
  if (!isRecentEvent(operation.destination, operation.time, now)) return item;
  const historyLoad = guard.historyLoad.includes(operation.destination);
  if (!historyLoad && !heldBefore) return item;
  const decision = guard.decision ?? (historyLoad ? undefined : 'hold');
  if (decision === undefined || decision === 'send') return { type: 'operation', operation, recent: decision ?? 'undecided' };
  return { type: 'withheld', operation, action: decision };
}

/** Why a withheld event is not sent, as the ledger keeps it (its last error). */
export const HELD_REASON = 'held: a recent event that could trigger Customer.io campaigns; decide with --recent-events send|skip (or a later run sends it once it is older than 72 hours)';
export const SKIPPED_REASON = 'skipped: a recent event that could trigger Customer.io campaigns, left out for good by --recent-events skip';
