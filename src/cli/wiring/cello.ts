import { AdaptiveRate, type RateMode } from '../../apply/adaptive-rate.js';
import type { Clock } from '../../apply/limiter.js';
import { DEFAULT_RETRY } from '../../apply/retry.js';
import type { Config } from '../../config/config.js';
import { UsageError } from '../../errors.js';
import { formatDuration, HttpClient } from '../../http/client.js';
import { rateWindow, SlidingWindowLimiter } from '../../http/window-limiter.js';
import { CELLO_API_URL, CelloApi } from '../../sources/cello/api.js';
import { celloCsvSource } from '../../sources/cello/csv.js';
import type { Delimiter } from '../../sources/csv/reader.js';
import type { EncodingName } from '../../sources/csv/encoding.js';
import type { LookupReport, Source } from '../../sources/source.js';
import type { LookupCache } from '../../state/store.js';
import { DEFAULT_CEILINGS, DEFAULT_RATES, parseRateMode, parseRates, validUrl } from './destinations.js';
import type { Output } from '../output/output.js';
import type { Env } from './env.js';

/** Lookups in flight at once, and connections to carry them: enough to hide Cello's latency at the ceiling. */
const CELLO_LOOKUPS_IN_FLIGHT = 16;

/**
 * Cello's lookup rate from `--rate` and `--rate-mode`. Cello publishes no limit (research/cello.md §4), so by
 * default the rate starts at the polite 5/s and adapts up to `--rate cello=N` (else DEFAULT_CEILINGS.cello);
 * `fixed` keeps exactly `--rate cello=N` (else 5/s), as before adaptive rates.
 */
export function celloRate(rateFlag: string | undefined, modeFlag: string | undefined): { mode: RateMode; initial: number; ceiling: number } {
  const mode = parseRateMode(modeFlag);
  const given = parseRates(rateFlag).cello;
  // parseRates validated the flag; here only whether it names cello at all matters.
  const named = (rateFlag ?? '').split(',').some((part) => part.split('=')[0]?.trim().toLowerCase() === 'cello');
  if (mode === 'fixed') return { mode, initial: given, ceiling: given };
  const ceiling = named ? given : DEFAULT_CEILINGS.cello;
  return { mode, initial: Math.min(DEFAULT_RATES.cello, ceiling), ceiling };
}

export function createCelloSource(options: {
  files: string[];
  programId: string;
  config: Config;
  env: Env;
  output: Output;
  /** `--rate` and `--rate-mode` as given. */
  rateFlag?: string;
  rateMode?: string;
  enrich: boolean;
  encoding?: EncodingName;
  delimiter?: Delimiter;
  /** What the lookups' limiter, adaptive rate and backoffs wait on (RunEnvironment.clock); the real one by default. */
  clock?: Clock;
}): Source {
  const { env } = options;
  let api: CelloApi | undefined;
  let client: HttpClient | undefined;
  let pace: AdaptiveRate | undefined;
  const cache: { current?: LookupCache } = {};
  if (options.enrich) {
    const { accessKeyId, secretAccessKey } = celloKeys(env);
    const rate = celloRate(options.rateFlag, options.rateMode);
    pace = new AdaptiveRate({ ...rate, floor: Math.min(1, rate.initial), clock: options.clock });
    const limiter = new SlidingWindowLimiter([rateWindow('rate', pace.rate)], options.clock);
    pace.onChange((perSecond) => limiter.setRate('rate', perSecond));
    client = new HttpClient({
      service: 'Cello',
      baseUrl: env.CELLO_API_URL ? validUrl(env.CELLO_API_URL, 'CELLO_API_URL') : CELLO_API_URL,
      headers: {},
      connections: CELLO_LOOKUPS_IN_FLIGHT,
      limiter,
      pace,
      retry: { ...DEFAULT_RETRY, maxAttempts: 5, baseDelayMs: 500 },
      maxWaitMs: 10 * 60_000,
      clock: options.clock,
      onWait: (ms, reason) => options.output.info(`Cello ${reason}: waiting ${formatDuration(ms)}.`),
    });
    api = new CelloApi(client, { accessKeyId, secretAccessKey }, cache);
  }
  const report = (): LookupReport | undefined => {
    if (!api || !client || !pace) return undefined;
    const seconds = api.firstLookupAt === undefined || api.lastAnswerAt === undefined ? 0 : (api.lastAnswerAt - api.firstLookupAt) / 1000;
    return {
      service: 'cello',
      lookups: api.lookups,
      cached: api.cached,
      requests: client.requests,
      seconds,
      rateMode: pace.mode,
      settledRate: pace.settled(),
      ceiling: pace.ceiling,
      throttled: pace.stats.throttled,
    };
  };
  let settled: LookupReport | undefined;
  const source = celloCsvSource({
    paths: options.files,
    programId: options.programId,
    tierBasis: options.config.cello.tierBasis,
    ...(api ? { api, lookupConcurrency: CELLO_LOOKUPS_IN_FLIGHT } : {}),
    ...(options.encoding ? { encoding: options.encoding } : {}),
    ...(options.delimiter ? { delimiter: options.delimiter } : {}),
    onEnriched: () => {
      // Taken once the lookups are done: planning afterwards must not stretch the rate's average.
      settled = report();
      if (settled) options.output.info(describeLookups(settled), { lookups: settled });
    },
  });
  if (!client) return source;
  const http = client;
  return Object.assign(source, {
    close: () => http.close(),
    useCache: (lookups: LookupCache) => void (cache.current = lookups),
    lookups: () => settled ?? report(),
  });
}

