import type { Clock } from '../../apply/limiter.js';
import { ExitCode } from '../../errors.js';
import { createDestinationClients, type DestinationFlags } from '../wiring/destinations.js';
import type { Output } from '../output/output.js';
import { resolveCommon, type CommonFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { joinLines } from '../../terminal-text.js';
import { checkWithRetries } from '../run/preflight.js';

export interface CheckFlags extends CommonFlags, DestinationFlags {
  json?: boolean;
}

/** `referral-sync check`: credentials and reachability of every destination, sending no data. */
export async function runCheck(flags: CheckFlags, env: Env, cwd: string, output: Output, clock?: Clock): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const clients = createDestinationClients(common.destinations, flags, env);
  // Checked at once: a destination that does not answer is retried for a few seconds, and need not hold up the other.
  const results = await Promise.all(
    [...clients].map(async ([destination, client]) => {
      try {
        const result = await checkWithRetries(client, clock ? (ms) => clock.sleep(ms) : undefined);
        return { destination, ok: result.ok, message: result.message, ...(!result.ok && result.hint ? { hint: result.hint } : {}) };
      } finally {
        await client.close();
      }
    }),
  );
  const failed = results.filter((r) => !r.ok).length;
  const exitCode = failed > 0 ? ExitCode.unavailable : ExitCode.ok;
  const verdict = failed > 0 ? `check: ${failed} of ${results.length} destinations failed (exit ${exitCode}); nothing was sent.` : `check: ${results.length} of ${results.length} destinations ok; nothing was sent.`;
  if (flags.json === true || output.json) {
    output.result(`${JSON.stringify({ command: 'check', outcome: failed > 0 ? 'failed' : 'done', exitCode, destinations: results }, null, output.jsonIndent(flags.json))}\n`);
  } else {
    // The fix, under the failure it is about. A service's answer quoted in a message stays on its line.
    output.result(`${joinLines(results.flatMap((r) => [`${r.ok ? 'ok  ' : 'FAIL'} ${r.message}`, ...(r.hint ? [`     ${r.hint}`] : [])]))}\n`);
    if (failed === 0) output.result(`${verdict}\n`);
  }
  // A failure is said on stderr too, last: a cron job that keeps only stderr hears of it.
  if (failed > 0) output.error(verdict, { exitCode });
  return exitCode;
}
