import { Command, CommanderError, Option } from 'commander';
import type { Clock } from '../apply/limiter.js';
import { ExitCode, isReferralSyncError, signalExitCode } from '../errors.js';
import { redactUrls } from '../redact.js';
import { shown, terminalSafe } from '../terminal-text.js';
import { runApply, type ApplyFlags } from './commands/sync.js';
import { runCheck, type CheckFlags } from './commands/check.js';
import { runDiff, type DiffFlags } from './commands/diff.js';
import { runRetry, type RetryFlags } from './commands/retry.js';
import { Output, type Streams } from './output/output.js';
import type { Env } from './wiring/env.js';
import type { CommonFlags } from './wiring/settings.js';
import { toolVersion } from './wiring/version.js';
import { runStatus, type StatusFlags } from './commands/status.js';
import { runUnlock, type UnlockFlags } from './commands/unlock.js';
import { runStateCopy, type StateCopyFlags } from './commands/state-copy.js';
import type { PromptStreams } from './output/prompt.js';
import { isInteractive } from './run/recent-events.js';
import { runStateRotate, type StateRotateFlags } from './commands/state-rotate.js';

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
  /**
   * Where a question is answered (the campaign guard's, issue 19): `main` passes process.stdin; tests pass a stream
   * of their own. A question is asked only when this and stderr are terminals and no CI runner is set.
   */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}


/**
 * Option groups. Each command takes only the groups it uses, so its help lists only flags that do something there.
 */
function addOutputOptions(command: Command, options: { progress: boolean }): Command {
  command
    .optionsGroup('General:')
    .option('--config <file>', 'config file; env REFERRAL_SYNC_CONFIG (default ./referral-sync.config.json if present)')
    .addOption(new Option('--log-format <format>', 'text for people; json: every line on stdout and stderr is one JSON object').choices(['text', 'json']))
    .option('--quiet', 'no progress or notices: only results, warnings and errors')
    .option('--verbose', 'more detail about what happens');
  if (options.progress) command.option('--no-progress', 'no progress display even on a terminal');
  return command;
}

function addStateOption(command: Command): Command {
  return command.optionsGroup('State:').option('--state <path>', 'state: a SQLite file or a postgres:// URL (?schema=, sslmode); env REFERRAL_SYNC_STATE (default ./.referral-sync/state.db)');
}

function addToOption(command: Command): Command {
  return command.optionsGroup('Destinations:').option('--to <destinations>', 'segment, customerio, or both comma-separated (default both, or the config\'s)');
}

function addPlanOptions(command: Command): Command {
  return addToOption(command)
    .optionsGroup('Plan:')
    .option('--user-id <rule>', 'downstream user id: email | id | metadata.<key> (default email; Cello: id, its productUserId)')
    .option('--group-id <rule>', 'B2B: the field holding each person\'s account id: metadata.<key> | id | email; sends Segment group calls and Customer.io objects (config "group": id, name, objectTypeId)')
    .option('--sync-nulls', 'send null for a trait that had a value and now has none');
}

function addSourceOptions(command: Command): Command {
  return addSourceReadOptions(command)
    .option('--new-program', 'confirm that this program id is a new program, not the one the state already delivered under another id')
    .option('--new-destination', 'confirm that credentials other than the ones the state delivered with are another workspace, to get the history')
    .option('--max-wait <duration>', 'longest rate-limit wait to sit out, e.g. 90s, 15m, 1h (default 1h); past it the run stops');
}

