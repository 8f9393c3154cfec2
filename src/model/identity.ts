import type { IdentityRule } from '../config/config.js';
import type { Participant } from './participant.js';

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function looksLikeEmail(value: string): boolean {
  return /^[^\s@]+@[^\s@]+$/.test(value.trim());
}

/** The downstream identity (Segment userId, Customer.io identifier) of a participant, or undefined if it has none. */
export function identityOf(participant: Pick<Participant, 'id' | 'email' | 'metadata'>, rule: IdentityRule): string | undefined {
  switch (rule.kind) {
    case 'email':
      return participant.email ? normalizeEmail(participant.email) : undefined;
    case 'id':
      return participant.id.trim() === '' ? undefined : participant.id.trim();
    case 'metadata': {
      const value = participant.metadata[rule.key];
      if (value === null || value === undefined) return undefined;
      const text = String(value).trim();
      return text === '' ? undefined : text;
    }
  }
}

/** Why a participant has no identity, for the invalid-row report. */
export function missingIdentityReason(rule: IdentityRule): string {
  switch (rule.kind) {
    case 'email':
      return 'no email address, and the user id is the email (choose another with --user-id)';
    case 'id':
      return 'no participant id';
    case 'metadata':
      return `no value for metadata "${rule.key}", which is the user id (--user-id metadata.${rule.key})`;
  }
}
