import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { parseProblemExample, problemExampleSql } from '../problem-example.js';
import type { Destination } from '../../config/defaults.js';
import { DataError } from '../../errors.js';
import type { TraitMap } from '../../model/traits.js';
import type { AccountRef, BaselineView, DeliveryRef, DeliveryStatus, GenerationRef, IdentityRef, IssuedGeneration, TierMove } from '../../plan/types.js';
import { emptyState } from '../empty.js';
import { ledgerAnswer } from '../baseline.js';
import { assertLockFreeable, assertLockTakeable, thisProcess } from '../locks.js';
import { MIGRATIONS, REQUIRED_TABLES, SCHEMA_VERSION } from './schema.js';
import { corrupt, isWriteFailure, sqliteError, unwritable } from './errors.js';
import { SqliteLedger } from './ledger.js';
import { SqliteDeliveryQueue } from './queue.js';
import type {
  DeliveryCounts,
  DeliveryRow,
  FreedLock,
  IdentityWrite,
  LockRecord,
  ProblemCount,
  ProblemFilter,
  NamespaceAlias,
  ProgramRecord,
  RunRecord,
  StateReader,
  StateStore,
  StateSummary,
  StateTransfer,
  StoredAccount,
  StoredDelivery,
  StoredGeneration,
  StoredIdentity,
  StoredStatus,
  TransferCounts,
  TransferRow,
  TransferTable,
} from '../store.js';
import { TRANSFER_TABLES, UNFINISHED_BACKFILL_SQL, type StatePosition } from '../store.js';
import { exportSql, exportValues, normalizeRow, rowValues } from '../transfer-sql.js';

type Db = Database.Database;

/**
 * Opens the state for reading only (`diff`, `status`). A missing file is an empty state and is NOT created;
 * an existing one is opened read-only, so nothing about it changes, not even its WAL files.
 */
export function openSqliteStateReadOnly(path: string): StateReader {
  if (!existsSync(path)) return emptyState(path);
  if (statSync(path).isDirectory()) throw unwritable(path, Object.assign(new Error('is a directory'), { code: 'EISDIR' }), 'create');
  let db: Db;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    // A run creating or migrating it holds it a moment: wait for that rather than fail.
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  } catch (error) {
    throw isBusy(error) ? sqliteError(error, path, 'open') : corrupt(path, error);
  }
  const version = checkSchema(db, path);
  if (version === 0) {
    db.close();
    return emptyState(path);
  }
  return new SqliteState(db, path);
}

/** How long a statement waits for a write lock another connection holds before it fails (SQLITE_BUSY, exit 75). */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Opens (creating, mode 0600, and migrating) the state for a run that writes. A path that cannot be created or
 * written is a StateUnwritableError (exit 73); a file that is not our state is a DataError (exit 65) and is left
 * exactly as it was, bytes and mode: only a file we created, or one already holding our state, is chmod 600.
 * Two runs may create the same new state at the same moment: each waits for the other's lock (busy_timeout, set
 * first) and the schema is checked and migrated inside one write transaction, so the second finds it done.
 */
export function openSqliteStateForWriting(path: string): SqliteState {
  const created = !existsSync(path);
  const phase = created ? 'create' : 'open';
  if (!created && statSync(path).isDirectory()) throw unwritable(path, Object.assign(new Error('is a directory'), { code: 'EISDIR' }), 'create');
  if (created) {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Create the file ourselves so it is 0600 from its first byte; SQLite gives its WAL files the same mode.
      closeSync(openSync(path, 'a', 0o600));
    } catch (error) {
      throw unwritable(path, error, 'create');
    }
  }
  let db: Db;
  try {
    db = new Database(path, { fileMustExist: true });
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  } catch (error) {
    throw isWriteFailure(error) || isBusy(error) ? sqliteError(error, path, phase) : corrupt(path, error);
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
    // Checked again inside the write transaction: another run may have created or migrated it since the look
    // above. IMMEDIATE takes the write lock first, so the check and the migration are one step. It also proves
    // the file writable (SQLite opens a file it may not write read-only and fails only at the first write).
    db.transaction(() => {
      if (version === 0) checkSchema(db, path, { keepOpen: true });
      migrate(db);
      db.pragma(`user_version = ${db.pragma('user_version', { simple: true }) as number}`);
    }).immediate();
  } catch (error) {
    if (db.open) db.close();
    throw error instanceof DataError ? error : isWriteFailure(error) || isBusy(error) ? sqliteError(error, path, phase) : corrupt(path, error);
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

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED|PROTOCOL)/.test(code);
}

