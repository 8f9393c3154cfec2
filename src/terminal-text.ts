/**
 * Text from the data (CSV cells and headers, ids, names, API answers) must not steer the terminal or forge a log
 * line: an ANSI sequence would recolour or rewrite the screen, a CR or a line break inside a value would start
 * what reads as a line of its own ("warning: …", a forged JSON log record), a bidi override would show a line
 * reordered. Every character that can do that is shown as an escape instead:
 *
 * - C0 controls as `\xHH`, or `\n`, `\r`, `\t`; ESC (`\x1b`) disarms every ANSI sequence that starts with it;
 * - DEL, C1 controls (including the one-byte CSI U+009B), format characters (Cf: bidi embeddings, overrides and
 *   isolates, zero-width characters, BOM, soft hyphen, tags), the line and paragraph separators U+2028/U+2029 and
 *   lone surrogates as `\uHHHH`, one per UTF-16 unit.
 *
 * `\uHHHH` is also JSON's escape for the same character, and JSON.stringify already escapes every C0 control, so
 * the same funnel applied to a JSON result or log line leaves it exact: it parses to the same value. Printable
 * text, backslashes included, passes unchanged.
 */

// Everything escaped: control, format, line/paragraph separator, lone surrogate. ANY tests, UNSAFE replaces.
const ANY = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
// The same without the line feed (\p{Cc} is exactly C0, DEL and C1), for text whose line feeds are its layout.
const ANY_BUT_LINE_FEED = /[\0-\t\v-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const UNSAFE_BUT_LINE_FEED = /[\0-\t\v-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(char: string): string {
  const short = SHORT[char];
  if (short !== undefined) return short;
  const code = char.codePointAt(0)!;
  if (code < 0x20) return `\\x${code.toString(16).padStart(2, '0')}`;
  let out = '';
  for (let i = 0; i < char.length; i += 1) out += `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return out;
}

/** A value (or a one-line message) as shown in text output and logs: nothing in it can act on the terminal. */
export function shown(value: string): string {
  return ANY.test(value) ? value.replace(UNSAFE, escapeChar) : value;
}

/**
 * Laid-out text (a rendered table, a JSON document) as written to stdout or stderr: its line feeds stay, every
 * other control is escaped. The funnel every write of the CLI goes through (cli/output/output.ts, cli/main.ts). A line
 * feed inside a value is the renderer's to escape (`joinLines`): here it cannot be told from the layout's own.
 */
export function terminalSafe(text: string): string {
  return ANY_BUT_LINE_FEED.test(text) ? text.replace(UNSAFE_BUT_LINE_FEED, escapeChar) : text;
}

/**
 * Lines of a text rendering joined into one text: each line is one line, whatever its values hold, so a line
 * feed in a value is escaped rather than starting a line of its own. Every text renderer ends in this.
 */
export function joinLines(lines: readonly string[]): string {
  return lines.map(shown).join('\n');
}
