import { DESTINATION_LABELS, type Destination } from '../config/defaults.js';
import { describeViolation, withinAttributeLimits, type LimitViolation } from '../destinations/limits.js';
import { deriveEvents, tierChangedFact, type EventFact } from '../model/events.js';
import { canonicalKey, controlCharacterIn, identityOf, missingIdentityReason } from '../model/identity.js';
import { operationKey, stableHash, traitsObjectId } from '../model/ids.js';
import { formatLocation, type Participant, type RecordLocation, type SourceRecord } from '../model/participant.js';
import { locationKey, type IdentityClaim, type ReferralCycle } from '../model/referrer-directory.js';
import { computeTraits, destinationTraits, isReferred, type CanonicalTraits, type TraitMap } from '../model/traits.js';
import { accountIdOf, accountNameOf, AccountBook } from '../model/accounts.js';
import { planAccounts, type AccountProgram } from './accounts.js';
import type { PlanContext } from './context.js';
import { checked } from './checked.js';
import { guardEvent } from './recent-events.js';
import { eventPayload, identifyPayload } from './payloads.js';
import { acknowledgedSince, type DeliveryRef, type DeliveryStatus, type EventOperation, type IdentityBaseline, type IdentityRef, type IdentifyOperation, type IssuedGeneration, type PlanItem, type TierMove, type TraitChange } from './types.js';

/** What planning people gathers for the accounts planned after them. */
interface AccountGathering {
  book: AccountBook;
  program: AccountProgram | undefined;
}

/**
 * The planner: participants in, plan items out, nothing read or written but through `context.baseline`.
 * `diff` renders what it yields; `sync` and `backfill` apply it. Both see the same items for the same input.
 */
export async function* planOperations(records: AsyncIterable<SourceRecord>, context: PlanContext): AsyncGenerator<PlanItem> {
  const gathering: AccountGathering | undefined = context.accounts && context.config.group?.id ? { book: new AccountBook(), program: undefined } : undefined;
  for await (const record of records) {
    if (record.kind === 'invalid') {
      yield { type: 'invalid', reason: record.reason, location: record.location, ...withId(record.participantId) };
      continue;
    }
    if (record.kind === 'warning') {
      yield { type: 'warning', message: record.message, location: record.location };
      continue;
    }
    yield* planParticipant(record.participant, record.location, context, gathering);
  }
  // Accounts are planned over the whole read; a stop that cut the read short leaves them to the next run.
  if (gathering && !context.signal?.aborted) yield* planAccounts(gathering.book, gathering.program, context);
}

function withId(participantId: string | undefined): { participantId?: string } {
  return participantId === undefined ? {} : { participantId };
}

