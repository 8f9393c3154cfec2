import type pg from 'pg';
import { LockedError, UnavailableError } from '../../errors.js';
import { describeHolder, thisProcess } from '../locks.js';
import type { PostgresSessions } from './sessions.js';
import { postgresError } from './errors.js';
import type { FreedLock, LockRecord } from '../store.js';

/** The backend holding an advisory lock, as pg_locks and pg_stat_activity show it (the address only to roles that may see it). */
interface AdvisoryHolder {
  pid: number;
  clientAddr: string | null;
  clientPort: number | null;
  applicationName: string | null;
}

/**
 * A granted advisory lock on key `k.key` in this database, in pg_locks `l` (which splits a bigint key into two
 * 32-bit halves, and lists every database's locks).
 */
const HELD_BY_KEY = `l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::text::bigint = ((k.key >> 32) & 4294967295) AND l.objid::text::bigint = (k.key & 4294967295)`;

/**
 * A program's lock on the PostgreSQL state (DESIGN.md §7): a session-level advisory lock, held by a session the
 * run keeps open for that purpose. Runners on any machine see it at once, and when a runner dies, even by
 * SIGKILL, its session ends and the server frees the lock: nobody has to delete a row. The `lock` table only
 * says who holds it, for `status` and the locked message; the advisory lock decides.
 */
export class PostgresLocks {
  private readonly held = new Map<string, pg.Client>();
  /** A program whose lock session ended while this run held it (server restart, pg_terminate_backend). */
  private lost: string | undefined;

  constructor(private readonly sessions: PostgresSessions) {}

  /** The advisory key of a program: derived from the schema too, so two states in one database never collide. */
  private key(programId: string): string {
    return `referral-sync ${this.sessions.target.schema} ${programId}`;
  }

  async acquire(programId: string, holder: string, now: Date): Promise<void> {
    if (this.held.has(programId)) return;
    const client = await this.sessions.dedicated();
    const taken = await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS taken', [this.key(programId)]);
    if (!taken.rows[0]?.taken) {
      await client.end().catch(() => undefined);
      throw await this.lockedError(programId);
    }
    this.held.set(programId, client);
    // Without its session the lock is gone, and another run may take it: from then on this run must not write.
    const onLost = (): void => {
      if (this.held.get(programId) === client) this.lost ??= programId;
    };
    client.on('error', onLost);
    client.on('end', onLost);
    const me = thisProcess();
    await this.sessions.query(
      `INSERT INTO lock (program_id, holder, pid, host, acquired_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (program_id) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host, acquired_at = excluded.acquired_at`,
      [programId, holder, me.pid, me.host, now.toISOString()],
    );
  }

  /** Throws (exit 69) once a lock this run held was lost with its session: its writes could overlap another run's. */
  assertHeld(): void {
    if (this.lost === undefined) return;
    throw new UnavailableError(
      `The PostgreSQL state ${this.sessions.target.location} ended the session holding this run's lock on program ${this.lost} (a server restart, or an administrator ended it), so this run stopped writing rather than overlap another.`,
      {
        hint: 'Check that the server is up and reachable from here. Then run the same command again: the state is intact, and the run goes on where this one stopped, with the same ids (what was sent but not recorded is deduplicated by the destinations).',
      },
    );
  }

  async release(programId: string): Promise<void> {
    const client = this.held.get(programId);
    if (!client) return;
    const me = thisProcess();
    try {
      await this.sessions.query('DELETE FROM lock WHERE program_id = $1 AND pid = $2 AND host = $3', [programId, me.pid, me.host]);
    } finally {
      this.held.delete(programId);
      // Ending the session frees its advisory lock.
      await client.end().catch(() => undefined);
    }
  }

