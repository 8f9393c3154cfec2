import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Issue 18: every link in the markdown files a reader meets (those at the root and in docs/) resolves: a relative
 * link names a file or folder of the repository, a `#fragment` names a heading of the page it points at (by
 * GitHub's heading ids), and an external link is a well-formed http(s) URL (never fetched: the tests need no
 * network).
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The markdown files at the root of the repository and in docs/, as paths relative to the root. */
function markdownFiles(): string[] {
  const inFolder = (folder: string): string[] =>
    existsSync(join(ROOT, folder))
      ? readdirSync(join(ROOT, folder))
          .filter((name) => name.toLowerCase().endsWith('.md'))
          .sort()
          .map((name) => join(folder, name))
      : [];
  return [...inFolder('.'), ...inFolder('docs')].map((path) => relative(ROOT, join(ROOT, path)));
}

/**
 * The text with fenced code blocks blanked (their lines kept, so offsets still give line numbers): nothing in a
 * code block is a heading or a link.
 */
function withoutFences(text: string): string {
  let fence: string | undefined;
  return text
    .split('\n')
    .map((line) => {
      const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
      if (fence === undefined) {
        if (marker) fence = marker;
        return marker ? '' : line;
      }
      if (marker && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker) fence = undefined;
      return '';
    })
    .join('\n');
}

/** The text with every code span's content blanked (a link written inside backticks is not a link). */
function withoutCodeSpans(text: string): string {
  return text.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (span) => span.replace(/[^\n]/g, ' '));
}

/**
 * GitHub's id for a heading (github-slugger): the heading's text as rendered (code, links and emphasis reduced to
 * their text), in lower case, with every character removed that is not a letter, a mark, a digit, `_`, `-` or a
 * space, and each space made a `-`.
 */
function slugOf(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/`+/g, '')
    .replace(/(^|[^\p{L}\p{N}])_+([^_]+?)_+(?=[^\p{L}\p{N}]|$)/gu, '$1$2')
    .trim();
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** Every heading id of a page, in order; a repeated id gets `-1`, `-2`, … as on GitHub. */
function anchorsOf(markdown: string): Set<string> {
  const occurrences = new Map<string, number>();
  const anchors = new Set<string>();
  const add = (base: string): void => {
    let slug = base;
    while (occurrences.has(slug)) {
      const count = occurrences.get(base)! + 1;
      occurrences.set(base, count);
      slug = `${base}-${count}`;
    }
    occurrences.set(slug, 0);
    anchors.add(slug);
  };
  const lines = withoutFences(markdown).split('\n');
  lines.forEach((line, i) => {
    const atx = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (atx) return add(slugOf(atx[1]!));
    // A setext heading: a paragraph line underlined with = or -.
    const previous = lines[i - 1];
    if (/^ {0,3}(=+|-+)[ \t]*$/.test(line) && previous !== undefined && previous.trim() !== '' && !/^ {0,3}([-*+]|\d+[.)])[ \t]/.test(previous) && !previous.includes('|')) {
      add(slugOf(previous));
    }
  });
  // Anchors written in HTML.
  for (const match of markdown.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(match[1]!);
  return anchors;
}

interface Link {
  target: string;
  line: number;
}

/** Every link of a page: inline links and images, reference definitions, autolinks and bare http(s) URLs. */
function linksOf(markdown: string): Link[] {
  const text = withoutCodeSpans(withoutFences(markdown));
  const lineAt = (offset: number): number => text.slice(0, offset).split('\n').length;
  const links: Link[] = [];
  const inline = /!?\[(?:[^[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g;
  for (const match of text.matchAll(inline)) links.push({ target: match[1]!.replace(/^<|>$/g, ''), line: lineAt(match.index) });
  for (const match of text.matchAll(/^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?/gm)) links.push({ target: match[1]!, line: lineAt(match.index) });
  for (const match of text.matchAll(/<((?:https?|mailto|ftp):[^>\s]*)>/g)) links.push({ target: match[1]!, line: lineAt(match.index) });
  // GitHub also links a bare URL in the text; those inside a link's (…) are already counted above.
  for (const match of text.matchAll(/(?<![(<\w/])https?:\/\/[^\s<>)\]]+/g)) links.push({ target: match[0].replace(/[.,;:!?]+$/, ''), line: lineAt(match.index) });
  return links;
}

/** Why an external link is not a well-formed http(s) URL, or undefined when it is. */
function externalProblem(target: string): string | undefined {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `is a ${url.protocol} link, not http(s)`;
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(url.hostname) && url.hostname !== 'localhost') return `has no proper host name ("${url.hostname}")`;
  return undefined;
}

/** Every link of `file` that does not resolve, as `file:line: target: why`. */
function brokenLinks(file: string, pages: Map<string, string>): string[] {
  const problems: string[] = [];
  const markdown = pages.get(file)!;
  for (const { target, line } of linksOf(markdown)) {
    const problem = ((): string | undefined => {
      if (target === '') return 'an empty link';
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return externalProblem(target);
      const hash = target.indexOf('#');
      const path = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
      const fragment = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
      const absolute = path === '' ? join(ROOT, file) : path.startsWith('/') ? join(ROOT, path) : resolve(dirname(join(ROOT, file)), path);
      const inRepo = relative(ROOT, absolute);
      if (inRepo.startsWith(`..${sep}`) || inRepo === '..') return 'points outside the repository';
      if (!existsSync(absolute)) return `no such file or folder: ${inRepo}`;
      if (fragment === undefined) return undefined;
      if (!inRepo.toLowerCase().endsWith('.md')) return `a #fragment on ${inRepo}, which is not a markdown page`;
      const page = pages.get(inRepo) ?? readFileSync(absolute, 'utf8');
      if (!anchorsOf(page).has(fragment)) return `${inRepo} has no heading whose id is "${fragment}"`;
      return undefined;
    })();
    if (problem) problems.push(`${file}:${line}: ${target}: ${problem}`);
  }
  return problems;
}

