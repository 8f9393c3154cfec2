/**
 * Dates for every source, by one rule (research/growsurf.md §7: export formats are not published):
 * - formats: epoch seconds (9–10 digits) or milliseconds (12–13 digits), ISO-8601 (date, or date and time, with
 *   or without a zone), and US dashboard style `M/D/YYYY[ h:mm[:ss] [AM|PM]]`; dates without a zone are UTC;
 * - a date is a real calendar date or it is refused: `2024-02-30` does not roll over into March, and a time of
 *   `25:00` is not the next day;
 * - a real date in an unusual year (before 2000 or after next year) is read, and flagged for a warning: it is
 *   more often a misread column (or a placeholder such as 1/1/1970) than a true signup time.
 * Nothing is guessed: what cannot be read with certainty is refused, with the reason.
 */

export type DateReading =
  | { ok: true; date: Date; unusualYear: boolean }
  | { ok: false; problem: 'unparseable' }
  | { ok: false; problem: 'impossible'; why: string };

/** The years a referral program's dates plausibly fall in. */
export interface YearRange {
  min: number;
  max: number;
}

export const EARLIEST_PLAUSIBLE_YEAR = 2000;

/** 2000 through next year, relative to `now`. */
export function plausibleYears(now: Date): YearRange {
  return { min: EARLIEST_PLAUSIBLE_YEAR, max: now.getUTCFullYear() + 1 };
}

export const DATE_FORMATS = 'epoch ms or s, ISO-8601, or M/D/YYYY h:mm AM';

const US_DATE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})(?:[ ,T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$/;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?)?$/;
const EPOCH = /^(\d+)(?:\.\d+)?$/;

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
/** The range of a JavaScript Date: ±100,000,000 days around 1970. */
const MAX_TIME_MS = 8.64e15;

/** Reads a date as text (a CSV cell, an API string). */
export function readDate(input: string, years: YearRange): DateReading {
  const value = input.trim();
  if (value === '') return { ok: false, problem: 'unparseable' };
  const epoch = EPOCH.exec(value);
  if (epoch) return readEpochText(value, epoch[1]!.length, years);
  const iso = ISO_DATE.exec(value);
  if (iso) return readIso(iso, years);
  const us = US_DATE.exec(value);
  if (us) return readUs(us, years);
  return { ok: false, problem: 'unparseable' };
}

/** Reads a time given as epoch milliseconds (what GrowSurf's API sends). */
export function readEpochMs(ms: number, years: YearRange): DateReading {
  if (!Number.isFinite(ms) || Math.abs(ms) > MAX_TIME_MS) return { ok: false, problem: 'impossible', why: `${ms} is not a time in milliseconds` };
  return dated(new Date(Math.round(ms)), years);
}

/** `parseDate` for callers that only need a date or nothing: a real calendar date in any year, else undefined. */
export function parseDate(input: string): Date | undefined {
  const reading = readDate(input, { min: -Infinity, max: Infinity });
  return reading.ok ? reading.date : undefined;
}

/** The reason a row is refused for a date, naming where it was (`column "Created At"`) and the value. */
export function describeDateProblem(reading: Exclude<DateReading, { ok: true }>, value: string, where: string): string {
  if (reading.problem === 'impossible') return `impossible date "${value}" in ${where}: ${reading.why}`;
  return `unparseable date "${value}" in ${where} (expected ${DATE_FORMATS})`;
}

/** The warning for a real date in an unusual year, naming where it was (`column "Created At"`) and the value. */
export function describeUnusualYear(date: Date, value: string, where: string, years: YearRange): string {
  return (
    `date "${value}" in ${where} is in ${date.getUTCFullYear()}, outside ${years.min}–${years.max}: ` +
    `read as ${date.toISOString()}; check that it holds what you expect`
  );
}

function readEpochText(value: string, integerDigits: number, years: YearRange): DateReading {
  // 10-digit values are seconds (2001–2286), 13-digit ones milliseconds (GrowSurf's createdAt); 9 and 12 digits
  // reach back to 1973. Other lengths are counts or ids, not times.
  const n = Number(value);
  if (integerDigits === 9 || integerDigits === 10) return dated(new Date(Math.round(n * 1000)), years);
  if (integerDigits === 12 || integerDigits === 13) return dated(new Date(Math.round(n)), years);
  return { ok: false, problem: 'unparseable' };
}

function readIso(match: RegExpExecArray, years: YearRange): DateReading {
  const [, y, mo, d, hh, mi, ss, fraction, zone] = match;
  const parts = { year: Number(y), month: Number(mo), day: Number(d), hour: Number(hh ?? 0), minute: Number(mi ?? 0), second: Number(ss ?? 0) };
  const impossible = checkCalendar(parts);
  if (impossible) return { ok: false, problem: 'impossible', why: impossible };
  let offsetMinutes = 0;
  if (zone && /^[+-]/.test(zone)) {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const hours = Number(digits.slice(0, 2));
    const minutes = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (hours > 23 || minutes > 59) return { ok: false, problem: 'impossible', why: `${zone} is not a time zone offset` };
    offsetMinutes = sign * (hours * 60 + minutes);
  }
  const ms = fraction === undefined ? 0 : Math.floor(Number(`0.${fraction}`) * 1000);
  return dated(new Date(utc(parts) + ms - offsetMinutes * 60_000), years);
}

function readUs(match: RegExpExecArray, years: YearRange): DateReading {
  const [, m, d, y, hh, mi, ss, ampm] = match;
  let hour = hh === undefined ? 0 : Number(hh);
  if (ampm) {
    if (hour < 1 || hour > 12) return { ok: false, problem: 'impossible', why: `${hour} ${ampm.toUpperCase()} is not a time on a 12-hour clock` };
    hour = (hour % 12) + (ampm.toLowerCase() === 'pm' ? 12 : 0);
  }
  const parts = { year: Number(y), month: Number(m), day: Number(d), hour, minute: Number(mi ?? 0), second: Number(ss ?? 0) };
  const impossible = checkCalendar(parts);
  if (impossible) return { ok: false, problem: 'impossible', why: impossible };
  return dated(new Date(utc(parts)), years);
}

interface DateParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** Why these parts are not a real date and time, or undefined when they are. */
function checkCalendar({ year, month, day, hour, minute, second }: DateParts): string | undefined {
  if (month < 1 || month > 12) return `there is no month ${month}`;
  const days = daysInMonth(year, month);
  if (day < 1 || day > days) return `${MONTHS[month - 1]} ${year} has ${days} days`;
  if (hour > 23) return `there is no hour ${hour}`;
  if (minute > 59) return `there is no minute ${minute}`;
  if (second > 59) return `there is no second ${second}`;
  return undefined;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Milliseconds since the epoch; years 0–99 stay years 0–99 (Date.UTC would make them 1900–1999). */
function utc({ year, month, day, hour, minute, second }: DateParts): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  return date.getTime();
}

function dated(date: Date, years: YearRange): DateReading {
  if (Number.isNaN(date.getTime())) return { ok: false, problem: 'impossible', why: 'outside the range of dates' };
  const year = date.getUTCFullYear();
  return { ok: true, date, unusualYear: year < years.min || year > years.max };
}

export function toUnixSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}
