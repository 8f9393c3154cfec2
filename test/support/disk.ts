import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A small file system a test can fill up mid-run and free again: a tmpfs of its own, when this process may mount
 * one (root on Linux, as in the project's container). Nothing else shares it, so "the disk is full" is real: a
 * write fails with ENOSPC, which SQLite reports as SQLITE_FULL.
 */
export interface SmallDisk {
  dir: string;
  /** Takes every free byte left, with a file of its own. */
  fill(): void;
  /** Gives it back. */
  free(): void;
  /** Unmounts it (lazily, should a process still hold a file there) and removes the mount point. */
  dispose(): void;
}

/**
 * Mounts a tmpfs of `megabytes`; undefined when mounting is not allowed here. For this process's own files only:
 * never a shared server's (a PostgreSQL tablespace that vanishes under its checkpointer makes the server PANIC).
 */
export function mountSmallDisk(megabytes: number): SmallDisk | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'referral-sync-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m,mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  const filler = join(dir, 'filler');
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'a');
      try {
        // Large pieces first, then page-sized ones: the last free pages are taken too.
        for (const size of [1 << 20, 1 << 16, 1 << 12]) {
          const block = Buffer.alloc(size);
          for (;;) {
            try {
              writeSync(fd, block);
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw error;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    dispose() {
      try {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // Left for the machine's tmp cleaning: a failed unmount must not fail the test that used it.
      }
    },
  };
}
