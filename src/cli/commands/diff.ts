import type { Clock } from '../../apply/limiter.js';
import type { Config } from '../../config/config.js';
import type { Destination } from '../../config/defaults.js';
import type { PlanMode } from '../../plan/types.js';
import { ExitCode } from '../../errors.js';
import { renderPlanSummary } from '../../plan/render.js';
import type { PlanSummary } from '../../plan/summary.js';
import { parseRateMode, parseRates } from '../wiring/destinations.js';
import { openState } from '../../state/open.js';
import { jsonChunks, StreamedArray } from '../output/json-stream.js';
import type { Output } from '../output/output.js';
import { assertKnownDestinations, assertKnownProgram } from '../run/program-guard.js';
import { describeNamespaces, resolveNamespaces, type ResolvedNamespaces } from '../run/namespaces.js';
import { runPlan } from '../run/plan-run.js';
import { guardLines, recentEventsDecision, recentEventsGuard } from '../run/recent-events.js';
import { ProblemLog } from '../output/problem-log.js';
import { accountPlanning, assertAccountRule, destinationNamespaces, resolveCommon, resolveSource, type CommonFlags, type SourceFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { resolvePilot, type PilotFlags } from '../wiring/pilot.js';
import { toolVersion } from '../wiring/version.js';
import { PilotSelection } from '../../plan/pilot.js';
import { planHeaderFor, planStateLocation } from '../run/plan-apply.js';

export interface DiffFlags extends CommonFlags, SourceFlags, PilotFlags {
  full?: boolean;
  out?: string;
  json?: boolean;
  detailedExitcode?: boolean;
  /** Set by `sync --dry-run` / `backfill --dry-run`: preview that command's plan. */
  mode?: PlanMode;
  resend?: boolean;
  /** Set by `sync --dry-run --customerio-api v1`: the plan leaves Customer.io objects out, as the sync would. */
  customerioApi?: string;
  /** `--recent-events send|skip|hold`: what a history load does with events that could trigger campaigns. */
  recentEvents?: string;
}

const CHANGES_SHOWN = 10;

/** `referral-sync diff`: the plan `sync` would apply, shown and never sent; the state is opened read-only. */
export async function runDiff(flags: DiffFlags, env: Env, cwd: string, output: Output, now: Date, clock?: Clock): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  assertAccountRule(common.config);
  // The rates of the sources it reads (GrowSurf, Cello lookups) apply here too; a bad value is a usage error.
  parseRates(flags.rate);
  parseRateMode(flags.rateMode);
  const pilot = resolvePilot(flags);
  const { source, sourceKind, programId, programIdDefaulted } = await resolveSource(flags, env, common.config, output, common.statePath, clock);
  const state = await openState(common.statePath, { mode: 'read' });
  let namespaces: Record<Destination, string>;
  let assumed: ResolvedNamespaces['resolved'];
  try {
    // diff needs no destination credentials: without them it plans under the namespace the state knows (point 5).
    ({ namespaces, resolved: assumed } = await resolveNamespaces(state, destinationNamespaces(common.config, env), { source: sourceKind, programId, destinations: common.destinations }, { withoutCredentials: true }));
    const identity = { source: sourceKind, programId, programIdDefaulted, destinations: common.destinations, namespaces, confirmedNew: flags.newProgram === true, confirmedNewDestination: flags.newDestination === true };
    await assertKnownProgram(state, identity);
    await assertKnownDestinations(state, identity);
  } catch (error) {
    await state.close();
    throw error;
  }
  // diff reads cached lookups and writes none.
  source.useCache?.({ get: (service, key, maxAgeMs) => state.cachedLookup(service, key, maxAgeMs, now), put: async () => undefined });
  const asJson = flags.json === true || output.json;
  // --json lists every invalid row and warning; they are kept off the heap until they are written.
  const problems = asJson ? { invalid: new ProblemLog(), warnings: new ProblemLog() } : undefined;
  try {
    const stateIsEmpty = (await state.summary(1)).schemaVersion === 0;
    const mode = flags.mode ?? 'sync';
    // As the real run would plan now (issue 19, point 8): a backfill resumes the latest one that did not finish, so
    // what it re-identified since is not counted again. What a killed run left queued needs nothing more: the real
    // run takes it back as failed and plans it again, and the planner treats pending and failed alike.
    const backfillSince = mode === 'backfill' ? ((await state.unfinishedBackfillStart(programId)) ?? now) : undefined;
    const recent = await recentEventsGuard(state, mode, programId, common.destinations, recentEventsDecision(flags.recentEvents, common.config));
    const selection = pilot ? new PilotSelection(pilot) : undefined;
    // The plan file says first what it was made for, so that `sync --plan` applies it only there (plan-apply.ts).
    const outHeader =
      flags.out === undefined
        ? undefined
        : await planHeaderFor({
            version: toolVersion(),
            now,
            mode: flags.mode ?? 'sync',
            resend: flags.resend === true,
            source: sourceKind,
            programId,
            programIdDefaulted,
            destinations: common.destinations,
            namespaces,
            stateLocation: planStateLocation(common.statePath, cwd, state),
            state,
            pilot,
            customerioApi: flags.customerioApi,
            confirmed: { newProgram: flags.newProgram === true, newDestination: flags.newDestination === true },
          });
    const summary = await runPlan({
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
      changeLimit: flags.full ? Number.POSITIVE_INFINITY : CHANGES_SHOWN,
      outFile: flags.out,
      ...(outHeader !== undefined ? { outHeader } : {}),
      ...(selection ? { pilot: selection } : {}),
      output,
      ...(problems ? { problems } : {}),
    });
    const inputs = source.inputs?.();
    const lookups = source.lookups?.();
    if (problems) {
      const lists = { invalidRows: new StreamedArray(() => problems.invalid.entries()), warningRows: new StreamedArray(() => problems.warnings.entries()) };
      const exitCode = exitCodeOf(flags, summary.hasChanges);
      const json = {
        command: 'diff',
        outcome: summary.hasChanges ? 'changes' : 'no changes',
        exitCode,
        source: source.description,
        ...(inputs ? { inputs } : {}),
        ...(lookups ? { lookups } : {}),
        programId,
        state: state.location,
        stateIsEmpty,
        namespaces: assumed,
        ...summary.toJSON(lists),
        recentEvents: { ...summary.recentEvents, historyLoad: recent.historyLoad, decision: recent.decision ?? null },
      };
      if (flags.out) output.info(planWritten(flags.out, summary));
      await output.resultStream(jsonChunks(json, output.jsonIndent(flags.json)));
      output.result('\n');
    } else {
      if (flags.out) output.info(planWritten(flags.out, summary));
      output.result(
        renderPlanSummary(summary, {
          title: `referral-sync ${flags.mode === 'backfill' ? 'backfill' : 'diff'}: what ${flags.mode ?? 'sync'} would send (dry run)`,
          headlineTraits: headlineTraits(common.config, common.destinations),
          source: source.description,
          ...(inputs ? { inputs } : {}),
          programId: programIdDefaulted ? `${programId} (pass --campaign <id> so ids match a later API sync)` : programId,
          state: state.location,
          stateIsEmpty,
          recentEvents: guardLines(summary.recentEvents, recent, mode, mode),
          ids: describeNamespaces(assumed, programId),
        }),
      );
    }
    for (const value of selection?.unmatched() ?? []) output.warn(`--only ${value} matched no participant (by user id or participant id): nothing is planned for it.`);
    return exitCodeOf(flags, summary.hasChanges);
  } finally {
    problems?.invalid.close();
    problems?.warnings.close();
    await state.close();
  }
}

function exitCodeOf(flags: DiffFlags, hasChanges: boolean): ExitCode {
  return flags.detailedExitcode && hasChanges ? ExitCode.changesFound : ExitCode.ok;
}

function planWritten(file: string, summary: PlanSummary): string {
  const extra = [summary.invalid > 0 ? `${summary.invalid} invalid` : '', summary.warnings > 0 ? `${summary.warnings} warning${summary.warnings === 1 ? '' : 's'}` : ''].filter(Boolean);
  return `Plan written to ${file} (${summary.operations} operations${extra.length > 0 ? `, ${extra.join(', ')}` : ''}).`;
}

function headlineTraits(config: Config, destinations: readonly Destination[]): string[] {
  const names = config.traitNames[destinations[0] ?? 'segment'];
  return [names.tier, names.count, names.channel, names.referredBy, names.status];
}
