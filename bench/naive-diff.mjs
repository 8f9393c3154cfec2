// The naive baseline for `diff`: read the whole export into memory, parse it in one go, then plan from arrays
// (the weekend-script approach). Same planner, same output counts; only the memory model differs.
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { defaultConfig } from '../dist/config/config.js';
import { scanDirectory } from '../dist/model/referrer-directory.js';
import { planOperations } from '../dist/plan/planner.js';
import { EMPTY_BASELINE } from '../dist/plan/types.js';
import { parseDate } from '../dist/model/dates.js';

const file = process.argv[2];
const rows = parse(readFileSync(file, 'utf8'), { columns: true });
const participants = rows.map((r) => ({
  kind: 'participant',
  participant: {
    source: 'growsurf', programId: 'default', id: r.ID, email: r.Email.toLowerCase(), firstName: r['First Name'], lastName: r['Last Name'],
    createdAt: parseDate(r['Created At']), referralCount: Number(r['Referral Count']), referrerId: r['Referred By'] || undefined,
    referralStatus: r['Referral Status'] === 'CREDIT_AWARDED' ? 'converted' : r['Referral Status'] === 'CREDIT_PENDING' ? 'pending' : r['Referral Status'] ? 'expired' : undefined,
    referralLink: r['Share URL'], referralCode: r.ID, joinedVia: r['Referral Source'], rewards: [], metadata: { Company: r.Company, Plan: r.Plan },
  },
}));
const config = defaultConfig();
async function* all() { yield* participants; }
const { directory, duplicates } = await scanDirectory(all(), config.identity);
const items = [];
for await (const item of planOperations(all(), {
  config, destinations: ['segment', 'customerio'], mode: 'sync', resend: false, now: new Date(),
  namespaces: { segment: 'default/segment/-', customerio: 'default/customerio/-' }, directory, duplicates, baseline: EMPTY_BASELINE,
})) items.push(item);
console.log(`naive: ${participants.length} participants, ${items.filter((i) => i.type === 'operation').length} operations`);
