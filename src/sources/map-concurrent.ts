import pLimit from 'p-limit';

/**
 * `task` for every item, at most `concurrency` at once, results in item order. On the first failure nothing
 * more starts; once the tasks already running have settled (none is left to fail unobserved), that first
 * failure is thrown.
 */
export async function mapConcurrent<T, R>(items: readonly T[], concurrency: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const limit = pLimit({ concurrency, rejectOnClear: true });
  let failure: { error: unknown } | undefined;
  const runs = items.map((item) =>
    limit(async () => {
      try {
        return await task(item);
      } catch (error) {
        if (!failure) {
          failure = { error };
          limit.clearQueue();
        }
        throw error;
      }
    }),
  );
  const settled = await Promise.allSettled(runs);
  if (failure) throw failure.error;
  return settled.map((result) => (result as PromiseFulfilledResult<R>).value);
}
