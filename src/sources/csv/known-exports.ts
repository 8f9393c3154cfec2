import { normalizeHeader } from './reader.js';

/**
 * Which known export a header belongs to, so a file given to the wrong reader is named for what it is, with the
 * flag that reads it, instead of failing on a missing column (issue 10).
 */

export type CelloExport = 'conv_signups' | 'event_details_aggregates';

/**
 * Cello's exports by their columns (research/cello.md §6): conv_signups has the referred user's
 * `newUserProductUserId`; the aggregates have the referrer's `productUserId` with the `NU_Signups` count.
 */
export function celloExportOf(header: readonly string[]): CelloExport | undefined {
  const columns = header.map(normalizeHeader);
  if (columns.includes('newuserproductuserid')) return 'conv_signups';
  if (columns.includes('productuserid') && columns.includes('nusignups')) return 'event_details_aggregates';
  return undefined;
}

/** Columns only a referral program's participant export has (GrowSurf's, in the names its export uses). */
const GROWSURF_ONLY = ['shareurl', 'referralcount', 'referredby', 'referralstatus', 'leadcount', 'vanitykeys'];
const EMAIL = ['email', 'emailaddress', 'participantemail'];

/** A GrowSurf participant export (or one like it): an email column and one of GrowSurf's referral columns. */
export function looksLikeGrowsurfExport(header: readonly string[]): boolean {
  const columns = header.map(normalizeHeader);
  return columns.some((c) => EMAIL.includes(c)) && columns.some((c) => GROWSURF_ONLY.includes(c));
}
