import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Issue 18: the house rules of DESIGN.md §2 hold by construction. The import graph (no circles, type-only imports
 * included; plan/ does no I/O; sources and destinations do not know each other; the CLI's rooms) is checked by
 * dependency-cruiser with `.dependency-cruiser.cjs`. What a graph cannot see, a module reading `process.env` or
 * calling `process.exit` through the global, is found in the code's syntax tree below.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
  cycle?: { name: string }[];
}

async function cruise(cwd: string, flags: string[] = []): Promise<Violation[]> {
  const { stdout } = await promisify(execFile)(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', 'json', ...flags], {
    cwd,
    maxBuffer: 64 * 1024 * 1024,
  }).catch((error: { stdout?: string }) => {
    // depcruise exits non-zero when it finds violations; its JSON is on stdout all the same.
    if (typeof error.stdout === 'string' && error.stdout.startsWith('{')) return { stdout: error.stdout };
    throw error;
  });
  return (JSON.parse(stdout) as { summary: { violations: Violation[] } }).summary.violations;
}

function describeViolation(v: Violation): string {
  return `${v.rule.name}: ${v.from} → ${v.cycle ? v.cycle.map((step) => step.name).join(' → ') : v.to}`;
}

describe('the import graph keeps the house rules', () => {
  it('src/ has no import circle and breaks no rule of .dependency-cruiser.cjs', async () => {
    const violations = await cruise(ROOT);
    expect(violations.map(describeViolation)).toEqual([]);
  });

  /**
   * One small module tree per rule, each breaking exactly that rule, cruised with the project's own config: a rule
   * that stopped matching (a renamed folder, a typo in a pattern) fails here instead of passing quietly.
   */
  const BREAKS: { rule: string; files: Record<string, string> }[] = [
    {
      rule: 'no-circular',
      files: {
        // Through types alone, as the queue's and the store's were.
        'src/plan/render.ts': "import type { Summary } from './summary.js';\nexport type Rendered = { of: Summary };\n",
        'src/plan/summary.ts': "import type { Rendered } from './render.js';\nexport type Summary = { shown?: Rendered };\n",
      },
    },
    { rule: 'plan-does-no-io', files: { 'src/plan/planner.ts': "import { readFileSync } from 'node:fs';\nexport const read = readFileSync;\n" } },
    { rule: 'plan-does-no-io', files: { 'src/plan/accounts.ts': "import type { Store } from '../state/store2.js';\nexport type S = Store;\n", 'src/state/store2.ts': 'export type Store = { x: 1 };\n' } },
    { rule: 'model-does-no-io', files: { 'src/model/traits.ts': "import { request } from 'node:https';\nexport const r = request;\n" } },
    { rule: 'sources-know-no-destination', files: { 'src/sources/csv/reader.ts': "import { s } from '../../destinations/segment.js';\nexport const t = s;\n", 'src/destinations/segment.ts': 'export const s = 1;\n' } },
    { rule: 'sources-are-separate', files: { 'src/sources/cello/csv.ts': "import { g } from '../growsurf/csv.js';\nexport const c = g;\n", 'src/sources/growsurf/csv.ts': 'export const g = 1;\n' } },
    { rule: 'destinations-know-no-source', files: { 'src/destinations/customerio.ts': "import { c } from '../sources/cello.js';\nexport const t = c;\n", 'src/sources/cello.ts': 'export const c = 1;\n' } },
    { rule: 'only-cli-imports-cli', files: { 'src/apply/engine.ts': "import type { Output } from '../cli/output/output.js';\nexport type O = Output;\n", 'src/cli/output/output.ts': 'export type Output = { x: 1 };\n' } },
    { rule: 'only-cli-imports-process', files: { 'src/state/open.ts': "import { env } from 'node:process';\nexport const e = env;\n" } },
    { rule: 'wiring-imports-no-command', files: { 'src/cli/wiring/settings.ts': "import { d } from '../commands/diff.js';\nexport const s = d;\n", 'src/cli/commands/diff.ts': 'export const d = 1;\n' } },
    { rule: 'output-imports-nothing-of-the-cli', files: { 'src/cli/output/progress.ts': "import { w } from '../wiring/env.js';\nexport const p = w;\n", 'src/cli/wiring/env.ts': 'export const w = 1;\n' } },
    { rule: 'steps-import-no-command', files: { 'src/cli/run/outcome.ts': "import { r } from '../commands/retry.js';\nexport const o = r;\n", 'src/cli/commands/retry.ts': 'export const r = 1;\n' } },
    { rule: 'commands-import-no-command', files: { 'src/cli/commands/status.ts': "import { u } from './unlock.js';\nexport const s = u;\n", 'src/cli/commands/unlock.ts': 'export const u = 1;\n' } },
    { rule: 'state-is-below-the-run', files: { 'src/state/copy.ts': "import { q } from '../apply/queue2.js';\nexport const c = q;\n", 'src/apply/queue2.ts': 'export const q = 1;\n' } },
    { rule: 'backends-are-separate', files: { 'src/state/postgres/store.ts': "import { e } from '../sqlite/empty.js';\nexport const p = e;\n", 'src/state/sqlite/empty.ts': 'export const e = 1;\n' } },
    { rule: 'databases-only-in-state', files: { 'src/apply/sender.ts': "import Database from 'better-sqlite3';\nexport const D = Database;\n" } },
    { rule: 'network-only-in-http-and-destinations', files: { 'src/sources/growsurf/api.ts': "import { request } from 'undici';\nexport const r = request;\n" } },
  ];

  it('a module tree that breaks each rule fails the check on exactly that rule', async () => {
    // One tree holding every case (their files differ), cruised once with the project's own config.
    const scratch = mkdtempSync(join(tmpdir(), 'referral-sync-house-'));
    try {
      const caseOf = new Map<string, number>();
      BREAKS.forEach((b, index) => {
        for (const [path, text] of Object.entries(b.files)) {
          expect(caseOf.has(path), `two cases write ${path}`).toBe(false);
          caseOf.set(path, index);
          mkdirSync(dirname(join(scratch, path)), { recursive: true });
          writeFileSync(join(scratch, path), text);
        }
      });
      cpSync(join(ROOT, 'tsconfig.json'), join(scratch, 'tsconfig.json'));
      // The packages the rules name resolve as in the project .
      symlinkSync(join(ROOT, 'node_modules'), join(scratch, 'node_modules'), 'dir');
      const violations = await cruise(scratch);
      const caught = BREAKS.map((b, index) => ({
        rule: b.rule,
        files: Object.keys(b.files),
        found: violations.filter((v) => caseOf.get(v.from) === index).map((v) => v.rule.name),
      }));
      // Each tree is caught, by its rule and by no other.
      expect(caught.map((c) => ({ rule: c.rule, files: c.files, found: [...new Set(c.found)] }))).toEqual(caught.map((c) => ({ rule: c.rule, files: c.files, found: [c.rule] })));
      expect(violations.filter((v) => !caseOf.has(v.from)).map(describeViolation)).toEqual([]);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

/** Where a module touches `process.env`, `process.exit` or `process.exitCode`, however it is spelled. */
function processUses(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const watched = new Set(['env', 'exit', 'exitCode']);
  const isProcess = (node: ts.Node): boolean =>
    (ts.isIdentifier(node) && node.text === 'process') ||
    (ts.isPropertyAccessExpression(node) && node.name.text === 'process' && ts.isIdentifier(node.expression) && node.expression.text === 'globalThis');
  const at = (node: ts.Node, what: string): string => `${fileName}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1} process.${what}`;
  const visit = (node: ts.Node): void => {
    if (ts.isPropertyAccessExpression(node) && isProcess(node.expression) && watched.has(node.name.text)) found.push(at(node, node.name.text));
    if (ts.isElementAccessExpression(node) && isProcess(node.expression) && ts.isStringLiteralLike(node.argumentExpression) && watched.has(node.argumentExpression.text)) {
      found.push(at(node, node.argumentExpression.text));
    }
    // const { env } = process;
    if (ts.isVariableDeclaration(node) && node.initializer && isProcess(node.initializer) && ts.isObjectBindingPattern(node.name)) {
      for (const element of node.name.elements) {
        const name = (element.propertyName ?? element.name).getText(source);
        if (watched.has(name)) found.push(at(element, name));
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('only cli/ reads the environment or ends the process', () => {
  it('no module outside src/cli/ touches process.env, process.exit or process.exitCode', () => {
    const uses = sourceFiles(join(ROOT, 'src'))
      .map((path) => relative(ROOT, path))
      .filter((path) => !path.startsWith('src/cli/'))
      .flatMap((path) => processUses(path, readFileSync(join(ROOT, path), 'utf8')));
    expect(uses).toEqual([]);
  });

  it('within cli/, only main.ts ends the process', () => {
    const exits = sourceFiles(join(ROOT, 'src/cli'))
      .map((path) => relative(ROOT, path))
      .flatMap((path) => processUses(path, readFileSync(join(ROOT, path), 'utf8')))
      .filter((use) => /process\.exit/.test(use))
      .map((use) => use.split(':')[0]);
    expect([...new Set(exits)]).toEqual(['src/cli/main.ts']);
  });

  it.each([
    ['const key = process.env.SEGMENT_WRITE_KEY;', ['process.env']],
    ["const key = process['env']['X'];", ['process.env']],
    ['const { env: e, exit } = process;', ['process.env', 'process.exit']],
    ['globalThis.process.exit(1);', ['process.exit']],
    ['process.exitCode = 2;', ['process.exitCode']],
    ['// process.env is read by cli/ only\nconst s = "process.exit(1)";', []],
    ['const pid = process.pid; process.on("exit", () => undefined);', []],
  ] as const)('finds the uses in %j', (code, expected) => {
    expect(processUses('x.ts', code).map((use) => use.replace(/^x\.ts:\d+ /, ''))).toEqual(expected);
  });
});