  /**
   * `unlock`: the advisory lock says whether the run lives, on any machine. A lock no session holds is just a
   * stale row (its run died): it is removed and the runs it left `running` are recorded crashed, while this
   * session holds the advisory lock itself, so a run starting meanwhile is not touched. A live holder keeps its
   * lock (exit 75, naming its backend so it can be found), unless `force` ends its session, when this role may.
   */
  async free(programId: string, force: boolean): Promise<FreedLock> {
    const row = await this.info(programId);
    const client = await this.sessions.dedicated();
    try {
      const holder = await this.holderOf(programId);
      if (holder && !force) {
        throw new LockedError(`Program ${programId} is locked by a run that is still going (${this.describe(row, holder)}).`, {
          hint: `Wait for it to finish, or stop that run${row ? ` (kill ${row.pid} on ${row.host})` : ''}: PostgreSQL frees the lock by itself when it ends or dies. If it hangs and cannot be stopped, \`npx referral-sync unlock --campaign ${programId} --force\` ends its PostgreSQL session (backend pid ${holder.pid}), which frees the lock and makes that run stop writing.`,
        });
      }
      if (holder) await this.terminate(client, programId, row, holder);
      // A session ended by pg_terminate_backend lets go of its locks a moment later.
      let taken = false;
      for (let attempt = 0; ; attempt += 1) {
        taken = (await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS taken', [this.key(programId)])).rows[0]?.taken ?? false;
        if (taken || !holder || attempt >= 100) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (!taken) {
        const now = await this.holderOf(programId);
        throw new LockedError(`Program ${programId} is locked by a run that is still going (${this.describe(await this.info(programId), now)}).`, {
          hint: 'Wait for it to finish, or stop it; PostgreSQL frees the lock by itself when that run ends or dies.',
        });
      }
      await client.query('DELETE FROM lock WHERE program_id = $1', [programId]);
      const crashed = await client.query(`UPDATE runs SET status = 'crashed', finished_at = $1 WHERE program_id = $2 AND status = 'running'`, [new Date().toISOString(), programId]);
      return { programId, lock: row, crashedRuns: crashed.rowCount ?? 0, ...(holder ? { terminatedBackend: holder.pid } : {}) };
    } catch (error) {
      if (error instanceof LockedError) throw error;
      throw postgresError(error, this.sessions.target, this.sessions.phase);
    } finally {
      // Ending the session frees the advisory lock it took.
      await client.end().catch(() => undefined);
    }
  }

  /** `unlock --force`: ends the session holding the lock, or says exactly what would (exit 75) when this role may not. */
  private async terminate(client: pg.Client, programId: string, row: LockRecord | undefined, holder: AdvisoryHolder): Promise<void> {
    const ask = `Stop that run${row ? ` (kill ${row.pid} on ${row.host})` : ''}, or have a superuser (or a member of the role running it, or of pg_signal_backend) run: SELECT pg_terminate_backend(${holder.pid}); then run unlock again.`;
    try {
      await client.query('SELECT pg_terminate_backend($1)', [holder.pid]);
    } catch (error) {
      if ((error as { code?: unknown }).code !== '42501') throw error;
      throw new LockedError(`Program ${programId} is locked by a run that is still going (${this.describe(row, holder)}), and this PostgreSQL role may not end its session.`, { hint: ask });
    }
  }

  /** Who holds the program's advisory lock now: its backend, and where that session connects from when the server says. */
  private async holderOf(programId: string): Promise<AdvisoryHolder | undefined> {
    const result = await this.sessions.query<AdvisoryHolder>(
      `WITH k AS (SELECT hashtextextended($1, 0) AS key)
       SELECT l.pid, host(a.client_addr) AS "clientAddr", a.client_port AS "clientPort", a.application_name AS "applicationName"
       FROM pg_locks l CROSS JOIN k LEFT JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE ${HELD_BY_KEY} LIMIT 1`,
      [this.key(programId)],
    );
    return result.rows[0];
  }

  private describe(row: LockRecord | undefined, holder: AdvisoryHolder | undefined): string {
    const parts = row ? [describeHolder(row)] : [];
    if (holder) {
      const from = holder.clientAddr ? ` from ${holder.clientAddr}${holder.clientPort && holder.clientPort > 0 ? `:${holder.clientPort}` : ''}` : '';
      parts.push(`PostgreSQL backend pid ${holder.pid}${from}`);
    }
    return parts.join('; ') || 'holder unknown';
  }

  /** The locks some session holds now, with who holds them; rows left by runs that died are not locks. */
  async list(): Promise<LockRecord[]> {
    const rows = await this.sessions.query<LockRecord>(
      'SELECT program_id AS "programId", holder, pid, host, acquired_at AS "acquiredAt" FROM lock ORDER BY program_id',
    );
    const live: LockRecord[] = [];
    for (const row of rows.rows) if (await this.isHeld(row.programId)) live.push({ ...row, holderState: 'alive' });
    return live;
  }

  async close(): Promise<void> {
    for (const programId of [...this.held.keys()]) await this.release(programId).catch(() => undefined);
  }

  /** Whether any session holds the program's advisory lock (pg_locks splits a bigint key into two 32-bit halves). */
  private async isHeld(programId: string): Promise<boolean> {
    const result = await this.sessions.query<{ held: boolean }>(
      `WITH k AS (SELECT hashtextextended($1, 0) AS key)
       SELECT EXISTS (SELECT 1 FROM pg_locks l, k WHERE ${HELD_BY_KEY}) AS held`,
      [this.key(programId)],
    );
    return result.rows[0]?.held ?? false;
  }

  private async info(programId: string): Promise<LockRecord | undefined> {
    const rows = await this.sessions.query<LockRecord>(
      'SELECT program_id AS "programId", holder, pid, host, acquired_at AS "acquiredAt" FROM lock WHERE program_id = $1',
      [programId],
    );
    return rows.rows[0];
  }

  private async lockedError(programId: string): Promise<LockedError> {
    const row = await this.info(programId).catch(() => undefined);
    const who = row ? ` (${describeHolder(row)})` : '';
    return new LockedError(`Another run holds the lock on program ${programId} in ${this.sessions.target.location}${who}.`, {
      hint: 'Wait for it to finish; PostgreSQL frees the lock by itself when that run ends or dies, so there is nothing to unlock.',
    });
  }
}
