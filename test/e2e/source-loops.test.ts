import { join } from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import { openSqliteStateReadOnly } from '../../src/state/sqlite/store.js';
import { FakeGrowsurf, generateGrowsurfProgram, type FakeParticipant } from '../fakes/growsurf.js';
import { runCli, tempDir, type CliResult } from '../support/cli.js';
import { startServices } from '../support/services.js';

/**
 * Issue 17's example of guarantee 2, against the built CLI: a GrowSurf API whose `nextId` cursor cycles between
 * two pages (4 participants, 2 a page) used to be still paging after 25 s, 123 requests in. It must end at
 * once, exit 69, with one sentence naming GrowSurf and the cursor that came back, and no stack trace.
 */

const GS_KEY = 'gs_key_e2e_loops_51c0';

async function cyclingGrowsurf(onTestFinished: TestContext['onTestFinished']): Promise<{ fake: FakeGrowsurf; env: Record<string, string> }> {
  const program = generateGrowsurfProgram(4, 17);
  const fake = new FakeGrowsurf(GS_KEY, program);
  const [p0, p1, p2, p3] = program.participants.map((p) => ({ ...p, referredBy: undefined })) as FakeParticipant[];
  // First page p0,p1 → nextId p2; page p2 gives p2,p3 → nextId p0; page p0 gives p0,p1 → nextId p2; and so on.
  fake.rewritePage = (listing, page, asked) => {
    if (listing === 'referrals') return { referrals: page.items, limit: page.limit, nextId: page.nextId, more: page.nextId !== null };
    return asked === p2!.id ? { participants: [p2, p3], limit: 2, nextId: p0!.id } : { participants: [p0, p1], limit: 2, nextId: p2!.id };
  };
  onTestFinished(() => fake.stop());
  const url = await fake.start();
  return { fake, env: { GROWSURF_API_KEY: GS_KEY, GROWSURF_API_URL: `${url}/v2`, GROWSURF_CAMPAIGN_ID: program.campaignId } };
}

function expectCycleStopped(result: CliResult, fake: FakeGrowsurf): void {
  expect(result.code).toBe(69);
  const errors = result.stderr.split('\n').filter((line) => line.startsWith('error: '));
  expect(errors).toEqual([
    `error: GrowSurf's nextId cursor came back to a page already read (nextId "${fake.program.participants[2]!.id}") after 3 pages and 4 participants; the listing would never end, so it was stopped.`,
  ]);
  expect(result.stderr).toMatch(/GrowSurf's API is misbehaving; run again later/);
  expect(result.stderr).not.toMatch(/\n\s+at |TypeError|Error:/);
  expect(result.stdout + result.stderr).not.toContain(GS_KEY);
  // The campaign, the referrals, three participant pages (the third is the first served again): nothing more.
  expect(fake.requestsByKind.get('participants')).toBe(3);
  expect(fake.log.total).toBeLessThanOrEqual(6);
}

describe('a GrowSurf nextId cursor that cycles between two pages (issue 17, guarantee 2), built CLI', () => {
  it('diff: exit 69 with one sentence, after three participant pages', async ({ onTestFinished }) => {
    const { fake, env } = await cyclingGrowsurf(onTestFinished);
    const result = await runCli(['diff', '--source', 'growsurf'], { cwd: tempDir(), env });
    expectCycleStopped(result, fake);
  });

  it('sync: exit 69 with the same sentence; the run is not left running', async ({ onTestFinished }) => {
    const { fake, env } = await cyclingGrowsurf(onTestFinished);
    const services = await startServices();
    onTestFinished(() => services.stop());
    const cwd = tempDir();
    const state = join(cwd, 'state.db');
    const result = await runCli(['sync', '--source', 'growsurf', '--state', state], { cwd, env: { ...env, ...services.env } });
    expectCycleStopped(result, fake);
    const store = openSqliteStateReadOnly(state);
    try {
      const { runs } = await store.summary(5);
      expect(runs.length).toBeGreaterThan(0);
      expect(runs.map((r) => r.status)).not.toContain('running');
    } finally {
      await store.close();
    }
  });
});
