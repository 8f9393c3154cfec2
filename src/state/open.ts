import { existsSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { openSqliteStateForWriting, openSqliteStateReadOnly } from './sqlite.js';
import type { StateReader, StateStore } from './store.js';

/**
 * Where the backend is chosen (DESIGN.md §7): `--state` is a SQLite file path today. A PostgreSQL URL is
 * refused here until that backend exists; it becomes one more branch of `openState` and `stateExists`.
 */

/** Throws the usage error (exit 64) for a location no backend of this version can open; checked with the other flags. */
export function assertStateLocation(location: string): void {
  if (isPostgresUrl(location)) {
    throw new UsageError('PostgreSQL state is not available in this version of referral-sync; use a SQLite file path for --state.');
  }
}

/**
 * Opens the state. `read`: for `diff`, `status` and a first look; a state that does not exist reads as empty and
 * is not created, and nothing about an existing one changes. `write`: created and migrated if need be.
 */
export function openState(location: string, options: { mode: 'read' }): Promise<StateReader>;
export function openState(location: string, options: { mode: 'write' }): Promise<StateStore>;
export function openState(location: string, options: { mode: 'read' | 'write' }): Promise<StateReader>;
export async function openState(location: string, options: { mode: 'read' | 'write' }): Promise<StateReader | StateStore> {
  assertStateLocation(location);
  return options.mode === 'read' ? openSqliteStateReadOnly(location) : openSqliteStateForWriting(location);
}

/** Whether anything is there yet (without creating it): `unlock` and `status` say so rather than create a state. */
export async function stateExists(location: string): Promise<boolean> {
  assertStateLocation(location);
  return existsSync(location);
}

function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}
