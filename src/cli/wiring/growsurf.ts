import type { Clock } from '../../apply/limiter.js';
import { DEFAULT_RETRY } from '../../apply/retry.js';
import { UsageError } from '../../errors.js';
import { formatDuration, HttpClient } from '../../http/client.js';
import { SlidingWindowLimiter } from '../../http/window-limiter.js';
import { GROWSURF_API_URL, growsurfApiSource, growsurfHooks } from '../../sources/growsurf/api.js';
import type { Source } from '../../sources/source.js';
import { validUrl } from './destinations.js';
import { parseDuration } from './duration.js';
import type { Output } from '../output/output.js';
import type { Env } from './env.js';

/** GrowSurf allows 3 connections per IP; we keep one spare for the user's other tools. */
const GROWSURF_CONNECTIONS = 2;
/** Documented limits (research/growsurf.md §5.1), the lower set; raised from GrowSurf's headers when it announces more. */
const MINUTE_LIMIT = 190;
const HOUR_LIMIT = 9_500;
const DEFAULT_MAX_WAIT_MS = 60 * 60_000;


export function createGrowsurfSource(
  campaignId: string | undefined,
  options: { rate: number; maxWait?: string; changedSince?: number; env: Env; output: Output; clock?: Clock },
): Source {
  const { client, campaignId: campaign } = createGrowsurfClient(campaignId, options);
  const source = growsurfApiSource({ client, campaignId: campaign, ...(options.changedSince !== undefined ? { changedSince: options.changedSince } : {}) });
  return Object.assign(source, { close: () => client.close() });
}

/** The GrowSurf API client a run reads with (and `check` asks), after the key and the campaign id are there. */
export function createGrowsurfClient(
  campaignId: string | undefined,
  options: { rate: number; maxWait?: string; env: Env; output: Output; clock?: Clock },
): { client: HttpClient; campaignId: string } {
  const apiKey = options.env.GROWSURF_API_KEY;
  if (!apiKey) {
    throw new UsageError('--source growsurf needs GROWSURF_API_KEY: set it (GrowSurf → Settings → API Keys).', {
      hint: 'Or export the participants to CSV and pass --file instead of --source growsurf.',
    });
  }
  if (!campaignId) throw new UsageError('--source growsurf needs the campaign id: --campaign <id> or GROWSURF_CAMPAIGN_ID.');
  const baseUrl = options.env.GROWSURF_API_URL ? validUrl(options.env.GROWSURF_API_URL, 'GROWSURF_API_URL') : GROWSURF_API_URL;
  const rate = options.rate;
  const limiter = new SlidingWindowLimiter([
    // The per-second rate as a 5 s window: GrowSurf's shortest policy is 30 requests per 5 s.
    { name: 'second', limit: Math.max(1, Math.floor(rate * 5)), windowMs: 5_000 },
    { name: 'minute', limit: MINUTE_LIMIT, windowMs: 60_000 },
    { name: 'hour', limit: HOUR_LIMIT, windowMs: 3_600_000 },
  ], options.clock);
  const client = new HttpClient({
    service: 'GrowSurf',
    baseUrl,
    headers: { authorization: `Bearer ${apiKey}` },
    connections: GROWSURF_CONNECTIONS,
    limiter,
    retry: { ...DEFAULT_RETRY, maxAttempts: 6, baseDelayMs: 1000 },
    maxWaitMs: parseDuration(options.maxWait, DEFAULT_MAX_WAIT_MS, '--max-wait'),
    hooks: growsurfHooks,
    clock: options.clock,
    onWait: (ms, reason) => options.output.info(`GrowSurf ${reason}: waiting ${formatDuration(ms)} before the next request (--max-wait to stop instead).`),
  });
  return { client, campaignId };
}
