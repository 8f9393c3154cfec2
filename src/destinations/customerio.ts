import { TrackClient } from 'customerio-node';
import { parseRetryAfter, verdictForStatus, type Verdict } from '../apply/retry.js';
import { UnavailableError } from '../errors.js';
import { endpointUnusable, unacknowledgedAnswerIn, unacknowledged, type UnacknowledgedAnswer } from '../http/acknowledgement.js';
import { CUSTOMERIO_BATCH_SUCCESS, CustomerioTransport } from '../http/customerio-http.js';
import { ENDPOINT_SETTINGS, describeNetworkError, unreachableHint, unreachableMessage } from '../http/errors.js';
import { redactUrl, redactUrls } from '../redact.js';
import { CUSTOMERIO_LIMITS } from './limits.js';
import type { Operation } from '../plan/types.js';
import type { CheckResult, DeliveryOutcome, DestinationClient } from './types.js';

export const CUSTOMERIO_TRACK_URLS = { us: 'https://track.customer.io', eu: 'https://track-eu.customer.io' } as const;
/** Track v2 `/batch`: 500 KB a request (research/destinations.md §4); a margin for the envelope. */
const CUSTOMERIO_SAFE_BATCH_BYTES = CUSTOMERIO_LIMITS.requestBytes - 50 * 1024;
/** No maximum count is documented; 200 operations stay far under 500 KB and keep one failed request cheap to retry. */
const CUSTOMERIO_BATCH_OPERATIONS = 200;

export type CustomerioApi = 'v1' | 'v2';

/** What to do when Customer.io refuses the credentials (docs/troubleshooting.md): the Track API keys, not an App API key. */
export const CUSTOMERIO_CREDENTIALS_HINT =
  'Use a Track API key and its site id (Account Settings → API Credentials → Track API Keys), not an App API key, and check CUSTOMERIO_REGION.';

export interface CustomerioOptions {
  siteId: string;
  apiKey: string;
  /** Base such as https://track.customer.io; `/api/v1` and `/api/v2` are appended. */
  trackUrl: string;
  api: CustomerioApi;
  batchSize?: number;
  timeoutMs?: number;
}

interface RequestErrorLike {
  name?: string;
  message?: string;
  statusCode?: number;
  /** customerio-node's CustomerIORequestError keeps the raw response body. */
  body?: unknown;
  response?: { headers?: Record<string, string> };
}

interface ItemError {
  batch_index?: number;
  reason?: string;
  field?: string;
  message?: string;
}

/**
 * Customer.io through customerio-node 5.x, with the SDK's own retries off: the apply engine retries with the
 * shared limiter and exact attempt counts (the SDK's 30 s retry budget would otherwise turn a long Retry-After
 * into an immediate failure). v2 sends many operations per request and reads a 207's `batch_index`es; v1 sends
 * one identify or track per request.
 */
export class CustomerioDestination implements DestinationClient {
  readonly name = 'customerio' as const;
  readonly maxBatch: number;
  readonly maxBatchBytes: number;
  private readonly client: TrackClient;
  /** Judges every answer before the SDK reads it, and follows no redirect (src/http/customerio-http.ts). */
  private readonly transport: CustomerioTransport;

  constructor(private readonly options: CustomerioOptions) {
    this.maxBatch = options.api === 'v2' ? (options.batchSize ?? CUSTOMERIO_BATCH_OPERATIONS) : 1;
    this.maxBatchBytes = options.api === 'v2' ? CUSTOMERIO_SAFE_BATCH_BYTES : Number.POSITIVE_INFINITY;
    this.transport = new CustomerioTransport(options.trackUrl);
    this.client = new TrackClient(options.siteId, options.apiKey, {
      url: `${options.trackUrl.replace(/\/+$/, '')}/api/v1`,
      timeout: options.timeoutMs ?? 15_000,
      retry: { maxRetries: 0 },
      dispatcher: this.transport.dispatcher,
    });
  }

  cost(operations: readonly Operation[]): number {
    return this.options.api === 'v2' ? 1 : operations.length;
  }

