import { seededRandom } from '../fakes/http.js';
import type { FakeCello } from '../fakes/cello.js';
import { writeCsv } from './cli.js';

export interface CelloProgram {
  /** conv_signups and the all-time aggregates, in that order (pass both to --file). */
  files: string[];
  /** Referrer productUserIds, in aggregates order. */
  referrers: string[];
  /** Referred users' productUserIds, in conv_signups order. */
  referred: string[];
  /** code → owner, and owner → active link, for the fake Cello. */
  codes: Map<string, string>;
  /** Lookups an --enrich run with an empty cache makes: one per distinct code, one per referrer. */
  lookups: number;
}

/**
 * A Cello program of `referrers` referrers, each with its own code and one to three Included signups, written as
 * Cello's conv_signups and event_details_aggregates-all exports (research/cello.md §6).
 */
export function writeCelloProgram(dir: string, referrers: number, seed = 11): CelloProgram {
  const random = seededRandom(seed);
  const start = Date.UTC(2025, 5, 1);
  const signups: Record<string, string>[] = [];
  const aggregates: Record<string, string>[] = [];
  const codes = new Map<string, string>();
  const referrerIds: string[] = [];
  const referred: string[] = [];
  for (let r = 0; r < referrers; r += 1) {
    const id = `ref_${seed}_${r}`;
    const code = `c${seed}x${r.toString(36)}`;
    referrerIds.push(id);
    codes.set(code, id);
    const friends = 1 + Math.floor(random() * 3);
    for (let f = 0; f < friends; f += 1) {
      const friend = `nu_${seed}_${r}_${f}`;
      referred.push(friend);
      const at = new Date(start + (r * 3 + f) * 3_600_000);
      signups.push({
        datetime: at.toISOString().replace('.000Z', 'Z'),
        date: at.toISOString().slice(0, 10),
        productuserid: id,
        campaign_ucc: code,
        newuserproductuserid: friend,
        status: 'Included',
      });
    }
    aggregates.push({ productuserid: id, R_Active: '3', R_Sharing: '2', R_Reward: '0', NU_Views: '9', NU_Views_Unique: '7', NU_Signups: String(friends), NU_Purchases: '0' });
  }
  return {
    files: [writeCsv(dir, 'conv_signups.csv', signups), writeCsv(dir, 'event_details_aggregates-all.csv', aggregates)],
    referrers: referrerIds,
    referred,
    codes,
    lookups: codes.size + referrerIds.length,
  };
}

/** Teaches the fake Cello every code and referrer of the program. */
export function seedCello(cello: FakeCello, program: CelloProgram): void {
  for (const [code, owner] of program.codes) {
    cello.codes.set(code, { productUserId: owner, campaignId: 'campaign_bench' });
    cello.links.set(owner, { activeUcc: code, link: `https://example.cello.so/${code}` });
  }
}

/** Lookups the fake saw (token requests left out): count, first and last arrival (ms), rate over that span. */
export function lookupTimeline(cello: FakeCello): { count: number; seconds: number; perSecond: number } {
  const arrivals = cello.log.arrivals.filter((a) => a.path.startsWith('/referral-codes/'));
  const seconds = arrivals.length < 2 ? 0 : (arrivals.at(-1)!.at - arrivals[0]!.at) / 1000;
  return { count: arrivals.length, seconds, perSecond: seconds > 0 ? (arrivals.length - 1) / seconds : 0 };
}
