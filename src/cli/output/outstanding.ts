import { type Destination, DESTINATION_LABELS } from '../../config/defaults.js';
import type { Outstanding, ProblemGroup } from '../../state/problem-groups.js';

/**
 * Failed and dead deliveries still in the state, as a person reads them after every run and in `status`: a line
 * per group (destination, status, count, reason), an example, and what to run. JSON gives every group.
 */

/** Groups listed in text; `status --json` lists every one. */
export const GROUPS_SHOWN = 10;

/** What deals with a group: `retry` for what failed; for what was refused for good, fixing the cause first. */
export function remedy(group: Pick<ProblemGroup, 'programId' | 'destination' | 'status'>): string {
  const command = retryCommand(group.programId, group.destination);
  return group.status === 'dead'
    ? `refused for good: fix what the reason names (the data, or the destination's settings), then \`${command}\``
    : `\`${command}\` resends them now; the next sync also does while the source still shows them`;
}

export function retryCommand(programId: string | null, destination: Destination): string {
  return `npx referral-sync retry${programId === null ? '' : ` --campaign ${programId}`} --to ${destination}`;
}

/**
 * The text lines for outstanding deliveries, under `title`. `programs`: name the program of each group (status
 * lists every program; a run's summary is about one).
 */
export function renderOutstanding(title: string, outstanding: Outstanding, options: { programs: boolean }): string[] {
  if (outstanding.total === 0) return [];
  const lines = [`${title} ${count(outstanding.total)}: ${[outstanding.dead > 0 ? `${count(outstanding.dead)} dead` : '', outstanding.failed > 0 ? `${count(outstanding.failed)} failed` : ''].filter(Boolean).join(', ')}, in ${outstanding.groups.length} group${outstanding.groups.length === 1 ? '' : 's'}`];
  for (const group of outstanding.groups.slice(0, GROUPS_SHOWN)) {
    const program = options.programs ? `program ${group.programId ?? '(none recorded)'}  ` : '';
    lines.push(`  ${program}${DESTINATION_LABELS[group.destination].padEnd(12)} ${group.status.padEnd(7)}${count(group.count).padStart(9)}  ${group.reason || '(no reason recorded)'}`);
    const { example } = group;
    const detail = example.lastError !== null && example.lastError !== group.reason ? `: ${example.lastError}` : '';
    lines.push(`${' '.repeat(4)}e.g. ${example.userId} (${example.kind}, ${example.at})${detail}`);
    lines.push(`${' '.repeat(4)}${remedy(group)}`);
  }
  const hidden = outstanding.groups.length - GROUPS_SHOWN;
  if (hidden > 0) lines.push(`  … and ${count(hidden)} more group${hidden === 1 ? '' : 's'}: \`npx referral-sync status --json\` lists every one`);
  return lines;
}

/** The JSON form: totals, and every group with what to run. */
export function outstandingJson(outstanding: Outstanding): Record<string, unknown> {
  return {
    total: outstanding.total,
    failed: outstanding.failed,
    dead: outstanding.dead,
    groups: outstanding.groups.map((group) => ({ ...group, remedy: remedy(group), retry: retryCommand(group.programId, group.destination) })),
  };
}

function count(n: number): string {
  return n.toLocaleString('en-US');
}
