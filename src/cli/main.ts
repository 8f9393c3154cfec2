import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import type { Clock } from '../apply/limiter.js';
import { ExitCode, isReferralSyncError } from '../errors.js';
import { redactUrls } from '../redact.js';
import { runApply, type ApplyFlags } from './apply-run.js';
import { runCheck } from './check.js';
import { runDiff, type DiffFlags } from './diff.js';
import { runRetry, type RetryFlags } from './retry.js';
import { Output, type Streams } from './output.js';
import type { CommonFlags, Env } from './settings.js';
import { runStatus, type StatusFlags } from './status.js';

/** Unexpected failures (bugs): not a contract code, distinct from every code of DESIGN.md §9. */
const INTERNAL_ERROR = 70;

export interface RunEnvironment {
  env: Env;
  cwd: string;
  streams: Streams;
  now: () => Date;
  /** Aborted by the first SIGINT/SIGTERM, with the signal's name as reason: sending commands stop gracefully. */
  interrupt?: AbortSignal;
  /**
   * What rate limiters, Retry-After pauses and backoffs wait on (default: the real clock; `main` never sets it).
   * Tests that run the CLI in-process pass a fake one shared with their fake services, so that a GrowSurf
   * window or a 429's Retry-After is honoured in the fake's time instead of being waited out for real.
   */
  clock?: Clock;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function addCommonOptions(command: Command): Command {
  return command
    .option('--state <path>', 'state file (SQLite); env REFERRAL_SYNC_STATE', undefined)
    .option('--config <file>', 'config file; env REFERRAL_SYNC_CONFIG (default ./referral-sync.config.json if present)')
    .option('--user-id <rule>', 'downstream user id: email | id | metadata.<key> (default email; Cello: id, its productUserId)')
    .option('--to <destinations>', 'segment, customerio, or both comma-separated (default both)')
    .addOption(new Option('--log-format <format>', 'text for people, json for one object per line').choices(['text', 'json']))
    .option('--no-progress', 'no progress display even on a terminal')
    .option('--quiet', 'only results and errors')
    .option('--verbose', 'more detail about what happens')
    .option('--sync-nulls', 'send null for a trait that had a value and now has none');
}

function addSourceOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--source <kind>', 'where participants come from: csv (--file), growsurf (the REST API, GROWSURF_API_KEY), cello (--file with Cello exports)').choices(['csv', 'growsurf', 'cello']),
    )
    .option('--campaign <id>', 'program id (GrowSurf campaign id); env GROWSURF_CAMPAIGN_ID; part of every idempotency key')
    .option('--file <path...>', 'CSV export(s) to read: a GrowSurf export, or Cello exports (files or their folder)')
    .option('--encoding <name>', 'encoding of the --file exports: utf-8, utf-16le, utf-16be, windows-1252 or latin1 (default: detected per file)')
    .addOption(new Option('--format <format>', 'CSV layout').choices(['growsurf', 'cello']))
    .option('--enrich', 'Cello: confirm codes and fetch referral links through the Cello API (CELLO_ACCESS_KEY_ID, CELLO_SECRET_ACCESS_KEY)')
    .option('--new-program', 'confirm that this program id is a new program, not the one the state already delivered under another id')
    .option('--max-wait <duration>', 'longest rate-limit wait to sit out, e.g. 90s, 15m, 1h (default 1h); past it the run stops')
    .option('--rate <limits>', 'rate limits, e.g. growsurf=5,segment=500,customerio=100 (GrowSurf and Customer.io requests/s, Segment events/s)')
    .addOption(new Option('--rate-mode <mode>', 'adaptive: Customer.io and Cello start at the default and rise toward --rate while healthy; fixed: --rate exactly').choices(['adaptive', 'fixed']));
}

