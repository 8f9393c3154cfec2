import type { Destination } from '../config/defaults.js';
import type { TraitMap } from '../model/traits.js';
import type { AccountBaseline, AccountRef, BaselineView, DeliveryRef, Operation, DeliveryStatus, GenerationRef, IdentityBaseline, IdentityRef, IssuedGeneration } from '../plan/types.js';

/**
 * One schema, every backend (DESIGN.md §7). Only `apply/` and `state/` write through it. Every method that reads
 * or writes the database returns a promise, so a backend over the network (PostgreSQL) implements the same
 * interfaces as the in-process SQLite one; the planner's synchronous view is `baseline()`.
 */

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
  /** Accounts with acknowledged traits (B2B, `--group-id`); absent from a state an older version wrote. */
  accounts: { destination: Destination; count: number }[];
  deliveries: DeliveryCounts[];
  runs: RunRecord[];
}

/** What a destination last acknowledged for one account (read in bulk, by AccountRef). */
export interface StoredAccount extends AccountRef, AccountBaseline {
  acknowledgedAt: Date;
}

/** What a destination last acknowledged for one person (read in bulk, by IdentityRef). */
export interface StoredIdentity extends IdentityRef, IdentityBaseline {
  acknowledgedAt: Date;
  tierChanges: number;
}

/** The newest traits operation issued for a person or an account (read in bulk, by GenerationRef). */
export interface StoredGeneration extends GenerationRef, IssuedGeneration {}

/** A ledger row's status (read in bulk, by DeliveryRef); `runId` is the run that last wrote it. */
export interface StoredStatus extends DeliveryRef {
  status: DeliveryStatus;
  runId: number | null;
}

/** One program delivered from a source to a destination under an id namespace (the `programs` table). */
export interface ProgramRecord {
  source: string;
  destination: Destination;
  namespace: string;
  programId: string;
  recordedAt: string;
}

/**
 * Rotated credentials (`state rotate`): the namespace a destination's new credentials give (`alias`) stands for
 * the one the history was delivered under (`namespace`), so ids keep being derived from that one and nothing is
 * sent again. Namespaces hold fingerprints of the credentials, never the credentials.
 */
export interface NamespaceAlias {
  destination: Destination;
  alias: string;
  namespace: string;
  recordedAt: string;
}

