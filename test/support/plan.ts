import { readFileSync } from 'node:fs';

/** One line of a `diff --out` plan file. */
export interface PlanLine {
  destination: 'segment' | 'customerio';
  kind: 'identify' | 'track';
  key: string;
  userId: string;
  participantId: string;
  payload: Record<string, unknown>;
}

export function readPlan(path: string): PlanLine[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as PlanLine);
}