/** Builds the program; each action resolves to an exit code stored in `result`. */
function buildProgram(run: RunEnvironment, result: { code: ExitCode | number }, jsonErrors = false): Command {
  const program = new Command('referral-sync')
    .description('Sync a GrowSurf or Cello referral program into Segment and Customer.io: traits, tiers and history events.')
    .version(version(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => run.streams.stdout.write(text),
      // With --log-format json, commander's usage errors are one JSON object per line like every other message.
      writeErr: (text) => run.streams.stderr.write(jsonErrors ? usageAsJson(text) : text),
    });

  const output = (flags: CommonFlags): Output =>
    new Output(run.streams, {
      logFormat: flags.logFormat === 'json' ? 'json' : 'text',
      quiet: flags.quiet === true,
      verbose: flags.verbose === true,
      progress: flags.progress !== false && run.env.CI !== 'true',
    });

  const diff = addCommonOptions(addSourceOptions(program.command('diff')))
    .description('Show what sync would send, per destination and per person. Sends nothing, writes no state.')
    .option('--full', 'list every person whose traits change, not just the first 10')
    .option('--out <file>', 'write every operation, with its exact payload, as JSON lines')
    .option('--json', 'print the summary as JSON')
    .option('--detailed-exitcode', 'exit 2 when there are changes, 0 when there are none')
    .addHelpText(
      'after',
      '\nExamples:\n  referral-sync diff --file export.csv --campaign abc123\n  referral-sync diff --file export.csv --out plan.jsonl --detailed-exitcode',
    );
  diff.action(async (flags: DiffFlags) => {
    result.code = await runDiff(flags, run.env, run.cwd, output(flags), run.now(), run.clock);
  });

  const addDestinationOptions = (command: Command, withRate = false): Command =>
    (withRate
      ? command
          .option('--rate <limits>', 'rate limits, e.g. segment=500,customerio=100 (Segment events/s, Customer.io requests/s)')
          .addOption(new Option('--rate-mode <mode>', 'adaptive: Customer.io starts at the default and rises toward --rate while healthy; fixed: --rate exactly').choices(['adaptive', 'fixed']))
      : command)
      .option('--stall-timeout <duration>', 'a destination without progress this long stops; its remaining work is kept for the next run (default 5m)')
      .addOption(new Option('--customerio-api <version>', 'Customer.io Track API: v2 batches (default) or v1 one request per call').choices(['v1', 'v2']));

  const sync = addDestinationOptions(addCommonOptions(addSourceOptions(program.command('sync'))))
    .description('Send what changed since the last run: new events and changed traits. The first run is the full backfill.')
    .option('--dry-run', 'print the plan (exactly what diff prints) and send nothing')
    .option('--quick', 'GrowSurf API: only participants named by referrals changed since the last successful sync (a full scan still catches the rest)')
    .option('--json', 'print the summary as JSON');
  sync.action(async (flags: ApplyFlags) => {
    result.code = await runApply('sync', flags, run.env, run.cwd, output(flags), run.now(), run.interrupt, run.clock);
  });

  const backfill = addDestinationOptions(addCommonOptions(addSourceOptions(program.command('backfill'))))
    .description('Re-identify everyone and send every event not yet sent. Resumes a backfill that was interrupted.')
    .option('--dry-run', 'print the plan and send nothing')
    .option('--resend', 'send events again even when the state has them as sent (same ids: destinations dedupe)')
    .option('--json', 'print the summary as JSON');
  backfill.action(async (flags: ApplyFlags) => {
    result.code = await runApply('backfill', flags, run.env, run.cwd, output(flags), run.now(), run.interrupt, run.clock);
  });

  const retry = addDestinationOptions(addCommonOptions(program.command('retry')), true)
    .description('Resend failed and dead deliveries with their original ids.')
    .option('--campaign <id>', 'program whose lock to take (env GROWSURF_CAMPAIGN_ID)');
  retry.action(async (flags: RetryFlags) => {
    result.code = await runRetry(flags, run.env, run.cwd, output(flags), run.now(), run.interrupt, run.clock);
  });

  const check = addDestinationOptions(addCommonOptions(program.command('check')), true)
    .description('Check destination credentials and reachability. Sends no data.');
  check.action(async (flags: CommonFlags) => {
    result.code = await runCheck(flags, run.env, run.cwd, output(flags));
  });

  const status = addCommonOptions(program.command('status'))
    .description('Show where the state is, the last runs and the delivery counts.')
    .option('--json', 'print as JSON')
    .option('--runs <n>', 'how many recent runs to list', '10');
  status.action(async (flags: StatusFlags) => {
    result.code = await runStatus(flags, run.env, run.cwd, output(flags));
  });

  program.addHelpText(
    'after',
    '\nExit codes: 0 done, 1 failed deliveries, 2 changes found (diff --detailed-exitcode), 64 usage/config error,\n' +
      '65 bad input data, 69 service unreachable or credentials refused, 73 the state cannot be created or written,\n' +
      '75 another run holds the lock.',
  );
  return program;
}

