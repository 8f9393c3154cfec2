import { ExitCode, UsageError } from '../../errors.js';
import { describeHolder, lockHolderState, runsAsSeen } from '../../state/locks.js';
import { openState, stateExists } from '../../state/open.js';
import type { LockRecord, NamespaceAlias, ProgramRecord, StateSummary } from '../../state/store.js';
import { groupProblems, type Outstanding } from '../../state/problem-groups.js';
import { reasonKey } from '../../plan/reason-key.js';
import { outstandingJson, renderOutstanding } from '../output/outstanding.js';
import { fingerprintOf } from '../run/namespaces.js';
import { jsonChunks, StreamedArray } from '../output/json-stream.js';
import type { Output } from '../output/output.js';
import { resolveCommon, type CommonFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { joinLines } from '../../terminal-text.js';

export interface StatusFlags extends CommonFlags {
  json?: boolean;
  runs?: string;
  /** `--fail-on-outstanding`: exit 1 while failed or dead deliveries wait in the state. */
  failOnOutstanding?: boolean;
}

/** `referral-sync status`: where the state is, the last runs, and the ledger's counts. Read-only. */
export async function runStatus(flags: StatusFlags, env: Env, cwd: string, output: Output): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const limit = parseRunLimit(flags.runs);
  const state = await openState(common.statePath, { mode: 'read' });
  try {
    // The locks before and after the runs: a run takes its lock before its row is written and lets go after it is
    // finished, so one that starts or ends between the reads is seen holding it in one of them, and only a run whose
    // lock nobody held in either is dead. (On PostgreSQL both reads are in one snapshot: the same answer.)
    const held = await state.locks();
    const read = await state.summary(limit);
    const heldAfter = await state.locks();
    const summary = { ...read, runs: runsAsSeen(read.runs, [...held, ...heldAfter]) };
    const exists = await stateExists(common.statePath);
    const locks = held.map((lock) => ({ ...lock, holderState: lockHolderState(lock) }));
    // Counted by the state (GROUP BY), folded by reason: one entry per group in memory, whatever the ledger holds.
    const outstanding = await groupProblems(state.problemCounts());
    const exitCode = flags.failOnOutstanding && outstanding.total > 0 ? ExitCode.failedDeliveries : ExitCode.ok;
    // Which credentials (fingerprints) each program was delivered under, and the rotations `state rotate` recorded.
    const credentials = { delivered: await state.programRecords(), rotated: await state.namespaceAliases() };
    if (flags.json || output.json) {
      // Every failed and dead delivery, however many: streamed from the state, never capped, each with its group.
      const problems = new StreamedArray(async function* () {
        for await (const problem of state.allProblems()) yield { ...problem, reason: reasonKey(problem.lastError) };
      });
      await output.resultStream(jsonChunks({ command: 'status', exitCode, exists, ...summary, locks, outstanding: outstandingJson(outstanding), credentials, problems }, output.jsonIndent(flags.json)));
      output.result('\n');
    } else {
      output.result(renderStatus(summary, exists, outstanding, locks, credentials));
    }
    if (exitCode !== ExitCode.ok) output.error(`${outstanding.total.toLocaleString('en-US')} failed and dead deliveries are outstanding (exit ${exitCode}, --fail-on-outstanding).`, { outstanding: outstanding.total, exitCode });
    return exitCode;
  } finally {
    await state.close();
  }
}

/** `--runs <n>`: a whole number of runs, at least 1 (default 10). */
function parseRunLimit(value: string | undefined): number {
  if (value === undefined) return 10;
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`--runs takes a whole number of runs, 1 or more, not "${value}" (e.g. --runs 50).`);
  }
  return n;
}

interface Credentials {
  delivered: ProgramRecord[];
  rotated: NamespaceAlias[];
}

