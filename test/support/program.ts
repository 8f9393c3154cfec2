import { seededRandom } from '../fakes/http.js';
import { writeCsv } from './cli.js';

/**
 * A GrowSurf-style program of `size` participants from a seed: direct signups, referral chains, all three
 * referral statuses, a few prolific referrers. Rows are objects keyed by export header.
 */
export function generateProgram(size: number, seed = 7): Record<string, string>[] {
  const random = seededRandom(seed);
  const start = Date.UTC(2025, 0, 1);
  const rows: Record<string, string>[] = [];
  const awarded = new Map<number, number>();
  const referrers: number[] = [];
  for (let i = 0; i < size; i += 1) {
    const referred = i > 3 && random() < 0.6;
    const referrer = referred ? Math.floor(random() ** 3 * i) : -1;
    const status = referred ? ['CREDIT_AWARDED', 'CREDIT_PENDING', 'CREDIT_EXPIRED'][Math.floor(random() * 3)]! : '';
    if (status === 'CREDIT_AWARDED') awarded.set(referrer, (awarded.get(referrer) ?? 0) + 1);
    referrers.push(referrer);
    rows.push({
      ID: `g${seed}x${i.toString(36)}`,
      Email: `member${i}.s${seed}@example.com`,
      'First Name': `First${i}`,
      'Last Name': `Last${i}`,
      'Referred By': referred ? `g${seed}x${referrer.toString(36)}` : '',
      'Referral Status': status,
      'Referral Source': referred ? 'PARTICIPANT' : 'DIRECT',
      'Share URL': `https://example.com/?grsf=g${seed}x${i.toString(36)}`,
      'Created At': new Date(start + i * 60_000).toISOString(),
      'Converted At': status === 'CREDIT_AWARDED' ? new Date(start + i * 60_000 + 3_600_000).toISOString() : '',
    });
  }
  rows.forEach((row, i) => (row['Referral Count'] = String(awarded.get(i) ?? 0)));
  return rows;
}

export function writeProgram(dir: string, size: number, seed = 7, name = 'program.csv'): string {
  return writeCsv(dir, name, generateProgram(size, seed));
}
