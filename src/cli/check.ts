import type { CheckResult, DestinationClient } from '../destinations/types.js';
import { ExitCode } from '../errors.js';
import { createDestinationClients, parseRates, type DestinationFlags } from './destinations.js';
import type { Output } from './output.js';
import { resolveCommon, type CommonFlags, type Env } from './settings.js';

/** `referral-sync check`: credentials and reachability of every destination, sending no data. */
export async function runCheck(flags: CommonFlags & DestinationFlags, env: Env, cwd: string, output: Output): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  parseRates(flags.rate);
  const clients = createDestinationClients(common.destinations, flags, env);
  let ok = true;
  const lines: string[] = [];
  // Checked at once: a destination that does not answer is retried for a few seconds, and need not hold up the other.
  const results = await Promise.all(
    [...clients.values()].map(async (client) => {
      try {
        return await checkWithRetries(client);
      } finally {
        await client.close();
      }
    }),
  );
  for (const result of results) {
    ok &&= result.ok;
    lines.push(`${result.ok ? 'ok  ' : 'FAIL'} ${result.message}`);
    // The fix, under the failure it is about.
    if (!result.ok && result.hint) lines.push(`     ${result.hint}`);
  }
  output.result(`${lines.join('\n')}\n`);
  return ok ? ExitCode.ok : ExitCode.unavailable;
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
