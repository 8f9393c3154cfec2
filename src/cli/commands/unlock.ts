import { ExitCode, LockedError } from '../../errors.js';
import { openState, stateExists } from '../../state/open.js';
import type { FreedLock, LockRecord } from '../../state/store.js';
import type { Output } from '../output/output.js';
import { resolveCommon, type CommonFlags } from '../wiring/settings.js';
import type { Env } from '../wiring/env.js';
import { shown } from '../../terminal-text.js';

export interface UnlockFlags extends CommonFlags {
  campaign?: string;
  force?: boolean;
}

/**
 * `referral-sync unlock`: frees the lock of a run that is gone, and records the runs it left `running` crashed.
 * SQLite: a run on this machine is checked (a live one keeps its lock); one on another machine cannot be, so its
 * lock goes only with --force. PostgreSQL: the advisory lock tells a live run on any machine; --force ends its
 * session when this role may. No state, no file.
 */
export async function runUnlock(flags: UnlockFlags, env: Env, cwd: string, output: Output): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const campaign = flags.campaign;
  const ours = (programId: string): boolean => campaign === undefined || programId === campaign;
  if (!(await stateExists(common.statePath))) {
    report(output, [], `unlock: no state at ${common.statePath}, so nothing is locked.`);
    return ExitCode.ok;
  }
  // Looked at read-only first: with no lock to free and no run left running, the state is left exactly as it was.
  const peek = await openState(common.statePath, { mode: 'read' });
  let lockCount: number;
  let programs: string[];
  let location: string;
  try {
    const locks = (await peek.locks()).filter((lock) => ours(lock.programId));
    lockCount = locks.length;
    // Runs recorded running whose program no live lock holds: their runner is gone (PostgreSQL lists held locks only).
    const orphaned = (await peek.runningPrograms()).filter((programId) => ours(programId) && !locks.some((lock) => lock.programId === programId));
    programs = [...new Set([...locks.map((lock) => lock.programId), ...orphaned])].sort();
    location = peek.location;
  } finally {
    await peek.close();
  }
  const nothing = `unlock: no lock${campaign === undefined ? '' : ` on program ${campaign}`} in ${location}; nothing to free.`;
  if (programs.length === 0) {
    report(output, [], nothing);
    return ExitCode.ok;
  }
  const state = await openState(common.statePath, { mode: 'write' });
  try {
    const done: FreedLock[] = [];
    const refusals: LockedError[] = [];
    for (const programId of programs) {
      try {
        done.push(await state.freeLock(programId, flags.force === true));
      } catch (error) {
        if (!(error instanceof LockedError)) throw error;
        refusals.push(error);
      }
    }
    for (const refusal of refusals.slice(0, -1)) output.error(refusal.message, { hint: refusal.hint, exitCode: refusal.exitCode });
    const last = refusals.at(-1);
    const freed = done.flatMap((entry) => (entry.lock ? [entry.lock] : []));
    const crashed = done.reduce((sum, entry) => sum + entry.crashedRuns, 0);
    const terminated = done.flatMap((entry) => (entry.terminatedBackend === undefined ? [] : [`backend pid ${entry.terminatedBackend} (program ${entry.programId})`]));
    const parts = [
      lockCount > 0 ? `freed ${freed.length} of ${lockCount} lock${lockCount === 1 ? '' : 's'}${freed.length > 0 ? ` (${freed.map((l) => `program ${l.programId}, ${l.holder} pid ${l.pid} on ${l.host}`).join('; ')})` : ''}` : `no lock held in ${state.location}`,
      ...(terminated.length > 0 ? [`ended the PostgreSQL session holding it (${terminated.join('; ')}): that run stops writing`] : []),
      ...(crashed > 0 ? [`recorded ${crashed} run${crashed === 1 ? '' : 's'} whose runner is gone as crashed`] : []),
    ];
    const summary = freed.length === 0 && crashed === 0 && refusals.length === 0 ? nothing : `unlock: ${parts.join('; ')}.`;
    report(output, freed, summary, refusals.length > 0 ? ExitCode.locked : ExitCode.ok);
    // The last refusal is the run's final line and carries its exit code.
    if (last) throw last;
    return ExitCode.ok;
  } finally {
    await state.close();
  }
}

function report(output: Output, freed: readonly LockRecord[], line: string, exitCode: ExitCode = ExitCode.ok): void {
  if (output.json) output.result(`${JSON.stringify({ command: 'unlock', outcome: exitCode === ExitCode.ok ? 'done' : 'failed', exitCode, freed, message: line })}\n`);
  else output.result(`${shown(line)}\n`);
}
