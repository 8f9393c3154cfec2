import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { parseConfig } from '../../src/config/load.js';
import { computeTraits, destinationTraits, tierFor } from '../../src/model/traits.js';
import { participant } from '../support/participants.js';

describe('tiers', () => {
  const tiers = defaultConfig().tiers;
  it.each([
    [0, 'new_participant'],
    [1, 'active'],
    [4, 'active'],
    [5, 'power_referrer'],
    [9, 'power_referrer'],
    [10, 'champion'],
    [250, 'champion'],
  ])('%i successful referrals → %s', (count, tier) => {
    expect(tierFor(count, tiers)).toBe(tier);
  });

  it('follows thresholds from the config file', () => {
    const config = parseConfig({ tiers: { gold: 3, silver: 2, member: 0 } }, 'test');
    expect(tierFor(1, config.tiers)).toBe('member');
    expect(tierFor(2, config.tiers)).toBe('silver');
    expect(tierFor(3, config.tiers)).toBe('gold');
  });
});

describe('channel and status', () => {
  const config = defaultConfig();
  it('is referral when the participant names a referrer', () => {
    const traits = computeTraits(participant({ id: 'a', referrerId: 'b', referralStatus: 'pending' }), { referredBy: 'b@example.com', count: 0 }, config);
    expect(traits.channel).toBe('referral');
    expect(traits.referredBy).toBe('b@example.com');
    expect(traits.status).toBe('pending');
  });

  it('is referral when GrowSurf says the participant came through a participant, even without a referrer', () => {
    const traits = computeTraits(participant({ id: 'a', joinedVia: 'PARTICIPANT' }), { referredBy: undefined, count: 0 }, config);
    expect(traits.channel).toBe('referral');
  });

  it('is organic for direct signups, which carry no referral status or referrer', () => {
    const traits = computeTraits(participant({ id: 'a', joinedVia: 'DIRECT', referralStatus: 'converted' }), { referredBy: undefined, count: 2 }, config);
    expect(traits.channel).toBe('organic');
    expect(traits.status).toBeUndefined();
    expect(traits.referredBy).toBeUndefined();
  });

  it('passes unknown status values through unchanged', () => {
    const traits = computeTraits(participant({ id: 'a', referrerId: 'b', referralStatusRaw: 'INVITE_SENT' }), { referredBy: 'b', count: 0 }, config);
    expect(traits.status).toBe('INVITE_SENT');
  });
});

describe('destination naming', () => {
  const config = defaultConfig();
  const p = participant({
    id: 'p1',
    email: 'Ann@Example.com',
    firstName: 'Ann',
    lastName: 'Lee',
    createdAt: new Date('2025-05-01T10:00:00.000Z'),
    referralCode: 'ann-p1',
    referralLink: 'https://x.example/?grsf=ann-p1',
  });
  const traits = computeTraits(p, { referredBy: undefined, count: 7 }, config);

  it('uses Segment names and ISO dates', () => {
    expect(destinationTraits(traits, 'segment', config)).toEqual({
      referral_tier: 'power_referrer',
      acquisition_channel: 'organic',
      referral_source: 'growsurf',
      referral_count: 7,
      referral_code: 'ann-p1',
      referral_link: 'https://x.example/?grsf=ann-p1',
      email: 'ann@example.com',
      firstName: 'Ann',
      lastName: 'Lee',
      createdAt: '2025-05-01T10:00:00.000Z',
    });
  });

  it('uses Customer.io names and unix seconds', () => {
    const cio = destinationTraits(traits, 'customerio', config);
    expect(cio.total_referrals).toBe(7);
    expect(cio.first_name).toBe('Ann');
    expect(cio.last_name).toBe('Lee');
    expect(cio.created_at).toBe(1746093600);
    expect(cio).not.toHaveProperty('referral_count');
  });

  it('renames traits from the config file', () => {
    const renamed = parseConfig({ traits: { segment: { tier: 'rs_tier' } } }, 'test');
    expect(destinationTraits(computeTraits(p, { referredBy: undefined, count: 0 }, renamed), 'segment', renamed)).toHaveProperty('rs_tier', 'new_participant');
  });

  it('forwards metadataTraits by name whatever the case or spacing of the export column ("plan" for a "Plan" column)', () => {
    const config = parseConfig({ metadataTraits: ['plan', 'account_tier'] }, 'test');
    const withMetadata = { ...p, metadata: { Plan: 'pro', 'Account Tier': 'gold', other: 'x' } };
    const traits = destinationTraits(computeTraits(withMetadata, { referredBy: undefined, count: 0 }, config), 'segment', config);
    expect(traits).toMatchObject({ plan: 'pro', account_tier: 'gold' });
    expect(traits).not.toHaveProperty('other');
  });
});

