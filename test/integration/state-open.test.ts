import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../../src/errors.js';
import { assertStateLocation, openState, stateExists } from '../../src/state/open.js';
import { tempDir } from '../support/cli.js';

describe('openState: the one place a backend is chosen', () => {
  it.each([
    ['postgres://rs:secret@db.example.com/state?schema=Bad-Name', /names the schema "Bad-Name"/],
    ['postgresql://rs:secret@[db.example.com/state', /is not a valid PostgreSQL URL/],
  ])('refuses the PostgreSQL URL %s with a usage error (exit 64) that hides its password, before connecting', async (url, message) => {
    expect(() => assertStateLocation(url)).toThrow(message);
    for (const mode of ['read', 'write'] as const) {
      const refusal = openState(url, { mode }).then(() => undefined, (error: unknown) => error);
      await expect(refusal).resolves.toBeInstanceOf(UsageError);
      await expect(refusal).resolves.toMatchObject({ exitCode: ExitCode.usage });
      expect(String(((await refusal) as Error).message)).not.toContain('secret');
    }
  });

  it('reads a state that does not exist as empty, and creates nothing', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.db');
    const state = await openState(path, { mode: 'read' });
    expect((await state.summary(10)).schemaVersion).toBe(0);
    expect(await state.locks()).toEqual([]);
    const problems = [];
    for await (const problem of state.allProblems()) problems.push(problem);
    expect(problems).toEqual([]);
    await state.close();
    expect(await stateExists(path)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('creates a state for writing, which then exists', async () => {
    const path = join(tempDir(), 'nested', 'state.db');
    const state = await openState(path, { mode: 'write' });
    const runId = await state.startRun('sync', 'p1', new Date('2026-01-01T00:00:00Z'));
    await state.finishRun(runId, 'succeeded', { sent: 0 }, new Date('2026-01-01T00:00:01Z'));
    await state.close();
    expect(existsSync(path)).toBe(true);
    expect(await stateExists(path)).toBe(true);
    const reader = await openState(path, { mode: 'read' });
    expect((await reader.summary(10)).runs).toMatchObject([{ id: runId, command: 'sync', programId: 'p1', status: 'succeeded' }]);
    await reader.close();
  });
});
