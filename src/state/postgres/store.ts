import { parseProblemExample, problemExampleSql } from '../problem-example.js';
import type { Destination } from '../../config/defaults.js';
import type { TraitMap } from '../../model/traits.js';
import type { AccountRef, BaselineView, DeliveryRef, DeliveryStatus, GenerationRef, IdentityRef, TierMove } from '../../plan/types.js';
import { PrefetchedBaseline } from '../baseline.js';
import { upsertDeliveries, upsertIdentities } from './ledger.js';
import { PostgresLocks } from './lock.js';
import { PostgresDeliveryQueue } from './queue.js';
import { migrate, PG_ACCOUNTS_SINCE, PG_ALIASES_SINCE, PG_GENERATIONS_SINCE, schemaVersion } from './schema.js';
import { PostgresSessions } from './sessions.js';
import { parsePostgresUrl } from './url.js';
import { postgresError } from './errors.js';
import { emptyState } from '../empty.js';
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
  StoredAccount,
  StoredDelivery,
  StoredGeneration,
  StoredIdentity,
  StoredStatus,
  StateTransfer,
  TransferCounts,
  TransferRow,
  TransferTable,
} from '../store.js';
import { TRANSFER_TABLES, UNFINISHED_BACKFILL_SQL, type StatePosition } from '../store.js';
import { exportSql, exportValues, normalizeRow, rowValues } from '../transfer-sql.js';

/** Rows read per round trip when a caller iterates (retry, status --json): never the whole ledger in memory. */
const PAGE = 500;

/**
 * Opens the PostgreSQL state for `diff` and `status`: every session is read-only, so the server refuses any write;
 * a schema that does not exist yet reads as empty and is not created.
 */
export async function openPostgresStateReadOnly(url: string): Promise<StateReader> {
  const target = parsePostgresUrl(url);
  const sessions = new PostgresSessions(target, true);
  try {
    const client = await sessions.dedicated();
    let version: number;
    try {
      version = await schemaVersion(client, target);
    } finally {
      await client.end().catch(() => undefined);
    }
    if (version === 0) {
      await sessions.end();
      return emptyState(target.location);
    }
    return new PostgresState(sessions, version);
  } catch (error) {
    await sessions.end().catch(() => undefined);
    throw postgresError(error, target);
  }
}

/** Opens the PostgreSQL state for a run that writes: the schema is created and migrated if need be. */
export async function openPostgresStateForWriting(url: string): Promise<PostgresState> {
  const target = parsePostgresUrl(url);
  const sessions = new PostgresSessions(target, false);
  try {
    const client = await sessions.dedicated();
    try {
      await migrate(client, target);
    } finally {
      await client.end().catch(() => undefined);
    }
    return new PostgresState(sessions, await currentVersion(sessions));
  } catch (error) {
    await sessions.end().catch(() => undefined);
    throw postgresError(error, target);
  }
}

/** Whether the schema holds a state yet (without creating anything). */
export async function postgresStateExists(url: string): Promise<boolean> {
  const state = await openPostgresStateReadOnly(url);
  try {
    return state instanceof PostgresState;
  } finally {
    await state.close();
  }
}

async function currentVersion(sessions: PostgresSessions): Promise<number> {
  return (await sessions.query<{ version: number }>('SELECT version FROM schema_version')).rows[0]?.version ?? 0;
}

const DELIVERY_COLUMNS = `destination, key, kind, user_id AS "userId", status, attempts, last_error AS "lastError"`;

export class PostgresState implements StateStore, StateTransfer {
  readonly location: string;
  private readonly locksHeld: PostgresLocks;

  constructor(
    private readonly sessions: PostgresSessions,
    private readonly version: number,
  ) {
    this.location = sessions.target.location;
    this.locksHeld = new PostgresLocks(sessions);
    sessions.phase = 'run';
    sessions.writeGuard = () => this.locksHeld.assertHeld();
  }

