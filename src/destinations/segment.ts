import { setMaxListeners } from 'node:events';
import { Analytics, type HTTPClient, type HTTPClientRequest, type HTTPResponse } from '@segment/analytics-node';
import { parseRetryAfter, verdictForStatus, type Verdict } from '../apply/retry.js';
import { endpointUnusable, unacknowledgedAnswerIn, type UnacknowledgedAnswer } from '../http/acknowledgement.js';
import { ENDPOINT_SETTINGS, describeNetworkError, isNetworkError, unreachableHint, unreachableMessage } from '../http/errors.js';
import { redactUrl, redactUrls } from '../redact.js';
import { UndiciSegmentHttpClient } from '../http/segment-http.js';
import { SEGMENT_LIMITS } from './limits.js';
import type { Operation } from '../plan/types.js';
import type { CheckResult, DeliveryOutcome, DestinationClient } from './types.js';

/** Segment's documented limits (research/destinations.md §1.4); the SDK's own size check is broken. */
export const SEGMENT_MAX_EVENT_BYTES = SEGMENT_LIMITS.eventBytes;
export const SEGMENT_MAX_BATCH_BYTES = SEGMENT_LIMITS.requestBytes;
/** Margin under the 500 KB limit for the envelope (writeKey, sentAt) and the commas between events. */
const SEGMENT_SAFE_BATCH_BYTES = 440 * 1024;
export const SEGMENT_MAX_BATCH_EVENTS = SEGMENT_LIMITS.eventsPerRequest;
/** How long `check` waits for Segment to answer. */
const CHECK_TIMEOUT_MS = 10_000;
/** How much of a refusal's body is read for its reason. */
const REASON_BODY_BYTES = 16 * 1024;

export const SEGMENT_HOSTS = { us: 'https://api.segment.io', eu: 'https://events.eu1.segmentapis.com' } as const;

export interface SegmentOptions {
  writeKey: string;
  host: string;
  /** Events per SDK batch. */
  flushAt?: number;
  /** Batches in flight at once (one SDK client each); the engine sends at most this many. */
  maxInFlight?: number;
  /** Retries the SDK makes itself before it reports a failure to us. */
  sdkRetries?: number;
  httpTimeoutMs?: number;
  /** Called with each HTTP response status the SDK gets (for logs and request counts). */
  onResponse?: (status: number | undefined) => void;
}

/**
 * Segment through @segment/analytics-node 3.1. Every call carries our messageId and a callback, which the SDK
 * fires once the message's batch is resolved; that callback is the outcome. The HTTP client we inject keeps
 * each request under Segment's 500 KB by splitting a batch the SDK built too large.
 *
 * One SDK client per batch in flight: an SDK client merges whatever is queued into its next request, so two of
 * our batches sharing one could share one refusal, and bisection could not tell which operation Segment refused.
 */
export class SegmentDestination implements DestinationClient {
  readonly name = 'segment' as const;
  readonly maxBatch: number;
  readonly maxBatchBytes = SEGMENT_SAFE_BATCH_BYTES;
  /** SDK clients, each carrying at most one of our batches at a time. */
  private readonly clients: Analytics[] = [];
  private readonly idle: Analytics[] = [];
  private readonly waiting: ((client: Analytics) => void)[] = [];
  private readonly maxClients: number;
  /** Aborted to abandon requests still in flight when the destination closes after a stall or a stop. */
  private readonly abandon = new AbortController();
  private readonly http: UndiciSegmentHttpClient;
  private readonly unresolved = new Map<string, (outcome: DeliveryOutcome) => void>();
  /** Operations whose answer was not Segment's success and says the endpoint itself is wrong, by key. */
  private readonly endpointProblems = new Map<string, UnacknowledgedAnswer>();
  private closed = false;
  /** Segment's last Retry-After (ms): the engine waits it out, since the SDK is told none (it would retry itself). */
  private retryAfterMs: number | undefined;

