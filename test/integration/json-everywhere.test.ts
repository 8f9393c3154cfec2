import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, runCliInProcess, tempDir } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';

let services: Services;
let cwd: string;
const file = join(FIXTURES, 'growsurf', 'participants.csv');

beforeAll(async () => {
  services = await startServices();
  cwd = tempDir();
  // A state to read, copy and retry from.
  expect((await runCliInProcess(['sync', '--file', file], { cwd, env: services.env })).code).toBe(0);
});
afterAll(async () => {
  await services.stop();
});

/** Every command whose help documents --json, with arguments that make it run, and the `command` its JSON names. */
const COMMANDS: readonly (readonly [string, () => string[], string])[] = [
  ['diff', () => ['diff', '--file', file], 'diff'],
  ['sync', () => ['sync', '--file', file], 'sync'],
  ['backfill', () => ['backfill', '--file', file], 'backfill'],
  ['retry', () => ['retry'], 'retry'],
  ['check', () => ['check'], 'check'],
  ['status', () => ['status'], 'status'],
  ['state copy', () => ['state', 'copy', '--from', join(cwd, '.referral-sync', 'state.db'), '--to', join(tempDir(), 'copy.db')], 'state copy'],
];

describe('every command that documents --json accepts it and prints one JSON document', () => {
  it.each(COMMANDS)('%s --json', async (name, args, command) => {
    const help = await runCliInProcess([...name.split(' '), '--help'], { cwd });
    expect(help.stdout).toMatch(/^ {2}--json +print/m);
    const result = await runCliInProcess([...args(), '--json'], { cwd, env: services.env });
    expect(result.code, result.stderr).toBe(0);
    // One document: it parses whole, and it is an object naming its command.
    const parsed = JSON.parse(result.stdout) as { command?: string; exitCode?: number };
    if (name !== 'diff' && name !== 'check') expect(parsed.command).toBe(command);
    expect(typeof parsed).toBe('object');
    // Pretty-printed for people, and --log-format json gives the same document on one line.
    const oneLine = await runCliInProcess([...args(), '--json', '--log-format', 'json'], { cwd, env: services.env });
    expect(oneLine.code, oneLine.stderr).toBe(0);
    expect(oneLine.stdout.trim().split('\n')).toHaveLength(1);
    expect(typeof JSON.parse(oneLine.stdout)).toBe('object');
  });

  it('unlock documents no --json and refuses it (exit 64)', async () => {
    const help = await runCliInProcess(['unlock', '--help'], { cwd });
    expect(help.stdout).not.toContain('--json');
    const result = await runCliInProcess(['unlock', '--json'], { cwd });
    expect(result.code).toBe(64);
    expect(result.stderr).toContain("unknown option '--json'");
  });
});
