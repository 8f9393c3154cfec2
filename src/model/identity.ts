import type { IdentityRule } from '../config/config.js';
import type { Participant } from './participant.js';

/**
 * Code points that render as nothing: Unicode's Default_Ignorable_Code_Point set (zero-width space and joiners
 * U+200B–U+200D, word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, the bidi marks, embeddings, overrides and
 * isolates U+200E/U+200F/U+202A–U+202E/U+2066–U+2069, variation selectors, tag characters, Hangul fillers, …).
 * Unicode maintains this set for exactly "a renderer that does not support it shows nothing", so two keys that
 * differ only by these look identical to every person who reads them. Other format (Cf) characters outside it,
 * such as the Arabic number signs U+0600–U+0605, are visible and stay.
 */
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/gu;

/**
 * An identity key (a participant id, a user id, a referrer reference, an account id) in the one form it is
 * compared, stored and sent in: invisible code points removed, Unicode NFC, surrounding whitespace trimmed.
 * `josé` typed (NFC) and `josé` pasted from a system that decomposes (NFD), or an id with a zero-width space
 * from a spreadsheet, are one key. Invisibles go first: one between a letter and its accent would block NFC
 * from composing them.
 */
export function canonicalKey(value: string): string {
  return value.replace(INVISIBLE, '').normalize('NFC').trim();
}

/** An email address as an identity: its canonical key without letter case (GrowSurf's own rule). */
export function normalizeEmail(email: string): string {
  // Lower case can decompose (İ → i + U+0307), so NFC comes after it.
  return canonicalKey(email.toLowerCase());
}

/** The first C0 or C1 control character in an identity key, as `U+001B`; undefined when it holds none. */
export function controlCharacterIn(key: string): string | undefined {
  const found = CONTROL.exec(key)?.[0];
  return found === undefined ? undefined : `U+${found.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** C0 and C1 controls and DEL: no address, id or account key holds one on purpose (an ANSI sequence, a pasted NUL). */
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/;

export function looksLikeEmail(value: string): boolean {
  const key = canonicalKey(value);
  return /^[^\s@]+@[^\s@]+$/.test(key) && !CONTROL.test(key);
}

/** A referrer as the source names it (an id or an email address), as the directory keys it. */
export function referenceKey(reference: string): string {
  const key = canonicalKey(reference);
  return looksLikeEmail(key) ? normalizeEmail(key) : key;
}

/** The downstream identity (Segment userId, Customer.io identifier) of a participant, or undefined if it has none. */
export function identityOf(participant: Pick<Participant, 'id' | 'email' | 'metadata'>, rule: IdentityRule): string | undefined {
  switch (rule.kind) {
    case 'email': {
      const email = participant.email === undefined ? '' : normalizeEmail(participant.email);
      return email === '' ? undefined : email;
    }
    case 'id': {
      const id = canonicalKey(participant.id);
      return id === '' ? undefined : id;
    }
    case 'metadata': {
      const value = participant.metadata[rule.key];
      if (value === null || value === undefined) return undefined;
      const text = canonicalKey(String(value));
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
