import { DESTINATIONS, EVENT_KINDS, type Destination, type EventKind } from '../config/defaults.js';
import { describeViolation, measureOperation } from '../destinations/limits.js';
import { DataError, UsageError } from '../errors.js';
import { customerioEventId, segmentMessageId } from '../model/ids.js';
import type { TraitMap } from '../model/traits.js';
import type { PilotSpec } from './pilot.js';
import type { AccountOperation, EventOperation, IdentifyOperation, Operation, PlanMode, TierMove } from './types.js';

/**
 * The plan file (`diff --out plan.jsonl`) as something `sync --plan` and `backfill --plan` apply. Its first line is
 * the header (`{"type":"plan",…}`): what the plan was made for. Then one line per operation (no `type`, as plan
 * files always had them) and the problem lines (`{"type":"invalid"|"warning",…}`), which applying skips.
 */

/** The version of the file's layout; a reader refuses any other. */
export const PLAN_FORMAT = 1;

export interface PlanHeader {
  type: 'plan';
  format: number;
  tool: 'referral-sync';
  /** The referral-sync version that made it: applying needs the same one. */
  version: string;
  createdAt: string;
  /** sync: what changed; backfill: re-identify everyone (from `backfill --dry-run --out`). */
  mode: PlanMode;
  resend: boolean;
  program: { source: 'growsurf' | 'cello'; id: string; defaulted: boolean };
  /** Each destination with its key namespace: the config namespace and a fingerprint of its credentials (never the secret). */
  destinations: { destination: Destination; namespace: string }[];
  /** The state planned against: where (no credentials), its last run for the program and its acknowledged deliveries. */
  state: { location: string; lastRunId: number | null; acknowledged: number };
  /** Set when the plan is a pilot's (`--limit`, `--only`). */
  pilot: PilotSpec | null;
  customerioApi: 'v1' | 'v2';
  /** The confirmations the plan was made with (--new-program, --new-destination); applying checks the same. */
  confirmed: { newProgram: boolean; newDestination: boolean };
}

export function planHeaderLine(header: Omit<PlanHeader, 'type' | 'format' | 'tool'>): string {
  const line: PlanHeader = { type: 'plan', format: PLAN_FORMAT, tool: 'referral-sync', ...header };
  return `${JSON.stringify(line)}\n`;
}

/**
 * The header of a plan file (its first line), checked: not a plan, or one from another format or version, is a
 * usage error (exit 64: the command names the wrong file, or the plan must be made again); a header that says it
 * is this version's but is broken is a data error (exit 65), with file:line.
 */
