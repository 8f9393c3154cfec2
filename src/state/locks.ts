import { hostname } from 'node:os';
import { LockedError } from '../errors.js';
import type { LockRecord, RunRecord } from './store.js';

/**
 * The rules of a program's lock (DESIGN.md §7), the same for every backend: a lock whose run is gone may be taken
 * over; a live one on this machine never; one on another machine cannot be checked from here.
 */

/** Whether a lock's run still lives: known on this machine, unknowable for another one. */
export function lockHolderState(lock: LockRecord): 'alive' | 'gone' | 'unknown' {
  if (lock.holderState === 'alive') return 'alive';
  if (lock.host !== hostname()) return 'unknown';
  return processAlive(lock.pid) ? 'alive' : 'gone';
}

/**
 * Whether the runner of a run recorded as `running` is still there, judged as its program's lock is (one run per
 * program, and a run takes the lock before its row is written and lets go after it is finished): no lock, or the
 * lock of a runner that is gone, means the run died (kill -9, a lost machine) and will never finish it.
 */
export function runnerState(run: Pick<RunRecord, 'programId'>, locks: readonly LockRecord[]): 'alive' | 'gone' | 'unknown' {
  // `locks` may hold the program's lock more than once (looked at before and after the runs): any live sighting wins.
  const states = locks.filter((candidate) => candidate.programId === run.programId).map(lockHolderState);
  return states.includes('alive') ? 'alive' : states.includes('unknown') ? 'unknown' : 'gone';
}

/**
 * The runs as `status` shows them: one recorded `running` whose runner is gone is shown `crashed`, as the next run
 * of its program will record it (status itself writes nothing), with `runner: 'gone'` saying why.
 */
export function runsAsSeen<R extends RunRecord>(runs: readonly R[], locks: readonly LockRecord[]): (R & { runner?: 'gone' | 'unknown' })[] {
  return runs.map((run) => {
    if (run.status !== 'running') return run;
    const runner = runnerState(run, locks);
    if (runner === 'gone') return { ...run, status: 'crashed', runner };
    return runner === 'unknown' ? { ...run, runner } : run;
  });
}

export function describeHolder(lock: Pick<LockRecord, 'holder' | 'pid' | 'host' | 'acquiredAt'>): string {
  // Holders written by older versions read "sync on <host>": the host is named once, after the pid.
  const command = lock.holder.replace(/ on \S+$/, '');
  return `${command}, pid ${lock.pid} on ${lock.host}, since ${lock.acquiredAt}`;
}

/** Throws LockedError (exit 75) when `held` (the lock already there, if any) keeps this run from taking it. */
export function assertLockTakeable(held: LockRecord | undefined, location: string): void {
  if (held && lockHolderState(held) !== 'gone') throw lockedError(held, location);
}

/** Throws LockedError (exit 75) when `unlock` may not free this lock: its run lives, or may (another machine, no --force). */
export function assertLockFreeable(lock: LockRecord, force: boolean): void {
  const holder = lockHolderState(lock);
  if (holder === 'alive') {
    throw new LockedError(`Program ${lock.programId} is locked by a run that is still going (${describeHolder(lock)}).`, {
      hint: `Wait for it to finish, or stop it first (kill ${lock.pid}); unlock only frees the lock of a run that is gone.`,
    });
  }
  if (holder === 'unknown' && !force) {
    throw new LockedError(`Program ${lock.programId} is locked by a run on another machine (${describeHolder(lock)}), which cannot be checked from here.`, {
      hint: `If that run is gone for good, free its lock with: npx referral-sync unlock --campaign ${lock.programId} --force`,
    });
  }
}

/** This process as a lock holder. */
export function thisProcess(): { pid: number; host: string } {
  return { pid: process.pid, host: hostname() };
}

function lockedError(lock: LockRecord, location: string): LockedError {
  const free = lockHolderState(lock) === 'unknown' ? `npx referral-sync unlock --campaign ${lock.programId} --force` : `npx referral-sync unlock --campaign ${lock.programId}`;
  return new LockedError(`Another run holds the lock on program ${lock.programId} in ${location} (${describeHolder(lock)}).`, {
    hint: `Wait for it to finish; if that run is gone for good, free its lock with: ${free}`,
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
