import { UsageError } from '../../errors.js';

/**
 * A duration flag (`--max-wait`, `--stall-timeout`): `90s`, `15m`, `1h`, `500ms`, or a bare number of seconds.
 * Anything else is a usage error naming the flag.
 */
export function parseDuration(value: string | undefined, fallbackMs: number, flag: string): number {
  if (value === undefined) return fallbackMs;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$/i.exec(value);
  if (!match) throw new UsageError(`${flag} takes a duration such as 90s, 15m or 1h, not "${value}".`);
  const n = Number(match[1]);
  const unit = (match[2] ?? 's').toLowerCase();
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'h' ? 3_600_000 : 60_000));
}
