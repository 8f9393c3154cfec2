import type { DestinationReport } from '../../apply/engine.js';
import type { Clock } from '../../apply/limiter.js';
import { waitingIn } from '../../apply/queue.js';
import { metDeadDelivery, reclaimLeftovers, supersedeAfterCompleteRead } from '../../apply/retry-selection.js';
import { type Destination, DESTINATION_LABELS } from '../../config/defaults.js';
import type { DestinationClient } from '../../destinations/types.js';
import { ExitCode, InterruptedError, UsageError } from '../../errors.js';
import { describeInput, renderProblems, type InputSummary } from '../../plan/render.js';
import type { PlanSummary } from '../../plan/summary.js';
import type { PlanMode } from '../../plan/types.js';
import { openState } from '../../state/open.js';
import type { Source } from '../../sources/source.js';
import type { StateStore } from '../../state/store.js';
import { preflight } from '../run/preflight.js';
import { recordRunEnd } from '../run/run-end.js';
import { createEngine, parseStallTimeout, stalledLines } from '../wiring/delivery.js';
import { outcomeJson, plural, reportJson, reportOutcome, runOutcome } from '../run/outcome.js';
import { createDestinationClients, parseRateMode, parseRates, ratesGiven, type DestinationFlags } from '../wiring/destinations.js';
import { runDiff, type DiffFlags } from './diff.js';
import { jsonChunks, StreamedArray } from '../output/json-stream.js';
import type { Output } from '../output/output.js';
import { runPlan } from '../run/plan-run.js';
import { assertKnownDestinations, assertKnownProgram } from '../run/program-guard.js';
import { describeNamespaces, resolveNamespaces } from '../run/namespaces.js';
import { ProblemLog } from '../output/problem-log.js';
import { RunProgress } from '../output/progress.js';
import { accountPlanning, assertAccountRule, destinationNamespaces, resolveCommon, resolveSource } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { joinLines } from '../../terminal-text.js';
import { statSync } from 'node:fs';
import { PilotSelection } from '../../plan/pilot.js';
import type { PlanHeader } from '../../plan/plan-format.js';
import { describePilot } from '../../plan/summary.js';
import type { PlanItem } from '../../plan/types.js';
import { pilotCommand } from '../../state/store.js';
import { assertPlanFitsRun, assertStateUnmoved, checkPlanLines, feedPlan, planFileSource, planStateLocation, readPlanHeader } from '../run/plan-apply.js';
import { resolvePilot } from '../wiring/pilot.js';
import { toolVersion } from '../wiring/version.js';
import { groupProblems, type Outstanding } from '../../state/problem-groups.js';
import { outstandingJson, renderOutstanding } from '../output/outstanding.js';
import type { RecentEventDecision } from '../../config/defaults.js';
import { HELD_REASON, SKIPPED_REASON, type RecentEventsGuard } from '../../plan/recent-events.js';
import type { Operation } from '../../plan/types.js';
import type { ReclaimableQueue } from '../../state/store.js';
import type { PromptStreams } from '../output/prompt.js';
import { decidedLine, decideRecentEvents, recentEventsDecision, recentEventsGuard, settleUndecided, WITHDRAWN_REASON } from '../run/recent-events.js';

export interface ApplyFlags extends DiffFlags, DestinationFlags {
  dryRun?: boolean;
  /** `--plan <file>`: send exactly the operations of a plan `diff --out` wrote, and read no source. */
  plan?: string;
  /** `--stall-timeout`: a destination without progress this long stops; its work is kept for the next run. */
  stallTimeout?: string;
  resend?: boolean;
  json?: boolean;
  /** `--fail-on-outstanding`: exit 1 when failed or dead deliveries of earlier runs are still in the state. */
  failOnOutstanding?: boolean;
}

