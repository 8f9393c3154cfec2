import { isAbsolute, resolve } from 'node:path';
import { ExitCode, UsageError } from '../../errors.js';
import { copyState } from '../../state/copy.js';
import { assertStateLocation } from '../../state/open.js';
import { isPostgresUrl } from '../../state/postgres/url.js';
import type { Output } from '../output/output.js';
import { joinLines } from '../../terminal-text.js';

export interface StateCopyFlags {
  from?: string;
  to?: string;
  logFormat?: string;
  /** `--json`: the result as one JSON document (as under --log-format json, pretty-printed). */
  json?: boolean;
}

/** `referral-sync state copy --from <path|url> --to <path|url>`: copies a whole state, verified by counts. */
export async function runStateCopy(flags: StateCopyFlags, cwd: string, output: Output): Promise<ExitCode> {
  if (!flags.from || !flags.to) throw new UsageError('state copy needs both --from and --to.', { hint: 'e.g. npx referral-sync state copy --from .referral-sync/state.db --to "postgres://user@host/db?schema=referral_sync"' });
  const from = location(flags.from, cwd);
  const to = location(flags.to, cwd);
  const result = await copyState(from, to);
  const exitCode = result.mismatches.length > 0 ? ExitCode.failedDeliveries : ExitCode.ok;
  const last =
    exitCode === ExitCode.ok
      ? `state copy: copied ${result.from} to ${result.to}; every count matches.`
      : `state copy: the counts of ${result.to} differ from ${result.from} (${result.mismatches.join('; ')}).`;
  if (output.json || flags.json) {
    const json = { command: 'state copy', outcome: exitCode === ExitCode.ok ? 'done' : 'failed', exitCode, from: result.from, to: result.to, counts: { source: result.source, target: result.target }, mismatches: result.mismatches, message: last };
    output.result(`${JSON.stringify(json, null, output.jsonIndent(flags.json))}\n`);
  } else {
    const lines = Object.entries(result.source.tables).map(([table, count]) => `  ${table.padEnd(13)} ${String(count).padStart(8)} -> ${String(result.target.tables[table as keyof typeof result.target.tables]).padStart(8)}`);
    const targetByKey = new Map(result.target.deliveries.map((row) => [`${row.destination}/${row.status}`, row.count]));
    for (const row of result.source.deliveries) {
      lines.push(`  deliveries ${row.destination}/${row.status}: ${row.count} -> ${targetByKey.get(`${row.destination}/${row.status}`) ?? 0}`);
    }
    output.result(`${joinLines([...lines, last])}\n`);
  }
  return exitCode;
}

function location(value: string, cwd: string): string {
  assertStateLocation(value);
  return isPostgresUrl(value) || isAbsolute(value) ? value : resolve(cwd, value);
}
