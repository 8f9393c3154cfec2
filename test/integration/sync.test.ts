import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, runCliInProcess, tempDir, writeCsv } from '../support/cli.js';
import { startServices, type Services } from '../support/services.js';
import type { PlanLine } from '../support/plan.js';
import { backends, type StateLocation } from '../support/backends.js';

const FIXTURE = join(FIXTURES, 'growsurf', 'participants.csv');

let services: Services | undefined;
let state: StateLocation | undefined;
afterEach(async () => {
  await services?.stop();
  await state?.drop();
  services = undefined;
  state = undefined;
});

async function expectedPlan(cwd: string, env: Record<string, string>, args: string[] = []): Promise<PlanLine[]> {
  const out = join(cwd, `expected-${Math.random().toString(36).slice(2)}.jsonl`);
  const result = await runCliInProcess(['diff', '--file', FIXTURE, '--campaign', 'grsf_demo', '--out', out, '--quiet', ...args], { cwd, env });
  expect(result.code).toBe(0);
  return readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as PlanLine);
}

describe.each(backends())('$name state', (backend) => {
  describe('backfill into Segment and Customer.io', () => {
    it('identifies every participant with the traits and delivers every derived event exactly once', async () => {
      services = await startServices();
      state = await backend.fresh();
      const at = ['--state', state.location];
      const cwd = tempDir();
      const plan = await expectedPlan(cwd, services.env, at);
      const result = await runCliInProcess(['backfill', '--file', FIXTURE, '--campaign', 'grsf_demo', ...at], { cwd, env: services.env });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/Segment\s+146\s+0\s+0\s+0/);
      expect(result.stdout).toMatch(/Customer\.io\s+146\s+0\s+0\s+0/);

      const { segment, customerio } = services;
      // Segment: every planned message arrived once, with our messageId and the planned content.
      const segmentPlan = plan.filter((l) => l.destination === 'segment');
      expect(segment.arrivals.sort()).toEqual(segmentPlan.map((l) => l.payload.messageId as string).sort());
      const richard = segment.identifies().find((m) => m.userId === 'richard.hendricks@example.com')!;
      expect(richard.traits).toMatchObject({ referral_tier: 'champion', referral_count: 11, acquisition_channel: 'organic', referral_source: 'growsurf' });
      const erlich = segment.identifies().find((m) => m.userId === 'erlich.bachman@example.com')!;
      expect(erlich.traits).toMatchObject({ referral_tier: 'active', referred_by: 'richard.hendricks@example.com', acquisition_channel: 'referral', referral_status: 'converted' });
      expect(segment.badKeyRequests).toBe(0);

      // Customer.io: every person identified with the attribute names of DESIGN.md §4, every event once by id.
      const cioPlan = plan.filter((l) => l.destination === 'customerio');
      expect(customerio.people.size).toBe(48);
      expect(customerio.people.get('email:richard.hendricks@example.com')).toMatchObject({ referral_tier: 'champion', total_referrals: 11, first_name: 'Richard' });
      const plannedEventIds = cioPlan.filter((l) => l.kind === 'track').map((l) => l.payload.id as string);
      expect(customerio.eventArrivals.sort()).toEqual([...plannedEventIds].sort());
      expect(new Set(customerio.eventArrivals).size).toBe(customerio.eventArrivals.length);
      const made = [...customerio.events.values()].filter((e) => e.name === 'referral_friend_signed_up');
      expect(made.filter((e) => e.identifier === 'email:richard.hendricks@example.com')).toHaveLength(13);
    });

    it('sends nothing on a second sync; a second backfill sends identifies only', async () => {
      services = await startServices();
      state = await backend.fresh();
      const at = ['--state', state.location];
      const cwd = tempDir();
      expect((await runCliInProcess(['backfill', '--file', FIXTURE, '--campaign', 'grsf_demo', ...at], { cwd, env: services.env })).code).toBe(0);
      const segmentBefore = services.segment.arrivals.length;
      const cioEventsBefore = services.customerio.eventArrivals.length;
      const cioIdentifiesBefore = services.customerio.identifyArrivals.length;

      const sync = await runCliInProcess(['sync', '--file', FIXTURE, '--campaign', 'grsf_demo', ...at], { cwd, env: services.env });
      expect(sync.code).toBe(0);
      expect(services.segment.arrivals.length).toBe(segmentBefore);
      expect(services.customerio.eventArrivals.length).toBe(cioEventsBefore);
      expect(services.customerio.identifyArrivals.length).toBe(cioIdentifiesBefore);
      expect(sync.stdout).toMatch(/Segment\s+0\s+146\s+0\s+0/);

      const again = await runCliInProcess(['backfill', '--file', FIXTURE, '--campaign', 'grsf_demo', ...at], { cwd, env: services.env });
      expect(again.code).toBe(0);
      const newSegment = services.segment.arrivals.slice(segmentBefore);
      expect(newSegment).toHaveLength(48);
      expect(newSegment.every((id) => services!.segment.messages.get(id)?.type === 'identify')).toBe(true);
      expect(services.customerio.eventArrivals.length).toBe(cioEventsBefore);
      expect(services.customerio.identifyArrivals.length).toBe(cioIdentifiesBefore + 48);
    });
  });

  describe('sync', () => {
    it('--dry-run prints exactly what diff prints and sends nothing', async () => {
      services = await startServices();
      state = await backend.fresh();
      const at = ['--state', state.location];
      const cwd = tempDir();
      const diff = await runCliInProcess(['diff', '--file', FIXTURE, ...at], { cwd, env: services.env });
      const dry = await runCliInProcess(['sync', '--file', FIXTURE, '--dry-run', ...at], { cwd, env: services.env });
      expect(dry.code).toBe(0);
      expect(dry.stdout).toBe(diff.stdout);
      expect(services.segment.log.total + services.customerio.log.total).toBe(0);
    });

    it('sends only what changed, with Referral Tier Changed when a tier moves', async () => {
      services = await startServices();
      state = await backend.fresh();
      const at = ['--state', state.location];
      const cwd = tempDir();
      const people = [
        { ID: 'r1', Email: 'rita@example.com', 'Referral Count': '4', 'Created At': '2025-01-01' },
        { ID: 'f1', Email: 'fred@example.com', 'Referral Count': '0', 'Created At': '2025-01-02', 'Referred By': 'r1', 'Referral Status': 'CREDIT_PENDING' },
        { ID: 'o1', Email: 'olga@example.com', 'Referral Count': '0', 'Created At': '2025-01-03' },
      ];
      const file = writeCsv(cwd, 'export.csv', people);
      expect((await runCliInProcess(['sync', '--file', file, ...at], { cwd, env: services.env })).code).toBe(0);
      const segmentBefore = services.segment.arrivals.length;
      const cioBefore = services.customerio.eventArrivals.length;

      writeCsv(cwd, 'export.csv', [{ ...people[0]!, 'Referral Count': '5' }, { ...people[1]!, 'Referral Status': 'CREDIT_AWARDED', 'Converted At': '2025-02-01' }, people[2]!]);
      const result = await runCliInProcess(['sync', '--file', file, ...at], { cwd, env: services.env });
      expect(result.code).toBe(0);
      const sent = services.segment.arrivals.slice(segmentBefore).map((id) => services!.segment.messages.get(id)!);
      expect(sent.map((m) => `${m.type} ${m.event ?? ''} ${m.userId}`.replace('  ', ' ')).sort()).toEqual(
        ['identify fred@example.com', 'identify rita@example.com', 'track Referral Converted fred@example.com', 'track Referral Tier Changed rita@example.com'].sort(),
      );
      const tier = sent.find((m) => m.event === 'Referral Tier Changed')!;
      expect(tier.properties).toMatchObject({ previous_tier: 'active', tier: 'power_referrer', referral_count: 5 });
      const cioNew = services.customerio.eventArrivals.slice(cioBefore).map((id) => services!.customerio.events.get(id)!.name);
      expect(cioNew.sort()).toEqual(['referral_converted', 'referral_tier_changed']);
      expect(services.customerio.people.get('email:rita@example.com')).toMatchObject({ referral_tier: 'power_referrer', total_referrals: 5 });
    });
  });
});
