/**
 * Date parsing for exports whose format is not published (research/growsurf.md §7): epoch ms, epoch s,
 * ISO-8601, and US dashboard style `M/D/YYYY[ h:mm[:ss] AM|PM]`. Dates without a zone are taken as UTC.
 * Returns undefined for anything it cannot read with certainty; it never guesses.
 */
const US_DATE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})(?:[ ,T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

// Epoch values outside 1990..2200 are almost certainly a misread column, not a date.
const MIN_EPOCH_MS = Date.UTC(1990, 0, 1);
const MAX_EPOCH_MS = Date.UTC(2200, 0, 1);

export function parseDate(input: string): Date | undefined {
  const value = input.trim();
  if (value === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return parseEpoch(Number(value));
  if (ISO_DATE.test(value)) {
    // A bare date or a date-time without zone is UTC, so the same file gives the same ids on every machine.
    const hasZone = /(Z|[+-]\d{2}:?\d{2})$/.test(value) && value.length > 10;
    const normalized = value.replace(' ', 'T');
    const ms = Date.parse(hasZone || normalized.length === 10 ? normalized : `${normalized}Z`);
    return Number.isNaN(ms) ? undefined : inRange(ms);
  }
  const us = US_DATE.exec(value);
  if (us) return parseUsDate(us);
  return undefined;
}

function parseEpoch(n: number): Date | undefined {
  // 13-digit values are milliseconds (GrowSurf's createdAt); 10-digit ones are seconds.
  const ms = n >= 1e11 ? n : n * 1000;
  return inRange(Math.round(ms));
}

function parseUsDate(match: RegExpExecArray): Date | undefined {
  const [, m, d, y, hh, mm, ss, ampm] = match;
  const month = Number(m);
  const day = Number(d);
  const year = Number(y);
  let hour = hh === undefined ? 0 : Number(hh);
  const minute = mm === undefined ? 0 : Number(mm);
  const second = ss === undefined ? 0 : Number(ss);
  if (ampm) {
    if (hour < 1 || hour > 12) return undefined;
    const pm = ampm.toLowerCase() === 'pm';
    hour = (hour % 12) + (pm ? 12 : 0);
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const date = new Date(ms);
  if (date.getUTCDate() !== day) return undefined; // 2/31 and friends
  return inRange(ms);
}

function inRange(ms: number): Date | undefined {
  return ms >= MIN_EPOCH_MS && ms < MAX_EPOCH_MS ? new Date(ms) : undefined;
}

export function toUnixSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}