  async send(operations: readonly Operation[]): Promise<DeliveryOutcome[]> {
    if (this.options.api === 'v1') return Promise.all(operations.map((op) => this.sendV1(op)));
    try {
      const body = (await this.client.batch(operations.map((op) => op.payload))) as { errors?: unknown };
      const failed = new Map<number, string>();
      const errors: unknown[] = Array.isArray(body.errors) ? body.errors : [];
      for (const error of errors) {
        const index = (error as ItemError | null)?.batch_index;
        // Every item error must name an operation of this request: one that does not could be any of them, and
        // reading the others as accepted could record `sent` what Customer.io refused.
        if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= operations.length) throw this.itemErrorWithoutIndex(error);
        failed.set(index, describeItemError(error as ItemError));
      }
      return operations.map((op, index) => {
        const reason = failed.get(index);
        return { key: op.key, verdict: reason === undefined ? { kind: 'sent' } : { kind: 'dead', reason: `Customer.io refused it: ${reason}` } };
      });
    } catch (error) {
      const verdict = this.verdictFromError(error);
      // A v2 400 refuses the whole request: the engine bisects it to find the operations it refused.
      const whole: Verdict = verdict.kind === 'dead' ? { ...verdict, wholeBatch: true } : verdict;
      return operations.map((op) => ({ key: op.key, verdict: whole }));
    }
  }

  private async sendV1(operation: Operation): Promise<DeliveryOutcome> {
    const payload = operation.payload;
    if (operation.kind !== 'identify' && operation.kind !== 'track') {
      // Objects and relationships exist only in Track API v2 (a v2 run's failure resent by `retry --customerio-api v1`).
      return { key: operation.key, verdict: { kind: 'dead', reason: `Customer.io ${operation.kind} operations need Track API v2; resend with --customerio-api v2` } };
    }
    try {
      if (operation.kind === 'identify') {
        await this.client.identify(operation.userId, payload.attributes as Record<string, unknown>);
      } else {
        await this.client.track(operation.userId, {
          name: payload.name,
          id: payload.id,
          timestamp: payload.timestamp,
          data: payload.attributes,
        });
      }
      return { key: operation.key, verdict: { kind: 'sent' } };
    } catch (error) {
      return { key: operation.key, verdict: this.verdictFromError(error) };
    }
  }

  async check(): Promise<CheckResult> {
    try {
      const region = (await this.client.getAccountRegion()) as { region?: string; url?: string };
      const expected = region.region === 'eu' ? CUSTOMERIO_TRACK_URLS.eu : CUSTOMERIO_TRACK_URLS.us;
      const mismatch = this.options.trackUrl.startsWith('https://track') && region.region !== undefined && !this.options.trackUrl.startsWith(expected);
      if (mismatch) {
        return {
          destination: 'customerio',
          ok: false,
          message: `Customer.io accepted the site id and API key, but the account is in the ${region.region!.toUpperCase()} region and ${redactUrl(this.options.trackUrl)} is not its endpoint.`,
          hint: `Set CUSTOMERIO_REGION=${region.region}.`,
        };
      }
      return { destination: 'customerio', ok: true, message: `Customer.io accepted the site id and API key (account region: ${region.region ?? 'unknown'}).` };
    } catch (error) {
      const problem = unacknowledgedAnswerIn(error);
      if (problem) return { destination: 'customerio', ok: false, transient: problem.transient, message: `${problem.message}.`, hint: problem.hint };
      const e = error as RequestErrorLike;
      if (e.statusCode === 401 || e.statusCode === 403) {
        return { destination: 'customerio', ok: false, message: `Customer.io refused the site id and API key (${e.statusCode}).`, hint: CUSTOMERIO_CREDENTIALS_HINT };
      }
      if (typeof e.statusCode !== 'number') {
        return { destination: 'customerio', ok: false, transient: true, message: `${this.networkReason(error)}.`, hint: unreachableHint(ENDPOINT_SETTINGS.customerio) };
      }
      const reason = refusalReason(e.body) ?? oneLine(e.message ?? '');
      return {
        destination: 'customerio',
        ok: false,
        transient: e.statusCode === 408 || e.statusCode === 429 || e.statusCode >= 500,
        message: `Customer.io at ${redactUrl(this.options.trackUrl)} answered the check with ${e.statusCode}${reason ? `: ${reason}` : ''}.`,
        hint: `Run again later; if it persists, check ${ENDPOINT_SETTINGS.customerio}.`,
      };
    }
  }

  /**
   * A failure without a status: the connection (in the words every service uses), or a body customerio-node
   * could not parse as JSON (a proxy's HTML page, a wrong CUSTOMERIO_TRACK_URL).
   */
  private networkReason(error: unknown): string {
    const message = (error as RequestErrorLike).message ?? '';
    if (/^Unable to parse JSON/i.test(message)) {
      return `Customer.io at ${redactUrl(this.options.trackUrl)} answered with something other than JSON (a proxy, or a wrong CUSTOMERIO_TRACK_URL?)`;
    }
    return unreachableMessage('Customer.io', this.options.trackUrl, describeNetworkError(error, this.options.timeoutMs ?? 15_000));
  }

  async close(timeoutMs?: number): Promise<DeliveryOutcome[]> {
    await this.transport.close(timeoutMs);
    return [];
  }

  /** A 207 whose item error names no operation of the request: not the documented answer. */
  private itemErrorWithoutIndex(error: unknown): UnacknowledgedAnswer {
    const text = JSON.stringify({ errors: [error] }) ?? '';
    return unacknowledged(
      { service: 'Customer.io', baseUrl: this.options.trackUrl, expected: `${CUSTOMERIO_BATCH_SUCCESS} naming each item by batch_index`, endpointSetting: 'CUSTOMERIO_TRACK_URL', endpointSettings: ENDPOINT_SETTINGS.customerio },
      { status: 207, problem: 'wrong-shape', requestUrl: this.options.trackUrl, body: text, contentType: 'application/json' },
    );
  }

  /** Bad credentials stop the run (exit 69); everything else is an outcome for the operation. */
  private verdictFromError(error: unknown): Verdict {
    const problem = unacknowledgedAnswerIn(error);
    if (problem) {
      // Not Customer.io's success answer. One that every request would get (a redirect, a page that is not the
      // API) stops the run, as refused credentials do: the operations stay queued, none is recorded sent.
      if (!problem.transient) throw endpointUnusable(problem);
      return { kind: 'retry', reason: problem.message };
    }
    const e = error as RequestErrorLike;
    if (typeof e.statusCode === 'number') {
      if (e.statusCode === 401 || e.statusCode === 403) {
        throw new UnavailableError(`Customer.io refused the site id and API key (${e.statusCode}).`, { hint: CUSTOMERIO_CREDENTIALS_HINT });
      }
      const retryAfter = parseRetryAfter(e.response?.headers?.['retry-after']);
      const reason = refusalReason(e.body) ?? oneLine(e.message ?? '');
      return verdictForStatus(e.statusCode, `Customer.io answered ${e.statusCode}: ${reason}`.trim(), retryAfter);
    }
    // Network errors, timeouts, and bodies that are not JSON (a proxy's HTML 502) carry no status: retry.
    return { kind: 'retry', reason: this.networkReason(error) };
  }
}

