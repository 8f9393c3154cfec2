import { ExitCode, UsageError } from '../../errors.js';
import { describeHolder, lockHolderState, runsAsSeen } from '../../state/locks.js';
import { openState, stateExists } from '../../state/open.js';
import type { LockRecord, NamespaceAlias, ProgramRecord, StateSummary, StoredDelivery } from '../../state/store.js';
import { fingerprintOf } from '../run/namespaces.js';
import { jsonChunks, StreamedArray } from '../output/json-stream.js';
import type { Output } from '../output/output.js';
import { resolveCommon, type CommonFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { joinLines } from '../../terminal-text.js';

export interface StatusFlags extends CommonFlags {
  json?: boolean;
  runs?: string;
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
    // Which credentials (fingerprints) each program was delivered under, and the rotations `state rotate` recorded.
    const credentials = { delivered: await state.programRecords(), rotated: await state.namespaceAliases() };
    if (flags.json || output.json) {
      // Every failed and dead delivery, however many: streamed from the state, never capped.
      const problems = new StreamedArray(async function* () {
        yield* state.allProblems();
      });
      await output.resultStream(jsonChunks({ command: 'status', exitCode: ExitCode.ok, exists, ...summary, locks, credentials, problems }, output.jsonIndent(flags.json)));
      output.result('\n');
    } else {
      output.result(renderStatus(summary, exists, await state.problems(PROBLEMS_SHOWN), locks, credentials));
    }
    return ExitCode.ok;
  } finally {
    await state.close();
  }
}

const PROBLEMS_SHOWN = 20;

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

function renderStatus(
  summary: StateSummary,
  exists: boolean,
  problems: StoredDelivery[],
  locks: readonly (Omit<LockRecord, 'holderState'> & { holderState: string })[],
  credentials: Credentials,
): string {
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
  if (problems.length > 0) {
    lines.push('', `Failed and dead deliveries (newest ${PROBLEMS_SHOWN} per destination; \`npx referral-sync retry\` resends them)`);
    for (const p of problems) {
      lines.push(`  ${p.destination.padEnd(11)} ${p.status.padEnd(7)} ${p.kind.padEnd(13)} ${p.userId}  ${p.lastError ?? ''}`);
    }
    const total = summary.deliveries.filter((d) => d.status === 'failed' || d.status === 'dead').reduce((sum, d) => sum + d.count, 0);
    if (total > problems.length) {
      lines.push(`  … and ${(total - problems.length).toLocaleString('en-US')} more: \`npx referral-sync status --json\` lists every one`);
    }
  }
  return `${joinLines(lines)}\n`;
}
