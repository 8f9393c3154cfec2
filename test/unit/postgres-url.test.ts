import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { postgresError, scrub } from '../../src/state/postgres/errors.js';
import { DEFAULT_SCHEMA, isPostgresUrl, parsePostgresUrl } from '../../src/state/postgres/url.js';

const URL_WITH_SECRET = 'postgresql://sync:p%40ss%2Fw0rd@db.internal:6432/growth?schema=rs_prod&sslmode=verify-full';

describe('a PostgreSQL --state URL', () => {
  it('is told apart from a file path by its scheme only', () => {
    expect(['postgres://h/db', 'POSTGRESQL://h/db'].map(isPostgresUrl)).toEqual([true, true]);
    expect(['./postgres/state.db', 'state.db', 'file://x'].map(isPostgresUrl)).toEqual([false, false, false]);
  });

  it('keeps ?schema= for itself and hands the rest (sslmode included) to pg, with the schema on the search path', () => {
    const target = parsePostgresUrl(URL_WITH_SECRET);
    expect(target).toMatchObject({ schema: 'rs_prod', password: 'p@ss/w0rd', location: 'postgresql://***@db.internal:6432/growth?schema=rs_prod&sslmode=verify-full' });
    const config = target.config();
    expect(config.connectionString).toBe('postgresql://sync:p%40ss%2Fw0rd@db.internal:6432/growth?sslmode=verify-full');
    expect(config.options).toContain('-c search_path=rs_prod');
    expect(config.options).not.toContain('read_only');
    expect(target.config({ readOnly: true }).options).toContain('-c default_transaction_read_only=on');
    expect(parsePostgresUrl('postgres://h/db').schema).toBe(DEFAULT_SCHEMA);
  });

  it('refuses a schema name that would need quoting (exit 64), without the password', () => {
    for (const schema of ['Prod', 'a-b', 'x;drop', '1st']) {
      expect(() => parsePostgresUrl(`postgres://u:topsecret@h/db?schema=${encodeURIComponent(schema)}`)).toThrow(expect.objectContaining({ exitCode: ExitCode.usage }));
    }
    try {
      parsePostgresUrl('postgres://u:topsecret@h/db?schema=Prod');
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('topsecret');
    }
  });
});

describe('errors from pg, as the user reads them', () => {
  const target = parsePostgresUrl(URL_WITH_SECRET);
  const pgError = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});

  it.each([
    [pgError('connect ECONNREFUSED 10.0.0.5:6432', 'ECONNREFUSED'), ExitCode.unavailable, /cannot be reached: .*\(ECONNREFUSED\)/],
    [pgError('timeout expired'), ExitCode.unavailable, /cannot be reached: timeout expired/],
    [pgError('Connection terminated unexpectedly'), ExitCode.unavailable, /cannot be reached/],
    [pgError('password authentication failed for user "sync"', '28P01'), ExitCode.unavailable, /refused the credentials/],
    [pgError('database "growth" does not exist', '3D000'), ExitCode.unavailable, /database "growth" does not exist/],
    [pgError('self-signed certificate', 'DEPTH_ZERO_SELF_SIGNED_CERT'), ExitCode.unavailable, /over TLS/],
    [pgError('permission denied for database growth', '42501'), ExitCode.stateUnwritable, /permission denied/],
    [pgError('cannot execute INSERT in a read-only transaction', '25006'), ExitCode.stateUnwritable, /read-only transaction/],
  ])('%s → exit %i', (error, exitCode, message) => {
    const typed = postgresError(error, target);
    expect(typed.exitCode).toBe(exitCode);
    expect(typed.message).toMatch(message);
    expect(typed.message).toContain('postgresql://***@db.internal:6432/growth');
    expect(`${typed.message} ${typed.hint}`).not.toMatch(/p@ss|p%40ss/);
  });

  it('scrubs the password from any text, encoded or not, and from URLs in it', () => {
    expect(scrub('failed for p@ss/w0rd at postgres://sync:p%40ss%2Fw0rd@h/db and p%40ss%2Fw0rd.', 'p@ss/w0rd')).toBe('failed for *** at postgres://***@h/db and ***');
  });
});