/** `sync` (only what changed) and `backfill` (re-identify everyone): plan, then apply the same plan. */
export async function runApply(
  command: 'sync' | 'backfill',
  flags: ApplyFlags,
  env: Env,
  cwd: string,
  output: Output,
  now: Date,
  interrupt?: AbortSignal,
  clock?: Clock,
  /** The terminal to ask the campaign guard's question on; undefined when nobody is at one (cron, CI, a pipe). */
  terminal?: PromptStreams,
): Promise<ExitCode> {
  const mode: PlanMode = command;
  // Every flag is checked before anything else, dry run or not: a dry run accepts exactly what the real run does.
  const rates = parseRates(flags.rate);
  const stallTimeoutMs = parseStallTimeout(flags.stallTimeout);
  parseRateMode(flags.rateMode);
  if (flags.plan !== undefined) assertPlanFlags(command, flags);
  const pilot = resolvePilot(flags);
  recentEventsDecision(flags.recentEvents, {});
  if (flags.dryRun) {
    // A dry run is diff: the same planner, flags, output and exit codes; the state opened read-only, nothing sent.
    return runDiff({ ...flags, mode, resend: flags.resend === true }, env, cwd, output, now, clock);
  }
  const previewFlags = [flags.full ? '--full' : '', flags.out !== undefined ? '--out' : '', flags.detailedExitcode ? '--detailed-exitcode' : ''].filter(Boolean);
  if (previewFlags.length > 0) {
    throw new UsageError(`${previewFlags.join(', ')} ${previewFlags.length === 1 ? 'belongs' : 'belong'} to a preview: add --dry-run to ${command} (or run \`npx referral-sync diff\`) to use ${previewFlags.length === 1 ? 'it' : 'them'}.`);
  }
  const common = resolveCommon(flags, env, cwd);
  if (flags.plan !== undefined) return applyPlan(command, flags.plan, { flags, common, env, cwd, output, now, interrupt, clock, rates, stallTimeoutMs, terminal });
  assertAccountRule(common.config);
  const { source, sourceKind, programId, programIdDefaulted, watermarkSource } = await resolveSource(flags, env, common.config, output, common.statePath, clock);
  const credentialNamespaces = destinationNamespaces(common.config, env);
  const clients = createDestinationClients(common.destinations, flags, env);
  const state = await openState(common.statePath, { mode: 'write' });
  let lockTaken = false;
  const problems = flags.json === true || common.logFormat === 'json' ? { invalid: new ProblemLog(), warnings: new ProblemLog() } : undefined;
  try {
    await state.acquireLock(programId, command, now);
    lockTaken = true;
    await state.markCrashedRuns(programId, now);
    // Rotated credentials (`state rotate`) keep the ids of the namespace the history was delivered under.
    const { namespaces, resolved } = await resolveNamespaces(state, credentialNamespaces, { source: sourceKind, programId, destinations: common.destinations }, { withoutCredentials: false });
    for (const line of describeNamespaces(resolved, programId)) output.verbose(line);
    const identity = { source: sourceKind, programId, programIdDefaulted, destinations: common.destinations, namespaces, confirmedNew: flags.newProgram === true, confirmedNewDestination: flags.newDestination === true };
    await assertKnownProgram(state, identity);
    await assertKnownDestinations(state, identity);
    source.useCache?.({
      get: (service, key, maxAgeMs) => state.cachedLookup(service, key, maxAgeMs, new Date()),
      put: (service, key, value) => state.cacheLookup(service, key, value, new Date()),
    });
    await preflight(clients, output, interrupt, clock);
    const backfillSince = mode === 'backfill' ? ((await state.unfinishedBackfillStart(programId)) ?? now) : undefined;
    const recent = await recentEventsGuard(state, mode, programId, common.destinations, recentEventsDecision(flags.recentEvents, common.config));
    if (recent.historyLoad.length > 0 && recent.decision === undefined && terminal === undefined && source.rereadable) {
      // Nobody to ask, and no decision: the run stops with exit 64 if the plan holds recent events. Found by a
      // plan that writes nothing (as diff's), so that the stop leaves the state as it was: no run, no program
      // recorded under these credentials, nothing held. A second read of the files, paid only on this path. (The
      // API is read once: there the run plans into the queue and withdraws it when it stops.)
      const preview = await runPlan({
        source,
        config: common.config,
        destinations: common.destinations,
        mode,
        ...(backfillSince ? { backfillSince } : {}),
        recentEvents: recent,
        resend: flags.resend === true,
        now,
        namespaces,
        baseline: state.baseline(),
        ...(await accountPlanning(common.config, source, flags.customerioApi, state, pilot !== undefined)),
        changeLimit: 0,
        outFile: undefined,
        ...(pilot ? { pilot: new PilotSelection(pilot) } : {}),
        output,
        ...(interrupt ? { signal: interrupt } : {}),
      });
      if (interrupt?.aborted) throw new InterruptedError(String(interrupt.reason));
      if (preview.recentEvents.undecided > 0) await decideRecentEvents(preview.recentEvents, recent, mode, undefined, interrupt);
    }
    // Recorded before anything is sent (a run killed mid-way has delivered part of this program already), and not
    // before: a run the campaign guard stops ties the state to no credentials.
    const recordPrograms = (): Promise<void> => state.recordPrograms(sourceKind, programId, common.destinations.map((destination) => ({ destination, namespace: namespaces[destination] })), now);
    // A pilot is recorded as such: it never counts as the program's complete run (a finished backfill).
    const runId = await state.startRun(pilot ? pilotCommand(command) : command, programId, now);
    const selection = pilot ? new PilotSelection(pilot) : undefined;
    const result = await deliver({ command, mode, flags, output, state, clients, rates, runId, programId, now, backfillSince, source, common, namespaces, interrupt, stallTimeoutMs, problems, clock, recent, terminal, recordPrograms, ...(selection ? { pilot: selection } : {}) });
    // The next --quick starts from this run's start, and only once a run went through without failures (its own:
    // what earlier runs left outstanding does not hold it back); a pilot left everyone else unsent, so it never
    // moves the watermark.
    if (result.runExitCode === ExitCode.ok && watermarkSource && !pilot) await state.setWatermark(programId, watermarkSource, now.getTime(), new Date());
    return result.exitCode;
  } finally {
    await endRun(state, programId, lockTaken, problems);
  }
}

