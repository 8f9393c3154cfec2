import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/apply/limiter.js';
import { SlidingWindowLimiter } from '../../src/http/window-limiter.js';
import type { Participant } from '../../src/model/participant.js';
import { growsurfHooks, normalizeGrowsurfParticipant, type GsParticipant, type NormalizedParticipant } from '../../src/sources/growsurf/api.js';

const YEARS = { min: 2000, max: 2027 };

function participantOf(result: NormalizedParticipant): Participant {
  if ('invalid' in result) throw new Error(`expected a participant, got: ${result.invalid}`);
  return result.participant;
}

describe('GrowSurf participant normalization', () => {
  const raw = {
    id: 'f8g9nl',
    email: 'Gavin@Hooli.com',
    firstName: 'Gavin',
    lastName: null,
    createdAt: 1552404738928,
    shareUrl: 'https://piedpiper.com?grsf=gavin-f8g9nl',
    vanityKeys: ['gavin-f8g9nl'],
    referralCount: 2,
    leadCount: 1,
    rank: '9',
    shareCount: 163,
    referralSource: 'PARTICIPANT',
    referralStatus: 'CREDIT_AWARDED',
    referrer: { id: 'h8kp6l', email: 'Richard@PiedPiper.com', metadata: { plan: 'pro' } },
    rewards: [{ id: 'prew_1', rewardId: 'crew_1', status: 'FULFILLED', isReferrer: true, approvedAt: 1659453091744, fulfilledAt: 1659453418901 }],
    metadata: { company: 'Hooli, Inc', companySize: 10000, nested: { a: 1 } },
    ipAddress: '127.0.0.1',
    fingerprint: 'cfb163bd',
    notes: 'VIP',
  };

  it('follows DESIGN.md §3: referrer from referrer.id, code from the vanity key, conversion time from the referral row', () => {
    const p = participantOf(normalizeGrowsurfParticipant(raw, 'camp', 1_700_000_000_000, YEARS));
    expect(p).toMatchObject({
      source: 'growsurf',
      programId: 'camp',
      id: 'f8g9nl',
      email: 'gavin@hooli.com',
      firstName: 'Gavin',
      referralCode: 'gavin-f8g9nl',
      referrerId: 'h8kp6l',
      referrerProfile: { id: 'h8kp6l', email: 'richard@piedpiper.com', metadata: { plan: 'pro' } },
      referralStatus: 'converted',
      convertedAt: new Date(1_700_000_000_000),
      referralCount: 2,
      pendingCount: 1,
      joinedVia: 'PARTICIPANT',
      rewards: [{ id: 'prew_1', configId: 'crew_1', isReferrer: true, status: 'FULFILLED', at: new Date(1659453091744) }],
      metadata: { company: 'Hooli, Inc', companySize: 10000, nested: '{"a":1}' },
    });
    expect(p).not.toHaveProperty('lastName');
    // PII the destinations do not need is never copied.
    expect(JSON.stringify(p)).not.toMatch(/127\.0\.0\.1|cfb163bd|VIP/);
  });

  it('prefers referredBy, falls back to the id as the code, and keeps unknown statuses', () => {
    const p = participantOf(normalizeGrowsurfParticipant({ id: 'x1', referredBy: 'r9', referrer: null, referralStatus: 'INVITE_SENT', vanityKeys: [] }, 'camp', undefined, YEARS));
    expect(p.referrerId).toBe('r9');
    expect(p.referralCode).toBe('x1');
    expect(p.referralStatusRaw).toBe('INVITE_SENT');
    expect(p.referralStatus).toBeUndefined();
  });

  it('follows the date rule of every source: a time that is not one makes the participant invalid, an odd year warns', () => {
    const at = (createdAt: unknown): NormalizedParticipant => normalizeGrowsurfParticipant({ id: 'd1', createdAt } as GsParticipant, 'camp', undefined, YEARS);
    // A number past the range of a Date used to become an Invalid Date and crash the run when formatted.
    expect(at(1e20)).toEqual({ invalid: 'impossible date "100000000000000000000" in field "createdAt": 100000000000000000000 is not a time in milliseconds' });
    expect(at('2024-02-30T10:00:00Z')).toEqual({ invalid: 'impossible date "2024-02-30T10:00:00Z" in field "createdAt": February 2024 has 29 days' });
    expect(at({ when: 'yesterday' })).toMatchObject({ invalid: expect.stringContaining('unparseable date "{"when":"yesterday"}" in field "createdAt"') });
    const old = at(0);
    expect(old).toMatchObject({ participant: { createdAt: new Date(0) } });
    expect('warnings' in old && old.warnings).toEqual([
      'date "0" in field "createdAt" is in 1970, outside 2000–2027: read as 1970-01-01T00:00:00.000Z; check that it holds what you expect',
    ]);
    const reward = normalizeGrowsurfParticipant({ id: 'd2', rewards: [{ id: 'r', approvedAt: Number.NaN }] } as GsParticipant, 'camp', undefined, YEARS);
    expect(reward).toMatchObject({ invalid: expect.stringContaining('in field "rewards[0].approvedAt"') });
    expect(at(1_700_000_000_000)).toEqual({ participant: expect.objectContaining({ createdAt: new Date(1_700_000_000_000) }), warnings: [] });
  });

  it('never passes on text GrowSurf sent as invalid UTF-8', () => {
    const result = normalizeGrowsurfParticipant({ id: 'u1', email: 'jose@example.com', firstName: 'Jos\uFFFD' }, 'camp', undefined, YEARS);
    expect(result).toEqual({ invalid: 'GrowSurf sent text that is not valid UTF-8 (it reads as U+FFFD); the participant is not sent' });
  });

  it('reads GrowSurf\'s wait headers and adopts the limits it announces', () => {
    expect(growsurfHooks.retryAfterMs!({ 'growsurf-retry-after-minute-milliseconds': '42000' }, undefined)).toBe(42000);
    expect(growsurfHooks.retryAfterMs!({}, undefined)).toBeUndefined();
    const limiter = new SlidingWindowLimiter([{ name: 'minute', limit: 190, windowMs: 60_000 }]);
    growsurfHooks.observe!({ 'growsurf-ratelimit-minute-limit': '400' }, limiter);
    expect(limiter.limitOf('minute')).toBe(380);
  });
});

describe('SlidingWindowLimiter', () => {
  it('never lets more than the limit through in any window', async () => {
    let now = 0;
    const clock: Clock = { now: () => now, sleep: async (ms) => void (now += ms) };
    const limiter = new SlidingWindowLimiter([{ name: 'second', limit: 25, windowMs: 5000 }, { name: 'minute', limit: 190, windowMs: 60_000 }], clock);
    const times: number[] = [];
    for (let i = 0; i < 400; i += 1) {
      await limiter.take();
      times.push(now);
    }
    for (let i = 0; i < times.length; i += 1) {
      expect(times.filter((t) => t > times[i]! - 5000 && t <= times[i]!).length).toBeLessThanOrEqual(25);
      expect(times.filter((t) => t > times[i]! - 60_000 && t <= times[i]!).length).toBeLessThanOrEqual(190);
    }
    // 400 requests at 190 a minute need more than two minutes.
    expect(now).toBeGreaterThan(120_000);
  });
});