/** The state as `diff`, `status` and a retry's first look read it: nothing here writes. */
export interface StateReader {
  /** Where the state lives, safe to print (no password). */
  readonly location: string;
  /** The planner's view (no I/O until it is asked, or loaded through its `prefetch`). */
  baseline(): BaselineView;
  /** The identities of these refs that the state holds (any order; refs it does not hold are left out). */
  identities(refs: readonly IdentityRef[]): Promise<StoredIdentity[]>;
  /** The ledger rows of these refs that the state holds (any order; refs it does not hold are left out). */
  deliveryStatuses(refs: readonly DeliveryRef[]): Promise<StoredStatus[]>;
  /** The accounts of these refs that the state holds (any order; refs it does not hold are left out). */
  accounts(refs: readonly AccountRef[]): Promise<StoredAccount[]>;
  /** The generations of these refs that the state holds (any order; refs it does not hold are left out). */
  generations(refs: readonly GenerationRef[]): Promise<StoredGeneration[]>;
  summary(runLimit: number): Promise<StateSummary>;
  /** Failed and dead deliveries, newest first, at most `limit` per destination. */
  problems(limit: number): Promise<StoredDelivery[]>;
  /** Every failed and dead delivery (no cap), by destination, newest first, read as it is iterated. */
  allProblems(): AsyncIterable<StoredDelivery>;
  /**
   * Failed and dead deliveries counted by program, destination, status and exact reason (a GROUP BY in the state:
   * nothing is read row by row), each with its newest delivery as an example; `problem-groups.ts` folds reasons
   * that differ only in a detail. Read as it is iterated, ordered by program, destination, status and reason.
   */
  problemCounts(filter?: ProblemFilter): AsyncIterable<ProblemCount>;
  /** Where the last successful run of this program's source left off (epoch ms), if any. */
  watermark(programId: string, source: string): Promise<number | undefined>;
  /** Program ids this state delivered from `source` to the destination under `namespace` (DESIGN §6 keys). */
  deliveredPrograms(source: string, destination: Destination, namespace: string): Promise<string[]>;
  /** The id namespaces (config namespace and credential fingerprint) a program was delivered under to a destination. */
  deliveredNamespaces(source: string, destination: Destination, programId: string): Promise<string[]>;
  /** Every program this state delivered, to every destination and under every namespace, oldest first. */
  programRecords(): Promise<ProgramRecord[]>;
  /** The rotated credentials recorded by `state rotate`, oldest first (none in a state from before them). */
  namespaceAliases(): Promise<NamespaceAlias[]>;
  /** A cached lookup answer no older than `maxAgeMs`. */
  cachedLookup(service: string, key: string, maxAgeMs: number, now: Date): Promise<unknown>;
  /**
   * Programs that `retry` has work for in these destinations: failed or dead deliveries with their payload, or
   * operations an interrupted run left in the queue. Rows recorded before deliveries carried a program count
   * as `unattributed`.
   */
  retryPrograms(destinations: readonly Destination[], unattributed: string): Promise<string[]>;
  /** The locks held on this state, one per program. */
  locks(): Promise<LockRecord[]>;
  /** Programs with runs recorded `running` (a live run's, or one a dead runner left behind). */
  runningPrograms(): Promise<string[]>;
  /**
   * Where one program's history stands: a plan file records it, and applying the plan refuses once it moved (a run
   * recorded since, operations acknowledged since). Two cheap reads: the last run's id, a count of the ledger.
   */
  position(programId: string): Promise<StatePosition>;
  /**
   * Where a backfill of this program resumes: the start of the first of the backfills since the last complete one
   * (one that succeeded and was no pilot), when there are any. A pilot (`backfill --limit/--only`) re-identified a
   * few people, and one that did not finish some: the next backfill does not identify them again.
   */
  unfinishedBackfillStart(programId: string): Promise<Date | undefined>;
  /**
   * Which of these destinations acknowledged anything of this program (a `sent` ledger row; rows from before
   * deliveries carried their program count for every program), once a whole run (a `sync` or `backfill`, not a
   * pilot) was made: a sync into any other is a first load, whose recent events the campaign guard holds back
   * (plan/recent-events.ts).
   */
  acknowledgedDestinations(programId: string, destinations: readonly Destination[]): Promise<Destination[]>;
  close(): Promise<void>;
}

/**
 * The command a pilot run (`--limit`, `--only`) is recorded under: `sync pilot`, `backfill pilot`. A pilot sends a
 * few people, so it never counts as the program's complete run (a finished backfill, a first load).
 */
export function pilotCommand(command: 'sync' | 'backfill'): string {
  return `${command} pilot`;
}

/** Where a backfill resumes (`unfinishedBackfillStart`), as SQL over `runs`; `$program` stands for the program id. */
export const UNFINISHED_BACKFILL_SQL = `SELECT started_at FROM runs WHERE program_id = $program AND command IN ('backfill', 'backfill pilot')
  AND id > COALESCE((SELECT MAX(id) FROM runs WHERE program_id = $program AND command = 'backfill' AND status = 'succeeded'), 0)
  ORDER BY id LIMIT 1`;

/** One program's place in a state's history (`StateReader.position`). */
export interface StatePosition {
  /** The id of the last run recorded for the program; null before its first. */
  lastRunId: number | null;
  /** Its deliveries acknowledged so far (ledger rows `sent`); it only grows. */
  acknowledged: number;
}

