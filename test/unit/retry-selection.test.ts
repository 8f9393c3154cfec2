import { describe, expect, it } from 'vitest';
import { selectRetries } from '../../src/apply/retry-selection.js';
import type { AccountOperation } from '../../src/plan/types.js';
import type { StoredAccount, StoredDelivery } from '../../src/state/store.js';

const REFUSED_AT = '2026-11-20T10:00:00.000Z';

function accountRow(key: string, op: Partial<AccountOperation> & Pick<AccountOperation, 'kind' | 'accountId' | 'membership'>, updatedAt = REFUSED_AT): StoredDelivery {
  const operation: AccountOperation = { destination: 'customerio', key, userId: op.accountId, participantId: '', payload: {}, bytes: 2, ...op };
  return { destination: operation.destination, key, kind: op.kind, userId: operation.userId, status: 'dead', attempts: 1, lastError: 'refused', payload: JSON.stringify(operation), updatedAt };
}

const state = (accounts: StoredAccount[]) => ({
  identities: async () => [],
  accounts: async () => accounts,
});

describe('choosing retries of account operations', () => {
  it('drops a refused object whose account has newer acknowledged traits, keeps only the newest refused one, and always resends memberships', async () => {
    const stale = accountRow('k-old', { kind: 'object', accountId: 'acme', membership: false, accountTraits: { traits: { referral_count: 1 }, hash: 'h1' } });
    const newer = accountRow('k-new', { kind: 'object', accountId: 'globex', membership: false, accountTraits: { traits: { referral_count: 1 }, hash: 'g1' } }, '2026-11-20T09:00:00.000Z');
    const newest = accountRow('k-newest', { kind: 'object', accountId: 'globex', membership: false, accountTraits: { traits: { referral_count: 2 }, hash: 'g2' } });
    const membership = accountRow('k-member', { kind: 'relationship', accountId: 'acme', membership: true, userId: 'ann@example.com' });
    const acknowledged: StoredAccount = { destination: 'customerio', accountId: 'acme', traits: { referral_count: 2 }, hash: 'h2', acknowledgedAt: new Date('2026-11-21T00:00:00Z') };

    const chosen = await selectRetries(state([acknowledged]), [newer, stale, newest, membership]);
    expect(chosen.resend.map((r) => r.key).sort()).toEqual(['k-member', 'k-newest']);
    expect(chosen.supersededAccounts.map((r) => r.key).sort()).toEqual(['k-new', 'k-old']);
    expect(chosen.superseded).toEqual([]);
  });

  it('resends a refused object when nothing newer was acknowledged for its account', async () => {
    const refused = accountRow('k', { kind: 'object', accountId: 'acme', membership: false, accountTraits: { traits: { referral_count: 1 }, hash: 'h1' } });
    const older: StoredAccount = { destination: 'customerio', accountId: 'acme', traits: { referral_count: 0 }, hash: 'h0', acknowledgedAt: new Date('2026-11-19T00:00:00Z') };
    expect((await selectRetries(state([older]), [refused])).resend.map((r) => r.key)).toEqual(['k']);
  });

  it('resends a refused Segment membership with the account traits acknowledged since, not the older ones it carried', async () => {
    const operation = {
      kind: 'group' as const,
      accountId: 'acme',
      membership: true,
      userId: 'bo@example.com',
      destination: 'segment' as const,
      payload: { type: 'group', userId: 'bo@example.com', groupId: 'acme', traits: { referral_count: 1 }, messageId: 'rs1-m' },
      accountTraits: { traits: { referral_count: 1 }, hash: 'h1' },
    };
    const refused = { ...accountRow('k-m', operation), destination: 'segment' as const };
    const acknowledged: StoredAccount = { destination: 'segment', accountId: 'acme', traits: { referral_count: 3 }, hash: 'h3', acknowledgedAt: new Date('2026-11-21T00:00:00Z') };
    const [chosen] = (await selectRetries(state([acknowledged]), [refused])).resend;
    expect(chosen!.key).toBe('k-m');
    expect(chosen!.operation).toMatchObject({
      payload: { type: 'group', userId: 'bo@example.com', groupId: 'acme', traits: { referral_count: 3 }, messageId: 'rs1-m' },
      accountTraits: { traits: { referral_count: 3 }, hash: 'h3' },
    });
    // Nothing newer acknowledged: sent as stored.
    expect((await selectRetries(state([]), [refused])).resend[0]!.operation).toBeUndefined();
  });
});

describe('choosing retries of identifies', () => {
  const identifyRow = (key: string, generation: number, status: 'dead' | 'failed'): StoredDelivery => {
    const operation = { destination: 'segment', kind: 'identify', key, userId: 'ann@example.com', participantId: 'a', payload: {}, bytes: 2, change: 'changed', changes: [], traits: {}, traitsHash: `h${generation}`, tierChanges: 0, generation };
    return { destination: 'segment', key, kind: 'identify', userId: 'ann@example.com', status, attempts: 1, lastError: 'refused', payload: JSON.stringify(operation), updatedAt: REFUSED_AT };
  };

  it('drops a refused identify that a newer identify of the same person replaced (a later generation), whatever became of that one', async () => {
    const old = identifyRow('k-g1', 1, 'dead');
    const newest = { destination: 'segment' as const, subject: 'identify' as const, id: 'ann@example.com', generation: 2, key: 'k-g2' };
    const chosen = await selectRetries({ identities: async () => [], accounts: async () => [], generations: async () => [newest] }, [old]);
    expect(chosen.resend).toEqual([]);
    expect(chosen.superseded.map((r) => r.key)).toEqual(['k-g1']);
    // It is the newest: resent as it was planned (retry reads no source).
    const current = await selectRetries({ identities: async () => [], accounts: async () => [], generations: async () => [{ ...newest, generation: 1, key: 'k-g1' }] }, [old]);
    expect(current.resend.map((r) => r.key)).toEqual(['k-g1']);
  });
});
