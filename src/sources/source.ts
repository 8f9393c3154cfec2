import type { SourceRecord } from '../model/participant.js';

/** A source of participants. It knows nothing of destinations; it may be read more than once if it says so. */
export interface Source {
  /** One line for people: what is being read. */
  description: string;
  /** Whether `records()` can be called again to read the same data (files can; a paged API is costly). */
  rereadable: boolean;
  records(): AsyncIterable<SourceRecord>;
  /** Releases connections, if the source holds any. */
  close?(): Promise<void>;
}
