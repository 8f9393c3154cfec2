import { describe, it } from 'vitest';
import { runCli, tempDir } from '../support/cli.js';
import { writeProgram } from '../support/program.js';
import { startServicesFor } from '../support/services.js';

// Rates measured against a fake's real limit: the built CLI as a child, on the real clock. The two cases share
// nothing (own fakes on port 0, own directories) and mostly wait, so they run concurrently.
// Only what a busy machine cannot break is asserted: never over the limit (no 429, at most 1.05 of it). How close
// to the limit the run gets is a matter of speed, which a loaded machine lowers: it is printed here, and measured
// in `npm run bench` (the limiter's pacing on a controlled clock is test/unit/limiter-retry.test.ts's).
describe.concurrent('rate limiting', () => {
  it.for<[string, number, number]>([
    ['v1', 40, 120],
    ['v2', 4, 2600],
  ])('Customer.io %s limited to %i requests/s: --rate at the limit gets no 429 and never goes over it (%i participants)', async ([api, rate, size], { expect, onTestFinished }) => {
    const services = await startServicesFor(onTestFinished, { customerio: { rateLimitPerSecond: rate } });
    const cwd = tempDir();
    const file = writeProgram(cwd, size);
    const result = await runCli(['sync', '--file', file, '--to', 'customerio', '--customerio-api', api, '--rate', `customerio=${rate}`], { cwd, env: services.env });
    expect(result.code).toBe(0);
    const { log } = services.customerio;
    expect(log.rateLimited).toBe(0);
    const sends = log.arrivals.filter((a) => a.path !== '/api/v1/accounts/region');
    expect(sends.length).toBeGreaterThan(rate * 5);
    const seconds = (sends.at(-1)!.at - sends[0]!.at) / 1000;
    const achieved = (sends.length - 1) / seconds;
    console.log(`customerio ${api}: ${sends.length} requests in ${seconds.toFixed(2)} s = ${achieved.toFixed(1)} req/s against a limit of ${rate}`);
    expect(achieved).toBeLessThanOrEqual(rate * 1.05);
  });
});