/** The state as `sync`, `backfill`, `retry` and `unlock` use it: runs, locks, the ledger and the queue. */
export interface StateStore extends StateReader {
  /** With `runId`, deliveries that run acknowledged itself read as `sentThisRun`. */
  baseline(runId?: number): BaselineView;
  startRun(command: string, programId: string, now: Date): Promise<number>;
  finishRun(id: number, status: RunRecord['status'], counts: Record<string, number>, now: Date): Promise<void>;
  /** Runs left 'running' by a process that is gone are marked crashed (called once the lock is ours). */
  markCrashedRuns(programId: string, now: Date): Promise<void>;
  /** Takes the per-program lock, or throws LockedError (exit 75) while another live run holds it. */
  acquireLock(programId: string, holder: string, now: Date): Promise<void>;
  /** Frees this process's own lock. */
  releaseLock(programId: string): Promise<void>;
  /**
   * Frees a lock whose run is gone (`referral-sync unlock`) and marks the runs that run left `running` crashed, in
   * one step with the check (a run that takes the lock meanwhile is not touched). SQLite: a live local holder is
   * never freed; a holder on another machine cannot be checked from here, so it is freed only when the user says
   * it is gone (`force`). PostgreSQL: the advisory lock tells a live run on any machine; `force` ends its session
   * (pg_terminate_backend) when this role may. Throws LockedError (exit 75) when the lock stays.
   */
  freeLock(programId: string, force: boolean): Promise<FreedLock>;
  /** Records that this run delivers `programId` from `source` to these destinations (idempotent). */
  recordPrograms(source: string, programId: string, namespaces: readonly { destination: Destination; namespace: string }[], now: Date): Promise<void>;
  /** Records that `alias` (new credentials' namespace) stands for `namespace` at that destination; replaces an earlier record of the same alias. */
  recordNamespaceAlias(destination: Destination, alias: string, namespace: string, now: Date): Promise<void>;
  /** Recorded only when a run succeeded, so a failed run is covered again by the next quick sync. */
  setWatermark(programId: string, source: string, watermark: number, now: Date): Promise<void>;
  cacheLookup(service: string, key: string, value: unknown, now: Date): Promise<void>;
  /** This program's durable delivery queue (DESIGN.md §8); no I/O until it is used. */
  queue(programId: string): ReclaimableQueue;
  /**
   * One program's deliveries that `retry` sends again: failed and dead, with the payload they were sent with,
   * by destination, oldest first. Rows from before deliveries carried their program belong to `unattributed`.
   */
  retryable(destinations: readonly Destination[], programId: string, unattributed: string): AsyncIterable<StoredDelivery>;
  /** This program's failed deliveries (retries used up) with their operations, oldest first. */
  failedDeliveries(programId: string, destinations: readonly Destination[]): Promise<StoredDelivery[]>;
  /** Marks refused identifies as superseded, in one transaction: they stay in the ledger, `retry` never sends them. */
  markSuperseded(rows: readonly DeliveryRef[], reason: string, now: Date): Promise<void>;
  /**
   * After a run that read the whole source: this program's failed and held deliveries to these destinations that
   * the run did not plan again (it plans again every one the source still shows) are marked superseded, with
   * `reason`; returns how many. Rows this run itself recorded failed or held are kept.
   */
  supersedeUnplanned(programId: string, destinations: readonly Destination[], runId: number, reason: string, now: Date): Promise<number>;
}

/** What `unlock` did to one program. */
export interface FreedLock {
  programId: string;
  /** The lock's record, when there was one. */
  lock: LockRecord | undefined;
  /** Runs left `running` by the gone runner, now recorded crashed. */
  crashedRuns: number;
  /** PostgreSQL, with --force: the backend whose session held the lock and was ended. */
  terminatedBackend?: number;
}

/** A run's hold on one program of the state (DESIGN.md §7). */
export interface LockRecord {
  programId: string;
  /** The command holding it: sync, backfill, retry. */
  holder: string;
  pid: number;
  host: string;
  acquiredAt: string;
  /**
   * Set by a backend that knows the holder lives wherever it runs (PostgreSQL: its session holds the advisory
   * lock); otherwise liveness is judged from the pid and host (lockHolderState).
   */
  holderState?: 'alive';
}

export interface IdentityWrite {
  destination: Destination;
  userId: string;
  traits: TraitMap;
  hash: string;
  /** Tier transitions acknowledged so far; undefined keeps the stored count (an identify from an older ledger). */
  tierChanges?: number;
}

