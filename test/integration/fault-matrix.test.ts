import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pLimit from 'p-limit';
import { describe, expect, it, vi, type TestContext } from 'vitest';
import { FakeCello } from '../fakes/cello.js';
import { FakeCustomerio } from '../fakes/customerio.js';
import { closedPortUrl, FAULTS, FaultProxy, type Fault, type FaultRule } from '../fakes/faults.js';
import { FakeGrowsurf, generateGrowsurfProgram } from '../fakes/growsurf.js';
import { FakeSegment } from '../fakes/segment.js';
import { backends, withPostgres, type Backend } from '../support/backends.js';
import { seedCello, writeCelloProgram } from '../support/cello-program.js';
import { BIN, capturingStreams, tempDir, writeCsv, type CliResult } from '../support/cli.js';
import { SkipClock } from '../support/clock.js';
import { readPlan, type PlanLine } from '../support/plan.js';
import { CIO_KEY, CIO_SITE, SEGMENT_KEY } from '../support/services.js';

/**
 * The HTTP fault matrix (issue 17): every service the CLI talks to (Segment, Customer.io Track v1 and v2, the
 * GrowSurf API, Cello's lookups) × the HTTP answer space and the connection's faults (ROWS) × both state backends,
 * each cell held to the same invariants:
 *
 *   1. the documented exit code (docs/commands.md, "Exit codes");
 *   2. every loop ends: the faulted run stays within the world's request budget;
 *   3. nothing recorded `sent` that the service did not accept (the ledger against what the fake recorded);
 *   4. every run record finalized: none left `running`;
 *   5. no stack trace and no "this is a bug" on stderr, a failure said in an `error:` line, and its cause named
 *      (the status the service answered, in the error or in the reason kept for each delivery not through);
 *   6. then, the service healthy again, `sync` (and `retry`, for what ended `dead`: only `retry` resends it)
 *      delivers every planned id exactly once: the ids the fake accepted are the plan's, with the plan's content,
 *      and an id arrives twice only if it was never acknowledged before (a resend of what was in flight, which
 *      the service dedupes), never twice within the healthy run.
 *
 * The fault is injected by a FaultProxy (test/fakes/faults.ts) between the CLI and the fake, on the requests that
 * carry the data (deliveries; GrowSurf's participant pages; Cello's lookups), for the whole faulted run (`always`)
 * or for its first such request only (`once`: the retries must get past it, exit 0). A second, smaller table runs
 * `check` with every request of a destination faulted: it must not call a sick service reachable.
 *
 * A row a service cannot have is marked `na` with the reason, in the table. PostgreSQL runs a representative
 * subset (onPostgres, below). The cells run side by side, in this process (runInProcess): about 150 of them,
 * each a few runs of the CLI, in 15-25 s.
 */

/** The HTTP timeout of the source client, shortened for this file only (see the vi.mock below). */
const SOURCE_TIMEOUT_MS = 500;
/**
 * Far slower than SOURCE_TIMEOUT_MS between bytes, so that a body timeout must end it: undici's timers tick every
 * half second (a 500 ms timeout fires 0.5 to 1.5 s after the last byte), and a loaded machine runs them late.
 */
const TRICKLE_MS = 3_000;
/** The destinations' documented bound on a request that never ends (`--stall-timeout`, 1 s at least). */
const STALL_SLOW = '1s';
/** The faults that never answer in time: the stall bound (destinations) or the HTTP timeout (sources) ends them. */
const SLOW: Record<string, true> = { hang: true, trickle: true };

/**
 * Test seam, for this file only: the sources' HTTP client (src/http/client.ts) waits 30 s for headers and between
 * body bytes, and no flag or variable shortens it. Pools built while a run of this file asks for it (a hung or
 * trickling GrowSurf/Cello cell) get SOURCE_TIMEOUT_MS instead; the timeout, retry and error paths are the real ones.
 * (The destinations need no seam: their hung requests end at `--stall-timeout`.)
 */
const shortTimeouts = new AsyncLocalStorage<boolean>();
vi.mock('../../src/http/undici.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/http/undici.js')>();
  class Pool extends actual.Pool {
    constructor(origin: string | URL, options: ConstructorParameters<typeof actual.Pool>[1] = {}) {
      const short = shortTimeouts.getStore() === true && options.headersTimeout !== undefined;
      super(origin, short ? { ...options, headersTimeout: SOURCE_TIMEOUT_MS, bodyTimeout: SOURCE_TIMEOUT_MS } : options);
    }
  }
  return { ...actual, Pool };
});