/**
 * Returns the schema version; throws a DataError, touching nothing, for a file that is not our state (closing
 * it, unless `keepOpen`: inside a transaction, the caller closes it once that is rolled back).
 */
function checkSchema(db: Db, path: string, options: { keepOpen?: boolean } = {}): number {
  const fail = (error: unknown): unknown => {
    if (!options.keepOpen) db.close();
    return error;
  };
  let version: number;
  let tables: string[];
  try {
    // One read transaction for both: a run creating the state at this moment commits all or nothing in between.
    ({ version, tables } = db.transaction(() => ({
      version: db.pragma('user_version', { simple: true }) as number,
      tables: (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((r) => r.name),
    }))());
  } catch (error) {
    throw fail(isBusy(error) ? sqliteError(error, path, 'open') : corrupt(path, error));
  }
  if (version > SCHEMA_VERSION) {
    throw fail(
      new DataError(`State file ${path} was written by a newer referral-sync (schema ${version}, this one knows ${SCHEMA_VERSION}).`, {
        hint: 'Upgrade referral-sync to use it: the state is intact (another file would start from nothing and send the whole history again).',
      }),
    );
  }
  const ours = REQUIRED_TABLES.every((t) => tables.includes(t));
  if ((version === 0 && tables.length > 0) || (version > 0 && !ours)) {
    throw fail(
      new DataError(`State file ${path} is a SQLite database but not a referral-sync state; it was left untouched.`, {
        hint: 'Point --state (or REFERRAL_SYNC_STATE) at another file.',
      }),
    );
  }
  return version;
}

/** Applies the migrations not applied yet; called inside the opening write transaction (each one a savepoint). */
function migrate(db: Db): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let index = version; index < MIGRATIONS.length; index += 1) {
    db.transaction(() => {
      db.exec(MIGRATIONS[index]!);
      db.pragma(`user_version = ${index + 1}`);
    })();
  }
}

export class SqliteState implements StateStore, StateTransfer {
  private readonly ledger: SqliteLedger;

  constructor(
    private readonly db: Db,
    readonly location: string,
  ) {
    this.ledger = new SqliteLedger(db);
  }

  /**
   * The planner's view, answered directly from the file: a lookup in-process costs microseconds, so nothing is
   * loaded ahead (no `prefetch`), and the planner reads the ledger as the senders of this run leave it.
   * With `runId`, deliveries that run acknowledged itself read as `sentThisRun`.
   */
  baseline(runId?: number): BaselineView {
    const identity = this.db.prepare<[string, string], IdentityColumns>(
      'SELECT traits, hash, updated_at, tier_changes FROM identities WHERE destination = ? AND user_id = ?',
    );
    const delivery = this.db.prepare<[string, string], { status: DeliveryStatus; run_id: number | null }>(
      'SELECT status, run_id FROM deliveries WHERE destination = ? AND key = ?',
    );
    return {
      account: (destination, accountId) => {
        const row = this.accountStatement()?.get(destination, accountId);
        return row ? accountBaseline(row) : undefined;
      },
      generation: (destination, subject, id) => {
        const row = this.generationStatement()?.get(destination, subject, id);
        return row ? issuedGeneration(row) : undefined;
      },
      identity: (destination, userId) => {
        const row = identity.get(destination, userId);
        return row ? identityBaseline(row) : undefined;
      },
      delivery: (destination, key) => {
        const row = delivery.get(destination, key);
        return row ? ledgerAnswer(row.status, row.run_id, runId) : undefined;
      },
    };
  }

