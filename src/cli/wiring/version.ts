import { readFileSync } from 'node:fs';

/** This referral-sync's version (package.json): `--version`, and what a plan file records and checks. */
export function toolVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
