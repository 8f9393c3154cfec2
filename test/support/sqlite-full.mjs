// A full disk for the SQLite state where the test cannot mount a small one (test/support/disk.ts needs root):
// loaded into a CLI child with `--import` (NODE_OPTIONS). From the moment the file named by
// REFERRAL_SYNC_TEST_DISK_FULL exists, every statement of the process that writes rows fails as SQLite fails it on
// a disk with no room left: better-sqlite3's SqliteError, code SQLITE_FULL, "database or disk is full". (A cap
// such as PRAGMA max_page_count would not do: a run's writes mostly reuse the pages its queue frees.) Nothing of
// the CLI is changed; the next run, without it, has room.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');
const marker = process.env.REFERRAL_SYNC_TEST_DISK_FULL;
// Statements are prepared once and run many times: the check goes where every write passes.
const probe = new Database(':memory:');
const Statement = Object.getPrototypeOf(probe.prepare('SELECT 1'));
probe.close();
const run = Statement.run;

Statement.run = function (...args) {
  if (marker && /^\s*(INSERT|UPDATE|DELETE|REPLACE)\b/i.test(this.source) && existsSync(marker)) {
    throw new Database.SqliteError('database or disk is full', 'SQLITE_FULL');
  }
  return run.apply(this, args);
};
