import { guardEvent, type RecentEventsGuard } from '../../plan/recent-events.js';
import { createReadStream } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { DESTINATION_LABELS, type Destination } from '../../config/defaults.js';
import { DataError, UsageError } from '../../errors.js';
import { parsePlanHeader, parsePlanLine, planHeaderLine, type PlanHeader } from '../../plan/plan-format.js';
import type { PilotSpec } from '../../plan/pilot.js';
import { PlanSummary } from '../../plan/summary.js';
import type { PlanItem, PlanMode } from '../../plan/types.js';
import type { Source } from '../../sources/source.js';
import { isPostgresUrl } from '../../state/postgres/url.js';
import type { StateReader } from '../../state/store.js';

/**
 * `sync --plan` / `backfill --plan`: apply a plan `diff --out` wrote, exactly (the header's checks, then every
 * line's, then the operations as written). And the other side: the header `diff --out` writes first.
 */

/** Where a state is, as a plan records it: a SQLite file by its absolute path, PostgreSQL by its URL without password. */
export function planStateLocation(statePath: string, cwd: string, state: Pick<StateReader, 'location'>): string {
  if (isPostgresUrl(statePath)) return state.location;
  return isAbsolute(statePath) ? statePath : resolve(cwd, statePath);
}

export interface PlanMadeFor {
  version: string;
  now: Date;
  mode: PlanMode;
  resend: boolean;
  source: 'growsurf' | 'cello';
  programId: string;
  programIdDefaulted: boolean;
  destinations: readonly Destination[];
  namespaces: Record<Destination, string>;
  stateLocation: string;
  state: Pick<StateReader, 'position'>;
  pilot: PilotSpec | undefined;
  customerioApi: string | undefined;
  confirmed: { newProgram: boolean; newDestination: boolean };
}

/** The first line of a plan file: what it is made for, with the state's position read now (before planning). */
export async function planHeaderFor(made: PlanMadeFor): Promise<string> {
  const position = await made.state.position(made.programId);
  return planHeaderLine({
    version: made.version,
    createdAt: made.now.toISOString(),
    mode: made.mode,
    resend: made.resend,
    program: { source: made.source, id: made.programId, defaulted: made.programIdDefaulted },
    destinations: made.destinations.map((destination) => ({ destination, namespace: made.namespaces[destination] })),
    state: { location: made.stateLocation, lastRunId: position.lastRunId, acknowledged: position.acknowledged },
    pilot: made.pilot ?? null,
    customerioApi: (made.customerioApi ?? 'v2').toLowerCase() === 'v1' ? 'v1' : 'v2',
    confirmed: made.confirmed,
  });
}

/** The lines of a plan file, numbered from 1; `bytes` says how far reading has come (progress). */
function planLines(path: string, progress?: { bytes: number }): AsyncGenerator<{ text: string; number: number }> {
  const stream = createReadStream(path, { encoding: 'utf8' });
  if (progress) stream.on('data', (chunk: string | Buffer) => (progress.bytes += Buffer.byteLength(chunk)));
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  return (async function* () {
    let number = 0;
    try {
      for await (const text of lines) {
        number += 1;
        yield { text, number };
      }
    } finally {
      lines.close();
      stream.destroy();
    }
  })();
}

/** Opens the plan and reads its header; a missing or unreadable file is a usage error naming it. */
export async function readPlanHeader(path: string, version: string): Promise<PlanHeader> {
  try {
    for await (const { text } of planLines(path)) return parsePlanHeader(text, path, version);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('E')) {
      throw new UsageError(`Cannot read the plan ${path}: ${code === 'ENOENT' ? 'no such file' : code}.`, { hint: 'Pass --plan the file `diff --out` wrote.' });
    }
    throw error;
  }
  return parsePlanHeader(undefined, path, version);
}

