import { once } from 'node:events';
import { createWriteStream } from 'node:fs';

/** Writes a GrowSurf-style export of `rows` participants from a seed, streaming (never whole in memory). */
export async function generateExport(path: string, rows: number, seed = 42): Promise<void> {
  let state = seed >>> 0;
  const random = (): number => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const out = createWriteStream(path);
  out.write('ID,First Name,Last Name,Email,Referral Count,Referred By,Referral Status,Referral Source,Share URL,Created At,Converted At,Company,Plan\n');
  const start = Date.UTC(2024, 0, 1);
  const statuses = ['CREDIT_AWARDED', 'CREDIT_PENDING', 'CREDIT_EXPIRED'];
  for (let i = 0; i < rows; i += 1) {
    const id = `p${i.toString(36)}`;
    // About 60% referred, by an earlier participant; a few prolific referrers get most of the credit.
    const referred = i > 10 && random() < 0.6;
    const referrer = referred ? `p${Math.floor(random() ** 3 * i).toString(36)}` : '';
    const status = referred ? statuses[Math.floor(random() * 3)] : '';
    const created = start + i * 30_000;
    const converted = status === 'CREDIT_AWARDED' ? new Date(created + 86_400_000).toISOString() : '';
    const count = Math.floor(random() ** 6 * 15);
    const line = `${id},First${i % 997},Last${i % 991},user${i}@example.com,${count},${referrer},${status},${referred ? 'PARTICIPANT' : 'DIRECT'},https://example.com/?grsf=${id},${new Date(created).toISOString()},${converted},Company ${i % 5000},${['free', 'pro', 'team'][i % 3]}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
}