  async identities(refs: readonly IdentityRef[]): Promise<StoredIdentity[]> {
    const statement = this.db.prepare<[string, string], IdentityColumns>(
      'SELECT traits, hash, updated_at, tier_changes FROM identities WHERE destination = ? AND user_id = ?',
    );
    return refs.flatMap((ref) => {
      const row = statement.get(ref.destination, ref.userId);
      return row ? [{ destination: ref.destination, userId: ref.userId, ...identityBaseline(row) }] : [];
    });
  }

  async deliveryStatuses(refs: readonly DeliveryRef[]): Promise<StoredStatus[]> {
    const statement = this.db.prepare<[string, string], { status: DeliveryStatus; run_id: number | null }>(
      'SELECT status, run_id FROM deliveries WHERE destination = ? AND key = ?',
    );
    return refs.flatMap((ref) => {
      const row = statement.get(ref.destination, ref.key);
      return row ? [{ destination: ref.destination, key: ref.key, status: row.status, runId: row.run_id }] : [];
    });
  }

  async accounts(refs: readonly AccountRef[]): Promise<StoredAccount[]> {
    const statement = this.accountStatement();
    return refs.flatMap((ref) => {
      const row = statement?.get(ref.destination, ref.accountId);
      return row ? [{ destination: ref.destination, accountId: ref.accountId, ...accountBaseline(row) }] : [];
    });
  }

  async generations(refs: readonly GenerationRef[]): Promise<StoredGeneration[]> {
    const statement = this.generationStatement();
    return refs.flatMap((ref) => {
      const row = statement?.get(ref.destination, ref.subject, ref.id);
      return row ? [{ destination: ref.destination, subject: ref.subject, id: ref.id, ...issuedGeneration(row) }] : [];
    });
  }

  private generationLookup: Database.Statement<[string, string, string], GenerationColumns> | null | undefined;

  /** Prepared on first use; a state an older version wrote, read without migrating, has no generation yet. */
  private generationStatement(): Database.Statement<[string, string, string], GenerationColumns> | undefined {
    if (this.generationLookup === undefined) {
      this.generationLookup = this.hasTable('generations')
        ? this.db.prepare('SELECT generation, key, tier_move FROM generations WHERE destination = ? AND subject = ? AND subject_id = ?')
        : null;
    }
    return this.generationLookup ?? undefined;
  }

  private accountLookup: Database.Statement<[string, string], AccountColumns> | null | undefined;

  /**
   * Prepared on first use. A state read-only (diff, status) that an older version wrote has no accounts table
   * until a run migrates it: no account was acknowledged there, so every lookup answers none.
   */
  private accountStatement(): Database.Statement<[string, string], AccountColumns> | undefined {
    if (this.accountLookup === undefined) {
      this.accountLookup = this.hasTable('accounts') ? this.db.prepare('SELECT traits, hash, updated_at FROM accounts WHERE destination = ? AND account_id = ?') : null;
    }
    return this.accountLookup ?? undefined;
  }