// ---------------------------------------------------------------------------------------------------------------
// Running the CLI in this process, several runs at once

/**
 * Runs the CLI through src/cli/main.ts's `run`, as test/support/cli.ts's runCliInProcess does, but without changing
 * the working directory (every path given here is absolute), so that the cells of this file can run side by side:
 * their waits (timeouts, stall bounds) overlap. Rate-limit waits, Retry-After pauses and backoffs go through a
 * SkipClock: honoured, not sat out.
 */
async function runInProcess(args: string[], env: Record<string, string>, options: { shortTimeouts?: boolean; interrupt?: AbortSignal } = {}): Promise<CliResult> {
  const { run } = await import('../../src/cli/main.js');
  const cwd = tempDir('referral-sync-matrix-');
  const { captured, sink } = capturingStreams();
  const code = await shortTimeouts.run(options.shortTimeouts === true, () =>
    run([process.execPath, BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: cwd, CI: 'true', ...env },
      cwd,
      streams: { stdout: sink('stdout'), stderr: sink('stderr') },
      now: () => new Date(),
      clock: new SkipClock(),
      ...(options.interrupt ? { interrupt: options.interrupt } : {}),
    }),
  );
  return { code, ...captured };
}

// ---------------------------------------------------------------------------------------------------------------
// Services

const GS_KEY = 'gs_key_matrix_3b9f0e';
const CELLO_KEY_ID = 'cello_key_id_matrix';
const CELLO_SECRET = 'cello_secret_matrix_51d2';

type ServiceName = 'segment' | 'customerio-v1' | 'customerio-v2' | 'growsurf' | 'cello';

/** One cell's world: the fakes, the proxy in front of the faulted one, and how to run the CLI against them. */
interface World {
  segment: FakeSegment;
  customerio: FakeCustomerio | undefined;
  proxy: FaultProxy;
  /** The arguments of a sync of this world's program (state and flags added by the cell). */
  syncArgs: string[];
  /** Flags of sync that diff does not take. */
  sendOnly: string[];
  /**
   * The environment pointing the CLI at the service: through the proxy (the faulted run), at a closed port
   * (refused), or straight at the fake (the healthy runs). The faulted run has a URL of its own, like a process
   * of its own: a request it started and that is still on its way when it returns (the real CLI would have
   * exited) reaches the faulted proxy, never the healed service.
   */
  env(to: 'proxy' | 'refused' | 'healthy'): Promise<Record<string, string>>;
  /** Which requests carry the data: the faults go there. */
  dataPath: FaultRule['match'];
  /** The destination whose ledger and fake are compared. */
  destination: 'segment' | 'customerio';
  /**
   * More requests than this in a faulted run is a loop without a bound. About twice the most a bounded run of these
   * tiny programs makes: 8 attempts per request (Customer.io v1: per operation, about a dozen), a refused batch of
   * a dozen bisected (about 20), Cello's lookups (5 attempts each).
   */
  requestBudget: number;
}

/** A tiny program as a GrowSurf export: a referrer with an awarded and a pending referral, and a direct signup. */
function writeSmallExport(dir: string): string {
  return writeCsv(dir, 'export.csv', [
    { ID: 'r1', Email: 'rita@example.com', 'Referral Count': '1', 'Created At': '2025-01-01' },
    { ID: 'f1', Email: 'fred@example.com', 'Referral Count': '0', 'Created At': '2025-01-02', 'Referred By': 'r1', 'Referral Status': 'CREDIT_AWARDED', 'Converted At': '2025-02-01' },
    { ID: 'f2', Email: 'gina@example.com', 'Referral Count': '0', 'Created At': '2025-01-03', 'Referred By': 'r1', 'Referral Status': 'CREDIT_PENDING' },
    { ID: 'o1', Email: 'olga@example.com', 'Referral Count': '0', 'Created At': '2025-01-04' },
  ]);
}

async function target(to: 'proxy' | 'refused' | 'healthy', proxy: FaultProxy, service: string): Promise<string> {
  if (to === 'proxy') return proxy.url;
  return to === 'refused' ? closedPortUrl() : service;
}

