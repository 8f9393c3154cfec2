import { DESTINATION_LABELS, type Destination } from '../../config/defaults.js';
import { ExitCode, UsageError } from '../../errors.js';
import { openState, stateExists } from '../../state/open.js';
import type { ProgramRecord } from '../../state/store.js';
import { joinLines } from '../../terminal-text.js';
import type { Output } from '../output/output.js';
import { CREDENTIALS, fingerprintOf } from '../run/namespaces.js';
import type { Env } from '../wiring/env.js';
import { destinationNamespaces, resolveCommon, type CommonFlags } from '../wiring/settings.js';

export interface StateRotateFlags extends CommonFlags {
  campaign?: string;
  /** The fingerprint the new credentials replace, when the state delivered under more than one. */
  previous?: string;
  json?: boolean;
}

/** What `state rotate` did for one destination. */
interface Rotation {
  destination: Destination;
  outcome: 'recorded' | 'already recorded' | 'known' | 'nothing delivered' | 'not set';
  /** The fingerprint of the credentials as set now (none when not set). */
  fingerprint: string;
  /** The fingerprint the history was delivered under, which the new one now stands for. */
  previous?: string;
  namespace?: string;
  programs?: string[];
  message: string;
}

/**
 * `referral-sync state rotate`: the destination credentials set now (SEGMENT_WRITE_KEY, CUSTOMERIO_SITE_ID) are new
 * credentials for the destination the state already delivered to. Records their fingerprint as an alias of the one
 * the history went out under, so every later run derives the same ids and sends nothing again. Prints fingerprints,
 * never the credentials.
 */
export async function runStateRotate(flags: StateRotateFlags, env: Env, cwd: string, output: Output, now: Date): Promise<ExitCode> {
  const common = resolveCommon(flags, env, cwd);
  const explicit = flags.to !== undefined;
  if (flags.previous !== undefined && !/^[0-9a-f]{16}$/.test(flags.previous.trim())) {
    throw new UsageError(`--previous takes a credential fingerprint, 16 hex digits as \`status\` and the exit-64 message show them, not "${flags.previous}".`);
  }
  if (!(await stateExists(common.statePath))) {
    throw new UsageError(`There is no state at ${common.statePath}: nothing was delivered, so new credentials need no record.`, {
      hint: 'Check --state (or REFERRAL_SYNC_STATE): point it at the state your runs use.',
    });
  }
  const given = destinationNamespaces(common.config, env);
  const reader = await openState(common.statePath, { mode: 'read' });
  let records: ProgramRecord[];
  let aliases: Awaited<ReturnType<typeof reader.namespaceAliases>>;
  try {
    records = await reader.programRecords();
    aliases = await reader.namespaceAliases();
  } finally {
    await reader.close();
  }
  const rotations: Rotation[] = [];
  const toRecord: { destination: Destination; alias: string; namespace: string }[] = [];
  for (const destination of common.destinations) {
    const label = DESTINATION_LABELS[destination];
    const variable = CREDENTIALS[destination];
    const own = given[destination];
    const fingerprint = fingerprintOf(own);
    if (own.endsWith('/-')) {
      if (explicit) throw new UsageError(`state rotate --to ${destination} needs the new ${variable} set: its fingerprint is what gets recorded.`, { hint: `Set ${variable} to the new credential, then run it again.` });
      rotations.push({ destination, outcome: 'not set', fingerprint, message: `${label}: ${variable} is not set; skipped.` });
      continue;
    }
    const prefix = `${common.config.namespace}/${destination}/`;
    const mine = records.filter((r) => r.destination === destination && r.namespace.startsWith(prefix) && (flags.campaign === undefined || r.programId === flags.campaign));
    const programsOf = (namespace: string): string[] => [...new Set(mine.filter((r) => r.namespace === namespace).map((r) => r.programId))];
    if (mine.some((r) => r.namespace === own)) {
      rotations.push({ destination, outcome: 'known', fingerprint, namespace: own, programs: programsOf(own), message: `${label}: ${variable} (fingerprint ${fingerprint}) is the one this state delivered with; nothing to record.` });
      continue;
    }
    let candidates = [...new Set(mine.map((r) => r.namespace))];
    if (flags.previous !== undefined) candidates = candidates.filter((namespace) => fingerprintOf(namespace) === flags.previous!.trim());
    const existing = aliases.find((a) => a.destination === destination && a.alias === own);
    if (existing && (candidates.length === 0 || candidates.includes(existing.namespace))) {
      rotations.push({
        destination,
        outcome: 'already recorded',
        fingerprint,
        previous: fingerprintOf(existing.namespace),
        namespace: existing.namespace,
        message: `${label}: ${variable} fingerprint ${fingerprint} is already recorded as rotated from ${fingerprintOf(existing.namespace)}; nothing to record.`,
      });
      continue;
    }
    if (candidates.length === 0) {
      if (flags.previous !== undefined) {
        throw new UsageError(`${common.statePath} delivered nothing to ${label} under fingerprint ${flags.previous.trim()}${flags.campaign === undefined ? '' : ` for program "${flags.campaign}"`}.`, {
          hint: '`npx referral-sync status` lists the fingerprints the state delivered under.',
        });
      }
      rotations.push({
        destination,
        outcome: 'nothing delivered',
        fingerprint,
        message: `${label}: this state delivered nothing to ${label}${flags.campaign === undefined ? '' : ` for program "${flags.campaign}"`} yet, so the new ${variable} needs no record.`,
      });
      continue;
    }
    if (candidates.length > 1) {
      const list = candidates.map((namespace) => `${fingerprintOf(namespace)} (program ${programsOf(namespace).join(', ')})`).join('; ');
      throw new UsageError(`${common.statePath} delivered to ${label} under ${candidates.length} credentials: ${list}. Which one does the new ${variable} replace?`, {
        hint: `Name it: --previous <fingerprint>${flags.campaign === undefined ? ', or --campaign <id>' : ''}.`,
      });
    }
    const namespace = candidates[0]!;
    const previous = fingerprintOf(namespace);
    toRecord.push({ destination, alias: own, namespace });
    rotations.push({
      destination,
      outcome: 'recorded',
      fingerprint,
      previous,
      namespace,
      programs: programsOf(namespace),
      message: `${label}: ${variable} fingerprint ${fingerprint} recorded as rotated from ${previous} (program ${programsOf(namespace).join(', ')}): runs with it keep their ids and send nothing again.`,
    });
  }
  if (toRecord.length > 0) {
    // Opened for writing only now: a refusal above leaves the state untouched (not even migrated).
    const state = await openState(common.statePath, { mode: 'write' });
    try {
      for (const row of toRecord) await state.recordNamespaceAlias(row.destination, row.alias, row.namespace, now);
    } finally {
      await state.close();
    }
  }
  const recorded = toRecord.length;
  const verdict = `state rotate: ${recorded === 0 ? 'nothing recorded' : `${recorded} rotation${recorded === 1 ? '' : 's'} recorded`} in ${common.statePath}.`;
  if (flags.json === true || output.json) {
    const destinations = rotations.map(({ message: _message, ...rest }) => rest);
    output.result(`${JSON.stringify({ command: 'state rotate', outcome: 'done', exitCode: ExitCode.ok, state: common.statePath, destinations, message: verdict }, null, output.jsonIndent(flags.json))}\n`);
  } else {
    output.result(`${joinLines([...rotations.map((r) => r.message), verdict])}\n`);
  }
  return ExitCode.ok;
}
