import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { tempDir } from './cli.js';

/**
 * The state backends a test can run against: SQLite always, PostgreSQL when REFERRAL_SYNC_TEST_POSTGRES names a
 * server (CI sets it in .ci/run; test/support/build.ts says once per run how to enable it when it is unset).
 */
export const POSTGRES_TEST_URL = process.env.REFERRAL_SYNC_TEST_POSTGRES || undefined;

export const POSTGRES_SKIP_NOTE = 'PostgreSQL state tests skipped: set REFERRAL_SYNC_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test to run them.';

export interface StateLocation {
  /** What --state takes: a file path, or a postgres:// URL with a schema of this test's own. */
  location: string;
  /** Removes the state (a PostgreSQL schema is dropped; a temporary SQLite file stays with its directory). */
  drop(): Promise<void>;
}

export interface Backend {
  name: 'sqlite' | 'postgres';
  /** A fresh, empty state location. */
  fresh(): Promise<StateLocation>;
}

const sqlite: Backend = {
  name: 'sqlite',
  fresh: async () => ({ location: join(tempDir(), 'state.db'), drop: async () => undefined }),
};

function postgres(url: string): Backend {
  return {
    name: 'postgres',
    fresh: async () => {
      const schema = `rs_test_${Math.random().toString(36).slice(2, 10)}`;
      const location = new URL(url);
      location.searchParams.set('schema', schema);
      return { location: location.toString(), drop: () => dropSchema(url, schema) };
    },
  };
}

/** SQLite, and PostgreSQL when the test server is configured. */
export function backends(): Backend[] {
  return POSTGRES_TEST_URL ? [sqlite, postgres(POSTGRES_TEST_URL)] : [sqlite];
}

/** The PostgreSQL backend alone (tests of what only it does); undefined when no test server is configured. */
export function postgresBackend(): Backend | undefined {
  return POSTGRES_TEST_URL ? postgres(POSTGRES_TEST_URL) : undefined;
}

/** Runs SQL against the test server's database directly (outside the state's own sessions). */
export async function withPostgres<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/** A delivery the state records as acknowledged by its destination. */
export interface AcknowledgedDelivery {
  destination: string;
  key: string;
  kind: string;
  userId: string;
}

/**
 * What a state holds about deliveries, read straight from its tables (not through the CLI, which may be mid-run or
 * killed): the deliveries acknowledged (status 'sent') and the status of the last run. Works on a state location of
 * either backend: a SQLite file is opened read-only, a PostgreSQL URL is read with search_path set to its `schema`.
 */
export async function readDeliveries(location: string): Promise<{ acknowledged: AcknowledgedDelivery[]; lastRunStatus: string | undefined }> {
  const deliveries = `SELECT destination, key, kind, user_id AS "userId" FROM deliveries WHERE status = 'sent'`;
  const lastRun = 'SELECT status FROM runs ORDER BY id DESC LIMIT 1';
  if (/^postgres(ql)?:\/\//i.test(location)) {
    const schema = new URL(location).searchParams.get('schema');
    if (!schema || !/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`readDeliveries: ${location} names no plain ?schema=`);
    return withPostgres(async (client) => {
      await client.query(`SET search_path TO ${schema}`);
      const acknowledged = (await client.query<AcknowledgedDelivery>(deliveries)).rows;
      const run = (await client.query<{ status: string }>(lastRun)).rows[0];
      return { acknowledged, lastRunStatus: run?.status };
    });
  }
  const db = new Database(location, { readonly: true, fileMustExist: true });
  try {
    const acknowledged = db.prepare(deliveries).all() as AcknowledgedDelivery[];
    const run = db.prepare(lastRun).get() as { status: string } | undefined;
    return { acknowledged, lastRunStatus: run?.status };
  } finally {
    db.close();
  }
}
