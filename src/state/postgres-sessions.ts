import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { postgresError } from './postgres-errors.js';
import type { PostgresTarget } from './postgres-url.js';

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
  }

  /** Checked before every write transaction: throws once this run may no longer write (its lock session is gone). */
  writeGuard: (() => void) | undefined;

  async query<R extends QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values as unknown[] | undefined);
    } catch (error) {
      throw postgresError(error, this.target);
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
        throw postgresError(error, this.target);
      }
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        const code = (error as { code?: unknown }).code;
        if ((code === '40P01' || code === '40001') && attempt < 3) continue;
        throw postgresError(error, this.target);
      } finally {
        client.release();
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
      throw postgresError(error, this.target);
    }
    return client;
  }

  async end(): Promise<void> {
    await this.pool.end();
  }
}
