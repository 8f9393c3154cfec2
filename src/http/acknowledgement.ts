import { UnavailableError } from '../errors.js';
import { redactUrl } from '../redact.js';

/**
 * Guarantee 1 of issue 17, for the destinations: an operation is delivered only when the service gave its
 * documented success answer (the right status and a body of the documented shape). Each destination's transport
 * judges every answer with its own rule (src/http/segment-http.ts, src/http/customerio-http.ts) and turns an
 * answer that only looks like success (a redirect, an HTML or empty 200, a body that does not parse) into this
 * error, so that neither SDK can read it as delivered: @segment/analytics-node takes any 200–399 for success,
 * customerio-node any 2xx and an empty body for `{}`.
 *
 * What kind of wrong answer it was decides what happens next:
 * - `redirect`: the endpoint moved (http:// answered with a redirect to https://, a region redirect). Nothing is
 *   followed (guarantee 2: no redirect outside the rate limiter), and the run stops (exit 69): every request would
 *   get the same answer until the setting changes.
 * - `not-json` (an HTML page, plain text, an empty body), `wrong-shape` (JSON, but not the documented success,
 *   such as `{}` from something that is not Segment), `wrong-status` (a 2xx the API does not give, such as 204):
 *   the endpoint is not the service's API (a proxy, a captive portal, a wrong host). Also stops the run (69).
 * - `truncated`: JSON that ends too early. A body cut on its way is a passing fault: the operation is retried,
 *   and recorded failed with this reason if it never comes whole.
 */
export type AnswerProblem = 'redirect' | 'not-json' | 'wrong-shape' | 'wrong-status' | 'truncated';

export class UnacknowledgedAnswer extends Error {
  constructor(
    /** "Segment", "Customer.io". */
    readonly service: string,
    readonly status: number,
    readonly problem: AnswerProblem,
    /** One sentence, without the final period (like HttpError's), URLs redacted. */
    message: string,
    /** What to fix, for a problem that stops the run or fails the check. */
    readonly hint: string,
  ) {
    super(message);
    this.name = 'UnacknowledgedAnswer';
  }

  /** A passing fault, worth a retry; the others come back the same until a setting changes. */
  get transient(): boolean {
    return this.problem === 'truncated';
  }
}

/**
 * The UnacknowledgedAnswer inside an error: itself, or a cause of it (fetch rejects with `TypeError('fetch failed')`
 * whose cause is the error its dispatcher gave).
 */
export function unacknowledgedAnswerIn(error: unknown, depth = 0): UnacknowledgedAnswer | undefined {
  if (error instanceof UnacknowledgedAnswer) return error;
  if (typeof error !== 'object' || error === null || depth > 4) return undefined;
  return unacknowledgedAnswerIn((error as { cause?: unknown }).cause, depth + 1);
}

/** What the body of an answer is, to judge it against a documented shape. */
export type ParsedBody =
  | { kind: 'json'; value: unknown }
  | { kind: 'empty' }
  /** Starts like JSON (an object or array) but does not parse: cut short. */
  | { kind: 'truncated' }
  | { kind: 'not-json' };

export function parseBody(text: string): ParsedBody {
  const trimmed = text.trim();
  if (trimmed === '') return { kind: 'empty' };
  try {
    return { kind: 'json', value: JSON.parse(trimmed) as unknown };
  } catch {
    return /^[[{]/.test(trimmed) ? { kind: 'truncated' } : { kind: 'not-json' };
  }
}

/** Text from a service quoted in a message: one line, no control characters (they could steer a terminal), short. */
function quoted(text: string, max = 60): string {
  const line = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** The body in a few words: `an empty body`, `{} (application/json)`, `a body starting "<!doctype html>…" (text/html)`. */
export function describeBody(text: string, contentType: string | undefined): string {
  const type = contentType?.split(';')[0]?.trim() || 'no content type';
  const body = parseBody(text);
  if (body.kind === 'empty') return `an empty body (${type})`;
  if (body.kind === 'truncated') return `JSON cut short "${quoted(text)}" (${type})`;
  if (body.kind === 'json' && text.trim().length <= 60) return `${quoted(text)} (${type})`;
  return `a body starting "${quoted(text)}" (${type})`;
}

/** A redirect in a few words, the target resolved against the request and redacted: `a redirect to https://…`. */
export function describeRedirect(location: string | undefined, requestUrl: string): string {
  if (location === undefined || location.trim() === '') return 'a redirect without a Location';
  let target = location.trim();
  try {
    target = new URL(target, requestUrl).href;
  } catch {
    // Not a URL: quote it as given.
  }
  return `a redirect to ${quoted(redactUrl(target), 200)}`;
}

export interface AnswerRule {
  /** "Segment". */
  service: string;
  /** Where the service was asked, for the sentence (redacted here). */
  baseUrl: string;
  /** The documented success answer, for the sentence: `200 {"success": true}`. */
  expected: string;
  /** The setting that picks the endpoint, for the hint after a redirect: `SEGMENT_HOST`. */
  endpointSetting: string;
  /** The settings that pick the endpoint in general, for the hint after a page that is not the API. */
  endpointSettings: string;
}

/**
 * The error for an answer that is not the documented success: the service, where, what came back and what was
 * expected, in one sentence ("Segment at http://h answered 301 (a redirect to https://h/v1/batch), not its success
 * answer (200 {"success": true})"), and the fix.
 */
export function unacknowledged(
  rule: AnswerRule,
  answer: { status: number; problem: AnswerProblem; requestUrl: string; location?: string | undefined; body: string; contentType?: string | undefined },
): UnacknowledgedAnswer {
  const what =
    answer.problem === 'redirect'
      ? `(${describeRedirect(answer.location, answer.requestUrl)})`
      : `with ${describeBody(answer.body, answer.contentType)}`;
  const message = `${rule.service} at ${redactUrl(rule.baseUrl)} answered ${answer.status} ${what}, not its success answer (${rule.expected})`;
  const hint =
    answer.problem === 'redirect'
      ? `Set ${rule.endpointSetting} to the URL it redirects to: referral-sync follows no redirect.`
      : answer.problem === 'truncated'
        ? `Run again later; if it persists, check ${rule.endpointSettings} and any proxy on the way.`
        : `${rule.endpointSettings} (or a proxy on the way) points at something other than the ${rule.service} API.`;
  return new UnacknowledgedAnswer(rule.service, answer.status, answer.problem, message, hint);
}

/**
 * The run-stopping error for an answer every request would get (not `transient`): exit 69, like refused
 * credentials. Its operations were not settled, so they stay queued and the next run sends them, with their ids.
 */
export function endpointUnusable(problem: UnacknowledgedAnswer): UnavailableError {
  return new UnavailableError(`${problem.message}.`, { hint: `${problem.hint} What it did not acknowledge is kept, and the next run sends it.` });
}
