import type { SourceRecord } from '../model/participant.js';
import type { LookupCache } from '../state/store.js';
import type { InputFile } from './csv.js';

/** A source of participants. It knows nothing of destinations; it may be read more than once if it says so. */
export interface Source {
  /** One line for people: what is being read. */
  description: string;
  /** Whether `records()` can be called again to read the same data (files can; a paged API is costly). */
  rereadable: boolean;
  records(): AsyncIterable<SourceRecord>;
  /** Releases connections, if the source holds any. */
  close?(): Promise<void>;
  /** Hands the source the state's lookup cache (sources that look things up keep answers between runs). */
  useCache?(cache: LookupCache): void;
  /** File sources: each file read so far and how it was decoded (encoding, detected or asked), for the summary. */
  inputs?(): readonly InputFile[];
}
