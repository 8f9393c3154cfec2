// Writes a GrowSurf-style participant export of N rows from a seeded PRNG, streaming (never whole in memory).
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

export async function generateExport(path, rows, seed = 42) {
  let state = seed >>> 0;
  const random = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const out = createWriteStream(path);
  out.write('ID,First Name,Last Name,Email,Referral Count,Referred By,Referral Status,Referral Source,Share URL,Created At,Company,Plan\n');
  const start = Date.UTC(2024, 0, 1);
  const statuses = ['CREDIT_AWARDED', 'CREDIT_PENDING', 'CREDIT_EXPIRED'];
  for (let i = 0; i < rows; i += 1) {
    const id = `p${i.toString(36)}`;
    // About 60% referred, by an earlier participant; a few prolific referrers get most of the credit.
    const referred = i > 10 && random() < 0.6;
    const referrer = referred ? `p${Math.floor(random() ** 3 * i).toString(36)}` : '';
    const status = referred ? statuses[Math.floor(random() * 3)] : '';
    const created = new Date(start + i * 30_000).toISOString();
    const count = Math.floor(random() ** 6 * 15);
    const line = `${id},First${i % 997},Last${i % 991},user${i}@example.com,${count},${referrer},${status},${referred ? 'PARTICIPANT' : 'DIRECT'},https://example.com/?grsf=${id},${created},Company ${i % 5000},${['free', 'pro', 'team'][i % 3]}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
}