  async summary(runLimit: number): Promise<StateSummary> {
    const identities = this.db
      .prepare<[], { destination: Destination; count: number }>(
        'SELECT destination, COUNT(*) AS count FROM identities GROUP BY destination ORDER BY destination',
      )
      .all();
    const accounts = this.hasTable('accounts')
      ? this.db.prepare<[], { destination: Destination; count: number }>('SELECT destination, COUNT(*) AS count FROM accounts GROUP BY destination ORDER BY destination').all()
      : [];
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
      accounts,
      deliveries,
      runs,
    };
  }

  async startRun(command: string, programId: string, now: Date): Promise<number> {
    const result = this.db
      .prepare(`INSERT INTO runs (command, program_id, started_at, status) VALUES (?, ?, ?, 'running')`)
      .run(command, programId, now.toISOString());
    return Number(result.lastInsertRowid);
  }

  async finishRun(id: number, status: RunRecord['status'], counts: Record<string, number>, now: Date): Promise<void> {
    this.db
      .prepare('UPDATE runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?')
      .run(now.toISOString(), status, JSON.stringify(counts), id);
  }

  /** Records acknowledged traits as the new diff baseline, in one transaction (tests seed a state with it). */
  async saveIdentities(writes: readonly IdentityWrite[], now: Date): Promise<void> {
    this.ledger.saveIdentities(writes, now);
  }

  /** Writes ledger rows, in one transaction (tests seed a state with it; runs write through the queue). */
  async recordDeliveries(rows: readonly DeliveryRow[], now: Date): Promise<void> {
    this.ledger.recordDeliveries(rows, now);
  }

  queue(programId: string): SqliteDeliveryQueue {
    return new SqliteDeliveryQueue(this.db, programId, this.ledger);
  }

  async *retryable(destinations: readonly Destination[], programId: string, unattributed: string): AsyncGenerator<StoredDelivery> {
    const statement = this.db.prepare<[string, string], StoredDelivery & { destination: Destination }>(
      `SELECT destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError, payload, updated_at AS updatedAt, run_id AS runId
       FROM deliveries WHERE status IN ('failed', 'dead') AND payload IS NOT NULL AND COALESCE(program_id, ?) = ?
       ORDER BY destination, created_at, key`,
    );
    for (const row of statement.iterate(unattributed, programId)) {
      if (destinations.includes(row.destination)) yield row;
    }
  }

  async retryPrograms(destinations: readonly Destination[], unattributed: string): Promise<string[]> {
    const placeholders = destinations.map(() => '?').join(', ');
    if (destinations.length === 0) return [];
    const hasQueue = this.hasTable('queue');
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

  async locks(): Promise<LockRecord[]> {
    return this.db
      .prepare<[], LockRecord>('SELECT program_id AS programId, holder, pid, host, acquired_at AS acquiredAt FROM lock ORDER BY program_id')
      .all();
  }

  async failedDeliveries(programId: string, destinations: readonly Destination[]): Promise<StoredDelivery[]> {
    const statement = this.db.prepare<[string], StoredDelivery>(
      `SELECT destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError, payload, updated_at AS updatedAt
       FROM deliveries WHERE status = 'failed' AND program_id = ? AND payload IS NOT NULL ORDER BY created_at, key`,
    );
    return statement.all(programId).filter((row) => destinations.includes(row.destination));
  }

  /** Failed and dead deliveries for `status`, newest first, at most `limit` per destination. */
  async problems(limit: number): Promise<StoredDelivery[]> {
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
  async *allProblems(): AsyncGenerator<StoredDelivery> {
    const hasProgram = (this.db.prepare(`SELECT name FROM pragma_table_info('deliveries')`).all() as { name: string }[]).some((c) => c.name === 'program_id');
    yield* this.db
      .prepare<[], StoredDelivery>(
        `SELECT ${hasProgram ? 'program_id' : 'NULL'} AS programId, destination, key, kind, user_id AS userId, status, attempts, last_error AS lastError, NULL AS payload, updated_at AS updatedAt
         FROM deliveries WHERE status IN ('failed', 'dead') ORDER BY destination, updated_at DESC, key`,
      )
      .iterate();
  }

  /** Counted by the database, grouped by exact reason; the example is the newest row (the MAX of a sortable text). */
  async *problemCounts(filter: ProblemFilter = {}): AsyncGenerator<ProblemCount> {
    // A state an older version wrote (read-only: status) has no program on its deliveries.
    const hasProgram = (this.db.prepare(`SELECT name FROM pragma_table_info('deliveries')`).all() as { name: string }[]).some((c) => c.name === 'program_id');
    if (!hasProgram && filter.programId !== undefined) return;
    const program = hasProgram ? 'program_id' : 'NULL';
    const rows = this.db
      .prepare<{ program: string | null; run: number | null }, { programId: string | null; destination: Destination; status: 'failed' | 'dead'; lastError: string | null; count: number; newest: string }>(
        `SELECT ${program} AS programId, destination, status, last_error AS lastError, COUNT(*) AS count,
                MAX(${problemExampleSql('sqlite')}) AS newest
         FROM deliveries WHERE status IN ('failed', 'dead')
           ${filter.programId !== undefined ? 'AND program_id = @program' : ''}
           ${filter.notRunId !== undefined ? 'AND (run_id IS NULL OR run_id <> @run)' : ''}
         GROUP BY ${program}, destination, status, last_error
         ORDER BY ${program}, destination, status, last_error`,
      )
      .iterate({ program: filter.programId ?? null, run: filter.notRunId ?? null });
    for (const { newest, ...row } of rows) yield { ...row, example: parseProblemExample(newest) };
  }

  async watermark(programId: string, source: string): Promise<number | undefined> {
    if (!this.hasTable('watermarks')) return undefined;
    const row = this.db
      .prepare<[string, string], { watermark: number }>('SELECT watermark FROM watermarks WHERE program_id = ? AND source = ?')
      .get(programId, source);
    return row?.watermark;
  }

  async deliveredNamespaces(source: string, destination: Destination, programId: string): Promise<string[]> {
    if (!this.hasTable('programs')) return [];
    return this.db
      .prepare<[string, string, string], { namespace: string }>('SELECT namespace FROM programs WHERE source = ? AND destination = ? AND program_id = ? ORDER BY recorded_at, namespace')
      .all(source, destination, programId)
      .map((row) => row.namespace);
  }

  async deliveredPrograms(source: string, destination: Destination, namespace: string): Promise<string[]> {
    if (!this.hasTable('programs')) return [];
    return this.db
      .prepare<[string, string, string], { program_id: string }>(
        'SELECT program_id FROM programs WHERE source = ? AND destination = ? AND namespace = ? ORDER BY recorded_at, program_id',
      )
      .all(source, destination, namespace)
      .map((row) => row.program_id);
  }

  async programRecords(): Promise<ProgramRecord[]> {
    if (!this.hasTable('programs')) return [];
    return this.db
      .prepare<[], ProgramRecord>(
        'SELECT source, destination, namespace, program_id AS programId, recorded_at AS recordedAt FROM programs ORDER BY recorded_at, destination, namespace, program_id',
      )
      .all();
  }

  async namespaceAliases(): Promise<NamespaceAlias[]> {
    if (!this.hasTable('namespace_aliases')) return [];
    return this.db
      .prepare<[], NamespaceAlias>('SELECT destination, alias, namespace, recorded_at AS recordedAt FROM namespace_aliases ORDER BY recorded_at, destination, alias')
      .all();
  }

  async recordNamespaceAlias(destination: Destination, alias: string, namespace: string, now: Date): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO namespace_aliases (destination, alias, namespace, recorded_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (destination, alias) DO UPDATE SET namespace = excluded.namespace, recorded_at = excluded.recorded_at`,
      )
      .run(destination, alias, namespace, now.toISOString());
  }

  async recordPrograms(source: string, programId: string, namespaces: readonly { destination: Destination; namespace: string }[], now: Date): Promise<void> {
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO programs (source, destination, namespace, program_id, recorded_at) VALUES (?, ?, ?, ?, ?)',
    );
    this.db.transaction(() => {
      for (const { destination, namespace } of namespaces) insert.run(source, destination, namespace, programId, now.toISOString());
    })();
  }

  async markSuperseded(rows: readonly DeliveryRef[], reason: string, now: Date): Promise<void> {
    const update = this.db.prepare(`UPDATE deliveries SET status = 'superseded', last_error = ?, updated_at = ? WHERE destination = ? AND key = ?`);
    this.db.transaction(() => {
      for (const row of rows) update.run(reason, now.toISOString(), row.destination, row.key);
    })();
  }

  async supersedeUnplanned(programId: string, destinations: readonly Destination[], runId: number, reason: string, now: Date): Promise<number> {
    if (destinations.length === 0) return 0;
    return this.db
      .prepare(
        `UPDATE deliveries SET status = 'superseded', last_error = ?, updated_at = ?
         WHERE status IN ('failed', 'held') AND program_id = ? AND destination IN (${destinations.map(() => '?').join(', ')}) AND (run_id IS NULL OR run_id <> ?)`,
      )
      .run(reason, now.toISOString(), programId, ...destinations, runId).changes;
  }

  async exportRows(table: TransferTable, after: TransferRow | undefined, limit: number): Promise<TransferRow[]> {
    if (!this.hasTable(table)) return [];
    // Read as it is: an older state opened read-only is not migrated, so a column added since may be missing.
    const available = new Set((this.db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as { name: string }[]).map((column) => column.name));
    const rows = this.db.prepare(exportSql(table, after !== undefined, () => '?', available)).all(...exportValues(table, after, limit)) as Record<string, unknown>[];
    return rows.map(normalizeRow);
  }

  async importRows(table: TransferTable, rows: readonly TransferRow[]): Promise<void> {
    const columns = TRANSFER_TABLES[table].columns;
    const insert = this.db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
    this.db.transaction(() => {
      for (const row of rows) insert.run(...rowValues(table, row));
    })();
  }

  async transferCounts(): Promise<TransferCounts> {
    const tables = {} as Record<TransferTable, number>;
    for (const table of Object.keys(TRANSFER_TABLES) as TransferTable[]) {
      tables[table] = this.hasTable(table) ? (this.db.prepare(`SELECT count(*) AS count FROM ${table}`).get() as { count: number }).count : 0;
    }
    const deliveries = this.db
      .prepare('SELECT destination, status, count(*) AS count FROM deliveries GROUP BY destination, status ORDER BY destination, status')
      .all() as DeliveryCounts[];
    return { tables, deliveries };
  }

  private hasTable(name: string): boolean {
    return this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined;
  }

  async cachedLookup(service: string, key: string, maxAgeMs: number, now: Date): Promise<unknown> {
    if (!this.hasTable('lookup_cache')) return undefined;
    const row = this.db
      .prepare<[string, string], { value: string; fetched_at: string }>('SELECT value, fetched_at FROM lookup_cache WHERE service = ? AND key = ?')
      .get(service, key);
    if (!row || now.getTime() - Date.parse(row.fetched_at) > maxAgeMs) return undefined;
    return JSON.parse(row.value) as unknown;
  }

  async cacheLookup(service: string, key: string, value: unknown, now: Date): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO lookup_cache (service, key, value, fetched_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (service, key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at`,
      )
      .run(service, key, JSON.stringify(value), now.toISOString());
  }

  async setWatermark(programId: string, source: string, watermark: number, now: Date): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO watermarks (program_id, source, watermark, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (program_id, source) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at`,
      )
      .run(programId, source, watermark, now.toISOString());
  }

  async unfinishedBackfillStart(programId: string): Promise<Date | undefined> {
    const row = this.db.prepare<{ program: string }, { started_at: string }>(UNFINISHED_BACKFILL_SQL).get({ program: programId });
    return row ? new Date(row.started_at) : undefined;
  }

  async acknowledgedDestinations(programId: string, destinations: readonly Destination[]): Promise<Destination[]> {
    // An older state read without migrating (diff) may not have the column yet: its rows belong to no program.
    const attributed = (this.db.prepare(`SELECT name FROM pragma_table_info('deliveries')`).all() as { name: string }[]).some((c) => c.name === 'program_id');
    const statement = this.db.prepare<[string, ...string[]], { one: number }>(
      `SELECT 1 AS one FROM deliveries WHERE destination = ? AND status = 'sent'${attributed ? ' AND (program_id = ? OR program_id IS NULL)' : ''} LIMIT 1`,
    );
    // A pilot's sends (`sync pilot`, `backfill pilot`) load no history: until a whole run was made, a sync still
    // guards everyone the pilot left for it.
    if (this.db.prepare(`SELECT 1 FROM runs WHERE program_id = ? AND command IN ('sync', 'backfill') LIMIT 1`).get(programId) === undefined) return [];
    return destinations.filter((destination) => statement.get(destination, ...(attributed ? [programId] : [])) !== undefined);
  }

  async markCrashedRuns(programId: string, now: Date): Promise<void> {
    this.db
      .prepare(`UPDATE runs SET status = 'crashed', finished_at = ? WHERE program_id = ? AND status = 'running'`)
      .run(now.toISOString(), programId);
  }

  async acquireLock(programId: string, holder: string, now: Date): Promise<void> {
    const me = thisProcess();
    // IMMEDIATE: the check and the take are one write transaction, so two runs cannot both see the lock free.
    this.db.transaction(() => {
      assertLockTakeable(this.lockOf(programId), this.location);
      this.db
        .prepare('INSERT OR REPLACE INTO lock (program_id, holder, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)')
        .run(programId, holder, me.pid, me.host, now.toISOString());
    }).immediate();
  }

  async releaseLock(programId: string): Promise<void> {
    const me = thisProcess();
    this.db.prepare('DELETE FROM lock WHERE program_id = ? AND pid = ? AND host = ?').run(programId, me.pid, me.host);
  }

  async freeLock(programId: string, force: boolean): Promise<FreedLock> {
    return this.db.transaction(() => {
      const row = this.lockOf(programId);
      if (row) {
        assertLockFreeable(row, force);
        this.db.prepare('DELETE FROM lock WHERE program_id = ?').run(programId);
      }
      const crashed = this.db.prepare(`UPDATE runs SET status = 'crashed', finished_at = ? WHERE program_id = ? AND status = 'running'`).run(new Date().toISOString(), programId);
      return { programId, lock: row, crashedRuns: crashed.changes };
    }).immediate();
  }

  async position(programId: string): Promise<StatePosition> {
    const run = this.db.prepare<[string], { id: number | null }>('SELECT MAX(id) AS id FROM runs WHERE program_id = ?').get(programId);
    // Rows carry their program since the queue came (migration 6); before, every row counts.
    const acknowledged = this.hasTable('queue')
      ? this.db.prepare<[string], { count: number }>(`SELECT COUNT(*) AS count FROM deliveries WHERE program_id = ? AND status = 'sent'`).get(programId)
      : this.db.prepare<[], { count: number }>(`SELECT COUNT(*) AS count FROM deliveries WHERE status = 'sent'`).get();
    return { lastRunId: run?.id ?? null, acknowledged: acknowledged?.count ?? 0 };
  }

  async runningPrograms(): Promise<string[]> {
    return this.db
      .prepare<[], { program_id: string }>(`SELECT DISTINCT program_id FROM runs WHERE status = 'running' ORDER BY program_id`)
      .all()
      .map((row) => row.program_id);
  }

  private lockOf(programId: string): LockRecord | undefined {
    return this.db
      .prepare<[string], LockRecord>('SELECT program_id AS programId, holder, pid, host, acquired_at AS acquiredAt FROM lock WHERE program_id = ?')
      .get(programId);
  }

  /**
   * Called when a statement failed on a state fault (guardState, open.ts). After a wait for another process's lock
   * ran out, the run is ending: its last writes (the run's end, the lock row) are tried once each, at once, rather
   * than each sitting out the busy timeout again (better-sqlite3 waits with the whole process blocked).
   */
  onFault(error: unknown): void {
    if (isBusy(error) && this.db.open) this.db.pragma('busy_timeout = 0');
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    if (!this.db.readonly) {
      // Leave the file in rollback-journal mode when no run is writing: a later read-only open (diff, status)
      // then needs no -wal/-shm files and leaves the directory exactly as it found it.
      try {
        // Without waiting: the switch is a courtesy, and a run that stops on a state fault must not sit out the
        // busy timeout again on its way out.
        this.db.pragma('busy_timeout = 0');
        this.db.pragma('journal_mode = DELETE');
      } catch {
        // Another connection still has it open; it stays in WAL mode, which is just as correct.
      }
    }
    this.db.close();
  }
}

interface IdentityColumns {
  traits: string;
  hash: string;
  updated_at: string;
  tier_changes: number;
}

interface GenerationColumns {
  generation: number;
  key: string;
  tier_move: string | null;
}

function issuedGeneration(row: GenerationColumns): IssuedGeneration {
  return { generation: row.generation, key: row.key, ...(row.tier_move === null ? {} : { tierMove: JSON.parse(row.tier_move) as TierMove }) };
}

interface AccountColumns {
  traits: string;
  hash: string;
  updated_at: string;
}

function accountBaseline(row: AccountColumns): { traits: TraitMap; hash: string; acknowledgedAt: Date } {
  return { traits: JSON.parse(row.traits) as TraitMap, hash: row.hash, acknowledgedAt: new Date(row.updated_at) };
}

function identityBaseline(row: IdentityColumns): { traits: TraitMap; hash: string; acknowledgedAt: Date; tierChanges: number } {
  return { traits: JSON.parse(row.traits) as TraitMap, hash: row.hash, acknowledgedAt: new Date(row.updated_at), tierChanges: row.tier_changes };
}
