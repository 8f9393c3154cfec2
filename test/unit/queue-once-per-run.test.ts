import { describe, expect, it } from 'vitest';
import type { Operation } from '../../src/plan/types.js';
import { openState } from '../../src/state/open.js';
import type { StateStore } from '../../src/state/store.js';
import { backends } from '../support/backends.js';
import { participant } from '../support/participants.js';
import { planItems } from '../support/planner.js';

/** The durable queue: an operation this run already delivered is never queued again by this run. */

async function oneOperation(): Promise<Operation> {
  const items = await planItems([participant({ id: 'p1', email: 'ann@example.com' })], { destinations: ['segment'] });
  const operation = items.flatMap((item) => (item.type === 'operation' ? [item.operation] : [])).find((op) => op.kind === 'track');
  if (!operation) throw new Error('the planner planned no event');
  return operation;
}

describe.each(backends().map((b) => [b.name, b] as const))('the queue on %s', (_name, backend) => {
  it('skips an operation acknowledged earlier in the same run (a leftover sent first, then planned again), not in a later run', async () => {
    const where = await backend.fresh();
    const state = (await openState(where.location, { mode: 'write' })) as StateStore;
    try {
      const queue = state.queue('default');
      const operation = await oneOperation();
      const now = new Date('2026-11-23T12:00:00Z');
      await queue.enqueue([operation], 7, now);
      const [entry] = await queue.queued('segment', 0, 10);
      expect(entry?.operation.key).toBe(operation.key);
      await queue.settle([entry!.seq], [{ destination: 'segment', key: operation.key, kind: 'referralJoined', userId: operation.userId, status: 'sent', runId: 7 }], [], now);
      expect(await queue.waiting('segment')).toBe(0);

      // The planner of run 7 had seen it pending; its append after the acknowledgement must not send it twice.
      await queue.enqueue([operation], 7, now);
      expect(await queue.waiting('segment')).toBe(0);
      // A later run that plans it again (backfill --resend) does queue it: that is a decision of that run.
      await queue.enqueue([operation], 8, now);
      expect(await queue.waiting('segment')).toBe(1);
    } finally {
      await state.close();
      await where.drop();
    }
  });
});
