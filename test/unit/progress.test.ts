import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Output, type OutputOptions } from '../../src/cli/output/output.js';
import { destinationPieces, readPieces, type DestinationState } from '../../src/cli/output/progress-text.js';
import { RunProgress } from '../../src/cli/output/progress.js';
import { RecentRate } from '../../src/cli/output/recent-rate.js';
import type { ReadProgress } from '../../src/sources/source.js';

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('RecentRate', () => {
  it('gives no rate, hence no ETA, until it has seen a couple of seconds', () => {
    const clock = manualClock();
    const rate = new RecentRate(clock.now);
    rate.observe(0);
    clock.advance(500);
    rate.observe(400);
    expect(rate.perSecond()).toBeUndefined();
    expect(rate.secondsLeft(1000)).toBeUndefined();
    clock.advance(1500);
    rate.observe(1600);
    expect(rate.perSecond()).toBeCloseTo(800);
    expect(rate.secondsLeft(8000)).toBeCloseTo(10);
  });

  it('goes by the recent pace, not the average since the start: a slowdown shows within the window', () => {
    const clock = manualClock();
    const rate = new RecentRate(clock.now, 20_000);
    let done = 0;
    // A minute at 1,000/s, then 30 s at 100/s (a destination throttled by 429s).
    for (let s = 0; s < 60; s += 1) {
      rate.observe(done);
      clock.advance(1000);
      done += 1000;
    }
    for (let s = 0; s < 30; s += 1) {
      rate.observe(done);
      clock.advance(1000);
      done += 100;
    }
    rate.observe(done);
    expect(rate.perSecond()).toBeCloseTo(100);
    // 10,000 left at 100/s; the average since the start (~700/s) would have promised 14 s.
    expect(rate.secondsLeft(10_000)).toBeCloseTo(100);
  });

  it('recomputes the ETA as the total grows: what is left is asked anew each time', () => {
    const clock = manualClock();
    const rate = new RecentRate(clock.now);
    rate.observe(0);
    clock.advance(5000);
    rate.observe(500);
    expect(rate.secondsLeft(1000 - 500)).toBeCloseTo(5);
    // The plan queued 4,000 more meanwhile: the same pace, four times the work left.
    expect(rate.secondsLeft(5000 - 500)).toBeCloseTo(45);
  });

  it('has no ETA when nothing moved for the whole window, and 0 when nothing is left', () => {
    const clock = manualClock();
    const rate = new RecentRate(clock.now, 10_000);
    rate.observe(100);
    for (let s = 0; s < 12; s += 1) {
      clock.advance(1000);
      rate.observe(100);
    }
    expect(rate.perSecond()).toBe(0);
    expect(rate.secondsLeft(50)).toBeUndefined();
    expect(rate.secondsLeft(0)).toBe(0);
  });
});

describe('progress text', () => {
  const bytes = (done: number, total: number | undefined): ReadProgress => ({ done, total, unit: 'bytes' });

  it('a file: participants counted, share and ETA by bytes', () => {
    expect(readPieces({ participants: 12_345, source: bytes(17_600_000, 42_900_000), secondsLeft: 12.2 })).toEqual(['41%', '12,345 participants', 'ETA 13s', '17.6/42.9 MB']);
    expect(readPieces({ participants: 300_000, source: bytes(42_900_000, 42_900_000), secondsLeft: 0, tookSeconds: 18.04 })).toEqual([
      '100%',
      '300,000 participants',
      'in 18.0s',
      '42.9/42.9 MB',
    ]);
  });

  it.each([
    ['the planning pass (the last): a plain ETA', false, 'ETA 13s'],
    ['the index pass of a file (another pass follows): a lower bound', true, 'ETA ≥ 13s'],
  ])('%s', (_name, lowerBound, eta) => {
    expect(readPieces({ participants: 12_345, source: bytes(17_600_000, 42_900_000), secondsLeft: 12.2, etaLowerBound: lowerBound })).toEqual(['41%', '12,345 participants', eta, '17.6/42.9 MB']);
  });

  it('the GrowSurf API: its participants against the campaign\'s count, and no total (never 0/0) before it is known', () => {
    expect(readPieces({ participants: 390, source: { done: 400, total: 1_000, unit: 'participants' }, secondsLeft: 75 })).toEqual(['40%', '400/1,000 participants', 'ETA 1m 15s']);
    expect(readPieces({ participants: 0, source: { done: 0, total: undefined, unit: 'participants' }, secondsLeft: undefined })).toEqual(['0 participants']);
    expect(readPieces({ participants: 0, source: { done: 0, total: 0, unit: 'participants' }, secondsLeft: undefined })).toEqual(['0 participants']);
  });

  const destination = (over: Partial<DestinationState>): DestinationState => ({
    done: 0,
    total: 0,
    totalFinal: false,
    failed: 0,
    dead: 0,
    perSecond: undefined,
    secondsLeft: undefined,
    ...over,
  });

  it('a destination whose total still grows says so instead of an ETA', () => {
    expect(destinationPieces(destination({}))).toEqual(['waiting for the plan']);
    // No share of a total that still grows, and no ETA: only what is known.
    expect(destinationPieces(destination({ done: 2_000, total: 5_000, perSecond: 480 }))).toEqual(['2,000/5,000 so far', 'total still growing (reading)', '480/s']);
    expect(destinationPieces(destination({ done: 2_000, total: 5_000, perSecond: 480, secondsLeft: 6 }))).not.toContain('ETA 6s');
    expect(destinationPieces(destination({ done: 2_000, total: 8_000, totalFinal: true, perSecond: 500, secondsLeft: 12, failed: 3 }))).toEqual([
      '25%',
      '2,000/8,000',
      'ETA 12s',
      '3 failed',
      '500/s',
    ]);
    expect(destinationPieces(destination({ done: 8_000, total: 8_000, totalFinal: true, tookSeconds: 16.5 }))).toEqual(['100%', '8,000/8,000', 'in 16.5s']);
    expect(destinationPieces(destination({ totalFinal: true, tookSeconds: 0.2 }))).toEqual(['nothing to send']);
  });
});

