/**
 * Hostile input (issue 8): property-based tests (fast-check, bounded runs) over request bodies, headers and query
 * strings against a live gateway with a simulated upstream. Properties: never a 500 from the gateway itself (a
 * 5xx is only ever the gateway reporting an upstream failure, `type: upstream_error`); every error the client
 * gets is OpenAI-shaped `{"error":{"message","type","param","code"}}`; the gateway stays healthy. And oversized
 * bodies get 413 before they are read whole.
 */
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JSON_ENDPOINTS, MULTIPART_ENDPOINTS } from '../../src/gateway/app.ts';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { conn, type Harness, mock, startGateway } from '../gateway/helpers.ts';
import { propertyRun } from '../support/property.ts';

const RUNS = 200;
const MODELS = ['gpt-4o', 'text-embedding-3-small', 'tts-1', 'whisper-1', 'dall-e-3', 'vendor/model:tag'];
const KEY = 'pb-hostile-0123456789';

let upstream: MockProvider;
let open: Harness;
let keyed: Harness;
beforeAll(async () => {
  upstream = await mock({ profile: 'openai', models: MODELS });
  const c = conn(upstream, { name: 'mock', models: MODELS });
  open = await startGateway([c], { maxJsonBody: 64 * 1024, maxMultipartBody: 256 * 1024 });
  keyed = await startGateway([c], {
    clientKeys: new StaticClientKeys(
      JSON.stringify([
        { name: 'all', key: KEY },
        { name: 'some', key: `${KEY}-some`, models: ['gpt-*'] },
      ]),
    ),
  });
});
afterAll(async () => {
  await open?.close();
  await keyed?.close();
  await upstream?.close();
});

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

/** The properties every answer must have; returns a description of the violation, or undefined. */
function violation(a: Answer): string | undefined {
  if (a.status === 500) return `500 from the gateway: ${a.text.slice(0, 300)}`;
  if (a.status < 400) return undefined;
  if (!a.contentType.startsWith('application/json'))
    return `error without JSON: ${a.status} ${a.contentType}`;
  let j: { error?: Record<string, unknown> };
  try {
    j = JSON.parse(a.text);
  } catch {
    return `error body is not JSON: ${a.text.slice(0, 200)}`;
  }
  const e = j.error;
  if (!e || typeof e !== 'object') return `no error object: ${a.text.slice(0, 200)}`;
  if (typeof e.message !== 'string' || typeof e.type !== 'string')
    return `bad error: ${a.text.slice(0, 200)}`;
  if (!('param' in e) || !(e.param === null || typeof e.param === 'string'))
    return `error.param missing: ${a.text.slice(0, 200)}`;
  if (!('code' in e) || !(e.code === null || typeof e.code === 'string'))
    return `error.code missing: ${a.text.slice(0, 200)}`;
  if (a.status >= 500 && e.type !== 'upstream_error' && e.code !== 'unavailable')
    return `5xx not caused by an upstream: ${a.text.slice(0, 200)}`;
  return undefined;
}