/** Runs the CLI and returns its exit code; never exits the process (tests call this directly). */
export async function run(argv: string[], environment: RunEnvironment): Promise<number> {
  const result: { code: number } = { code: ExitCode.ok };
  const program = buildProgram(environment, result, jsonLogsRequested(argv));
  const stderr = environment.streams.stderr;
  try {
    await program.parseAsync(argv);
    return result.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return ExitCode.ok;
      return ExitCode.usage;
    }
    if (isReferralSyncError(error)) {
      // Messages may quote a configured URL or an SDK's error that echoes one: never with its credentials.
      if (jsonLogsRequested(argv)) {
        stderr.write(`${redactUrls(JSON.stringify({ time: new Date().toISOString(), level: 'error', message: error.message, hint: error.hint, exitCode: error.exitCode }))}\n`);
      } else {
        stderr.write(`error: ${redactUrls(error.message)}\n`);
        if (error.hint) stderr.write(`${redactUrls(error.hint)}\n`);
      }
      return error.exitCode;
    }
    stderr.write(`internal error: ${redactUrls(error instanceof Error ? (error.stack ?? error.message) : String(error))}\n`);
    stderr.write('This is a bug in referral-sync; please report it with the command you ran.\n');
    return INTERNAL_ERROR;
  }
}

function usageAsJson(text: string): string {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => `${JSON.stringify({ time: new Date().toISOString(), level: 'error', message: line, exitCode: ExitCode.usage })}\n`)
    .join('');
}

function jsonLogsRequested(argv: string[]): boolean {
  const index = argv.indexOf('--log-format');
  return argv.includes('--log-format=json') || (index >= 0 && argv[index + 1] === 'json');
}

const SENDING_COMMANDS = new Set(['sync', 'backfill', 'retry']);

/** The process entry point used by bin/referral-sync.js: the only place that exits the process. */
export async function main(argv: string[]): Promise<void> {
  // A reader that stops early (`referral-sync diff --json | head`) closes the pipe: not an error of ours.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  const interrupt = new AbortController();
  const sends = SENDING_COMMANDS.has(argv.slice(2).find((arg) => !arg.startsWith('-')) ?? '') && !argv.includes('--dry-run');
  // A command that sends stops gracefully on the first signal (in-flight requests finish, outcomes are
  // recorded); a second signal, or any signal to a command that sends nothing, exits at once.
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupt.signal.aborted || !sends) process.exit(signal === 'SIGTERM' ? ExitCode.interruptedTerm : ExitCode.interruptedInt);
    const notice = `${signal}: stopping after the requests in flight (at most 10 s); press Ctrl-C again to quit at once.`;
    process.stderr.write(
      jsonLogsRequested(argv) ? `${JSON.stringify({ time: new Date().toISOString(), level: 'info', message: notice, signal })}\n` : `\n${notice}\n`,
    );
    interrupt.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const code = await run(argv, {
    env: process.env,
    cwd: process.cwd(),
    streams: { stdout: process.stdout, stderr: process.stderr },
    now: () => new Date(),
    interrupt: interrupt.signal,
  });
  // A signal that arrived after the last send still ends the process as a shell expects.
  const exitCode = interrupt.signal.aborted && code === ExitCode.ok ? (interrupt.signal.reason === 'SIGTERM' ? ExitCode.interruptedTerm : ExitCode.interruptedInt) : code;
  // Let stdout drain (a large --json piped to a file) before exiting.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(exitCode);
}
