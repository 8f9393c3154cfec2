import type Database from 'better-sqlite3';
import type { QueuedOperation, ReclaimableQueue, RequeuedDelivery } from '../store.js';
import type { Destination } from '../../config/defaults.js';
import { issuedGeneration, ledgerKind, REPLACED_REASON, type Operation } from '../../plan/types.js';
import type { SqliteLedger } from './ledger.js';
import type { AccountWrite, DeliveryRow, IdentityWrite } from '../store.js';

type Db = Database.Database;

/** Held events moved into the queue per read, when a run decides to send them. */
const HELD_PAGE = 1_000;

/**
 * One program's delivery queue inside the SQLite state. The planner appends operations (a `queue` row with the
 * operation, and the ledger row `pending` pointing at it); each destination's sender reads its entries in order;
 * an outcome settles the ledger row and removes the entry in one transaction. Work a destination cannot take yet
 * waits here, on disk, never in memory; a run that dies leaves its entries for the next run. Each method runs
 * its statements synchronously when called (better-sqlite3), so entries take their positions in call order.
 */
export class SqliteDeliveryQueue implements ReclaimableQueue {
  private readonly statements: {
    ledgerRow: Database.Statement<[string, string], { status: string; seq: number | null; run_id: number | null }>;
    entryExists: Database.Statement<[number], { one: number }>;
    insertEntry: Database.Statement;
    markPending: Database.Statement;
    queued: Database.Statement<[string, string, number, number], { seq: number; operation: string }>;
    removeEntry: Database.Statement<[number]>;
    failQueued: Database.Statement;
    dropQueued: Database.Statement<[string, string]>;
    waiting: Database.Statement<[string, string], { n: number }>;
    requeueRow: Database.Statement<[string, string], { payload: string | null }>;
    lastSeq: Database.Statement<[], { seq: number | null }>;
    reclaim: Database.Statement;
    generationRow: Database.Statement<[string, string, string], { generation: number; key: string }>;
    dropReplaced: Database.Statement<[string, string]>;
    supersedeReplaced: Database.Statement;
    saveGeneration: Database.Statement;
    setAside: Database.Statement;
    heldPage: Database.Statement<[string, number, string, string], { destination: string; key: string; payload: string | null }>;
    skipHeld: Database.Statement;
    withdraw: Database.Statement;
    dropProgram: Database.Statement<[string]>;
  };

