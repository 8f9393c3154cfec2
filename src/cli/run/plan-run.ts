import { closeSync, createWriteStream, fchmodSync, fstatSync, openSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Config } from '../../config/config.js';
import type { Destination } from '../../config/defaults.js';
import { UsageError } from '../../errors.js';
import type { SourceRecord } from '../../model/participant.js';
import { ReferrerDirectory, scanDirectory } from '../../model/referrer-directory.js';
import { planFileLine, planFileProblemLine, problemEntry } from '../../plan/plan-file.js';
import type { AccountPlanning, PlanContext } from '../../plan/context.js';
import { planOperations } from '../../plan/planner.js';
import { withBaselineLoaded } from '../../plan/prefetch.js';
import type { PilotSelection } from '../../plan/pilot.js';
import type { RecentEventsGuard } from '../../plan/recent-events.js';
import { PlanSummary } from '../../plan/summary.js';
import type { BaselineView, PlanItem, PlanMode } from '../../plan/types.js';
import type { Source } from '../../sources/source.js';
import type { Output } from '../output/output.js';
import type { ProblemLog } from '../output/problem-log.js';
import { RunProgress, type ReadListener } from '../output/progress.js';

export interface PlanRunOptions {
  source: Source;
  config: Config;
  destinations: Destination[];
  mode: PlanMode;
  resend: boolean;
  now: Date;
  namespaces: Record<Destination, string>;
  baseline: BaselineView;
  /** Set with --group-id: how accounts are planned. */
  accounts?: AccountPlanning;
  /** backfill: identities acknowledged since this time are not re-identified (resuming a crashed backfill). */
  backfillSince?: Date;
  /** The campaign guard (plan/recent-events.ts): which destinations this run loads history into, and the decision. */
  recentEvents?: RecentEventsGuard;
  changeLimit: number;
  /** Path of the JSONL plan file, if one was asked for. */
  outFile: string | undefined;
  /** The plan file's first line (plan-format.ts): what the plan was made for. */
  outHeader?: string;
  /** A pilot (`--limit`, `--only`): only these people's items are planned, counted and handed on. */
  pilot?: PilotSelection;
  output: Output;
  /** Aborted: stop reading and planning (a graceful stop); what was planned so far stands. */
  signal?: AbortSignal;
  /** Where every invalid row and warning is kept in full, for `--json` (the summary keeps only samples). */
  problems?: { invalid: ProblemLog; warnings: ProblemLog };
  /** Called for every item after the summary has counted it (apply hooks in here). */
  onItem?: (item: PlanItem) => void | Promise<void>;
  /** The run's progress display (sync's, with its destinations); without one, runPlan shows reading on its own. */
  progress?: ReadListener;
}

/** read → enrich → plan: the steps `diff`, `sync` and `backfill` share, over one planner. */
export async function runPlan(options: PlanRunOptions): Promise<PlanSummary> {
  const { output } = options;
  const own = options.progress === undefined ? new RunProgress(output, options.source, []) : undefined;
  const progress = options.progress ?? own!;
  try {
    const summary = await readAndPlan(options, progress);
    // Not on a failure: the bars then stay as they stood, not marked done.
    progress.readDone();
    return summary;
  } finally {
    own?.stop();
  }
}

