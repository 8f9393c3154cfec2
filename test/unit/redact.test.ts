import { describe, expect, it } from 'vitest';
import { redactUrl, redactUrls } from '../../src/redact.js';

describe('redactUrl', () => {
  it('masks a user and password, keeping scheme, host, port and path', () => {
    expect(redactUrl('http://user:pw@proxy.internal:8080/v1?x=1')).toBe('http://***@proxy.internal:8080/v1?x=1');
    expect(redactUrl('https://token@api.example.com')).toBe('https://***@api.example.com');
    expect(redactUrl('postgres://app:s3cr@t@db:5432/state?sslmode=require')).toBe('postgres://***@db:5432/state?sslmode=require');
    // Not a valid URL, still a password.
    expect(redactUrl('http://user:p/w@host/x')).toBe('http://***@host/x');
  });

  it('masks credential-named query values and leaves data such as a referral code alone', () => {
    expect(redactUrl('https://api.example.com/v2?api_key=abc&campaign=c1&access_token=t#frag')).toBe('https://api.example.com/v2?api_key=***&campaign=c1&access_token=***#frag');
    expect(redactUrl('https://example.com/?grsf=abc123&ucc=XY')).toBe('https://example.com/?grsf=abc123&ucc=XY');
  });

  it('leaves URLs without credentials unchanged', () => {
    expect(redactUrl('http://127.0.0.1:4000')).toBe('http://127.0.0.1:4000');
  });
});

describe('redactUrls', () => {
  it('redacts every URL inside a message, such as fetch echoing the URL it refused', () => {
    const message = 'Request cannot be constructed from a URL that includes credentials: http://user:hunter2@127.0.0.1:9/v1/batch';
    expect(redactUrls(message)).toBe('Request cannot be constructed from a URL that includes credentials: http://***@127.0.0.1:9/v1/batch');
    expect(redactUrls('{"url":"https://a:b@x.io/p","other":"http://ok.io"}')).toBe('{"url":"https://***@x.io/p","other":"http://ok.io"}');
    expect(redactUrls('no scheme: user:pw@host')).toBe('no scheme: ***@host');
    expect(redactUrls('an email is not a secret: a@b.com')).toBe('an email is not a secret: a@b.com');
    expect(redactUrls('bad (https://u:p@x.io/v2?api_key=k), then.')).toBe('bad (https://***@x.io/v2?api_key=***), then.');
  });
});

describe('mistyped URLs still hide their password', () => {
  it.each([
    ['alice:hunter2@127.0.0.1:8080', '***@127.0.0.1:8080'],
    ['//alice:hunter2@proxy.internal', '//***@proxy.internal'],
    ['http:alice:hunter2@proxy.internal', '***@proxy.internal'],
    ['SEGMENT_HOST must be an http:// or https:// URL, not "alice:hunter2@127.0.0.1:9".', 'SEGMENT_HOST must be an http:// or https:// URL, not "***@127.0.0.1:9".'],
  ])('%s', (input, expected) => {
    expect(redactUrl(input)).toBe(expected);
    expect(redactUrls(input)).toBe(expected);
  });
});