function describeItemError(error: ItemError): string {
  return oneLine([error.reason, error.field ? `field ${error.field}` : undefined, error.message].filter(Boolean).join(', ')) || 'no reason given';
}

/**
 * Customer.io's own reason, from the body the SDK kept (research/destinations.md §3.3, §4): v2
 * `{"errors":[{reason, field, message}]}`, v1 `{"meta":{"errors":[…]}}` or `{"meta":{"error":…}}`. The SDK's
 * message knows only the v1 shapes and says "Unknown error" for v2.
 */
function refusalReason(body: unknown): string | undefined {
  if (typeof body !== 'string' || body.trim() === '') return undefined;
  let parsed: { errors?: unknown; meta?: { error?: unknown; errors?: unknown } };
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    return oneLine(body.slice(0, 300)) || undefined;
  }
  if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
    return parsed.errors.map((item) => (typeof item === 'object' && item !== null ? describeItemError(item as ItemError) : oneLine(String(item)))).join('; ');
  }
  if (Array.isArray(parsed.meta?.errors) && parsed.meta.errors.length > 0) return parsed.meta.errors.map((item) => oneLine(String(item))).join('; ');
  if (typeof parsed.meta?.error === 'string') return oneLine(parsed.meta.error);
  return undefined;
}

function oneLine(text: string): string {
  return redactUrls(text.replace(/\s+/g, ' ').trim().slice(0, 500));
}
