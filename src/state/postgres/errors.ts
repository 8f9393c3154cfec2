import { DataError, ReferralSyncError, StateUnwritableError, TemporaryError, UnavailableError } from '../../errors.js';
import { redactUrls } from '../../redact.js';
import type { PostgresTarget } from './url.js';

/**
 * What went wrong talking to the PostgreSQL state, as an error with its exit code and the fix (DESIGN.md §9).
 * The password never appears: the location is the redacted URL, and every text from `pg` or the server is
 * scrubbed of URLs and of the password itself before it is shown.
 *
 * `phase`: `open` — while the state is opened (nothing was sent: the fix is usually in the URL or the server);
 * `run` — once it is open (a run may have sent things: the state is intact, and the advice is to run the same
 * command again once the cause is gone, never to start from a fresh schema, which would resend the whole history).
 */
export function postgresError(error: unknown, target: PostgresTarget, phase: 'open' | 'run' = 'open'): ReferralSyncError {
  if (error instanceof ReferralSyncError) return error;
  const { code, message } = describe(error);
  const reason = scrub(message, target.password);
  const where = `The PostgreSQL state ${target.location}`;
  const nothingSent = 'Nothing was sent.';
  const again =
    phase === 'run'
      ? 'Then run the same command again: the state is intact, and the run goes on where this one stopped, with the same ids (what was sent but not recorded is deduplicated by the destinations).'
      : `Then run the same command again. ${nothingSent}`;
  if (code === '28P01' || code === '28000') {
    // A server whose pg_hba.conf has only hostssl lines refuses an unencrypted connection with 28000 and a message
    // ending "no encryption" (libpq's default would have tried TLS first; node-postgres without ?sslmode= does not):
    // the fix is then sslmode, not the user or password.
    const tlsOnly = /\bno encryption\b/i.test(message)
      ? ' The server refused an unencrypted connection: if it accepts only TLS, add ?sslmode=verify-full (or sslmode=no-verify for a self-signed certificate) to --state.'
      : '';
    return new UnavailableError(`${where} refused the credentials: ${reason}.`, {
      hint: `Check the user and password in --state (or REFERRAL_SYNC_STATE), and the server's pg_hba.conf.${tlsOnly} ${nothingSent}`,
    });
  }
  if (code === '3D000') {
    return new UnavailableError(`${where} cannot be used: ${reason}.`, {
      hint: `Create the database first (createdb, or CREATE DATABASE), or fix its name in --state. ${nothingSent}`,
    });
  }
  if (code === '42501') {
    return new StateUnwritableError(`${where} cannot be created or written: ${reason} (permission denied).`, {
      hint: `Grant the user CREATE on the database (to create schema ${target.schema}) or on the schema, or point ?schema= at one it may write. ${nothingSent}`,
    });
  }
  if (code === '25006') {
    return new StateUnwritableError(`${where} cannot be written: ${reason}.`, {
      hint: `Point --state at the primary server, not a read-only replica. ${nothingSent}`,
    });
  }
  if (code === '53100') {
    return new StateUnwritableError(`${where} cannot be written: the server's disk is full (${reason}; 53100).`, {
      hint: `Free space on the database server's disk (or its tablespace). ${again}`,
    });
  }
  // A statement timeout (57014 "canceling statement due to statement timeout"), a lock timeout (55P03), another
  // session's lock on a table (55006), a deadlock or serialization failure retried in vain: the state is fine and
  // the same command later will do.
  if (code === '57014' || code === '55P03' || code === '55006' || code === '40P01' || code === '40001') {
    const timedOut = /statement timeout/i.test(message) ? 'a statement timed out' : /lock timeout/i.test(message) ? 'a lock wait timed out' : 'a statement could not go through';
    return new TemporaryError(`${where} did not complete a statement: ${timedOut} (${reason}; ${code}).`, {
      hint: `Another session may hold a lock on the state's tables, or the server is overloaded: let it finish (a larger statement_timeout in the URL's options, e.g. ?options=-c%20statement_timeout%3D60000, gives it longer). ${again}`,
    });
  }
  if (isTlsFailure(code, message)) {
    return new UnavailableError(`${where} cannot be reached over TLS: ${reason}.`, {
      hint: `Match ?sslmode= in --state to the server: sslmode=disable for a server without TLS, sslmode=no-verify for a self-signed certificate, or trust its CA with NODE_EXTRA_CA_CERTS. ${nothingSent}`,
    });
  }
  // pg says "timeout expired" or "Connection terminated …" without a code when a connection cannot be made or is
  // lost, and "Client has encountered a connection error and is not queryable" for a session that was lost before.
  // The server ends sessions with 57P01–57P05 (shutdown, crash, administrator, database dropped, idle timeout) and
  // 25P03 (idle in transaction too long).
  const lost =
    (code !== undefined && /^(E[A-Z]+|57P0[1-5]|25P03|08\d\d\d)$/.test(code)) ||
    (code === undefined && /timeout|Connection terminated|connection (is )?closed|not queryable|connection error/i.test(message));
  if (lost) {
    if (phase === 'run') {
      return new UnavailableError(`${where} lost its connection: ${reason}${code ? ` (${code})` : ''}.`, {
        hint: `Check that the server is up and reachable from here. ${again}`,
      });
    }
    return new UnavailableError(`${where} cannot be reached: ${reason}${code?.startsWith('E') ? ` (${code})` : ''}.`, {
      hint: `Check the host, port and database in --state (or REFERRAL_SYNC_STATE), and that PostgreSQL is running and accepts connections from here. ${nothingSent}`,
    });
  }
  if (code !== undefined && /^(XX|58|53)/.test(code)) {
    return new UnavailableError(`${where} failed: ${reason} (${code}).`, { hint: `The server reported an internal or resource error; wait until it is healthy. ${again}` });
  }
  return new DataError(`${where} answered with an error: ${reason}${code ? ` (${code})` : ''}.`, {
    hint: 'If the schema was changed by hand, restore it (or point ?schema= at the right one); otherwise report this as a bug.',
  });
}

function describe(error: unknown): { code: string | undefined; message: string } {
  if (error instanceof AggregateError && error.errors.length > 0) return describe(error.errors[0]);
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { code: typeof code === 'string' ? code : undefined, message: error.message || error.name };
  }
  return { code: undefined, message: String(error) };
}

const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|ERR_OSSL)/;

function isTlsFailure(code: string | undefined, message: string): boolean {
  return (code !== undefined && TLS_CODES.test(code)) || /\b(SSL|TLS)\b/i.test(message);
}

/** The message without URLs' credentials and without the password itself (percent-encoded or not). */
export function scrub(text: string, password: string | undefined): string {
  let clean = redactUrls(text);
  if (password) {
    for (const form of new Set([password, encodeURIComponent(password)])) clean = clean.split(form).join('***');
  }
  return clean.replace(/\.$/, '');
}