  /** Over the network the planner cannot ask row by row: plan-run loads each chunk's rows in two bulk reads. */
  baseline(runId?: number): BaselineView {
    return new PrefetchedBaseline(this, runId);
  }

  async identities(refs: readonly IdentityRef[]): Promise<StoredIdentity[]> {
    if (refs.length === 0) return [];
    const result = await this.sessions.query<{ destination: Destination; user_id: string; traits: string; hash: string; updated_at: string; tier_changes: number }>(
      `SELECT i.destination, i.user_id, i.traits, i.hash, i.updated_at, i.tier_changes
       FROM identities i JOIN unnest($1::text[], $2::text[]) AS r(destination, user_id) USING (destination, user_id)`,
      [refs.map((ref) => ref.destination), refs.map((ref) => ref.userId)],
    );
    return result.rows.map((row) => ({
      destination: row.destination,
      userId: row.user_id,
      traits: JSON.parse(row.traits) as TraitMap,
      hash: row.hash,
      acknowledgedAt: new Date(row.updated_at),
      tierChanges: row.tier_changes,
    }));
  }

  async deliveryStatuses(refs: readonly DeliveryRef[]): Promise<StoredStatus[]> {
    if (refs.length === 0) return [];
    const result = await this.sessions.query<{ destination: Destination; key: string; status: DeliveryStatus; run_id: number | null }>(
      `SELECT d.destination, d.key, d.status, d.run_id FROM deliveries d JOIN unnest($1::text[], $2::text[]) AS r(destination, key) USING (destination, key)`,
      [refs.map((ref) => ref.destination), refs.map((ref) => ref.key)],
    );
    return result.rows.map((row) => ({ destination: row.destination, key: row.key, status: row.status, runId: row.run_id }));
  }

  async accounts(refs: readonly AccountRef[]): Promise<StoredAccount[]> {
    // A schema an older version wrote, read without migrating (diff, status): no account was acknowledged there.
    if (refs.length === 0 || this.version < PG_ACCOUNTS_SINCE) return [];
    const result = await this.sessions.query<{ destination: Destination; account_id: string; traits: string; hash: string; updated_at: string }>(
      `SELECT a.destination, a.account_id, a.traits, a.hash, a.updated_at
       FROM accounts a JOIN unnest($1::text[], $2::text[]) AS r(destination, account_id) USING (destination, account_id)`,
      [refs.map((ref) => ref.destination), refs.map((ref) => ref.accountId)],
    );
    return result.rows.map((row) => ({
      destination: row.destination,
      accountId: row.account_id,
      traits: JSON.parse(row.traits) as TraitMap,
      hash: row.hash,
      acknowledgedAt: new Date(row.updated_at),
    }));
  }

  async generations(refs: readonly GenerationRef[]): Promise<StoredGeneration[]> {
    // A schema an older version wrote, read without migrating (diff, status): no generation was recorded there.
    if (refs.length === 0 || this.version < PG_GENERATIONS_SINCE) return [];
    const result = await this.sessions.query<{ destination: Destination; subject: GenerationRef['subject']; subject_id: string; generation: number; key: string; tier_move: string | null }>(
      `SELECT g.destination, g.subject, g.subject_id, g.generation, g.key, g.tier_move
       FROM generations g JOIN unnest($1::text[], $2::text[], $3::text[]) AS r(destination, subject, subject_id) USING (destination, subject, subject_id)`,
      [refs.map((ref) => ref.destination), refs.map((ref) => ref.subject), refs.map((ref) => ref.id)],
    );
    return result.rows.map((row) => ({
      destination: row.destination,
      subject: row.subject,
      id: row.subject_id,
      generation: row.generation,
      key: row.key,
      ...(row.tier_move === null ? {} : { tierMove: JSON.parse(row.tier_move) as TierMove }),
    }));
  }