/** Where the participants come from: what `check` takes too, to check the source a run with the same flags reads. */
function addSourceReadOptions(command: Command): Command {
  return command
    .optionsGroup('Source:')
    .addOption(
      new Option('--source <kind>', 'where participants come from: csv (--file), growsurf (the REST API, GROWSURF_API_KEY), cello (--file with Cello exports)').choices(['csv', 'growsurf', 'cello']),
    )
    .option('--campaign <id>', 'program id (GrowSurf campaign id); env GROWSURF_CAMPAIGN_ID; part of every idempotency key')
    .option('--file <path...>', 'CSV export(s) to read: a GrowSurf export, or Cello exports (files or their folder)')
    .option('--encoding <name>', 'encoding of the --file exports: utf-8, utf-16le, utf-16be, windows-1252 or latin1 (default: detected per file)')
    .option('--delimiter <name>', 'field delimiter of the --file exports: comma, semicolon or tab (default: detected from each header line)')
    .addOption(new Option('--format <format>', 'layout of the --file exports (default growsurf; cello with --source cello)').choices(['growsurf', 'cello']))
    .option('--enrich', 'Cello: confirm codes and fetch referral links through the Cello API (CELLO_ACCESS_KEY_ID, CELLO_SECRET_ACCESS_KEY)');
}

function addRateOptions(command: Command): Command {
  return command
    .optionsGroup('Rates:')
    .option('--rate <limits>', 'rate limits, e.g. segment=500,customerio=100,growsurf=5,cello=20 (Segment events/s, the others requests/s)')
    .addOption(new Option('--rate-mode <mode>', 'adaptive: Customer.io and Cello start at the default and rise toward --rate while healthy; fixed: --rate exactly').choices(['adaptive', 'fixed']));
}

function addCustomerioApiOption(command: Command): Command {
  return command.optionsGroup('Destinations:').addOption(new Option('--customerio-api <version>', 'Customer.io Track API: v2 batches (default) or v1 one request per call').choices(['v1', 'v2']));
}

function addSendingOptions(command: Command): Command {
  return addCustomerioApiOption(
    command.optionsGroup('Rates:').option('--stall-timeout <duration>', 'a destination without progress this long stops; its remaining work is kept for the next run (default 5m)'),
  );
}

/** The campaign guard's decision (issue 19): diff shows it, sync and backfill act on it. */
function addRecentEventsOption(command: Command): Command {
  return command
    .optionsGroup('Plan:')
    .addOption(
      new Option(
        '--recent-events <decision>',
        'a backfill or first sync meets Customer.io events under 72 hours old (they can trigger campaigns): send them, skip them for good, or hold them for a later run (default: ask on a terminal, else stop with exit 64; config "recentEvents")',
      ).choices(['send', 'skip', 'hold']),
    );
}

/** diff's own flags, which `sync --dry-run` and `backfill --dry-run` take too: a dry run IS a diff. */
function addPreviewOptions(command: Command, options: { dryRun: boolean }): Command {
  command.optionsGroup(options.dryRun ? 'Preview (diff\'s flags, with --dry-run):' : 'Preview:');
  if (options.dryRun) command.option('--dry-run', 'print the plan exactly as `diff` does (same flags, output and exit codes) and send nothing');
  return command
    .option('--full', `list every person whose traits change, not just the first 10${options.dryRun ? ' (with --dry-run)' : ''}`)
    .option('--out <file>', `write every operation, with its exact payload, as JSON lines${options.dryRun ? ' (with --dry-run)' : ''}`)
    .option('--detailed-exitcode', `exit 2 when there are changes, 0 when there are none${options.dryRun ? ' (with --dry-run)' : ''}`);
}