function celloKeys(env: Env): { accessKeyId: string; secretAccessKey: string } {
  const accessKeyId = env.CELLO_ACCESS_KEY_ID;
  const secretAccessKey = env.CELLO_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new UsageError('--enrich needs CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY: set them (Cello Portal → Integrations → Access Keys), or run without --enrich.');
  }
  return { accessKeyId, secretAccessKey };
}

/** The Cello API client `check` asks (one token, one lookup), at the polite default rate; close `client` after. */
export function createCelloCheckApi(env: Env, clock?: Clock): { api: CelloApi; client: HttpClient } {
  const keys = celloKeys(env);
  const client = new HttpClient({
    service: 'Cello',
    baseUrl: env.CELLO_API_URL ? validUrl(env.CELLO_API_URL, 'CELLO_API_URL') : CELLO_API_URL,
    headers: {},
    connections: 1,
    limiter: new SlidingWindowLimiter([rateWindow('rate', DEFAULT_RATES.cello)], clock),
    retry: { ...DEFAULT_RETRY, maxAttempts: 3, baseDelayMs: 500 },
    maxWaitMs: 60_000,
    clock,
  });
  return { api: new CelloApi(client, keys), client };
}

/** "Cello lookups: 1,502 in 31.8 s (47.2/s), rate adaptive, settled at 50/s (ceiling 50/s); 3 throttled; 12 from the state's cache." */
export function describeLookups(r: LookupReport): string {
  if (r.lookups === 0) return `Cello lookups: none sent${r.cached > 0 ? `, all ${r.cached.toLocaleString('en-US')} answered from the state's cache` : ''}.`;
  const perSecond = r.seconds > 0 ? ` (${(r.lookups / r.seconds).toFixed(1)}/s)` : '';
  const rate = r.rateMode === 'fixed' ? `rate fixed at ${round(r.settledRate)}/s` : `rate adaptive, settled at ${round(r.settledRate)}/s (ceiling ${round(r.ceiling)}/s)`;
  const throttled = r.throttled > 0 ? `; ${r.throttled.toLocaleString('en-US')} answered 429/5xx` : '';
  const cached = r.cached > 0 ? `; ${r.cached.toLocaleString('en-US')} from the state's cache` : '';
  return `Cello lookups: ${r.lookups.toLocaleString('en-US')} in ${r.seconds.toFixed(1)} s${perSecond}, ${rate}${throttled}${cached}.`;
}

function round(rate: number): string {
  return rate >= 10 ? String(Math.round(rate)) : String(Math.round(rate * 10) / 10);
}
