import type { Config } from '../config/config.js';
import type { Destination } from '../config/defaults.js';
import type { ReferrerDirectory } from '../model/referrer-directory.js';
import type { RecentEventsGuard } from './recent-events.js';
import type { BaselineView, PlanMode } from './types.js';

/** What the planner is handed (DESIGN.md §2): everything it needs, so that it does no I/O of its own. */
export interface PlanContext {
  config: Config;
  destinations: readonly Destination[];
  /** sync: only what changed; backfill: re-identify everyone. */
  mode: PlanMode;
  /** backfill --resend: send events again even when the ledger has them as sent. */
  resend: boolean;
  /**
   * backfill only: identities acknowledged at or after this time were already re-identified by the backfill
   * being resumed (one that crashed), so they are not sent again.
   */
  backfillSince?: Date;
  /** The time "observed" facts get; injected so the planner stays pure. */
  now: Date;
  /** Per-destination namespace for keys (config namespace + a fingerprint of the destination credentials). */
  namespaces: Record<Destination, string>;
  directory: ReferrerDirectory;
  /** `file:line` of rows that repeat an earlier participant id, found by the directory pass. */
  duplicates: ReadonlySet<string>;
  baseline: BaselineView;
  /** Set when people are grouped into accounts (`--group-id`): how their operations are planned. */
  accounts?: AccountPlanning;
  /** The campaign guard (plan/recent-events.ts); unset: every event is planned to be sent, as before it existed. */
  recentEvents?: RecentEventsGuard;
  /**
   * Aborted by a graceful stop: reading ended early, so nothing computed over every participant (account traits)
   * is planned from what was read.
   */
  signal?: AbortSignal;
}

/** How accounts are planned this run (DESIGN.md §11); set on the plan context when a group rule is given. */
export interface AccountPlanning {
  objectTypeId: string;
  /**
   * False when the run reads part of the program (`sync --quick`): traits computed over some members would be
   * wrong, so only the memberships of the people read are sent; a full sync sends the traits.
   */
  traits: boolean;
  /** Set for a pilot (`--limit`, `--only`), which plans no account traits either: said so instead of --quick. */
  pilot?: boolean;
  /** False with `--customerio-api v1`: Customer.io objects exist only in Track API v2. */
  customerioObjects: boolean;
  /** How many accounts the state holds per destination (acknowledged traits): those this run does not meet are reported. */
  known?: Partial<Record<Destination, number>>;
}