/** A pilot (`--limit`, `--only`): diff, sync and backfill plan and send only a few people. */
function addPilotOptions(command: Command): Command {
  return command
    .optionsGroup('Pilot:')
    .option('--limit <n>', 'only the first N people (in source order) who have something to send: their identifies, events and memberships; the rest is left for the full run')
    .option('--only <user-id>', 'only this person: a user id as sent (email by default) or a source participant id; repeat for several', (value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
}

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  $ ${line}`).join('\n')}\n`;
}

/** Builds the program; each action resolves to an exit code stored in `result`. */
function buildProgram(run: RunEnvironment, result: { code: ExitCode | number }, usageErrors?: string[]): Command {
  const program = new Command('referral-sync')
    .description('Sync a GrowSurf or Cello referral program into Segment and Customer.io: traits, tiers and history events.')
    .version(toolVersion(), '-V, --version')
    .showHelpAfterError('(`npx referral-sync <command> --help` lists the flags of each command)')
    .exitOverride()
    .configureOutput({
      // Commander echoes arguments (an unknown option, a bad value): through the same funnel as everything else.
      writeOut: (text) => run.streams.stdout.write(terminalSafe(text)),
      // With --log-format json, commander's usage error is collected and written as one JSON object (see run).
      writeErr: (text) => (usageErrors ? usageErrors.push(text) : run.streams.stderr.write(terminalSafe(text))),
    });

  const output = (flags: CommonFlags): Output =>
    new Output(run.streams, {
      logFormat: flags.logFormat === 'json' ? 'json' : 'text',
      quiet: flags.quiet === true,
      verbose: flags.verbose === true,
      progress: flags.progress !== false && run.env.CI !== 'true',
    });

  // Questions go to a person at a terminal, never into JSON logs.
  const terminal = (flags: CommonFlags): PromptStreams | undefined =>
    flags.logFormat !== 'json' && isInteractive(run.stdin, run.streams.stderr, run.env) && run.stdin ? { input: run.stdin, output: run.streams.stderr } : undefined;

  const diff = addRateOptions(addPilotOptions(addPreviewOptions(addOutputOptions(addRecentEventsOption(addPlanOptions(addStateOption(addSourceOptions(program.command('diff'))))), { progress: true }), { dryRun: false })))
    .description('Show what sync would send, per destination and per person. Sends nothing, writes no state.')
    .optionsGroup('Options:')
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      examples(
        'npx referral-sync diff --file fixtures/growsurf/participants.csv',
        'npx referral-sync diff --file export.csv --campaign abc123 --out plan.jsonl --detailed-exitcode',
        'npx referral-sync diff --file export.csv --campaign abc123 --group-id metadata.company_id   # B2B: accounts too',
        'npx referral-sync diff --file export.csv --campaign abc123 --limit 5 --out pilot.jsonl   # a pilot\'s plan, to apply with sync --plan',
      ),
    );
  diff.action(async (flags: DiffFlags) => {
    result.code = await runDiff(flags, run.env, run.cwd, output(flags), run.now(), run.clock);
  });

  const sync = addSendingOptions(addRateOptions(addPilotOptions(addPreviewOptions(addOutputOptions(addRecentEventsOption(addPlanOptions(addStateOption(addSourceOptions(program.command('sync'))))), { progress: true }), { dryRun: true }))))
    .description('Send what changed since the last run: new events and changed traits. The first run is the full backfill.')
    .optionsGroup('Options:')
    .option('--quick', 'GrowSurf API: only participants named by referrals changed since the last successful sync (a full scan still catches the rest)')
    .option('--plan <file>', 'send exactly the operations of a plan `diff --out` wrote, with its ids, and nothing else (reads no source); refused once the state moved')
    .option('--json', 'print the summary as JSON')
    .option('--fail-on-outstanding', 'exit 1 when failed or dead deliveries of earlier runs are still in the state after the run (for cron: old failures count as a failure)')
    .addHelpText(
      'after',
      examples(
        'npx referral-sync sync --file export.csv --campaign abc123',
        'npx referral-sync sync --source growsurf --campaign abc123 --log-format json',
        'npx referral-sync sync --file export.csv --campaign abc123 --limit 5   # a pilot: 5 people first',
        'npx referral-sync sync --plan plan.jsonl   # apply the plan diff --out wrote, as reviewed',
      ),
    );
  sync.action(async (flags: ApplyFlags) => {
    result.code = await runApply('sync', flags, run.env, run.cwd, output(flags), run.now(), run.interrupt, run.clock, terminal(flags));
  });

  const backfill = addSendingOptions(addRateOptions(addPilotOptions(addPreviewOptions(addOutputOptions(addRecentEventsOption(addPlanOptions(addStateOption(addSourceOptions(program.command('backfill'))))), { progress: true }), { dryRun: true }))))
    .description('Re-identify everyone and send every event not yet sent. Resumes a backfill that was interrupted.')
    .optionsGroup('Options:')
    .option('--resend', 'send events again even when the state has them as sent (same ids: destinations dedupe)')
    .option('--plan <file>', 'send exactly the operations of a plan `backfill --dry-run --out` wrote, and nothing else (reads no source); refused once the state moved')
    .option('--json', 'print the summary as JSON')
    .option('--fail-on-outstanding', 'exit 1 when failed or dead deliveries of earlier runs are still in the state after the run (for cron: old failures count as a failure)')
    .addHelpText(
      'after',
      examples(
        'npx referral-sync backfill --file export.csv --campaign abc123 --dry-run',
        'npx referral-sync backfill --file export.csv --campaign abc123',
        'npx referral-sync backfill --file export.csv --campaign abc123 --only ann@example.com   # a pilot of one',
        'npx referral-sync backfill --file export.csv --campaign abc123 --dry-run --out plan.jsonl && npx referral-sync backfill --plan plan.jsonl',
      ),
    );
  backfill.action(async (flags: ApplyFlags) => {
    result.code = await runApply('backfill', flags, run.env, run.cwd, output(flags), run.now(), run.interrupt, run.clock, terminal(flags));
  });

  const retry = addSendingOptions(addRateOptions(addOutputOptions(addToOption(addStateOption(program.command('retry'))), { progress: true })))
    .description('Resend failed and dead deliveries with their original ids, taking the lock of each program they belong to.')
    .optionsGroup('Options:')
    .option('--campaign <id>', 'only this program\'s deliveries (default: every program that has failed deliveries or queued leftovers)')
    .option('--json', 'print the summary as JSON')
    .option('--fail-on-outstanding', 'exit 1 when failed or dead deliveries are still in the state after the retry (for cron)')
    .addHelpText('after', examples('npx referral-sync retry', 'npx referral-sync retry --campaign abc123 --to customerio'));
  retry.action(async (flags: RetryFlags) => {
    result.code = await runRetry(flags, run.env, run.cwd, output(flags), run.now(), run.interrupt, run.clock);
  });

  const check = addCustomerioApiOption(addOutputOptions(addToOption(addSourceReadOptions(program.command('check'))), { progress: false }))
    .description('Check the source a sync with the same flags would read (its credentials, campaign, files) and the destinations\' credentials and reachability. Sends no data, reads and writes no state.')
    .optionsGroup('Plan:')
    .option('--user-id <rule>', 'as sync: which column an export needs for the user id (email | id | metadata.<key>)')
    .option('--group-id <rule>', 'as sync: which column an export needs for the account id (metadata.<key> | id | email)')
    .optionsGroup('Options:')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      examples('npx referral-sync check', 'npx referral-sync check --source growsurf --campaign abc123', 'npx referral-sync check --file export.csv --to customerio', 'npx referral-sync check --source cello --file exports/ --enrich'),
    );
  check.action(async (flags: CheckFlags) => {
    result.code = await runCheck(flags, run.env, run.cwd, output(flags), run.clock);
  });

  const status = addOutputOptions(addStateOption(program.command('status')), { progress: false })
    .description('Show where the state is, the last runs, the locks and the delivery counts. Read-only.')
    .optionsGroup('Options:')
    .option('--json', 'print as JSON')
    .option('--runs <n>', 'how many recent runs to list (default 10)')
    .option('--fail-on-outstanding', 'exit 1 when failed or dead deliveries are outstanding (for cron and monitoring)')
    .addHelpText('after', examples('npx referral-sync status', 'npx referral-sync status --runs 50 --json', 'npx referral-sync status --fail-on-outstanding   # exit 1 while failures wait'));
  status.action(async (flags: StatusFlags) => {
    result.code = await runStatus(flags, run.env, run.cwd, output(flags));
  });

  const unlock = addOutputOptions(addStateOption(program.command('unlock')), { progress: false })
    .description('Free the lock of a run that is gone (killed, crashed, machine lost). Refuses while the run lives.')
    .optionsGroup('Options:')
    .option('--campaign <id>', 'only this program\'s lock (default: every lock)')
    .option('--force', 'free a lock held from another machine, which cannot be checked from here: only when you know that run is gone (PostgreSQL: end the live run\'s session, when the role may)')
    .addHelpText('after', examples('npx referral-sync unlock', 'npx referral-sync unlock --campaign abc123 --force'));
  unlock.action(async (flags: UnlockFlags) => {
    result.code = await runUnlock(flags, run.env, run.cwd, output(flags));
  });

  const state = program.command('state').description('Work on a whole state: copy it to another backend, record rotated credentials.');
  const copy = addOutputOptions(
    state
      .command('copy')
      .description('Copy a whole state (runs, identities, ledger, queue, programs, watermarks, lookups; not locks) into an empty one, then compare row counts.')
      .optionsGroup('State:')
      .option('--from <path|url>', 'the state to copy: a SQLite file or a postgres:// URL (?schema=); opened read-only')
      .option('--to <path|url>', 'where to copy it: a new SQLite file, or a PostgreSQL schema that is empty or absent'),
    { progress: false },
  )
    .optionsGroup('Options:')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('npx referral-sync state copy --from .referral-sync/state.db --to "postgres://ci@db.example.com/referrals?schema=referral_sync"', 'npx referral-sync state copy --from .referral-sync/state.db --to backup.db --json'));
  copy.action(async (flags: StateCopyFlags & CommonFlags) => {
    result.code = await runStateCopy(flags, run.cwd, output(flags));
  });

  const rotate = addOutputOptions(
    addToOption(
      addStateOption(
        state
          .command('rotate')
          .description('Record that the destination credentials set now (a new SEGMENT_WRITE_KEY, CUSTOMERIO_SITE_ID) replace the ones the state delivered with: ids stay the same, nothing is sent again.'),
      ),
    ),
    { progress: false },
  )
    .optionsGroup('Options:')
    .option('--campaign <id>', 'only the credentials this program was delivered with')
    .option('--previous <fingerprint>', 'the fingerprint the new credentials replace, when the state delivered under several (`status` lists them)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examples('npx referral-sync state rotate --to segment   # with the new SEGMENT_WRITE_KEY set', 'npx referral-sync state rotate --to segment --previous 3f2a9c0d1b7e4a55   # the state delivered under several keys'));
  rotate.action(async (flags: StateRotateFlags) => {
    result.code = await runStateRotate(flags, run.env, run.cwd, output(flags), run.now());
  });

  program.addHelpText(
    'after',
    '\nExit codes: 0 done, 1 failed deliveries, 2 changes found (diff --detailed-exitcode), 64 usage/config error,\n' +
      '65 bad input data, 69 service unreachable or credentials refused, 73 the state cannot be created or written,\n' +
      '75 another run holds the lock or a temporary conflict on the state, 129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM.\n' +
      'With --fail-on-outstanding, sync, backfill, retry and status exit 1 while failed or dead deliveries wait in the state.\n' +
      examples('npx referral-sync diff --file fixtures/growsurf/participants.csv', 'npx referral-sync sync --help'),
  );
  return program;
}

