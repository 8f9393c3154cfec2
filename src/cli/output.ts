/**
 * Where the CLI writes. Results (a diff, a status) go to stdout; logs, warnings and errors to stderr, as text
 * for people or one JSON object per line (`--log-format json`) for cron and log shippers.
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
  private progressShown = false;

  constructor(
    readonly streams: Streams,
    readonly options: OutputOptions,
  ) {}

  /** The command's result. */
  result(text: string): void {
    this.streams.stdout.write(text);
  }

  info(message: string, fields: Record<string, unknown> = {}): void {
    if (this.options.quiet) return;
    this.log('info', message, fields);
  }

  verbose(message: string, fields: Record<string, unknown> = {}): void {
    if (!this.options.verbose) return;
    this.log('debug', message, fields);
  }

  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.log('warn', message, fields);
  }

  /** A one-line counter redrawn in place; only on a TTY and only in text mode. */
  progress(text: string): void {
    if (!this.showsProgress) return;
    this.streams.stderr.write(`\r\x1b[2K${text}`);
    this.progressShown = true;
  }

  endProgress(): void {
    if (this.progressShown) this.streams.stderr.write('\r\x1b[2K');
    this.progressShown = false;
  }

  get showsProgress(): boolean {
    return this.options.progress && this.options.logFormat === 'text' && this.streams.stderr.isTTY === true && !this.options.quiet;
  }

  private log(level: string, message: string, fields: Record<string, unknown>): void {
    this.endProgress();
    if (this.options.logFormat === 'json') {
      this.streams.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
    } else {
      const prefix = level === 'error' ? 'error: ' : level === 'warn' ? 'warning: ' : '';
      this.streams.stderr.write(`${prefix}${message}\n`);
    }
  }
}