/** What the run applying a plan is about to work with, checked against what the plan was made for. */
export interface PlanRun {
  command: 'sync' | 'backfill';
  /** --campaign or GROWSURF_CAMPAIGN_ID, when given: it must name the plan's program. */
  campaign: string | undefined;
  destinations: readonly Destination[];
  namespaces: Record<Destination, string>;
  customerioApi: string | undefined;
}

/**
 * Refuses (exit 64) a plan made for another command, program, destination set or set of credentials: applied, its
 * ids would not be the ones this run's destinations and state expect.
 */
export function assertPlanFitsRun(plan: PlanHeader, file: string, run: PlanRun): void {
  const remake = 'make the plan again for this run (`npx referral-sync diff --out plan.jsonl` with the same flags and environment), review it, then apply it.';
  if (plan.mode !== run.command) {
    throw new UsageError(`${file} is a ${plan.mode} plan (made by ${plan.mode === 'backfill' ? '`backfill --dry-run --out`' : '`diff --out` or `sync --dry-run --out`'}): apply it with \`referral-sync ${plan.mode} --plan ${file}\`, not ${run.command}.`);
  }
  if (run.campaign !== undefined && run.campaign !== plan.program.id) {
    throw new UsageError(`${file} was made for program "${plan.program.id}", and this run names program "${run.campaign}": its ids belong to the other program.`, { hint: `Drop --campaign (the plan names its program), or ${remake}` });
  }
  const planned = plan.destinations.map((d) => d.destination);
  if (planned.length !== run.destinations.length || planned.some((d) => !run.destinations.includes(d))) {
    throw new UsageError(`${file} was made for ${labels(planned)}, and this run sends to ${labels(run.destinations)}.`, { hint: `Pass --to ${planned.join(',')} (or the config's destinations as they were), or ${remake}` });
  }
  for (const { destination, namespace } of plan.destinations) {
    if (run.namespaces[destination] === namespace) continue;
    const label = DESTINATION_LABELS[destination];
    throw new UsageError(
      `${file} was made for other ${label} credentials (or another config namespace): its ids carry the fingerprint ${namespace}, and this run's credentials give ${run.namespaces[destination]}.`,
      { hint: `Set the ${label} credentials the plan was made with, or ${remake}` },
    );
  }
  if (run.customerioApi !== undefined && run.customerioApi.toLowerCase() !== plan.customerioApi) {
    throw new UsageError(`${file} was made for Customer.io's Track API ${plan.customerioApi}, and this run asks for ${run.customerioApi.toLowerCase()}.`, { hint: `Drop --customerio-api (the plan names its own), or ${remake}` });
  }
}

/**
 * Refuses (exit 64) a plan made against another state, or against this one before it moved: a run recorded since
 * (the plan's operations may have been sent, or others planned differently since), or deliveries acknowledged
 * since (a run that was under way while the plan was made). A plan applied once is refused the second time: its
 * own run moved the state.
 */
export async function assertStateUnmoved(plan: PlanHeader, file: string, state: Pick<StateReader, 'position'>, location: string): Promise<void> {
  const remake = 'make a new plan against the state as it is now (`npx referral-sync diff --out plan.jsonl`), review it, then apply it: it plans only what is still to send.';
  if (location !== plan.state.location) {
    throw new UsageError(`${file} was made against the state ${plan.state.location}, and this run uses ${location}.`, { hint: `Pass --state ${plan.state.location} (or set REFERRAL_SYNC_STATE as it was), or ${remake}` });
  }
  const now = await state.position(plan.program.id);
  if (now.lastRunId !== plan.state.lastRunId) {
    const before = plan.state.lastRunId === null ? 'no run yet' : `run #${plan.state.lastRunId} last`;
    throw new UsageError(`The state moved since ${file} was made (${plan.createdAt}): it then had ${before} for program "${plan.program.id}", and run #${now.lastRunId ?? '?'} was recorded since, so what the plan would send may be sent already or no longer right.`, { hint: capitalized(remake) });
  }
  if (now.acknowledged !== plan.state.acknowledged) {
    throw new UsageError(`The state moved since ${file} was made (${plan.createdAt}): ${now.acknowledged - plan.state.acknowledged} more deliveries of program "${plan.program.id}" were acknowledged since (a run was under way while the plan was made).`, { hint: capitalized(remake) });
  }
}