function* planParticipant(record: Participant, location: RecordLocation | undefined, context: PlanContext, gathering: AccountGathering | undefined): Generator<PlanItem> {
  const { config } = context;
  if (isRepeatedRow(location, context)) {
    yield {
      type: 'invalid',
      reason: `participant id "${record.id}" already appeared on an earlier row (ids compare without Unicode form, invisible characters or surrounding spaces); the first row wins and this one is ignored`,
      location,
      participantId: record.id,
      code: 'participant-id-repeated',
    };
    return;
  }
  const userId = identityOf(record, config.identity);
  if (userId === undefined) {
    yield { type: 'invalid', reason: missingIdentityReason(config.identity), location, participantId: record.id, code: 'user-id-missing' };
    return;
  }
  const control = controlCharacterIn(userId);
  if (control !== undefined) {
    // Sent, it would make a person no one can type or find; shown, it could steer a terminal.
    yield { type: 'invalid', reason: `the user id holds the control character ${control}; the row is not sent (fix it in the source)`, location, participantId: record.id, code: 'user-id-control-character' };
    return;
  }
  const claimed = context.directory.claim(userId, record.id, location);
  if (claimed !== undefined) {
    yield identityTaken(record, userId, claimed, location);
    return;
  }
  const person = personOf(record, userId, context);
  const { participant } = person;
  const leftOut = referrerLeftOutMessage(record, person);
  if (leftOut !== undefined) yield { type: 'warning', message: leftOut, location, code: `referrer-left-out/${person.referrerLeftOut!.kind}` };
  yield { type: 'participant', participantId: participant.id, userId, traits: person.traits };
  if (gathering) yield* gatherMember(person, location, context, gathering);

  for (const destination of context.destinations) {
    const draft = draftDestination(person, destination, context);
    // An attribute the destination would refuse is left out; the rest of the identify still goes.
    for (const { attribute, violations } of draft.leftOut) {
      yield {
        type: 'warning',
        message: `${DESTINATION_LABELS[destination]} attribute "${attribute}" of ${userId} is left out of the identify: ${violations.map(describeViolation).join('; ')}. The rest is sent; ${DESTINATION_LABELS[destination]} keeps its current value`,
        location,
        destination,
        limits: violations,
        code: `attribute-left-out/${destination}/${attribute}`,
      };
    }
    const { baseline } = draft;
    const tiers = tierDecision(draft, destination, context);
    const identify = identifyDecision(draft, destination, context);
    if (identify === undefined) {
      const thisRun = baseline?.acknowledgedAt !== undefined && baseline.acknowledgedAt.getTime() >= context.now.getTime();
      yield { type: 'unchanged', destination, userId, ...(thisRun ? { thisRun } : {}) };
    } else {
      const operation = identifyOperation(destination, participant, userId, draft, identify, tiers, context);
      if (!context.resend && identify.status === 'dead') {
        // The destination refused exactly these traits for good; `retry` (or a change of traits) sends them.
        yield { type: 'deduped', destination, event: 'identify', key: operation.key, status: 'dead' };
      } else {
        yield* checked(operation, location);
      }
    }

    for (const { fact, key } of tiers.events) {
      const status = context.baseline.delivery(destination, key);
      if (status === 'skipped') {
        // Left out for good by the campaign guard (--recent-events skip): never sent, --resend included.
        yield { type: 'deduped', destination, event: fact.kind, key, status };
      } else if ((status === 'sent' || status === 'sentThisRun') && !context.resend) {
        yield { type: 'deduped', destination, event: fact.kind, key, status };
      } else if (status === 'dead' && !context.resend) {
        // Dead deliveries were refused for good; only `referral-sync retry` sends them again.
        yield { type: 'deduped', destination, event: fact.kind, key, status };
      } else {
        for (const item of checked(eventOperation(destination, participant, fact, key, context), location)) {
          yield guardEvent(item, status === 'held', context.recentEvents, context.now);
        }
      }
    }
  }
  if (isReferred(participant) && participant.referrerId === undefined) {
    yield { type: 'warning', message: `participant ${participant.id} joined through a referral but the data names no referrer`, location, code: 'referrer-not-named' };
  }
}

/**
 * A string of its own. Values read from a file can be slices of the chunk they were parsed from, which stays in
 * memory as long as a slice does: what the account book keeps until the end of the read must not hold the file.
 */
function flatCopy<T extends string | undefined>(value: T): T {
  return (value === undefined ? value : Buffer.from(value, 'utf8').toString('utf8')) as T;
}

/** Adds a planned person to their account, or says on their row why they have none. */
function* gatherMember(person: PlannedPerson, location: RecordLocation | undefined, context: PlanContext, gathering: AccountGathering): Generator<PlanItem> {
  const group = context.config.group!;
  const { participant, userId } = person;
  const found = accountIdOf(participant, group.id!);
  if ('missing' in found) {
    yield { type: 'warning', message: `participant ${participant.id} has no account id (${found.missing}): no group call or relationship is sent for them`, location, code: 'account-id-missing' };
    return;
  }
  gathering.program ??= { source: participant.source, programId: participant.programId };
  gathering.book.add(flatCopy(found.id), {
    userId: flatCopy(userId),
    participantId: flatCopy(participant.id),
    location,
    referred: person.traits.channel === 'referral',
    count: person.count,
    joinedAt: participant.createdAt?.getTime(),
    name: flatCopy(accountNameOf(participant, group.name)),
  });
}

/**
 * The identities planning `record` reads, one per destination: what a baseline that loads before planning
 * (`BaselineView.prefetch`) loads for it. A record that is not planned (a problem, a repeated row, no user id)
 * reads none.
 */
export function identityReads(record: SourceRecord, context: PlanContext): IdentityRef[] {
  const userId = record.kind === 'participant' ? plannedUserId(record.participant, record.location, context) : undefined;
  return userId === undefined ? [] : context.destinations.map((destination) => ({ destination, userId }));
}