async function send(
  h: Harness,
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string>,
  body?: Buffer | string,
): Promise<Answer> {
  const r = await request(`${h.url}${path}`, {
    method,
    headers,
    body,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  return {
    status: r.statusCode,
    contentType: String(r.headers['content-type'] ?? ''),
    text: await r.body.text(),
  };
}

const modelArb = fc.oneof(
  fc.constantFrom(...MODELS),
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 300 }),
  fc.constantFrom('', ' ', '../../etc/passwd', '%00', 'gpt-4o\u0000', 'a'.repeat(5000), '*', 'gpt-*'),
  fc.integer(),
  fc.constant(null),
  fc.boolean(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.object({ maxDepth: 2 }),
);

/** Request-shaped JSON with hostile values, and anything else JSON can be. */
const jsonBodyArb = fc.oneof(
  fc
    .record(
      {
        model: modelArb,
        messages: fc.oneof(
          fc.array(
            fc.record({
              role: fc.constantFrom('user', 'system', 'assistant', 'tool', 'x'),
              content: fc.jsonValue(),
            }),
            {
              maxLength: 4,
            },
          ),
          fc.jsonValue(),
        ),
        stream: fc.oneof(fc.boolean(), fc.jsonValue()),
        stream_options: fc.oneof(fc.record({ include_usage: fc.jsonValue() }), fc.jsonValue()),
        input: fc.jsonValue(),
        max_tokens: fc.oneof(fc.integer(), fc.double(), fc.string()),
        n: fc.jsonValue(),
        __proto__: fc.jsonValue(),
        constructor: fc.jsonValue(),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify(o)),
  fc.json({ maxDepth: 4 }),
  fc.jsonValue({ maxDepth: 30 }).map((v) => JSON.stringify({ model: 'gpt-4o', deep: v })),
  fc.nat({ max: 2000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`),
  fc.nat({ max: 2000 }).map((n) => `{"model":"gpt-4o","x":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`),
  fc.string(),
  fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b).toString('latin1')),
);

const contentTypeArb = fc.oneof(
  fc.constant('application/json'),
  fc.constantFrom(
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data',
    'multipart/form-data; boundary=',
    'multipart/form-data; boundary=xyz',
    'application/json; charset=utf-16',
    'application/octet-stream',
    '*/*',
    '',
  ),
  fc.stringMatching(/^[a-z]{1,10}\/[a-z0-9.+-]{1,20}(; ?[a-z]{1,8}=[a-zA-Z0-9-]{0,20})?$/),
);

/** Header names (RFC 9110 tokens) and values (visible ASCII and spaces) undici accepts. */
const headerNameArb = fc.stringMatching(/^[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,40}$/);
const headerValueArb = fc.oneof(
  fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,200}$/),
  fc.constantFrom(
    'Bearer',
    'Bearer ',
    `Bearer ${KEY}`,
    `bearer ${KEY}`,
    `Bearer ${KEY}-some`,
    `Basic ${KEY}`,
    'Bearer '.repeat(100),
  ),
);

describe('property-based hostile input', () => {
  it(`request bodies (${RUNS} cases): no 500, OpenAI-shaped errors`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...JSON_ENDPOINTS, ...MULTIPART_ENDPOINTS),
        contentTypeArb,
        jsonBodyArb,
        async (endpoint, ctype, body) => {
          const a = await send(open, 'POST', `/v1/${endpoint}`, ctype ? { 'content-type': ctype } : {}, body);
          const v = violation(a);
          if (v)
            throw new Error(`POST /v1/${endpoint} (${ctype}) ${JSON.stringify(body).slice(0, 300)}: ${v}`);
        },
      ),
      propertyRun('hostile request bodies', RUNS),
    );
  }, 60_000);

  it(`headers (${RUNS} cases), with client keys required: no 500, OpenAI-shaped errors`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(headerNameArb, headerValueArb, { maxKeys: 8 }),
        fc.record(
          {
            authorization: headerValueArb,
            'x-request-id': headerValueArb,
            accept: headerValueArb,
            'openai-beta': headerValueArb,
            'content-type': contentTypeArb,
          },
          { requiredKeys: [] },
        ),
        fc.constantFrom(
          'GET /v1/models',
          'GET /v1/models/gpt-4o',
          'POST /v1/chat/completions',
          'GET /api/connections',
        ),
        async (random, known, route) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries({ ...random, ...known })) {
            const lk = k.toLowerCase();
            // framing headers are the client library's business; undici refuses to let callers set them
            if (
              [
                'host',
                'content-length',
                'transfer-encoding',
                'connection',
                'keep-alive',
                'upgrade',
                'expect',
                'te',
                'trailer',
              ].includes(lk)
            )
              continue;
            if (v) headers[lk] = v;
          }
          const [method, path] = route.split(' ') as ['GET' | 'POST', string];
          const body =
            method === 'POST'
              ? JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
              : undefined;
          const a = await send(keyed, method, path, headers, body);
          const v = violation(a);
          if (v) throw new Error(`${route} ${JSON.stringify(headers).slice(0, 400)}: ${v}`);
          // the gateway's request ID is echoed only when it is a safe token
          if (a.status >= 400) expect(a.text).not.toContain(KEY);
        },
      ),
      propertyRun('hostile headers', RUNS),
    );
  }, 60_000);

  it(`paths and query strings (${RUNS} cases): no 500, OpenAI-shaped errors under /v1 and /api`, async () => {
    const segment = fc.oneof(
      fc.string({ maxLength: 40 }).map(encodeURIComponent),
      fc.constantFrom(
        '..',
        '.',
        '%2e%2e',
        '%2F',
        '%00',
        '%ff',
        '%',
        '%%',
        '~',
        'gpt-4o',
        'vendor%2Fmodel%3Atag',
        '*',
      ),
    );
    const query = fc
      .array(fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 60 })), { maxLength: 5 })
      .map((pairs) => pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&'));
    const rawQuery = fc.stringMatching(/^[\x21-\x7e]{0,80}$/).map((s) => s.replaceAll('#', '%23'));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          '/v1/models',
          '/v1/models/',
          '/v1/chat/completions',
          '/v1/',
          '/api/connections',
          '/api/',
          '/healthz',
          '/readyz',
          '/',
        ),
        fc.array(segment, { maxLength: 3 }),
        fc.oneof(query, rawQuery),
        fc.constantFrom('GET', 'POST') as fc.Arbitrary<'GET' | 'POST'>,
        async (base, segments, q, method) => {
          const path = `${base}${segments.join('/')}${q ? `?${q}` : ''}`;
          const body = method === 'POST' ? JSON.stringify({ model: 'gpt-4o', messages: [] }) : undefined;
          const a = await send(
            open,
            method,
            path,
            method === 'POST' ? { 'content-type': 'application/json' } : {},
            body,
          );
          if (a.status === 500) throw new Error(`${method} ${path}: 500 ${a.text.slice(0, 300)}`);
          if (a.status >= 400 && (path.startsWith('/v1') || path.startsWith('/api'))) {
            const v = violation(a);
            if (v) throw new Error(`${method} ${path}: ${v}`);
          }
        },
      ),
      propertyRun('hostile paths and query strings', RUNS),
    );
    // still healthy, still serving
    expect((await fetch(`${open.url}/readyz`)).status).toBe(200);
    expect(
      (
        await open
          .client()
          .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      ).choices,
    ).toHaveLength(1);
  }, 60_000);
});

describe('oversized bodies get 413 before they are read whole', () => {
  /** Sends a declared or chunked body slowly; resolves with the response and how many bytes were sent by then. */
  async function oversized(
    path: string,
    headers: Record<string, string>,
    prefix: string,
    total: number,
  ): Promise<{ status: number; sent: number; text: string }> {
    const req = httpRequest(`${open.url}${path}`, { method: 'POST', headers });
    req.on('error', () => undefined);
    let sent = 0;
    let answered = false;
    const response = once(req, 'response') as Promise<[IncomingMessage]>;
    void response.then(() => {
      answered = true;
    });
    req.write(prefix);
    sent += prefix.length;
    const chunk = Buffer.alloc(16 * 1024, 0x61);
    while (!answered && sent < total) {
      if (!req.write(chunk)) await Promise.race([once(req, 'drain'), response]);
      sent += chunk.length;
      await new Promise((r) => setImmediate(r));
    }
    const [res] = await response;
    let text = '';
    for await (const c of res) text += c;
    req.destroy();
    return { status: res.statusCode ?? 0, sent, text };
  }

  it('declared Content-Length over the limit: 413 at once, with only the first bytes sent', async () => {
    for (const [path, ctype, prefix] of [
      [
        '/v1/chat/completions',
        'application/json',
        '{"model":"gpt-4o","messages":[{"role":"user","content":"',
      ],
      [
        '/v1/audio/transcriptions',
        'multipart/form-data; boundary=XyZ',
        '--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n',
      ],
    ] as const) {
      const req = httpRequest(`${open.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': ctype, 'content-length': String(100 * 1024 * 1024) },
      });
      req.on('error', () => undefined);
      req.write(prefix); // and nothing more: the answer must not wait for the 100 MiB
      const [res] = (await Promise.race([
        once(req, 'response'),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`${path}: no answer within 10 s`)), 10_000),
        ),
      ])) as [IncomingMessage];
      let text = '';
      for await (const c of res) text += c;
      req.destroy();
      expect(res.statusCode, path).toBe(413);
      expect(JSON.parse(text), path).toMatchObject({
        error: { code: 'request_too_large', type: 'invalid_request_error' },
      });
    }
  });

  it('chunked (no length): 413 once the limit is crossed, long before the whole body', async () => {
    const limit = 64 * 1024;
    for (const [path, ctype, max] of [
      ['/v1/chat/completions', 'application/json', limit],
      ['/v1/audio/transcriptions', 'multipart/form-data; boundary=XyZ', 256 * 1024],
    ] as const) {
      const r = await oversized(
        path,
        { 'content-type': ctype, 'transfer-encoding': 'chunked' },
        ctype.startsWith('multipart')
          ? '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
          : '{"model":"gpt-4o","messages":[{"role":"user","content":"',
        64 * 1024 * 1024,
      );
      expect(r.status, path).toBe(413);
      expect(JSON.parse(r.text).error.code).toBe('request_too_large');
      // read up to the limit, plus what was in flight in socket buffers; never the 64 MiB
      expect(r.sent, path).toBeLessThan(max + 8 * 1024 * 1024);
    }
    expect((await fetch(`${open.url}/readyz`)).status).toBe(200);
  });
});
