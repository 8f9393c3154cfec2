import { DESTINATION_LABELS, type Destination } from '../../config/defaults.js';
import { UsageError } from '../../errors.js';
import type { StateReader } from '../../state/store.js';

/** The variable whose fingerprint is in each destination's namespace (cli/wiring/settings.ts destinationNamespaces). */
export const CREDENTIALS: Record<Destination, string> = { segment: 'SEGMENT_WRITE_KEY', customerio: 'CUSTOMERIO_SITE_ID' };

/** What a namespace ends with when the destination's credentials are not set. */
const NO_CREDENTIALS = '/-';

/**
 * Where a destination's id namespace came from: its credentials as set; a rotation recorded by `state rotate`
 * (the credentials are an alias of the ones the history was delivered with); the state's one namespace for the
 * program (diff without credentials); or a placeholder (no credentials, nothing delivered yet).
 */
export type NamespaceOrigin = 'credentials' | 'rotated' | 'state' | 'placeholder';

export interface ResolvedNamespace {
  namespace: string;
  origin: NamespaceOrigin;
  /** The namespace the credentials as set give, when it differs from the one used. */
  given?: string;
}

export interface ResolvedNamespaces {
  namespaces: Record<Destination, string>;
  /** Per destination of the run. */
  resolved: Partial<Record<Destination, ResolvedNamespace>>;
}

/** The fingerprint at the end of a namespace (`default/segment/3f2a…` → `3f2a…`), or "none" without credentials. */
export function fingerprintOf(namespace: string): string {
  const last = namespace.slice(namespace.lastIndexOf('/') + 1);
  return last === '-' ? 'none' : last;
}

/**
 * The namespaces a run derives its ids from. Rotated credentials (`state rotate`) stand for the namespace the
 * history was delivered under, so ids stay the same and nothing is sent again. With `withoutCredentials`
 * (diff, which plans and needs no key), a destination whose credentials are not set takes the one namespace
 * the state delivered this program under: the ids the plan shows are then the ones sync will send.
 */
export async function resolveNamespaces(
  state: StateReader,
  given: Record<Destination, string>,
  program: { source: string; programId: string; destinations: readonly Destination[] },
  options: { withoutCredentials: boolean },
): Promise<ResolvedNamespaces> {
  const namespaces = { ...given };
  const resolved: ResolvedNamespaces['resolved'] = {};
  const aliases = await state.namespaceAliases();
  for (const destination of program.destinations) {
    const own = given[destination];
    if (own.endsWith(NO_CREDENTIALS) && options.withoutCredentials) {
      const delivered = await state.deliveredNamespaces(program.source, destination, program.programId);
      if (delivered.length === 1) {
        namespaces[destination] = delivered[0]!;
        resolved[destination] = { namespace: delivered[0]!, origin: 'state', given: own };
      } else if (delivered.length === 0) {
        resolved[destination] = { namespace: own, origin: 'placeholder' };
      } else {
        const label = DESTINATION_LABELS[destination];
        throw new UsageError(
          `${CREDENTIALS[destination]} is not set, and ${state.location} delivered program "${program.programId}" to ${label} under ${delivered.length} namespaces (${delivered.map((n) => `fingerprint ${fingerprintOf(n)}`).join(', ')}): the ids depend on which.`,
          { hint: `Set the ${CREDENTIALS[destination]} this plan is for; diff sends nothing with it.` },
        );
      }
      continue;
    }
    const alias = aliases.find((row) => row.destination === destination && row.alias === own);
    if (alias) {
      namespaces[destination] = alias.namespace;
      resolved[destination] = { namespace: alias.namespace, origin: 'rotated', given: own };
    } else {
      resolved[destination] = { namespace: own, origin: 'credentials' };
    }
  }
  return { namespaces, resolved };
}

/**
 * What a run assumed about the ids, one line per destination whose namespace did not come straight from its
 * credentials (nothing when all did): diff shows them under its header.
 */
export function describeNamespaces(resolved: ResolvedNamespaces['resolved'], programId: string): string[] {
  const lines: string[] = [];
  for (const [destination, entry] of Object.entries(resolved) as [Destination, ResolvedNamespace][]) {
    const label = DESTINATION_LABELS[destination];
    const variable = CREDENTIALS[destination];
    if (entry.origin === 'state') {
      lines.push(`${label}: ${variable} is not set; ids use namespace ${entry.namespace}, the one this state delivered program ${programId} under`);
    } else if (entry.origin === 'placeholder') {
      lines.push(`${label}: ${variable} is not set and nothing was delivered yet; ids use the placeholder namespace ${entry.namespace} (sync's include the key's fingerprint: set ${variable} to see them)`);
    } else if (entry.origin === 'rotated') {
      lines.push(`${label}: ${variable} fingerprint ${fingerprintOf(entry.given ?? '')} is recorded as rotated from ${fingerprintOf(entry.namespace)}; ids use namespace ${entry.namespace}`);
    }
  }
  return lines;
}
