import { DataError, LockedError, UsageError } from '../errors.js';
import { describeHolder, lockHolderState } from './locks.js';
import { openState, stateExists } from './open.js';
import { isStateTransfer, type StateReader, TRANSFER_TABLES, type StateTransfer, type TransferCounts, type TransferTable } from './store.js';

/** Rows per page: one read from the source, one transaction in the target; never the whole state in memory. */
export const COPY_PAGE = 1000;

export interface CopyResult {
  from: string;
  to: string;
  source: TransferCounts;
  target: TransferCounts;
  /** Tables (and ledger destination/status pairs) whose counts differ after the copy. */
  mismatches: string[];
}

/**
 * `state copy`: every table but the lock, page by page in key order (queue seq and run ids kept, so ledger rows
 * still point at their queue entries), into a target that must be empty; the source is opened read-only.
 */
export async function copyState(from: string, to: string): Promise<CopyResult> {
  if (!(await stateExists(from))) {
    throw new UsageError(`There is no state at ${from} to copy.`, { hint: 'Check --from: a SQLite file path or a postgres:// URL with ?schema=.' });
  }
  const source = await openState(from, { mode: 'read' });
  try {
    if (!isStateTransfer(source)) throw new UsageError(`There is no state at ${source.location} to copy.`, { hint: 'Check --from: a SQLite file path or a postgres:// URL with ?schema=.' });
    await assertNoLiveLock(source, 'source');
    await assertEmptyTarget(to);
    const target = await openState(to, { mode: 'write' });
    try {
      if (!isStateTransfer(target)) throw new DataError(`The state at ${target.location} cannot be written by state copy.`);
      for (const table of Object.keys(TRANSFER_TABLES) as TransferTable[]) await copyTable(source, target, table);
      const sourceCounts = await source.transferCounts();
      const targetCounts = await target.transferCounts();
      return { from: source.location, to: target.location, source: sourceCounts, target: targetCounts, mismatches: mismatches(sourceCounts, targetCounts) };
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/**
 * Exit 75 while a run holds a lock on the state (one on another machine, which cannot be checked from here,
 * counts as held): a copy would miss what that run writes after it, or mix with it in the target.
 */
async function assertNoLiveLock(state: StateReader, role: 'source' | 'target'): Promise<void> {
  for (const lock of await state.locks()) {
    const holder = lockHolderState(lock);
    if (holder === 'gone') continue;
    throw new LockedError(`A run ${holder === 'alive' ? 'still holds' : 'on another machine holds'} the lock on program ${lock.programId} in the ${role} ${state.location} (${describeHolder(lock)}).`, {
      hint:
        holder === 'alive'
          ? 'Wait for it to finish, then copy again.'
          : `Wait for it to finish, then copy again; if that run is gone for good, free its lock first: npx referral-sync unlock --state <${role}> --campaign ${lock.programId} --force`,
    });
  }
}

async function assertEmptyTarget(to: string): Promise<void> {
  if (!(await stateExists(to))) return;
  const existing = await openState(to, { mode: 'read' });
  try {
    if (!isStateTransfer(existing)) return;
    await assertNoLiveLock(existing, 'target');
    const counts = await existing.transferCounts();
    if (Object.values(counts.tables).some((count) => count > 0) || (await existing.locks()).length > 0) {
      throw new UsageError(`The target ${existing.location} already holds a state; state copy writes only into an empty one.`, {
        hint: 'Point --to at a new file, or at a PostgreSQL schema that is empty or does not exist yet (?schema=).',
      });
    }
  } finally {
    await existing.close();
  }
}

async function copyTable(source: StateTransfer, target: StateTransfer, table: TransferTable): Promise<void> {
  let after;
  for (;;) {
    const rows = await source.exportRows(table, after, COPY_PAGE);
    if (rows.length === 0) return;
    await target.importRows(table, rows);
    if (rows.length < COPY_PAGE) return;
    after = rows[rows.length - 1];
  }
}

function mismatches(source: TransferCounts, target: TransferCounts): string[] {
  const out: string[] = [];
  for (const table of Object.keys(TRANSFER_TABLES) as TransferTable[]) {
    if (source.tables[table] !== target.tables[table]) out.push(`${table}: ${source.tables[table]} in the source, ${target.tables[table]} in the target`);
  }
  const key = (row: { destination: string; status: string }): string => `${row.destination}/${row.status}`;
  const targetByKey = new Map(target.deliveries.map((row) => [key(row), row.count]));
  const sourceByKey = new Map(source.deliveries.map((row) => [key(row), row.count]));
  for (const name of new Set([...sourceByKey.keys(), ...targetByKey.keys()])) {
    const a = sourceByKey.get(name) ?? 0;
    const b = targetByKey.get(name) ?? 0;
    if (a !== b) out.push(`deliveries ${name}: ${a} in the source, ${b} in the target`);
  }
  return out;
}
