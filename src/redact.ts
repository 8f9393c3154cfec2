/**
 * Credentials never reach output, logs or the state (DESIGN.md §9). A URL a person configured (SEGMENT_HOST,
 * CUSTOMERIO_TRACK_URL, GROWSURF_API_URL, CELLO_API_URL, a proxy, a state location) may carry a user and
 * password, or a key in its query; so may any error message that echoes such a URL (fetch refuses URLs with
 * credentials and names the URL in its TypeError). Every message that can hold a URL goes through here.
 */

const MASK = '***';

/** Query parameters that carry credentials by name (not data such as a referral link's `grsf` or `ucc`). */
const SECRET_PARAM =
  /^(api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?|secret|client[_-]?secret|[a-z_-]*_secret|password|passwd|pwd|token|access[_-]?token|auth|authorization|sig|signature|write[_-]?key|x-amz-signature|x-amz-credential|x-amz-security-token)$/i;

/** Anything that looks like an absolute URL with a scheme (http, https, postgres, …), up to a delimiter. */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`\\]+/gi;

/** One URL with its user, password and credential-named query values replaced by `***`. */
export function redactUrl(url: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*:\/\/)(.*)$/is.exec(url);
  if (!scheme) return redactUserinfo(url);
  const prefix = scheme[1]!;
  let rest = scheme[2]!;
  // The userinfo ends at the last "@" of the authority (a password may itself hold "@"). A password with an
  // unescaped "/" is not a valid URL but is still a password: "user:p/w@host" is masked too.
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    rest = `${MASK}@${rest.slice(at + 1)}`;
  } else {
    const loose = /^[^@/?#\s]*:[^@?#\s]*@/.exec(rest);
    if (loose) rest = `${MASK}@${rest.slice(loose[0].length)}`;
  }
  return `${prefix}${redactQuery(rest)}`;
}

function redactQuery(rest: string): string {
  const question = rest.indexOf('?');
  if (question < 0) return rest;
  const hash = rest.indexOf('#', question);
  const end = hash < 0 ? rest.length : hash;
  const query = rest
    .slice(question + 1, end)
    .split('&')
    .map((pair) => {
      const equals = pair.indexOf('=');
      if (equals < 0) return pair;
      let name = pair.slice(0, equals);
      try {
        name = decodeURIComponent(name);
      } catch {
        // A malformed escape: judge the name as written.
      }
      return SECRET_PARAM.test(name) ? `${pair.slice(0, equals)}=${MASK}` : pair;
    })
    .join('&');
  return `${rest.slice(0, question)}?${query}${rest.slice(end)}`;
}

/** Every URL inside a free text (an error message, a log line, a result) redacted; the rest untouched. */
export function redactUrls(text: string): string {
  const urls = !text.includes('://')
    ? text
    : text.replace(URL_IN_TEXT, (match) => {
        // Punctuation that ends the sentence around a URL is not part of it: "(http://x/?token=t)." keeps ")."
        const trailing = /[.,;:!?)\]}]+$/.exec(match)?.[0] ?? '';
        return redactUrl(match.slice(0, match.length - trailing.length)) + trailing;
      });
  return redactUserinfo(urls);
}

/**
 * `user:password@host` without a well-formed scheme in front ("alice:pw@proxy:8080", "//alice:pw@host",
 * "http:alice:pw@host"): a mistyped URL is still a password.
 */
const LOOSE_USERINFO = /[^\s"'<>`@/]*:[^\s"'<>`@/]*@(?=[a-z0-9[])/gi;

function redactUserinfo(text: string): string {
  return text.includes('@') ? text.replace(LOOSE_USERINFO, (match) => (match.startsWith(`${MASK}@`) ? match : `${MASK}@`)) : text;
}
