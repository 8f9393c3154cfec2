import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, type TestContext } from 'vitest';
import { FakeGrowsurf, generateGrowsurfProgram } from '../fakes/growsurf.js';
import { readDeliveries } from '../support/backends.js';
import { BIN, ROOT, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServicesFor, type Services } from '../support/services.js';

/**
 * Issue 19 point 7: the deploy recipes run the CLI so that a scheduler's SIGTERM reaches it. Each recipe's exact
 * command line is read from the documentation (the block after its `recipe: NAME` marker), so the docs and this
 * test cannot drift, and run as its scheduler runs it: the cron line's command through `sh -c`, the workflow step's
 * script through GitHub's `bash -e`, the container's command array as it is. Mid-run, SIGTERM goes to the
 * outermost process; then no process of the run is left, the state records the run `interrupted`, and the lock
 * is free.
 */

/** Where the recipes live: docs/deploy.md once the docs are merged, docs-pending/ops.md until then. */
function recipeDocument(): string {
  for (const file of [join(ROOT, 'docs', 'deploy.md'), join(ROOT, 'docs-pending', 'ops.md')]) {
    if (existsSync(file) && readFileSync(file, 'utf8').includes('<!-- recipe: cron -->')) return readFileSync(file, 'utf8');
  }
  throw new Error('No document holds the recipes (a "<!-- recipe: cron -->" marker) in docs/deploy.md or docs-pending/ops.md.');
}

/** The fenced block right after `<!-- recipe: NAME -->`. */
function recipe(name: string): string {
  const match = new RegExp(`<!-- recipe: ${name} -->\\n\`\`\`[a-z]*\\n([\\s\\S]*?)\\n\`\`\``).exec(recipeDocument());
  if (!match) throw new Error(`No fenced block follows the "recipe: ${name}" marker.`);
  return match[1]!;
}

/** The lines under `key: |` (a YAML block scalar), dedented; `after` is a line the search starts below. */
function blockScalar(yaml: string, key: RegExp, after?: RegExp): string {
  const lines = yaml.split('\n');
  const start = after ? lines.findIndex((line) => after.test(line)) : 0;
  if (start < 0) throw new Error(`not found: ${after}`);
  const at = lines.findIndex((line, index) => index >= start && key.test(line));
  if (at < 0) throw new Error(`not found: ${key}`);
  const body: string[] = [];
  const indent = (line: string): number => line.length - line.trimStart().length;
  for (const line of lines.slice(at + 1)) {
    if (line.trim() !== '' && indent(line) <= indent(lines[at]!)) break;
    body.push(line);
  }
  const margin = Math.min(...body.filter((l) => l.trim() !== '').map(indent));
  return body.map((line) => line.slice(margin)).join('\n');
}

/** The variable names of the sync step's `env:` map (each gets a test value below; none may be left unset). */
function stepEnv(yaml: string): string[] {
  const env = blockScalar(yaml, /^\s+env:$/, /^\s+- name: sync$/);
  return env
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.split(':')[0]!.trim());
}

