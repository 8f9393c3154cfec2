import { EMPTY_BASELINE } from '../plan/types.js';
import type { StateReader, StoredDelivery } from './store.js';

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
    watermark: async () => undefined,
    deliveredPrograms: async () => [],
    deliveredNamespaces: async () => [],
    programRecords: async () => [],
    namespaceAliases: async () => [],
    cachedLookup: async () => undefined,
    retryPrograms: async () => [],
    locks: async () => [],
    runningPrograms: async () => [],
    close: async () => undefined,
  };
}

/** An empty stream of rows. */
async function* noRows(): AsyncGenerator<StoredDelivery> {}
