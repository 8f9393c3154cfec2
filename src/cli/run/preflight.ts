import type { Clock } from '../../apply/limiter.js';
import type { Destination } from '../../config/defaults.js';
import type { CheckResult, DestinationClient } from '../../destinations/types.js';
import { InterruptedError, UnavailableError } from '../../errors.js';
import type { Output } from '../output/output.js';

/** Bad credentials or an unreachable service stop the run before anything is read or marked (exit 69). */
export async function preflight(clients: ReadonlyMap<Destination, DestinationClient>, output: Output, interrupt: AbortSignal | undefined, clock?: Clock): Promise<void> {
  // Both at once: a destination that does not answer is retried for a while and need not hold up the other.
  const results = await untilInterrupted(Promise.all([...clients.values()].map((client) => checkWithRetries(client, clock ? (ms) => clock.sleep(ms) : undefined))), interrupt);
  for (const result of results) {
    if (!result.ok) throw new UnavailableError(result.message, { hint: `Nothing was sent. ${result.hint ?? '`npx referral-sync check` tests the credentials and endpoints on their own.'}` });
    output.verbose(result.message);
  }
}

/** A check that hangs must not outlive Ctrl-C: the first signal ends the wait (exit 130/143, nothing sent). */
async function untilInterrupted<T>(work: Promise<T>, interrupt: AbortSignal | undefined): Promise<T> {
  if (!interrupt) return work;
  if (interrupt.aborted) throw new InterruptedError(String(interrupt.reason));
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new InterruptedError(String(interrupt.reason)));
    interrupt.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    if (onAbort) interrupt.removeEventListener('abort', onAbort);
  }
}

const CHECK_ATTEMPTS = 4;

/** A check that failed for a passing reason (a dropped connection, a 503) is tried again before we give up. */
export async function checkWithRetries(client: DestinationClient, sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))): Promise<CheckResult> {
  let result = await client.check();
  for (let attempt = 1; attempt < CHECK_ATTEMPTS && !result.ok && result.transient; attempt += 1) {
    await sleep(250 * 2 ** attempt);
    result = await client.check();
  }
  return result;
}
