import { describe, expect, it } from 'vitest';
import { describeDateProblem, describeUnusualYear, parseDate, plausibleYears, readDate, readEpochMs, type DateReading } from '../../src/model/dates.js';

const YEARS = plausibleYears(new Date('2026-06-01T00:00:00Z'));

function iso(reading: DateReading): string {
  return reading.ok ? reading.date.toISOString() : `refused (${reading.problem}${reading.problem === 'impossible' ? `: ${reading.why}` : ''})`;
}

describe('readDate', () => {
  it.each([
    ['1552404738928', '2019-03-12T15:32:18.928Z'],
    ['1552404738', '2019-03-12T15:32:18.000Z'],
    ['2025-05-01T10:00:00Z', '2025-05-01T10:00:00.000Z'],
    ['2025-05-01T12:00:00+02:00', '2025-05-01T10:00:00.000Z'],
    ['2025-05-01T12:00:00+0530', '2025-05-01T06:30:00.000Z'],
    ['2025-05-01T10:00:00.123456Z', '2025-05-01T10:00:00.123Z'],
    ['2025-05-01 10:00:00', '2025-05-01T10:00:00.000Z'],
    ['2025-05-01T10:00', '2025-05-01T10:00:00.000Z'],
    ['2025-05-01', '2025-05-01T00:00:00.000Z'],
    ['2024-02-29', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29T23:59:59Z', '2000-02-29T23:59:59.000Z'],
    ['3/2/2025 9:15 AM', '2025-03-02T09:15:00.000Z'],
    ['3/2/2025 12:05 AM', '2025-03-02T00:05:00.000Z'],
    ['3/2/2025 12:05 PM', '2025-03-02T12:05:00.000Z'],
    ['11/30/2025 11:59 pm', '2025-11-30T23:59:00.000Z'],
    ['11/30/2025', '2025-11-30T00:00:00.000Z'],
    ['11/30/2025 18:40:12', '2025-11-30T18:40:12.000Z'],
    ['2/29/2024', '2024-02-29T00:00:00.000Z'],
  ])('reads %s as %s', (input, expected) => {
    expect(iso(readDate(input, YEARS))).toBe(expected);
  });

  it.each([
    ['2024-02-30', 'February 2024 has 29 days'],
    ['2024-02-31T10:00:00Z', 'February 2024 has 29 days'],
    ['2023-02-29', 'February 2023 has 28 days'],
    ['1900-02-29', 'February 1900 has 28 days'],
    ['2025-04-31', 'April 2025 has 30 days'],
    ['2025-13-01', 'there is no month 13'],
    ['2025-05-01T24:00:00Z', 'there is no hour 24'],
    ['2025-05-01T10:60Z', 'there is no minute 60'],
    ['2025-05-01T10:00:00+25:00', '+25:00 is not a time zone offset'],
    ['2/30/2025', 'February 2025 has 28 days'],
    ['2/29/2023 10:00 AM', 'February 2023 has 28 days'],
    ['13/1/2025 1:00 PM', 'there is no month 13'],
    ['3/2/2025 13:15 PM', '13 PM is not a time on a 12-hour clock'],
  ])('refuses %s: not a real date (%s), never rolled over', (input, why) => {
    expect(readDate(input, YEARS)).toEqual({ ok: false, problem: 'impossible', why });
  });

  it.each(['yesterday', '12', '12345678901', '2025-5-1', '1/1/25', ''])('refuses %j as unparseable', (input) => {
    expect(readDate(input, YEARS)).toEqual({ ok: false, problem: 'unparseable' });
  });

  it('reads a real date in an unusual year, and flags it: 1970 and 2199 are read, not refused', () => {
    expect(readDate('1/1/1970', YEARS)).toEqual({ ok: true, date: new Date('1970-01-01T00:00:00Z'), unusualYear: true });
    expect(readDate('1/1/2199', YEARS)).toEqual({ ok: true, date: new Date('2199-01-01T00:00:00Z'), unusualYear: true });
    expect(readDate('1999-12-31T23:59:59Z', YEARS)).toMatchObject({ ok: true, unusualYear: true });
    expect(readDate('2027-12-31', YEARS)).toMatchObject({ ok: true, unusualYear: false });
    expect(readDate('2028-01-01', YEARS)).toMatchObject({ ok: true, unusualYear: true });
    // Two-digit years stay two-digit: year 99 is not 1999.
    expect(iso(readDate('0099-01-01', YEARS))).toBe('0099-01-01T00:00:00.000Z');
  });

  it('reads epoch milliseconds from an API the same way', () => {
    expect(readEpochMs(1_700_000_000_000, YEARS)).toEqual({ ok: true, date: new Date(1_700_000_000_000), unusualYear: false });
    expect(readEpochMs(0, YEARS)).toMatchObject({ ok: true, unusualYear: true });
    expect(readEpochMs(1e20, YEARS)).toMatchObject({ ok: false, problem: 'impossible' });
    expect(readEpochMs(Number.NaN, YEARS)).toMatchObject({ ok: false, problem: 'impossible' });
  });

  it('words the reasons with the column and the value', () => {
    const impossible = readDate('2024-02-30', YEARS);
    const unparseable = readDate('soon', YEARS);
    if (impossible.ok || unparseable.ok) throw new Error('expected refusals');
    expect(describeDateProblem(impossible, '2024-02-30', 'column "Created At"')).toBe('impossible date "2024-02-30" in column "Created At": February 2024 has 29 days');
    expect(describeDateProblem(unparseable, 'soon', 'column "Created At"')).toBe(
      'unparseable date "soon" in column "Created At" (expected epoch ms or s, ISO-8601, or M/D/YYYY h:mm AM)',
    );
    expect(describeUnusualYear(new Date('1970-01-01T00:00:00Z'), '1/1/1970', 'column "Created At"', YEARS)).toBe(
      'date "1/1/1970" in column "Created At" is in 1970, outside 2000–2027: read as 1970-01-01T00:00:00.000Z; check that it holds what you expect',
    );
  });

  it('keeps parseDate for callers that want a date or nothing', () => {
    expect(parseDate('2024-02-30')).toBeUndefined();
    expect(parseDate('1/1/1970')?.toISOString()).toBe('1970-01-01T00:00:00.000Z');
  });
});