interface DeliverContext {
  command: 'sync' | 'backfill';
  mode: PlanMode;
  flags: ApplyFlags;
  output: Output;
  state: StateStore;
  clients: Map<Destination, DestinationClient>;
  rates: Record<Destination, number>;
  runId: number;
  programId: string;
  now: Date;
  backfillSince: Date | undefined;
  source: Source;
  common: ReturnType<typeof resolveCommon>;
  /** The ids' namespaces, rotated credentials resolved. */
  namespaces: Record<Destination, string>;
  /** Aborted by SIGINT/SIGTERM (its reason is the signal's name): a graceful stop. */
  interrupt: AbortSignal | undefined;
  stallTimeoutMs: number;
  /** With --json: every invalid row and warning, kept off the heap until written. */
  problems: { invalid: ProblemLog; warnings: ProblemLog } | undefined;
  clock: Clock | undefined;
  /** A pilot (`--limit`, `--only`): only these people are planned and sent. */
  pilot?: PilotSelection;
  /** `--plan`: the operations come from the plan file instead of the planner (no source is read). */
  applied?: { file: string; header: PlanHeader; feed: (onItem: (item: PlanItem) => void | Promise<void>, signal: AbortSignal | undefined) => Promise<PlanSummary> };
  /** The campaign guard: the destinations this run loads history into, and the decision, if one was given. */
  recent: RecentEventsGuard;
  terminal: PromptStreams | undefined;
  /** Records the program under this run's credentials: called once, right before the senders start. */
  recordPrograms: () => Promise<void>;
}

/** How a run ended (`runExitCode`), and the exit code the command returns (--fail-on-outstanding may raise it). */
interface Delivered {
  runExitCode: ExitCode;
  exitCode: ExitCode;
}

