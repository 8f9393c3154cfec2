import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Tests that measure a rate in real time against a fake's limit and hold it to a tight bound (0.9 of the limit;
 * a rate settling near it, with some 429s). They run after the rest, on their own, so that the CPU-heavy files
 * do not starve them: a rate missed because the machine was busy says nothing about the code. (The engine's
 * timing tests have bounds far from what they measure: they run with the rest.)
 */
const TIMING = ['test/integration/rate.test.ts', 'test/integration/cello-lookups.test.ts'];

/**
 * Started first in their group even without vitest's timing cache (a fresh clone, CI), which would otherwise
 * order files by size: the longest file, started last, would set the wall time on its own.
 */
const LONGEST = ['test/integration/crash.test.ts'];

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = (file: TestSpecification): boolean => LONGEST.some((path) => file.moduleId.endsWith(path));
    return [...sorted.filter(first), ...sorted.filter((file) => !first(file))];
  }
}

const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  // Files run in parallel (most of their time is spent waiting on fakes, child processes and rate limiters);
  // more workers than this 2-core machine's cores, since few of them use a core at any time.
  maxWorkers: 4,
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
