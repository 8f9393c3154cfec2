import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCliInProcess } from './cli.js';

/** One operation line of a `diff --out` plan file. */
export interface PlanLine {
  destination: 'segment' | 'customerio';
  kind: 'identify' | 'track' | 'group' | 'object' | 'relationship';
  key: string;
  userId: string;
  participantId: string;
  payload: Record<string, unknown>;
}

/** An invalid-row or warning line of a plan file. */
export interface PlanProblemLine {
  type: 'invalid' | 'warning';
  file: string | null;
  line: number | null;
  reason: string;
  participantId?: string;
  destination?: 'segment' | 'customerio';
  limits?: { limit: string; size: number; max: number; attribute?: string }[];
}

function lines(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The operations of a plan file (its invalid-row and warning lines left out). */
export function readPlan(path: string): PlanLine[] {
  return lines(path).filter((line) => line.type === undefined || line.type === 'operation') as unknown as PlanLine[];
}

/** The invalid-row and warning lines of a plan file. */
export function readPlanProblems(path: string): PlanProblemLine[] {
  return lines(path).filter((line) => line.type === 'invalid' || line.type === 'warning') as unknown as PlanProblemLine[];
}

/** The ids a sync would send, from `diff --out`: Segment messageIds and Customer.io event ids. */
export async function plannedIds(cwd: string, file: string, env: Record<string, string>): Promise<{ segment: string[]; customerioEvents: string[] }> {
  const out = join(cwd, 'plan.jsonl');
  expect((await runCliInProcess(['diff', '--file', file, '--out', out, '--quiet'], { cwd, env })).code).toBe(0);
  const plan = readPlan(out);
  return {
    segment: plan.filter((l) => l.destination === 'segment').map((l) => l.payload.messageId as string),
    customerioEvents: plan.filter((l) => l.destination === 'customerio' && l.kind === 'track').map((l) => l.payload.id as string),
  };
}
