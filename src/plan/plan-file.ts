import type { Operation } from './types.js';

/** One line of `diff --out plan.jsonl`: the operation and the exact payload it would send. */
export function planFileLine(operation: Operation): string {
  const line: Record<string, unknown> = {
    destination: operation.destination,
    kind: operation.kind,
  };
  if (operation.kind === 'track') {
    line.event = operation.event;
    line.name = operation.name;
  } else {
    line.change = operation.change;
  }
  line.key = operation.key;
  line.userId = operation.userId;
  line.participantId = operation.participantId;
  line.payload = operation.payload;
  return `${JSON.stringify(line)}\n`;
}
