import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Operation } from '../../src/plan/types.js';
import { openSqliteStateForWriting } from '../../src/state/sqlite.js';
import { tempDir } from '../support/cli.js';
import { participant } from '../support/participants.js';
import { planItems } from '../support/planner.js';

/** The durable queue: an operation this run already delivered is never queued again by this run. */

async function oneOperation(): Promise<Operation> {
  const items = await planItems([participant({ id: 'p1', email: 'ann@example.com' })], { destinations: ['segment'] });
  const operation = items.flatMap((item) => (item.type === 'operation' ? [item.operation] : [])).find((op) => op.kind === 'track');
  if (!operation) throw new Error('the planner planned no event');
  return operation;
}

describe('SqliteDeliveryQueue', () => {
  it('skips an operation acknowledged earlier in the same run (a leftover sent first, then planned again), not in a later run', async () => {
    const state = openSqliteStateForWriting(join(tempDir(), 'state.db'));
    const queue = state.queue('default');
    const operation = await oneOperation();
    const now = new Date('2026-11-23T12:00:00Z');
    queue.enqueue([operation], 7, now);
    const [entry] = queue.queued('segment', 0, 10);
    expect(entry?.operation.key).toBe(operation.key);
    queue.settle([entry!.seq], [{ destination: 'segment', key: operation.key, kind: 'referralJoined', userId: operation.userId, status: 'sent', runId: 7 }], [], now);
    expect(queue.waiting('segment')).toBe(0);

    // The planner of run 7 had seen it pending; its append after the acknowledgement must not send it twice.
    queue.enqueue([operation], 7, now);
    expect(queue.waiting('segment')).toBe(0);
    // A later run that plans it again (backfill --resend) does queue it: that is a decision of that run.
    queue.enqueue([operation], 8, now);
    expect(queue.waiting('segment')).toBe(1);
    state.close();
  });
});
