import type { Clock } from '../../apply/limiter.js';
import { ExitCode } from '../../errors.js';
import { createDestinationClients, type DestinationFlags } from '../wiring/destinations.js';
import type { Output } from '../output/output.js';
import { resolveCommon, type CommonFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { joinLines } from '../../terminal-text.js';
import { checkWithRetries } from '../run/preflight.js';
import { checkSource, type CheckLine, type SourceCheckFlags } from '../run/source-check.js';

export interface CheckFlags extends CommonFlags, DestinationFlags, SourceCheckFlags {
  json?: boolean;
}

/**
 * Which failure's code `check` exits with when several fail: the one a person must act on first. A usage fault
 * (a flag, a missing variable, a file not found, an unknown campaign) before bad data (a header the reader does
 * not recognise) before a service that refused or did not answer.
 */
const EXIT_PRIORITY: readonly ExitCode[] = [ExitCode.usage, ExitCode.dataError, ExitCode.unavailable];

/**
 * `referral-sync check`: the source the run would read (given the same source flags as sync) and every
 * destination, each on a line saying what was checked and what to fix. Sends no data, reads and writes no state.
 */
export async function runCheck(flags: CheckFlags, env: Env, cwd: string, output: Output, clock?: Clock): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const clients = createDestinationClients(common.destinations, flags, env);
  // All at once: a destination that does not answer is retried for a few seconds, and need not hold up the rest.
  const [sourceLines, results] = await Promise.all([
    checkSource(flags, env, common.config, output, clock),
    Promise.all(
      [...clients].map(async ([destination, client]) => {
        try {
          const result = await checkWithRetries(client, clock ? (ms) => clock.sleep(ms) : undefined);
          return { destination, ok: result.ok, message: result.message, ...(!result.ok && result.hint ? { hint: result.hint } : {}) };
        } finally {
          await client.close();
        }
      }),
    ),
  ]);
  const lines: CheckLine[] = [
    ...(sourceLines ?? []),
    ...results.map((r) => ({ check: r.destination, ok: r.ok, message: r.message, ...(r.hint ? { hint: r.hint } : {}), exitCode: r.ok ? ExitCode.ok : ExitCode.unavailable })),
  ];
  const failures = lines.filter((line) => !line.ok);
  const exitCode = failures.length === 0 ? ExitCode.ok : (EXIT_PRIORITY.find((code) => failures.some((line) => line.exitCode === code)) ?? failures[0]!.exitCode);
  const noSource = 'no source given: pass the same source flags as your sync (--file …, or --source growsurf --campaign …) to check it too.';
  const what = sourceLines === undefined ? 'destinations' : 'checks';
  const verdict =
    failures.length > 0
      ? `check: ${failures.length} of ${lines.length} ${what} failed (exit ${exitCode}); nothing was sent.`
      : `check: ${lines.length} of ${lines.length} ${what} ok; nothing was sent.`;
  if (flags.json === true || output.json) {
    const json = {
      command: 'check',
      outcome: failures.length > 0 ? 'failed' : 'done',
      exitCode,
      source: sourceLines === undefined ? { given: false, note: noSource } : { given: true },
      checks: lines,
      destinations: results,
    };
    output.result(`${JSON.stringify(json, null, output.jsonIndent(flags.json))}\n`);
  } else {
    if (sourceLines === undefined) output.info(noSource);
    // The fix, under the failure it is about. A service's answer quoted in a message stays on its line.
    output.result(`${joinLines(lines.flatMap((r) => [`${r.ok ? 'ok  ' : 'FAIL'} ${r.message}`, ...(!r.ok && r.hint ? [`     ${r.hint}`] : [])]))}\n`);
    if (failures.length === 0) output.result(`${verdict}\n`);
  }
  // A failure is said on stderr too, last: a cron job that keeps only stderr hears of it.
  if (failures.length > 0) output.error(verdict, { exitCode });
  return exitCode;
}
