import type { ClientBase } from 'pg';
import { issuedGeneration, ledgerKind, REPLACED_REASON, type GenerationRef, type IssuedGeneration, type Operation } from '../../plan/types.js';
import type { AccountWrite, DeliveryRow, IdentityWrite } from '../store.js';

/**
 * The PostgreSQL ledger's writes, batched: each call is one statement over arrays (unnest), whatever the number
 * of rows, and runs inside the caller's transaction (an outcome is settled with its queue entry, DESIGN.md §8).
 * Rows are sorted by key so that concurrent transactions lock rows in the same order and cannot deadlock.
 */

/** Writes ledger rows (pending before a send; sent/failed/dead after), as SQLite's upsert does one at a time. */
export async function upsertDeliveries(client: ClientBase, rows: readonly DeliveryRow[], at: string): Promise<void> {
  for (const round of rounds(rows, (row) => `${row.destination}\u0000${row.key}`)) {
    await client.query(
      `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, last_error, payload, run_id, created_at, updated_at)
       SELECT d, k, kind, u, s, a, e, p, r, $10, $10
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::int[]) AS t(d, k, kind, u, s, a, e, p, r)
       ON CONFLICT (destination, key) DO UPDATE SET
         status = excluded.status,
         attempts = deliveries.attempts + excluded.attempts,
         last_error = excluded.last_error,
         payload = CASE WHEN excluded.status = 'sent' THEN NULL ELSE COALESCE(excluded.payload, deliveries.payload) END,
         run_id = COALESCE(excluded.run_id, deliveries.run_id),
         updated_at = excluded.updated_at`,
      [
        round.map((r) => r.destination),
        round.map((r) => r.key),
        round.map((r) => r.kind),
        round.map((r) => r.userId),
        round.map((r) => r.status),
        round.map((r) => (r.status === 'pending' ? 0 : 1)),
        round.map((r) => r.error ?? null),
        round.map((r) => r.payload ?? null),
        round.map((r) => r.runId ?? null),
        at,
      ],
    );
  }
}

/** Records acknowledged traits as the new diff baseline; an undefined tier count keeps the stored one. */
export async function upsertIdentities(client: ClientBase, writes: readonly IdentityWrite[], at: string): Promise<void> {
  for (const round of rounds(writes, (w) => `${w.destination}\u0000${w.userId}`)) {
    for (const keepTiers of [false, true]) {
      const part = round.filter((w) => (w.tierChanges === undefined) === keepTiers);
      if (part.length === 0) continue;
      await client.query(
        `INSERT INTO identities (destination, user_id, traits, hash, updated_at, tier_changes)
         SELECT d, u, t, h, $5, c FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::int[]) AS x(d, u, t, h, c)
         ON CONFLICT (destination, user_id) DO UPDATE SET traits = excluded.traits, hash = excluded.hash, updated_at = excluded.updated_at
           ${keepTiers ? '' : ', tier_changes = excluded.tier_changes'}`,
        [part.map((w) => w.destination), part.map((w) => w.userId), part.map((w) => JSON.stringify(w.traits)), part.map((w) => w.hash), at, part.map((w) => w.tierChanges ?? 0)],
      );
    }
  }
}

/** Records acknowledged account traits as the accounts' new diff baseline. */
export async function upsertAccounts(client: ClientBase, writes: readonly AccountWrite[], at: string): Promise<void> {
  for (const round of rounds(writes, (w) => `${w.destination}\u0000${w.accountId}`)) {
    await client.query(
      `INSERT INTO accounts (destination, account_id, traits, hash, updated_at)
       SELECT d, a, t, h, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(d, a, t, h)
       ON CONFLICT (destination, account_id) DO UPDATE SET traits = excluded.traits, hash = excluded.hash, updated_at = excluded.updated_at`,
      [round.map((w) => w.destination), round.map((w) => w.accountId), round.map((w) => JSON.stringify(w.traits)), round.map((w) => w.hash), at],
    );
  }
}

/**
 * Appends operations to the queue with their ledger rows `pending`, skipping those already waiting there (a
 * killed run's leftovers planned again), in the order given: positions (seq) follow it.
 */
export async function appendOperations(client: ClientBase, programId: string, operations: readonly Operation[], runId: number, at: string): Promise<void> {
  if (operations.length === 0) return;
  const waiting = await client.query<{ destination: string; key: string }>(
    `SELECT d.destination, d.key FROM deliveries d JOIN unnest($1::text[], $2::text[]) AS r(destination, key) USING (destination, key)
     WHERE (d.status = 'pending' AND d.seq IS NOT NULL AND EXISTS (SELECT 1 FROM queue q WHERE q.seq = d.seq))
        -- Acknowledged earlier in this same run (a leftover sent first, then planned again): never queued twice.
        OR (d.status = 'sent' AND d.run_id = $3)`,
    [operations.map((o) => o.destination), operations.map((o) => o.key), runId],
  );
  const skip = new Set(waiting.rows.map((row) => `${row.destination}\u0000${row.key}`));
  const fresh: Operation[] = [];
  for (const operation of operations) {
    const id = `${operation.destination}\u0000${operation.key}`;
    if (skip.has(id)) continue;
    skip.add(id);
    fresh.push(operation);
  }
  if (fresh.length === 0) return;
  // `changes` only serve the diff display; the queue keeps what is needed to send and to record.
  const stored = fresh.map((operation) => JSON.stringify(operation.kind === 'identify' ? { ...operation, changes: [] } : operation));
  const inserted = await client.query<{ seq: string; destination: string; key: string }>(
    `INSERT INTO queue (program_id, destination, key, operation)
     SELECT $1, d, k, o FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(d, k, o, n) ORDER BY n
     RETURNING seq, destination, key`,
    [programId, fresh.map((o) => o.destination), fresh.map((o) => o.key), stored],
  );
  const seqOf = new Map(inserted.rows.map((row) => [`${row.destination}\u0000${row.key}`, row.seq]));
  const sorted = [...fresh].sort((a, b) => compare(`${a.destination}\u0000${a.key}`, `${b.destination}\u0000${b.key}`));
  await client.query(
    `INSERT INTO deliveries (destination, key, kind, user_id, status, attempts, run_id, program_id, seq, created_at, updated_at)
     SELECT d, k, kind, u, 'pending', 0, $5, $6, s, $8, $8 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $7::bigint[]) AS t(d, k, kind, u, s)
     ON CONFLICT (destination, key) DO UPDATE SET
       status = 'pending', run_id = excluded.run_id, program_id = excluded.program_id, seq = excluded.seq,
       last_error = NULL, updated_at = excluded.updated_at`,
    [
      sorted.map((o) => o.destination),
      sorted.map((o) => o.key),
      sorted.map(ledgerKind),
      sorted.map((o) => o.userId),
      runId,
      programId,
      sorted.map((o) => seqOf.get(`${o.destination}\u0000${o.key}`)!),
      at,
    ],
  );
  await recordGenerations(client, fresh, at);
}

