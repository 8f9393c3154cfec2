import { DEFAULT_RETRY } from '../apply/retry.js';
import type { Config } from '../config/config.js';
import { UsageError } from '../errors.js';
import { formatDuration, HttpClient } from '../http/client.js';
import { SlidingWindowLimiter } from '../http/window-limiter.js';
import { CELLO_API_URL, CelloApi } from '../sources/cello-api.js';
import { celloCsvSource } from '../sources/cello-csv.js';
import type { EncodingName } from '../sources/encoding.js';
import type { Source } from '../sources/source.js';
import type { LookupCache } from '../state/store.js';
import { validUrl } from './destinations.js';
import type { Output } from './output.js';
import type { Env } from './settings.js';

export function createCelloSource(options: {
  files: string[];
  programId: string;
  config: Config;
  env: Env;
  output: Output;
  rate: number;
  enrich: boolean;
  encoding?: EncodingName;
}): Source {
  const { env } = options;
  let api: CelloApi | undefined;
  let client: HttpClient | undefined;
  const cache: { current?: LookupCache } = {};
  if (options.enrich) {
    const accessKeyId = env.CELLO_ACCESS_KEY_ID;
    const secretAccessKey = env.CELLO_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
      throw new UsageError('--enrich needs CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY (Cello Portal → Integrations → Access Keys).');
    }
    client = new HttpClient({
      service: 'Cello',
      baseUrl: env.CELLO_API_URL ? validUrl(env.CELLO_API_URL, 'CELLO_API_URL') : CELLO_API_URL,
      headers: {},
      connections: 2,
      // Cello documents no limits (research/cello.md §4); we stay polite: `--rate cello=5` a second.
      limiter: new SlidingWindowLimiter([{ name: 'second', limit: Math.max(1, Math.floor(options.rate)), windowMs: 1_000 }]),
      retry: { ...DEFAULT_RETRY, maxAttempts: 5, baseDelayMs: 500 },
      maxWaitMs: 10 * 60_000,
      onWait: (ms, reason) => options.output.info(`Cello ${reason}: waiting ${formatDuration(ms)}.`),
    });
    api = new CelloApi(client, { accessKeyId, secretAccessKey }, cache);
  }
  const source = celloCsvSource({
    paths: options.files,
    programId: options.programId,
    tierBasis: options.config.cello.tierBasis,
    ...(api ? { api } : {}),
    ...(options.encoding ? { encoding: options.encoding } : {}),
  });
  if (!client) return source;
  const http = client;
  return Object.assign(source, { close: () => http.close(), useCache: (lookups: LookupCache) => void (cache.current = lookups) });
}
