/**
 * JSON output whose arrays may be far too long to hold in memory (every invalid row of a million-row file,
 * every dead delivery): the document is written in chunks, and a `StreamedArray` is pulled item by item
 * where it sits. The text is exactly what `JSON.stringify(value, null, indent)` would give with the arrays in place.
 */

/** An array read when it is written, from a source that can be iterated once. */
export class StreamedArray {
  constructor(readonly items: () => AsyncIterable<unknown>) {}
}

/** Items are gathered into chunks of about this many characters before they are handed to the stream. */
const CHUNK_CHARS = 64 * 1024;

export async function* jsonChunks(value: unknown, indent?: number): AsyncGenerator<string> {
  const arrays: StreamedArray[] = [];
  const marker = `@@referral-sync-streamed-array-${Math.random().toString(36).slice(2)}`;
  const text = JSON.stringify(
    value,
    (_key, item: unknown) => {
      if (!(item instanceof StreamedArray)) return item;
      arrays.push(item);
      return `${marker}-${arrays.length - 1}@@`;
    },
    indent,
  );
  let from = 0;
  for (let index = 0; index < arrays.length; index += 1) {
    const token = JSON.stringify(`${marker}-${index}@@`);
    const at = text.indexOf(token, from);
    yield text.slice(from, at);
    const lineStart = text.lastIndexOf('\n', at) + 1;
    const lineIndent = /^ */.exec(text.slice(lineStart, at))![0];
    yield* arrayChunks(arrays[index]!, indent, lineIndent);
    from = at + token.length;
  }
  yield text.slice(from);
}

async function* arrayChunks(array: StreamedArray, indent: number | undefined, lineIndent: string): AsyncGenerator<string> {
  const itemIndent = indent ? lineIndent + ' '.repeat(indent) : '';
  let chunk = '[';
  let first = true;
  for await (const item of array.items()) {
    const json = JSON.stringify(item, null, indent) ?? 'null';
    chunk += `${first ? '' : ','}${indent ? `\n${itemIndent}${json.replaceAll('\n', `\n${itemIndent}`)}` : json}`;
    first = false;
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk;
      chunk = '';
    }
  }
  yield `${chunk}${!first && indent ? `\n${lineIndent}` : ''}]`;
}
