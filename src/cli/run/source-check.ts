import { basename } from 'node:path';
import type { Clock } from '../../apply/limiter.js';
import type { Config } from '../../config/config.js';
import { ExitCode, isReferralSyncError } from '../../errors.js';
import { checkCelloExports } from '../../sources/cello/csv.js';
import { checkGrowsurfCampaign } from '../../sources/growsurf/api.js';
import { checkGrowsurfExport } from '../../sources/growsurf/csv.js';
import { delimiterFromFlag } from '../../sources/csv/reader.js';
import { encodingFromFlag } from '../../sources/csv/encoding.js';
import type { Output } from '../output/output.js';
import { createCelloCheckApi } from '../wiring/cello.js';
import { parseRates } from '../wiring/destinations.js';
import type { Env } from '../wiring/env.js';
import { createGrowsurfClient } from '../wiring/growsurf.js';
import { resolveSource, type SourceFlags } from '../wiring/settings.js';

/** One line of `check`: what was checked, whether it passed, and what to fix when it did not. */
export interface CheckLine {
  /** What was checked: the GrowSurf API, the Cello API, a file, or a destination. */
  check: string;
  ok: boolean;
  /** One sentence for people. */
  message: string;
  hint?: string;
  /** The exit code this failure gives (the one a run would stop with); 0 when it passed. */
  exitCode: ExitCode;
}

/** The code Cello is asked about: no referral code looks like it, and Cello answers 200 valid:false for it. */
export const CELLO_PROBE_CODE = 'referral-sync-check';

/** The source flags `check` takes: the ones sync reads its source with. */
export type SourceCheckFlags = Pick<SourceFlags, 'source' | 'campaign' | 'file' | 'encoding' | 'delimiter' | 'format' | 'enrich'>;

/**
 * The source the run would read with the same flags (and env) as sync, checked the way the run starts: the
 * GrowSurf key and campaign (GET /campaign/:id), the Cello key pair and its token (one token, one lookup), each
 * export file (readable, a header the reader recognises). Undefined when no source is given (nor
 * GROWSURF_API_KEY set, which makes sync read the API). Never throws for a failed check: each is a line.
 */
export async function checkSource(flags: SourceCheckFlags, env: Env, config: Config, output: Output, clock?: Clock): Promise<CheckLine[] | undefined> {
  const files = flags.file ?? [];
  if (flags.source === undefined && files.length === 0 && !env.GROWSURF_API_KEY) return undefined;
  let kind: 'growsurf' | 'cello' | 'csv';
  let programId: string;
  try {
    // The same checks of the flags, and the same choice of source, as the run: a usage error is this check's answer.
    const settings = await resolveSource(flags, env, config, output, undefined, clock);
    await settings.source.close?.();
    programId = settings.programId;
    kind = settings.sourceKind === 'growsurf' ? (files.length > 0 ? 'csv' : 'growsurf') : 'cello';
  } catch (error) {
    return [failed('source', error)];
  }
  if (kind === 'growsurf') return [await checkGrowsurf(programId, env, output, clock)];
  const encoding = flags.encoding === undefined ? undefined : encodingFromFlag(flags.encoding);
  const delimiter = flags.delimiter === undefined ? undefined : delimiterFromFlag(flags.delimiter);
  const options = { ...(encoding ? { encoding } : {}), ...(delimiter ? { delimiter } : {}) };
  if (kind === 'csv') {
    const lines: CheckLine[] = [];
    for (const file of files) {
      try {
        const found = await checkGrowsurfExport(file, { config, ...options });
        lines.push(passed(`file ${file}`, `GrowSurf export ${file}: readable (${found.encoding}), header recognised (${found.recognised.join(', ')}).`));
      } catch (error) {
        lines.push(failed(`file ${file}`, error));
      }
    }
    return lines;
  }
  const lines: CheckLine[] = [];
  try {
    const found = await checkCelloExports(files, options);
    for (const f of found) lines.push(passed(`file ${f.file}`, `Cello export ${f.file}: readable (${f.encoding}), ${f.kind === 'signups' ? 'conv_signups' : `event_details_aggregates (${basename(f.file)})`} recognised.`));
  } catch (error) {
    lines.push(failed(`files ${files.join(' ')}`, error));
  }
  if (flags.enrich) lines.push(await checkCello(env, clock));
  return lines;
}

async function checkGrowsurf(campaignId: string, env: Env, output: Output, clock?: Clock): Promise<CheckLine> {
  let close: (() => Promise<void>) | undefined;
  try {
    const { client } = createGrowsurfClient(campaignId, { rate: parseRates(undefined).growsurf, env, output, clock });
    close = () => client.close();
    const campaign = await checkGrowsurfCampaign(client, campaignId);
    const about = [campaign.name ? `"${campaign.name}"` : '', campaign.participantCount === undefined ? '' : `${campaign.participantCount.toLocaleString('en-US')} participants`].filter(Boolean).join(', ');
    return passed('growsurf', `GrowSurf API accepted GROWSURF_API_KEY and has campaign ${campaignId}${about ? ` (${about})` : ''}.`);
  } catch (error) {
    return failed('growsurf', error);
  } finally {
    await close?.();
  }
}

async function checkCello(env: Env, clock?: Clock): Promise<CheckLine> {
  let close: (() => Promise<void>) | undefined;
  try {
    const { api, client } = createCelloCheckApi(env, clock);
    close = () => client.close();
    await api.check(CELLO_PROBE_CODE);
    return passed('cello', 'Cello API accepted CELLO_ACCESS_KEY_ID and CELLO_SECRET_ACCESS_KEY: it issued a token and answered a lookup with it.');
  } catch (error) {
    return failed('cello', error);
  } finally {
    await close?.();
  }
}

function passed(check: string, message: string): CheckLine {
  return { check, ok: true, message, exitCode: ExitCode.ok };
}

/** A check's failure as its line: the run's own sentence, hint and exit code. */
function failed(check: string, error: unknown): CheckLine {
  if (!isReferralSyncError(error)) throw error;
  // check says once, at the end, that nothing was sent.
  const hint = error.hint?.replace(/^Nothing was sent\. /, '');
  return { check, ok: false, message: error.message, ...(hint ? { hint } : {}), exitCode: error.exitCode as ExitCode };
}
