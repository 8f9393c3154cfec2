import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCliInProcess, tempDir } from '../support/cli.js';
import { SkipClock } from '../support/clock.js';
import { writeProgram } from '../support/program.js';
import { startServices, type Services } from '../support/services.js';
import { readPlan } from '../support/plan.js';
import { backends, type StateLocation } from '../support/backends.js';

let services: Services | undefined;
let state: StateLocation | undefined;
afterEach(async () => {
  await services?.stop();
  await state?.drop();
  services = undefined;
  state = undefined;
});


const FAULTS = { error5xxRate: 0.1, rate429: 0.05, retryAfterSeconds: 1, dropRate: 0.03 };

describe.each(backends())('delivery under faults, $name state', (backend) => {
  it.each([
    ['v2', 3000],
    ['v1', 150],
  ])('Customer.io %s, %i participants: every operation delivered exactly once by id despite 5xx, 429 and dropped connections', async (api, size) => {
    services = await startServices({ segment: { ...FAULTS, seed: 11 }, customerio: { ...FAULTS, seed: 12 } });
    // The engine honours each Retry-After (the whole bucket pauses) and backs off after each 5xx and drop on a
    // clock that skips those waits: the same requests, retries and outcomes, without sitting out ~20 s of pauses.
    const clock = new SkipClock();
    services.segment.clock = clock;
    services.customerio.clock = clock;
    state = await backend.fresh();
    const cwd = tempDir();
    const file = writeProgram(cwd, size);
    const planPath = join(cwd, 'plan.jsonl');
    expect((await runCliInProcess(['diff', '--file', file, '--out', planPath, '--quiet', '--state', state.location], { cwd, env: services.env })).code).toBe(0);
    const plan = readPlan(planPath);

    // Fixed rates: the injected 429s come whatever the pace, and an adaptive rate would rightly slow down for
    // each (engine.test.ts covers that); this test is about exactly-once delivery under faults.
    const result = await runCliInProcess(['sync', '--file', file, '--customerio-api', api, '--rate', 'segment=5000,customerio=2000', '--rate-mode', 'fixed', '--state', state.location], { cwd, env: services.env, clock });
    // Nothing but the every-10-s progress line a slow (loaded) machine may print.
    expect(result.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('progress: '))).toEqual([]);
    expect(result.code).toBe(0);

    const { segment, customerio } = services;
    // The faults really happened, on both services together (Segment takes 250 events a request, Customer.io
    // v2 200 operations, so a small run makes few requests)…
    const faults = { 429: 0, '5xx': 0, dropped: 0 };
    for (const log of [segment.log, customerio.log]) {
      faults[429] += log.byStatus.get(429) ?? 0;
      faults['5xx'] += (log.byStatus.get(500) ?? 0) + (log.byStatus.get(502) ?? 0) + (log.byStatus.get(503) ?? 0);
      faults.dropped += log.byStatus.get('dropped') ?? 0;
    }
    for (const count of Object.values(faults)) expect(count).toBeGreaterThan(0);
    // …and every planned message arrived, under its planned id. The injected faults strike before the fakes
    // process a request, so nothing needs sending twice; but on a loaded machine an answer can come after the
    // SDK's own timeout, and the engine then rightly sends the same ids again (the services dedupe them by id). So
    // the ids are compared as a set; that nothing acknowledged is sent again is the crash suite's check.
    const segmentIds = plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string);
    expect([...new Set(segment.arrivals)].sort()).toEqual(segmentIds.sort());
    const cioEventIds = plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string);
    expect([...new Set(customerio.eventArrivals)].sort()).toEqual(cioEventIds.sort());
    const cioIdentifies = plan.filter((l) => l.destination === 'customerio' && l.kind === 'identify').length;
    expect(customerio.people.size).toBe(cioIdentifies);

    const status = await runCliInProcess(['status', '--json', '--state', state.location], { cwd });
    const deliveries = (JSON.parse(status.stdout) as { deliveries: { destination: string; status: string; count: number }[] }).deliveries;
    expect(deliveries).toEqual([
      { destination: 'customerio', status: 'sent', count: plan.filter((l) => l.destination === 'customerio').length },
      { destination: 'segment', status: 'sent', count: segmentIds.length },
    ]);
  });
});
