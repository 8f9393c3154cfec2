import type { QueuedOperation, ReclaimableQueue, RequeuedDelivery } from '../store.js';
import type { Destination } from '../../config/defaults.js';
import { ledgerKind, type Operation } from '../../plan/types.js';
import { appendOperations, upsertAccounts, upsertDeliveries, upsertIdentities } from './ledger.js';
import type { PostgresSessions } from './sessions.js';
import type { AccountWrite, DeliveryRow, IdentityWrite } from '../store.js';

/** Held events moved into the queue per read, when a run decides to send them. */
const HELD_PAGE = 1_000;

/**
 * One program's delivery queue inside the PostgreSQL state: the same rows and rules as the SQLite one
 * (sqlite/queue.ts). Each call is one round trip of batched statements, in one transaction when it writes, so an
 * outcome and its ledger row are committed together and a killed runner loses nothing.
 */
export class PostgresDeliveryQueue implements ReclaimableQueue {
  constructor(
    private readonly sessions: PostgresSessions,
    readonly programId: string,
  ) {}

  async lastSeq(): Promise<number> {
    const result = await this.sessions.query<{ seq: string | null }>(`SELECT pg_sequence_last_value(pg_get_serial_sequence('queue', 'seq')) AS seq`);
    return Number(result.rows[0]?.seq ?? 0);
  }

  async enqueue(operations: readonly Operation[], runId: number, now: Date): Promise<void> {
    await this.sessions.transaction((client) => appendOperations(client, this.programId, operations, runId, now.toISOString()));
  }

  async queued(destination: Destination, afterSeq: number, limit: number): Promise<QueuedOperation[]> {
    const result = await this.sessions.query<{ seq: string; operation: string }>(
      'SELECT seq, operation FROM queue WHERE program_id = $1 AND destination = $2 AND seq > $3 ORDER BY seq LIMIT $4',
      [this.programId, destination, afterSeq, limit],
    );
    return result.rows.map((row) => ({ seq: Number(row.seq), operation: JSON.parse(row.operation) as Operation }));
  }

  async settle(entries: readonly number[], rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date, accounts: readonly AccountWrite[] = []): Promise<void> {
    const at = now.toISOString();
    await this.sessions.transaction(async (client) => {
      if (entries.length > 0) await client.query('DELETE FROM queue WHERE seq = ANY($1::bigint[])', [entries]);
      await upsertDeliveries(client, rows, at);
      await upsertIdentities(client, identities, at);
      await upsertAccounts(client, accounts, at);
    });
  }

