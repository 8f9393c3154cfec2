import { DESTINATION_LABELS, RECENT_EVENT_DECISIONS, type Destination, type RecentEventDecision } from '../../config/defaults.js';
import type { Config } from '../../config/config.js';
import { UsageError } from '../../errors.js';
import { GUARDED_DESTINATIONS, type RecentEventsGuard } from '../../plan/recent-events.js';
import type { RecentEventsSummary } from '../../plan/summary.js';
import type { PlanMode } from '../../plan/types.js';
import type { StateReader } from '../../state/store.js';
import { askChoice, type PromptStreams } from '../output/prompt.js';
import { joinLines } from '../../terminal-text.js';
import { plural } from './outcome.js';

/**
 * The campaign guard's run step (issue 19, point 1; the pure rule is plan/recent-events.ts): which destinations this
 * run loads history into, what the user decided, and, for a history load that has no decision, the question on a
 * terminal or the stop (exit 64) without one.
 */

/** `--recent-events`, else the config's "recentEvents": undefined when neither decides. */
export function recentEventsDecision(flag: string | undefined, config: Pick<Config, 'recentEvents'>): RecentEventDecision | undefined {
  if (flag === undefined) return config.recentEvents;
  const decision = flag.trim().toLowerCase();
  if (!(RECENT_EVENT_DECISIONS as readonly string[]).includes(decision)) {
    throw new UsageError(`--recent-events takes ${RECENT_EVENT_DECISIONS.join(', ')}, not "${flag}".`);
  }
  return decision as RecentEventDecision;
}

/**
 * The destinations whose recent events a run of `mode` guards: for a backfill, every guarded destination it sends
 * to; for a sync, those where the state holds nothing acknowledged for this program yet (its first load there).
 */
export async function historyLoads(state: Pick<StateReader, 'acknowledgedDestinations'>, mode: PlanMode, programId: string, destinations: readonly Destination[]): Promise<Destination[]> {
  const guarded = destinations.filter((d) => GUARDED_DESTINATIONS.includes(d));
  if (mode === 'backfill' || guarded.length === 0) return guarded;
  const acknowledged = await state.acknowledgedDestinations(programId, guarded);
  return guarded.filter((d) => !acknowledged.includes(d));
}

export async function recentEventsGuard(
  state: Pick<StateReader, 'acknowledgedDestinations'>,
  mode: PlanMode,
  programId: string,
  destinations: readonly Destination[],
  decision: RecentEventDecision | undefined,
): Promise<RecentEventsGuard> {
  return { historyLoad: await historyLoads(state, mode, programId, destinations), decision };
}

/** "612 Customer.io events", "a backfill" / "the first load into Customer.io". */
function whatAndWhy(count: number, guard: RecentEventsGuard, mode: PlanMode): string {
  const where = guard.historyLoad.map((d) => DESTINATION_LABELS[d]).join(' and ');
  const load = mode === 'backfill' ? 'a backfill' : `the first load of this program into ${where}`;
  return `${plural(count, `${where} event`, `${where} events`)} of ${load} ${count === 1 ? 'is' : 'are'} timestamped within the last 72 hours and could trigger campaigns`;
}

/** A few of them: person, event, timestamp. */
export function exampleLines(recent: RecentEventsSummary): string[] {
  const lines = recent.examples.map((e) => `  ${e.userId}  ${e.event}  ${e.time}`);
  if (recent.guarded > recent.examples.length) lines.push(`  … and ${(recent.guarded - recent.examples.length).toLocaleString('en-US')} more`);
  return lines;
}

const ACTIONS: Record<RecentEventDecision, string> = {
  send: 'sends them',
  skip: 'skips them for good (never sent, by this run or a later one)',
  hold: 'holds them: a later run sends them once you pass --recent-events send, or once they are older than 72 hours',
};

/**
 * What `diff` says of the guard, as the run would act: the count, a few examples, and what happens to them. Empty
 * when the plan holds no guarded event.
 */
