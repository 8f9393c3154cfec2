// The naive baseline for `diff`: the whole export read and parsed into memory at once, then planned from
// arrays (the weekend-script approach). Same planner and ids; only the memory model differs.
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { defaultConfig } from '../src/config/config.js';
import { parseDate } from '../src/model/dates.js';
import type { Participant, SourceRecord } from '../src/model/participant.js';
import { scanDirectory } from '../src/model/referrer-directory.js';
import { planOperations } from '../src/plan/planner.js';
import { EMPTY_BASELINE, type PlanItem } from '../src/plan/types.js';

const rows = parse(readFileSync(process.argv[2]!, 'utf8'), { columns: true }) as Record<string, string>[];
const records: SourceRecord[] = rows.map((r) => {
  const participant: Participant = {
    source: 'growsurf',
    programId: 'default',
    id: r.ID!,
    email: r.Email!.toLowerCase(),
    firstName: r['First Name']!,
    lastName: r['Last Name']!,
    referralCount: Number(r['Referral Count']),
    referralLink: r['Share URL']!,
    referralCode: r.ID!,
    joinedVia: r['Referral Source']!,
    rewards: [],
    metadata: { Company: r.Company ?? null, Plan: r.Plan ?? null },
  };
  const created = parseDate(r['Created At'] ?? '');
  if (created) participant.createdAt = created;
  const converted = parseDate(r['Converted At'] ?? '');
  if (converted) participant.convertedAt = converted;
  if (r['Referred By']) participant.referrerId = r['Referred By'];
  const status = r['Referral Status'];
  if (status) participant.referralStatus = status === 'CREDIT_AWARDED' ? 'converted' : status === 'CREDIT_PENDING' ? 'pending' : 'expired';
  return { kind: 'participant', participant };
});
const config = defaultConfig();
async function* all(): AsyncGenerator<SourceRecord> {
  yield* records;
}
const { directory, duplicates } = await scanDirectory(all(), config.identity);
const items: PlanItem[] = [];
for await (const item of planOperations(all(), {
  config,
  destinations: ['segment', 'customerio'],
  mode: 'sync',
  resend: false,
  now: new Date(),
  namespaces: { segment: 'default/segment/-', customerio: 'default/customerio/-' },
  directory,
  duplicates,
  baseline: EMPTY_BASELINE,
})) {
  items.push(item);
}
console.log(`naive: ${records.length} participants, ${items.filter((i) => i.type === 'operation').length} operations`);