export function parsePlanHeader(text: string | undefined, file: string, toolVersion: string): PlanHeader {
  const notAPlan = (why: string): UsageError =>
    new UsageError(`${file} is not a plan referral-sync can apply: ${why}.`, { hint: 'Make one with `npx referral-sync diff --out plan.jsonl` (or `backfill --dry-run --out plan.jsonl`), review it, then apply that file.' });
  if (text === undefined || text.trim() === '') throw notAPlan('it is empty');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw notAPlan('its first line is not JSON');
  }
  if (!isObject(value) || value.type !== 'plan') {
    throw notAPlan(isObject(value) && value.type === undefined && 'key' in value ? 'it has no header line (plans written before version 0.1.0 cannot be applied; make the plan again)' : 'its first line is not a plan header');
  }
  if (value.format !== PLAN_FORMAT) throw notAPlan(`it is written in plan format ${JSON.stringify(value.format)}, and this version reads format ${PLAN_FORMAT}`);
  if (value.version !== toolVersion) {
    throw new UsageError(`${file} was made by referral-sync ${typeof value.version === 'string' ? value.version : '(unknown version)'}, and this is ${toolVersion}: a plan is applied by the version that made it, since ids and ledger records may differ between versions.`, {
      hint: 'Make the plan again with this version (`npx referral-sync diff --out plan.jsonl`), review it, then apply it.',
    });
  }
  const bad = (field: string): DataError => new DataError(`${file}:1: the plan header is damaged (${field}); nothing was sent.`, { hint: 'Make the plan again with `npx referral-sync diff --out plan.jsonl`.' });
  const program = value.program;
  if (!isObject(program) || (program.source !== 'growsurf' && program.source !== 'cello') || !isString(program.id) || typeof program.defaulted !== 'boolean') throw bad('program');
  if (value.mode !== 'sync' && value.mode !== 'backfill') throw bad('mode');
  if (typeof value.resend !== 'boolean') throw bad('resend');
  if (!isString(value.createdAt) || Number.isNaN(Date.parse(value.createdAt))) throw bad('createdAt');
  const destinations = value.destinations;
  if (
    !Array.isArray(destinations) ||
    destinations.length === 0 ||
    !destinations.every((d) => isObject(d) && isDestination(d.destination) && isString(d.namespace)) ||
    new Set(destinations.map((d) => (d as { destination: string }).destination)).size !== destinations.length
  ) {
    throw bad('destinations');
  }
  const state = value.state;
  if (!isObject(state) || !isString(state.location) || !(state.lastRunId === null || isCount(state.lastRunId)) || !isCount(state.acknowledged)) throw bad('state');
  const pilot = value.pilot;
  if (pilot !== null && !(isObject(pilot) && (pilot.limit === undefined || isCount(pilot.limit)) && (pilot.only === undefined || (Array.isArray(pilot.only) && pilot.only.every(isString))))) throw bad('pilot');
  if (value.customerioApi !== 'v1' && value.customerioApi !== 'v2') throw bad('customerioApi');
  const confirmed = value.confirmed;
  if (!isObject(confirmed) || typeof confirmed.newProgram !== 'boolean' || typeof confirmed.newDestination !== 'boolean') throw bad('confirmed');
  return value as unknown as PlanHeader;
}

/** One line after the header: an operation to send, or a problem line (`invalid`, `warning`) that is skipped. */
export type PlanFileEntry = { type: 'operation'; operation: Operation; withheld?: 'skip' | 'hold' } | { type: 'problem' } | { type: 'blank' };

const KINDS: Record<Destination, readonly Operation['kind'][]> = {
  segment: ['identify', 'track', 'group'],
  customerio: ['identify', 'track', 'object', 'relationship'],
};

/**
 * Reads one line of a plan back into the operation `diff` planned: its key, ids and payload exactly as written.
 * Everything a sender and the ledger rely on is checked (shape, destination, kind, the ids the payload carries
 * against the key, the destination's limits); a line that fails is a data error naming file:line.
 */
