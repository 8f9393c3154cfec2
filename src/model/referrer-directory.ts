import Database from 'better-sqlite3';
import type { IdentityRule } from '../config/config.js';
import { canonicalKey, identityOf, looksLikeEmail, normalizeEmail, referenceKey } from './identity.js';
import type { Participant, RecordLocation, SourceRecord } from './participant.js';

/**
 * Resolves a referrer as a source names it (a participant id or an email address) to the referrer's
 * downstream identity, and counts referrals for sources that do not carry the count themselves.
 *
 * Filled by one pass over the participants before planning, and kept off the JavaScript heap in an in-memory
 * SQLite database: a million participants cost about 60 MB there instead of several hundred MB of Map entries
 * and the garbage-collector headroom that comes with them. With the default rule (email) it holds one
 * id → email row and one email → id row per participant, and one row per referred participant.
 *
 * Every key is canonical (`canonicalKey`): ids and emails that differ only by Unicode form, invisible characters
 * or surrounding spaces (and, for emails, letter case) are one key. It also judges each referral
 * (`judgeReferrer`): a referrer named by no participant of the program, and a referral cycle, earn no credit.
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
  private readonly insertPerson: Database.Statement<[string, string]>;
  private readonly personOf: Database.Statement<[string], { participant_id: string }>;
  private readonly insertEdge: Database.Statement<[string, string, string | null, number, number]>;
  private readonly edgeOf: Database.Statement<[string], { ref: string; vouched: string | null; converted: number; pending: number }>;
  private readonly insertWalked: Database.Statement<[string, number | null, number, number]>;
  private readonly walkedOf: Database.Statement<[string], { cycle: number | null; converted: number; pending: number }>;
  private count = 0;

  constructor(private readonly rule: IdentityRule) {
    this.db = new Database(':memory:');
    this.db.exec(`
      CREATE TABLE by_id (id TEXT PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE by_email (email TEXT PRIMARY KEY, identity TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE referrals (ref TEXT PRIMARY KEY, converted INTEGER NOT NULL, pending INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE claims (identity TEXT PRIMARY KEY, participant_id TEXT NOT NULL, file TEXT, line INTEGER) WITHOUT ROWID;
      -- Who holds each identity (the first participant, as planning's claims will find): whether a referrer exists.
      CREATE TABLE people (identity TEXT PRIMARY KEY, participant_id TEXT NOT NULL) WITHOUT ROWID;
      -- The referral graph: each planned identity's referrer as the source names it (resolved when walked, since
      -- a referrer may come later in the data), with the credit that referral gives.
      CREATE TABLE edges (identity TEXT PRIMARY KEY, ref TEXT NOT NULL, vouched TEXT, converted INTEGER NOT NULL, pending INTEGER NOT NULL) WITHOUT ROWID;
      -- Identities whose referrer chain was walked: the length of the cycle each one is on (null when none), and
      -- the credit its predecessor on the cycle gave it, which its count leaves out.
      CREATE TABLE walked (identity TEXT PRIMARY KEY, cycle INTEGER, converted INTEGER NOT NULL, pending INTEGER NOT NULL) WITHOUT ROWID;
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
    this.insertPerson = this.db.prepare('INSERT OR IGNORE INTO people (identity, participant_id) VALUES (?, ?)');
    this.personOf = this.db.prepare('SELECT participant_id FROM people WHERE identity = ?');
    this.insertEdge = this.db.prepare('INSERT OR IGNORE INTO edges (identity, ref, vouched, converted, pending) VALUES (?, ?, ?, ?, ?)');
    this.edgeOf = this.db.prepare('SELECT ref, vouched, converted, pending FROM edges WHERE identity = ?');
    this.insertWalked = this.db.prepare('INSERT OR REPLACE INTO walked (identity, cycle, converted, pending) VALUES (?, ?, ?, ?)');
    this.walkedOf = this.db.prepare('SELECT cycle, converted, pending FROM walked WHERE identity = ?');
    // One transaction for the whole scan: rows are visible to this connection at once, and inserts stay fast.
    this.db.exec('BEGIN');
  }

  /** Records a participant; returns false when its id was already recorded (a duplicate row). */
  add(participant: Participant): boolean {
    const identity = identityOf(participant, this.rule) ?? '';
    if (this.insertId.run(canonicalKey(participant.id), identity).changes === 0) return false;
    this.count += 1;
    // With the email rule an email reference is its own identity, so no email rows are needed.
    if (this.rule.kind !== 'email' && participant.email) this.insertEmail.run(normalizeEmail(participant.email), identity);
    // Only the identity's first participant is planned (later ones are reported), so only its referral is an edge.
    const planned = identity !== '' && this.insertPerson.run(identity, canonicalKey(participant.id)).changes > 0;
    if (participant.referrerId && !namesSelfAsReferrer(participant)) {
      const credit = creditOf(participant);
      this.recordReferral(participant, credit);
      const ref = referenceKey(participant.referrerId);
      const vouched = participant.referrerProfile ? (identityOf(participant.referrerProfile, this.rule) ?? null) : null;
      if (planned && ref !== '') this.insertEdge.run(identity, ref, vouched, credit.converted, credit.pending);
    }
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

  /**
   * The downstream identity of the participant a reference (an id or an email address) names, or undefined when
   * no participant of the program has that id or email (a deleted participant, or a typo): such a referrer does
   * not exist for this run and is credited nothing.
   */
  resolve(reference: string): string | undefined {
    const ref = canonicalKey(reference);
    if (ref === '') return undefined;
    const byId = this.identityById.get(ref)?.identity;
    if (byId !== undefined) return byId === '' ? undefined : byId;
    if (looksLikeEmail(ref)) {
      const email = normalizeEmail(ref);
      if (this.rule.kind === 'email') return this.personOf.get(email) === undefined ? undefined : email;
      const byEmail = this.identityByEmail.get(email)?.identity;
      return byEmail === '' ? undefined : byEmail;
    }
    return undefined;
  }

  /**
   * Whether a participant's referral is credited, and to whom. Judged like the source's own rules as far as the
   * data shows them: a participant who names themself, a referrer who is not a participant of the program (the
   * source describing them alongside, as GrowSurf's API does, counts as being one), and every referral on a cycle
   * (A referred B and B referred A) earn no credit. `userId` is the participant's own identity.
   */
  judgeReferrer(participant: Participant, userId: string): ReferrerJudgement {
    if (participant.referrerId === undefined || canonicalKey(participant.referrerId) === '') return { kind: 'none' };
    if (namesSelfAsReferrer(participant)) return { kind: 'self' };
    const profile = participant.referrerProfile;
    const referrer = (profile ? identityOf(profile, this.rule) : undefined) ?? this.resolve(participant.referrerId);
    if (referrer === undefined) return { kind: 'missing' };
    if (referrer === userId) return { kind: 'self' };
    const cycle = this.cycleOf(userId);
    return cycle === undefined ? { kind: 'credited', userId: referrer } : { kind: 'cycle', cycle };
  }

  /** Successful and pending referrals naming this participant as referrer, by id or by email; none from a cycle. */
  referralsOf(participant: Pick<Participant, 'id' | 'email' | 'metadata'>): { converted: number; pending: number } {
    const total = { converted: 0, pending: 0 };
    for (const key of [canonicalKey(participant.id), participant.email ? normalizeEmail(participant.email) : undefined]) {
      const counts = key === undefined ? undefined : this.referralsByKey.get(key);
      if (counts) {
        total.converted += counts.converted;
        total.pending += counts.pending;
      }
    }
    // On a cycle, one of the referrals naming this participant is the cycle's own: it earns no credit.
    const identity = identityOf(participant, this.rule);
    if (identity !== undefined && this.cycleOf(identity) !== undefined) {
      const taken = this.walkedOf.get(identity)!;
      total.converted = Math.max(0, total.converted - taken.converted);
      total.pending = Math.max(0, total.pending - taken.pending);
    }
    return total;
  }

  /**
   * The referral cycle an identity is on: its length, and its first identities from this one on (`a → b → a` is
   * `{ length: 2, members: ['a', 'b'] }`), or undefined. Each identity has at most one referrer, so following
   * referrers from any identity either ends or enters one cycle. Walks are remembered, so a run walks each
   * referral once, however long the chains.
   */
  cycleOf(identity: string): ReferralCycle | undefined {
    let known = this.walkedOf.get(identity);
    if (known === undefined) {
      // Nobody referred this one: on no cycle, and nothing to remember.
      if (this.edgeOf.get(identity) === undefined) return undefined;
      this.walkFrom(identity);
      known = this.walkedOf.get(identity)!;
    }
    if (known.cycle === null) return undefined;
    const members = [identity];
    for (let next = this.referrerIdentity(identity); members.length < Math.min(known.cycle, CYCLE_SHOWN) && next !== undefined; next = this.referrerIdentity(next)) {
      members.push(next);
    }
    return { length: known.cycle, members };
  }

  private walkFrom(identity: string): void {
    const path: string[] = [];
    const at = new Map<string, number>();
    let current: string | undefined = identity;
    // Until the chain ends, comes back to itself, or reaches an identity an earlier walk settled.
    while (current !== undefined && !at.has(current) && this.walkedOf.get(current) === undefined) {
      at.set(current, path.length);
      path.push(current);
      current = this.referrerIdentity(current);
    }
    const start = current === undefined ? undefined : at.get(current);
    const cycle = start === undefined ? [] : path.slice(start);
    for (const member of start === undefined ? path : path.slice(0, start)) this.insertWalked.run(member, null, 0, 0);
    cycle.forEach((member, i) => {
      // The credit the previous member's referral of this one gave: left out of this one's count.
      const before = this.edgeOf.get(cycle[(i + cycle.length - 1) % cycle.length]!)!;
      this.insertWalked.run(member, cycle.length, before.converted, before.pending);
    });
  }

  get size(): number {
    return this.count;
  }

  /** Frees the index; the directory cannot be used afterwards. */
  close(): void {
    if (this.db.open) this.db.close();
  }

  private recordReferral(participant: Participant, credit: { converted: number; pending: number }): void {
    this.countReferral.run(referenceKey(participant.referrerId!), credit.converted, credit.pending);
  }

  /** The identity an identity's referral names, when that referrer is a participant of the program. */
  private referrerIdentity(identity: string): string | undefined {
    const edge = this.edgeOf.get(identity);
    if (edge === undefined) return undefined;
    const referrer = edge.vouched ?? this.resolve(edge.ref);
    // A self-referral ends the chain (it is reported on its own); so does a referrer known only by description.
    if (referrer === undefined || referrer === identity || this.personOf.get(referrer) === undefined) return undefined;
    return referrer;
  }
}

