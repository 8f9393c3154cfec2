import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runPlan } from '../../src/cli/run/plan-run.js';
import { Output } from '../../src/cli/output/output.js';
import { destinationNamespaces } from '../../src/cli/wiring/settings.js';
import { defaultConfig } from '../../src/config/config.js';
import { stableHash } from '../../src/model/ids.js';
import type { TraitMap } from '../../src/model/traits.js';
import type { BaselineView } from '../../src/plan/types.js';
import { growsurfCsvSource } from '../../src/sources/growsurf/csv.js';
import { PrefetchedBaseline } from '../../src/state/baseline.js';
import { openSqliteStateForWriting, type SqliteState } from '../../src/state/sqlite/store.js';
import { openPostgresStateForWriting } from '../../src/state/postgres/store.js';
import { POSTGRES_SKIP_NOTE, postgresBackend } from '../support/backends.js';
import { FIXTURES, tempDir } from '../support/cli.js';
import { readPlan } from '../support/plan.js';
import { writeProgram } from '../support/program.js';

const NOW = new Date('2026-03-01T12:00:00Z');
const RUN_ID = 3;

/** `diff --out` through plan-run, over the baseline given: the plan file's text and the summary. */
async function planFile(file: string, programId: string, baseline: BaselineView, out: string): Promise<{ plan: string; summary: unknown }> {
  const config = defaultConfig();
  const output = new Output({ stdout: new PassThrough(), stderr: new PassThrough() }, { logFormat: 'text', quiet: true, verbose: false, progress: false });
  const summary = await runPlan({
    source: growsurfCsvSource({ files: [file], programId, config, now: NOW }),
    config,
    destinations: ['segment', 'customerio'],
    mode: 'sync',
    resend: false,
    now: NOW,
    namespaces: destinationNamespaces(config, {}),
    baseline,
    changeLimit: 10,
    outFile: out,
    output,
  });
  return { plan: readFileSync(out, 'utf8'), summary: summary.toJSON() };
}

/** A state as earlier syncs left it: some of this plan acknowledged (a few tiers since moved), some refused for good, some sent by this run. */
async function seed(state: Pick<SqliteState, 'saveIdentities' | 'recordDeliveries'>, planPath: string): Promise<void> {
  const plan = readPlan(planPath);
  const at = new Date('2026-01-01T00:00:00Z');
  const identifies = plan.filter((line, i) => line.kind === 'identify' && i % 3 !== 0);
  await state.saveIdentities(
    identifies.map((line, i) => {
      const traits = { ...((line.destination === 'segment' ? line.payload.traits : line.payload.attributes) as TraitMap) };
      if (i % 4 === 0) traits.referral_tier = 'new_participant';
      return { destination: line.destination, userId: line.userId, traits, hash: stableHash(traits), tierChanges: i % 7 };
    }),
    at,
  );
  const tracks = plan.filter((line) => line.kind === 'track');
  const row = (line: (typeof tracks)[number], status: 'sent' | 'dead') => ({ destination: line.destination, key: line.key, kind: 'track', userId: line.userId, status, runId: 1 });
  await state.recordDeliveries(tracks.filter((_, i) => i % 2 === 0).map((line) => row(line, 'sent')), at);
  await state.recordDeliveries(tracks.filter((_, i) => i % 11 === 1).map((line) => row(line, 'dead')), at);
  await state.recordDeliveries(tracks.filter((_, i) => i % 13 === 3).map((line) => ({ ...row(line, 'sent'), runId: RUN_ID })), at);
}

describe('plan-run over a baseline loaded a chunk at a time (what an async backend does)', () => {
  it('writes the reviewed plan of the bundled fixture from an empty state', async () => {
    const dir = tempDir();
    const state = openSqliteStateForWriting(join(dir, 'state.db'));
    const { plan } = await planFile(join(FIXTURES, 'growsurf', 'participants.csv'), 'grsf_demo', new PrefetchedBaseline(state), join(dir, 'plan.jsonl'));
    await state.close();
    expect(plan).toBe(readFileSync(join(FIXTURES, 'growsurf', 'expected-plan.jsonl'), 'utf8'));
  });

  it('plans 1,200 participants (three chunks) exactly as the direct SQLite baseline does, against a state with history', async () => {
    const dir = tempDir();
    const file = writeProgram(dir, 1_200);
    const state = openSqliteStateForWriting(join(dir, 'state.db'));
    const first = await planFile(file, 'p1', state.baseline(RUN_ID), join(dir, 'first.jsonl'));
    await seed(state, join(dir, 'first.jsonl'));
    const direct = await planFile(file, 'p1', state.baseline(RUN_ID), join(dir, 'direct.jsonl'));
    const prefetched = await planFile(file, 'p1', new PrefetchedBaseline(state, RUN_ID), join(dir, 'prefetched.jsonl'));
    await state.close();
    // The state changes the plan (changed identifies, tier changes, deduped events) and both views agree on all of it.
    expect(direct.plan).not.toBe(first.plan);
    expect(direct.plan).toContain('Referral Tier Changed');
    expect(prefetched.plan).toBe(direct.plan);
    expect(prefetched.summary).toEqual(direct.summary);
  });

  const postgres = postgresBackend();
  it.skipIf(!postgres)(`plans the same 1,200 participants over a PostgreSQL state with the same history (${postgres ? 'REFERRAL_SYNC_TEST_POSTGRES' : POSTGRES_SKIP_NOTE})`, async () => {
    const dir = tempDir();
    const file = writeProgram(dir, 1_200);
    const sqlite = openSqliteStateForWriting(join(dir, 'state.db'));
    const location = await postgres!.fresh();
    const pg = await openPostgresStateForWriting(location.location);
    try {
      await planFile(file, 'p1', sqlite.baseline(RUN_ID), join(dir, 'first.jsonl'));
      await seed(sqlite, join(dir, 'first.jsonl'));
      await seed(pg, join(dir, 'first.jsonl'));
      const direct = await planFile(file, 'p1', sqlite.baseline(RUN_ID), join(dir, 'direct.jsonl'));
      const overPostgres = await planFile(file, 'p1', pg.baseline(RUN_ID), join(dir, 'postgres.jsonl'));
      expect(direct.plan).toContain('Referral Tier Changed');
      expect(overPostgres.plan).toBe(direct.plan);
      expect(overPostgres.summary).toEqual(direct.summary);
    } finally {
      await sqlite.close();
      await pg.close();
      await location.drop();
    }
  });
});
