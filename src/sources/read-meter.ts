import { statSync } from 'node:fs';
import type { ReadProgress, ReadUnit } from './source.js';

/** A source's count of its way through the read under way, behind `Source.readProgress`. */
export class ReadMeter {
  private current: ReadProgress;

  constructor(unit: ReadUnit) {
    this.current = { done: 0, total: undefined, unit };
  }

  /** A new read (or a new step of one, in another unit) starts from nothing. */
  start(unit: ReadUnit, total?: number): void {
    this.current = { done: 0, total, unit };
  }

  add(amount: number): void {
    this.current.done += amount;
  }

  setTotal(total: number): void {
    this.current.total = total;
  }

  /** A copy: the display keeps what it was shown while the source reads on. */
  progress(): ReadProgress {
    return { ...this.current };
  }
}

/** The bytes of these files, for a read's total; a file that cannot be read counts 0 (its read fails with a clear message). */
export function totalBytes(paths: readonly string[]): number {
  let total = 0;
  for (const path of paths) {
    try {
      total += statSync(path).size;
    } catch {
      // Reported by the read itself, with a hint; here it only leaves the total short.
    }
  }
  return total;
}
