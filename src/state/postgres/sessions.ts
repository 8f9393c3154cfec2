import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { postgresError } from './errors.js';
import type { PostgresTarget } from './url.js';

/**
 * The sessions one run opens on the PostgreSQL state: a small pool for reads and transactions (the planner and
 * each destination's sender work at once), every error turned into a typed one with the password masked.
 */
export class PostgresSessions {
  private readonly pool: pg.Pool;

  constructor(
    readonly target: PostgresTarget,
    private readonly readOnly: boolean,
  ) {
    this.pool = new pg.Pool({ ...target.config({ readOnly }), max: 4 });
    // An idle session the server drops (restart, idle timeout) must not crash the run; the next query reconnects.
    this.pool.on('error', () => undefined);
    // Nor one in use: a session checked out for a transaction has no listener of the pool's, and pool.query's own
    // is a `once`, while a connection that breaks can emit 'error' twice (a reset, then the failed write). Without
    // a listener, Node ends the process on the event with a stack trace. The query in flight is rejected anyway,
    // and a session that broke is not queryable any more: that error, typed, is what the run reports.
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  /** `run` once the state is open: errors then advise running again on the intact state (postgres/errors.ts). */
  phase: 'open' | 'run' = 'open';

  /** Checked before every write transaction: throws once this run may no longer write (its lock session is gone). */
  writeGuard: (() => void) | undefined;

  /**
   * A read-only state (diff, status, the source of state copy) reads on one session, in one REPEATABLE READ READ
   * ONLY transaction begun at its first query and ended at close: every read sees the state as it was at the first
   * one, whatever runs commit meanwhile. Reads that page (status --json, allProblems) stay inside it.
   */
  private snapshot: Promise<pg.Client> | undefined;

  private snapshotSession(): Promise<pg.Client> {
    this.snapshot ??= (async () => {
      const client = await this.dedicated();
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      } catch (error) {
        await client.end().catch(() => undefined);
        throw postgresError(error, this.target, this.phase);
      }
      return client;
    })();
    return this.snapshot;
  }

  async query<R extends QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>> {
    try {
      if (this.readOnly) return await (await this.snapshotSession()).query<R>(text, values as unknown[] | undefined);
      return await this.pool.query<R>(text, values as unknown[] | undefined);
    } catch (error) {
      throw postgresError(error, this.target, this.phase);
    }
  }

  /**
   * One transaction on one session; retried once or twice when the server picked it as a deadlock victim.
   * `guarded: false` (state copy into an empty target, which holds no lock) skips the write guard.
   */
  async transaction<T>(work: (client: PoolClient) => Promise<T>, options: { guarded: boolean } = { guarded: true }): Promise<T> {
    for (let attempt = 1; ; attempt += 1) {
      if (options.guarded) this.writeGuard?.();
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw postgresError(error, this.target, this.phase);
      }
      let failed: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        failed = error instanceof Error ? error : new Error(String(error));
        await client.query('ROLLBACK').catch(() => undefined);
        const code = (error as { code?: unknown }).code;
        if ((code === '40P01' || code === '40001') && attempt < 3) continue;
        throw postgresError(error, this.target, this.phase);
      } finally {
        // A session that failed is not given back: its connection may be the one that broke, and the next query
        // (recording the run's end, say) would find it dead. The pool opens a fresh one when needed.
        client.release(failed);
      }
    }
  }

  /** A session of its own (the lock's, the migration's), connected; errors typed as the others. */
  async dedicated(): Promise<pg.Client> {
    const client = new pg.Client(this.target.config({ readOnly: this.readOnly }));
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw postgresError(error, this.target, this.phase);
    }
    return client;
  }

  async end(): Promise<void> {
    const snapshot = await this.snapshot?.catch(() => undefined);
    this.snapshot = undefined;
    if (snapshot) {
      // Nothing was written in it: ending it either way only lets go of the snapshot.
      await snapshot.query('ROLLBACK').catch(() => undefined);
      await snapshot.end().catch(() => undefined);
    }
    await this.pool.end();
  }
}
