import { DESTINATION_LABELS, type Destination } from '../config/defaults.js';
import { CUSTOMERIO_LIMITS, byteLength } from '../destinations/limits.js';
import { accountTraits, type Account, type AccountBook, type AccountMember } from '../model/accounts.js';
import { operationKey, stableHash, traitsObjectId } from '../model/ids.js';
import type { TraitMap } from '../model/traits.js';
import { checked } from './checked.js';
import { groupPayload, objectPayload, relationshipPayload } from './payloads.js';
import type { AccountPlanning, PlanContext } from './context.js';
import { acknowledgedSince, type AccountBaseline, type AccountOperation, type AccountPlan, type AccountRef, type DeliveryRef, type DeliveryStatus, type PlanItem, type TraitChange } from './types.js';

/** Accounts planned per load of their baselines (and their memberships' ledger rows). */
export const ACCOUNT_CHUNK = 500;

/** Where the program's keys come from: every member of a run shares its source and program. */
export interface AccountProgram {
  source: string;
  programId: string;
}

/** An account's traits as computed and hashed: what an operation carries and, acknowledged, the baseline. */
type AccountTraits = { traits: TraitMap; hash: string };

/** One account at one destination, before its baseline is read. */
interface Draft {
  destination: Destination;
  account: Account;
  /** The account traits this run computed (none on a partial read), with their hash. */
  carried: AccountTraits | undefined;
  /** The ledger kind of a membership here: a Segment group call, a Customer.io relationship. */
  membershipKind: 'group' | 'relationship';
  /** The membership key of each member, in member order. */
  memberKeys: string[];
  /** The key of the operation that carries the account's traits in a generation (DESIGN.md §6). */
  traitsKey: ((generation: number) => string) | undefined;
}

/**
 * The accounts' operations, planned once every person is: each account's traits are computed over all its members.
 * Segment: a `group` call for each person joining an account, and one from its first member carrying the account's
 * traits when they changed. Customer.io: the account as an object when its traits changed, and a relationship for
 * each person joining it. A membership is a fact, sent once (the ledger dedupes it like an event), and carries no
 * traits: one id always says the same thing. Traits are sent like an identify's: when they differ from what the
 * destination acknowledged, or when what it holds is in doubt, each time as a new operation with an id of its own.
 */
export async function* planAccounts(book: AccountBook, program: AccountProgram | undefined, context: PlanContext): AsyncGenerator<PlanItem> {
  const planning = context.accounts;
  if (planning === undefined || program === undefined || book.size === 0) return;
  const accounts = book.list();
  let destinations = context.destinations;
  if (destinations.includes('customerio') && !planning.customerioObjects) {
    destinations = destinations.filter((d) => d !== 'customerio');
    yield {
      type: 'warning',
      message: `Customer.io objects need Track API v2: the ${accounts.length} account${accounts.length === 1 ? '' : 's'} and their relationships are not sent to Customer.io with --customerio-api v1 (drop it to send them)`,
      location: undefined,
      destination: 'customerio',
    };
  }
  if (!planning.traits) {
    yield {
      type: 'warning',
      message: planning.pilot
        ? 'a pilot sends part of the program: account traits are computed over every member and sent by the full run; this run sends the new memberships of the piloted people'
        : '--quick reads only part of the program: account traits are computed and sent by a full sync; this run sends the new memberships of the people it read',
      location: undefined,
    };
  }
  if (destinations.includes('customerio')) yield* oversizedIds(accounts);
  yield* caseVariants(accounts);

  const met = new Map<Destination, number>();
  for (let start = 0; start < accounts.length; start += ACCOUNT_CHUNK) {
    if (context.signal?.aborted) return;
    const chunk = accounts.slice(start, start + ACCOUNT_CHUNK);
    const drafts = chunk.flatMap((account) =>
      destinations.filter((d) => d !== 'customerio' || fitsCustomerio(account.id)).map((destination) => draft(destination, account, program, planning, context)),
    );
    const prefetch = context.baseline.prefetch;
    if (prefetch) {
      // The traits keys depend on the generations, loaded with the accounts.
      await prefetch.accounts(drafts.map((d): AccountRef => ({ destination: d.destination, accountId: d.account.id })));
      await prefetch.deliveries(drafts.flatMap((d) => deliveryRefs(d, context)));
    }
    for (const d of drafts) {
      if (context.baseline.account(d.destination, d.account.id) !== undefined) met.set(d.destination, (met.get(d.destination) ?? 0) + 1);
      yield* planAccount(d, planning, context);
    }
  }
  if (planning.traits) yield* unmetAccounts(destinations, planning, met);
}

/**
 * Accounts the state holds that no one in this data belongs to any more (everyone moved, or left the program):
 * nothing is sent for them, since referral-sync never deletes, so their traits stay as last sent. Said once.
 */