/**
 * The ledger keys planning `record` looks up, computed by the planner's own steps from the identities
 * `identityReads` named, which `context.baseline` must answer by now (the identify and tier-change keys depend
 * on them). A record whose user id an earlier one claims is not planned; its keys are loaded all the same.
 */
export function deliveryReads(record: SourceRecord, context: PlanContext): DeliveryRef[] {
  if (record.kind !== 'participant') return [];
  const userId = plannedUserId(record.participant, record.location, context);
  if (userId === undefined) return [];
  const person = personOf(record.participant, userId, context);
  return context.destinations.flatMap((destination) => {
    const draft = draftDestination(person, destination, context);
    // The newest identify issued (its status says whether the destination's traits are known) and every event.
    const keys = draft.latest === undefined ? [] : [draft.latest.key];
    if (draft.move !== undefined) keys.push(draft.move.event.key);
    if (draft.acknowledgedMove !== undefined) keys.push(draft.acknowledgedMove.event.key);
    for (const event of draft.events) keys.push(event.key);
    return keys.map((key) => ({ destination, key }));
  });
}

/** A row that repeats an earlier participant id (found by the directory pass): the first row wins. */
function isRepeatedRow(location: RecordLocation | undefined, context: PlanContext): boolean {
  return location !== undefined && context.duplicates.has(locationKey(location));
}

/** The user id a participant is planned under, or undefined when it is not planned at all. */
function plannedUserId(participant: Participant, location: RecordLocation | undefined, context: PlanContext): string | undefined {
  return isRepeatedRow(location, context) ? undefined : identityOf(participant, context.config.identity);
}

/** A participant as planned: the referrer resolved (or left out, and why), traits computed, history derived. */
interface PlannedPerson {
  /** In canonical form (ids as keyed and sent); without a referrer that earns credit, that is the participant themself. */
  participant: Participant;
  userId: string;
  referrerUserId: string | undefined;
  /** Why the source's referrer is not credited (DESIGN.md §10): the same rule as the directory's counts. */
  referrerLeftOut: { kind: 'self' } | { kind: 'missing' } | { kind: 'cycle'; cycle: ReferralCycle } | undefined;
  /** Converted referrals: the count in the traits and in a tier change's key. */
  count: number;
  traits: CanonicalTraits;
  facts: EventFact[];
}

function personOf(record: Participant, userId: string, context: PlanContext): PlannedPerson {
  const { config } = context;
  let participant = canonicalIds(record);
  let referrerUserId: string | undefined;
  let referrerLeftOut: PlannedPerson['referrerLeftOut'];
  const judgement = context.directory.judgeReferrer(participant, userId);
  switch (judgement.kind) {
    case 'credited':
      referrerUserId = judgement.userId;
      break;
    case 'self':
    case 'cycle':
      // No referral at all: planned as if the source named no referrer.
      referrerLeftOut = judgement;
      participant = withoutReferrer(participant);
      break;
    case 'missing':
      // A referral did bring this person (their channel and status stay); nobody in the program is credited.
      referrerLeftOut = judgement;
      break;
    case 'none':
      break;
  }
  const count = participant.referralCount ?? context.directory.referralsOf(participant).converted;
  const traits = computeTraits(participant, { referredBy: referrerUserId, count }, config);
  const facts = deriveEvents(participant, { userId, referrerUserId });
  return { participant, userId, referrerUserId, referrerLeftOut, count, traits, facts };
}

/**
 * The participant with its identity keys in canonical form (`canonicalKey`): its id goes into operation keys and
 * `participant_id`, its referrer reference into `referrer_id`, so a row whose bytes differ only by Unicode form
 * or invisible characters plans the same operations with the same ids.
 */
function canonicalIds(participant: Participant): Participant {
  const id = canonicalKey(participant.id);
  const referrerId = participant.referrerId === undefined ? undefined : canonicalKey(participant.referrerId);
  if (id === participant.id && referrerId === participant.referrerId) return participant;
  const copy: Participant = { ...participant, id };
  if (referrerId === undefined || referrerId === '') delete copy.referrerId;
  else copy.referrerId = referrerId;
  return copy;
}

