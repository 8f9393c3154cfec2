import { DeliveryEngine, type DestinationReport } from '../../apply/engine.js';
import { realClock, TokenBucket, type Clock } from '../../apply/limiter.js';
import type { DeliveryQueue } from '../../state/store.js';
import { DEFAULT_RETRY } from '../../apply/retry.js';
import { DESTINATION_LABELS, type Destination } from '../../config/defaults.js';
import type { DestinationClient } from '../../destinations/types.js';
import { ExitCode, signalExitCode, UsageError } from '../../errors.js';
import { AdaptiveRate } from '../../apply/adaptive-rate.js';
import { concurrencyFor, DEFAULT_CEILINGS, DEFAULT_RATES, type RateMode } from './destinations.js';
import { parseDuration } from './duration.js';

/** Default bound on time without progress per destination (DESIGN.md §8). */
export const DEFAULT_STALL_TIMEOUT_MS = 5 * 60_000;

export function parseStallTimeout(value: string | undefined): number {
  const ms = parseDuration(value, DEFAULT_STALL_TIMEOUT_MS, '--stall-timeout');
  if (ms < 1_000) throw new UsageError(`--stall-timeout must be at least 1s, not "${value}".`);
  return ms;
}

/** The engine of a run that sends: one sender per destination over the program's durable queue. */
export function createEngine(options: {
  queue: DeliveryQueue;
  runId: number;
  clients: ReadonlyMap<Destination, DestinationClient>;
  rates: Record<Destination, number>;
  /** The services `--rate` named: their rate is the ceiling of an adaptive one. */
  ratesGiven: ReadonlySet<string>;
  rateMode: RateMode;
  stallTimeoutMs: number;
  onProgress?: (destination: Destination, report: DestinationReport) => void;
  /** What the limiters, the adaptive rate and the backoffs wait on (RunEnvironment.clock); the real one by default. */
  clock?: Clock;
}): DeliveryEngine {
  const { clients, rates } = options;
  const clock = options.clock ?? realClock;
  const limiters = new Map([...clients.keys()].map((d) => [d, new TokenBucket(rates[d], burstFor(rates[d]), clock)]));
  const adaptive = new Map<Destination, AdaptiveRate>();
  if (clients.has('customerio') && options.rateMode === 'adaptive') {
    // Customer.io's limit is documented three ways (research/destinations.md §3.3): start at the default and
    // find the rate it takes, up to --rate customerio=N or the documented 1,000 requests/s.
    const ceiling = options.ratesGiven.has('customerio') ? rates.customerio : DEFAULT_CEILINGS.customerio;
    const rate = new AdaptiveRate({ initial: Math.min(DEFAULT_RATES.customerio, ceiling), ceiling, mode: 'adaptive', clock });
    const bucket = limiters.get('customerio')!;
    bucket.setRate(rate.rate, burstFor(rate.rate));
    rate.onChange((next) => bucket.setRate(next, burstFor(next)));
    adaptive.set('customerio', rate);
  }
  return new DeliveryEngine({
    queue: options.queue,
    runId: options.runId,
    clients,
    limiters,
    rates: adaptive,
    retry: DEFAULT_RETRY,
    concurrency: new Map([...clients].map(([d, c]) => [d, concurrencyFor(c)])),
    stallTimeoutMs: options.stallTimeoutMs,
    clock,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
}

/** A tenth of a second's worth saved up at most: a bucket never bursts far above its rate. */
function burstFor(rate: number): number {
  return Math.max(1, Math.ceil(rate / 10));
}

/** The exit code of a signal: 129 for SIGHUP, 130 for SIGINT (Ctrl-C), 143 for SIGTERM, as shells report them. */
export function interruptedExitCode(signal: AbortSignal | undefined): ExitCode {
  return signalExitCode(signal?.reason);
}

/** Operations that stalled destinations recorded failed, named per destination, for the run's warning. */
export function stalledLines(reports: Map<Destination, DestinationReport>): string[] {
  return [...reports].flatMap(([d, r]) => (r.stalled ? [`${DESTINATION_LABELS[d]} stopped: ${r.stalled}.`] : []));
}
