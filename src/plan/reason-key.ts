/**
 * The kind of a reason: a delivery's last error, an invalid row's reason or a warning, with the details that
 * differ from one row to the next (an email, an id, a byte count, a quoted value, a line number) replaced by a
 * placeholder, so that a thousand refusals of one cause read as one line with a count. What tells causes apart
 * is kept: words, field and attribute names, HTTP status codes (`[400]`, `HTTP 503`, `status 429`), a limit
 * written as a rule (`150-byte limit`). A long reason is cut after the details are replaced: services differ in the tail.
 *
 * Pure and idempotent: keyOf(keyOf(x)) === keyOf(x), so a key can be grouped again with the reasons it came from.
 */

/** Keys are cut to this many characters: a long service answer differs in its tail. */
const MAX_KEY_LENGTH = 240;

/** A URL: its scheme and host, then a path or query that does not end in punctuation. */
const URL = /\b(https?:\/\/[^/\s"'<>]+?)(?::?(?=[\s"'<>),;]|$)|\/(?:[^\s"'<>)]*[^\s"'<>).,:;])?)/gi;

const RULES: readonly (readonly [RegExp, string])[] = [
  [/\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b/g, '<email>'],
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '<id>'],
  // Quoted values: a cell, a person id, an attribute's value. A quoted name stays (after column, attribute, field…).
  [/(?<!\b(?:column|columns|attribute|field|header|metadata|key|option|flag|event|object|type) )"[^"]{1,200}"/gi, '"…"'],
  [/(?<!\b(?:column|columns|attribute|field|header|metadata|key|option|flag|event|object|type) )'[^']{1,200}'/gi, "'…'"],
  // Tokens that are ids: letters and digits mixed, or long hex (message ids, keys, prew_… reward ids).
  [/\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{12,}\b/gi, '<id>'],
  [/\b[0-9a-f]{16,}\b/gi, '<id>'],
  // What follows a word naming one thing by its id or position.
  [/\b(participant|person|customer|account|user|member|object|row|line|item|index|batch_index|id|key|seq|run)( id)?(\s*[:=#]?\s*)(?!<)[\w.+:-]*\d(?:[\w.+:-]|,\d)*/gi, '$1$2$3<id>'],
  [/#\d+\b/g, '#<n>'],
  // Counted quantities (sizes, durations, attempts) vary; an HTTP status (three digits 100-599 standing alone) does not.
  [/\b\d[\d,._]*(\s*)(bytes?|B|KB|MB|GB|ms|s|seconds?|minutes?|attempts?|times|characters?|attributes?|rows?|participants?|operations?|deliveries)\b/g, '<n>$1$2'],
  // Not the number in a name (ISO-8601, utf-16le).
  [/(?<![A-Za-z]-)(?:\b\d{1,3}(,\d{3})+(\.\d+)?\b|\b\d{4,}(\.\d+)?\b|\b\d+\.\d+\b)/g, '<n>'],
];

/** The group key of a reason (see the module comment); the empty string for none. */
export function reasonKey(reason: string | null | undefined): string {
  if (reason === null || reason === undefined) return '';
  // URLs (already without credentials) are set aside first: the host tells the cause, the path and query the
  // detail, and the rules below must not read a host's port or address as a count.
  const hosts: string[] = [];
  let key = reason
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\u0000/g, '')
    .replace(URL, (_url, host: string) => `\u0000${hosts.push(host) - 1}\u0000`);
  for (const [pattern, replacement] of RULES) key = key.replace(pattern, replacement);
  key = key.replace(/\u0000(\d+)\u0000/g, (_mark, index: string) => `${hosts[Number(index)]}/…`);
  return key.length > MAX_KEY_LENGTH ? `${key.slice(0, MAX_KEY_LENGTH)}…` : key;
}