  async summary(runLimit: number): Promise<StateSummary> {
    const identities = await this.sessions.query<{ destination: Destination; count: number }>(
      'SELECT destination, COUNT(*)::int AS count FROM identities GROUP BY destination ORDER BY destination',
    );
    const accounts = this.holds('accounts')
      ? (await this.sessions.query<{ destination: Destination; count: number }>('SELECT destination, COUNT(*)::int AS count FROM accounts GROUP BY destination ORDER BY destination')).rows
      : [];
    const deliveries = await this.sessions.query<DeliveryCounts>(
      'SELECT destination, status, COUNT(*)::int AS count FROM deliveries GROUP BY destination, status ORDER BY destination, status',
    );
    const runs = await this.sessions.query<{ id: number; command: string; program_id: string; started_at: string; finished_at: string | null; status: RunRecord['status']; counts: string }>(
      'SELECT * FROM runs ORDER BY id DESC LIMIT $1',
      [runLimit],
    );
    return {
      location: this.location,
      schemaVersion: this.version,
      identities: identities.rows,
      accounts,
      deliveries: deliveries.rows,
      runs: runs.rows.map((row) => ({
        id: row.id,
        command: row.command,
        programId: row.program_id,
        startedAt: row.started_at,
        finishedAt: row.finished_at,
        status: row.status,
        counts: JSON.parse(row.counts) as Record<string, number>,
      })),
    };
  }

  async startRun(command: string, programId: string, now: Date): Promise<number> {
    const result = await this.sessions.query<{ id: number }>(
      `INSERT INTO runs (command, program_id, started_at, status) VALUES ($1, $2, $3, 'running') RETURNING id`,
      [command, programId, now.toISOString()],
    );
    return result.rows[0]!.id;
  }

  async finishRun(id: number, status: RunRecord['status'], counts: Record<string, number>, now: Date): Promise<void> {
    await this.sessions.query('UPDATE runs SET finished_at = $1, status = $2, counts = $3 WHERE id = $4', [now.toISOString(), status, JSON.stringify(counts), id]);
  }

  /** Records acknowledged traits as the new diff baseline, in one transaction (tests seed a state with it). */
  async saveIdentities(writes: readonly IdentityWrite[], now: Date): Promise<void> {
    await this.sessions.transaction((client) => upsertIdentities(client, writes, now.toISOString()));
  }

  /** Writes ledger rows, in one transaction (tests seed a state with it; runs write through the queue). */
  async recordDeliveries(rows: readonly DeliveryRow[], now: Date): Promise<void> {
    await this.sessions.transaction((client) => upsertDeliveries(client, rows, now.toISOString()));
  }

  queue(programId: string): PostgresDeliveryQueue {
    return new PostgresDeliveryQueue(this.sessions, programId);
  }

  /** Read a page at a time, by key: retry rewrites the rows it has read, which a keyset page steps past. */
  async *retryable(destinations: readonly Destination[], programId: string, unattributed: string): AsyncGenerator<StoredDelivery> {
    let after: { destination: string; created_at: string; key: string } = { destination: '', created_at: '', key: '' };
    for (;;) {
      const page = await this.sessions.query<StoredDelivery & { created_at: string }>(
        `SELECT ${DELIVERY_COLUMNS}, payload, updated_at AS "updatedAt", run_id AS "runId", created_at FROM deliveries
         WHERE status IN ('failed', 'dead') AND payload IS NOT NULL AND COALESCE(program_id, $1) = $2 AND destination = ANY($3)
           AND (destination, created_at, key) > ($4, $5, $6)
         ORDER BY destination, created_at, key LIMIT ${PAGE}`,
        [unattributed, programId, destinations, after.destination, after.created_at, after.key],
      );
      for (const { created_at, ...row } of page.rows) {
        after = { destination: row.destination, created_at, key: row.key };
        yield row;
      }
      if (page.rows.length < PAGE) return;
    }
  }

