import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeGrowsurf, generateGrowsurfProgram } from '../fakes/growsurf.js';
import { tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';
import { runInTerminal, screenOf, withoutBars } from '../support/terminal.js';

/**
 * Issue 10, "progress that is true": a run at a terminal (a real pseudo-terminal) shows a read bar that counts
 * participants against a total, bars per destination, and then the summary, with nothing left over from the
 * bars' redraws. What is on screen at the end is checked, not how fast anything went.
 */

const PARTICIPANTS = 2_000;

let services: Services | undefined;
let growsurf: FakeGrowsurf | undefined;
afterEach(async () => {
  await services?.stop();
  services = undefined;
  await growsurf?.stop();
  growsurf = undefined;
});

/** Every drawn frame's text, escape sequences dropped: for what must never be drawn at any moment. */
function everyFrame(raw: string): string {
  return raw.replace(/\x1b\[[?\d;]*[A-Za-z]/gu, '\n');
}

describe('progress at a terminal', () => {
  it('diff: a read bar counting participants against the file\'s bytes, then the summary below it', async () => {
    const cwd = tempDir();
    const file = writeProgram(cwd, PARTICIPANTS);
    const run = await runInTerminal(['diff', '--file', file, '--state', join(cwd, 'state.db')], { cwd });
    expect(run.code, run.raw).toBe(0);
    const screen = withoutBars(screenOf(run.raw));
    // The planning pass, counted on its own (the file's first pass, indexing referrers, had its own label).
    expect(screen[0]).toMatch(/^ read 2\/2 +\[bar\] 100% {2}2,000 participants {2}in \d+\.\ds {2}(\d+\.\d)\/\1 KB$/);
    expect(screen[1]).toMatch(/^referral-sync diff: what sync would send \(dry run\)$/);
    // Redrawn in place: no leftover frame of the index pass or of an earlier redraw.
    expect(screen.filter((line) => /^ (index|read) /.test(line))).toHaveLength(1);
    expect(everyFrame(run.raw)).not.toMatch(/\b0\/0\b/);
  });

  it('sync: the read bar and one bar per destination end complete, and the delivery summary follows', async () => {
    services = await startServices();
    const cwd = tempDir();
    const file = writeProgram(cwd, PARTICIPANTS);
    const run = await runInTerminal(['sync', '--file', file, '--state', join(cwd, 'state.db'), '--rate', 'segment=50000,customerio=50000'], { cwd, env: services.env });
    expect(run.code, run.raw).toBe(0);
    const screen = withoutBars(screenOf(run.raw));
    const sent = services.segment.messages.size;
    expect(sent).toBeGreaterThan(PARTICIPANTS);
    const count = (n: number): string => n.toLocaleString('en-US');
    expect(screen[0]).toMatch(/^ read 2\/2 +\[bar\] 100% {2}2,000 participants {2}in \d+\.\ds {2}(\d+\.\d)\/\1 KB$/);
    expect(screen[1]).toMatch(new RegExp(`^ Segment +\\[bar\\] 100% {2}${count(sent)}/${count(sent)} {2}in \\d+\\.\\ds$`));
    expect(screen[2]).toMatch(/^ Customer\.io +\[bar\] 100% {2}([\d,]+)\/\1 {2}in \d+\.\ds$/);
    expect(screen[3]).toBe('referral-sync sync: 2000 participants, 0 invalid (state ' + join(cwd, 'state.db') + ')');
    expect(screen.at(-1)).toMatch(/^sync: done in \d+\.\ds: [\d,]+ sent, 0 failed, 0 dead\.$/);
    expect(screen.filter((line) => /^ (index|read|Segment|Customer\.io) /.test(line))).toHaveLength(3);
    expect(everyFrame(run.raw)).not.toMatch(/\b0\/0\b/);
  });

  it('the GrowSurf API: the read bar counts against the participant count the campaign reports', async () => {
    const program = generateGrowsurfProgram(300, 4);
    growsurf = new FakeGrowsurf('gs_key_test_progress', program);
    const url = await growsurf.start();
    const cwd = tempDir();
    const run = await runInTerminal(['diff', '--source', 'growsurf', '--campaign', program.campaignId, '--state', join(cwd, 'state.db'), '--rate', 'growsurf=50'], {
      cwd,
      env: { GROWSURF_API_KEY: 'gs_key_test_progress', GROWSURF_API_URL: `${url}/v2` },
    });
    expect(run.code, run.raw).toBe(0);
    const screen = withoutBars(screenOf(run.raw));
    // Read once (an API is not scanned twice), so the bar is just "read".
    expect(screen[0]).toMatch(/^ read +\[bar\] 100% {2}300\/300 participants {2}in \d+\.\ds$/);
    expect(screen[1]).toMatch(/^referral-sync diff: /);
    expect(everyFrame(run.raw)).not.toMatch(/\b0\/0\b/);
  });
});
