import type { IdentityRule } from '../config/config.js';
import { canonicalKey, normalizeEmail } from './identity.js';
import type { Participant, RecordLocation } from './participant.js';
import { metadataValue, type TraitMap } from './traits.js';

/**
 * Accounts (B2B, DESIGN.md §11): people grouped by the account id a participant field holds, and the account's
 * traits computed over its members. Pure: the planner feeds it the people it planned and asks at the end.
 */

/** The account id a participant names, or why it names none (reported per row). */
export type AccountIdOf = { id: string } | { missing: string };

/**
 * The account id by the group rule (the syntax of `--user-id`). Metadata keys match as trait keys do (case,
 * spaces and punctuation aside), since export columns arrive as `Company ID` when the rule says `company_id`.
 */
export function accountIdOf(participant: Pick<Participant, 'id' | 'email' | 'metadata'>, rule: IdentityRule): AccountIdOf {
  switch (rule.kind) {
    case 'id': {
      // Account ids are identity keys: compared and sent in canonical form, like user ids.
      const id = canonicalKey(participant.id);
      return id === '' ? { missing: 'its participant id is empty' } : { id };
    }
    case 'email': {
      const email = participant.email === undefined ? '' : normalizeEmail(participant.email);
      return email !== '' ? { id: email } : { missing: 'it has no email address' };
    }
    case 'metadata': {
      const value = metadataValue(participant.metadata, rule.key);
      // An export's empty cell is no metadata at all: "empty or missing" covers both.
      if (value === undefined || value === null) return { missing: `metadata "${rule.key}" is empty or missing` };
      const text = canonicalKey(String(value));
      return text === '' ? { missing: `metadata "${rule.key}" is empty` } : { id: text };
    }
  }
}

/** The account's display name by its rule, if the participant has one. */
export function accountNameOf(participant: Pick<Participant, 'id' | 'email' | 'metadata'>, rule: IdentityRule | undefined): string | undefined {
  if (rule === undefined) return undefined;
  const found = accountIdOf(participant, rule);
  return 'id' in found ? found.id : undefined;
}

/** One planned person as an account counts them. */
export interface AccountMember {
  userId: string;
  participantId: string;
  location: RecordLocation | undefined;
  /** Joined through a referral (the person's own acquisition channel is `referral`). */
  referred: boolean;
  /** Their successful referrals. */
  count: number;
  /** Epoch ms; the first member is the earliest. */
  joinedAt: number | undefined;
  name: string | undefined;
}

/** Account traits under their names at both destinations (DESIGN.md §11). */
export const ACCOUNT_TRAITS = {
  source: 'referral_source',
  referredMembers: 'referred_members',
  referringMembers: 'referring_members',
  count: 'referral_count',
  channel: 'acquisition_channel',
  name: 'name',
} as const;

export interface Account {
  id: string;
  /** In join order: the earliest first (members with no join date after, by participant id). */
  members: AccountMember[];
}

/** The accounts of one run, built as people are planned. */
export class AccountBook {
  private readonly accounts = new Map<string, AccountMember[]>();

  add(accountId: string, member: AccountMember): void {
    const members = this.accounts.get(accountId);
    if (members) members.push(member);
    else this.accounts.set(accountId, [member]);
  }

  get size(): number {
    return this.accounts.size;
  }

  /** Every account, by id, its members in join order: the same order on every machine, whatever the read order. */
  list(): Account[] {
    return [...this.accounts.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, members]) => ({ id, members: [...members].sort(byJoinOrder) }));
  }
}

function byJoinOrder(a: AccountMember, b: AccountMember): number {
  if (a.joinedAt !== b.joinedAt) {
    if (a.joinedAt === undefined) return 1;
    if (b.joinedAt === undefined) return -1;
    return a.joinedAt - b.joinedAt;
  }
  return a.participantId < b.participantId ? -1 : a.participantId > b.participantId ? 1 : 0;
}

/**
 * The account's traits over its members: referral source, members who joined through a referral, members with at
 * least one successful referral, their referrals summed, the account's channel (that of its first member), and its
 * name (the first member's that has one) when a name rule is given.
 */
export function accountTraits(account: Account, source: string): TraitMap {
  const traits: TraitMap = {
    [ACCOUNT_TRAITS.source]: source,
    [ACCOUNT_TRAITS.referredMembers]: account.members.filter((m) => m.referred).length,
    [ACCOUNT_TRAITS.referringMembers]: account.members.filter((m) => m.count > 0).length,
    [ACCOUNT_TRAITS.count]: account.members.reduce((sum, m) => sum + m.count, 0),
    [ACCOUNT_TRAITS.channel]: account.members[0]?.referred ? 'referral' : 'organic',
  };
  const name = account.members.find((m) => m.name !== undefined)?.name;
  if (name !== undefined) traits[ACCOUNT_TRAITS.name] = name;
  return traits;
}
