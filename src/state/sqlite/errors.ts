import { DataError, ReferralSyncError, StateUnwritableError, TemporaryError, UnavailableError } from '../../errors.js';

/**
 * What went wrong with the SQLite state, as an error with its exit code and the safe next step (DESIGN.md §9).
 * Every failure better-sqlite3 or the file system raises becomes one of these, whenever it happens: while the
 * state is created, opened, or written mid-run (open.ts wraps the store in guardState with it). A fault of the
 * environment (a full disk, a lock held elsewhere, permissions) is never reported as a bug, and the advice never
 * is to start from a fresh state when the one there is intact: that would send the whole history again.
 *
 * `phase`: `create` — no state was there (a new path); `open` — an existing state, before anything was sent;
 * `run` — mid-run, after the run may have sent things (what it recorded is kept).
 */
export type SqlitePhase = 'create' | 'open' | 'run';

/** File-system codes and SQLite codes that mean "cannot write here", as opposed to "this is not a state". */
const WRITE_FAILURE_CODES = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'EEXIST', 'ENOENT', 'ENOSPC', 'EDQUOT', 'ELOOP', 'ENAMETOOLONG', 'EIO']);

export function isWriteFailure(error: unknown): boolean {
  const code = codeOf(error);
  if (code === undefined) return false;
  if (WRITE_FAILURE_CODES.has(code)) return true;
  return /^SQLITE_(READONLY|CANTOPEN|PERM|FULL|IOERR)/.test(code);
}

const WRITE_FAILURE_REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EEXIST: 'a part of the path is a file, not a directory',
  EISDIR: 'it is a directory',
  ENOENT: 'a part of the path does not exist and cannot be created',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exhausted',
  ENAMETOOLONG: 'the path is too long',
  ELOOP: 'the path loops through symbolic links',
  EIO: 'the disk reported an I/O error',
  SQLITE_READONLY: 'it cannot be written (read-only file, directory or file system)',
  SQLITE_CANTOPEN: 'it cannot be opened for writing, or its directory cannot hold the journal beside it',
  SQLITE_PERM: 'permission denied',
  SQLITE_FULL: 'the disk is full',
  SQLITE_IOERR: 'the disk reported an I/O error',
};

/** Codes that mean the disk (or quota) has no room: the fix is space, wherever the state is. */
const NO_ROOM = /^(ENOSPC|EDQUOT|SQLITE_FULL)/;

/**
 * Any error from the SQLite state, typed. Our own errors pass through; an error that carries no code of SQLite or
 * of the system (a TypeError in our code) is a bug and is left as it is, so that it is reported as one (exit 70).
 */
export function sqliteError(error: unknown, path: string, phase: SqlitePhase): unknown {
  if (error instanceof ReferralSyncError) return error;
  const code = codeOf(error);
  if (code === undefined) return error;
  if (/^SQLITE_(BUSY|LOCKED|PROTOCOL)/.test(code)) return busy(path, error, phase);
  if (isWriteFailure(error)) return unwritable(path, error, phase);
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return corrupt(path, error);
  if (/^SQLITE_NOMEM/.test(code) || code === 'ENOMEM') {
    return new UnavailableError(`The state ${path} could not be used: the system ran out of memory (${code}).`, { hint: `${again(phase)}`, cause: error });
  }
  if (/^SQLITE_/.test(code)) {
    // SQLITE_ERROR and the like: a table or column missing, a constraint broken. Not a fault of the disk.
    return new DataError(`The state ${path} answered with an error: ${messageOf(error)} (${code}).`, {
      hint: 'If the file was changed by hand or by another tool, restore it from a backup; otherwise report this as a bug.',
      cause: error,
    });
  }
  // A system error (ENOSPC, EACCES …) from a file operation around the database.
  return unwritable(path, error, phase);
}

/** The same command again: what to do once the cause is gone. */
function again(phase: SqlitePhase): string {
  return phase === 'run'
    ? 'Then run the same command again: the state is intact, and the run goes on where this one stopped, with the same ids (what was sent but not recorded is deduplicated by the destinations).'
    : 'Then run the same command again. Nothing was sent.';
}

function busy(path: string, error: unknown, phase: SqlitePhase): TemporaryError {
  return new TemporaryError(`The state ${path} is locked by another process past the wait allowed (${codeOf(error)}).`, {
    hint: `Another program holds a write transaction on it (another referral-sync run of another program, a backup, a sqlite3 shell): let it finish. ${again(phase)}`,
    cause: error,
  });
}

export function unwritable(path: string, error: unknown, phase: SqlitePhase): StateUnwritableError {
  const raw = codeOf(error) ?? '';
  // mkdir -p says EEXIST when a part of the path is a file: the same fault as ENOTDIR, named as people know it.
  const code = raw === 'EEXIST' ? 'ENOTDIR' : raw;
  const base = Object.keys(WRITE_FAILURE_REASONS).find((known) => code === known || code.startsWith(`${known}_`));
  const reason = base ? WRITE_FAILURE_REASONS[base] : messageOf(error);
  const message = `The state ${path} cannot be created or written: ${reason} (${code || 'error'}).`;
  if (NO_ROOM.test(code)) {
    // Never "point --state elsewhere": a fresh state would send the whole history again.
    return new StateUnwritableError(message, { hint: `Free space on the disk that holds it. ${again(phase)}`, cause: error });
  }
  if (phase === 'create') {
    return new StateUnwritableError(message, {
      hint: 'Point --state (or REFERRAL_SYNC_STATE) at a file in a writable directory, e.g. --state ./.referral-sync/state.db. Nothing was sent.',
      cause: error,
    });
  }
  return new StateUnwritableError(message, {
    hint: `Make the file, its directory (SQLite writes a journal beside it) and its file system writable for this user again. ${again(phase)}`,
    cause: error,
  });
}

export function corrupt(path: string, error: unknown): DataError {
  return new DataError(`State file ${path} cannot be read (${messageOf(error)}); it was left untouched.`, {
    hint: 'Move it aside to start from an empty state, or restore a backup; --state picks another file.',
    cause: error,
  });
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && code !== '' ? code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
