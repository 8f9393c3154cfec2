import { existsSync } from 'node:fs';
import { ExitCode } from '../errors.js';
import { openSqliteStateReadOnly } from '../state/sqlite.js';
import type { StateSummary, StoredDelivery } from '../state/store.js';
import { jsonChunks, StreamedArray } from './json-stream.js';
import type { Output } from './output.js';
import { resolveCommon, type CommonFlags, type Env } from './settings.js';

export interface StatusFlags extends CommonFlags {
  json?: boolean;
  runs?: string;
}

/** `referral-sync status`: where the state is, the last runs, and the ledger's counts. Read-only. */
export async function runStatus(flags: StatusFlags, env: Env, cwd: string, output: Output): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const limit = Number(flags.runs ?? '10');
  const state = openSqliteStateReadOnly(common.statePath);
  try {
    const summary = state.summary(Number.isInteger(limit) && limit > 0 ? limit : 10);
    const exists = existsSync(common.statePath);
    if (flags.json || common.logFormat === 'json') {
      // Every failed and dead delivery, however many: streamed from the state, never capped.
      const problems = new StreamedArray(async function* () {
        yield* state.allProblems();
      });
      await output.resultStream(jsonChunks({ exists, ...summary, problems }, flags.json ? 2 : undefined));
      output.result('\n');
    } else {
      output.result(renderStatus(summary, exists, state.problems(PROBLEMS_SHOWN)));
    }
    return ExitCode.ok;
  } finally {
    state.close();
  }
}

const PROBLEMS_SHOWN = 20;

function renderStatus(summary: StateSummary, exists: boolean, problems: StoredDelivery[]): string {
  const lines = [`State: ${summary.location}`];
  if (!exists || summary.schemaVersion === 0) {
    lines.push('  No state yet: nothing has been synced. `referral-sync diff` shows what the first sync would send.');
    return `${lines.join('\n')}\n`;
  }
  lines.push(`  schema version ${summary.schemaVersion}`);
  lines.push('', 'Identities (last acknowledged traits)');
  if (summary.identities.length === 0) lines.push('  none');
  for (const row of summary.identities) lines.push(`  ${row.destination.padEnd(12)}${String(row.count).padStart(10)}`);
  lines.push('', 'Deliveries');
  if (summary.deliveries.length === 0) lines.push('  none');
  for (const row of summary.deliveries) {
    lines.push(`  ${row.destination.padEnd(12)}${row.status.padEnd(9)}${String(row.count).padStart(10)}`);
  }
  lines.push('', 'Last runs');
  if (summary.runs.length === 0) lines.push('  none');
  for (const run of summary.runs) {
    const counts = Object.entries(run.counts)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    lines.push(`  #${run.id} ${run.command.padEnd(9)} ${run.status.padEnd(9)} ${run.startedAt} → ${run.finishedAt ?? '…'}  program ${run.programId}  ${counts}`);
  }
  if (problems.length > 0) {
    lines.push('', `Failed and dead deliveries (newest ${PROBLEMS_SHOWN} per destination; \`referral-sync retry\` resends them)`);
    for (const p of problems) {
      lines.push(`  ${p.destination.padEnd(11)} ${p.status.padEnd(7)} ${p.kind.padEnd(13)} ${p.userId}  ${p.lastError ?? ''}`);
    }
    const total = summary.deliveries.filter((d) => d.status === 'failed' || d.status === 'dead').reduce((sum, d) => sum + d.count, 0);
    if (total > problems.length) {
      lines.push(`  … and ${(total - problems.length).toLocaleString('en-US')} more: \`referral-sync status --json\` lists every one`);
    }
  }
  return `${lines.join('\n')}\n`;
}