/** The warning on a participant whose referral earns no credit, naming why. */
function referrerLeftOutMessage(record: Participant, person: PlannedPerson): string | undefined {
  const left = person.referrerLeftOut;
  if (left === undefined) return undefined;
  switch (left.kind) {
    case 'self':
      return `participant ${record.id} is named as their own referrer ("${record.referrerId}"); no Referral Made is planned and the referral earns no credit`;
    case 'missing':
      return `referrer "${record.referrerId}" of participant ${record.id} is not in the data: no participant of the program has that id or email (a deleted participant?); the referral earns no credit: referred_by is left unset and no Referral Made event is planned`;
    case 'cycle': {
      const { members, length } = left.cycle;
      const chain = [...members, ...(length > members.length ? [`… (${length} in all)`] : [members[0]!])].join(' → ');
      return `participant ${record.id} is on a referral cycle (${chain}, each referred by the next): no referral on it earns credit; no Referral Made is planned and no referrer is set`;
    }
  }
}

/**
 * What one destination gets for one person, short of the payloads and of any ledger status: what the baseline,
 * the newest identify issued (its generation) and the source say. `identifyDecision` then reads the ledger.
 */
interface DestinationDraft {
  baseline: IdentityBaseline | undefined;
  /** The newest identify issued for this person here, acknowledged or not. */
  latest: IssuedGeneration | undefined;
  /** The traits this run knows and sends. */
  named: TraitMap;
  leftOut: { attribute: string; violations: LimitViolation[] }[];
  /** What the destination holds once the identify is acknowledged: the next baseline. */
  known: TraitMap;
  hash: string;
  /** The tier move against the last acknowledged traits, if the source shows one, with its Referral Tier Changed. */
  move: KeyedMove | undefined;
  /** The key an identify with these traits has in the newest generation issued (a resend of it), if any. */
  keyAgain: string | undefined;
  /** The key an identify with these traits has in the next generation (a new operation). */
  keyNext: string;
  /** The events the source shows, but a tier move. */
  events: KeyedFact[];
  /**
   * The move the last acknowledged traits made, while the source still shows its tier, with its Referral Tier
   * Changed: a run that stopped once that identify was acknowledged may not have delivered it (`tierDecision`).
   */
  acknowledgedMove: KeyedMove | undefined;
}

type KeyedFact = { fact: EventFact; key: string };
type KeyedMove = { move: TierMove; event: KeyedFact };

function draftDestination(person: PlannedPerson, destination: Destination, context: PlanContext): DestinationDraft {
  const { config } = context;
  const { participant, userId } = person;
  const { attributes: named, leftOut } = withinAttributeLimits(destination, destinationTraits(person.traits, destination, config));
  const baseline = context.baseline.identity(destination, userId);
  const latest = context.baseline.generation?.(destination, 'identify', userId);
  const tierTrait = config.traitNames[destination].tier;
  const transition = tierTransition(baseline, person.traits.tier, tierTrait);
  const known = keepLeftOut(knownTraits(named, baseline?.traits, config.syncNulls), baseline?.traits, leftOut.map((l) => l.attribute));
  const hash = stableHash(known);
  // The key names what is sent too: two identifies that leave the same traits behind but send different ones differ.
  const sentHash = config.syncNulls ? hash : stableHash(named);
  const keyed = (fact: EventFact): KeyedFact => ({ fact, key: eventKey(destination, participant, fact, context) });
  const withEvent = (move: TierMove): KeyedMove => ({ move, event: keyed(tierChangedFact(participant, userId, move)) });
  const last = latest?.tierMove;
  const acknowledgedMove =
    transition === undefined && last !== undefined && baseline?.traits[tierTrait] === last.to && (baseline.tierChanges ?? 0) === last.ordinal ? withEvent(last) : undefined;
  return {
    baseline,
    latest,
    named,
    leftOut,
    known,
    hash,
    move: transition === undefined ? undefined : withEvent({ ...transition, count: person.count }),
    keyAgain: latest === undefined ? undefined : identifyKey(destination, participant, userId, latest.generation, hash, sentHash, context),
    keyNext: identifyKey(destination, participant, userId, (latest?.generation ?? 0) + 1, hash, sentHash, context),
    events: person.facts.map(keyed),
    acknowledgedMove,
  };
}

/**
 * Whether this person gets an identify, and under which key (DESIGN.md §6). The key reused is that of the newest
 * identify issued, and only for a resend of it: the same traits while its outcome is in doubt (pending after a
 * crash, failed, perhaps applied by a destination that answered too late) or refused for good. Otherwise, the
 * traits differ from what the destination holds, or what it holds is in doubt (then this run's traits are sent
 * whatever the baseline says): a new identify, in the next generation, under a key never used before.
 */
