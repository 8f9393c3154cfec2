import type { StateStore } from '../../state/store.js';

/**
 * Records how a run ended once it failed or was stopped, never in the way of the error being reported, since the
 * state may be what failed. Tried twice: on PostgreSQL the first write may land on a pooled session that broke
 * with the fault and has not said so yet; the pool drops it, and the second opens a fresh one (a reconnect, within
 * the connect timeout). When it cannot be written (the server gone, the disk full, the file locked elsewhere),
 * the row stays `running` and `status` shows it `crashed`, since no live runner holds its lock; the next run of
 * the program records it so.
 */
export async function recordRunEnd(state: StateStore, runId: number, status: 'failed' | 'interrupted', counts: Record<string, number>): Promise<void> {
  for (let attempt = 1; attempt <= 2; attempt += 1) {
    try {
      await state.finishRun(runId, status, counts, new Date());
      return;
    } catch {
      // The fault itself is what the run reports.
    }
  }
}
