import type { Participant } from '../../src/model/participant.js';

/** A participant with sensible defaults; tests override only what they are about. */
export function participant(overrides: Partial<Participant> & { id: string }): Participant {
  return {
    source: 'growsurf',
    programId: 'camp1',
    email: `${overrides.id}@example.com`,
    createdAt: new Date('2025-05-01T10:00:00Z'),
    rewards: [],
    metadata: {},
    ...overrides,
  };
}

export async function* records(list: Participant[]): AsyncGenerator<{ kind: 'participant'; participant: Participant }> {
  for (const p of list) yield { kind: 'participant', participant: p };
}
