import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Destination } from '../config/defaults.js';
import { DataError, LockedError, StateUnwritableError } from '../errors.js';
import type { TraitMap } from '../model/traits.js';
import { EMPTY_BASELINE, type BaselineView, type DeliveryStatus } from '../plan/types.js';
import { MIGRATIONS, REQUIRED_TABLES, SCHEMA_VERSION } from './schema.js';
import { SqliteDeliveryQueue } from './sqlite-queue.js';
import type { DeliveryCounts, DeliveryRow, IdentityWrite, LockRecord, ReadableState, RunRecord, StateSummary, StoredDelivery } from './store.js';

type Db = Database.Database;

/**
 * Opens the state for reading only (`diff`, `status`). A missing file is an empty state and is NOT created;
 * an existing one is opened read-only, so nothing about it changes, not even its WAL files.
 */
export function openSqliteStateReadOnly(path: string): ReadableState {
  if (!existsSync(path)) return emptyState(path);
  if (statSync(path).isDirectory()) throw unwritable(path, Object.assign(new Error('is a directory'), { code: 'EISDIR' }));
  let db: Db;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw corrupt(path, error);
  }
  const version = checkSchema(db, path);
  if (version === 0) {
    db.close();
    return emptyState(path);
  }
  return new SqliteState(db, path);
}

/**
 * Opens (creating, mode 0600, and migrating) the state for a run that writes. A path that cannot be created or
 * written is a StateUnwritableError (exit 73); a file that is not our state is a DataError (exit 65) and is left
 * exactly as it was, bytes and mode: only a file we created, or one already holding our state, is chmod 600.
 */
export function openSqliteStateForWriting(path: string): SqliteState {
  const created = !existsSync(path);
  if (!created && statSync(path).isDirectory()) throw unwritable(path, Object.assign(new Error('is a directory'), { code: 'EISDIR' }));
  if (created) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Create the file ourselves so it is 0600 from its first byte; SQLite gives its WAL files the same mode.
      closeSync(openSync(path, 'a', 0o600));
    } catch (error) {
      throw unwritable(path, error);
    }
  }
  let db: Db;
  try {
    db = new Database(path, { fileMustExist: true });
  } catch (error) {
    throw isWriteFailure(error) ? unwritable(path, error) : corrupt(path, error);
  }
  const version = checkSchema(db, path);
  try {
    // Ours (or empty, about to become ours): only now is its mode ours to set.
    if (created || version > 0 || isEmptyFile(path)) restrictMode(path);
    db.pragma('journal_mode = WAL');
    // WAL + NORMAL: a commit survives kill -9 (it is in the WAL); fsync happens at checkpoints, which we space
    // out, because the ledger's random keys make every small transaction touch many pages.
    db.pragma('synchronous = NORMAL');
    db.pragma('wal_autocheckpoint = 10000');
    db.pragma('cache_size = -65536');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    // A file opened read-only by SQLite (no write permission) fails only at the first write: try one now.
    db.pragma(`user_version = ${db.pragma('user_version', { simple: true }) as number}`);
  } catch (error) {
    db.close();
    throw isWriteFailure(error) ? unwritable(path, error) : corrupt(path, error);
  }
  return new SqliteState(db, path);
}

/** 0600: the state holds people's emails. A file someone else owns keeps its mode (we may still write it). */
function restrictMode(path: string): void {
  try {
    chmodSync(path, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
  }
}

function isEmptyFile(path: string): boolean {
  try {
    return statSync(path).size === 0;
  } catch {
    return false;
  }
}

/** File-system codes and SQLite codes that mean "cannot write here", as opposed to "this is not a state". */
const WRITE_FAILURE_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'EEXIST', 'ENOENT', 'ENOSPC', 'EDQUOT', 'ELOOP', 'ENAMETOOLONG']);

function isWriteFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return false;
  if (WRITE_FAILURE_CODES.has(code)) return true;
  return /^SQLITE_(READONLY|CANTOPEN|PERM|FULL|IOERR)/.test(code);
}

