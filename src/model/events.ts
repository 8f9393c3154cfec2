import type { EventKind } from '../config/defaults.js';
import type { Participant } from './participant.js';
import type { TraitValue } from './traits.js';

/**
 * One fact of the program's history (DESIGN.md §5), before it is named and shaped for a destination.
 * `subjectId`/`objectId` go into the idempotency key; `time` undefined means "observed now".
 */
export interface EventFact {
  kind: EventKind;
  /** Downstream identity of the person the event is on. */
  userId: string;
  subjectId: string;
  objectId: string;
  time: Date | undefined;
  properties: Record<string, TraitValue>;
}

export interface EventContext {
  /** Identity of this participant. */
  userId: string;
  /** Identity of the referrer, when the participant was referred and the referrer could be resolved. */
  referrerUserId: string | undefined;
}

// Rewards GrowSurf cancelled were never earned; every other status (PENDING approval, FULFILLED, …) was.
const NOT_EARNED = new Set(['CANCELLED', 'CANCELED', 'REJECTED']);

/** The history facts one participant's record implies. Tier changes come from the planner (they need state). */
export function deriveEvents(participant: Participant, context: EventContext): EventFact[] {
  const facts: EventFact[] = [];
  const base = {
    participant_id: participant.id,
    campaign_id: participant.programId,
  };
  const code = participant.referralCode ?? null;

  if (participant.createdAt !== undefined) {
    facts.push({
      kind: 'joined',
      userId: context.userId,
      subjectId: participant.id,
      objectId: '',
      time: participant.createdAt,
      properties: { ...base, referral_code: code, referrer_id: participant.referrerId ?? null },
    });
  }

  if (participant.referrerId !== undefined && context.referrerUserId !== undefined && participant.createdAt !== undefined) {
    // A friend has exactly one referrer, so the friend's id alone keys the referral: the same referral named by
    // the referrer's id (API) or email (an export) gives the same key.
    facts.push({
      kind: 'referralMade',
      userId: context.referrerUserId,
      subjectId: participant.id,
      objectId: '',
      time: participant.createdAt,
      properties: {
        campaign_id: participant.programId,
        referrer_id: participant.referrerId,
        friend_id: participant.id,
        friend_referral_status: participant.referralStatus ?? participant.referralStatusRaw ?? null,
      },
    });
  }

  if (participant.referralStatus === 'converted' && participant.referrerId !== undefined) {
    facts.push({
      kind: 'converted',
      userId: context.userId,
      subjectId: participant.id,
      objectId: '',
      time: participant.convertedAt,
      properties: { ...base, referral_code: code, referrer_id: participant.referrerId },
    });
  }

  for (const reward of participant.rewards) {
    if (NOT_EARNED.has(reward.status.toUpperCase())) continue;
    facts.push({
      kind: 'rewardEarned',
      userId: context.userId,
      subjectId: participant.id,
      objectId: reward.id,
      time: reward.at,
      properties: {
        ...base,
        referral_code: code,
        reward_id: reward.id,
        reward_config_id: reward.configId ?? null,
        reward_status: reward.status,
        is_referrer: reward.isReferrer,
      },
    });
  }
  return facts;
}

/**
 * The sync-only fact of a tier move, observed when the planner compares against the last acknowledged traits.
 * `ordinal` counts this person's transitions (1 for the first): 4 → 5 → 4 → 5 is three facts with three keys,
 * and a run that crashed before its identify was acknowledged plans the same ordinal, so the same key, again.
 */
export function tierChangedFact(
  participant: Participant,
  userId: string,
  transition: { from: string; to: string; count: number; ordinal: number },
): EventFact {
  const { from, to, count, ordinal } = transition;
  return {
    kind: 'tierChanged',
    userId,
    subjectId: participant.id,
    // The first transition keeps the key it had before ordinals existed, so states written then stay deduped.
    objectId: ordinal <= 1 ? `${from}>${to}@${count}` : `${from}>${to}@${count}#${ordinal}`,
    time: undefined,
    properties: {
      participant_id: participant.id,
      campaign_id: participant.programId,
      referral_code: participant.referralCode ?? null,
      previous_tier: from,
      tier: to,
      referral_count: count,
    },
  };
}
