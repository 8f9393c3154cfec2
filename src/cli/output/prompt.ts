import { createInterface } from 'node:readline';
import { terminalSafe } from '../../terminal-text.js';

/** Where a question is asked: the terminal's input, and stderr (stdout keeps the result alone). */
export interface PromptStreams {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

/** Answers a person may give that are not an exact choice, tried after it: the choice's first letter, when it is unique. */
function matchChoice<T extends string>(answer: string, choices: readonly T[]): T | undefined {
  const text = answer.trim().toLowerCase();
  if (text === '') return undefined;
  const exact = choices.find((choice) => choice === text);
  if (exact) return exact;
  const prefixed = choices.filter((choice) => choice.startsWith(text));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/**
 * Asks `question` and waits for one of `choices` (a unique prefix counts); a line that is none of them asks again,
 * up to `attempts` times. Resolves undefined when the input ends (Ctrl-D), the attempts run out, or `signal` aborts.
 */
export async function askChoice<T extends string>(
  streams: PromptStreams,
  question: string,
  choices: readonly T[],
  options: { signal?: AbortSignal; attempts?: number } = {},
): Promise<T | undefined> {
  const attempts = options.attempts ?? 3;
  // Not a readline "terminal": the terminal itself echoes what is typed; readline only splits lines.
  const lines = createInterface({ input: streams.input, terminal: false });
  const iterator = lines[Symbol.asyncIterator]();
  const aborted = new Promise<undefined>((resolve) => {
    if (options.signal?.aborted) resolve(undefined);
    options.signal?.addEventListener('abort', () => resolve(undefined), { once: true });
  });
  try {
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      streams.output.write(terminalSafe(attempt === 0 ? question : `Please answer ${choices.join(', ')}: `));
      const next = await Promise.race([iterator.next(), aborted]);
      if (next === undefined || next.done) return undefined;
      const choice = matchChoice(next.value, choices);
      if (choice !== undefined) return choice;
    }
    return undefined;
  } finally {
    lines.close();
  }
}
