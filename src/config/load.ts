import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import {
  defaultConfig,
  parseDestinations,
  parseIdentityRule,
  DEFAULT_OBJECT_TYPE_ID,
  DESTINATIONS,
  EVENT_KINDS,
  TRAIT_KEYS,
  type Config,
} from './config.js';
import { RECENT_EVENT_DECISIONS, type Destination, type RecentEventDecision } from './defaults.js';

const KNOWN_KEYS = [
  'namespace',
  'userId',
  'tiers',
  'traits',
  'events',
  'columns',
  'metadataTraits',
  'syncNulls',
  'destinations',
  'cello',
  'group',
  'recentEvents',
] as const;

/**
 * Reads and validates a config file. Every bad key is reported, not just the first, so a user fixes the file
 * in one go; the error names the file and the key.
 */
export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`Config file ${path} cannot be read: ${(error as NodeJS.ErrnoException).code ?? String(error)}.`, {
      hint: 'Make it readable, or point --config (or REFERRAL_SYNC_CONFIG) at another file.',
      cause: error,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Config file ${path} is not valid JSON: ${(error as Error).message}.`, {
      hint: 'Fix it there: JSON allows no comments and no trailing commas (a "//" key can hold a note).',
    });
  }
  return parseConfig(raw, path);
}

export function parseConfig(raw: unknown, origin: string): Config {
  const config = defaultConfig();
  const problems: string[] = [];
  if (!isPlainObject(raw)) {
    throw new UsageError(`Config file ${origin} must hold a JSON object, such as {"userId": "id"}, not ${Array.isArray(raw) ? 'a list' : 'a single value'}.`);
  }
  for (const [key, value] of Object.entries(raw)) {
    if (key === '$schema' || key.startsWith('//')) continue;
    switch (key as (typeof KNOWN_KEYS)[number]) {
      case 'namespace':
        if (typeof value === 'string' && value.trim() !== '' && !value.includes('|')) config.namespace = value.trim();
        else problems.push(`"namespace" must be a non-empty string without "|"`);
        break;
      case 'userId': {
        const rule = typeof value === 'string' ? parseIdentityRule(value) : undefined;
        if (rule) {
          config.identity = rule;
          config.identityExplicit = true;
        }
        else problems.push(`"userId" must be "email", "id" or "metadata.<key>", not ${JSON.stringify(value)}`);
        break;
      }
      case 'tiers':
        parseTiers(value, config, problems);
        break;
      case 'traits':
        parseNames(value, 'traits', TRAIT_KEYS, config.traitNames, problems);
        break;
      case 'events':
        parseNames(value, 'events', EVENT_KINDS, config.eventNames, problems);
        break;
      case 'columns':
        if (isPlainObject(value) && Object.values(value).every((v) => typeof v === 'string' && v.trim() !== '')) {
          config.columns = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, String(v)]));
        } else {
          problems.push(`"columns" must map field names to CSV header names, e.g. {"email": "Member Email"}`);
        }
        break;
      case 'metadataTraits':
        if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '')) {
          config.metadataTraits = value as string[];
        } else {
          problems.push(`"metadataTraits" must be a list of metadata keys`);
        }
        break;
      case 'syncNulls':
        if (typeof value === 'boolean') config.syncNulls = value;
        else problems.push(`"syncNulls" must be true or false`);
        break;
      case 'destinations': {
        const list = Array.isArray(value) ? value.join(',') : typeof value === 'string' ? value : '';
        const parsed = parseDestinations(list);
        if (parsed.unknown.length === 0 && parsed.destinations.length > 0) config.destinations = parsed.destinations;
        else problems.push(`"destinations" must list ${DESTINATIONS.join(' and/or ')}`);
        break;
      }
      case 'cello': {
        const basis = isPlainObject(value) ? value.tierBasis : undefined;
        if (isPlainObject(value) && Object.keys(value).every((k) => k === 'tierBasis') && (basis === undefined || basis === 'signups' || basis === 'purchases')) {
          if (basis) config.cello.tierBasis = basis;
        } else {
          problems.push(`"cello" takes {"tierBasis": "signups" | "purchases"}`);
        }
        break;
      }
      case 'group':
        parseGroup(value, config, problems);
        break;
      case 'recentEvents':
        if (typeof value === 'string' && (RECENT_EVENT_DECISIONS as readonly string[]).includes(value)) config.recentEvents = value as RecentEventDecision;
        else problems.push(`"recentEvents" must be ${RECENT_EVENT_DECISIONS.map((d) => `"${d}"`).join(', ')} (what a backfill or a first sync does with Customer.io events under 72 hours old)`);
        break;
      default:
        problems.push(`unknown key "${key}" (known keys: ${KNOWN_KEYS.join(', ')})`);
    }
  }
  problems.push(...nameCollisions(config));
  if (problems.length > 0) {
    // One sentence: an error is one line of output, and the config's own text may be quoted in it.
    const list = problems.length === 1 ? problems[0]! : problems.map((p, i) => `(${i + 1}) ${p}`).join('; ');
    throw new UsageError(`Config file ${origin} has ${problems.length} problem${problems.length > 1 ? 's' : ''}: ${list}.`);
  }
  return config;
}

/** `"group": {"id": "metadata.company_id", "name": "metadata.company", "objectTypeId": "1"}` (DESIGN.md §11). */
function parseGroup(value: unknown, config: Config, problems: string[]): void {
  const shape = '"group" takes {"id": "metadata.<key>", "name": "metadata.<key>", "objectTypeId": "1"} (id here or in --group-id)';
  if (!isPlainObject(value) || !Object.keys(value).every((k) => k === 'id' || k === 'name' || k === 'objectTypeId')) {
    problems.push(shape);
    return;
  }
  const id = value.id === undefined ? undefined : typeof value.id === 'string' ? parseIdentityRule(value.id) : undefined;
  const name = value.name === undefined ? undefined : typeof value.name === 'string' ? parseIdentityRule(value.name) : undefined;
  const objectTypeId = value.objectTypeId === undefined ? DEFAULT_OBJECT_TYPE_ID : typeof value.objectTypeId === 'number' ? String(value.objectTypeId) : value.objectTypeId;
  if (value.id !== undefined && !id) problems.push(`"group.id" must be "id", "email" or "metadata.<key>" (the field holding the account id), not ${JSON.stringify(value.id)}`);
  if (value.name !== undefined && !name) problems.push(`"group.name" must be "id", "email" or "metadata.<key>", not ${JSON.stringify(value.name)}`);
  if (typeof objectTypeId !== 'string' || !/^\S+$/.test(objectTypeId)) problems.push(`"group.objectTypeId" must be a Customer.io object type id such as "1", not ${JSON.stringify(value.objectTypeId)}`);
  if ((value.id === undefined || id) && (value.name === undefined || name) && typeof objectTypeId === 'string' && /^\S+$/.test(objectTypeId)) {
    config.group = { objectTypeId, ...(id ? { id } : {}), ...(name ? { name } : {}) };
  }
}

/**
 * Two traits (or two events) sent under one name to the same destination would overwrite each other there,
 * one of them silently: every such pair is a config error. Forwarded metadata keys are trait names too.
 */
function nameCollisions(config: Config): string[] {
  const problems: string[] = [];
  for (const destination of DESTINATIONS) {
    const traits = new Map<string, string[]>();
    for (const key of TRAIT_KEYS) addName(traits, config.traitNames[destination][key], `traits.${destination}.${key}`);
    for (const key of config.metadataTraits) addName(traits, key, `metadataTraits "${key}"`);
    const events = new Map<string, string[]>();
    for (const kind of EVENT_KINDS) addName(events, config.eventNames[destination][kind], `events.${destination}.${kind}`);
    for (const [name, owners] of [...traits, ...events]) {
      if (owners.length > 1) problems.push(`${owners.join(' and ')} are sent to ${destination} under the same name "${name}"; give each its own`);
    }
  }
  return problems;
}

function addName(names: Map<string, string[]>, name: string, owner: string): void {
  const owners = names.get(name) ?? [];
  owners.push(owner);
  names.set(name, owners);
}

function parseTiers(value: unknown, config: Config, problems: string[]): void {
  if (!isPlainObject(value) || Object.keys(value).length === 0) {
    problems.push(`"tiers" must map tier names to minimum referral counts, e.g. {"champion": 10, "active": 1, "new_participant": 0}`);
    return;
  }
  const tiers: { name: string; min: number }[] = [];
  for (const [name, min] of Object.entries(value)) {
    if (typeof min !== 'number' || !Number.isInteger(min) || min < 0) {
      problems.push(`"tiers.${name}" must be a whole number ≥ 0, not ${JSON.stringify(min)}`);
      return;
    }
    tiers.push({ name, min });
  }
  tiers.sort((a, b) => b.min - a.min);
  const mins = new Set(tiers.map((t) => t.min));
  if (mins.size !== tiers.length) {
    problems.push(`"tiers" has two tiers with the same minimum`);
    return;
  }
  if (tiers[tiers.length - 1]?.min !== 0) {
    problems.push(`"tiers" needs one tier with minimum 0 for everyone who has not referred anyone yet`);
    return;
  }
  config.tiers = tiers;
}

function parseNames<K extends string>(
  value: unknown,
  label: string,
  keys: readonly K[],
  target: Record<Destination, Record<K, string>>,
  problems: string[],
): void {
  if (!isPlainObject(value)) {
    problems.push(`"${label}" must be an object with "segment" and/or "customerio" name maps`);
    return;
  }
  for (const [destination, names] of Object.entries(value)) {
    if (!(DESTINATIONS as readonly string[]).includes(destination)) {
      problems.push(`"${label}.${destination}" is not a destination (use ${DESTINATIONS.join(' or ')})`);
      continue;
    }
    if (!isPlainObject(names)) {
      problems.push(`"${label}.${destination}" must map names, e.g. {"${keys[0]}": "..."}`);
      continue;
    }
    for (const [key, name] of Object.entries(names)) {
      if (!(keys as readonly string[]).includes(key)) {
        problems.push(`unknown key "${label}.${destination}.${key}" (known: ${keys.join(', ')})`);
      } else if (typeof name !== 'string' || name.trim() === '') {
        problems.push(`"${label}.${destination}.${key}" must be a non-empty string`);
      } else {
        target[destination as Destination][key as K] = name;
      }
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
