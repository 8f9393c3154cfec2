import { Analytics } from '@segment/analytics-node';
import { TrackClient } from 'customerio-node';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeCello } from '../fakes/cello.js';
import { FakeCustomerio } from '../fakes/customerio.js';
import { FakeSegment } from '../fakes/segment.js';

/**
 * Our undici-based client and the SDKs' global fetch in one process (DESIGN.md §2). Loading the undici package
 * installs its own global dispatcher unless src/http/undici.ts stops it; Node 20's fetch would then use it, and
 * undici ≥ 7.26's breaks customerio-node (UND_ERR_INVALID_ARG on the Content-Length it sets). An undici upgrade
 * that gets a dispatcher past undici.ts fails the dispatcher checks here; one that breaks the SDKs another way
 * fails the deliveries.
 */
const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');
const globalDispatcher = (): unknown => (globalThis as unknown as Record<symbol, unknown>)[GLOBAL_DISPATCHER];

const fakes: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const fake of fakes.splice(0)) await fake.stop();
});

describe('our undici client beside the SDKs on global fetch', () => {
  it('leaves fetch its own dispatcher: customerio-node (identify, v2 batch) and analytics-node (identify) deliver after our client has run', async () => {
    // Nothing in this process has used fetch or loaded undici yet, so whatever loads undici first could install
    // its dispatcher: the situation of a CLI run.
    expect(globalDispatcher()).toBeUndefined();
    const { HttpClient } = await import('../../src/http/client.js');
    const { SlidingWindowLimiter, rateWindow } = await import('../../src/http/window-limiter.js');
    const { DEFAULT_RETRY } = await import('../../src/apply/retry.js');

    const cello = new FakeCello('key_id', 'secret_value');
    fakes.push(cello);
    const client = new HttpClient({
      service: 'Cello',
      baseUrl: await cello.start(),
      headers: {},
      connections: 2,
      limiter: new SlidingWindowLimiter([rateWindow('rate', 100)]),
      retry: { ...DEFAULT_RETRY, maxAttempts: 1 },
      maxWaitMs: 1_000,
    });
    const token = await client.postJson<{ accessToken: string }>('/token', { accessKeyId: 'key_id', secretAccessKey: 'secret_value' });
    expect(token.accessToken).toMatch(/^tok-1-/);
    expect(cello.tokensIssued).toBe(1);
    // The undici package is loaded now; the slot is still empty, so fetch will make its own.
    const undici = createRequire(import.meta.url)('undici') as typeof import('undici');
    expect(globalDispatcher()).toBeUndefined();

    const customerio = new FakeCustomerio('site_co', 'key_co');
    fakes.push(customerio);
    const track = new TrackClient('site_co', 'key_co', { url: `${await customerio.start()}/api/v1`, retry: { maxRetries: 0 } });
    await track.identify('user/1', { email: 'a@example.com', referral_tier: 'active' });
    const batch = await track.batch([
      { type: 'person', action: 'identify', identifiers: { id: 'u2' }, attributes: { referral_tier: 'champion' } },
      { type: 'person', action: 'event', identifiers: { id: 'u2' }, name: 'referral_converted', id: '01HZX3Y8K6ZQ2T9V7W5N4M3B2A', timestamp: 1_700_000_000 },
    ]);
    expect(batch).not.toHaveProperty('errors');
    expect(customerio.people.get('id:user/1')).toMatchObject({ email: 'a@example.com', referral_tier: 'active' });
    expect(customerio.people.get('id:u2')).toMatchObject({ referral_tier: 'champion' });
    expect([...customerio.events.values()].map((e) => e.name)).toEqual(['referral_converted']);

    const segment = new FakeSegment('wk_coexist');
    fakes.push(segment);
    const analytics = new Analytics({ writeKey: 'wk_coexist', host: await segment.start(), maxRetries: 0, flushAt: 1 });
    const errors: unknown[] = [];
    analytics.on('error', (error) => errors.push(error));
    analytics.identify({ userId: 'u3', traits: { referral_tier: 'power_referrer' } });
    await analytics.closeAndFlush();
    expect(errors).toEqual([]);
    expect(segment.identifies().map((m) => m.userId)).toEqual(['u3']);

    // fetch made its dispatcher, and it is Node's own, not the package's; our client still works beside it.
    expect(globalDispatcher()).toBeDefined();
    expect(globalDispatcher()).not.toBeInstanceOf(undici.Dispatcher);
    await expect(client.postJson('/token', { accessKeyId: 'key_id', secretAccessKey: 'secret_value' })).resolves.toHaveProperty('accessToken');
    await client.close();
  });
});