  async retryPrograms(destinations: readonly Destination[], unattributed: string): Promise<string[]> {
    if (destinations.length === 0) return [];
    const result = await this.sessions.query<{ program: string }>(
      `SELECT DISTINCT COALESCE(program_id, $1) AS program FROM deliveries
       WHERE status IN ('failed', 'dead') AND payload IS NOT NULL AND destination = ANY($2)
       UNION SELECT DISTINCT program_id AS program FROM queue WHERE destination = ANY($2)
       ORDER BY program`,
      [unattributed, destinations],
    );
    return result.rows.map((row) => row.program);
  }

  async locks(): Promise<LockRecord[]> {
    return this.locksHeld.list();
  }

  async failedDeliveries(programId: string, destinations: readonly Destination[]): Promise<StoredDelivery[]> {
    const result = await this.sessions.query<StoredDelivery>(
      `SELECT ${DELIVERY_COLUMNS}, payload, updated_at AS "updatedAt" FROM deliveries
       WHERE status = 'failed' AND program_id = $1 AND payload IS NOT NULL AND destination = ANY($2) ORDER BY created_at, key`,
      [programId, destinations],
    );
    return result.rows;
  }

  async problems(limit: number): Promise<StoredDelivery[]> {
    const result = await this.sessions.query<StoredDelivery>(
      `SELECT destination, key, kind, "userId", status, attempts, "lastError", NULL AS payload FROM (
         SELECT ${DELIVERY_COLUMNS}, ROW_NUMBER() OVER (PARTITION BY destination ORDER BY updated_at DESC, key) AS n
         FROM deliveries WHERE status IN ('failed', 'dead')) AS ranked
       WHERE n <= $1 ORDER BY destination, n`,
      [limit],
    );
    return result.rows;
  }

  /** Every failed and dead delivery, a page at a time (destination, newest first). */
  async *allProblems(): AsyncGenerator<StoredDelivery> {
    let after: { destination: string; updated_at: string; key: string } | undefined;
    for (;;) {
      const page = await this.sessions.query<StoredDelivery & { updated_at: string }>(
        `SELECT program_id AS "programId", ${DELIVERY_COLUMNS}, NULL AS payload, updated_at, updated_at AS "updatedAt" FROM deliveries
         WHERE status IN ('failed', 'dead')
           AND ($1::text IS NULL OR destination > $1 OR (destination = $1 AND (updated_at < $2 OR (updated_at = $2 AND key > $3))))
         ORDER BY destination, updated_at DESC, key LIMIT ${PAGE}`,
        [after?.destination ?? null, after?.updated_at ?? null, after?.key ?? null],
      );
      for (const { updated_at, ...row } of page.rows) {
        after = { destination: row.destination, updated_at, key: row.key };
        yield row;
      }
      if (page.rows.length < PAGE) return;
    }
  }

  /**
   * Counted by the server, grouped by exact reason, a page of groups at a time (by key: a program and a reason
   * that are absent read as ''); the example is the newest row (the MAX of a sortable text).
   */
  async *problemCounts(filter: ProblemFilter = {}): AsyncGenerator<ProblemCount> {
    const group = `COALESCE(program_id, ''), destination, status, COALESCE(last_error, '')`;
    let after: [string, string, string, string] | undefined;
    for (;;) {
      const page = await this.sessions.query<{ program: string; destination: Destination; status: 'failed' | 'dead'; reason: string; count: number; newest: string }>(
        `SELECT COALESCE(program_id, '') AS program, destination, status, COALESCE(last_error, '') AS reason, COUNT(*)::int AS count,
                MAX(${problemExampleSql('postgres')}) AS newest
         FROM deliveries WHERE status IN ('failed', 'dead')
           AND ($1::text IS NULL OR program_id = $1) AND ($2::int IS NULL OR run_id IS NULL OR run_id <> $2)
           AND ($3::text IS NULL OR (${group}) > ($3, $4, $5, $6))
         GROUP BY ${group} ORDER BY ${group} LIMIT ${PAGE}`,
        [filter.programId ?? null, filter.notRunId ?? null, ...(after ?? [null, null, null, null])],
      );
      for (const row of page.rows) {
        after = [row.program, row.destination, row.status, row.reason];
        yield {
          programId: row.program === '' ? null : row.program,
          destination: row.destination,
          status: row.status,
          lastError: row.reason === '' ? null : row.reason,
          count: row.count,
          example: parseProblemExample(row.newest),
        };
      }
      if (page.rows.length < PAGE) return;
    }
  }

