import { EMPTY_BASELINE } from '../plan/types.js';
import type { ProblemCount, StateReader, StoredDelivery } from './store.js';

/** A state that does not exist yet, read as empty (nothing is created to read it). */
export function emptyState(path: string): StateReader {
  return {
    location: path,
    baseline: () => EMPTY_BASELINE,
    identities: async () => [],
    deliveryStatuses: async () => [],
    accounts: async () => [],
    generations: async () => [],
    summary: async () => ({ location: path, schemaVersion: 0, identities: [], accounts: [], deliveries: [], runs: [] }),
    problems: async () => [],
    allProblems: () => noRows(),
    problemCounts: () => noCounts(),
    watermark: async () => undefined,
    deliveredPrograms: async () => [],
    deliveredNamespaces: async () => [],
    programRecords: async () => [],
    namespaceAliases: async () => [],
    cachedLookup: async () => undefined,
    retryPrograms: async () => [],
    locks: async () => [],
    runningPrograms: async () => [],
    position: async () => ({ lastRunId: null, acknowledged: 0 }),
    unfinishedBackfillStart: async () => undefined,
    acknowledgedDestinations: async () => [],
    close: async () => undefined,
  };
}

/** An empty stream of rows. */
async function* noRows(): AsyncGenerator<StoredDelivery> {}

/** No failed or dead deliveries. */
async function* noCounts(): AsyncGenerator<ProblemCount> {}
