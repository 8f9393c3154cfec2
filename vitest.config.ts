import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The tests that measure a rate in real time and hold it to a tight bound (at least 0.9 of a fake's limit, at a
 * rate a timer lag of a few tens of milliseconds per request would bring below it). They run after the rest, on
 * their own, so that the CPU-heavy files do not starve them: a rate missed because the machine was busy says
 * nothing about the code. (The other timing tests have bounds far from what they measure: they run with the rest.)
 */
const TIMING = ['test/integration/rate.test.ts'];

/**
 * Started first in their group even without vitest's timing cache (a fresh clone, CI), which would otherwise
 * order files by size: the longest (crash: CPU; engine, Cello lookups: real-time waits), started last, would set
 * the wall time on their own.
 */
const LONGEST = ['test/integration/crash.test.ts', 'test/integration/crash-postgres.test.ts', 'test/integration/engine.test.ts', 'test/integration/cello-lookups.test.ts'];

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification): number => {
      const index = LONGEST.findIndex((path) => file.moduleId.endsWith(path));
      return index < 0 ? LONGEST.length : index;
    };
    // Array.prototype.sort is stable: the others keep vitest's order.
    return [...sorted].sort((a, b) => rank(a) - rank(b));
  }
}

const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  // Files run in parallel (most of their time is spent waiting on fakes, child processes and rate limiters);
  // more workers than this 2-core machine's cores, since few of them use a core at any time.
  maxWorkers: 4,
  // Each test file's temporary directories are removed when its tests are done.
  setupFiles: ['test/support/cleanup.ts'],
};

export default defineConfig({
  test: {
    // The e2e tests run the built CLI; build it once so they never test a stale dist/. (At the root, not in the
    // projects, so that it runs once.)
    globalSetup: ['test/support/build.ts'],
    sequence: { sequencer: LongestFirst },
    projects: [
      { test: { ...shared, name: 'main', include: ['test/**/*.test.ts'], exclude: TIMING, sequence: { groupOrder: 0 } } },
      { test: { ...shared, name: 'timing', include: TIMING, sequence: { groupOrder: 1 } } },
    ],
  },
});
