import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { ExitCode, ReferralSyncError } from '../../src/errors.js';
import { guardState } from '../../src/state/guard.js';
import { postgresError } from '../../src/state/postgres/errors.js';
import { parsePostgresUrl } from '../../src/state/postgres/url.js';
import { sqliteError } from '../../src/state/sqlite/errors.js';

/**
 * Guarantee 5 of issue 17, at the state's boundary: every error the drivers or the system raise becomes a typed
 * error with its documented exit code, and once a run is under way the advice is to run the same command again on
 * the intact state, never to start from a fresh one (that would send the whole history again). The fault matrix
 * (test/integration/state-faults.test.ts) drives the faults that can be arranged; this table covers every class.
 */

const PATH = '/var/lib/referral-sync/state.db';
const sqlite = (code: string, message: string): Error => new Database.SqliteError(message, code);
const system = (code: string, message: string): Error => Object.assign(new Error(message), { code });
const TARGET = parsePostgresUrl('postgresql://sync:s3cret@db.internal:5432/growth?schema=referral_sync');
const server = (code: string, message: string): Error => Object.assign(new Error(message), { code, severity: 'ERROR' });
const driver = (message: string, code?: string): Error => Object.assign(new Error(message), code ? { code } : {});

/** Advice that would start over (a fresh state resends the whole history) or blame the code for the environment. */
const NEVER_AFTER_A_FAULT = /fresh|empty state|another file|move it aside|point --state|report this as a bug/i;