const WRITE_FAILURE_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EEXIST: 'a part of the path is a file, not a directory',
  EISDIR: 'it is a directory',
  ENOENT: 'a part of the path does not exist and cannot be created',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exhausted',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'the path loops through symbolic links',
  SQLITE_READONLY: 'it cannot be written (read-only file, directory or file system)',
  SQLITE_CANTOPEN: 'it cannot be opened for writing, or its directory cannot hold the journal beside it',
  SQLITE_PERM: 'permission denied',
  SQLITE_FULL: 'the disk is full',
  SQLITE_IOERR: 'the disk reported an I/O error',
};

function unwritable(path: string, error: unknown): StateUnwritableError {
  const raw = String((error as { code?: unknown }).code ?? '');
  // mkdir -p says EEXIST when a part of the path is a file: the same fault as ENOTDIR, named as people know it.
  const code = raw === 'EEXIST' ? 'ENOTDIR' : raw;
  const base = Object.keys(WRITE_FAILURE_REASONS).find((known) => code === known || code.startsWith(`${known}_`));
  const reason = base ? WRITE_FAILURE_REASONS[base] : error instanceof Error ? error.message : String(error);
  return new StateUnwritableError(`The state ${path} cannot be created or written: ${reason} (${code || 'error'}).`, {
    hint: 'Point --state (or REFERRAL_SYNC_STATE) at a file in a writable directory, e.g. --state ./.referral-sync/state.db. Nothing was sent.',
    cause: error,
  });
}

function emptyState(path: string): ReadableState {
  return {
    location: path,
    baseline: () => EMPTY_BASELINE,
    summary: () => ({ location: path, schemaVersion: 0, identities: [], deliveries: [], runs: [] }),
    problems: () => [],
    allProblems: () => [],
    watermark: () => undefined,
    deliveredPrograms: () => [],
    deliveredNamespaces: () => [],
    cachedLookup: () => undefined,
    retryPrograms: () => [],
    locks: () => [],
    close: () => undefined,
  };
}

/** Returns the schema version; throws a DataError, touching nothing, for a file that is not our state. */
function checkSchema(db: Db, path: string): number {
  let version: number;
  let tables: string[];
  try {
    version = db.pragma('user_version', { simple: true }) as number;
    tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((r) => r.name);
  } catch (error) {
    db.close();
    throw corrupt(path, error);
  }
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new DataError(`State file ${path} was written by a newer referral-sync (schema ${version}, this one knows ${SCHEMA_VERSION}).`, {
      hint: 'Upgrade referral-sync, or point --state at another file.',
    });
  }
  const ours = REQUIRED_TABLES.every((t) => tables.includes(t));
  if ((version === 0 && tables.length > 0) || (version > 0 && !ours)) {
    db.close();
    throw new DataError(`State file ${path} is a SQLite database but not a referral-sync state; it was left untouched.`, {
      hint: 'Point --state (or REFERRAL_SYNC_STATE) at another file.',
    });
  }
  return version;
}

function migrate(db: Db): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let index = version; index < MIGRATIONS.length; index += 1) {
    db.transaction(() => {
      db.exec(MIGRATIONS[index]!);
      db.pragma(`user_version = ${index + 1}`);
    })();
  }
}

function corrupt(path: string, error: unknown): DataError {
  const reason = error instanceof Error ? error.message : String(error);
  return new DataError(`State file ${path} cannot be read (${reason}); it was left untouched.`, {
    hint: 'Move it aside to start from an empty state, or restore a backup; --state picks another file.',
    cause: error,
  });
}

export class SqliteState implements ReadableState {
  constructor(
    private readonly db: Db,
    readonly location: string,
  ) {}

  /** The planner's view; with `runId`, deliveries that run acknowledged itself read as `sentThisRun`. */
  baseline(runId?: number): BaselineView {
    const identity = this.db.prepare<[string, string], { traits: string; hash: string; updated_at: string; tier_changes: number }>(
      'SELECT traits, hash, updated_at, tier_changes FROM identities WHERE destination = ? AND user_id = ?',
    );
    const delivery = this.db.prepare<[string, string], { status: DeliveryStatus; run_id: number | null }>(
      'SELECT status, run_id FROM deliveries WHERE destination = ? AND key = ?',
    );
    return {
      identity: (destination, userId) => {
        const row = identity.get(destination, userId);
        if (!row) return undefined;
        return { traits: JSON.parse(row.traits) as TraitMap, hash: row.hash, acknowledgedAt: new Date(row.updated_at), tierChanges: row.tier_changes };
      },
      delivery: (destination, key) => {
        const row = delivery.get(destination, key);
        if (!row) return undefined;
        return row.status === 'sent' && runId !== undefined && row.run_id === runId ? 'sentThisRun' : row.status;
      },
    };
  }