async function deliver(ctx: DeliverContext): Promise<Delivered> {
  const { output, state, clients, interrupt, recent } = ctx;
  let progress = new RunProgress(output, ctx.source, ctx.common.destinations);
  const queue = state.queue(ctx.programId);
  // A history load that has not decided to send its recent events knows them before its first send: the whole plan
  // goes into the durable queue, the guard decides, and only then do the senders start. Skip and hold wait too, so
  // that a run stopped while planning has acknowledged nothing and the next sync is still a first load, guarded.
  // Otherwise (an incremental sync, or `send` decided up front) the senders drain the queue as it fills.
  const deferred = recent.historyLoad.length > 0 && recent.decision !== 'send';
  const aside = new SetAside(queue, ctx.runId);
  const stop = (): void => engine.stop();
  const engine = createEngine({
    queue,
    runId: ctx.runId,
    clients,
    rates: ctx.rates,
    stallTimeoutMs: ctx.stallTimeoutMs,
    ratesGiven: ratesGiven(ctx.flags.rate),
    rateMode: parseRateMode(ctx.flags.rateMode),
    // Through the variable: after the guard's question, a new display takes over.
    onProgress: (destination, report) => progress.delivered(destination, report),
    clock: ctx.clock,
  });
  const started = performance.now();
  let summary: PlanSummary | undefined;
  let reports: Map<Destination, DestinationReport>;
  const problems = ctx.problems;
  const metDead = new Set<string>();
  // From here on the run is recorded `running`: whatever fails (the state itself included) ends it `failed`.
  try {
    // What an earlier run left in the queue is not sent as it was planned: it waits in the ledger, failed, with what
    // earlier runs could not deliver, and goes out again only if this run plans it again from the source.
    const reclaimed = await reclaimLeftovers(queue, ctx.common.destinations, ctx.now);
    if (reclaimed > 0) {
      output.info(
        ctx.applied
          ? `${plural(reclaimed, 'operation', 'operations')} an interrupted run left unsent ${reclaimed === 1 ? 'is' : 'are'} kept for the next sync or \`retry\`: this run sends the plan's operations only.`
          : `${plural(reclaimed, 'operation', 'operations')} an interrupted run left unsent ${reclaimed === 1 ? 'is' : 'are'} sent again if the source still shows ${reclaimed === 1 ? 'it' : 'them'}.`,
      );
    }
    for (const d of ctx.common.destinations) progress.alreadyQueued(d, await queue.waiting(d));
    interrupt?.addEventListener('abort', stop, { once: true });
    if (!deferred) {
      await ctx.recordPrograms();
      await engine.start();
    }
    const onItem = (item: PlanItem): Promise<void> | undefined => {
      // A dead delivery the source still shows, met again: kept for `retry` (the others are superseded below).
      metDeadDelivery(item, metDead);
      // The campaign guard's: withheld as decided, or held until the decision once planning is over.
      if (item.type === 'withheld') return aside.add(item.operation, item.action === 'skip' ? 'skipped' : 'held');
      if (item.type !== 'operation') return undefined;
      if (item.recent === 'undecided') return aside.add(item.operation, 'held');
      progress.operationPlanned(item.operation.destination);
      return engine.enqueue(item.operation);
    };
    if (ctx.applied) {
      progress.startPass('read');
      summary = await ctx.applied.feed(onItem, interrupt);
      progress.readDone();
    } else {
      summary = await runPlan({
        source: ctx.source,
        config: ctx.common.config,
        destinations: ctx.common.destinations,
        mode: ctx.mode,
        resend: ctx.flags.resend === true,
        now: ctx.now,
        namespaces: ctx.namespaces,
        baseline: state.baseline(ctx.runId),
        ...(await accountPlanning(ctx.common.config, ctx.source, ctx.flags.customerioApi, state, ctx.pilot !== undefined)),
        changeLimit: 0,
        outFile: undefined,
        output,
        ...(interrupt ? { signal: interrupt } : {}),
        ...(problems ? { problems } : {}),
        ...(ctx.backfillSince ? { backfillSince: ctx.backfillSince } : {}),
        ...(ctx.pilot ? { pilot: ctx.pilot } : {}),
        recentEvents: recent,
        progress,
        onItem,
      });
    }
    await aside.flush();
    await engine.endOfPlan();
    if (deferred) {
      // A question is asked below the bars, which stop drawing first; a new display follows it for the sending.
      const asking = summary.recentEvents.undecided > 0 && ctx.terminal !== undefined && !interrupt?.aborted;
      if (asking) progress.stop();
      const started = await decideThenStart(ctx, summary, queue, engine);
      if (asking && started) {
        progress = new RunProgress(output, ctx.source, ctx.common.destinations);
        progress.readDone();
      }
    }
    const line = decidedLine(summary.recentEvents);
    if (line) output.info(line);
    const waiting = new Map<Destination, number>();
    for (const d of ctx.common.destinations) waiting.set(d, await queue.waiting(d));
    progress.planQueued((d) => waiting.get(d) ?? 0);
    reports = await engine.finish();
  } catch (error) {
    progress.stop();
    // Whatever was sent before the failure is in the ledger; the rest stays in the queue for the next run.
    engine.stop(0);
    await engine.finish().catch(() => undefined);
    await recordRunEnd(state, ctx.runId, interrupt?.aborted ? 'interrupted' : 'failed', countsOf(engine.reports, summary));
    throw error;
  } finally {
    interrupt?.removeEventListener('abort', stop);
  }
  progress.stop();
  const elapsed = (performance.now() - started) / 1000;
  const counts = countsOf(reports, summary);
  let outcome: ReturnType<typeof runOutcome>;
  try {
    const left = interrupt?.aborted ? await waitingIn(queue, ctx.common.destinations) : 0;
    // Only a run that read and planned the whole source can tell what it no longer shows: not a pilot (it planned
    // a few people) nor a plan's (it read no source).
    if (!interrupt?.aborted && ctx.source.partial !== true && ctx.pilot === undefined && ctx.applied === undefined) {
      const superseded = await supersedeAfterCompleteRead(state, ctx.programId, ctx.common.destinations, ctx.runId, metDead, new Date());
      if (superseded > 0) output.info(`${plural(superseded, 'operation', 'operations')} earlier runs could not deliver ${superseded === 1 ? 'is' : 'are'} superseded, not sent: the source no longer shows ${superseded === 1 ? 'it' : 'them'}.`);
    }
    outcome = runOutcome(reports, elapsed, interrupt, left);
    await state.finishRun(ctx.runId, outcome.outcome === 'done' ? 'succeeded' : outcome.outcome, counts, new Date());
  } catch (error) {
    // Everything was sent and recorded, but the run's own row could not be ended: try once more, then say why.
    await recordRunEnd(state, ctx.runId, interrupt?.aborted ? 'interrupted' : 'failed', counts);
    throw error;
  }

  // What earlier runs left failed or dead is in the state until it is dealt with: every summary says so. Counted by
  // the state (GROUP BY), so a million dead deliveries cost a few rows here.
  const earlier = await groupProblems(state.problemCounts({ programId: ctx.programId, notRunId: ctx.runId }));
  const exitCode = outcome.exitCode === ExitCode.ok && ctx.flags.failOnOutstanding === true && earlier.total > 0 ? ExitCode.failedDeliveries : outcome.exitCode;

  // Warnings first: the summary's last line is the run's verdict, whatever the reader sees last.
  for (const line of stalledLines(reports)) output.warn(line);
  const inputs = ctx.source.inputs?.();
  const lookups = ctx.source.lookups?.();
  if (problems) {
    const lists = { invalidRows: new StreamedArray(() => problems.invalid.entries()), warningRows: new StreamedArray(() => problems.warnings.entries()) };
    const json = {
      command: ctx.command,
      ...outcomeJson(outcome),
      exitCode,
      programId: ctx.programId,
      ...(inputs ? { inputs } : {}),
      ...(lookups ? { lookups } : {}),
      state: state.location,
      ...(ctx.applied ? { planFile: { path: ctx.applied.file, createdAt: ctx.applied.header.createdAt, mode: ctx.applied.header.mode } } : {}),
      elapsedSeconds: Math.round(elapsed * 1000) / 1000,
      plan: summary.toJSON(lists),
      delivery: Object.fromEntries([...reports].map(([d, r]) => [d, reportJson(r)])),
      outstanding: outstandingJson(earlier),
    };
    await output.resultStream(jsonChunks(json, output.jsonIndent(ctx.flags.json)));
    output.result('\n');
  } else {
    const notes = [
      ...(ctx.applied ? [`  plan ${ctx.applied.file} (made ${ctx.applied.header.createdAt}): ${plural(summary.operations, 'operation', 'operations')} sent as reviewed`] : []),
      ...(summary.pilot ? [`  ${describePilot(summary.pilot)}`] : []),
    ];
    output.result(renderDelivery(ctx.command, summary, reports, state.location, inputs ?? [], earlier, notes));
  }
  for (const value of ctx.pilot?.unmatched() ?? []) output.warn(`--only ${value} matched no participant (by user id or participant id): nothing was sent for it.`);
  reportDataProblems(output, summary);
  reportOutstanding(output, ctx.command, earlier, exitCode !== outcome.exitCode);
  reportOutcome(output, ctx.command, outcome, problems !== undefined);
  if (exitCode !== outcome.exitCode) output.error(`${ctx.command}: exit ${exitCode}: --fail-on-outstanding, and ${plural(earlier.total, 'delivery', 'deliveries')} of earlier runs ${earlier.total === 1 ? 'is' : 'are'} still not delivered.`, { exitCode, outstanding: earlier.total });
  return { runExitCode: outcome.exitCode, exitCode };
}