export function parsePlanLine(text: string, file: string, lineNumber: number, destinations: readonly Destination[]): PlanFileEntry {
  if (text.trim() === '') return { type: 'blank' };
  const where = `${file}:${lineNumber}`;
  const corrupt = (why: string): DataError =>
    new DataError(`${where}: not an operation of this plan (${why}); nothing was sent.`, { hint: 'A plan is applied as diff wrote it: make it again with `npx referral-sync diff --out plan.jsonl` rather than editing it.' });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw corrupt('not JSON');
  }
  if (!isObject(value)) throw corrupt('not a JSON object');
  if (value.type === 'invalid' || value.type === 'warning') return { type: 'problem' };
  if (value.type !== undefined && value.type !== 'withheld') throw corrupt(`unknown line type ${JSON.stringify(value.type)}`);
  if (value.type === 'withheld' && value.action !== 'skip' && value.action !== 'hold') throw corrupt('a withheld event says neither skip nor hold');
  const withheld = value.type === 'withheld' ? (value.action as 'skip' | 'hold') : undefined;
  if (withheld !== undefined && value.kind !== 'track') throw corrupt('only an event can be withheld');
  const destination = value.destination;
  if (!isDestination(destination)) throw corrupt(`unknown destination ${JSON.stringify(destination)}`);
  if (!destinations.includes(destination)) throw corrupt(`destination ${destination} is not one the plan's header names`);
  const kind = value.kind;
  if (!KINDS[destination].includes(kind as Operation['kind'])) throw corrupt(`kind ${JSON.stringify(kind)} is not one ${destination} takes`);
  const key = value.key;
  if (!isString(key) || !/^[0-9a-f]{64}$/.test(key)) throw corrupt('its key is not a 64-digit hex key');
  if (!isString(value.userId)) throw corrupt('no userId');
  if (typeof value.participantId !== 'string') throw corrupt('no participantId');
  if (!isObject(value.payload)) throw corrupt('no payload object');
  const payload = value.payload;
  const base = { destination, key, userId: value.userId, participantId: value.participantId, payload, bytes: 0 };
  if (destination === 'segment' && payload.messageId !== segmentMessageId(key)) throw corrupt('its payload\'s messageId is not the one its key gives');
  if (destination === 'segment' && payload.userId !== value.userId) throw corrupt('its payload\'s userId is not the line\'s');

  let operation: Operation;
  if (kind === 'identify') {
    if (value.change !== 'new' && value.change !== 'changed' && value.change !== 'refresh') throw corrupt('its change is not new, changed or refresh');
    if (!isTraitMap(value.traits) || !isString(value.traitsHash) || !isCount(value.tierChanges)) throw corrupt('its traits, traitsHash or tierChanges are missing');
    if (value.generation !== undefined && !isCount(value.generation)) throw corrupt('its generation is not a count');
    if (value.tierMove !== undefined && !isTierMove(value.tierMove)) throw corrupt('its tierMove is damaged');
    operation = {
      ...base,
      kind,
      change: value.change,
      changes: [],
      traits: value.traits,
      traitsHash: value.traitsHash,
      tierChanges: value.tierChanges,
      ...(value.generation !== undefined ? { generation: value.generation } : {}),
      ...(value.tierMove !== undefined ? { tierMove: value.tierMove } : {}),
    } satisfies IdentifyOperation;
  } else if (kind === 'track') {
    if (!EVENT_KINDS.includes(value.event as EventKind)) throw corrupt(`unknown event ${JSON.stringify(value.event)}`);
    if (!isString(value.name)) throw corrupt('no event name');
    if (!(value.time === null || (isString(value.time) && !Number.isNaN(Date.parse(value.time))))) throw corrupt('its time is not a date or null');
    const time = value.time === null ? undefined : new Date(value.time);
    if (destination === 'customerio' && payload.id !== customerioEventId(key, time)) throw corrupt('its payload\'s event id is not the one its key and time give');
    operation = { ...base, kind, event: value.event as EventKind, name: value.name, time } satisfies EventOperation;
  } else {
    if (!isString(value.accountId)) throw corrupt('no accountId');
    if (typeof value.membership !== 'boolean') throw corrupt('no membership flag');
    const carried = value.accountTraits;
    if (carried !== undefined && !(isObject(carried) && isTraitMap(carried.traits) && isString(carried.hash))) throw corrupt('its accountTraits are damaged');
    if (value.generation !== undefined && !isCount(value.generation)) throw corrupt('its generation is not a count');
    operation = {
      ...base,
      kind: kind as AccountOperation['kind'],
      accountId: value.accountId,
      membership: value.membership,
      ...(carried !== undefined ? { accountTraits: carried as { traits: TraitMap; hash: string } } : {}),
      ...(value.generation !== undefined ? { generation: value.generation } : {}),
    } satisfies AccountOperation;
  }
  // Measured again as it goes on the wire: what diff planned passed these limits, so a line that fails was altered.
  const { wireBytes, violations } = measureOperation(destination, payload);
  if (violations.length > 0) throw corrupt(violations.map(describeViolation).join('; '));
  operation.bytes = wireBytes;
  return { type: 'operation', operation, ...(withheld !== undefined ? { withheld } : {}) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function isDestination(value: unknown): value is Destination {
  return DESTINATIONS.includes(value as Destination);
}

function isTraitMap(value: unknown): value is TraitMap {
  return isObject(value) && Object.values(value).every((v) => v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean');
}

function isTierMove(value: unknown): value is TierMove {
  return isObject(value) && typeof value.from === 'string' && typeof value.to === 'string' && isCount(value.count) && isCount(value.ordinal);
}
