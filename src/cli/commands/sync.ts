import type { DestinationReport } from '../../apply/engine.js';
import type { Clock } from '../../apply/limiter.js';
import { waitingIn } from '../../apply/queue.js';
import { metDeadDelivery, reclaimLeftovers, supersedeAfterCompleteRead } from '../../apply/retry-selection.js';
import { type Destination, DESTINATION_LABELS } from '../../config/defaults.js';
import type { DestinationClient } from '../../destinations/types.js';
import { ExitCode, UsageError } from '../../errors.js';
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

export interface ApplyFlags extends DiffFlags, DestinationFlags {
  dryRun?: boolean;
  /** `--stall-timeout`: a destination without progress this long stops; its work is kept for the next run. */
  stallTimeout?: string;
  resend?: boolean;
  json?: boolean;
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
): Promise<ExitCode> {
  const mode: PlanMode = command;
  // Every flag is checked before anything else, dry run or not: a dry run accepts exactly what the real run does.
  const rates = parseRates(flags.rate);
  const stallTimeoutMs = parseStallTimeout(flags.stallTimeout);
  parseRateMode(flags.rateMode);
  if (flags.dryRun) {
    // A dry run is diff: the same planner, flags, output and exit codes; the state opened read-only, nothing sent.
    return runDiff({ ...flags, mode, resend: flags.resend === true }, env, cwd, output, now, clock);
  }
  const previewFlags = [flags.full ? '--full' : '', flags.out !== undefined ? '--out' : '', flags.detailedExitcode ? '--detailed-exitcode' : ''].filter(Boolean);
  if (previewFlags.length > 0) {
    throw new UsageError(`${previewFlags.join(', ')} ${previewFlags.length === 1 ? 'belongs' : 'belong'} to a preview: add --dry-run to ${command} (or run \`npx referral-sync diff\`) to use ${previewFlags.length === 1 ? 'it' : 'them'}.`);
  }
  const common = resolveCommon(flags, env, cwd);
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
    // Recorded before anything is sent: a run killed mid-way has delivered part of this program already.
    await state.recordPrograms(sourceKind, programId, common.destinations.map((destination) => ({ destination, namespace: namespaces[destination] })), now);
    const backfillSince = mode === 'backfill' ? ((await state.unfinishedBackfillStart(programId)) ?? now) : undefined;
    const runId = await state.startRun(command, programId, now);
    const result = await deliver({ command, mode, flags, output, state, clients, rates, runId, programId, now, backfillSince, source, common, namespaces, interrupt, stallTimeoutMs, problems, clock });
    // The next --quick starts from this run's start, and only once a run went through without failures.
    if (result === ExitCode.ok && watermarkSource) await state.setWatermark(programId, watermarkSource, now.getTime(), new Date());
    return result;
  } finally {
    problems?.invalid.close();
    problems?.warnings.close();
    // Neither may hide how the run ended (the error being thrown, or the outcome already recorded): a lock left
    // behind is a dead runner's, which the next run takes over (SQLite) or the server has freed with the session.
    if (lockTaken) await state.releaseLock(programId).catch(() => undefined);
    await state.close().catch(() => undefined);
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
}

async function deliver(ctx: DeliverContext): Promise<ExitCode> {
  const { output, state, clients, interrupt } = ctx;
  const progress = new RunProgress(output, ctx.source, ctx.common.destinations);
  const queue = state.queue(ctx.programId);
  const stop = (): void => engine.stop();
  const engine = createEngine({
    queue,
    runId: ctx.runId,
    clients,
    rates: ctx.rates,
    stallTimeoutMs: ctx.stallTimeoutMs,
    ratesGiven: ratesGiven(ctx.flags.rate),
    rateMode: parseRateMode(ctx.flags.rateMode),
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
    if (reclaimed > 0) output.info(`${plural(reclaimed, 'operation', 'operations')} an interrupted run left unsent ${reclaimed === 1 ? 'is' : 'are'} sent again if the source still shows ${reclaimed === 1 ? 'it' : 'them'}.`);
    for (const d of ctx.common.destinations) progress.alreadyQueued(d, await queue.waiting(d));
    interrupt?.addEventListener('abort', stop, { once: true });
    await engine.start();
    summary = await runPlan({
      source: ctx.source,
      config: ctx.common.config,
      destinations: ctx.common.destinations,
      mode: ctx.mode,
      resend: ctx.flags.resend === true,
      now: ctx.now,
      namespaces: ctx.namespaces,
      baseline: state.baseline(ctx.runId),
      ...(await accountPlanning(ctx.common.config, ctx.source, ctx.flags.customerioApi, state)),
      changeLimit: 0,
      outFile: undefined,
      output,
      ...(interrupt ? { signal: interrupt } : {}),
      ...(problems ? { problems } : {}),
      ...(ctx.backfillSince ? { backfillSince: ctx.backfillSince } : {}),
      progress,
      onItem: (item) => {
        // A dead delivery the source still shows, met again: kept for `retry` (the others are superseded below).
        metDeadDelivery(item, metDead);
        if (item.type !== 'operation') return;
        progress.operationPlanned(item.operation.destination);
        return engine.enqueue(item.operation);
      },
    });
    engine.endOfPlan();
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
    // Only a run that read the whole source can tell what it no longer shows.
    if (!interrupt?.aborted && ctx.source.partial !== true) {
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

  // Warnings first: the summary's last line is the run's verdict, whatever the reader sees last.
  for (const line of stalledLines(reports)) output.warn(line);
  const inputs = ctx.source.inputs?.();
  const lookups = ctx.source.lookups?.();
  if (problems) {
    const lists = { invalidRows: new StreamedArray(() => problems.invalid.entries()), warningRows: new StreamedArray(() => problems.warnings.entries()) };
    const json = {
      command: ctx.command,
      ...outcomeJson(outcome),
      programId: ctx.programId,
      ...(inputs ? { inputs } : {}),
      ...(lookups ? { lookups } : {}),
      state: state.location,
      elapsedSeconds: Math.round(elapsed * 1000) / 1000,
      plan: summary.toJSON(lists),
      delivery: Object.fromEntries([...reports].map(([d, r]) => [d, reportJson(r)])),
    };
    await output.resultStream(jsonChunks(json, output.jsonIndent(ctx.flags.json)));
    output.result('\n');
  } else {
    output.result(renderDelivery(ctx.command, summary, reports, state.location, inputs ?? []));
  }
  reportDataProblems(output, summary);
  reportOutcome(output, ctx.command, outcome, problems !== undefined);
  return outcome.exitCode;
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

function renderDelivery(command: string, summary: PlanSummary, reports: Map<Destination, DestinationReport>, state: string, inputs: readonly InputSummary[]): string {
  const lines = [
    `referral-sync ${command}: ${summary.participants} participants, ${summary.invalid} invalid${summary.warnings ? `, ${plural(summary.warnings, 'warning', 'warnings')}` : ''} (state ${state})`,
    ...inputs.map((input) => `  read ${describeInput(input)}`),
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
  if (summary.invalid > 0) lines.push('', ...renderProblems(`Invalid rows (${summary.invalid}, not sent):`, summary.invalidSamples, summary.invalid, '--json'));
  if (summary.warnings > 0) lines.push('', ...renderProblems(`Warnings (${summary.warnings}):`, summary.warningSamples, summary.warnings, '--json'));
  for (const [destination, report] of reports) {
    if (report.settledRate !== undefined) lines.push('', `${DESTINATION_LABELS[destination]}'s adaptive rate settled at ${report.settledRate.toFixed(0)} requests/s.`);
  }
  lines.push('');
  return `${joinLines(lines)}\n`;
}

