import { once } from 'node:events';
import { redactUrls } from '../../redact.js';
import { shown, terminalSafe } from '../../terminal-text.js';

/**
 * Where the CLI writes. Results (a diff, a status) go to stdout; logs, warnings and errors to stderr, as text
 * for people or one JSON object per line (`--log-format json`) for cron and log shippers.
 *
 * Every write goes through `terminalSafe` (terminal-text.ts): nothing a value holds can act on the terminal, and
 * a JSON result stays exact. A log message is one line: a line break in it is shown escaped.
 */
export type LogFormat = 'text' | 'json';

export interface OutputOptions {
  logFormat: LogFormat;
  quiet: boolean;
  verbose: boolean;
  progress: boolean;
}

export interface Streams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export class Output {
  /** While progress bars are drawn on stderr, log lines go through them (printed above the bars, which are redrawn). */
  private above: ((line: string) => void) | undefined;

  constructor(
    readonly streams: Streams,
    readonly options: OutputOptions,
  ) {}

  /**
   * The command's result. Any URL in it is shown without its credentials. Text results come from renderers
   * that lay their lines out with `joinLines`, so a line feed in them is their own.
   */
  result(text: string): void {
    this.streams.stdout.write(terminalSafe(redactUrls(text)));
  }

  /** A result too large to hold as one string (every invalid row of a million-row file), written as it comes. */
  async resultStream(chunks: AsyncIterable<string>): Promise<void> {
    const stdout = this.streams.stdout;
    try {
      for await (const chunk of chunks) {
        if (!stdout.write(terminalSafe(redactUrls(chunk)))) await once(stdout, 'drain');
      }
    } catch (error) {
      // The reader went away (`… --json | head`): there is no one left to write the rest to.
      if ((error as NodeJS.ErrnoException).code !== 'EPIPE') throw error;
    }
  }

  /** --log-format json: every line on stdout and stderr is one JSON object. */
  get json(): boolean {
    return this.options.logFormat === 'json';
  }

  /**
   * Indentation of a JSON result: `--json` alone pretty-prints for people; under --log-format json the result is
   * one line like everything else.
   */
  jsonIndent(jsonFlag: boolean | undefined): number | undefined {
    return jsonFlag === true && !this.json ? 2 : undefined;
  }

  /** A notice: what is happening. Dropped by --quiet. */
  info(message: string, fields: Record<string, unknown> = {}): void {
    if (this.options.quiet) return;
    this.log('info', message, fields);
  }

  verbose(message: string, fields: Record<string, unknown> = {}): void {
    if (!this.options.verbose) return;
    this.log('debug', message, fields);
  }

  /** Something the user should know about the result: kept by --quiet. */
  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.log('warn', message, fields);
  }

  /** A failure the command reports itself (it still returns its exit code): kept by --quiet. */
  error(message: string, fields: Record<string, unknown> = {}): void {
    this.log('error', message, fields);
  }

  /** Progress bars now own the bottom of stderr (`print` writes a line above them), or no longer (undefined). */
  drawing(print: ((line: string) => void) | undefined): void {
    this.above = print;
  }

  get showsProgress(): boolean {
    return this.options.progress && this.options.logFormat === 'text' && this.streams.stderr.isTTY === true && !this.options.quiet;
  }

  private log(level: string, message: string, fields: Record<string, unknown>): void {
    if (this.options.logFormat === 'json') {
      this.streams.stderr.write(`${terminalSafe(redactUrls(JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })))}\n`);
    } else {
      const prefix = level === 'error' ? 'error: ' : level === 'warn' ? 'warning: ' : '';
      const line = `${prefix}${shown(redactUrls(message))}\n`;
      if (this.above) this.above(line);
      else this.streams.stderr.write(line);
    }
  }
}
