import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode, ReferralSyncError } from '../../src/errors.js';
import { openState } from '../../src/state/open.js';
import { PG_SCHEMA_VERSION } from '../../src/state/postgres/schema.js';
import type { StateStore } from '../../src/state/store.js';
import { POSTGRES_SKIP_NOTE, POSTGRES_TEST_URL, postgresBackend, withPostgres, type StateLocation } from '../support/backends.js';
import { runCli, tempDir } from '../support/cli.js';

const backend = postgresBackend();
const PASSWORD = 'hunter2-s3cret';

/** The test server's URL with another user, password, port, database or query. */
function variant(change: { user?: string; port?: string; database?: string; query?: Record<string, string> }): string {
  const url = new URL(POSTGRES_TEST_URL!);
  url.username = change.user ?? url.username;
  url.password = PASSWORD;
  if (change.port) url.port = change.port;
  if (change.database) url.pathname = `/${change.database}`;
  for (const [name, value] of Object.entries(change.query ?? {})) url.searchParams.set(name, value);
  return url.toString();
}

async function failure(location: string, mode: 'read' | 'write'): Promise<ReferralSyncError> {
  const error = await openState(location, { mode }).then(
    async (state) => {
      await state.close();
      throw new Error('expected the state not to open');
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ReferralSyncError);
  const typed = error as ReferralSyncError;
  expect(`${typed.message}\n${typed.hint ?? ''}`).not.toContain(PASSWORD);
  return typed;
}

const locations: StateLocation[] = [];
afterEach(async () => {
  for (const location of locations.splice(0)) await location.drop();
});

describe.skipIf(!backend)(`PostgreSQL state errors (${backend ? 'against REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, () => {
  it('says how to fix an unreachable server, an unknown database, an unknown user and a TLS mismatch (exit 69), password masked', async () => {
    const refused = await failure(variant({ port: '1' }), 'write');
    expect(refused).toMatchObject({ exitCode: ExitCode.unavailable, message: expect.stringMatching(/cannot be reached: .*ECONNREFUSED/) });
    expect(refused.message).toContain('postgres://***@127.0.0.1:1/');
    expect(await failure(variant({ database: 'rs_no_such_database' }), 'read')).toMatchObject({ exitCode: ExitCode.unavailable, hint: expect.stringContaining('Create the database') });
    expect(await failure(variant({ user: 'rs_no_such_user' }), 'write')).toMatchObject({ exitCode: ExitCode.unavailable, message: expect.stringContaining('refused the credentials') });
    expect(await failure(variant({ query: { sslmode: 'require' } }), 'write')).toMatchObject({ exitCode: ExitCode.unavailable, hint: expect.stringContaining('sslmode') });

    // The CLI's own output, both streams, never holds the password either.
    const cli = await runCli(['status', '--state', variant({ port: '1' })], { cwd: tempDir() });
    expect(cli.code).toBe(ExitCode.unavailable);
    expect(cli.stderr).toContain('postgres://***@127.0.0.1:1/');
    expect(`${cli.stdout}${cli.stderr}`).not.toContain(PASSWORD);
  });

  it('refuses a schema written by a newer version in one sentence (exit 65), and a schema holding other tables', async () => {
    const location = await backend!.fresh();
    locations.push(location);
    const schema = new URL(location.location).searchParams.get('schema')!;
    await (await openState(location.location, { mode: 'write' })).close();
    await withPostgres((client) => client.query(`UPDATE ${schema}.schema_version SET version = 99`));
    for (const mode of ['read', 'write'] as const) {
      const newer = await failure(location.location, mode);
      expect(newer).toMatchObject({ exitCode: ExitCode.dataError, hint: undefined });
      expect(newer.message).toMatch(new RegExp(`^The PostgreSQL state postgres://\\S+ was written by a newer referral-sync \\(schema 99, this one knows ${PG_SCHEMA_VERSION}\\); upgrade referral-sync to use it\\.$`));
    }
    const foreign = await backend!.fresh();
    locations.push(foreign);
    const other = new URL(foreign.location).searchParams.get('schema')!;
    await withPostgres((client) => client.query(`CREATE SCHEMA ${other}; CREATE TABLE ${other}.orders (id int)`));
    expect(await failure(foreign.location, 'write')).toMatchObject({ exitCode: ExitCode.dataError, message: expect.stringContaining('not a referral-sync state') });
  });

  it('says when the user may not create the schema (exit 73), and keeps diff and status sessions read-only', async () => {
    const role = `rs_test_role_${Math.random().toString(36).slice(2, 8)}`;
    await withPostgres((client) => client.query(`CREATE ROLE ${role} LOGIN`));
    try {
      const location = await backend!.fresh();
      locations.push(location);
      const url = new URL(location.location);
      url.username = role;
      url.password = PASSWORD;
      expect(await failure(url.toString(), 'write')).toMatchObject({ exitCode: ExitCode.stateUnwritable, message: expect.stringContaining('permission denied') });

      await (await openState(location.location, { mode: 'write' })).close();
      const reader = (await openState(location.location, { mode: 'read' })) as StateStore;
      try {
        await expect(reader.startRun('sync', 'p1', new Date())).rejects.toMatchObject({ exitCode: ExitCode.stateUnwritable });
      } finally {
        await reader.close();
      }
    } finally {
      await withPostgres((client) => client.query(`DROP ROLE ${role}`));
    }
  });

  it('stops writing (exit 69) once the session holding the lock is ended, so that it cannot overlap the next run', async () => {
    const location = await backend!.fresh();
    locations.push(location);
    const schema = new URL(location.location).searchParams.get('schema')!;
    const state = await openState(location.location, { mode: 'write' });
    try {
      await state.acquireLock('p1', 'sync', new Date());
      const ended = await withPostgres(async (client) => {
        const result = await client.query(
          `WITH k AS (SELECT hashtextextended($1, 0) AS key)
           SELECT pg_terminate_backend(pid) FROM pg_locks, k WHERE locktype = 'advisory' AND objsubid = 1 AND granted
             AND classid::text::bigint = ((k.key >> 32) & 4294967295) AND objid::text::bigint = (k.key & 4294967295)`,
          [`referral-sync ${schema} p1`],
        );
        return result.rowCount;
      });
      expect(ended).toBe(1);
      let refusal: unknown;
      for (let attempt = 0; refusal === undefined && attempt < 50; attempt += 1) {
        refusal = await state.queue('p1').enqueue([], 1, new Date()).then(() => undefined, (error: unknown) => error);
        if (refusal === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(refusal).toMatchObject({ exitCode: ExitCode.unavailable, message: expect.stringContaining('stopped writing rather than overlap another') });
    } finally {
      await state.close();
    }
  });

  it('reads a schema that does not exist as empty, and creates nothing', async () => {
    const location = await backend!.fresh();
    const schema = new URL(location.location).searchParams.get('schema')!;
    const reader = await openState(location.location, { mode: 'read' });
    expect((await reader.summary(5)).schemaVersion).toBe(0);
    await reader.close();
    const found = await withPostgres((client) => client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]));
    expect(found.rowCount).toBe(0);
  });
});
