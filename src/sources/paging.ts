import { UnavailableError } from '../errors.js';

/**
 * The one loop over a cursor-paged listing (GrowSurf's `nextId`), with every way out of it explicit (issue 17,
 * guarantee 2). A listing ends when the service says so: no next cursor, or an empty page. It is stopped, as a
 * service that misbehaves (exit 69), when it would otherwise never end:
 * - the next cursor is one already asked for (the listing came back to a page already read);
 * - a page, with a next cursor, holds only items already seen (a cursor that moves without the listing moving);
 * - the pages reach `maxPages` (a listing inventing new cursors and items forever).
 * Items repeated from earlier pages are handed on once (the order is undocumented and a cursor may repeat a row).
 */
export interface CursorListing<T> {
  /** For messages: "GrowSurf". */
  service: string;
  /** What is listed, for messages: "participants". */
  items: string;
  /** The cursor's name in the API, for messages: "nextId". */
  cursorName: string;
  /** Pages at most; reaching it is an error. */
  maxPages: number;
  /** Why that many, for the message: "campaign c1 reports 4 participants". */
  maxPagesReason: string;
  /** What to do about a listing that would never end. */
  hint: string;
  /** One page: its items and the cursor of the next one (undefined: this was the last). */
  fetch(cursor: string | undefined): Promise<{ items: T[]; next: string | undefined }>;
  /** An item's id (undefined when it has none: handed on, for the caller to report). */
  idOf(item: T): string | undefined;
}

/** The pages of a listing, each as the items not seen on an earlier page; see CursorListing. */
export async function* cursorPages<T>(listing: CursorListing<T>): AsyncGenerator<T[], void, undefined> {
  const asked = new Set<string>();
  const seen = new Set<string>();
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await listing.fetch(cursor);
    pages += 1;
    if (cursor !== undefined) asked.add(cursor);
    const fresh: T[] = [];
    let known = 0;
    for (const item of page.items) {
      const id = listing.idOf(item);
      if (id === undefined) fresh.push(item);
      else if (seen.has(id)) known += 1;
      else {
        seen.add(id);
        fresh.push(item);
      }
    }
    yield fresh;
    if (page.next === undefined || page.items.length === 0) return;
    const { service, items, cursorName } = listing;
    const after = `after ${pages} ${pages === 1 ? 'page' : 'pages'} and ${seen.size} ${items}`;
    if (asked.has(page.next)) {
      throw never(listing, `${service}'s ${cursorName} cursor came back to a page already read (${cursorName} ${quote(page.next)}) ${after}`);
    }
    if (known === page.items.length) {
      throw never(listing, `${service}'s ${items} listing gave a page holding only ${items} already read (${known} of them, ${cursorName} ${quote(cursor)}) ${after}`);
    }
    if (pages >= listing.maxPages) {
      // Not a repeat: the listing may be endless, or the count the cap was derived from may be stale; say both.
      throw new UnavailableError(
        `${service}'s ${items} listing still announced more after ${pages} pages and ${seen.size} ${items}, its cap (${listing.maxPagesReason}): ` +
          `either the listing would never end or that count is wrong, so it was stopped.`,
        { hint: listing.hint },
      );
    }
    cursor = page.next;
  }
}

function never(listing: CursorListing<unknown>, what: string): UnavailableError {
  return new UnavailableError(`${what}; the listing would never end, so it was stopped.`, { hint: listing.hint });
}

/** A cursor as data in a sentence: quoted, and cut short when long (it is the service's text, not ours). */
function quote(cursor: string | undefined): string {
  if (cursor === undefined) return '(none: the first page)';
  const shown = cursor.length > 40 ? `${cursor.slice(0, 40)}…` : cursor;
  return JSON.stringify(shown);
}
