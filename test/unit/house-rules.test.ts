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
    { rule: 'plan-does-no-io', files: { 'src/plan/summary2.ts': "import { load } from '../config/load.js';\nexport const l = load;\n", 'src/config/load.ts': 'export const load = 1;\n' } },
    { rule: 'model-does-no-io', files: { 'src/model/traits.ts': "import { readFileSync } from 'node:fs';\nexport const r = readFileSync;\n" } },
    { rule: 'sources-know-no-destination', files: { 'src/sources/csv/reader.ts': "import { s } from '../../destinations/segment.js';\nexport const t = s;\n", 'src/destinations/segment.ts': 'export const s = 1;\n' } },
    { rule: 'sources-are-separate', files: { 'src/sources/cello/csv.ts': "import { g } from '../growsurf/csv.js';\nexport const c = g;\n", 'src/sources/growsurf/csv.ts': 'export const g = 1;\n' } },
    { rule: 'sources-are-separate', files: { 'src/sources/rewardful/api.ts': "import { g2 } from '../growsurf/api.js';\nexport const r = g2;\n", 'src/sources/growsurf/api.ts': 'export const g2 = 1;\n' } },
    { rule: 'sources-are-separate', files: { 'src/sources/csv/known-exports.ts': "import { c2 } from '../cello/api.js';\nexport const k = c2;\n", 'src/sources/cello/api.ts': 'export const c2 = 1;\n' } },
    { rule: 'shared-source-code-knows-no-source', files: { 'src/sources/source.ts': "import { g3 } from './growsurf/paging.js';\nexport const s = g3;\n", 'src/sources/growsurf/paging.ts': 'export const g3 = 1;\n' } },
    { rule: 'destinations-know-no-source', files: { 'src/destinations/customerio.ts': "import { c } from '../sources/cello.js';\nexport const t = c;\n", 'src/sources/cello.ts': 'export const c = 1;\n' } },
    { rule: 'only-cli-imports-cli', files: { 'src/apply/engine.ts': "import type { Output } from '../cli/output/output.js';\nexport type O = Output;\n", 'src/cli/output/output.ts': 'export type Output = { x: 1 };\n' } },
    { rule: 'only-cli-imports-process', files: { 'src/state/open.ts': "import { env } from 'node:process';\nexport const e = env;\n" } },
    { rule: 'wiring-imports-no-command', files: { 'src/cli/wiring/settings.ts': "import { d } from '../commands/diff.js';\nexport const s = d;\n", 'src/cli/commands/diff.ts': 'export const d = 1;\n' } },
    { rule: 'output-imports-nothing-of-the-cli', files: { 'src/cli/output/progress.ts': "import { w } from '../wiring/env.js';\nexport const p = w;\n", 'src/cli/wiring/env.ts': 'export const w = 1;\n' } },
    { rule: 'steps-import-no-command', files: { 'src/cli/run/outcome.ts': "import { r } from '../commands/retry.js';\nexport const o = r;\n", 'src/cli/commands/retry.ts': 'export const r = 1;\n' } },
    { rule: 'commands-import-no-command', files: { 'src/cli/commands/status.ts': "import { u } from './unlock.js';\nexport const s = u;\n", 'src/cli/commands/unlock.ts': 'export const u = 1;\n' } },
    { rule: 'commands-import-no-command', files: { 'src/cli/commands/check.ts': "import { d } from './diff.js';\nexport const c = d;\n" } },
    { rule: 'sync-imports-only-diff', files: { 'src/cli/commands/sync.ts': "import { r } from './retry.js';\nexport const s = r;\n" } },
    { rule: 'state-is-below-the-run', files: { 'src/state/copy.ts': "import { q } from '../apply/queue2.js';\nexport const c = q;\n", 'src/apply/queue2.ts': 'export const q = 1;\n' } },
    { rule: 'backends-are-separate', files: { 'src/state/postgres/store.ts': "import { e } from '../sqlite/empty.js';\nexport const p = e;\n", 'src/state/sqlite/empty.ts': 'export const e = 1;\n' } },
    { rule: 'databases-only-in-state', files: { 'src/apply/sender.ts': "import Database from 'better-sqlite3';\nexport const D = Database;\n" } },
    { rule: 'network-only-in-http-and-destinations', files: { 'src/sources/paging.ts': "import { get } from 'node:https';\nexport const g = get;\n" } },
    { rule: 'no-require-outside-http', files: { 'src/sources/read-meter.ts': "import { createRequire } from 'node:module';\nexport const r = createRequire;\n" } },
    { rule: 'network-only-in-http-and-destinations', files: { 'src/sources/growsurf/api3.ts': "import { request } from 'undici';\nexport const r = request;\n" } },
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

