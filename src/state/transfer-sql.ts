import { TRANSFER_INTEGERS, TRANSFER_TABLES, type TransferRow, type TransferTable } from './store.js';

/** The SQL both backends run for `state copy`: `placeholder(n)` is `?` (SQLite) or `$n` (PostgreSQL), 1-based. */

/**
 * What a column an older schema does not have yet reads as: the value its migration gives existing rows
 * (identities.tier_changes DEFAULT 0; the rest are added nullable).
 */
const ADDED_LATER: Readonly<Record<string, string>> = { tier_changes: '0' };

/**
 * `available`: the table's columns in the source, when it may be an older schema read as it is (a state opened
 * read-only is not migrated): a column added since reads as its migration's default.
 */
export function exportSql(table: TransferTable, after: boolean, placeholder: (n: number) => string, available?: ReadonlySet<string>): string {
  const { key, columns } = TRANSFER_TABLES[table];
  const keyList = key.join(', ');
  const where = after ? ` WHERE (${keyList}) > (${key.map((_, index) => placeholder(index + 1)).join(', ')})` : '';
  const list = columns.map((column) => (!available || available.has(column) ? column : `${ADDED_LATER[column] ?? 'NULL'} AS ${column}`));
  return `SELECT ${list.join(', ')} FROM ${table}${where} ORDER BY ${keyList} LIMIT ${placeholder(after ? key.length + 1 : 1)}`;
}

export function exportValues(table: TransferTable, after: TransferRow | undefined, limit: number): (string | number | null)[] {
  return after ? [...TRANSFER_TABLES[table].key.map((column) => after[column] ?? null), limit] : [limit];
}

/** Rows as both backends hand them over: integers as numbers (PostgreSQL returns a bigint as text). */
export function normalizeRow(row: Record<string, unknown>): TransferRow {
  const out: TransferRow = {};
  for (const [column, value] of Object.entries(row)) {
    if (value === null || value === undefined) out[column] = null;
    else if (TRANSFER_INTEGERS.has(column)) out[column] = Number(value);
    else out[column] = typeof value === 'number' ? value : String(value);
  }
  return out;
}

export function rowValues(table: TransferTable, row: TransferRow): (string | number | null)[] {
  return TRANSFER_TABLES[table].columns.map((column) => row[column] ?? null);
}
