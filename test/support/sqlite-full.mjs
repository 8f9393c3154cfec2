// A full disk for the SQLite state where the test cannot mount a small one (test/support/disk.ts needs root):
// loaded into a CLI child with `--import` (NODE_OPTIONS). From the moment the file named by
// REFERRAL_SYNC_TEST_DISK_FULL exists, each SQLite connection of the process that writes is capped at the pages it
// holds (PRAGMA max_page_count), so the next write that needs one more page fails with SQLITE_FULL ("database or
// disk is full"), as on a disk with no room left. Nothing of the CLI is changed; the next run, without it, has room.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Database = require('better-sqlite3');
const marker = process.env.REFERRAL_SYNC_TEST_DISK_FULL;
const capped = new WeakSet();
const prepare = Database.prototype.prepare;

Database.prototype.prepare = function (...args) {
  if (marker && !this.readonly && !capped.has(this) && existsSync(marker)) {
    capped.add(this);
    this.pragma(`max_page_count = ${this.pragma('page_count', { simple: true })}`);
  }
  return prepare.apply(this, args);
};
