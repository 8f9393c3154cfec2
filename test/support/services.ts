import type { TestContext } from 'vitest';
import { FakeCustomerio } from '../fakes/customerio.js';
import type { FaultOptions } from '../fakes/http.js';
import { FakeSegment } from '../fakes/segment.js';

export const SEGMENT_KEY = 'seg_wk_test_4d7e0c1a9b';
export const CIO_SITE = 'site_test_8f2';
export const CIO_KEY = 'cio_key_test_71c3e9aa';

export interface Services {
  segment: FakeSegment;
  customerio: FakeCustomerio;
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** Both fake destinations on loopback, and the environment that points the CLI at them. */
export async function startServices(faults: { segment?: FaultOptions; customerio?: FaultOptions } = {}): Promise<Services> {
  const segment = new FakeSegment(SEGMENT_KEY, faults.segment);
  const customerio = new FakeCustomerio(CIO_SITE, CIO_KEY, faults.customerio);
  const segmentUrl = await segment.start();
  const customerioUrl = await customerio.start();
  return {
    segment,
    customerio,
    env: {
      SEGMENT_WRITE_KEY: SEGMENT_KEY,
      SEGMENT_HOST: segmentUrl,
      CUSTOMERIO_SITE_ID: CIO_SITE,
      CUSTOMERIO_API_KEY: CIO_KEY,
      CUSTOMERIO_TRACK_URL: customerioUrl,
    },
    stop: async () => {
      await segment.stop();
      await customerio.stop();
    },
  };
}

/**
 * Both fakes for one test, stopped when it finishes: for tests that run concurrently (`describe.concurrent`),
 * which cannot share one module-level pair. Pass the test context's `onTestFinished` (the global one does not
 * know which of the concurrent tests it is called from).
 */
export async function startServicesFor(onTestFinished: TestContext['onTestFinished'], faults: { segment?: FaultOptions; customerio?: FaultOptions } = {}): Promise<Services> {
  const services = await startServices(faults);
  onTestFinished(() => services.stop());
  return services;
}