function identifyDecision(draft: DestinationDraft, destination: Destination, context: PlanContext): IdentifyChoice | undefined {
  const { latest, baseline } = draft;
  const status = latest === undefined ? undefined : context.baseline.delivery(destination, latest.key);
  const inDoubt = latest !== undefined && status !== 'sent' && status !== 'sentThisRun' && status !== 'dead';
  if (latest !== undefined && draft.keyAgain === latest.key && (inDoubt || status === 'dead')) {
    return { key: latest.key, generation: latest.generation, ...(status === undefined ? {} : { status }) };
  }
  const unchanged = baseline?.hash === draft.hash && (context.mode === 'sync' || acknowledgedSince(baseline.acknowledgedAt, context.backfillSince));
  if (!inDoubt && unchanged) return undefined;
  return { key: draft.keyNext, generation: (latest?.generation ?? 0) + 1 };
}

/** The identify a person gets: its key and generation, and the ledger status of that key when it is a resend. */
interface IdentifyChoice {
  key: string;
  generation: number;
  status?: DeliveryStatus | 'sentThisRun';
}

/** What this run plans of tier moves: the move its identify makes, the events to plan, the move it carries on. */
interface TierDecision {
  /** The move this person's identify makes, counted in its tier transitions. */
  move: TierMove | undefined;
  events: KeyedFact[];
  /** The move the identify records with its generation: its own, or the acknowledged one whose event may still be due. */
  carried: TierMove | undefined;
}

/**
 * A sync plans every tier move it observes against the last acknowledged traits, with its Referral Tier Changed; a
 * backfill plans none, but one an earlier sync planned and did not settle (the same operation, resent). Either
 * plans again the Referral Tier Changed of the acknowledged move while its delivery is not settled (pending,
 * failed, or never queued: the run that planned it stopped) and the source still shows that tier.
 */
function tierDecision(draft: DestinationDraft, destination: Destination, context: PlanContext): TierDecision {
  const unsettled = (key: string): boolean => {
    const status = context.baseline.delivery(destination, key);
    return status !== 'sent' && status !== 'sentThisRun' && status !== 'dead';
  };
  let events = draft.events;
  let move: TierMove | undefined;
  if (draft.move !== undefined) {
    const issued = context.baseline.delivery(destination, draft.move.event.key);
    if (context.mode === 'sync' || issued === 'pending' || issued === 'failed' || issued === 'superseded' || issued === 'held') {
      move = draft.move.move;
      events = [...events, draft.move.event];
    }
  }
  const acknowledged = draft.acknowledgedMove;
  if (acknowledged !== undefined && unsettled(acknowledged.event.key)) events = [...events, acknowledged.event];
  return { move, events, carried: move ?? acknowledged?.move };
}

/** The tier move the source shows against the last acknowledged traits, with its ordinal among this person's moves. */
function tierTransition(baseline: IdentityBaseline | undefined, tier: string, tierTrait: string): { from: string; to: string; ordinal: number } | undefined {
  const previous = baseline?.traits[tierTrait];
  if (typeof previous !== 'string' || previous === tier) return undefined;
  return { from: previous, to: tier, ordinal: (baseline?.tierChanges ?? 0) + 1 };
}

/** A second participant resolving to a user id already planned in this run: invalid, both ids named. */
function identityTaken(participant: Participant, userId: string, first: IdentityClaim, location: RecordLocation | undefined): PlanItem {
  if (first.participantId === participant.id) {
    // The source gave the same participant twice (an API page that shifted): it is planned once.
    return { type: 'warning', message: `participant ${participant.id} was read twice; it is planned once`, location, code: 'participant-read-twice' };
  }
  const where = first.location ? ` (${formatLocation(first.location)})` : '';
  return {
    type: 'invalid',
    // Ids and emails compare in canonical form (emails without case too), so the two may differ in their bytes.
    reason: `user id "${userId}" already belongs to participant ${first.participantId}${where}; participant ${participant.id} resolves to the same user id (compared without letter case in emails, Unicode form, invisible characters or surrounding spaces), so the first one wins and this row is not sent`,
    location,
    participantId: participant.id,
    code: 'user-id-taken',
  };
}

