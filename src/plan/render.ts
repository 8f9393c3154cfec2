import { EVENT_KINDS, type Destination, type EventKind, DESTINATION_LABELS } from '../config/defaults.js';
import { formatLocation } from '../model/participant.js';
import { joinLines } from '../terminal-text.js';
import type { TraitValue } from '../model/traits.js';
import { describePilot, type DestinationCounts, type PersonChange, type PlanSummary, type ProblemKindCount } from './summary.js';
import type { AccountPlan } from './types.js';

/**
 * Text rendering of a plan summary for people (DESIGN.md §9): tables and bars, no colour, no TTY needed. Lines
 * are joined with `joinLines`, which shows a line break or control character inside a value escaped.
 */

const EVENT_LABEL: Record<EventKind, string> = {
  joined: 'joined',
  referralMade: 'referral made',
  converted: 'converted',
  rewardEarned: 'reward earned',
  tierChanged: 'tier changed',
};
const BAR_WIDTH = 30;
/** Kinds of invalid rows or warnings listed in text; --json and --out list every row. */
const KINDS_SHOWN = 10;

/** How an input file was read (a file source's `inputs()`). */
export interface InputSummary {
  file: string;
  encoding: string;
  detected: boolean;
  reason: string;
  delimiter: string;
}

export interface RenderHeader {
  title: string;
  /** Trait names (of the first destination) shown for new people; the rest are in --out. */
  headlineTraits: readonly string[];
  source: string;
  /** Each file read and how it was decoded. */
  inputs?: readonly InputSummary[];
  programId: string;
  state: string;
  stateIsEmpty: boolean;
  /** The campaign guard's lines (cli/run/recent-events.ts), shown in place of the plain 72-hour warning. */
  recentEvents?: readonly string[];
  /** How the ids' namespaces were chosen, when not from the credentials as set (diff without keys, a rotated key). */
  ids?: readonly string[];
}

export function renderPlanSummary(summary: PlanSummary, header: RenderHeader): string {
  const out: string[] = [];
  out.push(header.title);
  out.push(`  source   ${header.source}`);
  const inputs = header.inputs ?? [];
  // One file: the source line names it already.
  for (const input of inputs) out.push(`  encoding ${describeInput(input, inputs.length > 1)}`);
  out.push(`  program  ${header.programId}`);
  out.push(`  state    ${header.state}${header.stateIsEmpty ? ' (empty: everything is new)' : ''}`);
  for (const line of header.ids ?? []) out.push(`  ids      ${line}`);
  out.push('');
  out.push(
    `Participants: ${summary.participants} planned, ${summary.invalid} invalid, ${summary.warnings} warning${summary.warnings === 1 ? '' : 's'}`,
  );
  if (summary.accounts > 0) out.push(renderAccountLine(summary));
  if (summary.pilot) out.push(describePilot(summary.pilot));
  out.push('');
  out.push(...renderCounts(summary));
  out.push('');
  out.push(...renderDistribution(summary));
  const changes = renderChanges(summary, header.headlineTraits);
  if (changes.length > 0) out.push('', ...changes);
  const accounts = renderAccountChanges(summary);
  if (accounts.length > 0) out.push('', ...accounts);
  const where = '--json (or --out plan.jsonl)';
  if (summary.invalid > 0) out.push('', ...renderProblems(`Invalid rows (${count(summary.invalid)}, not planned)`, summary.invalidKinds.kinds(), summary.invalid, where));
  if (summary.warnings > 0) out.push('', ...renderProblems(`Warnings (${count(summary.warnings)})`, summary.warningKinds.kinds(), summary.warnings, where));
  if (header.recentEvents !== undefined && header.recentEvents.length > 0) {
    // The campaign guard's lines: the count, examples, and what the run does with them.
    out.push('', ...header.recentEvents);
  } else if (summary.customerioRecentEvents > 0) {
    out.push(
      '',
      `! ${summary.customerioRecentEvents} Customer.io event${summary.customerioRecentEvents === 1 ? ' is' : 's are'} timestamped within the last 72 hours: ` +
        'Customer.io can trigger campaigns from them. Pause event-triggered campaigns first if that is not wanted.',
    );
  }
  out.push('', renderVerdict(summary));
  return `${joinLines(out)}\n`;
}

const DELIMITER_NAMES: Record<string, string> = { ';': 'semicolon-separated', '\t': 'tab-separated' };

/** `export.csv: windows-1252 (detected: not valid UTF-8 (first at line 3, byte 0xE9))`. */
export function describeInput(input: InputSummary, withFile = true): string {
  const how = input.detected ? `detected: ${input.reason}` : 'as --encoding asked';
  const delimiter = DELIMITER_NAMES[input.delimiter];
  return `${withFile ? `${input.file}: ` : ''}${input.encoding} (${how})${delimiter ? `, ${delimiter}` : ''}`;
}

