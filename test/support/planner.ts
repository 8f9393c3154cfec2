import { defaultConfig, type Config } from '../../src/config/config.js';
import type { Destination } from '../../src/config/defaults.js';
import type { Participant } from '../../src/model/participant.js';
import { scanDirectory } from '../../src/model/referrer-directory.js';
import type { AccountPlanning } from '../../src/plan/context.js';
import { planOperations } from '../../src/plan/planner.js';
import { EMPTY_BASELINE, type BaselineView, type PlanItem } from '../../src/plan/types.js';
import { records } from './participants.js';

export const PLAN_NOW = new Date('2026-11-23T12:00:00Z');

export interface PlanOptions {
  baseline?: BaselineView;
  mode?: 'sync' | 'backfill';
  config?: Config;
  destinations?: Destination[];
  resend?: boolean;
  /** How accounts are planned; needs `config.group`. */
  accounts?: AccountPlanning;
  /** A graceful stop's signal. */
  signal?: AbortSignal;
}

/** Runs the pure planner over participants the way `diff` does (a directory pass, then planning), collecting items. */
export async function planItems(people: Participant[], options: PlanOptions = {}): Promise<PlanItem[]> {
  const config = options.config ?? defaultConfig();
  const { directory, duplicates } = await scanDirectory(records(people), config.identity);
  const items: PlanItem[] = [];
  for await (const item of planOperations(records(people), {
    config,
    destinations: options.destinations ?? ['segment', 'customerio'],
    mode: options.mode ?? 'sync',
    resend: options.resend ?? false,
    now: PLAN_NOW,
    namespaces: { segment: 'ns/segment/-', customerio: 'ns/customerio/-' },
    directory,
    duplicates,
    baseline: options.baseline ?? EMPTY_BASELINE,
    ...(options.accounts ? { accounts: options.accounts } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  })) {
    items.push(item);
  }
  directory.close();
  return items;
}