/**
 * Earlier runs' failed and dead deliveries, counted on stderr too (the summary groups them), so that a cron job
 * that keeps only stderr hears of them on every run until they are dealt with.
 */
function reportOutstanding(output: Output, command: string, earlier: Outstanding, failing: boolean): void {
  if (earlier.total === 0) return;
  const parts = [earlier.dead > 0 ? `${earlier.dead.toLocaleString('en-US')} dead` : '', earlier.failed > 0 ? `${earlier.failed.toLocaleString('en-US')} failed` : ''].filter(Boolean).join(', ');
  const advice = failing ? '' : '; --fail-on-outstanding makes a run exit 1 while they wait';
  output.warn(`${command}: ${plural(earlier.total, 'delivery', 'deliveries')} of earlier runs ${earlier.total === 1 ? 'is' : 'are'} still not delivered (${parts}): the summary groups them by reason and says what to run (\`npx referral-sync status\` too)${advice}.`, { outstanding: earlier.total, dead: earlier.dead, failed: earlier.failed });
}

/**
 * Rows not sent and warnings are listed in the result (stdout); they are also counted on stderr, so a cron job
 * that keeps only stderr hears of them.
 */
function reportDataProblems(output: Output, summary: PlanSummary): void {
  if (summary.invalid + summary.warnings > 0) {
    const parts = [summary.invalid > 0 ? `${plural(summary.invalid, 'invalid row was', 'invalid rows were')} not sent` : '', summary.warnings > 0 ? plural(summary.warnings, 'warning', 'warnings') : ''].filter(Boolean);
    output.warn(`${parts.join(' and ')}: the summary lists them with file, line and reason (--json lists every one).`, { invalid: summary.invalid, warnings: summary.warnings });
  }
}