/** Each destination's namespaces (their credentials' fingerprints) with the programs sent under them, and rotations. */
function renderCredentials(credentials: Credentials): string[] {
  if (credentials.delivered.length === 0 && credentials.rotated.length === 0) return [];
  const lines = ['', 'Credentials (fingerprints in the ids; `npx referral-sync state rotate` records a new key for the same destination)'];
  const byNamespace = new Map<string, { destination: string; programs: Set<string> }>();
  for (const row of credentials.delivered) {
    const entry = byNamespace.get(`${row.destination} ${row.namespace}`) ?? { destination: row.destination, programs: new Set<string>() };
    entry.programs.add(row.programId);
    byNamespace.set(`${row.destination} ${row.namespace}`, entry);
  }
  for (const [key, entry] of byNamespace) {
    const namespace = key.slice(key.indexOf(' ') + 1);
    lines.push(`  ${entry.destination.padEnd(12)}${namespace}  program ${[...entry.programs].join(', ')}`);
  }
  for (const alias of credentials.rotated) {
    lines.push(`  ${alias.destination.padEnd(12)}rotated: fingerprint ${fingerprintOf(alias.alias)} stands for ${fingerprintOf(alias.namespace)} (recorded ${alias.recordedAt})`);
  }
  return lines;
}

function renderStatus(summary: StateSummary, exists: boolean, outstanding: Outstanding, locks: readonly (Omit<LockRecord, 'holderState'> & { holderState: string })[], credentials: Credentials): string {
  const lines = [`State: ${summary.location}`];
  if (!exists || summary.schemaVersion === 0) {
    lines.push('  No state yet: nothing has been synced. `npx referral-sync diff` shows what the first sync would send.');
    return `${joinLines(lines)}\n`;
  }
  lines.push(`  schema version ${summary.schemaVersion}`);
  lines.push('', 'Identities (last acknowledged traits)');
  if (summary.identities.length === 0) lines.push('  none');
  for (const row of summary.identities) lines.push(`  ${row.destination.padEnd(12)}${String(row.count).padStart(10)}`);
  if (summary.accounts.length > 0) {
    lines.push('', 'Accounts (last acknowledged traits)');
    for (const row of summary.accounts) lines.push(`  ${row.destination.padEnd(12)}${String(row.count).padStart(10)}`);
  }
  lines.push('', 'Deliveries');
  if (summary.deliveries.length === 0) lines.push('  none');
  for (const row of summary.deliveries) {
    lines.push(`  ${row.destination.padEnd(12)}${row.status.padEnd(9)}${String(row.count).padStart(10)}`);
  }
  // The campaign guard's held events wait for a decision (issue 19): say how they go.
  const held = summary.deliveries.filter((d) => d.status === 'held').reduce((sum, d) => sum + d.count, 0);
  if (held > 0) {
    lines.push(`  ${held.toLocaleString('en-US')} recent event${held === 1 ? '' : 's'} held from campaigns: \`sync --recent-events send\` sends ${held === 1 ? 'it' : 'them'} (a later run also does once ${held === 1 ? 'it is' : 'they are'} older than 72 hours); --recent-events skip drops ${held === 1 ? 'it' : 'them'}.`);
  }
  lines.push(...renderCredentials(credentials));
  if (locks.length > 0) {
    lines.push('', 'Locks');
    for (const lock of locks) {
      const state = lock.holderState === 'alive' ? 'running' : lock.holderState === 'gone' ? 'gone: the next run takes it over, or `npx referral-sync unlock` frees it' : 'on another machine: `npx referral-sync unlock --force` frees it if that run is gone';
      lines.push(`  program ${lock.programId}: ${describeHolder(lock)} (${state})`);
    }
  }
  lines.push('', 'Last runs');
  if (summary.runs.length === 0) lines.push('  none');
  for (const run of summary.runs) {
    const counts = Object.entries(run.counts)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const runner = 'runner' in run ? (run.runner === 'gone' ? '  (not running: its runner is gone)' : run.runner === 'unknown' ? '  (its lock is held from another machine)' : '') : '';
    lines.push(`  #${run.id} ${run.command.padEnd(9)} ${run.status.padEnd(9)} ${run.startedAt} → ${run.finishedAt ?? '…'}  program ${run.programId}  ${counts}${runner}`);
  }
  const grouped = renderOutstanding('Failed and dead deliveries, by reason:', outstanding, { programs: true });
  if (grouped.length > 0) lines.push('', ...grouped);
  return `${joinLines(lines)}\n`;
}
