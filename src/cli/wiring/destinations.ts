import type { RateMode } from '../../apply/adaptive-rate.js';
import type { Destination } from '../../config/defaults.js';
import { CUSTOMERIO_TRACK_URLS, CustomerioDestination, type CustomerioApi } from '../../destinations/customerio.js';
import { SEGMENT_HOSTS, SegmentDestination } from '../../destinations/segment.js';
import type { DestinationClient } from '../../destinations/types.js';
import { UsageError } from '../../errors.js';
import { redactUrl } from '../../redact.js';
import type { Env } from './env.js';

/** Default rates (DESIGN.md §8): Segment in events/s, Customer.io and GrowSurf in requests/s. */
export const DEFAULT_RATES: Record<Destination | 'growsurf' | 'cello', number> = { segment: 500, customerio: 100, growsurf: 5, cello: 5 };

export interface DestinationFlags {
  rate?: string;
  /** `--rate-mode adaptive|fixed` (default adaptive): see parseRateMode. */
  rateMode?: string;
  customerioApi?: string;
}

export type { RateMode };

/**
 * Services without a documented limit (Cello lookups, Customer.io) adapt by default: they start at the default
 * rate, rise while answers stay healthy and back off on 429/5xx, never above the ceiling (`--rate`, else
 * DEFAULT_CEILINGS). `fixed` sends at exactly the `--rate` (or default) rate, as before.
 */
export function parseRateMode(value: string | undefined): RateMode {
  if (value === undefined || value === 'adaptive') return 'adaptive';
  if (value === 'fixed') return 'fixed';
  throw new UsageError(`--rate-mode must be adaptive or fixed, not "${value}".`);
}

/** Ceilings of the adaptive rates when --rate does not name the service (research/destinations.md §3.3, cello.md §4). */
export const DEFAULT_CEILINGS: Record<'customerio' | 'cello', number> = { customerio: 1000, cello: 50 };

/** The services a `--rate` value names (their rate is a ceiling in adaptive mode). */
export function ratesGiven(value: string | undefined): Set<string> {
  parseRates(value);
  return new Set((value ?? '').split(',').map((part) => part.split('=')[0]!.trim().toLowerCase()).filter(Boolean));
}

const RATE_SERVICES = ['segment', 'customerio', 'growsurf', 'cello'] as const;
const RATE_EXAMPLE = 'e.g. --rate segment=200,customerio=50';

/** `--rate segment=500,customerio=100,growsurf=5` → a rate for each service, defaults for the rest. */
export function parseRates(value: string | undefined): Record<Destination | 'growsurf' | 'cello', number> {
  const rates = { ...DEFAULT_RATES };
  if (value === undefined) return rates;
  for (const part of value.split(',')) {
    if (part.trim() === '') continue;
    const pair = /^\s*([^=\s]+)\s*=\s*(.*?)\s*$/.exec(part);
    if (!pair) {
      throw new UsageError(`--rate takes service=rate pairs separated by commas, not "${part.trim()}": ${RATE_EXAMPLE} (Segment in events/s, the others in requests/s).`);
    }
    const name = pair[1]!.toLowerCase();
    const rate = /^\d+(?:\.\d+)?$/.test(pair[2]!) ? Number(pair[2]) : Number.NaN;
    if (!(RATE_SERVICES as readonly string[]).includes(name)) {
      throw new UsageError(`--rate names an unknown service "${pair[1]}": use segment, customerio, growsurf or cello, ${RATE_EXAMPLE}.`);
    }
    if (!(rate > 0)) {
      throw new UsageError(`--rate ${name}=${pair[2]} is not a rate: give a number above 0 per second, ${RATE_EXAMPLE}.`);
    }
    rates[name as (typeof RATE_SERVICES)[number]] = rate;
  }
  return rates;
}