describe('SQLite state errors, mid-run', () => {
  it.each([
    [sqlite('SQLITE_BUSY', 'database is locked'), ExitCode.locked, /is locked by another process past the wait allowed \(SQLITE_BUSY\)/],
    [sqlite('SQLITE_BUSY_SNAPSHOT', 'database is locked'), ExitCode.locked, /locked by another process/],
    [sqlite('SQLITE_LOCKED', 'database table is locked'), ExitCode.locked, /locked by another process/],
    [sqlite('SQLITE_FULL', 'database or disk is full'), ExitCode.stateUnwritable, /cannot be created or written: the disk is full \(SQLITE_FULL\)/],
    [system('ENOSPC', 'no space left on device, write'), ExitCode.stateUnwritable, /the disk is full \(ENOSPC\)/],
    [system('EDQUOT', 'disk quota exceeded'), ExitCode.stateUnwritable, /quota is exhausted/],
    [sqlite('SQLITE_IOERR_WRITE', 'disk I/O error'), ExitCode.stateUnwritable, /the disk reported an I\/O error \(SQLITE_IOERR_WRITE\)/],
    [sqlite('SQLITE_IOERR_FSYNC', 'disk I/O error'), ExitCode.stateUnwritable, /I\/O error/],
    [sqlite('SQLITE_READONLY_DBMOVED', 'attempt to write a readonly database'), ExitCode.stateUnwritable, /cannot be written \(read-only/],
    [sqlite('SQLITE_CANTOPEN', 'unable to open database file'), ExitCode.stateUnwritable, /cannot be opened for writing/],
    [system('EACCES', 'permission denied'), ExitCode.stateUnwritable, /permission denied \(EACCES\)/],
    [system('EROFS', 'read-only file system'), ExitCode.stateUnwritable, /read-only \(EROFS\)/],
    [sqlite('SQLITE_NOMEM', 'out of memory'), ExitCode.unavailable, /ran out of memory/],
  ])('%s → exit %i, with the advice to run again on the intact state', (error, exitCode, message) => {
    const typed = sqliteError(error, PATH, 'run') as ReferralSyncError;
    expect(typed).toBeInstanceOf(ReferralSyncError);
    expect(typed.exitCode).toBe(exitCode);
    expect(typed.message).toMatch(message);
    expect(typed.message).toContain(PATH);
    expect(typed.hint).toMatch(/Then run the same command again: the state is intact/);
    expect(`${typed.message} ${typed.hint}`).not.toMatch(NEVER_AFTER_A_FAULT);
  });

  it('a full disk is never "point --state elsewhere", not even while the state is opened', () => {
    for (const phase of ['create', 'open', 'run'] as const) {
      const typed = sqliteError(sqlite('SQLITE_FULL', 'database or disk is full'), PATH, phase) as ReferralSyncError;
      expect(typed.exitCode).toBe(ExitCode.stateUnwritable);
      expect(typed.hint).toMatch(/^Free space on the disk that holds it\. Then run the same command again/);
    }
  });

  it('a damaged file is bad data (65); a statement the file refuses is data too; our own errors and bugs pass through', () => {
    expect((sqliteError(sqlite('SQLITE_CORRUPT', 'database disk image is malformed'), PATH, 'run') as ReferralSyncError).exitCode).toBe(ExitCode.dataError);
    expect((sqliteError(sqlite('SQLITE_NOTADB', 'file is not a database'), PATH, 'run') as ReferralSyncError).exitCode).toBe(ExitCode.dataError);
    expect((sqliteError(sqlite('SQLITE_ERROR', 'no such table: queue'), PATH, 'run') as ReferralSyncError).exitCode).toBe(ExitCode.dataError);
    const ours = new ReferralSyncError('already typed', ExitCode.locked);
    expect(sqliteError(ours, PATH, 'run')).toBe(ours);
    // A TypeError from our own code is a bug: it stays one (exit 70 with its stack), not dressed up as data.
    const bug = new TypeError("Cannot read properties of undefined (reading 'seq')");
    expect(sqliteError(bug, PATH, 'run')).toBe(bug);
  });
});

describe('PostgreSQL state errors, mid-run', () => {
  it.each([
    [driver('Connection terminated unexpectedly'), ExitCode.unavailable, /lost its connection: Connection terminated unexpectedly/],
    [driver('read ECONNRESET', 'ECONNRESET'), ExitCode.unavailable, /lost its connection: read ECONNRESET \(ECONNRESET\)/],
    [driver('Client has encountered a connection error and is not queryable'), ExitCode.unavailable, /lost its connection/],
    [driver('connect ECONNREFUSED 10.0.0.5:5432', 'ECONNREFUSED'), ExitCode.unavailable, /lost its connection/],
    [server('57P01', 'terminating connection due to administrator command'), ExitCode.unavailable, /lost its connection: terminating connection .*\(57P01\)/],
    [server('57P02', 'terminating connection because of crash of another server process'), ExitCode.unavailable, /lost its connection/],
    [server('57P03', 'the database system is starting up'), ExitCode.unavailable, /lost its connection/],
    [server('25P03', 'terminating connection due to idle-in-transaction timeout'), ExitCode.unavailable, /lost its connection/],
    [server('08006', 'connection failure'), ExitCode.unavailable, /lost its connection/],
    [server('57014', 'canceling statement due to statement timeout'), ExitCode.locked, /did not complete a statement: a statement timed out .*57014/],
    [server('55P03', 'canceling statement due to lock timeout'), ExitCode.locked, /a lock wait timed out .*55P03/],
    [server('40P01', 'deadlock detected'), ExitCode.locked, /could not go through .*40P01/],
    [server('40001', 'could not serialize access due to concurrent update'), ExitCode.locked, /40001/],
    [server('53100', 'could not extend file "base/16386/18419": No space left on device'), ExitCode.stateUnwritable, /cannot be written: the server's disk is full .*53100/],
    [server('53200', 'out of memory'), ExitCode.unavailable, /failed: out of memory \(53200\)/],
    [server('53300', 'sorry, too many clients already'), ExitCode.unavailable, /53300/],
    [server('58030', 'could not write to file "pg_wal/xlogtemp.123": I/O error'), ExitCode.unavailable, /58030/],
    [server('XX000', 'internal error'), ExitCode.unavailable, /XX000/],
  ])('%s → exit %i, with the advice to run again on the intact state', (error, exitCode, message) => {
    const typed = postgresError(error, TARGET, 'run');
    expect(typed.exitCode).toBe(exitCode);
    expect(typed.message).toMatch(message);
    expect(typed.message).toContain('postgresql://***@db.internal:5432/growth');
    expect(typed.hint).toMatch(/Then run the same command again: the state is intact/);
    expect(`${typed.message} ${typed.hint}`).not.toMatch(NEVER_AFTER_A_FAULT);
    expect(`${typed.message} ${typed.hint}`).not.toContain('s3cret');
  });

  it('while the state is opened, nothing was sent and the fix is in the URL or the server', () => {
    const typed = postgresError(driver('connect ECONNREFUSED 10.0.0.5:5432', 'ECONNREFUSED'), TARGET, 'open');
    expect(typed.message).toMatch(/cannot be reached: .*\(ECONNREFUSED\)/);
    expect(typed.hint).toMatch(/Check the host, port and database in --state .* Nothing was sent\.$/);
  });
});

describe('guardState: the boundary holds for every method, whatever it returns', () => {
  class Store {
    readonly location = 'here';
    syncRead(): never {
      throw sqlite('SQLITE_IOERR_READ', 'disk I/O error');
    }
    async write(): Promise<never> {
      throw sqlite('SQLITE_FULL', 'database or disk is full');
    }
    async *rows(): AsyncGenerator<number> {
      yield 1;
      throw sqlite('SQLITE_BUSY', 'database is locked');
    }
    queue(): { settle(): Promise<never>; lastSeq(): number } {
      return {
        settle: async () => {
          throw sqlite('SQLITE_FULL', 'database or disk is full');
        },
        lastSeq: () => 7,
      };
    }
    self(): this {
      return this;
    }
    summary(): { runs: string[] } {
      return this.data;
    }
    readonly data = { runs: ['running'] };
    bug(): never {
      throw new TypeError('a bug');
    }
  }
  const store = guardState(new Store(), (error) => sqliteError(error, PATH, 'run'));

  it('a sync throw, a rejection, a failing page of a generator and a returned service are all typed', async () => {
    expect(() => store.syncRead()).toThrow(expect.objectContaining({ exitCode: ExitCode.stateUnwritable }) as Error);
    await expect(store.write()).rejects.toMatchObject({ exitCode: ExitCode.stateUnwritable, message: expect.stringContaining('the disk is full') as string });
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const row of store.rows()) seen.push(row);
      })(),
    ).rejects.toMatchObject({ exitCode: ExitCode.locked });
    expect(seen).toEqual([1]);
    await expect(store.queue().settle()).rejects.toMatchObject({ exitCode: ExitCode.stateUnwritable });
    expect(store.queue().lastSeq()).toBe(7);
    await expect(store.self().write()).rejects.toBeInstanceOf(ReferralSyncError);
  });

  it('leaves data and properties as they are, and a bug a bug', () => {
    expect(store.location).toBe('here');
    expect(store.summary()).toEqual({ runs: ['running'] });
    expect(() => store.bug()).toThrow(TypeError);
  });
});
