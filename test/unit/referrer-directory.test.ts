import { describe, expect, it } from 'vitest';
import { ReferrerDirectory, scanDirectory } from '../../src/model/referrer-directory.js';
import { participant, records } from '../support/participants.js';

describe('referrer resolution', () => {
  const people = [
    participant({ id: 'r1', email: 'Rita@Example.com', metadata: { uid: 'u-r1' } }),
    participant({ id: 'f1', referrerId: 'r1', referralStatus: 'converted' }),
    participant({ id: 'f2', referrerId: 'rita@example.com', referralStatus: 'converted' }),
    participant({ id: 'f3', referrerId: 'RITA@example.com ', referralStatus: 'pending' }),
  ];

  it('resolves a referrer given by id to its email (default identity)', async () => {
    const { directory } = await scanDirectory(records(people), { kind: 'email' });
    expect(directory.resolve('r1')).toBe('rita@example.com');
  });

  it('resolves a referrer given by email, in any case, to its email', async () => {
    const { directory } = await scanDirectory(records(people), { kind: 'email' });
    expect(directory.resolve('RITA@example.com')).toBe('rita@example.com');
  });

  it('resolves both forms to the id under --user-id id', async () => {
    const { directory } = await scanDirectory(records(people), { kind: 'id' });
    expect(directory.resolve('r1')).toBe('r1');
    expect(directory.resolve('Rita@Example.com')).toBe('r1');
  });

  it('resolves both forms to a metadata value under --user-id metadata.uid', async () => {
    const { directory } = await scanDirectory(records(people), { kind: 'metadata', key: 'uid' });
    expect(directory.resolve('r1')).toBe('u-r1');
    expect(directory.resolve('rita@example.com')).toBe('u-r1');
  });

  it('cannot resolve an unknown id to an email', async () => {
    const { directory } = await scanDirectory(records(people), { kind: 'email' });
    expect(directory.resolve('gone42')).toBeUndefined();
  });

  it('counts successful and pending referrals named by id or by email', async () => {
    const { directory } = await scanDirectory(records(people), { kind: 'email' });
    expect(directory.referralsOf(people[0]!)).toEqual({ converted: 2, pending: 1 });
  });

  it('reports repeated ids as duplicates and keeps the first', async () => {
    const rows = [
      { kind: 'participant' as const, participant: participant({ id: 'x', email: 'first@example.com' }), location: { file: 'a.csv', line: 2 } },
      { kind: 'participant' as const, participant: participant({ id: 'x', email: 'second@example.com' }), location: { file: 'a.csv', line: 3 } },
    ];
    async function* gen() {
      yield* rows;
    }
    const { directory, duplicates } = await scanDirectory(gen(), { kind: 'email' });
    expect([...duplicates]).toEqual(['a.csv:3']);
    expect(directory.resolve('x')).toBe('first@example.com');
  });

  it('keeps memory to what the rule needs: no email map under the email rule', () => {
    const directory = new ReferrerDirectory({ kind: 'email' });
    directory.add(participant({ id: 'a', email: 'a@example.com' }));
    expect(directory.size).toBe(1);
  });
});