async function readAndPlan(options: PlanRunOptions, progress: ReadListener): Promise<PlanSummary> {
  const { output } = options;
  const counted = async function* (records: AsyncIterable<SourceRecord>): AsyncGenerator<SourceRecord> {
    for await (const record of records) {
      if (options.signal?.aborted) return;
      if (record.kind === 'participant') progress.participantRead();
      yield record;
    }
  };
  // A file is read twice: once to index referrers, once to plan. An API source is read once: it carries each
  // referrer's identity with the participant (GrowSurf embeds a referrer summary), and a second scan would
  // cost another full round of requests.
  if (options.source.rereadable) progress.startPass('index');
  const { directory, duplicates } = options.source.rereadable
    ? await scanDirectory(counted(options.source.records()), options.config.identity)
    : { directory: new ReferrerDirectory(options.config.identity), duplicates: new Set<string>() };
  output.verbose(`Indexed ${directory.size} participants for referrer lookups.`);

  const summary = new PlanSummary(
    options.destinations,
    options.now,
    options.changeLimit,
    options.config.tiers.map((t) => t.name),
  );
  const file = options.outFile === undefined ? undefined : openPlanFile(options.outFile);
  if (file && options.outHeader !== undefined && !file.write(options.outHeader)) await once(file, 'drain');
  progress.startPass('read');
  try {
    const context: PlanContext = {
      config: options.config,
      destinations: options.destinations,
      mode: options.mode,
      resend: options.resend,
      now: options.now,
      namespaces: options.namespaces,
      directory,
      duplicates,
      baseline: options.baseline,
      ...(options.backfillSince ? { backfillSince: options.backfillSince } : {}),
      ...(options.recentEvents ? { recentEvents: options.recentEvents } : {}),
      ...(options.accounts ? { accounts: options.accounts } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const records = withBaselineLoaded(options.source.records(), context, options.signal ? { signal: options.signal } : {});
    const items = planOperations(counted(records), context);
    const take = async (item: PlanItem): Promise<void> => {
      summary.add(item);
      if (item.type === 'invalid' || item.type === 'warning') {
        options.problems?.[item.type === 'invalid' ? 'invalid' : 'warnings'].add(problemEntry(item));
        // The plan file lists every problem beside the operations, so nothing in it is ever capped.
        if (file && !file.write(planFileProblemLine(item))) await once(file, 'drain');
      }
      if (file && item.type === 'operation' && !file.write(planFileLine(item.operation))) await once(file, 'drain');
      if (file && item.type === 'withheld' && !file.write(planFileLine(item.operation, item.action))) await once(file, 'drain');
      if (options.onItem) await options.onItem(item);
    };
    const { pilot } = options;
    for await (const item of items) {
      if (pilot === undefined) await take(item);
      else for (const kept of pilot.pass(item)) await take(kept);
    }
    if (pilot !== undefined) {
      for (const kept of pilot.end()) await take(kept);
      summary.pilot = { people: pilot.people, participants: pilot.participants, ...pilot.spec };
    }
  } finally {
    directory.close();
    await options.source.close?.();
    if (file) {
      file.end();
      await once(file, 'close');
    }
  }
  return summary;
}

/**
 * Opens the plan file up front, so a bad path fails before any reading with exit 64 and the path.
 *
 * The plan holds people's data (emails, names, every payload), so it is written like the state: mode 0600 from
 * its first byte. A new file is created 0600; a file that already exists is emptied by the open and narrowed to
 * 0600 before anything is written to it, whatever its mode was (a plan is never left readable by others because
 * an older file was). A file whose mode this user cannot change (another user's) is refused, nothing written.
 * A device or a pipe (`--out /dev/stdout`) keeps its mode: it holds nothing.
 */
function openPlanFile(path: string): WriteStream {
  let fd: number;
  try {
    fd = openSync(path, 'w', 0o600);
  } catch (error) {
    throw new UsageError(`Cannot write the plan file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}.`, {
      hint: 'Pass --out a file in a directory you can write.',
    });
  }
  try {
    // Only a regular file keeps the data; a device or pipe (`--out /dev/stdout`) is left as it is.
    if (fstatSync(fd).isFile()) fchmodSync(fd, 0o600);
  } catch (error) {
    closeSync(fd);
    throw new UsageError(`Cannot limit the plan file ${path} to its owner (mode 0600): ${(error as NodeJS.ErrnoException).code ?? String(error)}; it would hold people's data, so nothing was written to it.`, {
      hint: 'Pass --out a new file, or one you own.',
    });
  }
  return createWriteStream(path, { fd, encoding: 'utf8' });
}