function* unmetAccounts(destinations: readonly Destination[], planning: AccountPlanning, met: ReadonlyMap<Destination, number>): Generator<PlanItem> {
  for (const destination of destinations) {
    const unmet = (planning.known?.[destination] ?? 0) - (met.get(destination) ?? 0);
    if (unmet <= 0) continue;
    yield {
      type: 'warning',
      message: `${unmet} account${unmet === 1 ? '' : 's'} the state holds for ${DESTINATION_LABELS[destination]} ${unmet === 1 ? 'has' : 'have'} no members in this data: nothing is sent for ${unmet === 1 ? 'it' : 'them'}, so ${unmet === 1 ? 'its' : 'their'} account traits stay as last sent (referral-sync never deletes an account or a relationship)`,
      location: undefined,
      destination,
    };
    return;
  }
}

function draft(destination: Destination, account: Account, program: AccountProgram, planning: AccountPlanning, context: PlanContext): Draft {
  const traits = planning.traits ? accountTraits(account, program.source) : undefined;
  const hash = traits === undefined ? undefined : stableHash(traits);
  const key = (kind: string, subjectId: string, objectId: string): string =>
    operationKey({ namespace: context.namespaces[destination], source: program.source, programId: program.programId, kind, subjectId, objectId });
  // Customer.io keys carry the object type: the same account id under another type is another object.
  const object = destination === 'customerio' ? `${planning.objectTypeId}/${account.id}` : account.id;
  const membershipKind = destination === 'segment' ? 'group' : 'relationship';
  const traitsKind = destination === 'segment' ? 'group_traits' : 'object';
  return {
    destination,
    account,
    carried: traits === undefined || hash === undefined ? undefined : { traits, hash },
    membershipKind,
    memberKeys: account.members.map((m) => key(membershipKind, m.userId, object)),
    // The generation and the traits are part of the key, as for identifies: Segment dedupes a messageId for about a
    // day, so traits that go A → B → A need three ids.
    traitsKey: hash === undefined ? undefined : (generation) => key(traitsKind, object, traitsObjectId(generation, [hash])),
  };
}

/** The ledger rows planning an account reads: its memberships, and the newest traits operation issued for it. */
function deliveryRefs(d: Draft, context: PlanContext): DeliveryRef[] {
  const latest = context.baseline.generation?.(d.destination, 'account', d.account.id);
  const keys = latest === undefined ? d.memberKeys : [...d.memberKeys, latest.key];
  return keys.map((key) => ({ destination: d.destination, key }));
}

/**
 * Whether the account's traits are sent, and under which key: as for a person's identify (planner.ts), the newest
 * traits operation's key is reused only to resend it (the same traits, its outcome in doubt or refused for good);
 * traits that differ from the baseline, or a baseline in doubt, get a new operation in the next generation.
 */
function traitsDecision(d: Draft, baseline: AccountBaseline | undefined, context: PlanContext): { key: string; generation: number; status?: DeliveryStatus | 'sentThisRun' } | undefined {
  if (d.carried === undefined || d.traitsKey === undefined) return undefined;
  const latest = context.baseline.generation?.(d.destination, 'account', d.account.id);
  const status = latest === undefined ? undefined : context.baseline.delivery(d.destination, latest.key);
  const inDoubt = latest !== undefined && status !== 'sent' && status !== 'sentThisRun' && status !== 'dead';
  if (latest !== undefined && d.traitsKey(latest.generation) === latest.key && (inDoubt || status === 'dead')) {
    return { key: latest.key, generation: latest.generation, ...(status === undefined ? {} : { status }) };
  }
  const due = baseline?.hash !== d.carried.hash || (context.mode === 'backfill' && !acknowledgedSince(baseline?.acknowledgedAt, context.backfillSince));
  if (!inDoubt && !due) return undefined;
  const generation = (latest?.generation ?? 0) + 1;
  return { key: d.traitsKey(generation), generation };
}

function* planAccount(d: Draft, planning: AccountPlanning, context: PlanContext): Generator<PlanItem> {
  const { destination, account } = d;
  const baseline = context.baseline.account(destination, account.id);
  const { carried, membershipKind } = d;
  const joining: { member: AccountMember; key: string }[] = [];
  for (const [index, member] of account.members.entries()) {
    const key = d.memberKeys[index]!;
    const status = context.baseline.delivery(destination, key);
    // Already related: counted, never sent again (a dead one only by `retry`).
    if (!context.resend && (status === 'sent' || status === 'sentThisRun' || status === 'dead')) {
      yield { type: 'deduped', destination, event: membershipKind, key, status };
    } else {
      joining.push({ member, key });
    }
  }

  const operations: { operation: AccountOperation; member: AccountMember | undefined }[] = [];
  const traits = traitsDecision(d, baseline, context);
  let traitsSent = false;
  if (traits !== undefined) {
    // Customer.io: the account as an object. Segment: a group call from the first member, carrying the traits.
    const first = account.members[0]!;
    const operation = destination === 'customerio' ? objectOperation(d, planning, carried!, traits) : groupOperation(d, first, traits.key, false, { carried: carried!, generation: traits.generation });
    if (!context.resend && traits.status === 'dead') {
      yield { type: 'deduped', destination, event: operation.kind, key: operation.key, status: 'dead' };
    } else {
      // Sent before the memberships, as Customer.io's object must exist before relationships to it.
      operations.push({ operation, member: destination === 'customerio' ? undefined : first });
      traitsSent = true;
    }
  }
  for (const { member, key } of joining) {
    operations.push({
      operation: destination === 'segment' ? groupOperation(d, member, key, true, undefined) : relationshipOperation(d, member, key, planning),
      member,
    });
  }
  yield { type: 'account', account: accountPlan(d, baseline, traitsSent, joining.length) };
  for (const { operation, member } of operations) yield* checked(operation, member?.location);
}

