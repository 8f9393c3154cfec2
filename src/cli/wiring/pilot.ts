import { UsageError } from '../../errors.js';
import type { PilotSpec } from '../../plan/pilot.js';

/** `--limit N` and `--only <user id>` (repeatable), on diff, sync and backfill. */
export interface PilotFlags {
  limit?: string;
  only?: string[];
}

/** The pilot the flags ask for, checked (a usage error names a bad value); undefined without either flag. */
export function resolvePilot(flags: PilotFlags): PilotSpec | undefined {
  if (flags.limit === undefined && flags.only === undefined) return undefined;
  let limit: number | undefined;
  if (flags.limit !== undefined) {
    const text = flags.limit.trim();
    limit = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError(`--limit takes a whole number of people, 1 or more, not "${flags.limit}".`, { hint: 'For example --limit 5: the first 5 people who have something to send.' });
  }
  const only = flags.only?.map((value) => value.trim());
  if (only !== undefined && (only.length === 0 || only.some((value) => value === ''))) {
    throw new UsageError('--only takes a user id (an email by default) or a participant id, not an empty value.', { hint: 'Repeat it for several people: --only ann@example.com --only bob@example.com' });
  }
  return { ...(limit !== undefined ? { limit } : {}), ...(only !== undefined ? { only: [...new Set(only)] } : {}) };
}