  constructor(private readonly options: SegmentOptions) {
    this.maxBatch = Math.min(options.flushAt ?? 250, SEGMENT_MAX_BATCH_EVENTS);
    this.maxClients = Math.max(1, options.maxInFlight ?? 8);
    this.http = new UndiciSegmentHttpClient({ connections: this.maxClients, signal: this.abandon.signal });
  }

  private createAnalytics(options: SegmentOptions): Analytics {
    const analytics = new Analytics({
      writeKey: options.writeKey,
      host: options.host,
      flushAt: this.maxBatch,
      // A batch we hand over is complete; do not hold it back waiting for more.
      flushInterval: 50,
      // The engine is the only retrier (one budget per operation, DESIGN.md §8): the SDK reports the first failure.
      maxRetries: options.sdkRetries ?? 0,
      httpRequestTimeout: options.httpTimeoutMs ?? 15_000,
      // Bounded, so a stuck batch comes back to us as a failure we retry, instead of the SDK's 12 hours.
      maxTotalBackoffDuration: 60,
      maxRateLimitDuration: 120,
      httpClient: new SplittingHttpClient(this.http, options.onResponse, (ms) => (this.retryAfterMs = ms)),
    });
    // The SDK's retry sleep adds an abort listener to its publisher's shared signal and never removes it, so a
    // run with more than ten rate-limit waits prints a MaxListenersExceededWarning. Lift the limit on that one
    // signal. It is a private field: if a later SDK moves it, only the warning comes back.
    const publisher = (analytics as unknown as { _publisher?: { _abortController?: AbortController } })._publisher;
    if (publisher?._abortController) setMaxListeners(0, publisher._abortController.signal);
    // The SDK's emitter does not throw on 'error'; outcomes come through callbacks.
    analytics.on('error', () => undefined);
    return analytics;
  }