/** What the checking pass found: the operations to send, and the people they are for. */
export interface CheckedPlan {
  operations: number;
  people: number;
}

/**
 * Reads every line before anything is sent: one that is not an operation of this plan (damaged, edited, for a
 * destination the header does not name, a key twice) is a data error (exit 65) naming file:line, and nothing is sent.
 */
export async function checkPlanLines(path: string, plan: PlanHeader): Promise<CheckedPlan> {
  const destinations = plan.destinations.map((d) => d.destination);
  const keys = new Set<string>();
  const people = new Set<string>();
  let operations = 0;
  for await (const { text, number } of planLines(path)) {
    if (number === 1) continue;
    const entry = parsePlanLine(text, path, number, destinations);
    if (entry.type !== 'operation') continue;
    const { operation } = entry;
    const id = `${operation.destination}\u0000${operation.key}`;
    if (keys.has(id)) throw new DataError(`${path}:${number}: not an operation of this plan (the same operation appears on an earlier line); nothing was sent.`, { hint: 'A plan is applied as diff wrote it: make it again rather than editing it.' });
    keys.add(id);
    people.add(operation.userId);
    if (entry.withheld === undefined) operations += 1;
  }
  return { operations, people: people.size };
}

/** The plan file as the run's "source", for the progress display (bytes of the file read) and the summary. */
export function planFileSource(path: string): Source & { progress: { bytes: number }; size: number } {
  const progress = { bytes: 0 };
  let size = 0;
  return {
    description: `plan ${path}`,
    rereadable: true,
    // It reads no source: nothing may be concluded about what the source no longer shows.
    partial: true,
    progress,
    get size() {
      return size;
    },
    set size(value: number) {
      size = value;
    },
    records: () => (async function* () {})(),
    readProgress: () => ({ done: progress.bytes, total: size > 0 ? size : undefined, unit: 'bytes' }),
  };
}

/**
 * Hands every operation of the (checked) plan to `onItem`, in the file's order, and sums them up as the planner's
 * summary would. Stops early when `signal` is aborted (a graceful stop): the rest is not queued.
 */
export async function feedPlan(
  path: string,
  plan: PlanHeader,
  checked: CheckedPlan,
  now: Date,
  onItem: (item: PlanItem) => void | Promise<void>,
  options: { signal?: AbortSignal; progress?: { bytes: number }; guard?: RecentEventsGuard } = {},
): Promise<PlanSummary> {
  const destinations = plan.destinations.map((d) => d.destination);
  const summary = new PlanSummary(destinations, now, 0, []);
  summary.participants = checked.people;
  if (plan.pilot) summary.pilot = { people: checked.people, ...plan.pilot };
  for await (const { text, number } of planLines(path, options.progress)) {
    if (options.signal?.aborted) break;
    if (number === 1) continue;
    const entry = parsePlanLine(text, path, number, destinations);
    if (entry.type !== 'operation') continue;
    // An event withheld when the plan was made is recorded so (skipped, or held for a later decision); the others
    // the campaign guard judges as the planner would have, at the time the plan is applied.
    const item: PlanItem =
      entry.withheld !== undefined && entry.operation.kind === 'track'
        ? { type: 'withheld', operation: entry.operation, action: entry.withheld }
        : guardEvent({ type: 'operation', operation: entry.operation }, false, options.guard, now);
    summary.add(item);
    await onItem(item);
  }
  return summary;
}

function capitalized(text: string): string {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

function labels(destinations: readonly Destination[]): string {
  return destinations.map((d) => DESTINATION_LABELS[d]).join(' and ');
}