/** Account traits a destination acknowledged (a group call or object carrying them): the account's new baseline. */
export interface AccountWrite {
  destination: Destination;
  accountId: string;
  traits: TraitMap;
  hash: string;
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

/** Which failed and dead deliveries `problemCounts` counts. */
export interface ProblemFilter {
  /** Only this program's (rows from before deliveries carried their program belong to none). */
  programId?: string;
  /** Leave out the rows this run last wrote: a run's summary counts its own failures already. */
  notRunId?: number;
}

/** Failed or dead deliveries of one program and destination that share their exact last error. */
export interface ProblemCount {
  programId: string | null;
  destination: Destination;
  status: 'failed' | 'dead';
  lastError: string | null;
  count: number;
  /** The newest of them. */
  example: { key: string; kind: string; userId: string; updatedAt: string };
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
  /** The run that last queued or recorded it (null for rows from before runs were kept). */
  runId?: number | null;
  /** The program it belongs to (null for rows from before deliveries carried one); set where a read says so. */
  programId?: string | null;
}

/** Where lookup answers are kept between runs; a read-only run (diff) reads it and writes nothing. */
export interface LookupCache {
  get(service: string, key: string, maxAgeMs: number): Promise<unknown>;
  put(service: string, key: string, value: unknown): Promise<void>;
}

/**
 * The tables `state copy` moves between backends, in the order it copies them, each with its columns and its
 * key (rows are read in key order, a page at a time). The lock is not here: locks belong to live sessions.
 */
export const TRANSFER_TABLES = {
  runs: { key: ['id'], columns: ['id', 'command', 'program_id', 'started_at', 'finished_at', 'status', 'counts'] },
  programs: { key: ['source', 'destination', 'namespace', 'program_id'], columns: ['source', 'destination', 'namespace', 'program_id', 'recorded_at'] },
  watermarks: { key: ['program_id', 'source'], columns: ['program_id', 'source', 'watermark', 'updated_at'] },
  lookup_cache: { key: ['service', 'key'], columns: ['service', 'key', 'value', 'fetched_at'] },
  identities: { key: ['destination', 'user_id'], columns: ['destination', 'user_id', 'traits', 'hash', 'updated_at', 'tier_changes'] },
  accounts: { key: ['destination', 'account_id'], columns: ['destination', 'account_id', 'traits', 'hash', 'updated_at'] },
  generations: {
    key: ['destination', 'subject', 'subject_id'],
    columns: ['destination', 'subject', 'subject_id', 'generation', 'key', 'tier_move', 'updated_at'],
  },
  namespace_aliases: { key: ['destination', 'alias'], columns: ['destination', 'alias', 'namespace', 'recorded_at'] },
  queue: { key: ['seq'], columns: ['seq', 'program_id', 'destination', 'key', 'operation'] },
  deliveries: {
    key: ['destination', 'key'],
    columns: ['destination', 'key', 'kind', 'user_id', 'status', 'attempts', 'last_error', 'payload', 'run_id', 'created_at', 'updated_at', 'program_id', 'seq'],
  },
} as const satisfies Record<string, { key: readonly string[]; columns: readonly string[] }>;

export type TransferTable = keyof typeof TRANSFER_TABLES;

/** Integer columns: PostgreSQL returns a bigint as text, so both backends hand them over as numbers. */
export const TRANSFER_INTEGERS: ReadonlySet<string> = new Set(['id', 'watermark', 'tier_changes', 'seq', 'attempts', 'run_id', 'generation']);

/** One row of a transferred table, by column name; values as both backends store them. */
export type TransferRow = Record<string, string | number | null>;

/** Row counts of a state: per table, and the ledger per destination and status. */
export interface TransferCounts {
  tables: Record<TransferTable, number>;
  deliveries: DeliveryCounts[];
}

/** Bulk reads and writes of whole tables, for `state copy` (one page per call, one transaction per import). */
export interface StateTransfer {
  /** Up to `limit` rows of `table` after `after` (its key columns), in key order; from the start without it. */
  exportRows(table: TransferTable, after: TransferRow | undefined, limit: number): Promise<TransferRow[]>;
  /** Inserts these rows as they are (keys included), in one transaction. */
  importRows(table: TransferTable, rows: readonly TransferRow[]): Promise<void>;
  transferCounts(): Promise<TransferCounts>;
}

export function isStateTransfer(state: object): state is StateTransfer {
  return 'exportRows' in state && 'importRows' in state && 'transferCounts' in state;
}

/** An operation waiting in the durable queue, with its position. */
export interface QueuedOperation {
  seq: number;
  operation: Operation;
}

/**
 * The durable queue between the planner and the senders (DESIGN.md §8): implemented by the state, so work that
 * cannot be sent yet waits on disk, and what a killed run left is there for the next run, with the same ids.
 * Every call is one round trip (one transaction when it writes), whatever the number of operations it carries.
 */
export interface DeliveryQueue {
  readonly programId: string;
  /**
   * Appends operations as `pending` rows with their payloads, in one transaction. Positions follow the order of
   * the calls, so a caller that enqueues more than once at a time must wait for each before the next. An operation
   * that carries a generation (`issuedGeneration`) becomes its person's or account's newest, in the same
   * transaction; the one it replaces, if not settled, is superseded and leaves the queue.
   */
  enqueue(operations: readonly Operation[], runId: number, now: Date): Promise<void>;
  /** Up to `limit` pending operations of one destination after position `afterSeq`, oldest first. */
  queued(destination: Destination, afterSeq: number, limit: number): Promise<QueuedOperation[]>;
  /**
   * Outcomes, and the person and account traits they acknowledged, settle their queue entries (by seq), in one
   * transaction.
   */
  settle(entries: readonly number[], rows: readonly DeliveryRow[], identities: readonly IdentityWrite[], now: Date, accounts?: readonly AccountWrite[]): Promise<void>;
  /** The position of the last entry queued so far (0 when none ever was). */
  lastSeq(): Promise<number>;
  /** How many operations still wait for `destination`. */
  waiting(destination: Destination): Promise<number>;
  /** Records every operation still waiting for `destination` as failed (kept for the next run); returns how many. */
  failQueued(destination: Destination, reason: string, runId: number, now: Date): Promise<number>;
  /**
   * Puts stored deliveries (failed, dead) back in the queue with their stored payload, behind what is there, in one
   * transaction; a row that carries an `operation` is queued as that instead (retry brings its traits up to date).
   */
  requeue(rows: readonly RequeuedDelivery[], runId: number, now: Date): Promise<void>;
}

/** The state's queue, as the runs that read the source use it before they start sending. */
export interface ReclaimableQueue extends DeliveryQueue {
  /**
   * Takes back what earlier runs left waiting for `destination` (a kill, a stop): the entries leave the queue and
   * their ledger rows say failed, with their operations and the run that planned them, so that a sync checks each
   * against the source before anything is sent (DESIGN.md §6). Returns how many.
   */
  reclaim(destination: Destination, reason: string, now: Date): Promise<number>;
  /**
   * Records events the campaign guard keeps from being sent (plan/recent-events.ts), in one transaction, outside
   * the queue: `held` with their operation, for a later run to decide on; `skipped`, never to be sent.
   */
  setAside(operations: readonly Operation[], status: 'held' | 'skipped', reason: string, runId: number, now: Date): Promise<void>;
  /**
   * The decision on the events this run held: `send` puts them in the queue, behind what is there; `skip` records
   * them skipped, with `reason`. Returns how many.
   */
  decideHeld(runId: number, action: 'send' | 'skip', reason: string, now: Date): Promise<number>;
  /**
   * Takes everything this program has in the queue back out, unsent (a history load that stopped for a decision
   * before sending anything): the ledger rows say superseded, with `reason`, so neither `retry` nor anything else
   * sends them, and the next sync or backfill plans them again from the source. Returns how many.
   */
  withdraw(reason: string, now: Date): Promise<number>;
}

/** A stored delivery to send again; `operation`, when set, replaces the operation it was stored with. */
export type RequeuedDelivery = DeliveryRef & { operation?: Operation };
