import { redactUrl, redactUrls } from '../redact.js';

/**
 * A request that failed for good. Carries what a person needs (service, status, the service's own code and
 * message, its request id) and never the credentials: the client never puts headers in here.
 */
export class HttpError extends Error {
  constructor(
    readonly service: string,
    readonly status: number | undefined,
    message: string,
    readonly details: {
      code?: string;
      requestId?: string;
      path?: string;
      body?: unknown;
      /** A 3xx's Location, redacted. */
      location?: string;
      /** Whether the error's body was JSON (a service's own words) rather than text (a proxy's page). */
      json?: boolean;
    } = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Socket and TLS error codes in words (the code stays, for searching). */
const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed by the other side',
  CERT_HAS_EXPIRED: 'its TLS certificate has expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its TLS certificate names another host',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its TLS certificate is not trusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'its TLS certificate is not trusted',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its TLS certificate is not trusted',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its TLS certificate is not trusted',
};

interface ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  cause?: unknown;
  errors?: unknown[];
}

/** The first error code in an error, its causes, or an AggregateError's errors (fetch nests them). */
function codeOf(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null || depth > 4) return undefined;
  const e = error as ErrorLike;
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  return codeOf(e.cause, depth + 1) ?? (Array.isArray(e.errors) ? e.errors.map((inner) => codeOf(inner, depth + 1)).find(Boolean) : undefined);
}

/** An error of the connection (refused, reset, DNS, TLS, timeout), not an answer and not our own abort. */
export function isNetworkError(error: unknown): boolean {
  const code = codeOf(error);
  if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') return false;
  return code !== undefined || (error as ErrorLike | undefined)?.name === 'TimeoutError';
}

/**
 * Why a request got no answer, in a few words: "connection refused (ECONNREFUSED)", "no answer within 10 s".
 * Never fetch's bare "fetch failed" when its cause says more; URLs in it are redacted.
 */
export function describeNetworkError(error: unknown, timeoutMs?: number): string {
  const e = (typeof error === 'object' && error !== null ? error : {}) as ErrorLike;
  const code = codeOf(error);
  const timedOut = `no answer within ${timeoutMs === undefined ? 'the timeout' : `${timeoutMs / 1000} s`}`;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || e.name === 'TimeoutError') return timedOut;
  if (code !== undefined) return NETWORK_CODES[code] ? `${NETWORK_CODES[code]} (${code})` : code;
  const cause = e.cause as ErrorLike | undefined;
  const text = (typeof cause?.message === 'string' && cause.message !== '' ? cause.message : undefined) ?? e.message ?? String(error);
  return redactUrls(text.replace(/\s+/g, ' ').trim()) || 'network error';
}

/**
 * The one sentence for a service that did not answer, whichever it is (issue 10): the service, where it was
 * asked (redacted), and why. Without the final period, like every HttpError message; the fix is
 * `unreachableHint`'s.
 */
export function unreachableMessage(service: string, url: string, reason: string): string {
  return `${service} is unreachable at ${redactUrl(url)}: ${reason}`;
}

/** What to do about `unreachableMessage`: the network and proxy, the setting that picks the endpoint, `--rate`. */
export function unreachableHint(endpointSettings: string): string {
  return `Check the network and any proxy or firewall on the way, and ${endpointSettings}; if it fails only under load, lower --rate.`;
}

/** The settings that pick each service's endpoint, for `unreachableHint`. */
export const ENDPOINT_SETTINGS = {
  segment: 'SEGMENT_REGION (us or eu) or SEGMENT_HOST',
  customerio: 'CUSTOMERIO_REGION (us or eu) or CUSTOMERIO_TRACK_URL',
  growsurf: 'GROWSURF_API_URL',
  cello: 'CELLO_API_URL',
} as const;
