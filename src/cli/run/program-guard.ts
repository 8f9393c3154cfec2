import { DESTINATION_LABELS, type Destination } from '../../config/defaults.js';
import { UsageError } from '../../errors.js';
import type { StateReader } from '../../state/store.js';
import { CREDENTIALS, fingerprintOf } from './namespaces.js';

export interface ProgramIdentity {
  /** growsurf or cello: the `source` part of every key. */
  source: string;
  programId: string;
  destinations: readonly Destination[];
  namespaces: Record<Destination, string>;
  /** --new-program: the user confirmed that this is another program, not the same one under a new id. */
  confirmedNew: boolean;
  /** Where the program id came from, for the message (`--campaign`, or its default). */
  programIdDefaulted: boolean;
  /** --new-destination: the user confirmed that other credentials are another workspace, to get the history. */
  confirmedNewDestination: boolean;
}

/**
 * Every operation id carries a fingerprint of the destination's credentials (DESIGN.md §6: Segment dedupes
 * messageIds across all its customers). A program delivered with other credentials (a rotated or missing key,
 * another config namespace) would go out again under new ids the destination cannot dedupe: stop (exit 64)
 * unless --new-destination says these credentials are another workspace that should get the history.
 */
export async function assertKnownDestinations(state: StateReader, program: ProgramIdentity): Promise<void> {
  if (program.confirmedNewDestination) return;
  for (const destination of program.destinations) {
    const delivered = await state.deliveredNamespaces(program.source, destination, program.programId);
    if (delivered.length === 0 || delivered.includes(program.namespaces[destination])) continue;
    const label = DESTINATION_LABELS[destination];
    const variable = CREDENTIALS[destination];
    const current = program.namespaces[destination];
    const then = delivered.map((namespace) => fingerprintOf(namespace)).join(', ');
    const now = current.endsWith('/-')
      ? `${variable} is not set`
      : `${variable} (fingerprint ${fingerprintOf(current)}; or the config's namespace) is not the one used then (fingerprint ${then})`;
    throw new UsageError(
      `${state.location} delivered program "${program.programId}" to ${label} with other credentials: ${now}, and every event id includes their fingerprint, so the history would be sent again under ids ${label} cannot dedupe.`,
      {
        hint:
          `If this is a new ${variable} for the same ${label} ${destination === 'segment' ? 'source' : 'workspace'} (a rotated credential), record it once: \`npx referral-sync state rotate --to ${destination}\` with the new ${variable} set; ids stay the same and nothing is sent again. ` +
          `If these credentials are another ${label} workspace that should get the history, pass --new-destination.`,
      },
    );
  }
}

/**
 * The program id is part of every operation id (DESIGN.md §6). A run under another program id than the one
 * this state already delivered to the same destinations would send that history again under new ids, which
 * the destinations cannot dedupe: it stops (exit 64) unless --new-program confirms a new program.
 */
export async function assertKnownProgram(state: StateReader, program: ProgramIdentity): Promise<void> {
  if (program.confirmedNew) return;
  const conflicts: string[] = [];
  const others = new Set<string>();
  for (const destination of program.destinations) {
    const delivered = await state.deliveredPrograms(program.source, destination, program.namespaces[destination]);
    if (delivered.length === 0 || delivered.includes(program.programId)) continue;
    for (const id of delivered) others.add(id);
    conflicts.push(DESTINATION_LABELS[destination]);
  }
  if (conflicts.length === 0) return;
  const previous = [...others].map((id) => `"${id}"`).join(', ');
  const given = program.programIdDefaulted ? `"${program.programId}" (no --campaign was given)` : `"${program.programId}"`;
  throw new UsageError(
    `This run's program id is ${given}, but ${state.location} already delivered program ${previous} from ${program.source} to ${conflicts.join(' and ')}; ` +
      `the program id is part of every event id, so that history would be sent again under new ids the destinations cannot dedupe.`,
    {
      hint: `If it is the same program, pass --campaign ${[...others][0]}. If it really is a new program, pass --new-program.`,
    },
  );
}