function countsOf(
  reports: Map<Destination, DestinationReport>,
  summary: PlanSummary | undefined,
): { participants: number; invalid: number; sent: number; failed: number; dead: number } {
  const counts = { participants: summary?.participants ?? 0, invalid: summary?.invalid ?? 0, sent: 0, failed: 0, dead: 0 };
  for (const r of reports.values()) {
    counts.sent += r.sent;
    counts.failed += r.failed;
    counts.dead += r.dead;
  }
  return counts;
}

function renderDelivery(command: string, summary: PlanSummary, reports: Map<Destination, DestinationReport>, state: string, inputs: readonly InputSummary[], earlier: Outstanding, notes: readonly string[] = []): string {
  const lines = [
    `referral-sync ${command}: ${summary.participants} participants, ${summary.invalid} invalid${summary.warnings ? `, ${plural(summary.warnings, 'warning', 'warnings')}` : ''} (state ${state})`,
    ...inputs.map((input) => `  read ${describeInput(input)}`),
    ...notes,
    '',
    `${''.padEnd(14)}${'sent'.padStart(9)}${'deduped'.padStart(9)}${'failed'.padStart(9)}${'dead'.padStart(9)}${'elapsed'.padStart(10)}${'rate'.padStart(11)}`,
  ];
  for (const [destination, report] of reports) {
    const counts = summary.destinations[destination];
    const deduped = counts ? Object.values(counts.events).reduce((sum, e) => sum + e.deduped, 0) + counts.identify.unchanged + counts.accounts.membersRelated : 0;
    const seconds = Math.max(0.001, ((report.finishedAt ?? performance.now()) - report.startedAt) / 1000);
    lines.push(
      `${DESTINATION_LABELS[destination].padEnd(14)}${String(report.sent).padStart(9)}${String(deduped).padStart(9)}${String(report.failed).padStart(9)}${String(report.dead).padStart(9)}${`${seconds.toFixed(1)}s`.padStart(10)}${`${Math.round(report.sent / seconds)}/s`.padStart(11)}`,
    );
  }
  if (summary.invalid > 0) lines.push('', ...renderProblems(`Invalid rows (${summary.invalid.toLocaleString('en-US')}, not sent)`, summary.invalidKinds.kinds(), summary.invalid, '--json'));
  if (summary.warnings > 0) lines.push('', ...renderProblems(`Warnings (${summary.warnings.toLocaleString('en-US')})`, summary.warningKinds.kinds(), summary.warnings, '--json'));
  for (const [destination, report] of reports) {
    if (report.settledRate !== undefined) lines.push('', `${DESTINATION_LABELS[destination]}'s adaptive rate settled at ${report.settledRate.toFixed(0)} requests/s.`);
  }
  const outstanding = renderOutstanding('Still not delivered from earlier runs:', earlier, { programs: false });
  if (outstanding.length > 0) lines.push('', ...outstanding);
  lines.push('');
  return `${joinLines(lines)}\n`;
}


/** Flags that choose what to read or how to plan: a plan was read and planned already, so they have no place. */
const NOT_WITH_PLAN: readonly [keyof ApplyFlags, string][] = [
  ['file', '--file'],
  ['source', '--source'],
  ['quick', '--quick'],
  ['encoding', '--encoding'],
  ['delimiter', '--delimiter'],
  ['format', '--format'],
  ['enrich', '--enrich'],
  ['maxWait', '--max-wait'],
  ['userId', '--user-id'],
  ['groupId', '--group-id'],
  ['syncNulls', '--sync-nulls'],
  ['resend', '--resend'],
  ['newProgram', '--new-program'],
  ['newDestination', '--new-destination'],
  ['limit', '--limit'],
  ['only', '--only'],
  ['dryRun', '--dry-run'],
  ['full', '--full'],
  ['out', '--out'],
  ['detailedExitcode', '--detailed-exitcode'],
];