/** What a module may use of the global `process` outside cli/: facts about this process, and a liveness probe. */
const PROCESS_FACTS = new Set(['pid', 'version', 'versions', 'platform', 'arch', 'hrtime', 'memoryUsage', 'cpuUsage', 'uptime']);

/**
 * What the import graph cannot see, found in a module's syntax tree:
 * - `process` used for anything but a fact about this process (`process.pid`, `process.version`, …) or a liveness
 *   probe (`process.kill(pid, 0)`), however it is spelled: `process.env`, `process['env']`, `const { env } =
 *   process`, `const p = process`, `globalThis.process`; outside cli/ that is reading the environment, ending or
 *   signalling a process;
 * - the global `fetch` (outside http/ and destinations/): a request the sources' client does not pace or judge;
 * - `import()` of a computed path: a dependency the graph cannot check.
 * Returns `file:line what` for each, with `exits` (process.exit, process.exitCode) told apart for cli/'s own rule.
 */
function hiddenUses(fileName: string, text: string): { use: string; exit: boolean }[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: { use: string; exit: boolean }[] = [];
  const at = (node: ts.Node, what: string, exit = false): void => {
    found.push({ use: `${fileName}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1} ${what}`, exit });
  };
  /** `(globalThis as any)` is globalThis: parentheses, casts and `!` change nothing at run time. */
  const unwrap = (node: ts.Node): ts.Node =>
    ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isNonNullExpression(node) || ts.isTypeAssertionExpression(node) || ts.isSatisfiesExpression(node) ? unwrap(node.expression) : node;
  const isGlobalThis = (node: ts.Node): boolean => {
    const inner = unwrap(node);
    return ts.isIdentifier(inner) && inner.text === 'globalThis';
  };
  /** `process`, `globalThis.process` or `globalThis['process']` as an expression. */
  const isProcessRef = (node: ts.Node): boolean =>
    (ts.isIdentifier(node) && node.text === 'process' && !isDeclarationName(node)) ||
    (ts.isPropertyAccessExpression(node) && node.name.text === 'process' && isGlobalThis(node.expression)) ||
    (ts.isElementAccessExpression(node) && isGlobalThis(node.expression) && ts.isStringLiteralLike(node.argumentExpression) && node.argumentExpression.text === 'process');
  const isDeclarationName = (node: ts.Identifier): boolean => {
    const parent = node.parent;
    return (
      (ts.isPropertyAccessExpression(parent) && parent.name === node) ||
      (ts.isPropertyAssignment(parent) && parent.name === node) ||
      (ts.isBindingElement(parent) && parent.propertyName === node) ||
      ((ts.isVariableDeclaration(parent) || ts.isParameter(parent) || ts.isFunctionDeclaration(parent) || ts.isPropertySignature(parent) || ts.isPropertyDeclaration(parent) || ts.isMethodDeclaration(parent) || ts.isMethodSignature(parent)) && parent.name === node) ||
      ts.isQualifiedName(parent) ||
      ts.isTypeReferenceNode(parent)
    );
  };
  const propertyName = (node: ts.Node): string | undefined =>
    ts.isPropertyAccessExpression(node) ? node.name.text : ts.isElementAccessExpression(node) && ts.isStringLiteralLike(node.argumentExpression) ? node.argumentExpression.text : undefined;
  const visit = (node: ts.Node): void => {
    // globalThis.process is one reference: look at it whole, not at its parts.
    if (isProcessRef(node) && !(ts.isIdentifier(node) && ts.isPropertyAccessExpression(node.parent) && node.parent.name === node)) {
      const access = node.parent;
      const name = access && (ts.isPropertyAccessExpression(access) || ts.isElementAccessExpression(access)) && access.expression === node ? propertyName(access) : undefined;
      const call = name !== undefined && ts.isCallExpression(access.parent) && access.parent.expression === access ? access.parent : undefined;
      const probe = name === 'kill' && call !== undefined && call.arguments.length === 2 && ts.isNumericLiteral(call.arguments[1]!) && call.arguments[1].text === '0';
      if (name === undefined || (!PROCESS_FACTS.has(name) && !probe)) at(node, `process${name === undefined ? '' : `.${name}`}`, name === 'exit' || name === 'exitCode');
      return;
    }
    if (ts.isIdentifier(node) && node.text === 'fetch' && !isDeclarationName(node)) at(node, 'global fetch');
    if (ts.isPropertyAccessExpression(node) && isGlobalThis(node.expression) && node.name.text === 'fetch') at(node, 'global fetch');
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && !(node.arguments[0] && ts.isStringLiteralLike(node.arguments[0]))) at(node, 'import() of a computed path');
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

function usesIn(dir: string): { file: string; use: string; exit: boolean }[] {
  return sourceFiles(join(ROOT, dir)).flatMap((path) => {
    const file = relative(ROOT, path);
    return hiddenUses(file, readFileSync(path, 'utf8')).map((use) => ({ file, ...use }));
  });
}

describe('what the import graph cannot see', () => {
  it('outside src/cli/, no module reads the environment, ends or signals a process, fetches on its own or imports a computed path', () => {
    const uses = usesIn('src')
      .filter(({ file }) => !file.startsWith('src/cli/'))
      // http/ and destinations/ are where requests are made.
      .filter(({ file, use }) => !(/^src\/(http|destinations)\//.test(file) && use.endsWith('global fetch')))
      .map(({ use }) => use);
    expect(uses).toEqual([]);
  });

  it('within cli/, only main.ts ends the process, and nothing fetches or imports a computed path', () => {
    const uses = usesIn('src/cli');
    expect([...new Set(uses.filter((u) => u.exit).map((u) => u.file))]).toEqual(['src/cli/main.ts']);
    expect(uses.filter((u) => /global fetch|computed path/.test(u.use)).map((u) => u.use)).toEqual([]);
  });

  it.each([
    ['const key = process.env.SEGMENT_WRITE_KEY;', ['process.env']],
    ["const key = process['env']['X'];", ['process.env']],
    ['const { env: e, exit } = process;', ['process']],
    ['const p = process; p.env.X;', ['process']],
    ['globalThis.process.exit(1);', ['process.exit']],
    ["(globalThis as any)['process'].env.X;", ['process.env']],
    ['process.exitCode = 2;', ['process.exitCode']],
    ["process.kill(process.pid, 'SIGKILL');", ['process.kill']],
    ["process.on('exit', () => undefined);", ['process.on']],
    ["await fetch('https://example.com');", ['global fetch']],
    ["await globalThis.fetch('https://example.com');", ['global fetch']],
    ['const m = await import(path);', ['import() of a computed path']],
    // Allowed: facts about this process, a liveness probe, a method named fetch, a literal import, mentions.
    ['const pid = process.pid; const v = process.version; const alive = process.kill(pid, 0);', []],
    ['const page = await listing.fetch(cursor); interface L { fetch(c: string): void }', []],
    ["const m = await import('./x.js');", []],
    ['// process.env is read by cli/ only\nconst s = "process.exit(1) and fetch()";', []],
  ] as const)('%s', (code, expected) => {
    expect(hiddenUses('x.ts', code).map(({ use }) => use.replace(/^x\.ts:\d+ /, ''))).toEqual(expected);
  });
});
