import { reasonKey } from './reason-key.js';
import type { Operation, PlanItem } from './types.js';

/**
 * One line of `diff --out plan.jsonl`: the operation and the exact payload it would send. After the payload come
 * what the state records once the destination acknowledges it (traits and their hash, the generation, the tier
 * move, an event's time), so that `sync --plan` can apply the line as it is (plan-apply.ts reads it back).
 */
export function planFileLine(operation: Operation, withheld?: 'skip' | 'hold'): string {
  const line: Record<string, unknown> = {
    // An event the campaign guard withheld as decided (--recent-events skip|hold): not sent, but recorded as
    // skipped or held when the plan is applied, as the run would, so that no later sync takes it for new.
    ...(withheld !== undefined ? { type: 'withheld', action: withheld } : {}),
    destination: operation.destination,
    kind: operation.kind,
  };
  if (operation.kind === 'track') {
    line.event = operation.event;
    line.name = operation.name;
  } else if (operation.kind === 'identify') {
    line.change = operation.change;
  } else {
    line.accountId = operation.accountId;
    line.membership = operation.membership;
  }
  line.key = operation.key;
  line.userId = operation.userId;
  line.participantId = operation.participantId;
  line.payload = operation.payload;
  if (operation.kind === 'track') {
    line.time = operation.time === undefined ? null : operation.time.toISOString();
  } else if (operation.kind === 'identify') {
    line.traits = operation.traits;
    line.traitsHash = operation.traitsHash;
    line.tierChanges = operation.tierChanges;
    if (operation.generation !== undefined) line.generation = operation.generation;
    if (operation.tierMove !== undefined) line.tierMove = operation.tierMove;
  } else {
    if (operation.accountTraits !== undefined) line.accountTraits = operation.accountTraits;
    if (operation.generation !== undefined) line.generation = operation.generation;
  }
  return `${JSON.stringify(line)}\n`;
}

export type ProblemItem = Extract<PlanItem, { type: 'invalid' | 'warning' }>;

/**
 * An invalid row or a warning as data: where (file, line), why, and for a destination limit which limit, how
 * big and how big it may be. The same object in `--json` lists and (with its `type`) in the plan file.
 */
export function problemEntry(item: ProblemItem): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    file: item.location?.file ?? null,
    line: item.location?.line ?? null,
    reason: item.type === 'invalid' ? item.reason : item.message,
    kind: problemKind(item),
  };
  if (item.type === 'invalid' && item.participantId !== undefined) entry.participantId = item.participantId;
  if (item.destination !== undefined) entry.destination = item.destination;
  if (item.limits !== undefined) entry.limits = item.limits;
  return entry;
}

/**
 * The kind of an invalid row or a warning: its code where it was made (a stable name), else its reason with the
 * details replaced (`reasonKey`), so that rows of one kind are counted on one line.
 */
export function problemKind(item: ProblemItem): string {
  return item.code ?? reasonKey(item.type === 'invalid' ? item.reason : item.message);
}

/** A plan file line for an invalid row or a warning: `{"type":"invalid",…}` beside the operation lines. */
export function planFileProblemLine(item: ProblemItem): string {
  return `${JSON.stringify({ type: item.type, ...problemEntry(item) })}\n`;
}