function renderCounts(summary: PlanSummary): string[] {
  const destinations = summary.destinationOrder;
  const rows: [string, string, (d: Destination) => number][] = [
    ['identify', 'new', (d) => summary.destinations[d]!.identify.new],
    ['', 'changed', (d) => summary.destinations[d]!.identify.changed],
  ];
  // backfill re-identifies people whose traits did not change: a row of its own, not counted as changed.
  if (destinations.some((d) => summary.destinations[d]!.identify.refresh > 0)) rows.push(['', 're-identify', (d) => summary.destinations[d]!.identify.refresh]);
  rows.push(['', 'unchanged', (d) => summary.destinations[d]!.identify.unchanged]);
  EVENT_KINDS.forEach((kind, index) => {
    rows.push([index === 0 ? 'events' : '', EVENT_LABEL[kind], (d) => summary.destinations[d]!.events[kind].send]);
  });
  rows.push(['', 'already sent', (d) => sumDeduped(summary, d)]);
  if (summary.accounts > 0) {
    const accounts = (d: Destination): DestinationCounts['accounts'] => summary.destinations[d]!.accounts;
    rows.push(['accounts', 'new', (d) => accounts(d).new], ['', 'changed', (d) => accounts(d).changed]);
    if (destinations.some((d) => accounts(d).refresh > 0)) rows.push(['', 're-send traits', (d) => accounts(d).refresh]);
    rows.push(['', 'unchanged', (d) => accounts(d).unchanged], ['', 'members to add', (d) => accounts(d).membersToAdd]);
    rows.push(['', 'already joined', (d) => accounts(d).membersRelated]);
  }
  if (destinations.some((d) => summary.destinations[d]!.withheld > 0)) rows.push(['', 'recent, withheld', (d) => summary.destinations[d]!.withheld]);
  if (destinations.some((d) => summary.destinations[d]!.skipped > 0)) rows.push(['', 'skipped earlier', (d) => summary.destinations[d]!.skipped]);
  if (destinations.some((d) => summary.destinations[d]!.dead > 0)) {
    rows.push(['', 'dead (see retry)', (d) => summary.destinations[d]!.dead]);
  }
  rows.push(['to send', '', (d) => summary.destinations[d]!.operations]);
  const labelWidth = 24;
  const columnWidth = Math.max(...destinations.map((d) => DESTINATION_LABELS[d].length)) + 2;
  const lines = [' '.repeat(labelWidth) + destinations.map((d) => DESTINATION_LABELS[d].padStart(columnWidth)).join('')];
  for (const [group, label, value] of rows) {
    const left = `${group.padEnd(10)}${label}`.padEnd(labelWidth);
    lines.push(left + destinations.map((d) => String(value(d)).padStart(columnWidth)).join(''));
  }
  return lines;
}

function sumDeduped(summary: PlanSummary, destination: Destination): number {
  const events = summary.destinations[destination]!.events;
  return EVENT_KINDS.reduce((sum, kind) => sum + events[kind].deduped, 0);
}

function renderDistribution(summary: PlanSummary): string[] {
  const lines = ['Tiers'];
  const tiers = summary.tierDistribution();
  const total = Math.max(1, summary.participants);
  const nameWidth = Math.max(16, ...tiers.map((t) => t.tier.length + 2));
  const max = Math.max(1, ...tiers.map((t) => t.count));
  for (const { tier, count } of tiers) lines.push(barLine(tier, count, max, total, nameWidth));
  lines.push('Channel');
  const channelMax = Math.max(1, summary.channels.referral, summary.channels.organic);
  lines.push(barLine('referral', summary.channels.referral, channelMax, total, nameWidth));
  lines.push(barLine('organic', summary.channels.organic, channelMax, total, nameWidth));
  return lines;
}

function barLine(label: string, count: number, max: number, total: number, width: number): string {
  const length = count === 0 ? 0 : Math.max(1, Math.round((count / max) * BAR_WIDTH));
  const percent = `${Math.round((count / total) * 100)}%`;
  return `  ${label.padEnd(width)}${String(count).padStart(8)}  ${'█'.repeat(length).padEnd(BAR_WIDTH)} ${percent.padStart(4)}`;
}

function renderChanges(summary: PlanSummary, headlineTraits: readonly string[]): string[] {
  if (summary.changes.length === 0) return [];
  const first = summary.destinationOrder[0]!;
  const counts = summary.destinations[first]!.identify;
  const total = counts.new + counts.changed + counts.refresh;
  const shown = summary.changes.length;
  const lines = [
    `People to identify (${DESTINATION_LABELS[first]} trait names; ${shown === total ? `all ${total}` : `first ${shown} of ${total}, --full for all`})`,
  ];
  for (const person of summary.changes) lines.push(...renderPerson(person, headlineTraits));
  return lines;
}

function renderPerson(person: PersonChange, headlineTraits: readonly string[]): string[] {
  if (person.change === 'new') {
    const traits = person.changes
      .filter((c) => headlineTraits.includes(c.trait))
      .map((c) => `${c.trait}=${formatValue(c.after)}`)
      .join(', ');
    return [`  + ${person.userId} (new)  ${truncate(traits, 160)}`];
  }
  if (person.change === 'refresh') return [`  = ${person.userId}  (re-identify, no change)`];
  return [
    `  ~ ${person.userId}`,
    ...person.changes.map((c) => `      ${c.trait}: ${formatValue(c.before)} → ${formatValue(c.after)}`),
  ];
}

