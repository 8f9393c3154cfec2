/**
 * Exit codes of DESIGN.md §9. Every error the tool raises on purpose carries one, so `cli/` can turn any
 * failure into the right code without knowing where it came from.
 */
export const ExitCode = {
  ok: 0,
  failedDeliveries: 1,
  changesFound: 2,
  usage: 64,
  dataError: 65,
  unavailable: 69,
  stateUnwritable: 73,
  locked: 75,
  /** Stopped by SIGHUP (the terminal closed) / Ctrl-C (SIGINT) / SIGTERM, as a shell reports a process ended by that signal. */
  interruptedHup: 129,
  interruptedInt: 130,
  interruptedTerm: 143,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class ReferralSyncError extends Error {
  readonly exitCode: ExitCode;
  /** What the user can do about it, printed on its own line after the message. */
  readonly hint: string | undefined;

  constructor(message: string, exitCode: ExitCode, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.hint = options.hint;
  }
}

/** Bad flags, a bad config file, a file that does not exist: the user must change the command. Exit 64. */
export class UsageError extends ReferralSyncError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, ExitCode.usage, options);
  }
}

/** Input data the tool cannot use as a whole (unknown column layout, corrupt state). Exit 65. */
export class DataError extends ReferralSyncError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, ExitCode.dataError, options);
  }
}

/** A service is unreachable or refused the credentials. Exit 69. */
export class UnavailableError extends ReferralSyncError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, ExitCode.unavailable, options);
  }
}

/** The state cannot be created or written where it was asked for (a path under a file, no permission, a read-only file system). Exit 73. */
export class StateUnwritableError extends ReferralSyncError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, ExitCode.stateUnwritable, options);
  }
}

/** Another run holds the lock on this state and program. Exit 75. */
export class LockedError extends ReferralSyncError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, ExitCode.locked, options);
  }
}

/**
 * A temporary conflict on the state: a statement that timed out, another process holding a lock on it past the
 * wait allowed, a transaction the server gave up on. Nothing is wrong with the state; the same command later will
 * do. Exit 75, the code a scheduler treats as "try again" (EX_TEMPFAIL), like a lock.
 */
export class TemporaryError extends ReferralSyncError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, ExitCode.locked, options);
  }
}

/** The exit code of a run stopped by `signal`, as a shell reports a process ended by it (128 + its number). */
export function signalExitCode(signal: unknown): ExitCode {
  return signal === 'SIGTERM' ? ExitCode.interruptedTerm : signal === 'SIGHUP' ? ExitCode.interruptedHup : ExitCode.interruptedInt;
}

/** Stopped by SIGHUP/SIGINT/SIGTERM before anything was sent (during the checks a run makes first). Exit 129/130/143. */
export class InterruptedError extends ReferralSyncError {
  constructor(signal: string, options: { hint?: string } = {}) {
    super(`Interrupted by ${signal} before anything was sent.`, signalExitCode(signal), options);
  }
}

export function isReferralSyncError(error: unknown): error is ReferralSyncError {
  return error instanceof ReferralSyncError;
}
