import { describe, expect, it } from 'vitest';
import { mapConcurrent } from '../../src/sources/map-concurrent.js';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('mapConcurrent', () => {
  it('keeps at most `concurrency` tasks running and returns results in item order, whatever order they finish in', async () => {
    let running = 0;
    let most = 0;
    const items = Array.from({ length: 40 }, (_, i) => i);
    const results = await mapConcurrent(items, 8, async (i) => {
      running += 1;
      most = Math.max(most, running);
      await tick((40 - i) % 7);
      running -= 1;
      return i * 2;
    });
    expect(results).toEqual(items.map((i) => i * 2));
    expect(most).toBe(8);
  });

  it('on a failure starts nothing more, lets the running tasks settle, and throws the first failure', async () => {
    const started: number[] = [];
    let settled = 0;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const error = await mapConcurrent(Array.from({ length: 50 }, (_, i) => i), 4, async (i) => {
        started.push(i);
        await tick(i === 2 ? 1 : 20);
        settled += 1;
        if (i === 2 || i === 3) throw new Error(`lookup ${i} failed`);
        return i;
      }).catch((e: unknown) => e);
      expect((error as Error).message).toBe('lookup 2 failed');
      // 0–3 were running; after 2 failed nothing new started, and the three others finished before the throw.
      expect(started).toEqual([0, 1, 2, 3]);
      expect(settled).toBe(4);
      await tick(10);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