export function guardLines(recent: RecentEventsSummary, guard: RecentEventsGuard, mode: PlanMode, preview: string): string[] {
  if (recent.guarded === 0) return [];
  const lines = [`! ${whatAndWhy(recent.guarded, guard, mode)}, for example:`, ...exampleLines(recent)];
  const decided = guard.decision;
  if (decided !== undefined) lines.push(`  ${preview} ${ACTIONS[decided]} (--recent-events ${decided}).`);
  else if (guard.historyLoad.length === 0) lines.push(`  ${preview} keeps them held: they were held by an earlier run (--recent-events send sends them).`);
  else {
    lines.push(
      `  ${preview} asks what to do on a terminal; without one it stops before sending anything (exit 64).`,
      `  Decide with --recent-events send|skip|hold (or "recentEvents" in the config).`,
    );
  }
  return lines;
}

/** The stop, without a terminal: nothing was sent; the sentence names the count and the flag. */
function undecidedError(count: number, guard: RecentEventsGuard, mode: PlanMode, recent: RecentEventsSummary): UsageError {
  const examples = recent.examples.map((e) => `${e.userId} ${e.event} ${e.time}`).join('; ');
  return new UsageError(`${whatAndWhy(count, guard, mode)}; nothing was sent. Decide with --recent-events send|skip|hold.`, {
    // One line: a hint is printed as one (cli/main.ts).
    hint: `For example: ${examples}. send: send them now; skip: never send them; hold: keep them for a later run (sent with --recent-events send, or once older than 72 hours). The config key "recentEvents" sets the default for unattended runs.`,
  });
}

/**
 * The decision for a history load that has none, once its plan is complete: asked once on a terminal (showing the
 * count and examples); without a terminal, or when the question gets no answer, a UsageError (exit 64). Resolves
 * undefined when `signal` aborts the question (the run is being interrupted).
 */
export async function decideRecentEvents(
  recent: RecentEventsSummary,
  guard: RecentEventsGuard,
  mode: PlanMode,
  terminal: PromptStreams | undefined,
  signal: AbortSignal | undefined,
): Promise<RecentEventDecision | undefined> {
  const count = recent.undecided;
  if (terminal === undefined) throw undecidedError(count, guard, mode, recent);
  const question = joinLines([
    '',
    `${whatAndWhy(count, guard, mode)}, for example:`,
    ...exampleLines(recent),
    'send: send them now; skip: never send them; hold: keep them for a later run.',
    'Nothing has been sent yet. What should this run do with them? [send/skip/hold] ',
  ]);
  const answer = await askChoice(terminal, question, RECENT_EVENT_DECISIONS, signal ? { signal } : {});
  if (answer === undefined && !signal?.aborted) throw undecidedError(count, guard, mode, recent);
  return answer;
}

/** The line a run prints when the guard kept events from being sent (those sent as decided need no word). */
export function decidedLine(recent: RecentEventsSummary): string | undefined {
  const parts = [
    recent.skip > 0 ? `${recent.skip.toLocaleString('en-US')} skipped for good` : '',
    recent.hold > 0 ? `${recent.hold.toLocaleString('en-US')} held (a later run sends them with --recent-events send, or once they are older than 72 hours; \`status\` counts them)` : '',
  ].filter(Boolean);
  if (parts.length === 0) return undefined;
  return `Recent Customer.io events that could trigger campaigns: ${parts.join(', ')}.`;
}

/** Moves the undecided count into the decision's once it is made, so the summary says what happened. */
export function settleUndecided(recent: RecentEventsSummary, decision: RecentEventDecision): void {
  recent[decision] += recent.undecided;
  recent.undecided = 0;
}

/** Why the queued work of a history load that stopped for a decision is not sent: the next run plans it again. */
export const WITHDRAWN_REASON = 'withdrawn: the run stopped before sending anything, for a decision on recent events (--recent-events); the next sync or backfill plans it again';

/** Whether a person is at the keyboard: stdin and stderr are terminals, and no CI runner says otherwise. */
export function isInteractive(stdin: { isTTY?: boolean } | undefined, stderr: { isTTY?: boolean }, env: { CI?: string | undefined }): boolean {
  const ci = env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0';
  return stdin?.isTTY === true && stderr.isTTY === true && !ci;
}
