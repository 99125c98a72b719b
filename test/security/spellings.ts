/** Spellings of request targets, for the normaliser's tests and the attack corpus against live gateways. */
import fc from 'fast-check';

const hex = (c: string, upper: boolean) => {
  const h = c.charCodeAt(0).toString(16).padStart(2, '0');
  return `%${upper ? h.toUpperCase() : h}`;
};

/** A spelling of `path` that RFC 3986 normalisation reads as `path`: what an attacker tries against auth. */
export const spelling = (path: string) =>
  fc
    .record({
      encode: fc.array(fc.boolean(), { minLength: path.length, maxLength: path.length }),
      upper: fc.boolean(),
      slashes: fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 8, maxLength: 8 }),
      dots: fc.array(fc.constantFrom('', './', 'zz/../', '%2e/', 'x/%2E%2E/'), {
        minLength: 8,
        maxLength: 8,
      }),
      trailing: fc.constantFrom('', '/', '//', '/.', '/x/..'),
      query: fc.constantFrom('', '?', '?a=1', '?x=%2F&y=..'),
    })
    .map(({ encode, upper, slashes, dots, trailing, query }) => {
      const segments = path.split('/').slice(1);
      let i = 0;
      let out = '';
      segments.forEach((segment, n) => {
        out += '/'.repeat(slashes[n % 8] as number) + (dots[n % 8] as string);
        for (const ch of segment) {
          out += /[A-Za-z0-9\-._~]/.test(ch) && encode[i] ? hex(ch, upper) : ch;
          i++;
        }
        i++;
      });
      return `${out || '/'}${trailing}${query}`;
    });

/** Targets the gateway refuses with 400 before routing: [why, raw target]. */
export const REFUSED_TARGETS: [string, string][] = [
  ['absolute-form', 'http://x/v1/chat/completions'],
  ['absolute-form, https', 'https://gateway/v1/models'],
  ['authority-form', 'gateway:443'],
  ['asterisk-form', '*'],
  ['empty', ''],
  ['backslash', '/v1\\chat/completions'],
  ['encoded backslash', '/v1%5Cchat/completions'],
  ['path parameter', '/v1/chat;x=1/completions'],
  ['path parameter at the end', '/v1/models;'],
  ['encoded NUL', '/v1/models/gpt%00'],
  ['raw NUL', '/v1/models/gpt\u0000'],
  ['raw control', '/v1/mod\u0001els'],
  ['encoded control', '/v1/models/%0a'],
  ['encoded DEL', '/v1/models/%7F'],
  ['double encoding', '/%2576%31/chat/completions'],
  ['double-encoded slash', '/v1%252Fchat/completions'],
  ['truncated escape', '/v1/models/%7'],
  ['non-hex escape', '/v1/models/%zz'],
  ['lone escape', '/v1/%'],
  ['invalid UTF-8', '/v1/models/%C3%28'],
  ['overlong UTF-8 slash', '/v1/models/%C0%AF'],
  ['raw non-ASCII', '/v1/models/gpt-é'],
  ['raw space', '/v1/models/a b'],
  ['raw quote', '/v1/models/"x"'],
  ['raw angle bracket', '/v1/<script>'],
  ['climbing above the root', '/../v1/models'],
  ['climbing above the root, encoded', '/%2e%2e/v1/models'],
  ['climbing above the root, mixed', '/v1/../../v1/models'],
  ['fragment in the query', '/v1/models?a#b'],
  ['raw space in the query', '/v1/models?a b'],
  ['over-long target', `/v1/models/${'a'.repeat(9000)}`],
];