  constructor(
    private readonly db: Db,
    readonly programId: string,
    private readonly ledger: SqliteLedger,
  ) {
    this.statements = {
      ledgerRow: db.prepare('SELECT status, seq, run_id FROM deliveries WHERE destination = ? AND key = ?'),
      entryExists: db.prepare('SELECT 1 AS one FROM queue WHERE seq = ?'),
      insertEntry: db.prepare('INSERT INTO queue (program_id, destination, key, operation) VALUES (@programId, @destination, @key, @operation)'),
      markPending: db.prepare(
        `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, run_id, program_id, seq, created_at, updated_at)
         VALUES (@destination, @key, @kind, @userId, 'pending', 0, @runId, @programId, @seq, @at, @at)
         ON CONFLICT (destination, key) DO UPDATE SET
           status = 'pending', run_id = excluded.run_id, program_id = excluded.program_id, seq = excluded.seq,
           last_error = NULL, updated_at = excluded.updated_at`,
      ),
      queued: db.prepare('SELECT seq, operation FROM queue WHERE program_id = ? AND destination = ? AND seq > ? ORDER BY seq LIMIT ?'),
      removeEntry: db.prepare('DELETE FROM queue WHERE seq = ?'),
      failQueued: db.prepare(
        `UPDATE deliveries SET status = 'failed', last_error = @reason, run_id = @runId, updated_at = @at, payload = queue.operation
         FROM queue WHERE queue.program_id = @programId AND queue.destination = @destination
           AND deliveries.destination = queue.destination AND deliveries.key = queue.key`,
      ),
      dropQueued: db.prepare('DELETE FROM queue WHERE program_id = ? AND destination = ?'),
      waiting: db.prepare('SELECT COUNT(*) AS n FROM queue WHERE program_id = ? AND destination = ?'),
      requeueRow: db.prepare('SELECT payload FROM deliveries WHERE destination = ? AND key = ?'),
      lastSeq: db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'queue'`),
      // As failQueued, but the row keeps the run that planned it: a run that plans it again makes it its own.
      reclaim: db.prepare(
        `UPDATE deliveries SET status = 'failed', last_error = @reason, updated_at = @at, payload = queue.operation
         FROM queue WHERE queue.program_id = @programId AND queue.destination = @destination
           AND deliveries.destination = queue.destination AND deliveries.key = queue.key`,
      ),
      generationRow: db.prepare('SELECT generation, key FROM generations WHERE destination = ? AND subject = ? AND subject_id = ?'),
      dropReplaced: db.prepare(`DELETE FROM queue WHERE seq = (SELECT seq FROM deliveries WHERE destination = ? AND key = ? AND status = 'pending')`),
      supersedeReplaced: db.prepare(
        `UPDATE deliveries SET status = 'superseded', last_error = @reason, updated_at = @at
         WHERE destination = @destination AND key = @key AND status IN ('pending', 'failed')`,
      ),
      saveGeneration: db.prepare(
        `INSERT INTO generations (destination, subject, subject_id, generation, key, tier_move, updated_at)
         VALUES (@destination, @subject, @id, @generation, @key, @tierMove, @at)
         ON CONFLICT (destination, subject, subject_id) DO UPDATE SET
           generation = excluded.generation, key = excluded.key, tier_move = excluded.tier_move, updated_at = excluded.updated_at`,
      ),
      setAside: db.prepare(
        `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, last_error, payload, run_id, program_id, seq, created_at, updated_at)
         VALUES (@destination, @key, @kind, @userId, @status, 0, @reason, @payload, @runId, @programId, NULL, @at, @at)
         ON CONFLICT (destination, key) DO UPDATE SET
           status = excluded.status, last_error = excluded.last_error, payload = excluded.payload, run_id = excluded.run_id,
           program_id = excluded.program_id, seq = NULL, updated_at = excluded.updated_at`,
      ),
      heldPage: db.prepare(
        `SELECT destination, key, payload FROM deliveries
         WHERE status = 'held' AND program_id = ? AND run_id = ? AND (destination, key) > (?, ?) ORDER BY destination, key LIMIT ${HELD_PAGE}`,
      ),
      skipHeld: db.prepare(
        `UPDATE deliveries SET status = 'skipped', last_error = @reason, payload = NULL, updated_at = @at
         WHERE status = 'held' AND program_id = @programId AND run_id = @runId`,
      ),
      withdraw: db.prepare(
        `UPDATE deliveries SET status = 'superseded', last_error = @reason, updated_at = @at
         FROM queue WHERE queue.program_id = @programId AND deliveries.destination = queue.destination AND deliveries.key = queue.key`,
      ),
      dropProgram: db.prepare('DELETE FROM queue WHERE program_id = ?'),
    };
  }

  async setAside(operations: readonly Operation[], status: 'held' | 'skipped', reason: string, runId: number, now: Date): Promise<void> {
    const at = now.toISOString();
    this.db.transaction(() => {
      for (const operation of operations) {
        this.statements.setAside.run({
          destination: operation.destination,
          key: operation.key,
          kind: ledgerKind(operation),
          userId: operation.userId,
          status,
          reason,
          // A skipped event is never sent: its payload (people's data) is not kept.
          payload: status === 'held' ? JSON.stringify(operation) : null,
          runId,
          programId: this.programId,
          at,
        });
      }
    })();
  }

  async decideHeld(runId: number, action: 'send' | 'skip', reason: string, now: Date): Promise<number> {
    const at = now.toISOString();
    if (action === 'skip') return this.statements.skipHeld.run({ reason, at, programId: this.programId, runId }).changes;
    return this.db.transaction(() => {
      let moved = 0;
      let after = { destination: '', key: '' };
      // A page at a time (the statement cannot stay open while the queue is written): never all of them in memory.
      for (;;) {
        const page = this.statements.heldPage.all(this.programId, runId, after.destination, after.key);
        if (page.length === 0) return moved;
        for (const row of page) if (row.payload !== null) this.append(JSON.parse(row.payload) as Operation, runId, at);
        moved += page.length;
        after = page.at(-1)!;
      }
    })();
  }

  async withdraw(reason: string, now: Date): Promise<number> {
    return this.db.transaction(() => {
      const changed = this.statements.withdraw.run({ programId: this.programId, reason, at: now.toISOString() }).changes;
      this.statements.dropProgram.run(this.programId);
      return changed;
    })();
  }

  async lastSeq(): Promise<number> {
    return this.statements.lastSeq.get()?.seq ?? 0;
  }

  async enqueue(operations: readonly Operation[], runId: number, now: Date): Promise<void> {
    const at = now.toISOString();
    this.db.transaction(() => {
      for (const operation of operations) this.append(operation, runId, at);
    })();
  }

  /** One operation into the queue, unless it already waits there (a killed run's leftover planned again). */
  private append(operation: Operation, runId: number, at: string): void {
    const { destination, key } = operation;
    const existing = this.statements.ledgerRow.get(destination, key);
    if (existing?.status === 'pending' && existing.seq !== null && this.statements.entryExists.get(existing.seq)) return;
    // Planned while it waited in the queue (a leftover sent first) and acknowledged before this append: this run
    // delivered it already, so it is not queued again (--resend included: one send per run is enough).
    if (existing?.status === 'sent' && existing.run_id === runId) return;
    // `changes` only serve the diff display; the queue keeps what is needed to send and to record.
    const stored = operation.kind === 'identify' ? { ...operation, changes: [] } : operation;
    const seq = Number(
      this.statements.insertEntry.run({ programId: this.programId, destination, key, operation: JSON.stringify(stored) }).lastInsertRowid,
    );
    this.statements.markPending.run({
      destination,
      key,
      kind: ledgerKind(operation),
      userId: operation.userId,
      runId,
      programId: this.programId,
      seq,
      at,
    });
    this.recordGeneration(operation, at);
  }

  /**
   * An operation with a generation becomes its person's or account's newest; the one it replaces is never sent:
   * superseded if it was not settled, and out of the queue. An older one put back (by `retry`) changes nothing.
   */
  private recordGeneration(operation: Operation, at: string): void {
    const issued = issuedGeneration(operation);
    if (issued === undefined) return;
    const current = this.statements.generationRow.get(issued.destination, issued.subject, issued.id);
    if (current !== undefined && current.generation > issued.generation) return;
    if (current !== undefined && current.key !== issued.key) {
      this.statements.dropReplaced.run(issued.destination, current.key);
      this.statements.supersedeReplaced.run({ destination: issued.destination, key: current.key, reason: REPLACED_REASON, at });
    }
    this.statements.saveGeneration.run({
      destination: issued.destination,
      subject: issued.subject,
      id: issued.id,
      generation: issued.generation,
      key: issued.key,
      tierMove: issued.tierMove ? JSON.stringify(issued.tierMove) : null,
      at,
    });
  }

  async queued(destination: Destination, afterSeq: number, limit: number): Promise<QueuedOperation[]> {
    return this.statements.queued
      .all(this.programId, destination, afterSeq, limit)
      .map((row) => ({ seq: row.seq, operation: JSON.parse(row.operation) as Operation }));
  }

  /** Outcomes settle their ledger rows and leave the queue, in one transaction. */
  async settle(entries: readonly number[], rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date, accounts: readonly AccountWrite[] = []): Promise<void> {
    this.db.transaction(() => {
      for (const seq of entries) this.statements.removeEntry.run(seq);
      this.ledger.recordOutcomes(rows, identities, now, accounts);
    })();
  }

  async waiting(destination: Destination): Promise<number> {
    return this.statements.waiting.get(this.programId, destination)?.n ?? 0;
  }

  async failQueued(destination: Destination, reason: string, runId: number, now: Date): Promise<number> {
    return this.db.transaction(() => {
      const changed = this.statements.failQueued.run({ programId: this.programId, destination, reason, runId, at: now.toISOString() }).changes;
      this.statements.dropQueued.run(this.programId, destination);
      return changed;
    })();
  }

  async reclaim(destination: Destination, reason: string, now: Date): Promise<number> {
    return this.db.transaction(() => {
      const changed = this.statements.reclaim.run({ programId: this.programId, destination, reason, at: now.toISOString() }).changes;
      this.statements.dropQueued.run(this.programId, destination);
      return changed;
    })();
  }

  /** Puts stored deliveries (failed, dead) back in the queue, behind what is there: `retry` and resumed runs. */
  async requeue(rows: readonly RequeuedDelivery[], runId: number, now: Date): Promise<void> {
    const at = now.toISOString();
    this.db.transaction(() => {
      for (const row of rows) {
        const payload = this.statements.requeueRow.get(row.destination, row.key)?.payload;
        if (payload) this.append(row.operation ?? (JSON.parse(payload) as Operation), runId, at);
      }
    })();
  }
}