/** Runs the CLI and returns its exit code; never exits the process (tests call this directly). */
export async function run(argv: string[], environment: RunEnvironment): Promise<number> {
  const result: { code: number } = { code: ExitCode.ok };
  const usageErrors: string[] | undefined = jsonLogsRequested(argv) ? [] : undefined;
  const program = buildProgram(environment, result, usageErrors);
  const stderr = environment.streams.stderr;
  try {
    await program.parseAsync(argv);
    return result.code;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (usageErrors && usageErrors.length > 0) stderr.write(terminalSafe(usageAsJson(usageErrors.join(''))));
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return ExitCode.ok;
      return ExitCode.usage;
    }
    if (isReferralSyncError(error)) {
      // Messages may quote a configured URL or an SDK's error that echoes one: never with its credentials.
      if (jsonLogsRequested(argv)) {
        stderr.write(`${terminalSafe(redactUrls(JSON.stringify({ time: new Date().toISOString(), level: 'error', message: error.message, hint: error.hint, exitCode: error.exitCode })))}\n`);
      } else {
        // The sentence and its hint are a line each: they may quote the data (a header, a cell, a service's answer).
        stderr.write(`error: ${shown(redactUrls(error.message))}\n`);
        if (error.hint) stderr.write(`${shown(redactUrls(error.hint))}\n`);
      }
      return error.exitCode;
    }
    const detail = redactUrls(error instanceof Error ? (error.stack ?? error.message) : String(error));
    const hint = 'This is a bug in referral-sync; please report it with the command you ran.';
    if (jsonLogsRequested(argv)) {
      stderr.write(`${terminalSafe(JSON.stringify({ time: new Date().toISOString(), level: 'error', message: `internal error: ${detail}`, hint, exitCode: INTERNAL_ERROR }))}\n`);
    } else {
      stderr.write(terminalSafe(`internal error: ${detail}\n${hint}\n`));
    }
    return INTERNAL_ERROR;
  }
}

