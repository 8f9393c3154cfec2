import { existsSync } from 'node:fs';
import { guardState } from './guard.js';
import { isPostgresUrl, parsePostgresUrl } from './postgres/url.js';
import { openSqliteStateForWriting, openSqliteStateReadOnly, SqliteState } from './sqlite/store.js';
import { sqliteError } from './sqlite/errors.js';
import type { StateReader, StateStore } from './store.js';

/**
 * Where the backend is chosen (DESIGN.md §7), by the scheme of `--state` / REFERRAL_SYNC_STATE: a postgres:// or
 * postgresql:// URL is the PostgreSQL state; anything else is a SQLite file path.
 */

/** Throws the usage error (exit 64) for a location no backend can open (a malformed URL, a bad ?schema=); checked with the other flags. */
export function assertStateLocation(location: string): void {
  if (isPostgresUrl(location)) parsePostgresUrl(location);
}

/**
 * Opens the state. `read`: for `diff`, `status` and a first look; a state that does not exist reads as empty and
 * is not created, and nothing about an existing one changes. `write`: created and migrated if need be.
 * Whatever the store raises afterwards, from any of its methods, is typed with its exit code here, at the state's
 * boundary (guard.ts): a full disk, a lock held elsewhere, a lost connection, a statement timeout.
 */
export function openState(location: string, options: { mode: 'read' }): Promise<StateReader>;
export function openState(location: string, options: { mode: 'write' }): Promise<StateStore>;
export function openState(location: string, options: { mode: 'read' | 'write' }): Promise<StateReader>;
export async function openState(location: string, options: { mode: 'read' | 'write' }): Promise<StateReader | StateStore> {
  if (isPostgresUrl(location)) {
    // Loaded only when asked for: a SQLite run never pays for loading pg.
    const [postgres, { postgresError }] = await Promise.all([import('./postgres/store.js'), import('./postgres/errors.js')]);
    const target = parsePostgresUrl(location);
    const store = options.mode === 'read' ? await postgres.openPostgresStateReadOnly(location) : await postgres.openPostgresStateForWriting(location);
    return guardState(store, (error) => postgresError(error, target, 'run'));
  }
  const store = options.mode === 'read' ? openSqliteStateReadOnly(location) : openSqliteStateForWriting(location);
  return guardState(store, (error) => {
    if (store instanceof SqliteState) store.onFault(error);
    return sqliteError(error, location, 'run');
  });
}

/** Whether anything is there yet (without creating it): `unlock` and `status` say so rather than create a state. */
export async function stateExists(location: string): Promise<boolean> {
  if (isPostgresUrl(location)) return (await import('./postgres/store.js')).postgresStateExists(location);
  return existsSync(location);
}
