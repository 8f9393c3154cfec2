import type { ClientConfig } from 'pg';
import { UsageError } from '../../errors.js';
import { redactUrl } from '../../redact.js';

/**
 * A PostgreSQL `--state` URL (DESIGN.md §7) turned into what `pg` connects with. Everything but `?schema=` is
 * node-postgres's own URL syntax (host, port, database, user, password, `sslmode`), so TLS works as its docs say;
 * `schema` is ours: it keeps several programs or environments apart in one database.
 */
export interface PostgresTarget {
  /** The URL with its password masked: the only form that is ever printed. */
  location: string;
  /** The schema the state's tables live in (validated: it is spliced into SQL as an identifier). */
  schema: string;
  /** The password as given, so that error texts can be scrubbed of it even where no URL surrounds it. */
  password: string | undefined;
  /** Connection settings for every session this state opens; search_path points at the schema. */
  config(options?: { readOnly?: boolean }): ClientConfig;
}

/** Used when the URL names no schema: the state's tables stay out of the database's `public` schema. */
export const DEFAULT_SCHEMA = 'referral_sync';

/** A plain, unquoted identifier: no quoting rules to get wrong, and the same name in every tool. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

export function parsePostgresUrl(url: string): PostgresTarget {
  const location = redactUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--state ${location} is not a valid PostgreSQL URL.`, {
      hint: 'Use postgres://user:password@host:5432/database?schema=referral_sync (percent-encode special characters in the password).',
    });
  }
  const schema = parsed.searchParams.get('schema') ?? DEFAULT_SCHEMA;
  if (!SCHEMA_NAME.test(schema)) {
    throw new UsageError(`--state ${location} names the schema "${schema}", which is not a plain lower-case identifier.`, {
      hint: 'Use letters a-z, digits and underscores, starting with a letter, e.g. ?schema=referral_sync_prod.',
    });
  }
  parsed.searchParams.delete('schema');
  // `?options=` (libpq's: server settings such as `-c statement_timeout=60000`) is merged into ours rather than
  // left in the URL, where node-postgres would let it replace ours wholesale, search_path included.
  const userOptions = parsed.searchParams.get('options')?.trim();
  parsed.searchParams.delete('options');
  const connectionString = parsed.toString();
  const password = parsed.password ? safeDecode(parsed.password) : undefined;
  return {
    location,
    schema,
    password,
    config: (options = {}) => ({
      connectionString,
      // Set per session, so every statement of the state, reads included, finds its tables in the schema. A
      // read-only session makes every transaction of diff and status read-only: the server refuses any write.
      // Keepalives: the server ends the session of a runner whose machine vanished within about a minute, which
      // frees its advisory lock; without them that could take the OS default of two hours.
      // The user's options come between the keepalives (theirs may change them) and the schema and read-only
      // settings, which must hold: later settings win.
      options: `-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3${userOptions ? ` ${userOptions}` : ''} -c search_path=${schema}${options.readOnly ? ' -c default_transaction_read_only=on' : ''}`,
      application_name: 'referral-sync',
      connectionTimeoutMillis: 10_000,
    }),
  };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
