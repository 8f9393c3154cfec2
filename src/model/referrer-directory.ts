import Database from 'better-sqlite3';
import type { IdentityRule } from '../config/config.js';
import { identityOf, looksLikeEmail, normalizeEmail } from './identity.js';
import type { Participant, RecordLocation, SourceRecord } from './participant.js';

/**
 * Resolves a referrer as a source names it (a participant id or an email address) to the referrer's
 * downstream identity, and counts referrals for sources that do not carry the count themselves.
 *
 * Filled by one pass over the participants before planning, and kept off the JavaScript heap in an in-memory
 * SQLite database: a million participants cost about 60 MB there instead of several hundred MB of Map entries
 * and the garbage-collector headroom that comes with them. With the default rule (email) it holds one
 * id → email row per participant.
 */
export class ReferrerDirectory {
  private readonly db: Database.Database;
  private readonly insertId: Database.Statement<[string, string]>;
  private readonly insertEmail: Database.Statement<[string, string]>;
  private readonly countReferral: Database.Statement<[string, number, number]>;
  private readonly identityById: Database.Statement<[string], { identity: string }>;
  private readonly identityByEmail: Database.Statement<[string], { identity: string }>;
  private readonly referralsByKey: Database.Statement<[string], { converted: number; pending: number }>;
  private readonly insertClaim: Database.Statement<[string, string, string | null, number | null]>;
  private readonly claimOf: Database.Statement<[string], { participant_id: string; file: string | null; line: number | null }>;
  private count = 0;

  constructor(private readonly rule: IdentityRule) {
    this.db = new Database(':memory:');
    this.db.exec(`
      CREATE TABLE by_id (id TEXT PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE by_email (email TEXT PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE referrals (ref TEXT PRIMARY KEY, converted INTEGER NOT NULL, pending INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE claims (identity TEXT PRIMARY KEY, participant_id TEXT NOT NULL, file TEXT, line INTEGER) WITHOUT ROWID;
    `);
    this.insertId = this.db.prepare('INSERT OR IGNORE INTO by_id (id, identity) VALUES (?, ?)');
    this.insertEmail = this.db.prepare('INSERT OR IGNORE INTO by_email (email, identity) VALUES (?, ?)');
    this.countReferral = this.db.prepare(
      `INSERT INTO referrals (ref, converted, pending) VALUES (?, ?, ?)
       ON CONFLICT (ref) DO UPDATE SET converted = converted + excluded.converted, pending = pending + excluded.pending`,
    );
    this.identityById = this.db.prepare('SELECT identity FROM by_id WHERE id = ?');
    this.identityByEmail = this.db.prepare('SELECT identity FROM by_email WHERE email = ?');
    this.referralsByKey = this.db.prepare('SELECT converted, pending FROM referrals WHERE ref = ?');
    this.insertClaim = this.db.prepare('INSERT OR IGNORE INTO claims (identity, participant_id, file, line) VALUES (?, ?, ?, ?)');
    this.claimOf = this.db.prepare('SELECT participant_id, file, line FROM claims WHERE identity = ?');
    // One transaction for the whole scan: rows are visible to this connection at once, and inserts stay fast.
    this.db.exec('BEGIN');
  }

  /** Records a participant; returns false when its id was already recorded (a duplicate row). */
  add(participant: Participant): boolean {
    const identity = identityOf(participant, this.rule) ?? '';
    if (this.insertId.run(participant.id, identity).changes === 0) return false;
    this.count += 1;
    // With the email rule an email reference is its own identity, so no email rows are needed.
    if (this.rule.kind !== 'email' && participant.email) this.insertEmail.run(normalizeEmail(participant.email), identity);
    if (participant.referrerId && !namesSelfAsReferrer(participant)) this.recordReferral(participant);
    return true;
  }

  /**
   * Claims a downstream identity for a participant during planning. Returns undefined for the first claim,
   * else the participant that claimed it first (possibly the same participant met twice): one user id is
   * planned once per run, so the first one wins.
   */
  claim(identity: string, participantId: string, location: RecordLocation | undefined): IdentityClaim | undefined {
    if (this.insertClaim.run(identity, participantId, location?.file ?? null, location?.line ?? null).changes > 0) return undefined;
    const first = this.claimOf.get(identity)!;
    return {
      participantId: first.participant_id,
      ...(first.file !== null && first.line !== null ? { location: { file: first.file, line: first.line } } : {}),
    };
  }

  /** The referrer's downstream identity, or undefined when the reference matches nobody we can identify. */
  resolve(reference: string): string | undefined {
    const ref = reference.trim();
    if (ref === '') return undefined;
    const byId = this.identityById.get(ref)?.identity;
    if (byId !== undefined) return byId === '' ? undefined : byId;
    if (looksLikeEmail(ref)) {
      const email = normalizeEmail(ref);
      if (this.rule.kind === 'email') return email;
      const byEmail = this.identityByEmail.get(email)?.identity;
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
      const counts = key === undefined ? undefined : this.referralsByKey.get(key);
      if (counts) {
        total.converted += counts.converted;
        total.pending += counts.pending;
      }
    }
    return total;
  }

  get size(): number {
    return this.count;
  }

  /** Frees the index; the directory cannot be used afterwards. */
  close(): void {
    if (this.db.open) this.db.close();
  }

  private recordReferral(participant: Participant): void {
    const raw = participant.referrerId!.trim();
    const key = looksLikeEmail(raw) ? normalizeEmail(raw) : raw;
    // GrowSurf counts awarded referrals only; a referral with no status at all is taken as a completed signup.
    const pending = participant.referralStatus === 'pending' ? 1 : 0;
    const converted =
      participant.referralStatus === 'converted' || (participant.referralStatus === undefined && participant.referralStatusRaw === undefined) ? 1 : 0;
    this.countReferral.run(key, converted, pending);
  }
}

/** Who first resolved to a user id in this run. */
export interface IdentityClaim {
  participantId: string;
  location?: RecordLocation;
}

/**
 * Whether the source names the participant as their own referrer, by id or by email (emails compare without
 * case or surrounding spaces, GrowSurf's own rule). Such a referral earns no credit and no Referral Made.
 */
export function namesSelfAsReferrer(participant: Pick<Participant, 'id' | 'email' | 'referrerId'>): boolean {
  const ref = participant.referrerId?.trim();
  if (!ref) return false;
  if (ref === participant.id.trim()) return true;
  return participant.email !== undefined && looksLikeEmail(ref) && normalizeEmail(ref) === normalizeEmail(participant.email);
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