  summary(runLimit: number): StateSummary {
    const identities = this.db
      .prepare<[], { destination: Destination; count: number }>(
        'SELECT destination, COUNT(*) AS count FROM identities GROUP BY destination ORDER BY destination',
      )
      .all();
    const deliveries = this.db
      .prepare<[], DeliveryCounts>(
        'SELECT destination, status, COUNT(*) AS count FROM deliveries GROUP BY destination, status ORDER BY destination, status',
      )
      .all();
    const runs = this.db
      .prepare<[number], { id: number; command: string; program_id: string; started_at: string; finished_at: string | null; status: RunRecord['status']; counts: string }>(
        'SELECT * FROM runs ORDER BY id DESC LIMIT ?',
      )
      .all(runLimit)
      .map((row) => ({
        id: row.id,
        command: row.command,
        programId: row.program_id,
        startedAt: row.started_at,
        finishedAt: row.finished_at,
        status: row.status,
        counts: JSON.parse(row.counts) as Record<string, number>,
      }));
    return {
      location: this.location,
      schemaVersion: this.db.pragma('user_version', { simple: true }) as number,
      identities,
      deliveries,
      runs,
    };
  }

  startRun(command: string, programId: string, now: Date): number {
    const result = this.db
      .prepare(`INSERT INTO runs (command, program_id, started_at, status) VALUES (?, ?, ?, 'running')`)
      .run(command, programId, now.toISOString());
    return Number(result.lastInsertRowid);
  }

  finishRun(id: number, status: RunRecord['status'], counts: Record<string, number>, now: Date): void {
    this.db
      .prepare('UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?')
      .run(now.toISOString(), status, JSON.stringify(counts), id);
  }

  private statements: { identity: Database.Statement; delivery: Database.Statement } | undefined;

  private get writes(): { identity: Database.Statement; delivery: Database.Statement } {
    this.statements ??= {
      identity: this.db.prepare(
        `INSERT INTO identities (destination, user_id, traits, hash, updated_at, tier_changes) VALUES (?, ?, ?, ?, ?, COALESCE(?, 0))
         ON CONFLICT (destination, user_id) DO UPDATE SET traits = excluded.traits, hash = excluded.hash, updated_at = excluded.updated_at,
           tier_changes = COALESCE(?, identities.tier_changes)`,
      ),
      delivery: this.db.prepare(
        `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, last_error, payload, run_id, created_at, updated_at)
         VALUES (@destination, @key, @kind, @userId, @status, @attempt, @error, @payload, @runId, @at, @at)
         ON CONFLICT (destination, key) DO UPDATE SET
           status = excluded.status,
           attempts = deliveries.attempts + excluded.attempts,
           last_error = excluded.last_error,
           payload = CASE WHEN excluded.status = 'sent' THEN NULL ELSE COALESCE(excluded.payload, deliveries.payload) END,
           run_id = COALESCE(excluded.run_id, deliveries.run_id),
           updated_at = excluded.updated_at`,
      ),
    };
    return this.statements;
  }

  /** Records acknowledged traits as the new diff baseline, in one transaction. */
  saveIdentities(writes: readonly IdentityWrite[], now: Date): void {
    const upsert = this.writes.identity;
    const at = now.toISOString();
    this.db.transaction(() => {
      for (const w of writes) {
        const tierChanges = w.tierChanges ?? null;
        upsert.run(w.destination, w.userId, JSON.stringify(w.traits), w.hash, at, tierChanges, tierChanges);
      }
    })();
  }

  /** Writes ledger rows (pending before a send; sent/failed/dead after), in one transaction. */
  recordDeliveries(rows: readonly DeliveryRow[], now: Date): void {
    const upsert = this.writes.delivery;
    const at = now.toISOString();
    this.db.transaction(() => {
      for (const r of rows) {
        upsert.run({
          destination: r.destination,
          key: r.key,
          kind: r.kind,
          userId: r.userId,
          status: r.status,
          attempt: r.status === 'pending' ? 0 : 1,
          error: r.error ?? null,
          payload: r.payload ?? null,
          runId: r.runId ?? null,
          at,
        });
      }
    })();
  }