/** `--plan` takes no flag that reads a source or plans: the plan was made with them (its header says how). */
function assertPlanFlags(command: 'sync' | 'backfill', flags: ApplyFlags): void {
  const given = NOT_WITH_PLAN.filter(([key]) => flags[key] !== undefined && flags[key] !== false).map(([, name]) => name);
  if (given.length === 0) return;
  throw new UsageError(`--plan sends a plan exactly as it was made, reading no source: ${given.join(', ')} cannot be combined with it.`, {
    hint: `Pass ${given.length === 1 ? 'that flag' : 'those flags'} to the diff that makes the plan (\`npx referral-sync ${command === 'backfill' ? 'backfill --dry-run' : 'diff'} … --out plan.jsonl\`), then run \`referral-sync ${command} --plan plan.jsonl\` without ${given.length === 1 ? 'it' : 'them'}.`,
  });
}

interface PlanApplyContext {
  flags: ApplyFlags;
  common: ReturnType<typeof resolveCommon>;
  env: Env;
  cwd: string;
  output: Output;
  now: Date;
  interrupt: AbortSignal | undefined;
  clock: Clock | undefined;
  rates: Record<Destination, number>;
  stallTimeoutMs: number;
  terminal: PromptStreams | undefined;
}

/**
 * `sync --plan` / `backfill --plan`: the plan's header is checked against this run (command, program,
 * destinations, credentials) and its every line before anything else; then, under the program's lock, against the
 * state (the same one, not moved since). Its operations then go through the same queue, senders, ledger and
 * outcome as a run's, with their keys and payloads as written. Nothing is read from a source, and the watermark of
 * `--quick` stays where it was (this run did not read the source).
 */
async function applyPlan(command: 'sync' | 'backfill', file: string, ctx: PlanApplyContext): Promise<ExitCode> {
  const { flags, common, env, output, now } = ctx;
  const header = await readPlanHeader(file, toolVersion());
  const credentialNamespaces = destinationNamespaces(common.config, env);
  const campaign = (flags.campaign ?? env.GROWSURF_CAMPAIGN_ID)?.trim() || undefined;
  // A namespace other than the plan's may be a rotated credential (`state rotate`): checked once the state says.
  const planned = Object.fromEntries(header.destinations.map((d) => [d.destination, d.namespace]));
  const fits = (namespaces: Record<Destination, string>): void =>
    assertPlanFitsRun(header, file, { command, campaign, destinations: common.destinations, namespaces, customerioApi: flags.customerioApi });
  fits({ ...credentialNamespaces, ...planned });
  const checked = await checkPlanLines(file, header);
  const programId = header.program.id;
  const source = planFileSource(file);
  source.size = statSync(file).size;
  const clients = createDestinationClients(common.destinations, { ...flags, customerioApi: header.customerioApi }, env);
  const state = await openState(common.statePath, { mode: 'write' });
  let lockTaken = false;
  const problems = flags.json === true || common.logFormat === 'json' ? { invalid: new ProblemLog(), warnings: new ProblemLog() } : undefined;
  try {
    await state.acquireLock(programId, command, now);
    lockTaken = true;
    await state.markCrashedRuns(programId, now);
    await assertStateUnmoved(header, file, state, planStateLocation(common.statePath, ctx.cwd, state));
    const { namespaces } = await resolveNamespaces(state, credentialNamespaces, { source: header.program.source, programId, destinations: common.destinations }, { withoutCredentials: false });
    fits(namespaces);
    const identity = {
      source: header.program.source,
      programId,
      programIdDefaulted: header.program.defaulted,
      destinations: common.destinations,
      namespaces,
      confirmedNew: header.confirmed.newProgram,
      confirmedNewDestination: header.confirmed.newDestination,
    };
    await assertKnownProgram(state, identity);
    await assertKnownDestinations(state, identity);
    await preflight(clients, output, ctx.interrupt, ctx.clock);
    // A plan is applied under the campaign guard as the run it stands for: its recent events, judged now, wait
    // for the same decision (a plan made without one lists them as operations).
    const recent = await recentEventsGuard(state, header.mode, programId, common.destinations, recentEventsDecision(flags.recentEvents, common.config));
    if (recent.historyLoad.length > 0 && recent.decision === undefined && ctx.terminal === undefined) {
      // As a run without a decision and nobody to ask: stop before the run is recorded, so that the plan can still
      // be applied, with --recent-events, to the state it was made against.
      const preview = await feedPlan(file, header, checked, now, () => undefined, { guard: recent });
      if (preview.recentEvents.undecided > 0) await decideRecentEvents(preview.recentEvents, recent, header.mode, undefined, ctx.interrupt);
    }
    const recordPrograms = (): Promise<void> => state.recordPrograms(header.program.source, programId, common.destinations.map((destination) => ({ destination, namespace: namespaces[destination] })), now);
    const runId = await state.startRun(header.pilot ? pilotCommand(command) : command, programId, now);
    const delivered = await deliver({
      recent,
      terminal: ctx.terminal,
      recordPrograms,
      command,
      mode: header.mode,
      flags: { ...flags, customerioApi: header.customerioApi, resend: header.resend },
      output,
      state,
      clients,
      rates: ctx.rates,
      runId,
      programId,
      now,
      backfillSince: undefined,
      source,
      common,
      namespaces,
      interrupt: ctx.interrupt,
      stallTimeoutMs: ctx.stallTimeoutMs,
      problems,
      clock: ctx.clock,
      applied: { file, header, feed: (onItem, signal) => feedPlan(file, header, checked, now, onItem, { ...(signal ? { signal } : {}), progress: source.progress, guard: recent }) },
    });
    return delivered.exitCode;
  } finally {
    await endRun(state, programId, lockTaken, problems);
  }
}

