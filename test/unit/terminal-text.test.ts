import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { Output } from '../../src/cli/output/output.js';
import type { Participant } from '../../src/model/participant.js';
import { renderPlanSummary, renderProblems } from '../../src/plan/render.js';
import { PlanSummary } from '../../src/plan/summary.js';
import { joinLines, shown, terminalSafe } from '../../src/terminal-text.js';
import { ROOT } from '../support/cli.js';
import { participant } from '../support/participants.js';
import { PLAN_NOW, planItems } from '../support/planner.js';

/** Guarantee 7: text from the data cannot steer the terminal or the logs. */

// What may never reach a terminal raw: C0, DEL, C1, format characters, line/paragraph separators, lone surrogates.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const UNSAFE_BUT_LINE_FEED = /[\0-\t\v-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** Pieces that try to steer a terminal or forge a line, mixed into any text. */
const ATTACKS = [
  '\x1b[31m',
  '\x1b[2J\x1b[H',
  '\x1b]0;owned\x07',
  '\x9b31m',
  '\nFORGED',
  '\r\nFORGED',
  '\rFORGED',
  '\u2028FORGED',
  '\u2029FORGED',
  '\x85FORGED',
  '\u202eFORGED',
  '\u2066x\u2069',
  '\x00\x08\x7f',
  '\ud800',
  '\udc00x',
  '\u{e0041}',
];
const hostile = fc
  .array(fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom(...ATTACKS)), { minLength: 1, maxLength: 5 })
  .map((parts) => parts.join(''));
/** A string with no character the escaper touches (any plane, backslashes and quotes included). */
const printable = fc.string({ unit: 'binary' }).map((s) => [...s].filter((c) => !UNSAFE.test(c)).join(''));

describe('the escaper', () => {
  it.each([
    ['\x1b[31mred\x1b[0m', '\\x1b[31mred\\x1b[0m'],
    ['one\ntwo', 'one\\ntwo'],
    ['one\r\ntwo', 'one\\r\\ntwo'],
    ['tab\there', 'tab\\there'],
    ['line\u2028sep\u2029', 'line\\u2028sep\\u2029'],
    ['csi \x9b2J, nel \x85', 'csi \\u009b2J, nel \\u0085'],
    ['\u202egnp.exe', '\\u202egnp.exe'],
    ['zero\u200bwidth\ufeff', 'zero\\u200bwidth\\ufeff'],
    ['tag \u{e0041}', 'tag \\udb40\\udc41'],
    ['lone \ud800', 'lone \\ud800'],
    ['josé 😀 C:\\path "quoted"', 'josé 😀 C:\\path "quoted"'],
  ])('shows %j as %j', (raw, escaped) => {
    expect(shown(raw)).toBe(escaped);
  });

  it('any string comes out with no control, format or line-separating character: one line, nothing that acts', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), hostile), (text) => {
        const out = shown(text);
        expect(out).not.toMatch(UNSAFE);
        // Only printable ASCII escapes were added: the terminal sees text.
        expect(out.split('\n')).toHaveLength(1);
      }),
      { numRuns: 2000 },
    );
  });

  it('printable text of any script passes unchanged, through both', () => {
    fc.assert(
      fc.property(printable, (text) => {
        expect(shown(text)).toBe(text);
        expect(terminalSafe(text)).toBe(text);
      }),
      { numRuns: 1000 },
    );
  });

  it('laid-out text keeps its line feeds and nothing else unsafe', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ unit: 'binary' }), hostile)), (lines) => {
        const text = lines.join('\n');
        const out = terminalSafe(text);
        expect(out).not.toMatch(UNSAFE_BUT_LINE_FEED);
        expect(out.split('\n')).toHaveLength(text.split('\n').length);
        // joinLines: a line stays a line, whatever its values hold.
        expect(joinLines(lines).split('\n')).toHaveLength(Math.max(1, lines.length));
        expect(joinLines(lines)).not.toMatch(UNSAFE_BUT_LINE_FEED);
      }),
      { numRuns: 1000 },
    );
  });

  it('a JSON document through the funnel parses to exactly the same value (no double escaping)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(fc.string({ unit: 'binary' }), hostile), fc.oneof(fc.string({ unit: 'binary' }), hostile, fc.integer())), fc.boolean(), (value, pretty) => {
        const json = JSON.stringify(value, null, pretty ? 2 : undefined);
        const out = terminalSafe(json);
        expect(out).not.toMatch(UNSAFE_BUT_LINE_FEED);
        expect(JSON.parse(out)).toEqual(value);
        // What JSON.stringify already escaped is left alone.
        if (!/[\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}]/u.test(json)) expect(out).toBe(json);
      }),
      { numRuns: 1000 },
    );
  });
});

function capture(logFormat: 'text' | 'json'): { output: Output; stdout: () => string; stderr: () => string } {
  const text = { stdout: '', stderr: '' };
  const sink = (name: 'stdout' | 'stderr') =>
    new Writable({
      write(chunk: Buffer | string, _encoding, done) {
        text[name] += chunk.toString();
        done();
      },
    });
  const output = new Output({ stdout: sink('stdout'), stderr: sink('stderr') }, { logFormat, quiet: false, verbose: true, progress: false });
  return { output, stdout: () => text.stdout, stderr: () => text.stderr };
}