function accountPlan(d: Draft, baseline: AccountBaseline | undefined, traitsDue: boolean, newMembers: number): AccountPlan {
  const traits = d.carried?.traits ?? baseline?.traits ?? {};
  const changes: TraitChange[] = [];
  if (d.carried !== undefined) {
    for (const [trait, after] of Object.entries(d.carried.traits)) {
      const before = baseline?.traits[trait];
      if (baseline === undefined || before !== after) changes.push({ trait, before, after });
    }
  }
  const change = !traitsDue ? 'unchanged' : baseline === undefined ? 'new' : changes.length > 0 ? 'changed' : 'refresh';
  return { destination: d.destination, accountId: d.account.id, change, changes, traits, members: d.account.members.length, newMembers };
}

function base(d: Draft, member: AccountMember | undefined, key: string): Pick<AccountOperation, 'destination' | 'key' | 'userId' | 'participantId' | 'accountId'> {
  return {
    destination: d.destination,
    key,
    // An object operation concerns no one person: the ledger and reports name the account.
    userId: member?.userId ?? d.account.id,
    participantId: member?.participantId ?? '',
    accountId: d.account.id,
  };
}

/** A Segment group call: a membership (no traits: a fact, one payload per id), or the account's traits in a generation. */
function groupOperation(d: Draft, member: AccountMember, key: string, membership: boolean, traits: { carried: AccountTraits; generation: number } | undefined): AccountOperation {
  const payload = groupPayload(member.userId, d.account.id, traits?.carried.traits, key);
  return {
    ...base(d, member, key),
    kind: 'group',
    membership,
    ...(traits ? { accountTraits: traits.carried, generation: traits.generation } : {}),
    payload,
    bytes: byteLength(JSON.stringify(payload)),
  };
}

function objectOperation(d: Draft, planning: AccountPlanning, carried: AccountTraits, traits: { key: string; generation: number }): AccountOperation {
  const payload = objectPayload(d.account.id, planning.objectTypeId, carried.traits);
  return {
    ...base(d, undefined, traits.key),
    kind: 'object',
    membership: false,
    accountTraits: carried,
    generation: traits.generation,
    payload,
    bytes: byteLength(JSON.stringify(payload)),
  };
}

function relationshipOperation(d: Draft, member: AccountMember, key: string, planning: AccountPlanning): AccountOperation {
  const payload = relationshipPayload(member.userId, d.account.id, planning.objectTypeId);
  return { ...base(d, member, key), kind: 'relationship', membership: true, payload, bytes: byteLength(JSON.stringify(payload)) };
}

function fitsCustomerio(accountId: string): boolean {
  return byteLength(accountId) <= CUSTOMERIO_LIMITS.objectIdBytes;
}

/** An account id Customer.io would refuse (over 150 bytes): reported on each member's row, not sent there. */
function* oversizedIds(accounts: readonly Account[]): Generator<PlanItem> {
  for (const account of accounts) {
    if (fitsCustomerio(account.id)) continue;
    const bytes = byteLength(account.id);
    for (const member of account.members) {
      yield {
        type: 'warning',
        message: `account id of ${member.userId} is ${bytes} bytes, over ${DESTINATION_LABELS.customerio}'s ${CUSTOMERIO_LIMITS.objectIdBytes}-byte limit on an object id: the account and its relationships are not sent to ${DESTINATION_LABELS.customerio}`,
        location: member.location,
        destination: 'customerio',
        code: 'account-id-too-long/customerio',
        limits: [{ destination: 'customerio', limit: 'customerio.object_id_bytes', size: bytes, max: CUSTOMERIO_LIMITS.objectIdBytes, unit: 'bytes', field: 'identifiers.object_id' }],
      };
    }
  }
}

/**
 * Account ids that differ only by letter case (`ACME`, `acme`) are two accounts at both destinations (their ids
 * are case-sensitive): most likely one company typed two ways, so each later spelling is reported on its members'
 * rows. Nothing is merged: which spelling is right is the data's to say.
 */
function* caseVariants(accounts: readonly Account[]): Generator<PlanItem> {
  const first = new Map<string, string>();
  for (const account of accounts) {
    const folded = account.id.toLowerCase();
    const earlier = first.get(folded);
    if (earlier === undefined) {
      first.set(folded, account.id);
      continue;
    }
    for (const member of account.members) {
      yield {
        type: 'warning',
        message: `account id "${account.id}" of ${member.userId} differs from "${earlier}" only by letter case: they are sent as two accounts; correct the data if they are one`,
        location: member.location,
        code: 'account-id-letter-case',
      };
    }
  }
}