/** What a referral earns its referrer: GrowSurf counts awarded referrals only; no status at all is a completed signup. */
function creditOf(participant: Participant): { converted: number; pending: number } {
  const pending = participant.referralStatus === 'pending' ? 1 : 0;
  const converted =
    participant.referralStatus === 'converted' || (participant.referralStatus === undefined && participant.referralStatusRaw === undefined) ? 1 : 0;
  return { converted, pending };
}

/** How many of a cycle's identities its description names. */
const CYCLE_SHOWN = 5;

/** A referral cycle as seen from one of its identities. */
export interface ReferralCycle {
  length: number;
  /** Its first identities (at most 5), from the one asked about on, each referred by the next. */
  members: string[];
}

/** How a participant's referral is credited (`ReferrerDirectory.judgeReferrer`). */
export type ReferrerJudgement =
  | { kind: 'none' }
  | { kind: 'credited'; userId: string }
  /** Names the participant themself, by id, email or identity. */
  | { kind: 'self' }
  /** Names nobody in the program: no participant has that id or email. */
  | { kind: 'missing' }
  /** On a referral cycle. */
  | { kind: 'cycle'; cycle: ReferralCycle };

/** Who first resolved to a user id in this run. */
export interface IdentityClaim {
  participantId: string;
  location?: RecordLocation;
}

/**
 * Whether the source names the participant as their own referrer, by id or by email (keys compare canonical;
 * emails also without case, GrowSurf's own rule). Such a referral earns no credit and no Referral Made.
 */
export function namesSelfAsReferrer(participant: Pick<Participant, 'id' | 'email' | 'referrerId'>): boolean {
  const ref = participant.referrerId === undefined ? '' : canonicalKey(participant.referrerId);
  if (ref === '') return false;
  if (ref === canonicalKey(participant.id)) return true;
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
