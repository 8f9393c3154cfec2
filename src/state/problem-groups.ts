import type { Destination } from '../config/defaults.js';
import { reasonKey } from '../plan/reason-key.js';
import type { ProblemCount } from './store.js';

/**
 * Failed and dead deliveries of one program and destination whose reasons differ only in a detail (an id, a byte
 * count: `reasonKey`), counted together, with the newest of them as an example.
 */
export interface ProblemGroup {
  programId: string | null;
  destination: Destination;
  status: 'failed' | 'dead';
  /** The reason with its details replaced (`reasonKey`): what the deliveries of the group have in common. */
  reason: string;
  count: number;
  example: { userId: string; kind: string; key: string; at: string; lastError: string | null };
}

/** What is outstanding: the total, per status, and the groups. */
export interface Outstanding {
  total: number;
  failed: number;
  dead: number;
  groups: ProblemGroup[];
}

/**
 * Folds the state's counts (one per exact reason, `StateReader.problemCounts`) into groups by reason key. Memory
 * holds one entry per group, never a row per delivery. Groups come out by program, destination and status, the
 * largest first within each.
 */
export async function groupProblems(counts: AsyncIterable<ProblemCount>): Promise<Outstanding> {
  const groups = new Map<string, ProblemGroup>();
  const outstanding: Outstanding = { total: 0, failed: 0, dead: 0, groups: [] };
  for await (const count of counts) {
    outstanding.total += count.count;
    outstanding[count.status] += count.count;
    const reason = reasonKey(count.lastError);
    const id = JSON.stringify([count.programId, count.destination, count.status, reason]);
    const example = { userId: count.example.userId, kind: count.example.kind, key: count.example.key, at: count.example.updatedAt, lastError: count.lastError };
    const group = groups.get(id);
    if (group === undefined) {
      groups.set(id, { programId: count.programId, destination: count.destination, status: count.status, reason, count: count.count, example });
      continue;
    }
    group.count += count.count;
    if (example.at > group.example.at) group.example = example;
  }
  outstanding.groups = [...groups.values()].sort(
    (a, b) =>
      (a.programId ?? '').localeCompare(b.programId ?? '') ||
      a.destination.localeCompare(b.destination) ||
      // Dead first: only a person can deal with those.
      b.status.localeCompare(a.status) ||
      b.count - a.count ||
      a.reason.localeCompare(b.reason),
  );
  return outstanding;
}
