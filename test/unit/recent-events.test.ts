import { describe, expect, it } from 'vitest';
import type { Destination, RecentEventDecision } from '../../src/config/defaults.js';
import { guardEvent, isRecentEvent, type RecentEventsGuard } from '../../src/plan/recent-events.js';
import type { EventOperation, IdentifyOperation, PlanItem } from '../../src/plan/types.js';

const NOW = new Date('2026-06-01T12:00:00Z');
const HOUR = 3_600_000;

function event(destination: Destination, time: Date | undefined): PlanItem {
  const operation: EventOperation = { destination, kind: 'track', event: 'joined', name: 'referral_program_joined', key: 'k', userId: 'ann@x', participantId: 'a', time, payload: {}, bytes: 10 };
  return { type: 'operation', operation };
}

/** What the guard made of an item: left as it was, marked recent (send or undecided), or withheld (skip or hold). */
function verdict(item: PlanItem): string {
  if (item.type === 'withheld') return item.action;
  return item.type === 'operation' && item.recent ? item.recent : 'as before';
}

describe('the campaign guard, per event', () => {
  it.each([
    // time, ago in hours (undefined: observed now), expected
    { what: 'an hour ago', at: new Date(NOW.getTime() - HOUR), recent: true },
    { what: 'just under 72 hours ago', at: new Date(NOW.getTime() - 72 * HOUR + 1), recent: true },
    { what: '72 hours ago exactly', at: new Date(NOW.getTime() - 72 * HOUR), recent: false },
    { what: 'a year ago', at: new Date(NOW.getTime() - 365 * 24 * HOUR), recent: false },
    { what: 'in the future', at: new Date(NOW.getTime() + HOUR), recent: false },
    { what: 'without a time of its own (sent as now)', at: undefined, recent: true },
  ])('a Customer.io event timestamped $what is recent: $recent; a Segment one never is', ({ at, recent }) => {
    expect(isRecentEvent('customerio', at, NOW)).toBe(recent);
    expect(isRecentEvent('segment', at, NOW)).toBe(false);
  });

  const recent = new Date(NOW.getTime() - HOUR);
  const old = new Date(NOW.getTime() - 100 * HOUR);
  const cases: { historyLoad: boolean; heldBefore: boolean; decision: RecentEventDecision | undefined; time: Date; expected: string }[] = [];
  for (const decision of [undefined, 'send', 'skip', 'hold'] as const) {
    // A history load: the decision applies; without one, the run decides after planning.
    cases.push({ historyLoad: true, heldBefore: false, decision, time: recent, expected: decision ?? 'undecided' });
    cases.push({ historyLoad: true, heldBefore: true, decision, time: recent, expected: decision ?? 'undecided' });
    // An incremental sync sends new recent events: triggering campaigns on new referrals is its purpose.
    cases.push({ historyLoad: false, heldBefore: false, decision, time: recent, expected: 'as before' });
    // What an earlier run held stays held unless a decision says otherwise.
    cases.push({ historyLoad: false, heldBefore: true, decision, time: recent, expected: decision ?? 'hold' });
    // Older than the window: nothing to guard, held ones included (they can no longer trigger anything).
    cases.push({ historyLoad: true, heldBefore: true, decision, time: old, expected: 'as before' });
    cases.push({ historyLoad: false, heldBefore: true, decision, time: old, expected: 'as before' });
  }
  it.each(cases)('history load $historyLoad, held before $heldBefore, decision $decision, time $time: $expected', ({ historyLoad, heldBefore, decision, time, expected }) => {
    const guard: RecentEventsGuard = { historyLoad: historyLoad ? ['customerio'] : [], decision };
    expect(verdict(guardEvent(event('customerio', time), heldBefore, guard, NOW))).toBe(expected);
    // Segment's events and identifies are never guarded, nor anything planned without a guard.
    expect(verdict(guardEvent(event('segment', time), heldBefore, { historyLoad: ['segment', 'customerio'], decision }, NOW))).toBe('as before');
    expect(verdict(guardEvent(event('customerio', time), heldBefore, undefined, NOW))).toBe('as before');
  });

  it('an identify is never guarded', () => {
    const operation = { destination: 'customerio', kind: 'identify', key: 'k', userId: 'ann@x' } as IdentifyOperation;
    const item: PlanItem = { type: 'operation', operation };
    expect(guardEvent(item, false, { historyLoad: ['customerio'], decision: undefined }, NOW)).toBe(item);
  });
});
