import type { Destination } from '../config/defaults.js';
import type { TraitMap } from '../model/traits.js';
import type { BaselineView, DeliveryStatus } from '../plan/types.js';

/** One schema, every backend (DESIGN.md §7). Only `apply/` and `state/` write through it. */

export interface RunRecord {
  id: number;
  command: string;
  programId: string;
  startedAt: string;
  finishedAt: string | null;
  status: 'running' | 'succeeded' | 'failed' | 'crashed' | 'interrupted';
  counts: Record<string, number>;
}

export interface DeliveryCounts {
  destination: Destination;
  status: DeliveryStatus;
  count: number;
}

export interface StateSummary {
  location: string;
  schemaVersion: number;
  identities: { destination: Destination; count: number }[];
  deliveries: DeliveryCounts[];
  runs: RunRecord[];
}

export interface ReadableState {
  /** Where the state lives, safe to print (no password). */
  readonly location: string;
  baseline(): BaselineView;
  summary(runLimit: number): StateSummary;
  /** Failed and dead deliveries, newest first, at most `limit` per destination. */
  problems(limit: number): StoredDelivery[];
  /** Every failed and dead delivery (no cap), by destination, newest first, read as it is iterated. */
  allProblems(): Iterable<StoredDelivery>;
  /** Where the last successful run of this program's source left off (epoch ms), if any. */
  watermark(programId: string, source: string): number | undefined;
  /** Program ids this state delivered from `source` to the destination under `namespace` (DESIGN §6 keys). */
  deliveredPrograms(source: string, destination: Destination, namespace: string): string[];
  /** The id namespaces (config namespace and credential fingerprint) a program was delivered under to a destination. */
  deliveredNamespaces(source: string, destination: Destination, programId: string): string[];
  /** A cached lookup answer no older than `maxAgeMs`. */
  cachedLookup(service: string, key: string, maxAgeMs: number, now: Date): unknown;
  /**
   * Programs that `retry` has work for in these destinations: failed or dead deliveries with their payload, or
   * operations an interrupted run left in the queue. Rows recorded before deliveries carried a program count
   * as `unattributed`.
   */
  retryPrograms(destinations: readonly Destination[], unattributed: string): string[];
  /** The locks held on this state, one per program. */
  locks(): LockRecord[];
  close(): void;
}

/** A run's hold on one program of the state (DESIGN.md §7). */
export interface LockRecord {
  programId: string;
  /** The command holding it: sync, backfill, retry. */
  holder: string;
  pid: number;
  host: string;
  acquiredAt: string;
}

export interface IdentityWrite {
  destination: Destination;
  userId: string;
  traits: TraitMap;
  hash: string;
  /** Tier transitions acknowledged so far; undefined keeps the stored count (an identify from an older ledger). */
  tierChanges?: number;
}

/** A ledger write: `pending` before a send, `sent`/`failed`/`dead` after. */
export interface DeliveryRow {
  destination: Destination;
  key: string;
  kind: string;
  userId: string;
  status: DeliveryStatus;
  /** Why it failed; never contains credentials. */
  error?: string;
  /** The operation as JSON, kept for failed and dead deliveries so `retry` can resend them as they were. */
  payload?: string;
  runId?: number;
}

export interface StoredDelivery {
  destination: Destination;
  key: string;
  kind: string;
  userId: string;
  status: DeliveryStatus;
  attempts: number;
  lastError: string | null;
  payload: string | null;
  /** When the row last changed (ISO): a refused identify older than the acknowledged traits is superseded. */
  updatedAt?: string;
}

/** Where lookup answers are kept between runs; a read-only run (diff) reads it and writes nothing. */
export interface LookupCache {
  get(service: string, key: string, maxAgeMs: number): unknown;
  put(service: string, key: string, value: unknown): void;
}
