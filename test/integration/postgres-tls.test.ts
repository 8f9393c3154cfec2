import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { PROTOCOL_3_0, REFUSAL_CODE, selfSignedCertificate, startFakePostgresTls, type FakePostgresTls } from '../fakes/postgres-tls.js';
import { runCliInProcess, tempDir, type CliResult } from '../support/cli.js';

/**
 * The PostgreSQL state over TLS (`?sslmode=` as node-postgres reads it), against a fake server that answers
 * SSLRequest with 'S', completes a real TLS handshake with a throwaway self-signed certificate, reads the
 * StartupMessage over TLS and refuses it with a FATAL ErrorResponse. No real TLS PostgreSQL is needed.
 */

const PASSWORD = 'secretpw';
const made = selfSignedCertificate(tempDir('referral-sync-tls-'));
const certificate = 'skip' in made ? undefined : made;
// Skipped suites show only as a count: say why where it is seen.
if ('skip' in made) console.warn(`PostgreSQL TLS tests skipped: ${made.skip}.`);

let fake: FakePostgresTls;

function url(query: string): string {
  return `postgres://u:${PASSWORD}@127.0.0.1:${fake.port}/db?${query}&schema=s`;
}

async function status(query: string): Promise<CliResult> {
  const result = await runCliInProcess(['status', '--state', url(query)], { cwd: tempDir() });
  // Whatever happened, the password is in neither stream.
  expect(`${result.stdout}${result.stderr}`).not.toContain(PASSWORD);
  return result;
}

describe.skipIf(!certificate)(`PostgreSQL state over TLS (fake server)${'skip' in made ? `: skipped, ${made.skip}` : ''}`, () => {
  beforeAll(async () => {
    fake = await startFakePostgresTls(certificate!);
  });
  afterAll(() => fake.close());
  afterEach(() => {
    fake.sslRequests = 0;
    fake.handshakes = 0;
    fake.tlsErrors.length = 0;
    fake.startups.length = 0;
  });

  it('sslmode=no-verify: TLS handshake, StartupMessage over TLS, the server\'s refusal shown (exit 69)', async () => {
    const result = await status('sslmode=no-verify');
    expect(fake.sslRequests).toBe(1);
    expect(fake.handshakes).toBe(1);
    expect(fake.startups).toHaveLength(1);
    expect(fake.startups[0]).toMatchObject({ encrypted: true, protocol: PROTOCOL_3_0, parameters: { user: 'u', database: 'db' } });
    // The schema parameter is ours: it never reaches the server as a startup parameter.
    expect(fake.startups[0]!.parameters).not.toHaveProperty('schema');
    expect(result.code).toBe(ExitCode.unavailable);
    expect(result.stderr).toContain('refused the credentials');
    expect(result.stderr).toContain('no pg_hba.conf entry for host "127.0.0.1", user "u", database "db", SSL encryption');
    expect(result.stderr).toContain('postgres://***@127.0.0.1:');
    expect(result.stderr).not.toContain('cannot be reached over TLS');
    // Refused over TLS: the sslmode advice for an unencrypted refusal does not apply.
    expect(result.stderr).not.toContain('refused an unencrypted connection');
    expect(REFUSAL_CODE).toBe('28000');
  });

  it.each(['verify-full', 'require'])('sslmode=%s with a self-signed certificate: verification fails, nothing sent over it (exit 69, TLS hint)', async (mode) => {
    const result = await status(`sslmode=${mode}`);
    expect(fake.sslRequests).toBe(1);
    expect(fake.startups).toHaveLength(0);
    expect(result.code).toBe(ExitCode.unavailable);
    expect(result.stderr).toMatch(/cannot be reached over TLS: self[- ]signed certificate/);
    expect(result.stderr).toContain('sslmode=no-verify');
    expect(result.stderr).toContain('NODE_EXTRA_CA_CERTS');
  });

  it('sslmode=verify-full trusting the certificate through sslrootcert: verified handshake, StartupMessage over TLS', async () => {
    const result = await status(`sslmode=verify-full&sslrootcert=${encodeURIComponent(certificate!.certPath)}`);
    expect(fake.handshakes).toBe(1);
    expect(fake.startups).toEqual([expect.objectContaining({ encrypted: true, parameters: expect.objectContaining({ user: 'u', database: 'db' }) })]);
    expect(result.code).toBe(ExitCode.unavailable);
    expect(result.stderr).toContain('refused the credentials');
    expect(result.stderr).toContain('SSL encryption');
  });

  it('sslmode=disable: a plaintext StartupMessage and no SSLRequest', async () => {
    const result = await status('sslmode=disable');
    expect(fake.sslRequests).toBe(0);
    expect(fake.handshakes).toBe(0);
    expect(fake.startups).toEqual([expect.objectContaining({ encrypted: false, protocol: PROTOCOL_3_0, parameters: expect.objectContaining({ user: 'u', database: 'db' }) })]);
    expect(result.code).toBe(ExitCode.unavailable);
    expect(result.stderr).toContain('refused the credentials');
    expect(result.stderr).toContain('no encryption');
    // What a TLS-only server (hostssl lines only) says to a plaintext client: the hint points at sslmode too.
    expect(result.stderr).toContain('refused an unencrypted connection: if it accepts only TLS, add ?sslmode=verify-full');
  });
});