function segmentHost(env: Env): string {
  if (env.SEGMENT_HOST) return validUrl(env.SEGMENT_HOST, 'SEGMENT_HOST');
  const region = (env.SEGMENT_REGION ?? 'us').toLowerCase();
  if (region !== 'us' && region !== 'eu') throw new UsageError(`SEGMENT_REGION must be us or eu, not "${env.SEGMENT_REGION}".`);
  return SEGMENT_HOSTS[region];
}

function customerioTrackUrl(env: Env): string {
  if (env.CUSTOMERIO_TRACK_URL) return validUrl(env.CUSTOMERIO_TRACK_URL, 'CUSTOMERIO_TRACK_URL').replace(/\/api\/v[12]\/?$/, '');
  const region = (env.CUSTOMERIO_REGION ?? 'us').toLowerCase();
  if (region !== 'us' && region !== 'eu') throw new UsageError(`CUSTOMERIO_REGION must be us or eu, not "${env.CUSTOMERIO_REGION}".`);
  return CUSTOMERIO_TRACK_URLS[region];
}

export function validUrl(value: string, name: string): string {
  let url: URL;
  try {
    url = new URL(value);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
  } catch {
    throw new UsageError(`${name} must be an http:// or https:// URL, not "${redactUrl(value)}".`);
  }
  // fetch (both SDKs) refuses a URL with credentials and our HTTP client would drop them: they could never
  // work, so say so before anything runs, without printing them.
  if (url.username !== '' || url.password !== '') {
    throw new UsageError(`${name} has a user and password in it (${redactUrl(value)}), which cannot be sent that way.`, {
      hint: `Remove them from ${name}; the service's own credentials go in their variables (e.g. SEGMENT_WRITE_KEY, CUSTOMERIO_API_KEY).`,
    });
  }
  return value.replace(/\/+$/, '');
}

/** Builds a client for each destination asked for; missing credentials stop the run before anything is read. */
export function createDestinationClients(
  destinations: readonly Destination[],
  flags: DestinationFlags,
  env: Env,
): Map<Destination, DestinationClient> {
  const api = (flags.customerioApi ?? 'v2').toLowerCase();
  if (api !== 'v1' && api !== 'v2') throw new UsageError(`--customerio-api must be v1 or v2, not "${flags.customerioApi}".`);
  const missing: string[] = [];
  const writeKey = env.SEGMENT_WRITE_KEY;
  const siteId = env.CUSTOMERIO_SITE_ID ?? env.CIO_SITE_ID;
  const apiKey = env.CUSTOMERIO_API_KEY ?? env.CIO_API_KEY;
  if (destinations.includes('segment') && !writeKey) missing.push('SEGMENT_WRITE_KEY (for Segment)');
  if (destinations.includes('customerio') && (!siteId || !apiKey)) missing.push('CUSTOMERIO_SITE_ID and CUSTOMERIO_API_KEY (for Customer.io)');
  if (missing.length > 0) {
    // Suggest the destinations whose credentials are there, asked for or not (--to segment without its key, but
    // with Customer.io's, suggests --to customerio); with none, diff is what runs without credentials.
    const ready = (['segment', 'customerio'] as const).filter((d) => (d === 'segment' ? Boolean(writeKey) : Boolean(siteId && apiKey)));
    throw new UsageError(`Missing credentials: set ${missing.join(' and ')}.`, {
      hint:
        ready.length > 0
          ? `Or send only to the destination that has them: --to ${ready.join(',')}.`
          : '`npx referral-sync diff` shows what would be sent without any credentials.',
    });
  }
  const clients = new Map<Destination, DestinationClient>();
  for (const destination of destinations) {
    if (destination === 'segment') {
      clients.set('segment', new SegmentDestination({ writeKey: writeKey!, host: segmentHost(env) }));
    } else {
      clients.set('customerio', new CustomerioDestination({ siteId: siteId!, apiKey: apiKey!, trackUrl: customerioTrackUrl(env), api: api as CustomerioApi }));
    }
  }
  return clients;
}

/** Sends in flight at once: per-operation v1 requests need more to reach the same rate as batches. */
export function concurrencyFor(client: DestinationClient): number {
  return client.maxBatch === 1 ? 32 : 8;
}