  async watermark(programId: string, source: string): Promise<number | undefined> {
    const result = await this.sessions.query<{ watermark: string }>('SELECT watermark FROM watermarks WHERE program_id = $1 AND source = $2', [programId, source]);
    const row = result.rows[0];
    return row ? Number(row.watermark) : undefined;
  }

  async deliveredNamespaces(source: string, destination: Destination, programId: string): Promise<string[]> {
    const result = await this.sessions.query<{ namespace: string }>(
      'SELECT namespace FROM programs WHERE source = $1 AND destination = $2 AND program_id = $3 ORDER BY recorded_at, namespace',
      [source, destination, programId],
    );
    return result.rows.map((row) => row.namespace);
  }

  async deliveredPrograms(source: string, destination: Destination, namespace: string): Promise<string[]> {
    const result = await this.sessions.query<{ program_id: string }>(
      'SELECT program_id FROM programs WHERE source = $1 AND destination = $2 AND namespace = $3 ORDER BY recorded_at, program_id',
      [source, destination, namespace],
    );
    return result.rows.map((row) => row.program_id);
  }

  async programRecords(): Promise<ProgramRecord[]> {
    const result = await this.sessions.query<ProgramRecord>(
      'SELECT source, destination, namespace, program_id AS "programId", recorded_at AS "recordedAt" FROM programs ORDER BY recorded_at, destination, namespace, program_id',
    );
    return result.rows;
  }

  async namespaceAliases(): Promise<NamespaceAlias[]> {
    // A schema an older version wrote, read without migrating (diff, status): no alias was recorded there.
    if (!this.holds('namespace_aliases')) return [];
    const result = await this.sessions.query<NamespaceAlias>(
      'SELECT destination, alias, namespace, recorded_at AS "recordedAt" FROM namespace_aliases ORDER BY recorded_at, destination, alias',
    );
    return result.rows;
  }

  async recordNamespaceAlias(destination: Destination, alias: string, namespace: string, now: Date): Promise<void> {
    await this.sessions.query(
      `INSERT INTO namespace_aliases (destination, alias, namespace, recorded_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (destination, alias) DO UPDATE SET namespace = excluded.namespace, recorded_at = excluded.recorded_at`,
      [destination, alias, namespace, now.toISOString()],
    );
  }

  async recordPrograms(source: string, programId: string, namespaces: readonly { destination: Destination; namespace: string }[], now: Date): Promise<void> {
    if (namespaces.length === 0) return;
    await this.sessions.query(
      `INSERT INTO programs (source, destination, namespace, program_id, recorded_at)
       SELECT $1, d, n, $2, $3 FROM unnest($4::text[], $5::text[]) AS t(d, n) ON CONFLICT DO NOTHING`,
      [source, programId, now.toISOString(), namespaces.map((n) => n.destination), namespaces.map((n) => n.namespace)],
    );
  }

  async markSuperseded(rows: readonly DeliveryRef[], reason: string, now: Date): Promise<void> {
    if (rows.length === 0) return;
    // In a guarded transaction, as every ledger write: a run whose lock session was lost must not touch the rows
    // of the run that took the program over.
    await this.sessions.transaction((client) =>
      client.query(
        `UPDATE deliveries d SET status = 'superseded', last_error = $1, updated_at = $2
         FROM unnest($3::text[], $4::text[]) AS r(destination, key) WHERE d.destination = r.destination AND d.key = r.key`,
        [reason, now.toISOString(), rows.map((row) => row.destination), rows.map((row) => row.key)],
      ),
    );
  }