/**
 * Operations with a generation become their person's or account's newest; each one they replace is never sent:
 * superseded if it was not settled, and out of the queue. An older one put back (by `retry`) changes nothing. As
 * SQLite's queue does one operation at a time (sqlite/queue.ts).
 */
async function recordGenerations(client: ClientBase, operations: readonly Operation[], at: string): Promise<void> {
  const newest = new Map<string, GenerationRef & IssuedGeneration>();
  for (const operation of operations) {
    const issued = issuedGeneration(operation);
    if (issued === undefined) continue;
    const id = `${issued.destination}\u0000${issued.subject}\u0000${issued.id}`;
    const earlier = newest.get(id);
    if (earlier === undefined || earlier.generation <= issued.generation) newest.set(id, issued);
  }
  if (newest.size === 0) return;
  const issued = [...newest.entries()].sort((a, b) => compare(a[0], b[0])).map(([, row]) => row);
  const current = await client.query<{ destination: string; subject: string; subject_id: string; generation: number; key: string }>(
    `SELECT g.destination, g.subject, g.subject_id, g.generation, g.key
     FROM generations g JOIN unnest($1::text[], $2::text[], $3::text[]) AS r(destination, subject, subject_id) USING (destination, subject, subject_id)`,
    [issued.map((g) => g.destination), issued.map((g) => g.subject), issued.map((g) => g.id)],
  );
  const stored = new Map(current.rows.map((row) => [`${row.destination}\u0000${row.subject}\u0000${row.subject_id}`, row]));
  const writes: (GenerationRef & IssuedGeneration)[] = [];
  const replaced: { destination: string; key: string }[] = [];
  for (const row of issued) {
    const before = stored.get(`${row.destination}\u0000${row.subject}\u0000${row.id}`);
    if (before !== undefined && before.generation > row.generation) continue;
    if (before !== undefined && before.key !== row.key) replaced.push({ destination: row.destination, key: before.key });
    writes.push(row);
  }
  if (replaced.length > 0) {
    const refs = [replaced.map((r) => r.destination), replaced.map((r) => r.key)];
    await client.query(
      `DELETE FROM queue q USING deliveries d, unnest($1::text[], $2::text[]) AS r(destination, key)
       WHERE d.destination = r.destination AND d.key = r.key AND d.status = 'pending' AND q.seq = d.seq`,
      refs,
    );
    await client.query(
      `UPDATE deliveries d SET status = 'superseded', last_error = $3, updated_at = $4
       FROM unnest($1::text[], $2::text[]) AS r(destination, key)
       WHERE d.destination = r.destination AND d.key = r.key AND d.status IN ('pending', 'failed')`,
      [...refs, REPLACED_REASON, at],
    );
  }
  if (writes.length === 0) return;
  await client.query(
    `INSERT INTO generations (destination, subject, subject_id, generation, key, tier_move, updated_at)
     SELECT d, s, i, g, k, m, $7 FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[]) AS t(d, s, i, g, k, m)
     ON CONFLICT (destination, subject, subject_id) DO UPDATE SET
       generation = excluded.generation, key = excluded.key, tier_move = excluded.tier_move, updated_at = excluded.updated_at`,
    [
      writes.map((w) => w.destination),
      writes.map((w) => w.subject),
      writes.map((w) => w.id),
      writes.map((w) => w.generation),
      writes.map((w) => w.key),
      writes.map((w) => (w.tierMove ? JSON.stringify(w.tierMove) : null)),
      at,
    ],
  );
}

/**
 * Splits rows into batches in which each key appears once, sorted by key: one upsert cannot touch a row twice,
 * and a later write of a key must land after an earlier one, as the one-at-a-time SQLite upserts do.
 */
function rounds<T>(rows: readonly T[], keyOf: (row: T) => string): T[][] {
  const batches: Map<string, T>[] = [];
  for (const row of rows) {
    const key = keyOf(row);
    let batch = batches.find((candidate, index) => !candidate.has(key) && batches.slice(index + 1).every((later) => !later.has(key)));
    if (!batch) batches.push((batch = new Map()));
    batch.set(key, row);
  }
  return batches.map((batch) => [...batch.entries()].sort((a, b) => compare(a[0], b[0])).map(([, row]) => row));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