  /**
   * Records what destinations said, and the traits they acknowledged, in one transaction: a crash leaves
   * either both or neither.
   */
  recordOutcomes(rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date): void {
    this.db.transaction(() => {
      this.recordDeliveries(rows, now);
      this.saveIdentities(identities, now);
    })();
  }

  /** This program's durable delivery queue (DESIGN.md §8). */
  queue(programId: string): SqliteDeliveryQueue {
    return new SqliteDeliveryQueue(this.db, programId, this);
  }

  /**
   * One program's deliveries that `retry` sends again: failed and dead, with the payload they were sent with.
   * Rows from before deliveries carried their program belong to `unattributed`.
   */
  *retryable(destinations: readonly Destination[], programId: string, unattributed: string): Generator<StoredDelivery> {
    const statement = this.db.prepare<[string, string], StoredDelivery & { destination: Destination }>(
      `SELECT destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError, payload, updated_at AS updatedAt
       FROM deliveries WHERE status IN ('failed', 'dead') AND payload IS NOT NULL AND COALESCE(program_id, ?) = ?
       ORDER BY destination, created_at, key`,
    );
    for (const row of statement.iterate(unattributed, programId)) {
      if (destinations.includes(row.destination)) yield row;
    }
  }

  retryPrograms(destinations: readonly Destination[], unattributed: string): string[] {
    const placeholders = destinations.map(() => '?').join(', ');
    if (destinations.length === 0) return [];
    const hasQueue = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue'`).get() !== undefined;
    const hasProgram = (this.db.prepare(`SELECT name FROM pragma_table_info('deliveries')`).all() as { name: string }[]).some((c) => c.name === 'program_id');
    const program = hasProgram ? 'COALESCE(program_id, ?)' : '?';
    const rows = this.db
      .prepare<unknown[], { program: string }>(
        `SELECT DISTINCT ${program} AS program FROM deliveries
         WHERE status IN ('failed', 'dead') AND payload IS NOT NULL AND destination IN (${placeholders})
         ${hasQueue ? `UNION SELECT DISTINCT program_id AS program FROM queue WHERE destination IN (${placeholders})` : ''}
         ORDER BY program`,
      )
      .all(unattributed, ...destinations, ...(hasQueue ? destinations : []));
    return rows.map((row) => row.program);
  }

  locks(): LockRecord[] {
    return this.db
      .prepare<[], LockRecord>('SELECT program_id AS programId, holder, pid, host, acquired_at AS acquiredAt FROM lock ORDER BY program_id')
      .all();
  }

  /** This program's failed deliveries (retries used up) with their operations, oldest first. */
  failedDeliveries(programId: string, destinations: readonly Destination[]): StoredDelivery[] {
    const statement = this.db.prepare<[string], StoredDelivery>(
      `SELECT destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError, payload, updated_at AS updatedAt
       FROM deliveries WHERE status = 'failed' AND program_id = ? AND payload IS NOT NULL ORDER BY created_at, key`,
    );
    return statement.all(programId).filter((row) => destinations.includes(row.destination));
  }

  /** Failed and dead deliveries for `status`, newest first, at most `limit` per destination. */
  problems(limit: number): StoredDelivery[] {
    return this.db
      .prepare<[number], StoredDelivery>(
        `SELECT destination, key, kind, userId, status, attempts, lastError, NULL AS payload FROM (
           SELECT destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError,
                  ROW_NUMBER() OVER (PARTITION BY destination ORDER BY updated_at DESC, key) AS n
           FROM deliveries WHERE status IN ('failed', 'dead'))
         WHERE n <= ? ORDER BY destination, n`,
      )
      .all(limit);
  }

  /** Every failed and dead delivery for `status --json`, streamed from the database (never all in memory). */
  *allProblems(): Generator<StoredDelivery> {
    yield* this.db
      .prepare<[], StoredDelivery>(
        `SELECT destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError, NULL AS payload
         FROM deliveries WHERE status IN ('failed', 'dead') ORDER BY destination, updated_at DESC, key`,
      )
      .iterate();
  }

