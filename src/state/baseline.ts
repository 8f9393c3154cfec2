import type { Destination } from '../config/defaults.js';
import type { AccountBaseline, AccountRef, BaselinePrefetch, BaselineView, DeliveryRef, DeliveryStatus, GenerationRef, GenerationSubject, IdentityBaseline, IdentityRef, IssuedGeneration } from '../plan/types.js';
import type { StateReader } from './store.js';

/** A ledger row as the planner reads it: sent by the run that is planning (a queue it resumed) is `sentThisRun`. */
export function ledgerAnswer(status: DeliveryStatus, rowRunId: number | null, planningRunId: number | undefined): DeliveryStatus | 'sentThisRun' {
  return status === 'sent' && planningRunId !== undefined && rowRunId === planningRunId ? 'sentThisRun' : status;
}

/** The bulk reads a prefetched baseline is loaded with. */
export type BaselineRows = Pick<StateReader, 'identities' | 'deliveryStatuses' | 'accounts' | 'generations'>;

/**
 * The planner's view over a backend it cannot ask synchronously (one over the network): plan-run loads each
 * chunk's rows in two bulk reads before planning it (`prefetch`), and only that chunk's rows are kept, so the
 * state is never held in memory whole. A question about a row that was not loaded is a bug in what plan-run
 * loads; it fails loudly rather than let the planner take a delivered operation for a new one.
 */
export class PrefetchedBaseline implements BaselineView {
  /** Every ref loaded for the chunk being planned; undefined: the state holds no row for it. */
  private identityRows = new Map<string, IdentityBaseline | undefined>();
  private deliveryRows = new Map<string, DeliveryStatus | 'sentThisRun' | undefined>();
  private accountRows = new Map<string, AccountBaseline | undefined>();
  /** The generations of the identities loaded (`identify`) and of the accounts loaded (`account`). */
  private generationRows: Record<GenerationSubject, Map<string, IssuedGeneration | undefined>> = { identify: new Map(), account: new Map() };

  readonly prefetch: BaselinePrefetch = {
    identities: async (refs) => {
      const loaded = new Map<string, IdentityBaseline | undefined>(refs.map((ref) => [refKey(ref.destination, ref.userId), undefined]));
      for (const row of await this.rows.identities(unique(refs, (ref) => refKey(ref.destination, ref.userId)))) {
        const { destination, userId, ...baseline } = row;
        loaded.set(refKey(destination, userId), baseline);
      }
      this.identityRows = loaded;
      this.generationRows.identify = await this.loadGenerations(refs.map((ref) => ({ destination: ref.destination, subject: 'identify', id: ref.userId })));
    },
    deliveries: async (refs) => {
      const loaded = new Map<string, DeliveryStatus | 'sentThisRun' | undefined>(refs.map((ref) => [refKey(ref.destination, ref.key), undefined]));
      for (const row of await this.rows.deliveryStatuses(unique(refs, (ref) => refKey(ref.destination, ref.key)))) {
        loaded.set(refKey(row.destination, row.key), ledgerAnswer(row.status, row.runId, this.runId));
      }
      this.deliveryRows = loaded;
    },
    accounts: async (refs) => {
      const loaded = new Map<string, AccountBaseline | undefined>(refs.map((ref) => [refKey(ref.destination, ref.accountId), undefined]));
      for (const row of await this.rows.accounts(unique(refs, (ref) => refKey(ref.destination, ref.accountId)))) {
        const { destination, accountId, ...baseline } = row;
        loaded.set(refKey(destination, accountId), baseline);
      }
      this.accountRows = loaded;
      this.generationRows.account = await this.loadGenerations(refs.map((ref) => ({ destination: ref.destination, subject: 'account', id: ref.accountId })));
    },
  };

  constructor(
    private readonly rows: BaselineRows,
    /** The run that is planning, if it sends: what it acknowledged itself reads as `sentThisRun`. */
    private readonly runId?: number,
  ) {}

  private async loadGenerations(refs: GenerationRef[]): Promise<Map<string, IssuedGeneration | undefined>> {
    const loaded = new Map<string, IssuedGeneration | undefined>(refs.map((ref) => [refKey(ref.destination, ref.id), undefined]));
    for (const row of await this.rows.generations(unique(refs, (ref) => refKey(ref.destination, ref.id)))) {
      const { destination, id, generation, key, tierMove } = row;
      loaded.set(refKey(destination, id), { generation, key, ...(tierMove ? { tierMove } : {}) });
    }
    return loaded;
  }

  generation(destination: Destination, subject: GenerationSubject, id: string): IssuedGeneration | undefined {
    const key = refKey(destination, id);
    if (!this.generationRows[subject].has(key)) throw notLoaded(`the ${subject === 'identify' ? 'identify' : 'account'} generation of ${id} at ${destination}`);
    return this.generationRows[subject].get(key);
  }

  identity(destination: Destination, userId: string): IdentityBaseline | undefined {
    const key = refKey(destination, userId);
    if (!this.identityRows.has(key)) throw notLoaded(`the identity of ${userId} at ${destination}`);
    return this.identityRows.get(key);
  }

  account(destination: Destination, accountId: string): AccountBaseline | undefined {
    const key = refKey(destination, accountId);
    if (!this.accountRows.has(key)) throw notLoaded(`the account ${accountId} at ${destination}`);
    return this.accountRows.get(key);
  }

  delivery(destination: Destination, key: string): DeliveryStatus | 'sentThisRun' | undefined {
    const ref = refKey(destination, key);
    if (!this.deliveryRows.has(ref)) throw notLoaded(`the ledger row ${key} at ${destination}`);
    return this.deliveryRows.get(ref);
  }
}

function refKey(destination: Destination, id: string): string {
  return `${destination}\u0000${id}`;
}

function unique<T extends IdentityRef | DeliveryRef | AccountRef | GenerationRef>(refs: readonly T[], keyOf: (ref: T) => string): T[] {
  return [...new Map(refs.map((ref) => [keyOf(ref), ref])).values()];
}

function notLoaded(what: string): Error {
  return new Error(`internal: the planner asked for ${what}, which was not loaded before planning its chunk`);
}