/** `Accounts: 12 (3 new, 1 changed, 8 unchanged), 5 members to add`, counted at the first destination that has them. */
function renderAccountLine(summary: PlanSummary): string {
  const counts = summary.destinations[summary.accountsFrom!]!.accounts;
  const parts = [`${counts.new} new`, `${counts.changed} changed`];
  if (counts.refresh > 0) parts.push(`${counts.refresh} re-sent unchanged`);
  parts.push(`${counts.unchanged} unchanged`);
  return `Accounts: ${summary.accounts} (${parts.join(', ')}), ${counts.membersToAdd} member${counts.membersToAdd === 1 ? '' : 's'} to add`;
}

/** The accounts whose traits this plan sends, before → after, like people. */
function renderAccountChanges(summary: PlanSummary): string[] {
  if (summary.accountChanges.length === 0) return [];
  const from = summary.accountsFrom!;
  const counts = summary.destinations[from]!.accounts;
  const total = counts.new + counts.changed + counts.refresh;
  const shown = summary.accountChanges.length;
  const lines = [`Accounts to update (${DESTINATION_LABELS[from]}; ${shown === total ? `all ${total}` : `first ${shown} of ${total}, --full for all`})`];
  for (const account of summary.accountChanges) lines.push(...renderAccount(account));
  return lines;
}

function renderAccount(account: AccountPlan): string[] {
  const members = `${account.members} member${account.members === 1 ? '' : 's'}${account.newMembers > 0 ? `, ${account.newMembers} joining` : ''}`;
  if (account.change === 'new') {
    const traits = account.changes.map((c) => `${c.trait}=${formatValue(c.after)}`).join(', ');
    return [`  + ${account.accountId} (new, ${members})  ${truncate(traits, 160)}`];
  }
  if (account.change === 'refresh') return [`  = ${account.accountId} (${members})  (traits re-sent, no change)`];
  return [`  ~ ${account.accountId} (${members})`, ...account.changes.map((c) => `      ${c.trait}: ${formatValue(c.before)} → ${formatValue(c.after)}`)];
}

/**
 * The first problems, and where the rest are: text stays readable with 3,000 bad rows, and `where` names the
 * flags that list every one (diff: `--json` or `--out`; sync/backfill: `--json`).
 */
/**
 * Invalid rows or warnings, a few lines however many there are: per kind (`problemKind`), its count and its first
 * row in full, then where a few more are. A kind with only a few rows lists each in full, as it is no longer than
 * its summary would be. `where` names the output that lists every one.
 */
export function renderProblems(title: string, kinds: readonly ProblemKindCount[], total: number, where: string): string[] {
  const lines = [`${title}${kinds.length > 1 ? `, ${kinds.length} kinds` : ''}:`];
  const counted = kinds.filter((kind) => kind.count > kind.examples.length);
  const width = counted.reduce((max, kind) => Math.max(max, count(kind.count).length), 0);
  for (const kind of kinds.slice(0, KINDS_SHOWN)) {
    if (kind.count <= kind.examples.length) {
      for (const problem of kind.examples) lines.push(`  ${formatLocation(problem.location)}: ${problem.message}`);
      continue;
    }
    const [first, ...more] = kind.examples;
    if (first === undefined) continue;
    lines.push(`  ${count(kind.count).padStart(width)} × ${formatLocation(first.location)}: ${first.message}`);
    const places = more.filter((p) => p.location !== undefined).map((p) => formatLocation(p.location));
    lines.push(`  ${' '.repeat(width)}   and ${count(kind.count - 1)} more like it${places.length > 0 ? `, e.g. ${places.join(', ')}` : ''}`);
  }
  const hidden = kinds.slice(KINDS_SHOWN);
  if (hidden.length > 0) {
    const rows = hidden.reduce((sum, k) => sum + k.count, 0);
    lines.push(`  … and ${count(hidden.length)} more kind${hidden.length === 1 ? '' : 's'} (${count(rows)} row${rows === 1 ? '' : 's'})`);
  }
  if (total > kinds.slice(0, KINDS_SHOWN).reduce((sum, kind) => sum + Math.min(kind.count, kind.examples.length), 0)) lines.push(`  ${where} lists every one`);
  return lines;
}

function renderVerdict(summary: PlanSummary): string {
  if (!summary.hasChanges) return 'No changes: nothing would be sent.';
  const parts = summary.destinationOrder.map((d) => `${summary.destinations[d]!.operations} to ${DESTINATION_LABELS[d]}`);
  return `Would send ${parts.join(' and ')}. Nothing was sent and the state was not changed.`;
}

function formatValue(value: TraitValue | undefined): string {
  if (value === undefined) return '∅';
  if (value === null) return 'null';
  return typeof value === 'string' ? value : String(value);
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}
