import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * Every problem of a run (invalid rows, warnings), kept in full for `--json` without holding them all in
 * memory: the first `memoryLimit` stay in memory; past that, all of them go to a temporary file (one JSON object
 * a line) that `entries()` streams back. `close()` deletes the file.
 */
export class ProblemLog {
  count = 0;
  private memory: string[] = [];
  private spill: { dir: string; path: string; fd: number } | undefined;
  private pending = '';

  constructor(private readonly memoryLimit = 1000) {}

  add(entry: Record<string, unknown>): void {
    const line = JSON.stringify(entry);
    this.count += 1;
    if (!this.spill && this.memory.length < this.memoryLimit) {
      this.memory.push(line);
      return;
    }
    if (!this.spill) {
      const dir = mkdtempSync(join(tmpdir(), 'referral-sync-problems-'));
      const path = join(dir, 'problems.jsonl');
      this.spill = { dir, path, fd: openSync(path, 'w', 0o600) };
      this.pending = this.memory.map((l) => `${l}\n`).join('');
      this.memory = [];
    }
    this.pending += `${line}\n`;
    if (this.pending.length >= 256 * 1024) this.flush();
  }

  /** Every entry in the order added; can be iterated once the log is complete. */
  async *entries(): AsyncGenerator<unknown> {
    if (!this.spill) {
      for (const line of this.memory) yield JSON.parse(line) as unknown;
      return;
    }
    this.flush();
    const lines = createInterface({ input: createReadStream(this.spill.path, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of lines) if (line !== '') yield JSON.parse(line) as unknown;
  }

  close(): void {
    if (!this.spill) return;
    closeSync(this.spill.fd);
    rmSync(this.spill.dir, { recursive: true, force: true });
    this.spill = undefined;
  }

  private flush(): void {
    if (!this.spill || this.pending === '') return;
    writeSync(this.spill.fd, this.pending);
    this.pending = '';
  }
}
