import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { POSTGRES_SKIP_NOTE, POSTGRES_TEST_URL } from './backends.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Builds dist/ unless it is already built from the sources as they are: every src/**\/*.ts has its dist/**\/*.js,
 * written after it and after the tsconfig files. `npm ci` has just built it (`prepare`), and so has the previous
 * run when nothing changed since; any edit, checkout or new file makes the check fail and tsc run again, so the
 * e2e tests never test a stale dist/.
 */
export default function setup(): void {
  // Once per run, not once per file: the PostgreSQL cases are left out without a server to run them against.
  if (!POSTGRES_TEST_URL) console.log(`\n${POSTGRES_SKIP_NOTE}\n`);
  if (builtFromCurrentSources()) return;
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}

function builtFromCurrentSources(): boolean {
  const configs = Math.max(...['tsconfig.json', 'tsconfig.build.json', 'package.json'].map((file) => statSync(join(root, file)).mtimeMs));
  for (const source of files(join(root, 'src'))) {
    if (!source.endsWith('.ts') || source.endsWith('.d.ts')) continue;
    const output = join(root, 'dist', relative(join(root, 'src'), source)).replace(/\.ts$/, '.js');
    if (!existsSync(output)) return false;
    const built = statSync(output).mtimeMs;
    if (built < statSync(source).mtimeMs || built < configs) return false;
  }
  return true;
}

function* files(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}