  async supersedeUnplanned(programId: string, destinations: readonly Destination[], runId: number, reason: string, now: Date): Promise<number> {
    if (destinations.length === 0) return 0;
    const result = await this.sessions.transaction((client) =>
      client.query(
        `UPDATE deliveries SET status = 'superseded', last_error = $1, updated_at = $2
         WHERE status IN ('failed', 'held') AND program_id = $3 AND destination = ANY($4) AND (run_id IS NULL OR run_id <> $5)`,
        [reason, now.toISOString(), programId, destinations, runId],
      ),
    );
    return result.rowCount ?? 0;
  }

  async cachedLookup(service: string, key: string, maxAgeMs: number, now: Date): Promise<unknown> {
    const result = await this.sessions.query<{ value: string; fetched_at: string }>('SELECT value, fetched_at FROM lookup_cache WHERE service = $1 AND key = $2', [
      service,
      key,
    ]);
    const row = result.rows[0];
    if (!row || now.getTime() - Date.parse(row.fetched_at) > maxAgeMs) return undefined;
    return JSON.parse(row.value) as unknown;
  }

  async cacheLookup(service: string, key: string, value: unknown, now: Date): Promise<void> {
    await this.sessions.query(
      `INSERT INTO lookup_cache (service, key, value, fetched_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (service, key) DO UPDATE SET value = excluded.value, fetched_at = excluded.fetched_at`,
      [service, key, JSON.stringify(value), now.toISOString()],
    );
  }

  async setWatermark(programId: string, source: string, watermark: number, now: Date): Promise<void> {
    await this.sessions.query(
      `INSERT INTO watermarks (program_id, source, watermark, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (program_id, source) DO UPDATE SET watermark = excluded.watermark, updated_at = excluded.updated_at`,
      [programId, source, watermark, now.toISOString()],
    );
  }

  async unfinishedBackfillStart(programId: string): Promise<Date | undefined> {
    const result = await this.sessions.query<{ started_at: string }>(UNFINISHED_BACKFILL_SQL.replaceAll('$program', '$1'), [programId]);
    const row = result.rows[0];
    return row ? new Date(row.started_at) : undefined;
  }

  async acknowledgedDestinations(programId: string, destinations: readonly Destination[]): Promise<Destination[]> {
    // A pilot's sends (`sync pilot`, `backfill pilot`) load no history: until a whole run was made, a sync still
    // guards everyone the pilot left for it.
    const whole = await this.sessions.query(`SELECT 1 FROM runs WHERE program_id = $1 AND command IN ('sync', 'backfill') LIMIT 1`, [programId]);
    if ((whole.rowCount ?? 0) === 0) return [];
    const acknowledged: Destination[] = [];
    for (const destination of destinations) {
      const result = await this.sessions.query(
        `SELECT 1 FROM deliveries WHERE destination = $1 AND status = 'sent' AND (program_id = $2 OR program_id IS NULL) LIMIT 1`,
        [destination, programId],
      );
      if ((result.rowCount ?? 0) > 0) acknowledged.push(destination);
    }
    return acknowledged;
  }

  async markCrashedRuns(programId: string, now: Date): Promise<void> {
    await this.sessions.query(`UPDATE runs SET status = 'crashed', finished_at = $1 WHERE program_id = $2 AND status = 'running'`, [now.toISOString(), programId]);
  }

  async acquireLock(programId: string, holder: string, now: Date): Promise<void> {
    await this.locksHeld.acquire(programId, holder, now);
  }

  async releaseLock(programId: string): Promise<void> {
    await this.locksHeld.release(programId);
  }

