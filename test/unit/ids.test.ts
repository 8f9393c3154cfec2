import { describe, expect, it } from 'vitest';
import { customerioEventId, operationKey, segmentMessageId, stableHash } from '../../src/model/ids.js';

const parts = { namespace: 'default/segment/-', source: 'growsurf', programId: 'camp1', kind: 'joined', subjectId: 'p1', objectId: '' };

describe('operation ids', () => {
  // Pinned values: if these change, every user's re-run would send duplicates. They must be the same on
  // every machine, Node version and run.
  // The expected key is `printf 'default/segment/-|growsurf|camp1|joined|p1|' | sha256sum`.
  it('gives the same key on every run and machine', () => {
    const key = operationKey(parts);
    expect(key).toBe('e8f79e2feac0d4ee61ec135ef9da700a5b926c6add1f794f886b4ceac874fd02');
    expect(segmentMessageId(key)).toBe('rs1-e8f79e2feac0d4ee61ec135ef9da700a5b926c6a');
    expect(customerioEventId(key, new Date('2025-05-01T10:00:00.000Z'))).toBe('01JT5MKV80X3VSWBZAR3AEWRFC');
  });

  it('does not let a "|" inside a part collide with the separator', () => {
    const a = operationKey({ ...parts, subjectId: 'a|b', objectId: '' });
    const b = operationKey({ ...parts, subjectId: 'a', objectId: 'b' });
    expect(a).not.toBe(b);
  });

  it('makes Segment messageIds of 44 characters from the key', () => {
    const key = operationKey(parts);
    const id = segmentMessageId(key);
    expect(id).toMatch(/^rs1-[0-9a-f]{40}$/);
    expect(id.length).toBeLessThan(100);
  });

  it('makes Customer.io ULIDs whose time part is the event time', () => {
    const key = operationKey(parts);
    const time = new Date('2025-05-01T10:00:00.000Z');
    const ulid = customerioEventId(key, time);
    expect(ulid).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(decodeUlidTime(ulid)).toBe(time.getTime());
    expect(customerioEventId(key, time)).toBe(ulid);
    expect(customerioEventId(operationKey({ ...parts, subjectId: 'p2' }), time)).not.toBe(ulid);
  });

  it('hashes traits independently of key order', () => {
    expect(stableHash({ a: 1, b: 'x' })).toBe(stableHash({ b: 'x', a: 1 }));
    expect(stableHash({ a: 1 })).not.toBe(stableHash({ a: 2 }));
  });
});

function decodeUlidTime(ulid: string): number {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  return [...ulid.slice(0, 10)].reduce((acc, ch) => acc * 32 + alphabet.indexOf(ch), 0);
}