  async waiting(destination: Destination): Promise<number> {
    const result = await this.sessions.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM queue WHERE program_id = $1 AND destination = $2', [
      this.programId,
      destination,
    ]);
    return result.rows[0]?.n ?? 0;
  }

  async failQueued(destination: Destination, reason: string, runId: number, now: Date): Promise<number> {
    return this.sessions.transaction(async (client) => {
      const changed = await client.query(
        `UPDATE deliveries SET status = 'failed', last_error = $1, run_id = $2, updated_at = $3, payload = queue.operation
         FROM queue WHERE queue.program_id = $4 AND queue.destination = $5
           AND deliveries.destination = queue.destination AND deliveries.key = queue.key`,
        [reason, runId, now.toISOString(), this.programId, destination],
      );
      await client.query('DELETE FROM queue WHERE program_id = $1 AND destination = $2', [this.programId, destination]);
      return changed.rowCount ?? 0;
    });
  }

  async reclaim(destination: Destination, reason: string, now: Date): Promise<number> {
    return this.sessions.transaction(async (client) => {
      // As failQueued, but the row keeps the run that planned it: a run that plans it again makes it its own.
      const changed = await client.query(
        `UPDATE deliveries SET status = 'failed', last_error = $1, updated_at = $2, payload = queue.operation
         FROM queue WHERE queue.program_id = $3 AND queue.destination = $4
           AND deliveries.destination = queue.destination AND deliveries.key = queue.key`,
        [reason, now.toISOString(), this.programId, destination],
      );
      await client.query('DELETE FROM queue WHERE program_id = $1 AND destination = $2', [this.programId, destination]);
      return changed.rowCount ?? 0;
    });
  }

  async setAside(operations: readonly Operation[], status: 'held' | 'skipped', reason: string, runId: number, now: Date): Promise<void> {
    if (operations.length === 0) return;
    // Sorted by key, as every ledger write: concurrent transactions lock rows in the same order.
    const sorted = [...new Map(operations.map((o) => [`${o.destination}\u0000${o.key}`, o])).entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, o]) => o);
    await this.sessions.transaction((client) =>
      client.query(
        `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, last_error, payload, run_id, program_id, seq, created_at, updated_at)
         SELECT d, k, kind, u, $5, 0, $6, p, $7, $8, NULL, $9, $9 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $10::text[]) AS t(d, k, kind, u, p)
         ON CONFLICT (destination, key) DO UPDATE SET
           status = excluded.status, last_error = excluded.last_error, payload = excluded.payload, run_id = excluded.run_id,
           program_id = excluded.program_id, seq = NULL, updated_at = excluded.updated_at`,
        [
          sorted.map((o) => o.destination),
          sorted.map((o) => o.key),
          sorted.map(ledgerKind),
          sorted.map((o) => o.userId),
          status,
          reason,
          runId,
          this.programId,
          now.toISOString(),
          // A skipped event is never sent: its payload (people's data) is not kept.
          sorted.map((o) => (status === 'held' ? JSON.stringify(o) : null)),
        ],
      ),
    );
  }

  async decideHeld(runId: number, action: 'send' | 'skip', reason: string, now: Date): Promise<number> {
    const at = now.toISOString();
    return this.sessions.transaction(async (client) => {
      if (action === 'skip') {
        const skipped = await client.query(
          `UPDATE deliveries SET status = 'skipped', last_error = $1, payload = NULL, updated_at = $2 WHERE status = 'held' AND program_id = $3 AND run_id = $4`,
          [reason, at, this.programId, runId],
        );
        return skipped.rowCount ?? 0;
      }
      let moved = 0;
      let after = { destination: '', key: '' };
      // A page at a time: never all of them in memory.
      for (;;) {
        const page = await client.query<{ destination: string; key: string; payload: string | null }>(
          `SELECT destination, key, payload FROM deliveries WHERE status = 'held' AND program_id = $1 AND run_id = $2 AND (destination, key) > ($3, $4)
           ORDER BY destination, key LIMIT ${HELD_PAGE}`,
          [this.programId, runId, after.destination, after.key],
        );
        if (page.rows.length === 0) return moved;
        const operations = page.rows.flatMap((row) => (row.payload === null ? [] : [JSON.parse(row.payload) as Operation]));
        await appendOperations(client, this.programId, operations, runId, at);
        moved += page.rows.length;
        after = page.rows.at(-1)!;
      }
    });
  }

  async withdraw(reason: string, now: Date): Promise<number> {
    return this.sessions.transaction(async (client) => {
      const changed = await client.query(
        `UPDATE deliveries SET status = 'superseded', last_error = $1, updated_at = $2
         FROM queue WHERE queue.program_id = $3 AND deliveries.destination = queue.destination AND deliveries.key = queue.key`,
        [reason, now.toISOString(), this.programId],
      );
      await client.query('DELETE FROM queue WHERE program_id = $1', [this.programId]);
      return changed.rowCount ?? 0;
    });
  }

  async requeue(rows: readonly RequeuedDelivery[], runId: number, now: Date): Promise<void> {
    if (rows.length === 0) return;
    await this.sessions.transaction(async (client) => {
      const stored = await client.query<{ destination: string; key: string; payload: string | null }>(
        `SELECT d.destination, d.key, d.payload FROM deliveries d JOIN unnest($1::text[], $2::text[]) AS r(destination, key) USING (destination, key)`,
        [rows.map((row) => row.destination), rows.map((row) => row.key)],
      );
      const payloads = new Map(stored.rows.map((row) => [`${row.destination}\u0000${row.key}`, row.payload]));
      const operations = rows.flatMap((row) => {
        const payload = payloads.get(`${row.destination}\u0000${row.key}`);
        return payload ? [row.operation ?? (JSON.parse(payload) as Operation)] : [];
      });
      await appendOperations(client, this.programId, operations, runId, now.toISOString());
    });
  }
}
