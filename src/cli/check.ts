import { ExitCode } from '../errors.js';
import { createDestinationClients, type DestinationFlags } from './destinations.js';
import type { Output } from './output.js';
import { resolveCommon, type CommonFlags, type Env } from './settings.js';

/** `referral-sync check`: credentials and reachability of every destination, sending no data. */
export async function runCheck(flags: CommonFlags & DestinationFlags, env: Env, cwd: string, output: Output): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const clients = createDestinationClients(common.destinations, flags, env);
  let ok = true;
  const lines: string[] = [];
  for (const client of clients.values()) {
    const result = await client.check();
    await client.close();
    ok &&= result.ok;
    lines.push(`${result.ok ? 'ok  ' : 'FAIL'} ${result.message}`);
  }
  output.result(`${lines.join('\n')}\n`);
  return ok ? ExitCode.ok : ExitCode.unavailable;
}