describe('the funnel: every write of the CLI (cli/output/output.ts)', () => {
  it('a log message of any content is one line of text, escaped; under --log-format json it is exact', () => {
    fc.assert(
      fc.property(hostile, fc.constantFrom('info', 'warn', 'error', 'verbose') as fc.Arbitrary<'info' | 'warn' | 'error' | 'verbose'>, (message, level) => {
        const text = capture('text');
        text.output[level](message);
        expect(text.stderr()).not.toMatch(UNSAFE_BUT_LINE_FEED);
        expect(text.stderr().match(/\n/g)).toHaveLength(1);
        expect(text.stderr()).not.toMatch(/^FORGED/m);
        const json = capture('json');
        json.output[level](message, { field: message });
        const [line, ...rest] = json.stderr().split('\n');
        expect(rest).toEqual(['']);
        expect(line).not.toMatch(UNSAFE);
        expect(JSON.parse(line!)).toMatchObject({ message, field: message });
      }),
      { numRuns: 500 },
    );
  });

  it('a result keeps its layout and nothing else that acts on the terminal', () => {
    fc.assert(
      fc.property(fc.array(hostile), (values) => {
        const { output, stdout } = capture('text');
        output.result(`${values.join('\n')}\n`);
        expect(stdout()).not.toMatch(UNSAFE_BUT_LINE_FEED);
        expect(stdout().split('\n')).toHaveLength(values.join('\n').split('\n').length + 1);
      }),
    );
  });
});

describe('text renderers', () => {
  const hostileParticipant = fc.record({ id: hostile, name: hostile, last: hostile, local: hostile, referrer: hostile, company: hostile }).map(
    (h, ): Participant =>
      participant({ id: `p${h.id}`, email: `${h.local}@x.com`, firstName: h.name, lastName: h.last, referrerId: h.referrer, metadata: { company: h.company } }),
  );

  it('a diff of people whose every field is hostile: no line is forged, nothing acts on the terminal', async () => {
    const config = defaultConfig();
    config.metadataTraits = ['company'];
    await fc.assert(
      fc.asyncProperty(fc.array(hostileParticipant, { minLength: 1, maxLength: 6 }), async (people) => {
        const summary = new PlanSummary(['segment', 'customerio'], PLAN_NOW, Number.POSITIVE_INFINITY, config.tiers.map((t) => t.name));
        for (const item of await planItems(people, { config })) summary.add(item);
        const text = renderPlanSummary(summary, {
          title: 'referral-sync diff',
          headlineTraits: ['referral_tier', 'firstName', 'lastName', 'email', 'company', 'referred_by'],
          source: `file ${people[0]!.firstName!}`,
          inputs: [{ file: `in${people[0]!.lastName!}.csv`, encoding: 'utf-8', detected: true, reason: people[0]!.id, delimiter: ',' }],
          programId: people[0]!.id,
          state: 'state.db',
          stateIsEmpty: true,
        });
        expect(text).not.toMatch(UNSAFE_BUT_LINE_FEED);
        expect(text).not.toMatch(/^FORGED/m);
        // Every problem the plan reported is one line of its own.
        const problems = renderProblems('Warnings', summary.warningKinds.kinds(), summary.warnings, '--json');
        expect(joinLines(problems).split('\n')).toHaveLength(problems.length);
      }),
      { numRuns: 60 },
    );
  });
});

/** Every source file under src/. */
function sources(dir = join(ROOT, 'src')): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('no output bypasses the funnel', () => {
  it('only cli/output/output.ts and cli/main.ts write to stdout or stderr, and main.ts only through the escaper', () => {
    const writers = sources()
      .filter((path) => /\b(stdout|stderr)\b[\s\S]{0,40}\.write\(|console\.(log|error|warn|info)\(/.test(readFileSync(path, 'utf8')))
      .map((path) => relative(ROOT, path))
      .sort();
    expect(writers).toEqual(['src/cli/main.ts', 'src/cli/output/output.ts']);
    for (const file of writers) {
      const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
      lines.forEach((line, i) => {
        if (!/\.write\(/.test(line) || /\.write\(''/.test(line)) return;
        // The argument, on this line or the next: through terminalSafe or shown.
        expect(`${file}:${i + 1}: ${line}${lines[i + 1] ?? ''}`).toMatch(/\.write\(\s*(terminalSafe|shown)\(|\.write\(`[^`]*\$\{(terminalSafe|shown)\(|\.write\(line\)/);
      });
    }
  });

  it('no text renderer joins its own lines: each ends in joinLines, which keeps a value on its line', () => {
    const allowed = new Set([
      // Help text from constants, through commander's writeOut (terminalSafe).
      'src/cli/main.ts',
      // The escaper itself.
      'src/terminal-text.ts',
    ]);
    const joiners = sources()
      .filter((path) => /\.join\((['"`])\\n\1\)/.test(readFileSync(path, 'utf8')))
      .map((path) => relative(ROOT, path))
      .filter((path) => !allowed.has(path));
    expect(joiners).toEqual([]);
  });
});
