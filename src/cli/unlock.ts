import { ExitCode, LockedError } from '../errors.js';
import { openState, stateExists } from '../state/open.js';
import type { LockRecord } from '../state/store.js';
import type { Output } from './output.js';
import { resolveCommon, type CommonFlags, type Env } from './settings.js';

export interface UnlockFlags extends CommonFlags {
  campaign?: string;
  force?: boolean;
}

/**
 * `referral-sync unlock`: frees the lock of a run that is gone. A run on this machine is checked (a live one
 * keeps its lock); one on another machine cannot be, so its lock goes only with --force. No state, no file.
 */
export async function runUnlock(flags: UnlockFlags, env: Env, cwd: string, output: Output): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const campaign = flags.campaign;
  if (!(await stateExists(common.statePath))) {
    report(output, [], `unlock: no state at ${common.statePath}, so nothing is locked.`);
    return ExitCode.ok;
  }
  // Looked at read-only first: with no lock to free, the state is left exactly as it was.
  const peek = await openState(common.statePath, { mode: 'read' });
  const anyHeld = (await peek.locks()).some((lock) => campaign === undefined || lock.programId === campaign);
  const location = peek.location;
  await peek.close();
  if (!anyHeld) {
    report(output, [], `unlock: no lock${campaign === undefined ? '' : ` on program ${campaign}`} in ${location}; nothing to free.`);
    return ExitCode.ok;
  }
  const state = await openState(common.statePath, { mode: 'write' });
  try {
    const held = (await state.locks()).filter((lock) => campaign === undefined || lock.programId === campaign);
    const freed: LockRecord[] = [];
    const refusals: LockedError[] = [];
    for (const lock of held) {
      try {
        const row = await state.freeLock(lock.programId, flags.force === true);
        if (row) {
          freed.push(row);
          // Its run is gone: `status` should not show it running forever.
          await state.markCrashedRuns(row.programId, new Date());
        }
      } catch (error) {
        if (!(error instanceof LockedError)) throw error;
        refusals.push(error);
      }
    }
    for (const refusal of refusals.slice(0, -1)) output.error(refusal.message, { hint: refusal.hint, exitCode: refusal.exitCode });
    const last = refusals.at(-1);
    const summary =
      held.length === 0
        ? `unlock: no lock${campaign === undefined ? '' : ` on program ${campaign}`} in ${state.location}; nothing to free.`
        : `unlock: freed ${freed.length} of ${held.length} lock${held.length === 1 ? '' : 's'}${freed.length > 0 ? ` (${freed.map((l) => `program ${l.programId}, ${l.holder} pid ${l.pid} on ${l.host}`).join('; ')})` : ''}.`;
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
  else output.result(`${line}\n`);
}
