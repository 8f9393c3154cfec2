import type Database from 'better-sqlite3';
import type { AccountWrite, DeliveryRow, IdentityWrite } from '../store.js';

/**
 * The SQLite ledger's writes, synchronous so that callers can put them inside their own transaction (an
 * outcome is settled with its queue entry, DESIGN.md §8). Statements are prepared on first use: a state opened
 * read-only never prepares them.
 */
export class SqliteLedger {
  private statements: { identity: Database.Statement; account: Database.Statement; delivery: Database.Statement } | undefined;

  constructor(private readonly db: Database.Database) {}

  private get writes(): { identity: Database.Statement; account: Database.Statement; delivery: Database.Statement } {
    this.statements ??= {
      identity: this.db.prepare(
        `INSERT INTO identities (destination, user_id, traits, hash, updated_at, tier_changes) VALUES (?, ?, ?, ?, ?, COALESCE(?, 0))
         ON CONFLICT (destination, user_id) DO UPDATE SET traits = excluded.traits, hash = excluded.hash, updated_at = excluded.updated_at,
           tier_changes = COALESCE(?, identities.tier_changes)`,
      ),
      account: this.db.prepare(
        `INSERT INTO accounts (destination, account_id, traits, hash, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (destination, account_id) DO UPDATE SET traits = excluded.traits, hash = excluded.hash, updated_at = excluded.updated_at`,
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

  /** Records acknowledged account traits as the accounts' new diff baseline, in one transaction. */
  saveAccounts(writes: readonly AccountWrite[], now: Date): void {
    const upsert = this.writes.account;
    const at = now.toISOString();
    this.db.transaction(() => {
      for (const w of writes) upsert.run(w.destination, w.accountId, JSON.stringify(w.traits), w.hash, at);
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
  recordOutcomes(rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date, accounts: readonly AccountWrite[] = []): void {
    this.db.transaction(() => {
      this.recordDeliveries(rows, now);
      this.saveIdentities(identities, now);
      if (accounts.length > 0) this.saveAccounts(accounts, now);
    })();
  }
}