describe('RunProgress without a terminal', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function outputOf(options: Partial<OutputOptions>): { output: Output; stderr: () => string } {
    const err = new PassThrough();
    let text = '';
    err.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const output = new Output({ stdout: new PassThrough(), stderr: err }, { logFormat: 'text', quiet: false, verbose: false, progress: true, ...options });
    return { output, stderr: () => text };
  }

  it('writes one plain line every 10 s (a JSON object under --log-format json), and nothing with --quiet', async () => {
    vi.useFakeTimers();
    const clock = manualClock();
    const source = { readProgress: (): ReadProgress => ({ done: 5_000_000, total: 20_000_000, unit: 'bytes' }) };
    const runs = [outputOf({}), outputOf({ logFormat: 'json' }), outputOf({ quiet: true })];
    const progresses = runs.map(({ output }) => new RunProgress(output, source, ['segment'], clock.now));
    for (const p of progresses) {
      p.startPass('read');
      for (let i = 0; i < 1234; i += 1) p.participantRead();
      p.operationPlanned('segment');
    }
    for (let s = 0; s < 21; s += 1) {
      clock.advance(1000);
      await vi.advanceTimersByTimeAsync(1000);
    }
    progresses.forEach((p) => p.stop());
    const [text, json, quiet] = runs.map((r) => r.stderr());
    expect(text!.trim().split('\n')).toEqual([
      'progress: read 25%, 1,234 participants, 5.0/20.0 MB; Segment 0/1 so far, total still growing (reading), 0/s',
      'progress: read 25%, 1,234 participants, 5.0/20.0 MB; Segment 0/1 so far, total still growing (reading), 0/s',
    ]);
    const line = JSON.parse(json!.trim().split('\n')[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 'info', progress: { pass: 'read', participants: 1234, source: { done: 5_000_000, total: 20_000_000, unit: 'bytes' } } });
    expect(quiet).toBe('');
  });

  it.each([
    ['index', 'index 1/2', 'ETA ≥ ', true],
    ['read', 'read', 'ETA ', false],
  ] as const)('the %s pass of a file: its ETA says whether it is a lower bound (text and JSON)', async (phase, label, eta, lowerBound) => {
    vi.useFakeTimers();
    const clock = manualClock();
    let done = 0;
    const source = { readProgress: (): ReadProgress => ({ done, total: 20_000_000, unit: 'bytes' }) };
    const runs = [outputOf({}), outputOf({ logFormat: 'json' })];
    const progresses = runs.map(({ output }) => new RunProgress(output, source, [], clock.now));
    for (const p of progresses) p.startPass(phase);
    for (let s = 0; s < 10; s += 1) {
      done += 1_000_000;
      clock.advance(1000);
      await vi.advanceTimersByTimeAsync(1000);
    }
    progresses.forEach((p) => p.stop());
    const [text, json] = runs.map((r) => r.stderr());
    expect(text).toContain(`progress: ${label} 50%, 0 participants, ${eta}10s, 10.0/20.0 MB`);
    const line = JSON.parse(json!.trim().split('\n')[0]!) as { progress: { etaSeconds: number; etaIsLowerBound?: boolean } };
    expect(line.progress.etaSeconds).toBe(10);
    expect(line.progress.etaIsLowerBound).toBe(lowerBound ? true : undefined);
  });

  it('counts a killed run\'s leftovers once: once the plan is queued, a total is what was done plus what waits', async () => {
    vi.useFakeTimers();
    const clock = manualClock();
    const { output, stderr } = outputOf({});
    const progress = new RunProgress(output, {}, ['segment'], clock.now);
    // 300 left in the queue by a killed run; planning again plans 1,000, 300 of them those same operations.
    progress.alreadyQueued('segment', 300);
    for (let i = 0; i < 1000; i += 1) progress.operationPlanned('segment');
    progress.delivered('segment', { sent: 400, failed: 0, dead: 0, retries: 0, startedAt: 0, finishedAt: undefined });
    progress.readDone();
    progress.planQueued(() => 600);
    clock.advance(10_000);
    await vi.advanceTimersByTimeAsync(10_000);
    progress.stop();
    expect(stderr()).toContain('Segment 40%, 400/1,000,');
  });
});
