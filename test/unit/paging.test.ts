import { describe, expect, it } from 'vitest';
import { ExitCode, ReferralSyncError } from '../../src/errors.js';
import { cursorPages } from '../../src/sources/paging.js';

/**
 * Issue 17, guarantee 2: every way a cursor-paged listing can fail to end ends it with an error naming the
 * service and what repeated; every way it can end well still ends it, with each item handed on once.
 * A service is a function from the cursor asked for to a page: `pages[cursor ?? '']`.
 */
type Page = { items: string[]; next: string | undefined };
type Service = (cursor: string | undefined) => Page;

function fromTable(pages: Record<string, Page>): Service {
  return (cursor) => {
    const page = pages[cursor ?? ''];
    if (!page) throw new Error(`the test service has no page for cursor ${cursor}`);
    return page;
  };
}

/** Pages that never end: every cursor leads to a new one, each page with `perPage` new items. */
const endless = (perPage: number): Service => (cursor) => {
  const n = cursor === undefined ? 0 : Number(cursor);
  return { items: Array.from({ length: perPage }, (_, i) => `p${n}-${i}`), next: String(n + 1) };
};

async function list(service: Service, maxPages = 50): Promise<{ items: string[]; requests: number; error?: ReferralSyncError }> {
  const items: string[] = [];
  let requests = 0;
  try {
    for await (const page of cursorPages<string>({
      service: 'GrowSurf',
      items: 'participants',
      cursorName: 'nextId',
      maxPages,
      maxPagesReason: 'the test says so',
      hint: 'hint',
      fetch: async (cursor) => {
        requests += 1;
        return service(cursor);
      },
      idOf: (item) => (item.startsWith('?') ? undefined : item),
    })) {
      items.push(...page);
    }
  } catch (error) {
    if (!(error instanceof ReferralSyncError)) throw error;
    return { items, requests, error };
  }
  return { items, requests };
}

const ENDS_WELL: { name: string; service: Service; items: string[]; requests: number }[] = [
  { name: 'no next cursor', service: fromTable({ '': { items: ['a', 'b'], next: 'c' }, c: { items: ['c'], next: undefined } }), items: ['a', 'b', 'c'], requests: 2 },
  { name: 'an empty page, cursor or not (documented: stop on an empty page)', service: fromTable({ '': { items: ['a'], next: 'x' }, x: { items: [], next: 'y' } }), items: ['a'], requests: 2 },
  {
    name: 'a page overlapping the one before (the cursor item served twice): each item once',
    service: fromTable({ '': { items: ['a', 'b'], next: 'b' }, b: { items: ['b', 'c'], next: 'c' }, c: { items: ['c', 'd'], next: undefined } }),
    items: ['a', 'b', 'c', 'd'],
    requests: 3,
  },
  { name: 'a last page holding only items already read', service: fromTable({ '': { items: ['a'], next: 'x' }, x: { items: ['a'], next: undefined } }), items: ['a'], requests: 2 },
  { name: 'items without an id are handed on (for the caller to report), never counted as seen', service: fromTable({ '': { items: ['?', '?'], next: undefined } }), items: ['?', '?'], requests: 1 },
];

const NEVER_ENDS: { name: string; service: Service; maxPages?: number; message: string; requests: number }[] = [
  {
    name: 'a cursor that cycles between two pages',
    service: fromTable({ '': { items: ['a', 'b'], next: 'c' }, c: { items: ['c', 'd'], next: 'e' }, e: { items: ['e'], next: 'c' } }),
    message: `GrowSurf's nextId cursor came back to a page already read (nextId "c") after 3 pages and 5 participants; the listing would never end, so it was stopped.`,
    requests: 3,
  },
  {
    name: 'a cursor that names its own page',
    service: fromTable({ '': { items: ['a'], next: 'x' }, x: { items: ['b'], next: 'x' } }),
    message: `GrowSurf's nextId cursor came back to a page already read (nextId "x") after 2 pages and 2 participants; the listing would never end, so it was stopped.`,
    requests: 2,
  },
  {
    name: 'new cursors over a page of items already read (the first page served again)',
    service: (cursor) => (cursor === undefined ? { items: ['a', 'b'], next: 'n1' } : { items: ['a', 'b'], next: `n${Number(cursor.slice(1)) + 1}` }),
    message: `GrowSurf's participants listing gave a page holding only participants already read (2 of them, nextId "n1") after 2 pages and 2 participants; the listing would never end, so it was stopped.`,
    requests: 2,
  },
  {
    name: 'pages that never end, each with new items and a new cursor',
    service: endless(3),
    maxPages: 7,
    message: `GrowSurf's participants listing still announced more after 7 pages and 21 participants, its cap (the test says so): either the listing would never end or that count is wrong, so it was stopped.`,
    requests: 7,
  },
];

describe('cursorPages: every listing ends (issue 17, guarantee 2)', () => {
  it.each(ENDS_WELL)('ends well on $name', async ({ service, items, requests }) => {
    const result = await list(service);
    expect(result.error).toBeUndefined();
    expect(result.items).toEqual(items);
    expect(result.requests).toBe(requests);
  });

  it.each(NEVER_ENDS)('stops $name with exit 69 and a sentence naming the service and what repeated', async ({ service, maxPages, message, requests }) => {
    const result = await list(service, maxPages);
    expect(result.error?.message).toBe(message);
    expect(result.error?.exitCode).toBe(ExitCode.unavailable);
    expect(result.requests).toBe(requests);
  });

  it('a cursor cycle of any length over any pages is stopped within one round of it', async () => {
    // Pages 0..n-1 in a chain, the last pointing back to page k: stopped on the first repeat, never later.
    for (const n of [2, 3, 5, 9]) {
      for (let k = 1; k < n; k += 1) {
        const service: Service = (cursor) => {
          const i = cursor === undefined ? 0 : Number(cursor);
          return { items: [`p${i}`], next: String(i + 1 < n ? i + 1 : k) };
        };
        const result = await list(service);
        expect(result.error?.message, `chain of ${n} back to ${k}`).toMatch(/^GrowSurf's nextId cursor came back to a page already read/);
        expect(result.requests).toBe(n);
      }
    }
  });
});