/** A self-referral is no referral: the participant is planned as if the source named no referrer. */
function withoutReferrer(participant: Participant): Participant {
  const { referrerId: _referrerId, referrerProfile: _referrerProfile, referralStatus: _status, referralStatusRaw: _raw, convertedAt: _at, ...rest } = participant;
  const copy: Participant = { ...rest };
  // "Joined through a participant" named the participant themself.
  if (copy.joinedVia?.toUpperCase() === 'PARTICIPANT') delete copy.joinedVia;
  return copy;
}


/** A left-out attribute is one this run does not know: the baseline keeps what the destination holds. */
function keepLeftOut(known: TraitMap, before: TraitMap | undefined, leftOut: readonly string[]): TraitMap {
  if (leftOut.length === 0) return known;
  const kept = { ...known };
  for (const name of leftOut) {
    if (before !== undefined && name in before) kept[name] = before[name]!;
    else delete kept[name];
  }
  return kept;
}

/**
 * What the destination will hold after this identify. A trait we no longer know keeps its old value there
 * (nulls never overwrite, DESIGN.md §4), so it stays in the baseline; with syncNulls it becomes null.
 */
function knownTraits(named: TraitMap, before: TraitMap | undefined, syncNulls: boolean): TraitMap {
  if (before === undefined) return named;
  if (!syncNulls) return { ...before, ...named };
  const known = { ...named };
  for (const key of Object.keys(before)) {
    if (!(key in known) && before[key] !== null) known[key] = null;
  }
  return known;
}

/**
 * An identify's key: the person, the generation it is issued in and the traits it carries (DESIGN.md §6). Segment
 * dedupes a messageId for about a day: a new identify must never carry the id of an older one, even one with the
 * same traits (4 → 5 → 4), or Segment drops it while the state believes it applied.
 */
function identifyKey(destination: Destination, participant: Participant, userId: string, generation: number, hash: string, sentHash: string, context: PlanContext): string {
  return operationKey({
    namespace: context.namespaces[destination],
    source: participant.source,
    programId: participant.programId,
    kind: 'identify',
    subjectId: userId,
    objectId: traitsObjectId(generation, [hash, sentHash]),
  });
}

function identifyOperation(
  destination: Destination,
  participant: Participant,
  userId: string,
  draft: DestinationDraft,
  identify: IdentifyChoice,
  tiers: TierDecision,
  context: PlanContext,
): IdentifyOperation {
  const { key } = identify;
  // `named` is what this run knows and sends; `known` is what the destination holds afterwards: the next baseline.
  const traits = draft.known;
  const before = draft.baseline?.traits;
  const payload = identifyPayload(destination, userId, context.config.syncNulls ? traits : draft.named, key);
  const changes: TraitChange[] = [];
  for (const [trait, after] of Object.entries(traits)) {
    const previous = before?.[trait];
    if (before === undefined || previous !== after) changes.push({ trait, before: previous, after });
  }
  return {
    destination,
    kind: 'identify',
    key,
    userId,
    participantId: participant.id,
    change: before === undefined ? 'new' : changes.length > 0 ? 'changed' : 'refresh',
    changes,
    traits,
    traitsHash: draft.hash,
    tierChanges: (draft.baseline?.tierChanges ?? 0) + (tiers.move === undefined ? 0 : 1),
    generation: identify.generation,
    ...(tiers.carried ? { tierMove: tiers.carried } : {}),
    payload,
    bytes: Buffer.byteLength(JSON.stringify(payload)),
  };
}

const KEY_KINDS: Record<EventFact['kind'], string> = {
  joined: 'joined',
  referralMade: 'referral_made',
  converted: 'converted',
  rewardEarned: 'reward',
  tierChanged: 'tier_changed',
};

function eventKey(destination: Destination, participant: Participant, fact: EventFact, context: PlanContext): string {
  return operationKey({
    namespace: context.namespaces[destination],
    source: participant.source,
    programId: participant.programId,
    kind: KEY_KINDS[fact.kind],
    subjectId: fact.subjectId,
    objectId: fact.objectId,
  });
}

function eventOperation(destination: Destination, participant: Participant, fact: EventFact, key: string, context: PlanContext): EventOperation {
  const payload = eventPayload(destination, fact, key, context.config, context.now);
  return {
    destination,
    kind: 'track',
    event: fact.kind,
    name: context.config.eventNames[destination][fact.kind],
    key,
    userId: fact.userId,
    participantId: participant.id,
    time: fact.time,
    payload,
    bytes: Buffer.byteLength(JSON.stringify(payload)),
  };
}
