import type { SourceRecord } from '../model/participant.js';
import type { LookupCache } from '../state/store.js';
import type { InputFile } from './csv/reader.js';

/** A source of participants. It knows nothing of destinations; it may be read more than once if it says so. */
export interface Source {
  /** One line for people: what is being read. */
  description: string;
  /** Whether `records()` can be called again to read the same data (files can; a paged API is costly). */
  rereadable: boolean;
  /** Reads only part of the program (`sync --quick`): totals over all participants cannot be computed from it. */
  partial?: boolean;
  records(): AsyncIterable<SourceRecord>;
  /** Releases connections, if the source holds any. */
  close?(): Promise<void>;
  /** Hands the source the state's lookup cache (sources that look things up keep answers between runs). */
  useCache?(cache: LookupCache): void;
  /** File sources: each file read so far and how it was decoded (encoding, detected or asked), for the summary. */
  inputs?(): readonly InputFile[];
  /** Sources that look things up (Cello --enrich): how many lookups, how long, at what rate; for the summary. */
  lookups?(): LookupReport | undefined;
  /**
   * How far the read under way (the latest `records()`) has come, in whatever the source can measure; polled by
   * the progress display, so it must be cheap. Each `records()` starts it over.
   */
  readProgress?(): ReadProgress;
}

/**
 * What a source can measure of its own reading: bytes of its files, participants of an API that says how many
 * there are, records replayed from memory, lookups in flight. Not always participants: a file's participant
 * count is only known once it has been read, its size is known before.
 */
export type ReadUnit = 'bytes' | 'participants' | 'records' | 'lookups';

export interface ReadProgress {
  done: number;
  /** Undefined while the source does not know (an API before its first answer). */
  total: number | undefined;
  unit: ReadUnit;
}

export interface LookupReport {
  service: string;
  /** Lookups sent to the service (each distinct key once per run). */
  lookups: number;
  /** Lookups answered from the state's cache instead. */
  cached: number;
  /** HTTP requests, token requests and retries included. */
  requests: number;
  /** From the first lookup sent to the last answer. */
  seconds: number;
  rateMode: 'adaptive' | 'fixed';
  /** Requests/s the rate settled at (AdaptiveRate.settled()); in fixed mode, the fixed rate. */
  settledRate: number;
  /** The most the rate could rise to (`--rate <service>=N`). */
  ceiling: number;
  /** Answers that were 429 or 5xx. */
  throttled: number;
}