/** Commander's usage error (its message, then a line or two of advice) as one JSON object, the advice as its hint. */
function usageAsJson(text: string): string {
  const [first = '', ...rest] = text.split('\n').filter((line) => line.trim() !== '');
  const hint = rest.map((line) => line.trim().replace(/^\((.*)\)$/, '$1')).join(' ');
  return `${JSON.stringify({ time: new Date().toISOString(), level: 'error', message: first.replace(/^error: /, ''), ...(hint ? { hint } : {}), exitCode: ExitCode.usage })}\n`;
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
  // Nor is a terminal that went away (SIGHUP's usual cause): its run still ends as it should, unheard.
  process.stderr.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE' && error.code !== 'EIO') throw error;
  });
  const interrupt = new AbortController();
  const sends = SENDING_COMMANDS.has(argv.slice(2).find((arg) => !arg.startsWith('-')) ?? '') && !argv.includes('--dry-run');
  // A command that sends stops gracefully on the first signal (in-flight requests finish, outcomes are
  // recorded); a second signal, or any signal to a command that sends nothing, exits at once.
  const say = (message: string, fields: Record<string, unknown>): void => {
    process.stderr.write(
      terminalSafe(
        jsonLogsRequested(argv)
          ? `${JSON.stringify({ time: new Date().toISOString(), level: 'warn', message, ...fields })}\n`
          : `${process.stderr.isTTY ? '\n' : ''}${message}\n`,
      ),
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = signalExitCode(signal);
    if (interrupt.signal.aborted) process.exit(code);
    if (!sends) {
      // Nothing is being sent: stop at once, and say so (the run's last line, as for every run).
      say(`Interrupted by ${signal}; nothing was sent.`, { signal, exitCode: code });
      process.exit(code);
    }
    const again = signal === 'SIGINT' ? 'press Ctrl-C again' : 'send the signal again';
    say(`${signal}: stopping after the requests in flight (at most 10 s); ${again} to quit at once.`, { signal });
    interrupt.abort(signal);
  };
  // SIGHUP too (the terminal or SSH session closed, or a supervisor's reload): by default it would kill the process
  // on the spot, leaving the run `running` and its in-flight outcomes unrecorded.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  const code = await run(argv, {
    env: process.env,
    cwd: process.cwd(),
    streams: { stdout: process.stdout, stderr: process.stderr },
    now: () => new Date(),
    interrupt: interrupt.signal,
    stdin: process.stdin,
  });
  // A signal that arrived after the last send still ends the process as a shell expects.
  const exitCode = interrupt.signal.aborted && code === ExitCode.ok ? signalExitCode(interrupt.signal.reason) : code;
  // Let stdout drain (a large --json piped to a file) before exiting.
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(exitCode);
}
