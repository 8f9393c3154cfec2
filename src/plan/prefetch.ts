import type { SourceRecord } from '../model/participant.js';
import type { PlanContext } from './context.js';
import { deliveryReads, identityReads } from './planner.js';
import type { BaselinePrefetch } from './types.js';

/** Records planned per load: one bulk read of their identities, then one of their ledger rows. */
export const PREFETCH_CHUNK = 500;

/**
 * Hands the records on to the planner a chunk at a time, each once the baseline rows its planning reads are
 * loaded (`BaselineView.prefetch`): the planner stays synchronous over a backend that is not, and only a chunk's
 * rows are in memory. A baseline that answers directly (no `prefetch`) gets the records as they come, through
 * no extra step.
 */
export function withBaselineLoaded(
  records: AsyncIterable<SourceRecord>,
  context: PlanContext,
  options: { chunkSize?: number; signal?: AbortSignal } = {},
): AsyncIterable<SourceRecord> {
  const prefetch = context.baseline.prefetch;
  return prefetch ? loadedInChunks(records, context, prefetch, options) : records;
}

async function* loadedInChunks(
  records: AsyncIterable<SourceRecord>,
  context: PlanContext,
  prefetch: BaselinePrefetch,
  options: { chunkSize?: number; signal?: AbortSignal },
): AsyncGenerator<SourceRecord> {
  const size = options.chunkSize ?? PREFETCH_CHUNK;
  let chunk: SourceRecord[] = [];
  const loaded = async (): Promise<SourceRecord[]> => {
    // The identify and tier-change keys depend on the traits last acknowledged: identities first.
    await prefetch.identities(chunk.flatMap((record) => identityReads(record, context)));
    await prefetch.deliveries(chunk.flatMap((record) => deliveryReads(record, context)));
    const ready = chunk;
    chunk = [];
    return ready;
  };
  for await (const record of records) {
    // A graceful stop plans nothing more: what is read but not planned is not loaded either.
    if (options.signal?.aborted) return;
    chunk.push(record);
    if (chunk.length >= size) yield* await loaded();
  }
  if (chunk.length > 0) yield* await loaded();
}
