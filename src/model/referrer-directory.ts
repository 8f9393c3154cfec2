import type { IdentityRule } from '../config/config.js';
import { identityOf, looksLikeEmail, normalizeEmail } from './identity.js';
import type { Participant, RecordLocation, SourceRecord } from './participant.js';

/**
 * Resolves a referrer as a source names it (a participant id or an email address) to the referrer's
 * downstream identity, and counts referrals for sources that do not carry the count themselves.
 *
 * Filled by one pass over the participants before planning. It keeps only what the identity rule needs:
 * with the default rule (email) that is one id → email map, about 100 bytes a participant.
 */
export class ReferrerDirectory {
  private readonly byId = new Map<string, string>();
  private readonly byEmail = new Map<string, string>();
  private readonly referrals = new Map<string, { converted: number; pending: number }>();

  constructor(private readonly rule: IdentityRule) {}

  /** Records a participant; returns false when its id was already recorded (a duplicate row). */
  add(participant: Participant): boolean {
    if (this.byId.has(participant.id)) return false;
    const identity = identityOf(participant, this.rule) ?? '';
    this.byId.set(participant.id, identity);
    // With the email rule an email reference is its own identity, so no email map is needed.
    if (this.rule.kind !== 'email' && participant.email) this.byEmail.set(normalizeEmail(participant.email), identity);
    if (participant.referrerId) this.countReferral(participant);
    return true;
  }

  /** The referrer's downstream identity, or undefined when the reference matches nobody we can identify. */
  resolve(reference: string): string | undefined {
    const ref = reference.trim();
    if (ref === '') return undefined;
    const byId = this.byId.get(ref);
    if (byId !== undefined) return byId === '' ? undefined : byId;
    if (looksLikeEmail(ref)) {
      const email = normalizeEmail(ref);
      if (this.rule.kind === 'email') return email;
      const byEmail = this.byEmail.get(email);
      return byEmail === '' ? undefined : byEmail;
    }
    // An id we have not seen: with the id rule it is still the referrer's identity (a deleted participant keeps
    // its id downstream); with other rules we cannot know the referrer's email or metadata.
    return this.rule.kind === 'id' ? ref : undefined;
  }

  /** Successful and pending referrals naming this participant as referrer, by id or by email. */
  referralsOf(participant: Pick<Participant, 'id' | 'email'>): { converted: number; pending: number } {
    const total = { converted: 0, pending: 0 };
    for (const key of [participant.id, participant.email ? normalizeEmail(participant.email) : undefined]) {
      const counts = key === undefined ? undefined : this.referrals.get(key);
      if (counts) {
        total.converted += counts.converted;
        total.pending += counts.pending;
      }
    }
    return total;
  }

  get size(): number {
    return this.byId.size;
  }

  private countReferral(participant: Participant): void {
    const raw = participant.referrerId!.trim();
    const key = looksLikeEmail(raw) ? normalizeEmail(raw) : raw;
    let counts = this.referrals.get(key);
    if (!counts) {
      counts = { converted: 0, pending: 0 };
      this.referrals.set(key, counts);
    }
    // GrowSurf counts awarded referrals only; a referral with no status at all is taken as a completed signup.
    if (participant.referralStatus === 'pending') counts.pending += 1;
    else if (participant.referralStatus === 'converted' || participant.referralStatus === undefined) {
      if (participant.referralStatusRaw === undefined) counts.converted += 1;
    }
  }
}

export interface DirectoryScan {
  directory: ReferrerDirectory;
  /** `file:line` of each row that repeats an earlier participant id (the first row wins). */
  duplicates: Set<string>;
}

/** One pass over the records to fill the directory; the planner then reads the records again. */
export async function scanDirectory(records: AsyncIterable<SourceRecord>, rule: IdentityRule): Promise<DirectoryScan> {
  const directory = new ReferrerDirectory(rule);
  const duplicates = new Set<string>();
  for await (const record of records) {
    if (record.kind !== 'participant') continue;
    if (!directory.add(record.participant) && record.location) {
      duplicates.add(locationKey(record.location));
    }
  }
  return { directory, duplicates };
}

export function locationKey(location: RecordLocation): string {
  return `${location.file}:${location.line}`;
}