  /** The advisory lock tells a live run from a dead one on any machine; `force` ends a live one's session. */
  async freeLock(programId: string, force: boolean): Promise<FreedLock> {
    return this.locksHeld.free(programId, force);
  }

  async position(programId: string): Promise<StatePosition> {
    const run = await this.sessions.query<{ id: number | null }>('SELECT MAX(id) AS id FROM runs WHERE program_id = $1', [programId]);
    const acknowledged = await this.sessions.query<{ count: string }>(`SELECT COUNT(*) AS count FROM deliveries WHERE program_id = $1 AND status = 'sent'`, [programId]);
    const id = run.rows[0]?.id;
    return { lastRunId: id === null || id === undefined ? null : Number(id), acknowledged: Number(acknowledged.rows[0]?.count ?? 0) };
  }

  async runningPrograms(): Promise<string[]> {
    const result = await this.sessions.query<{ program_id: string }>(`SELECT DISTINCT program_id FROM runs WHERE status = 'running' ORDER BY program_id`);
    return result.rows.map((row) => row.program_id);
  }

  async exportRows(table: TransferTable, after: TransferRow | undefined, limit: number): Promise<TransferRow[]> {
    if (!this.holds(table)) return [];
    const result = await this.sessions.query<Record<string, unknown>>(exportSql(table, after !== undefined, (n) => `$${n}`), exportValues(table, after, limit));
    return result.rows.map(normalizeRow);
  }

  /** Keys kept as they are: the identity columns (runs.id, queue.seq) then continue after the largest copied. */
  async importRows(table: TransferTable, rows: readonly TransferRow[]): Promise<void> {
    if (rows.length === 0) return;
    const columns = TRANSFER_TABLES[table].columns;
    const overriding = table === 'queue' ? ' OVERRIDING SYSTEM VALUE' : '';
    await this.sessions.transaction(
      async (client) => {
        for (let start = 0; start < rows.length; start += 200) {
          const page = rows.slice(start, start + 200);
          const values: (string | number | null)[] = [];
          const tuples = page.map((row) => {
            const base = values.length;
            values.push(...rowValues(table, row));
            return `(${columns.map((_, index) => `$${base + index + 1}`).join(', ')})`;
          });
          await client.query(`INSERT INTO ${table} (${columns.join(', ')})${overriding} VALUES ${tuples.join(', ')}`, values);
        }
        if (table === 'runs' || table === 'queue') {
          const column = table === 'runs' ? 'id' : 'seq';
          await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), (SELECT max(${column}) FROM ${table}))`, [`${this.sessions.target.schema}.${table}`, column]);
        }
      },
      { guarded: false },
    );
  }

  async transferCounts(): Promise<TransferCounts> {
    const tables = {} as Record<TransferTable, number>;
    for (const table of Object.keys(TRANSFER_TABLES) as TransferTable[]) {
      tables[table] = this.holds(table) ? Number((await this.sessions.query<{ count: string }>(`SELECT count(*) AS count FROM ${table}`)).rows[0]?.count ?? 0) : 0;
    }
    const result = await this.sessions.query<{ destination: Destination; status: DeliveryStatus; count: string }>(
      'SELECT destination, status, count(*) AS count FROM deliveries GROUP BY destination, status ORDER BY destination, status',
    );
    return { tables, deliveries: result.rows.map((row) => ({ destination: row.destination, status: row.status, count: Number(row.count) })) };
  }

  /** Whether the schema, as an older version may have left it (read without migrating), has this table. */
  private holds(table: TransferTable): boolean {
    if (table === 'accounts') return this.version >= PG_ACCOUNTS_SINCE;
    if (table === 'generations') return this.version >= PG_GENERATIONS_SINCE;
    if (table === 'namespace_aliases') return this.version >= PG_ALIASES_SINCE;
    return true;
  }

  async close(): Promise<void> {
    await this.locksHeld.close();
    await this.sessions.end();
  }
}