  watermark(programId: string, source: string): number | undefined {
    const hasTable = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watermarks'`).get();
    if (!hasTable) return undefined;
    const row = this.db
      .prepare<[string, string], { watermark: number }>('SELECT watermark FROM watermarks WHERE program_id = ? AND source = ?')
      .get(programId, source);
    return row?.watermark;
  }

  deliveredNamespaces(source: string, destination: Destination, programId: string): string[] {
    if (!this.hasTable('programs')) return [];
    return this.db
      .prepare<[string, string, string], { namespace: string }>('SELECT namespace FROM programs WHERE source = ? AND destination = ? AND program_id = ? ORDER BY recorded_at, namespace')
      .all(source, destination, programId)
      .map((row) => row.namespace);
  }

  deliveredPrograms(source: string, destination: Destination, namespace: string): string[] {
    if (!this.hasTable('programs')) return [];
    return this.db
      .prepare<[string, string, string], { program_id: string }>(
        'SELECT program_id FROM programs WHERE source = ? AND destination = ? AND namespace = ? ORDER BY recorded_at, program_id',
      )
      .all(source, destination, namespace)
      .map((row) => row.program_id);
  }

  /** Records that this run delivers `programId` from `source` to these destinations (idempotent). */
  recordPrograms(source: string, programId: string, namespaces: readonly { destination: Destination; namespace: string }[], now: Date): void {
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO programs (source, destination, namespace, program_id, recorded_at) VALUES (?, ?, ?, ?, ?)',
    );
    this.db.transaction(() => {
      for (const { destination, namespace } of namespaces) insert.run(source, destination, namespace, programId, now.toISOString());
    })();
  }

  /**
   * Whether a refused identify was replaced by a newer acknowledged one for the same person: the destination
   * acknowledged traits after this row last changed, or acknowledged these very traits.
   */
  identifySuperseded(destination: Destination, userId: string, traitsHash: string | undefined, refusedAt: string): boolean {
    const row = this.db
      .prepare<[string, string], { hash: string; updated_at: string }>('SELECT hash, updated_at FROM identities WHERE destination = ? AND user_id = ?')
      .get(destination, userId);
    if (!row) return false;
    return row.hash === traitsHash || Date.parse(row.updated_at) > Date.parse(refusedAt);
  }

  /** Marks refused identifies as superseded: they stay in the ledger, and `retry` never sends them. */
  markSuperseded(rows: readonly { destination: Destination; key: string }[], reason: string, now: Date): void {
    const update = this.db.prepare(`UPDATE deliveries SET status = 'superseded', last_error = ?, updated_at = ? WHERE destination = ? AND key = ?`);
    this.db.transaction(() => {
      for (const row of rows) update.run(reason, now.toISOString(), row.destination, row.key);
    })();
  }

  private hasTable(name: string): boolean {
    return this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined;
  }

  cachedLookup(service: string, key: string, maxAgeMs: number, now: Date): unknown {
    const hasTable = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lookup_cache'`).get();
    if (!hasTable) return undefined;
    const row = this.db
      .prepare<[string, string], { value: string; fetched_at: string }>('SELECT value, fetched_at FROM lookup_cache WHERE service = ? AND key = ?')
      .get(service, key);
    if (!row || now.getTime() - Date.parse(row.fetched_at) > maxAgeMs) return undefined;
    return JSON.parse(row.value) as unknown;
  }

  cacheLookup(service: string, key: string, value: unknown, now: Date): void {
    this.db
      .prepare(
        `INSERT INTO lookup_cache (service, key, value, fetched_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (service, key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at`,
      )
      .run(service, key, JSON.stringify(value), now.toISOString());
  }

  /** Recorded only when a run succeeded, so a failed run is covered again by the next quick sync. */
  setWatermark(programId: string, source: string, watermark: number, now: Date): void {
    this.db
      .prepare(
        `INSERT INTO watermarks (program_id, source, watermark, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (program_id, source) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at`,
      )
      .run(programId, source, watermark, now.toISOString());
  }

  /** The start of the latest backfill of this program that did not finish, so a new backfill resumes it. */
  unfinishedBackfillStart(programId: string): Date | undefined {
    const row = this.db
      .prepare<[string], { started_at: string; status: string }>(
        `SELECT started_at, status FROM runs WHERE program_id = ? AND command = 'backfill' ORDER BY id DESC LIMIT 1`,
      )
      .get(programId);
    return row && row.status !== 'succeeded' ? new Date(row.started_at) : undefined;
  }

  /** Runs left 'running' by a process that is gone are marked crashed (called once the lock is ours). */
  markCrashedRuns(programId: string, now: Date): void {
    this.db
      .prepare(`UPDATE runs SET status = 'crashed', finished_at = ? WHERE program_id = ? AND status = 'running'`)
      .run(now.toISOString(), programId);
  }

  /** Takes the per-program lock, or throws LockedError (exit 75) while another live run holds it. */
  acquireLock(programId: string, holder: string, now: Date): void {
    const host = hostname();
    this.db.transaction(() => {
      const row = this.lockOf(programId);
      if (row && lockHolderState(row) !== 'gone') throw lockedError(row, this.location);
      this.db
        .prepare('INSERT OR REPLACE INTO lock (program_id, holder, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)')
        .run(programId, holder, process.pid, host, now.toISOString());
    }).immediate();
  }

  releaseLock(programId: string): void {
    this.db.prepare('DELETE FROM lock WHERE program_id = ? AND pid = ? AND host = ?').run(programId, process.pid, hostname());
  }

  /**
   * Frees a lock whose run is gone (`referral-sync unlock`). A live local holder is never freed; a holder on
   * another machine cannot be checked from here, so it is freed only when the user says it is gone (`force`).
   */
  freeLock(programId: string, force: boolean): LockRecord | undefined {
    return this.db.transaction(() => {
      const row = this.lockOf(programId);
      if (!row) return undefined;
      const holder = lockHolderState(row);
      if (holder === 'alive') {
        throw new LockedError(`Program ${row.programId} is locked by a run that is still going (${describeHolder(row)}).`, {
          hint: `Wait for it to finish, or stop it first (kill ${row.pid}); unlock only frees the lock of a run that is gone.`,
        });
      }
      if (holder === 'unknown' && !force) {
        throw new LockedError(`Program ${row.programId} is locked by a run on another machine (${describeHolder(row)}), which cannot be checked from here.`, {
          hint: `If that run is gone for good, free its lock with: npx referral-sync unlock --campaign ${row.programId} --force`,
        });
      }
      this.db.prepare('DELETE FROM lock WHERE program_id = ?').run(programId);
      return row;
    }).immediate();
  }

  private lockOf(programId: string): LockRecord | undefined {
    return this.db
      .prepare<[string], LockRecord>('SELECT program_id AS programId, holder, pid, host, acquired_at AS acquiredAt FROM lock WHERE program_id = ?')
      .get(programId);
  }

  close(): void {
    if (!this.db.open) return;
    if (!this.db.readonly) {
      // Leave the file in rollback-journal mode when no run is writing: a later read-only open (diff, status)
      // then needs no -wal/-shm files and leaves the directory exactly as it found it.
      try {
        this.db.pragma('journal_mode = DELETE');
      } catch {
        // Another connection still has it open; it stays in WAL mode, which is just as correct.
      }
    }
    this.db.close();
  }
}

/** Whether a lock's run still lives: known on this machine, unknowable for another one. */
export function lockHolderState(lock: LockRecord): 'alive' | 'gone' | 'unknown' {
  if (lock.host !== hostname()) return 'unknown';
  return processAlive(lock.pid) ? 'alive' : 'gone';
}

export function describeHolder(lock: LockRecord): string {
  // Holders written by older versions read "sync on <host>": the host is named once, after the pid.
  const command = lock.holder.replace(/ on \S+$/, '');
  return `${command}, pid ${lock.pid} on ${lock.host}, since ${lock.acquiredAt}`;
}

function lockedError(lock: LockRecord, location: string): LockedError {
  const free = lockHolderState(lock) === 'unknown' ? `npx referral-sync unlock --campaign ${lock.programId} --force` : `npx referral-sync unlock --campaign ${lock.programId}`;
  return new LockedError(`Another run holds the lock on program ${lock.programId} in ${location} (${describeHolder(lock)}).`, {
    hint: `Wait for it to finish; if that run is gone for good, free its lock with: ${free}`,
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