describe('GitHub heading ids', () => {
  it('follow GitHub: lower case, punctuation and backticks dropped, spaces to -, repeats numbered', () => {
    expect(slugOf('Output: for people and for cron')).toBe('output-for-people-and-for-cron');
    expect(slugOf('Running on ephemeral runners (GitHub Actions, Kubernetes)')).toBe('running-on-ephemeral-runners-github-actions-kubernetes');
    expect(slugOf('Sending: `sync`, `backfill`, `retry`, `check`')).toBe('sending-sync-backfill-retry-check');
    expect(slugOf('What `diff` shows')).toBe('what-diff-shows');
    expect(slugOf('Plan files (`--out`)')).toBe('plan-files---out');
    expect(slugOf('snake_case and [a link](x.md) → *emphasis*')).toBe('snake_case-and-a-link--emphasis');
    expect(slugOf('Café déjà vu 2.0')).toBe('café-déjà-vu-20');
    expect([...anchorsOf('# A\n## A\n```\n# not a heading\n```\n### A\nB\n---\n')]).toEqual(['a', 'a-1', 'a-2', 'b']);
  });

  it('finds links outside code only', () => {
    const links = linksOf('[one](a.md) `[two](b.md)` ![img](c.png)\n```\n[three](d.md)\n```\n<https://example.com/x> see https://example.org/y.\n[ref]: e.md#f');
    expect(links.map((link) => link.target)).toEqual(['a.md', 'c.png', 'e.md#f', 'https://example.com/x', 'https://example.org/y']);
  });
});

describe('links in the markdown files', () => {
  const files = markdownFiles();
  const pages = new Map(files.map((file) => [file, readFileSync(join(ROOT, file), 'utf8')]));

  it('covers the README, CONTRIBUTING, CHANGELOG and docs/', () => {
    expect(files).toEqual(expect.arrayContaining(['README.md', 'CONTRIBUTING.md', 'CHANGELOG.md', join('docs', 'commands.md')]));
    // A parser that found no links would pass everything: the README alone links to every doc.
    expect(linksOf(pages.get('README.md')!).length).toBeGreaterThan(10);
  });

  it.each(files)('every link in %s resolves', (file) => {
    expect(brokenLinks(file, pages)).toEqual([]);
  });
});
