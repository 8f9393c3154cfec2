import { spawn } from 'node:child_process';
import { BIN } from './cli.js';

export interface TerminalRun {
  code: number | null;
  /** Everything the terminal was sent, escape sequences included. */
  raw: string;
}

const COLUMNS = 120;

/**
 * Runs the built CLI under a real pseudo-terminal (util-linux `script`), as a person at a terminal would: stdout
 * and stderr are the terminal, so progress bars draw. Both share it, as on screen. CI is set to something other
 * than "true" (CI=true turns bars off) and TERM is set, whatever the test runner's environment says.
 */
export function runInTerminal(args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<TerminalRun> {
  const command = [process.execPath, BIN, ...args].map(shellQuote).join(' ');
  return new Promise((resolve, reject) => {
    // stty: a known width, so lines are neither cut nor wrapped differently from one machine to the next.
    const child = spawn('script', ['-qfec', `stty cols ${COLUMNS} rows 50 && exec ${command}`, '/dev/null'], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '', HOME: options.cwd, TERM: 'xterm-256color', CI: 'false', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let raw = '';
    child.stdout.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (raw += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, raw }));
  });
}

function shellQuote(word: string): string {
  return /^[\w./=,:-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * What the terminal shows once `raw` has been played on it: a small emulator of what readline and cli-progress
 * send (cursor up/down/column, erase in line, erase below, autowrap), with unlimited scrollback. Lines are
 * trimmed at the end; trailing empty lines are dropped.
 */
export function screenOf(raw: string, columns = COLUMNS): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  const line = (r: number): string[] => {
    while (lines.length <= r) lines.push([]);
    return lines[r]!;
  };
  const tokens = /\x1b\[([?\d;]*)([A-Za-z])|\x1b[78()][0-9A-Z]?|\r|\n|[^\x1b\r\n]/gu;
  for (const [token, params, command] of raw.matchAll(tokens)) {
    if (token === '\r') col = 0;
    else if (token === '\n') row += 1;
    else if (command !== undefined) {
      const n = Number((params ?? '').split(';')[0] || (command === 'K' || command === 'J' ? 0 : 1));
      if (params?.startsWith('?') || command === 'm') continue;
      if (command === 'A') row = Math.max(0, row - n);
      else if (command === 'B') row += n;
      else if (command === 'C') col = Math.min(columns - 1, col + n);
      else if (command === 'D') col = Math.max(0, col - n);
      else if (command === 'G') col = Math.max(0, n - 1);
      else if (command === 'K') {
        const current = line(row);
        if (n === 0) current.length = Math.min(current.length, col);
        else if (n === 1) current.fill(' ', 0, Math.min(col + 1, current.length));
        else current.length = 0;
      } else if (command === 'J' && n === 0) {
        line(row).length = Math.min(line(row).length, col);
        lines.length = row + 1;
      }
    } else if (token.length >= 1 && token[0] !== '\x1b') {
      // Autowrap: a character written past the last column goes to the start of the next line.
      if (col >= columns) {
        row += 1;
        col = 0;
      }
      const current = line(row);
      while (current.length < col) current.push(' ');
      current[col] = token;
      col += 1;
    }
  }
  const text = lines.map((l) => l.join('').trimEnd());
  while (text.length > 0 && text.at(-1) === '') text.pop();
  return text;
}

/** The screen's lines without the bar glyphs' exact look: bars become `[bar]`, so tests say what they mean. */
export function withoutBars(lines: string[]): string[] {
  return lines.map((l) => l.replace(/[\u2588\u2591]+/gu, '[bar]'));
}