  /** An SDK client with nothing queued: an idle one, a new one while under the cap, else the next one freed. */
  private acquire(): Promise<Analytics> {
    const idle = this.idle.pop();
    if (idle) return Promise.resolve(idle);
    if (this.clients.length < this.maxClients) {
      const created = this.createAnalytics(this.options);
      this.clients.push(created);
      return Promise.resolve(created);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(client: Analytics): void {
    const next = this.waiting.shift();
    if (next) next(client);
    else this.idle.push(client);
  }

  cost(operations: readonly Operation[]): number {
    return operations.length;
  }

  async send(operations: readonly Operation[]): Promise<DeliveryOutcome[]> {
    if (this.closed) throw new Error('internal: send after close');
    const client = await this.acquire();
    let outcomes: DeliveryOutcome[];
    try {
      outcomes = await Promise.all(operations.map((op) => this.sendOne(op, client)));
    } finally {
      this.release(client);
    }
    // An answer that only looked like success and will look the same for every request (a redirect, a page that
    // is not Segment's API) stops the run, as refused credentials do: the operations stay queued, none is recorded.
    const stop = outcomes.map((o) => this.endpointProblems.get(o.key)).find((p) => p !== undefined);
    for (const o of outcomes) this.endpointProblems.delete(o.key);
    if (stop) throw endpointUnusable(stop);
    return outcomes;
  }

  private sendOne(operation: Operation, analytics: Analytics): Promise<DeliveryOutcome> {
    return new Promise((resolve) => {
      const key = operation.key;
      this.unresolved.set(key, resolve);
      const callback = (error?: unknown): void => {
        if (!this.unresolved.delete(key)) return;
        const problem = unacknowledgedAnswerIn(error);
        if (problem && !problem.transient) this.endpointProblems.set(key, problem);
        resolve({ key, verdict: error === undefined ? { kind: 'sent' } : verdictFromSdkError(error, this.retryAfterMs, this.options.host) });
      };
      const payload = operation.payload;
      try {
        if (operation.kind === 'identify') {
          analytics.identify(
            { userId: operation.userId, traits: payload.traits as Record<string, unknown>, messageId: payload.messageId as string },
            callback,
          );
        } else if (operation.kind === 'group') {
          const traits = payload.traits as Record<string, unknown> | undefined;
          analytics.group(
            { userId: operation.userId, groupId: payload.groupId as string, ...(traits ? { traits } : {}), messageId: payload.messageId as string },
            callback,
          );
        } else if (operation.kind === 'track') {
          analytics.track(
            {
              userId: operation.userId,
              event: payload.event as string,
              properties: payload.properties as Record<string, unknown>,
              timestamp: payload.timestamp as string,
              messageId: payload.messageId as string,
            },
            callback,
          );
        } else {
          this.unresolved.delete(key);
          resolve({ key, verdict: { kind: 'dead', reason: `a Customer.io ${operation.kind} operation cannot be sent to Segment` } });
        }
      } catch (error) {
        // The SDK validates synchronously (e.g. an empty userId): that operation can never be sent as is.
        this.unresolved.delete(key);
        resolve({ key, verdict: { kind: 'dead', reason: error instanceof Error ? error.message : String(error) } });
      }
    });
  }

  /**
   * Reachability, through the client that sends (so a redirect is not followed, and is judged like a send's
   * answer). It asks `GET /v1/batch`, which carries no data: an answer that is no acknowledgement (a redirect, a
   * 2xx other than Segment's success: an HTML or empty page) fails the check with the sentence a send would get;
   * a refusal of the GET (404, 405) still shows that something answers there.
   */
  async check(): Promise<CheckResult> {
    try {
      const status = await this.http.get(new URL('/v1/batch', this.options.host).href, CHECK_TIMEOUT_MS);
      // A 4xx to a GET of the batch endpoint is Segment's API answering (it takes only POSTs); a 5xx is a service
      // (or a proxy in front of it) that cannot take data now, so it is no reachable Segment.
      if (status >= 500) {
        return {
          destination: 'segment',
          ok: false,
          transient: true,
          message: `Segment at ${redactUrl(this.options.host)} answered the check with ${status}: it cannot take data now.`,
          hint: unreachableHint(ENDPOINT_SETTINGS.segment),
        };
      }
      return {
        destination: 'segment',
        ok: true,
        message: `Segment at ${redactUrl(this.options.host)} is reachable. Segment accepts any write key with 200, so the key itself cannot be checked: after the first sync, look for the events in the source's Debugger.`,
      };
    } catch (error) {
      const problem = unacknowledgedAnswerIn(error);
      if (problem) return { destination: 'segment', ok: false, transient: problem.transient, message: `${problem.message}.`, hint: problem.hint };
      return {
        destination: 'segment',
        ok: false,
        transient: true,
        message: `${unreachableMessage('Segment', this.options.host, describeNetworkError(error, CHECK_TIMEOUT_MS))}.`,
        hint: unreachableHint(ENDPOINT_SETTINGS.segment),
      };
    }
  }

  async close(timeoutMs = 30_000): Promise<DeliveryOutcome[]> {
    this.closed = true;
    try {
      await Promise.all(this.clients.map((client) => client.closeAndFlush({ timeout: timeoutMs })));
    } catch {
      // Whatever is left is reported below.
    }
    // Requests still hanging past the deadline are abandoned, so their sockets do not keep the process alive.
    this.abandon.abort(new Error('Segment closed'));
    try {
      await this.http.close();
    } catch {
      // Whatever is left is reported below.
    }
    // Anything the SDK did not resolve is failed, not lost: the ledger keeps it for the next run.
    const leftovers: DeliveryOutcome[] = [];
    for (const [key, resolve] of this.unresolved) {
      const outcome: DeliveryOutcome = { key, verdict: { kind: 'retry', reason: 'not confirmed before shutdown' } };
      resolve(outcome);
      leftovers.push(outcome);
    }
    this.unresolved.clear();
    return leftovers;
  }
}

/**
 * `[429] Too Many Requests` → a retry; `[400] Bad Request: <Segment's message>` → dead; SDK give-ups and network
 * errors → retry. The SDK builds its error from the status text only; our HTTP client appends Segment's own
 * reason from the response body to that text (see SplittingHttpClient), so it reaches the ledger.
 */
export function verdictFromSdkError(error: unknown, retryAfterMs?: number, host: string = SEGMENT_HOSTS.us): Verdict {
  // Not Segment's success answer: retried; the ones that stop the run are taken out before this matters (send).
  const problem = unacknowledgedAnswerIn(error);
  if (problem) return { kind: 'retry', reason: problem.message };
  const message = error instanceof Error ? error.message : String(error);
  const match = /^\[(\d{3})\]/.exec(message);
  if (match) {
    const status = Number(match[1]);
    const verdict = verdictForStatus(status, `Segment answered ${message}`, status === 429 ? retryAfterMs : undefined);
    // Segment refuses a batch as a whole (400): the engine bisects it to find the operations it refused.
    return verdict.kind === 'dead' ? { ...verdict, wholeBatch: true } : verdict;
  }
  if (isNetworkError(error)) return { kind: 'retry', reason: unreachableMessage('Segment', host, describeNetworkError(error)) };
  return { kind: 'retry', reason: `Segment: ${redactUrls(message)}` };
}

/**
 * The SDK's HTTP client, wrapped: a body over Segment's limit is split into halves sent one after the other
 * (Segment dedupes on messageId, so a half that is retried with its sibling does no harm).
 */
class SplittingHttpClient implements HTTPClient {
  constructor(
    /** The one connection pool every SDK client of this destination shares (undici, not global fetch). */
    private readonly http: UndiciSegmentHttpClient,
    private readonly onResponse?: (status: number | undefined) => void,
    private readonly onRetryAfter?: (ms: number) => void,
  ) {}

  async makeRequest(request: HTTPClientRequest): Promise<HTTPResponse> {
    if (Buffer.byteLength(request.body) <= SEGMENT_MAX_BATCH_BYTES - 8 * 1024) return this.post(request, request.body);
    const envelope = JSON.parse(request.body) as { batch: unknown[] } & Record<string, unknown>;
    if (envelope.batch.length < 2) return this.post(request, request.body);
    const middle = Math.ceil(envelope.batch.length / 2);
    for (const half of [envelope.batch.slice(0, middle), envelope.batch.slice(middle)]) {
      const response = await this.makeRequest({ ...request, body: JSON.stringify({ ...envelope, batch: half }) });
      if (response.status < 200 || response.status >= 300) return response;
    }
    return { status: 200, statusText: 'OK' };
  }

  private async post(request: HTTPClientRequest, body: string): Promise<HTTPResponse> {
    try {
      const response = await this.http.makeRequest({ ...request, body });
      const ok = response.status >= 200 && response.status < 300;
      const reason = ok ? undefined : refusalReason((await response.text?.()) ?? '');
      this.onResponse?.(response.status);
      // The SDK turns a refusal into `Error("[status] statusText")` and never reads the body: the reason rides in
      // the status text, the one field of our response that reaches that error.
      const statusText = reason ? `${response.statusText || 'refused'}: ${reason}` : response.statusText;
      // The engine owns retries: a 429's Retry-After goes to it, and the SDK (maxRetries 0) sees a 429 without
      // one, so it reports the failure at once instead of waiting and retrying on its own.
      const headers = { ...(response.headers as Record<string, string> | undefined) };
      const retryAfter = response.status === 429 ? parseRetryAfter(headers['retry-after']) : undefined;
      if (retryAfter !== undefined) {
        this.onRetryAfter?.(retryAfter);
        delete headers['retry-after'];
      }
      return { status: response.status, statusText, headers };
    } catch (error) {
      this.onResponse?.(unacknowledgedAnswerIn(error)?.status);
      throw error;
    }
  }
}

/** Segment's own reason for a refusal: `{"message": …}` (or `error`), else the start of a text body; one line. */
function refusalReason(body: string): string | undefined {
  const text = body.slice(0, REASON_BODY_BYTES);
  let reason: unknown = text;
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: unknown; errors?: unknown };
    reason = body.message ?? body.error ?? body.errors ?? undefined;
    if (reason !== undefined && typeof reason !== 'string') reason = JSON.stringify(reason);
  } catch {
    // Not JSON (a proxy's HTML page): keep its text.
  }
  if (typeof reason !== 'string') return undefined;
  const line = reason.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 300);
  return line === '' ? undefined : redactUrls(line);
}