interface Launch {
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

interface Setup {
  /** The directory laid out as the tarball install is: node_modules/.bin/referral-sync → the built CLI. */
  install: string;
  state: string;
  services: Services;
  /** Every variable a recipe's environment holds, pointed at the fakes. */
  variables: Record<string, string>;
}

const PATH = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;

const RECIPES: { name: string; launch: (setup: Setup) => Launch }[] = [
  {
    name: 'cron',
    launch: (s) => {
      const line = recipe('cron')
        .split('\n')
        .find((l) => l.trim() !== '' && !l.startsWith('#'))!;
      // The five schedule fields, then the command cron gives to `sh -c`.
      const command = /^(?:\S+\s+){5}(.*)$/.exec(line)![1]!;
      const csv = writeProgram(s.install, 4000, 3, 'growsurf.csv');
      writeFileSync(join(s.install, '.env'), Object.entries(s.variables).map(([k, v]) => `export ${k}='${v}'`).join('\n') + '\n', { mode: 0o600 });
      return {
        command: 'sh',
        args: ['-c', command.replaceAll('/srv/referral-sync', s.install).replaceAll('/exports/growsurf.csv', csv)],
        cwd: s.install,
        // cron's own environment: next to nothing; the recipe's .env supplies the rest.
        env: { PATH, HOME: s.install },
      };
    },
  },
  {
    name: 'github-actions',
    launch: (s) => {
      const yaml = recipe('github-actions');
      const env: Record<string, string> = { PATH, HOME: s.install };
      for (const name of stepEnv(yaml)) {
        expect(s.variables[name], `the recipe's step sets ${name}; the test has no value for it`).toBeDefined();
        env[name] = s.variables[name]!;
      }
      // Where the fakes are (a real job reaches the real services at their default URLs).
      for (const name of ['SEGMENT_HOST', 'CUSTOMERIO_TRACK_URL', 'GROWSURF_API_URL']) env[name] = s.variables[name]!;
      // As GitHub runs a `run:` step on ubuntu: bash --noprofile --norc -eo pipefail {0}.
      return { command: 'bash', args: ['--noprofile', '--norc', '-eo', 'pipefail', '-c', blockScalar(yaml, /^\s+run: \|$/, /^\s+- name: sync$/)], cwd: s.install, env };
    },
  },
  {
    name: 'kubernetes',
    launch: (s) => {
      const yaml = recipe('kubernetes');
      const command = JSON.parse(/^\s+command: (\[.*\])$/m.exec(yaml)![1]!.replaceAll("'", '"')) as string[];
      const script = blockScalar(yaml, /^\s+- \|$/, /^\s+args:$/);
      expect(/^\s+workingDir: \/app$/m.test(yaml), 'the container runs in /app, where the image installed the CLI').toBe(true);
      // The container's command array as the runtime starts it: PID 1 of the pod is its first element.
      return { command: command[0]!, args: [...command.slice(1), script], cwd: s.install, env: { PATH, HOME: s.install, ...s.variables } };
    },
  },
];

/** Processes whose working directory is `dir`: the recipe's shell and the CLI both run there. */
function processesIn(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`) !== dir) continue;
      found.push(`${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim()}`);
    } catch {
      // Gone meanwhile, or not ours to look at.
    }
  }
  return found;
}

/** Polled, not timed: the test's own timeout is the only bound. Fails at once if the recipe ended first. */
async function until(condition: () => boolean, ended: () => boolean, what: string): Promise<void> {
  while (!condition()) {
    if (ended()) throw new Error(`the recipe ended before ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function setup(context: TestContext): Promise<Setup> {
  // Slow enough destinations that the run is still sending when the signal comes.
  const services = await startServicesFor(context.onTestFinished, { segment: { delayMs: 150 }, customerio: { delayMs: 150 } });
  const growsurf = new FakeGrowsurf('gs_key_recipes_7d2', generateGrowsurfProgram(3000, 8, { campaignId: 'camp_recipes' }));
  const growsurfUrl = await growsurf.start();
  context.onTestFinished(() => growsurf.stop());
  const install = tempDir('referral-sync-recipe-');
  mkdirSync(join(install, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(BIN, join(install, 'node_modules', '.bin', 'referral-sync'));
  const state = join(install, 'state.db');
  return {
    install,
    state,
    services,
    variables: {
      ...services.env,
      GROWSURF_API_KEY: 'gs_key_recipes_7d2',
      GROWSURF_CAMPAIGN_ID: 'camp_recipes',
      GROWSURF_API_URL: `${growsurfUrl}/v2`,
      REFERRAL_SYNC_STATE: state,
    },
  };
}

describe('deploy recipes stop cleanly on SIGTERM', () => {
  it.for(RECIPES)('$name: SIGTERM to the outermost process leaves no process, the run interrupted, the lock free', { timeout: 180_000 }, async (r, context) => {
    const s = await setup(context);
    const launch = r.launch(s);
    const outer = spawn(launch.command, launch.args, { cwd: launch.cwd, env: launch.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    outer.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    outer.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let code: number | null | undefined;
    let signal: NodeJS.Signals | null = null;
    const exited = new Promise<void>((resolve) => outer.on('close', (c, sig) => ((code = c), (signal = sig), resolve())));
    context.onTestFinished(() => {
      // A failed assertion must not leave the run behind.
      if (code === undefined) outer.kill('SIGKILL');
      for (const line of processesIn(s.install)) process.kill(Number(line.split(':')[0]), 'SIGKILL');
    });
    const sent = (): number => s.services.segment.arrivals.length + s.services.customerio.eventArrivals.length + s.services.customerio.identifyArrivals.length;
    // Mid-run: its lock taken, its run recorded, deliveries arriving.
    await until(() => sent() > 0, () => code !== undefined, `anything was sent:\n${output}`);
    expect(processesIn(s.install).some((line) => line.includes('referral-sync')), processesIn(s.install).join('\n')).toBe(true);
    expect((await readDeliveries(s.state)).lastRunStatus).toBe('running');

    outer.kill('SIGTERM');
    await exited;
    const said = `exit ${code} (${signal})\n${output}${existsSync(join(s.install, 'sync.log')) ? readFileSync(join(s.install, 'sync.log'), 'utf8') : ''}`;
    // The moment the outermost process is gone, nothing of the run is left: the CLI heard the signal and finished.
    expect(processesIn(s.install), said).toEqual([]);
    expect(code, said).toBe(143);
    expect((await readDeliveries(s.state)).lastRunStatus, said).toBe('interrupted');
    const db = new Database(s.state, { readonly: true, fileMustExist: true });
    try {
      expect(db.prepare('SELECT program_id, pid FROM lock').all(), said).toEqual([]);
    } finally {
      db.close();
    }
    // The CLI itself heard the signal, and said so (cron's line sends its output to sync.log).
    expect(said).toContain('SIGTERM: stopping after the requests in flight');
  });
});