/**
 * For a history load whose senders wait: once the plan is complete, the decision on its recent events (given, asked
 * on a terminal, or a stop with exit 64) is applied to the events it held, then the senders start. A run that stops
 * here takes its queued work back out (`withdraw`): nothing is sent later by surprise (`retry` included), and the
 * next sync or backfill plans it again through the same guard. Returns whether the senders started.
 */
async function decideThenStart(ctx: DeliverContext, summary: PlanSummary, queue: ReclaimableQueue, engine: ReturnType<typeof createEngine>): Promise<boolean> {
  const { recent, interrupt } = ctx;
  const undecided = summary.recentEvents.undecided;
  const withdraw = async (): Promise<void> => {
    const withdrawn = await queue.withdraw(WITHDRAWN_REASON, new Date());
    if (withdrawn > 0) ctx.output.verbose(`${plural(withdrawn, 'queued operation', 'queued operations')} taken back out of the queue, unsent: the next run plans ${withdrawn === 1 ? 'it' : 'them'} again.`);
  };
  if (interrupt?.aborted) {
    await withdraw();
    return false;
  }
  if (undecided > 0) {
    let decision: RecentEventDecision | undefined;
    try {
      decision = await decideRecentEvents(summary.recentEvents, recent, ctx.mode, ctx.terminal, interrupt);
    } catch (error) {
      await withdraw();
      throw error;
    }
    if (decision === undefined) {
      // Interrupted while asking: nothing was sent, nothing will be.
      await withdraw();
      return false;
    }
    settleUndecided(summary.recentEvents, decision);
    if (decision !== 'hold') await queue.decideHeld(ctx.runId, decision, SKIPPED_REASON, new Date());
  }
  await ctx.recordPrograms();
  await engine.start();
  return true;
}

/** Operations recorded at once by `SetAside`. */
const SET_ASIDE_BATCH = 500;

/** The campaign guard's events, written beside the queue (held or skipped ledger rows) in batches. */
class SetAside {
  private readonly buffers = { held: [] as Operation[], skipped: [] as Operation[] };

  constructor(
    private readonly queue: Pick<ReclaimableQueue, 'setAside'>,
    private readonly runId: number,
  ) {}

  add(operation: Operation, status: 'held' | 'skipped'): Promise<void> | undefined {
    const buffer = this.buffers[status];
    buffer.push(operation);
    return buffer.length >= SET_ASIDE_BATCH ? this.write(status) : undefined;
  }

  async flush(): Promise<void> {
    await this.write('held');
    await this.write('skipped');
  }

  private async write(status: 'held' | 'skipped'): Promise<void> {
    const operations = this.buffers[status].splice(0);
    if (operations.length > 0) await this.queue.setAside(operations, status, status === 'held' ? HELD_REASON : SKIPPED_REASON, this.runId, new Date());
  }
}

/**
 * What every run does last, however it ended. Neither step may hide how the run ended (the error being thrown, or
 * the outcome already recorded): a lock left behind is a dead runner's, which the next run takes over (SQLite) or
 * the server has freed with the session.
 */
async function endRun(state: StateStore, programId: string, lockTaken: boolean, problems: { invalid: ProblemLog; warnings: ProblemLog } | undefined): Promise<void> {
  problems?.invalid.close();
  problems?.warnings.close();
  if (lockTaken) await state.releaseLock(programId).catch(() => undefined);
  await state.close().catch(() => undefined);
}
