import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { POSTGRES_SKIP_NOTE, POSTGRES_TEST_URL } from './backends.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  // Once per run, not once per file: the PostgreSQL cases are left out without a server to run them against.
  if (!POSTGRES_TEST_URL) console.log(`\n${POSTGRES_SKIP_NOTE}\n`);
}