async function startWorld(service: ServiceName, onTestFinished: TestContext['onTestFinished']): Promise<World> {
  const dir = tempDir('referral-sync-matrix-');
  const segment = new FakeSegment(SEGMENT_KEY);
  const segmentUrl = await segment.start();
  onTestFinished(() => segment.stop());
  const segmentEnv = { SEGMENT_WRITE_KEY: SEGMENT_KEY, SEGMENT_HOST: segmentUrl };
  const stopLast = <T extends { stop(): Promise<void> }>(thing: T): T => {
    onTestFinished(() => thing.stop());
    return thing;
  };

  if (service === 'segment' || service === 'customerio-v1' || service === 'customerio-v2') {
    const file = writeSmallExport(dir);
    if (service === 'segment') {
      const proxy = stopLast(new FaultProxy(segmentUrl));
      await proxy.start();
      return {
        segment,
        customerio: undefined,
        proxy,
        syncArgs: ['sync', '--file', file, '--to', 'segment'],
        sendOnly: [],
        env: async (to) => ({ ...segmentEnv, SEGMENT_HOST: await target(to, proxy, segmentUrl) }),
        dataPath: { method: 'POST', path: '/v1/' },
        destination: 'segment',
        requestBudget: 50,
      };
    }
    const customerio = stopLast(new FakeCustomerio(CIO_SITE, CIO_KEY));
    const cioUrl = await customerio.start();
    const proxy = stopLast(new FaultProxy(cioUrl));
    await proxy.start();
    const api = service === 'customerio-v1' ? 'v1' : 'v2';
    return {
      segment,
      customerio,
      proxy,
      syncArgs: ['sync', '--file', file, '--to', 'customerio', '--customerio-api', api],
      sendOnly: ['--customerio-api', api],
      env: async (to) => ({ CUSTOMERIO_SITE_ID: CIO_SITE, CUSTOMERIO_API_KEY: CIO_KEY, CUSTOMERIO_TRACK_URL: await target(to, proxy, cioUrl) }),
      // The credentials check (GET /api/v1/accounts/region) is left alone: the faults hit the deliveries.
      dataPath: { path: api === 'v1' ? '/api/v1/customers/' : '/api/v2/' },
      destination: 'customerio',
      requestBudget: api === 'v1' ? 250 : 50,
    };
  }

  if (service === 'growsurf') {
    const program = generateGrowsurfProgram(6, 17);
    const growsurf = stopLast(new FakeGrowsurf(GS_KEY, program));
    const gsUrl = await growsurf.start();
    const proxy = stopLast(new FaultProxy(gsUrl));
    await proxy.start();
    return {
      segment,
      customerio: undefined,
      proxy,
      syncArgs: ['sync', '--source', 'growsurf', '--campaign', program.campaignId, '--to', 'segment'],
      sendOnly: [],
      env: async (to) => ({ ...segmentEnv, GROWSURF_API_KEY: GS_KEY, GROWSURF_API_URL: `${await target(to, proxy, gsUrl)}/v2` }),
      // The campaign and its referrals are read first; the faults hit the participant pages.
      dataPath: { method: 'GET', path: /\/participants$/ },
      destination: 'segment',
      requestBudget: 50,
    };
  }

  const program = writeCelloProgram(dir, 2, 29);
  const cello = stopLast(new FakeCello(CELLO_KEY_ID, CELLO_SECRET));
  seedCello(cello, program);
  const celloUrl = await cello.start();
  const proxy = stopLast(new FaultProxy(celloUrl));
  await proxy.start();
  return {
    segment,
    customerio: undefined,
    proxy,
    syncArgs: ['sync', '--source', 'cello', '--file', ...program.files, '--enrich', '--to', 'segment'],
    sendOnly: [],
    env: async (to) => ({ ...segmentEnv, CELLO_ACCESS_KEY_ID: CELLO_KEY_ID, CELLO_SECRET_ACCESS_KEY: CELLO_SECRET, CELLO_API_URL: await target(to, proxy, celloUrl) }),
    // The token is granted; the faults hit the lookups (codes and active links).
    dataPath: { method: 'GET', path: '/referral-codes/' },
    destination: 'segment',
    requestBudget: 100,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The table

/** What a cell must end with: an exit code, or not applicable (with the reason, kept in the table). */
type Expected = number | { na: string };

interface Row {
  name: string;
  fault: Fault | 'refused';
  times: 'always' | 'once';
  /** Expected exit of the faulted run, per service kind. */
  expect: { segment: Expected; customerio: Expected; growsurf: Expected; cello: Expected };
}

const OK = 0;
const FAILED_DELIVERIES = 1;
const UNAVAILABLE = 69;

/**
 * A fault that lasts: each destination records what it could not deliver as failed or dead and the run exits 1
 * (docs/commands.md: "A run with failed or dead deliveries exits 1"); a source that cannot be read stops the run before
 * anything is sent, exit 69 ("a service is unreachable"), as does a destination that cannot be reached at all or
 * that refuses the credentials (Customer.io 401/403: "Bad credentials stop the run", exit 69).
 */
const LASTS = { segment: FAILED_DELIVERIES, customerio: FAILED_DELIVERIES, growsurf: UNAVAILABLE, cello: UNAVAILABLE } as const;
/** A fault the retries get past: exit 0. */
const RECOVERS = { segment: OK, customerio: OK, growsurf: OK, cello: OK } as const;
const CREDENTIALS = { ...LASTS, customerio: UNAVAILABLE } as const;
/**
 * An answer that is not the service's API at all (a redirect, a page that is not its JSON): every request would get
 * it, so the run stops at once with exit 69 and the sentence saying what came back; nothing is recorded sent and
 * what was queued stays for the next run (docs/commands.md: exit codes, 69).
 */
const NOT_THE_API = { segment: UNAVAILABLE, customerio: UNAVAILABLE, growsurf: UNAVAILABLE, cello: UNAVAILABLE } as const;
const USAGE = 64;

const ROWS: Row[] = [
  // Redirects: never followed into a success, never followed without a bound.
  { name: '301 to https', fault: FAULTS.redirectHttps(), times: 'always', expect: NOT_THE_API },
  { name: '302 loop to itself', fault: FAULTS.redirectLoop(), times: 'always', expect: NOT_THE_API },
  // 4xx: refused for good (dead), or the credentials refused.
  { name: '400', fault: FAULTS.status(400), times: 'always', expect: LASTS },
  { name: '401', fault: FAULTS.status(401), times: 'always', expect: CREDENTIALS },
  { name: '403', fault: FAULTS.status(403), times: 'always', expect: CREDENTIALS },
  {
    name: '404',
    fault: FAULTS.status(404),
    times: 'always',
    expect: {
      ...LASTS,
      // GrowSurf documents a 404 on a campaign's listings as "no such campaign": a usage error naming --campaign.
      growsurf: USAGE,
      cello: { na: 'a 404 lookup is an answer ("no link", "unknown code": guarantee 8), not a fault' },
    },
  },
  { name: '413', fault: FAULTS.status(413), times: 'always', expect: LASTS },
  // 429 and 5xx: retried; recovered from when they pass, reported when they last.
  { name: '429 with Retry-After, once', fault: FAULTS.status(429, { 'retry-after': '2' }), times: 'once', expect: RECOVERS },
  { name: '429 without Retry-After, once', fault: FAULTS.status(429), times: 'once', expect: RECOVERS },
  { name: '429 without Retry-After', fault: FAULTS.status(429), times: 'always', expect: LASTS },
  { name: '500', fault: FAULTS.status(500), times: 'always', expect: LASTS },
  { name: '502', fault: FAULTS.status(502), times: 'always', expect: LASTS },
  { name: '503', fault: FAULTS.status(503), times: 'always', expect: LASTS },
  { name: '503, once', fault: FAULTS.status(503), times: 'once', expect: RECOVERS },
  // 200s that are not the service's documented success.
  { name: 'HTML 200', fault: FAULTS.html200(), times: 'always', expect: NOT_THE_API },
  { name: 'text/plain 200', fault: FAULTS.text200(), times: 'always', expect: NOT_THE_API },
  { name: 'empty 200', fault: FAULTS.empty200(), times: 'always', expect: NOT_THE_API },
  { name: 'truncated JSON 200', fault: FAULTS.truncated200(), times: 'always', expect: LASTS },
  {
    name: '200 {} (undocumented shape)',
    fault: FAULTS.shape200({}),
    times: 'always',
    expect: { ...NOT_THE_API, customerio: { na: 'Customer.io documents its success as a 200 with JSON, {} included: no JSON 200 is the wrong shape' } },
  },
  // The connection.
  { name: 'connection refused', fault: 'refused', times: 'always', expect: { segment: UNAVAILABLE, customerio: UNAVAILABLE, growsurf: UNAVAILABLE, cello: UNAVAILABLE } },
  { name: 'reset mid-response', fault: FAULTS.reset(), times: 'always', expect: LASTS },
  { name: 'answer lost after the service applied it, once', fault: FAULTS.lostAck(), times: 'once', expect: RECOVERS },
  { name: 'hung', fault: FAULTS.hang(), times: 'always', expect: LASTS },
  { name: 'slow trickle', fault: FAULTS.trickle(TRICKLE_MS), times: 'always', expect: LASTS },
];

const SERVICES: ServiceName[] = ['segment', 'customerio-v1', 'customerio-v2', 'growsurf', 'cello'];

function expectedFor(row: Row, service: ServiceName): Expected {
  return row.expect[service.startsWith('customerio') ? 'customerio' : (service as 'segment' | 'growsurf' | 'cello')];
}

// ---------------------------------------------------------------------------------------------------------------
// One cell

/** Each service's plan, computed once (by the first of its cells to start): the same for every cell. */
const plans = new Map<ServiceName, Promise<PlanLine[]>>();

/**
 * What a healthy sync of the service's program sends to its destination from an empty state: `diff --out` in a
 * world of its own, against an empty SQLite state (diff writes nothing; the plan does not depend on the backend).
 */
function planOf(service: ServiceName, ctx: TestContext): Promise<PlanLine[]> {
  let plan = plans.get(service);
  if (!plan) {
    plan = (async () => {
      const world = await startWorld(service, ctx.onTestFinished);
      const planPath = join(tempDir('referral-sync-matrix-'), 'plan.jsonl');
      const diffArgs = world.syncArgs.slice(1).filter((arg) => !world.sendOnly.includes(arg));
      const diff = await runInProcess(['diff', ...diffArgs, '--out', planPath, '--quiet', '--state', join(tempDir('referral-sync-matrix-'), 'plan.db')], await world.env('healthy'));
      expect(diff.code, diff.stderr).toBe(0);
      const lines = readPlan(planPath).filter((line) => line.destination === world.destination);
      expect(lines.length).toBeGreaterThan(0);
      return lines;
    })();
    plans.set(service, plan);
  }
  return plan;
}

async function runCell(row: Row, service: ServiceName, backend: Backend, expected: number, plan: PlanLine[], ctx: TestContext): Promise<void> {
  const world = await startWorld(service, ctx.onTestFinished);
  const state = await backend.fresh();
  ctx.onTestFinished(() => state.drop());
  const at = ['--state', state.location];
  const healthyEnv = await world.env('healthy');

  // The faulted run.
  const refused = row.fault === 'refused';
  if (!refused) world.proxy.inject({ fault: row.fault as Fault, match: world.dataPath, ...(row.times === 'once' ? { times: 1 } : {}) });
  const source = service === 'growsurf' || service === 'cello';
  const slow = !refused && (row.fault as Fault).kind in SLOW;
  const stop = new AbortController();
  world.proxy.onRequest = (_request, count) => {
    if (count <= world.requestBudget || stop.signal.aborted) return;
    // Stopped as by Ctrl-C, and healed so that the request caught in the loop ends instead of holding up the stop.
    world.proxy.heal();
    stop.abort('SIGINT');
  };
  const faulted = await runInProcess([...world.syncArgs, ...at, '--json', ...(slow && !source ? ['--stall-timeout', STALL_SLOW] : [])], await world.env(refused ? 'refused' : 'proxy'), {
    shortTimeouts: slow && source,
    interrupt: stop.signal,
  });
  world.proxy.onRequest = undefined;
  const said = `exit ${faulted.code}, ${world.proxy.requests.length} requests (${world.proxy.injected} faulted)\n--- stdout\n${faulted.stdout}\n--- stderr\n${faulted.stderr}`;
  expect(stop.signal.aborted, `a loop without a bound: more than ${world.requestBudget} requests\n${said}`).toBe(false);
  if (!refused) expect(world.proxy.injected, 'the fault was never injected').toBeGreaterThan(0);

  expect(faulted.code, said).toBe(expected);
  expectCleanStderr(faulted, said);
  const summary = faulted.stdout.trim() === '' ? undefined : (JSON.parse(faulted.stdout) as { exitCode: number });
  if (summary) expect(summary.exitCode).toBe(faulted.code);
  const afterFault = await readLedger(state.location);
  expect(afterFault.runs, said).not.toContain('running');
  if (faulted.code === OK) expect(afterFault.runs.at(-1)).toBe('succeeded');
  const acknowledgedBefore = afterFault.sent.filter((d) => d.destination === world.destination);
  expectAcknowledgedAccepted(world, plan, acknowledgedBefore, said);
  // The failure names its cause: the status the service answered, in the error (stderr) or in the reason kept
  // for each delivery that did not go through (what `status` shows).
  const cause = causeOf(row);
  if (cause && faulted.code !== OK) {
    expect([faulted.stderr, ...afterFault.notThrough.map((d) => d.lastError ?? '')].join('\n'), `the cause is not named\n${said}`).toMatch(cause);
  }
  const arrivedBefore = arrivals(world);

  // Healthy again: sync delivers the rest; retry resends what ended dead (a refusal for good is resent only on request).
  const healthy = await runInProcess([...world.syncArgs, ...at], healthyEnv);
  const saidHealthy = `healthy sync: exit ${healthy.code}\n--- stdout\n${healthy.stdout}\n--- stderr\n${healthy.stderr}`;
  expect(healthy.code, saidHealthy).toBe(OK);
  expectCleanStderr(healthy, saidHealthy);
  let after = await readLedger(state.location);
  const planned = new Set(plan.map((line) => line.key));
  if (after.sent.filter((d) => d.destination === world.destination && planned.has(d.key)).length < planned.size) {
    const retried = await runInProcess(['retry', '--to', world.destination, ...world.sendOnly, ...at], healthyEnv);
    expect(retried.code, `retry: ${retried.stderr}`).toBe(OK);
    expectCleanStderr(retried, retried.stderr);
    after = await readLedger(state.location);
  }
  expect(after.runs).not.toContain('running');
  const acknowledged = after.sent.filter((d) => d.destination === world.destination);
  expectAcknowledgedAccepted(world, plan, acknowledged, 'after the healthy run');
  expectExactlyOnce(world, plan, acknowledgedBefore, arrivedBefore);
}

/** What a failure caused by this row's fault must name: the status answered (a redirect: its status, or "redirect"). */
function causeOf(row: Row): RegExp | undefined {
  if (row.fault === 'refused') return undefined;
  if (row.fault.kind === 'status' && row.fault.status !== 200) return new RegExp(`\\b${row.fault.status}\\b`);
  if (row.fault.kind === 'redirect') return new RegExp(`\\b${row.fault.status ?? 302}\\b|redirect`, 'i');
  return undefined;
}

interface LedgerRow {
  destination: string;
  key: string;
  status: string;
  lastError: string | null;
}

/**
 * What the state holds, read straight from its tables (as test/support/backends.ts's readDeliveries does, with
 * the reasons kept for what did not go through): every run's status in order, the deliveries recorded `sent`, and
 * the `failed` and `dead` ones. A state that was never created reads as empty.
 */
async function readLedger(location: string): Promise<{ runs: string[]; sent: LedgerRow[]; notThrough: LedgerRow[] }> {
  const deliveriesSql = `SELECT destination, key, status, last_error AS "lastError" FROM deliveries`;
  const runsSql = 'SELECT status FROM runs ORDER BY id';
  let deliveries: LedgerRow[] = [];
  let runs: { status: string }[] = [];
  if (location.startsWith('postgres')) {
    const schema = new URL(location).searchParams.get('schema')!;
    await withPostgres(async (client) => {
      const exists = (await client.query<{ table: string | null }>('SELECT to_regclass($1) AS table', [`${schema}.deliveries`])).rows[0]?.table;
      if (!exists) return;
      await client.query(`SET search_path TO ${schema}`);
      deliveries = (await client.query<LedgerRow>(deliveriesSql)).rows;
      runs = (await client.query<{ status: string }>(runsSql)).rows;
    });
  } else if (existsSync(location)) {
    const db = new Database(location, { readonly: true, fileMustExist: true });
    try {
      deliveries = db.prepare(deliveriesSql).all() as LedgerRow[];
      runs = db.prepare(runsSql).all() as { status: string }[];
    } finally {
      db.close();
    }
  }
  return {
    runs: runs.map((r) => r.status),
    sent: deliveries.filter((d) => d.status === 'sent'),
    notThrough: deliveries.filter((d) => d.status === 'failed' || d.status === 'dead'),
  };
}

/** No stack frame, no "this is a bug"; a failure said in one `error:` line at least. */
function expectCleanStderr(result: CliResult, said: string): void {
  expect(result.stderr, said).not.toMatch(/^\s+at /m);
  expect(result.stderr, said).not.toMatch(/this is a bug|internal error/i);
  if (result.code !== OK) expect(result.stderr, said).toMatch(/^error: /m);
}

/** The id the fake records for a planned operation: Segment's messageId, a Customer.io event id, or the person. */
function fakeIdOf(line: PlanLine): string {
  if (line.destination === 'segment') return line.payload.messageId as string;
  if (line.kind === 'track') return line.payload.id as string;
  return `person ${line.userId}`;
}

/** What the fake accepted, as ids (duplicates included, in arrival order). */
function arrivals(world: World): string[] {
  if (world.destination === 'segment') return [...world.segment.arrivals];
  const cio = world.customerio!;
  return [...cio.eventArrivals, ...cio.identifyArrivals.map((identifier) => `person ${identifier.replace(/^(email|id):/, '')}`)];
}

/** Every delivery the ledger records `sent` is one the fake accepted. */
function expectAcknowledgedAccepted(world: World, plan: PlanLine[], acknowledged: { key: string }[], said: string): void {
  const byKey = new Map(plan.map((line) => [line.key, line]));
  const accepted = new Set(arrivals(world));
  const notAccepted = acknowledged
    .map((a) => byKey.get(a.key))
    .filter((line) => line === undefined || !accepted.has(fakeIdOf(line)))
    .map((line) => (line ? `${line.kind} ${fakeIdOf(line)}` : 'an operation outside the plan'));
  expect(notAccepted, `recorded sent, never accepted by the service\n${said}`).toEqual([]);
}

/**
 * Every planned id accepted; nothing accepted outside the plan; an id that arrived twice was not acknowledged
 * before the healthy run (a resend of what the faulted run could not confirm: the service dedupes it).
 */
function expectExactlyOnce(world: World, plan: PlanLine[], acknowledgedBefore: { key: string }[], arrivedBefore: string[]): void {
  const planned = plan.map(fakeIdOf);
  const all = arrivals(world);
  expect([...new Set(all)].sort()).toEqual([...new Set(planned)].sort());
  // With the planned content: the destination's final view is the plan's.
  for (const line of plan) {
    if (world.destination === 'segment') {
      const message = world.segment.messages.get(line.payload.messageId as string)!;
      expect({ traits: message.traits, properties: message.properties }).toEqual({ traits: line.payload.traits, properties: line.payload.properties });
    } else if (line.kind === 'track') {
      expect(world.customerio!.events.get(line.payload.id as string)!.attributes).toEqual(line.payload.attributes);
    } else {
      expect(world.customerio!.people.get(`email:${line.userId}`)).toMatchObject(line.payload.attributes as Record<string, unknown>);
    }
  }
  const byKey = new Map(plan.map((line) => [line.key, line]));
  const confirmed = new Set(acknowledgedBefore.map((a) => byKey.get(a.key)).filter((line): line is PlanLine => line !== undefined).map(fakeIdOf));
  const resentAfterConfirmation = all.slice(arrivedBefore.length).filter((id) => confirmed.has(id));
  expect(resentAfterConfirmation, 'acknowledged before, sent again').toEqual([]);
  const healthyRun = all.slice(arrivedBefore.length);
  expect(healthyRun.filter((id, index) => healthyRun.indexOf(id) !== index), 'sent twice by the healthy run').toEqual([]);
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * PostgreSQL runs a representative subset, where the state tells paths apart: on each destination, a fault that
 * lasts and is retried (503: failed deliveries, resent by the next run), the credentials refused mid-run (401:
 * Customer.io's run stops with 69 and must still be finalized), a success that is not one (HTML 200), an answer
 * lost after the service applied it (a resend of what was in flight) and a request that never ends (the stall
 * bound); on each source, one fault that stops the run before anything is sent (HTML 200 for GrowSurf, 503 for
 * Cello). The whole table there would double the file's time for paths the state does not tell apart.
 */
const POSTGRES_ROWS = new Set(['401', '503', 'HTML 200', 'answer lost after the service applied it, once', 'hung']);
const POSTGRES_SOURCE_ROWS: Record<'growsurf' | 'cello', string> = { growsurf: 'HTML 200', cello: '503' };

function onPostgres(row: Row, service: ServiceName): boolean {
  return service === 'growsurf' || service === 'cello' ? POSTGRES_SOURCE_ROWS[service] === row.name : POSTGRES_ROWS.has(row.name);
}

/**
 * PostgreSQL cells at once: each run holds a few connections (about 3 at its peak: 20 seen with 6 cells), and the test
 * server's 100 are shared with the other test files.
 */
const postgresSlots = pLimit(6);

// The cells share nothing (own fakes and proxies on port 0, own states) and mostly wait: many at once.
vi.setConfig({ maxConcurrency: 32 });

/** The rows that wait out a timeout or a stall bound: started first, so that they do not end the file last. */
const BY_DURATION = [...ROWS].sort((a, b) => Number(b.fault !== 'refused' && b.fault.kind in SLOW) - Number(a.fault !== 'refused' && a.fault.kind in SLOW));

// PostgreSQL first: its cells queue for their slots, and the SQLite cells fill the time meanwhile.
for (const backend of [...backends()].reverse()) {
  describe.concurrent(`HTTP fault matrix, ${backend.name} state`, () => {
    for (const row of BY_DURATION) {
      for (const service of SERVICES) {
        if (backend.name === 'postgres' && !onPostgres(row, service)) continue;
        const expected = expectedFor(row, service);
        if (typeof expected !== 'number') continue;
        it(`${service} × ${row.name} → exit ${expected}`, async (ctx) => {
          const plan = await planOf(service, ctx);
          const cell = (): Promise<void> => runCell(row, service, backend, expected, plan, ctx);
          await (backend.name === 'postgres' ? postgresSlots(cell) : cell());
        }, 120_000);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// `check` under the same faults: it must call a service that would refuse the data failing, not reachable.

const CHECK_ROWS: { name: string; fault: Fault | 'refused'; segment: Expected; customerio: Expected }[] = [
  { name: '301 to https', fault: FAULTS.redirectHttps(), segment: UNAVAILABLE, customerio: UNAVAILABLE },
  { name: '302 loop to itself', fault: FAULTS.redirectLoop(), segment: UNAVAILABLE, customerio: UNAVAILABLE },
  { name: '401', fault: FAULTS.status(401), segment: { na: 'Segment accepts any write key: a key cannot be checked (docs/troubleshooting.md)' }, customerio: UNAVAILABLE },
  { name: '503', fault: FAULTS.status(503), segment: UNAVAILABLE, customerio: UNAVAILABLE },
  { name: 'HTML 200', fault: FAULTS.html200(), segment: UNAVAILABLE, customerio: UNAVAILABLE },
  { name: 'empty 200', fault: FAULTS.empty200(), segment: UNAVAILABLE, customerio: UNAVAILABLE },
  { name: 'connection refused', fault: 'refused', segment: UNAVAILABLE, customerio: UNAVAILABLE },
];

/** `check` tries a service 4 times at most (a client following redirects: 20 hops each, as fetch does); more is a loop without a bound. */
const CHECK_BUDGET = 100;

describe.concurrent('check under faults (every request of the service faulted)', () => {
  for (const service of ['segment', 'customerio-v2'] as const) {
    for (const row of CHECK_ROWS) {
      const expected = service === 'segment' ? row.segment : row.customerio;
      if (typeof expected !== 'number') continue;
      it(`${service} × ${row.name} → exit ${expected}`, async (ctx) => {
        const world = await startWorld(service, ctx.onTestFinished);
        const refused = row.fault === 'refused';
        if (!refused) world.proxy.inject({ fault: row.fault as Fault });
        world.proxy.onRequest = (_request, count) => {
          // A check caught in a loop: healed, so that it ends (and fails the cell below).
          if (count > CHECK_BUDGET) world.proxy.heal();
        };
        const to = ['--to', world.destination];
        const checked = await runInProcess(['check', ...to], await world.env(refused ? 'refused' : 'proxy'));
        const said = `exit ${checked.code}, ${world.proxy.requests.length} requests\n--- stdout\n${checked.stdout}\n--- stderr\n${checked.stderr}`;
        expect(world.proxy.requests.length, `a loop without a bound\n${said}`).toBeLessThanOrEqual(CHECK_BUDGET);
        expect(checked.code, said).toBe(expected);
        expectCleanStderr(checked, said);
        world.proxy.onRequest = undefined;
        const healthy = await runInProcess(['check', ...to], await world.env('healthy'));
        expect(healthy.code, healthy.stdout + healthy.stderr).toBe(OK);
        // check sends no data.
        expect(world.segment.arrivals.length + (world.customerio?.eventArrivals.length ?? 0) + (world.customerio?.identifyArrivals.length ?? 0)).toBe(0);
      }, 120_000);
    }
  }
});
