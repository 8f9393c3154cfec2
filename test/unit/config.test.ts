import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { UsageError } from '../../src/errors.js';

describe('config file validation', () => {
  it('reports every bad key in one error, naming the file', () => {
    let error: unknown;
    try {
      parseConfig({ tierz: {}, userId: 'phone', tiers: { gold: 'ten' }, events: { segment: { joined: '' } } }, 'my.config.json');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as UsageError).message;
    expect(message).toContain('my.config.json has 4 problems');
    expect(message).toContain('unknown key "tierz"');
    expect(message).toContain('"userId" must be "email", "id" or "metadata.<key>"');
    expect(message).toContain('"tiers.gold" must be a whole number');
    expect(message).toContain('"events.segment.joined" must be a non-empty string');
    expect((error as UsageError).exitCode).toBe(64);
  });

  it('requires a tier with minimum 0', () => {
    expect(() => parseConfig({ tiers: { gold: 5 } }, 'c.json')).toThrow(/one tier with minimum 0/);
  });

  it('reads names, identity, columns and metadata traits', () => {
    const config = parseConfig(
      {
        userId: 'metadata.uid',
        events: { customerio: { joined: 'joined_referrals' } },
        columns: { email: 'Member Email', 'metadata.plan': 'Plan Type' },
        metadataTraits: ['plan'],
        destinations: ['segment'],
      },
      'c.json',
    );
    expect(config.identity).toEqual({ kind: 'metadata', key: 'uid' });
    expect(config.eventNames.customerio.joined).toBe('joined_referrals');
    expect(config.eventNames.segment.joined).toBe('Referral Program Joined');
    expect(config.columns).toEqual({ email: 'Member Email', 'metadata.plan': 'Plan Type' });
    expect(config.destinations).toEqual(['segment']);
  });

  it('lists every pair of traits or events sent under one destination name (exit 64)', () => {
    let error: unknown;
    try {
      parseConfig(
        {
          traits: { segment: { tier: 'email' }, customerio: { count: 'referral_tier', code: 'referral_tier' } },
          events: { segment: { joined: 'Referral Made' } },
          metadataTraits: ['referral_link'],
        },
        'names.json',
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    const message = (error as UsageError).message;
    expect((error as UsageError).exitCode).toBe(64);
    expect(message).toContain('names.json has 5 problems');
    expect(message).toContain('traits.segment.tier and traits.segment.email are sent to segment under the same name "email"');
    expect(message).toContain('traits.customerio.tier and traits.customerio.count and traits.customerio.code are sent to customerio under the same name "referral_tier"');
    expect(message).toContain('events.segment.joined and events.segment.referralMade are sent to segment under the same name "Referral Made"');
    expect(message).toContain('traits.segment.link and metadataTraits "referral_link" are sent to segment under the same name "referral_link"');
    expect(message).toContain('traits.customerio.link and metadataTraits "referral_link" are sent to customerio under the same name "referral_link"');
  });
});
