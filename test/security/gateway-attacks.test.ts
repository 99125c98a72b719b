/**
 * The attack corpus of issue 13, run as an outside attacker would against both binaries that serve the API:
 * `plugboard gateway` (what the chart runs) and `plugboard standalone` (what `npm start` runs), each in its own
 * process with client keys required, in front of an upstream that leaks whatever it is sent. Requests go over raw
 * sockets wherever a client library would have normalised them (paths, absolute-form targets, duplicated
 * headers). Every refused request is also checked not to have reached the upstream.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '../../src/gateway/routes.ts';
import { secretForms } from '../../src/providers/upstream-errors.ts';
import { type GatewayProcess, spawnPlugboard } from '../reliability/process.ts';
import { propertyRun } from '../support/property.ts';
import { closed, openSocket, type RawResponse, rawExchange, rawRequest } from '../support/raw-http.ts';
import {
  HOSTILE_MODELS,
  type HostileUpstream,
  hostileUpstream,
  oneConnectionSnapshot,
} from './hostile-upstream.ts';
import { REFUSED_TARGETS, spelling } from './spellings.ts';

const PROVIDER_KEY = 'sk-provider-Zq8vXw3Lm5Np7Rt9Hk2Jd4Fg6';
const CLIENT_KEY = 'pb-attack-client-key-0123456789';
const SCOPED_KEY = 'pb-attack-scoped-key-0123456789';
const BOUNDARY = 'pbattack';

const chatBody = (model: string, extra = '') =>
  `{"model":"${model}","messages":[{"role":"user","content":"hi"}]${extra}}`;
const multipartBody = (model: string) =>
  `--${BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${model}\r\n` +
  `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n` +
  `--${BOUNDARY}--\r\n`;

/** A request for a route with the body and content type it takes, sent to `target`. */
function requestFor(
  route: (typeof ROUTES)[number],
  target: string,
  headers: Record<string, string> = {},
): Buffer {
  if (route.method === 'GET') return rawRequest('GET', target, headers);
  if (route.serve === 'multipart')
    return rawRequest(
      'POST',
      target,
      { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, ...headers },
      multipartBody('gpt-4o'),
    );
  return rawRequest('POST', target, { 'content-type': 'application/json', ...headers }, chatBody('gpt-4o'));
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** POST /v1/chat/completions as JSON with a client key, on a raw socket. */
const postChat = (t: Target, key: string, body: string) =>
  rawExchange(
    t.proc.url,
    rawRequest('POST', '/v1/chat/completions', { 'content-type': 'application/json', ...bearer(key) }, body),
  );

function errorOf(r: RawResponse): { code?: string; message?: string; type?: string } {
  expect(r.headers['content-type']?.[0], r.raw.slice(0, 300)).toMatch(/^application\/json/);
  const j = JSON.parse(r.body) as { error?: { code?: string; message?: string; type?: string } };
  expect(j.error, r.body).toBeTruthy();
  return j.error ?? {};
}

interface Target {
  name: 'gateway' | 'standalone';
  proc: GatewayProcess;
  upstream: HostileUpstream;
}

const targets: Target[] = [];
const dirs: string[] = [];

async function start(name: Target['name']): Promise<Target> {
  const upstream = await hostileUpstream(PROVIDER_KEY);
  const dir = mkdtempSync(join(tmpdir(), `plugboard-attack-${name}-`));
  dirs.push(dir);
  const keys = join(dir, 'keys.yaml');
  writeFileSync(
    keys,
    `- {name: full, key: ${CLIENT_KEY}}\n- {name: scoped, key: ${SCOPED_KEY}, models: ["gpt-*"]}\n`,
  );
  const limits = ['--body-idle-timeout', '2s', '--headers-timeout', '2s', '--max-buffered-bodies', '8MiB'];
  let proc: GatewayProcess;
  if (name === 'gateway') {
    const snapshot = oneConnectionSnapshot('hostile', upstream.url, PROVIDER_KEY, HOSTILE_MODELS);
    const file = join(dir, 'snapshot.json');
    writeFileSync(file, JSON.stringify(snapshot));
    proc = await spawnPlugboard('gateway', ['--config-file', file, '--client-keys-file', keys, ...limits]);
  } else {
    writeFileSync(
      join(dir, 'hostile.yaml'),
      [
        'apiVersion: plugboard.dev/v1alpha1',
        'kind: ProviderConnection',
        'metadata: {name: hostile, namespace: ai}',
        `spec: {url: "${upstream.url}", apiKeySecretRef: {name: hostile-key}}`,
        '---',
        'apiVersion: v1',
        'kind: Secret',
        'metadata: {name: hostile-key, namespace: ai}',
        `stringData: {apiKey: ${PROVIDER_KEY}}`,
        '',
      ].join('\n'),
    );
    proc = await spawnPlugboard('standalone', [
      '-f',
      join(dir, 'hostile.yaml'),
      '--client-keys-file',
      keys,
      ...limits,
    ]);
    // verified and serving
    const deadline = Date.now() + 60_000;
    for (;;) {
      const r = await fetch(`${proc.url}/v1/models`, { headers: bearer(CLIENT_KEY) });
      if (r.ok && (await r.text()).includes('gpt-4o')) break;
      if (Date.now() > deadline)
        throw new Error(`standalone never served the models:\n${proc.logs().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { name, proc, upstream };
}

beforeAll(async () => {
  targets.push(await start('gateway'), await start('standalone'));
}, 180_000);

afterAll(async () => {
  for (const t of targets) {
    await t.proc.stop();
    await t.upstream.close();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const each = (fn: (t: () => Target) => void) =>
  describe.each(['gateway', 'standalone'] as const)('%s', (name) => {
    fn(() => {
      const t = targets.find((x) => x.name === name);
      if (!t) throw new Error(`${name} did not start`);
      return t;
    });
  });

each((target) => {
  describe('client keys: deny by default, whatever the spelling', () => {
    const protectedRoutes = ROUTES.filter((r) => r.access !== 'public');

    it('every route but the public ones answers 401 without a key, under every spelling the normaliser accepts', async () => {
      const t = target();
      const before = t.upstream.seen.length;
      const fixed = (p: string) => [
        p,
        `${p}/`,
        `${p}?x=1`,
        `//${p.slice(1)}`,
        `/./${p.slice(1)}`,
        `/x/../${p.slice(1)}`,
        `/%2e/${p.slice(1)}`,
        `/x/%2E%2E/${p.slice(1)}`,
        p.replace(/[a-z]/, (c) => `%${c.charCodeAt(0).toString(16)}`),
        p.replaceAll(/[a-z0-9]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
        ...(p.startsWith('/v1/') ? [`/%76%31${p.slice(3)}`, `/%761${p.slice(3)}`, `/v%31${p.slice(3)}`] : []),
      ];
      for (const route of protectedRoutes) {
        const path = route.path.replace('{model}', 'gpt-4o');
        const random = fc.sample(spelling(path), propertyRun(`spellings of ${path}`, 12));
        for (const raw of [...fixed(path), ...random]) {
          for (const headers of [{}, bearer('pb-wrong-key-0123456789'), { authorization: CLIENT_KEY }]) {
            const r = await rawExchange(t.proc.url, requestFor(route, raw, headers));
            expect(r.status, `${route.method} ${raw} ${JSON.stringify(headers)}`).toBe(401);
            expect(errorOf(r).code).toBe('invalid_api_key');
          }
        }
      }
      expect(t.upstream.seen.length, 'a request without a valid key reached the upstream').toBe(before);
    }, 120_000);

    it('the public routes need no key, and say nothing secret', async () => {
      const t = target();
      for (const path of ['/healthz', '/readyz', '/openapi.json', '/']) {
        const r = await rawExchange(t.proc.url, rawRequest('GET', path));
        expect(r.status, path).toBe(200);
        for (const secret of [PROVIDER_KEY, CLIENT_KEY, SCOPED_KEY]) expect(r.raw).not.toContain(secret);
      }
    });

    it('model scopes hold under every spelling', async () => {
      const t = target();
      for (const raw of ['/v1/chat/completions', '/%761/chat/completions', '/v1//chat/./completions/']) {
        const denied = await rawExchange(
          t.proc.url,
          rawRequest(
            'POST',
            raw,
            { 'content-type': 'application/json', ...bearer(SCOPED_KEY) },
            chatBody('secret-model'),
          ),
        );
        expect(denied.status, raw).toBe(404);
        expect(errorOf(denied).code).toBe('model_not_found');
        const allowed = await rawExchange(
          t.proc.url,
          rawRequest(
            'POST',
            raw,
            { 'content-type': 'application/json', ...bearer(SCOPED_KEY) },
            chatBody('gpt-4o'),
          ),
        );
        expect(allowed.status, raw).toBe(200);
      }
      for (const raw of ['/v1/models', '/%761/models', '/v1/models/']) {
        const list = await rawExchange(t.proc.url, rawRequest('GET', raw, bearer(SCOPED_KEY)));
        expect(list.status).toBe(200);
        expect(list.body).toContain('gpt-4o');
        expect(list.body).not.toContain('secret-model');
      }
      for (const raw of [
        '/v1/models/secret-model',
        '/v1/models/secret%2Dmodel',
        '/v1/./models/secret-model',
      ]) {
        const one = await rawExchange(t.proc.url, rawRequest('GET', raw, bearer(SCOPED_KEY)));
        expect(one.status, raw).toBe(404);
      }
    });
  });

  describe('request targets', () => {
    it.each(REFUSED_TARGETS)(
      'refuses %s with 400 before routing, even with a valid key',
      async (_why, raw) => {
        const t = target();
        const before = t.upstream.seen.length;
        const r = await rawExchange(
          t.proc.url,
          rawRequest(
            'POST',
            raw,
            { 'content-type': 'application/json', ...bearer(CLIENT_KEY) },
            chatBody('gpt-4o'),
          ),
        );
        expect(r.status, r.raw.slice(0, 300)).toBe(400);
        expect(['invalid_request_target', 'bad_request']).toContain(errorOf(r).code);
        expect(t.upstream.seen.length).toBe(before);
      },
    );

    it('refuses an encoded / outside a model ID, and reads one inside a model ID', async () => {
      const t = target();
      for (const raw of ['/v1%2Fchat/completions', '/v1/chat%2Fcompletions', '/%76%31%2Fmodels']) {
        const r = await rawExchange(
          t.proc.url,
          rawRequest(
            raw.includes('chat') ? 'POST' : 'GET',
            raw,
            { 'content-type': 'application/json', ...bearer(CLIENT_KEY) },
            raw.includes('chat') ? chatBody('gpt-4o') : undefined,
          ),
        );
        expect(r.status, raw).toBe(400);
        expect(errorOf(r).code).toBe('invalid_request_target');
      }
    });

    it('answers unknown paths with an OpenAI-shaped 404 and a hint when /v1 is missing', async () => {
      const t = target();
      const r = await rawExchange(t.proc.url, rawRequest('GET', '/models', bearer(CLIENT_KEY)));
      expect(r.status).toBe(404);
      expect(errorOf(r).message).toContain('/v1');
      const other = await rawExchange(
        t.proc.url,
        rawRequest('POST', '/v1/nothing', bearer(CLIENT_KEY), '{}'),
      );
      expect(other.status).toBe(404);
      expect(errorOf(other).code).toBe('unknown_url');
    });

    it('answers oversized headers with an OpenAI-shaped 431', async () => {
      const t = target();
      const r = await rawExchange(
        t.proc.url,
        rawRequest('GET', '/v1/models', { 'x-big': 'a'.repeat(20_000) }),
      );
      expect(r.status).toBe(431);
      expect(errorOf(r).code).toBe('headers_too_large');
    });
  });

  describe('duplicated fields', () => {
    it('two Authorization headers: the first is the one that counts, for auth and nothing else', async () => {
      const t = target();
      const good = await rawExchange(
        t.proc.url,
        rawRequest('GET', '/v1/models', {
          authorization: [`Bearer ${CLIENT_KEY}`, 'Bearer pb-wrong-key-0123456789'],
        }),
      );
      expect(good.status).toBe(200);
      const bad = await rawExchange(
        t.proc.url,
        rawRequest('GET', '/v1/models', {
          authorization: ['Bearer pb-wrong-key-0123456789', `Bearer ${CLIENT_KEY}`],
        }),
      );
      expect(bad.status).toBe(401);
    });

    it('a JSON body that names its model twice (or once escaped) is refused, so the upstream cannot read another one', async () => {
      const t = target();
      const before = t.upstream.seen.length;
      for (const body of [
        '{"model":"secret-model","model":"gpt-4o","messages":[]}',
        '{"mod\\u0065l":"secret-model","model":"gpt-4o","messages":[]}',
        '{"model":"gpt-4o","messages":[],"model":"gpt-4o"}',
      ]) {
        const r = await postChat(t, SCOPED_KEY, body);
        expect(r.status, body).toBe(400);
        expect(errorOf(r).message).toContain('repeats');
      }
      expect(t.upstream.seen.length).toBe(before);
    });

    it('conflicting Content-Length, or Content-Length with chunked, is refused', async () => {
      const t = target();
      const head = `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nauthorization: Bearer ${CLIENT_KEY}\r\n`;
      const body = chatBody('gpt-4o');
      for (const framing of [
        `content-length: ${body.length}\r\ncontent-length: ${body.length + 5}\r\n`,
        `content-length: ${body.length}\r\ntransfer-encoding: chunked\r\n`,
      ]) {
        const r = await rawExchange(t.proc.url, `${head}${framing}connection: close\r\n\r\n${body}`);
        expect(r.status, framing).toBe(400);
      }
    });
  });

  describe('an upstream that echoes the key', () => {
    const leaks = (text: string) => secretForms(PROVIDER_KEY).filter((f) => text.includes(f));

    it('no header it sets reaches the client unless allowed, and none that holds the key', async () => {
      const t = target();
      const r = await postChat(t, CLIENT_KEY, chatBody('echo-headers'));
      expect(r.status).toBe(200);
      const head = r.raw.slice(0, r.raw.indexOf('\r\n\r\n'));
      expect(leaks(head)).toEqual([]);
      expect(r.headers['www-authenticate']).toBeUndefined();
      expect(r.headers['set-cookie']).toBeUndefined();
      expect(r.headers['x-debug-authorization']).toBeUndefined();
      expect(r.headers['openai-organization']).toBeUndefined();
      expect(r.headers['x-ratelimit-remaining-requests']).toEqual(['99']);
      expect(r.headers['x-request-id']?.[0]).not.toContain('sk-');
    });

    it('error bodies are scrubbed in every spelling, also across the 64 KiB cut', async () => {
      const t = target();
      const r = await postChat(t, CLIENT_KEY, chatBody('echo-4xx'));
      expect(r.status).toBe(400);
      expect(leaks(r.raw)).toEqual([]);
      // no piece of the key at the cut either
      expect(r.body).not.toContain(PROVIDER_KEY.slice(0, 12));
      const five = await postChat(t, CLIENT_KEY, chatBody('echo-5xx'));
      expect(five.status).toBe(502);
      expect(leaks(five.raw)).toEqual([]);
    });

    it('the key never appears in the process logs', () => {
      const logs = target().proc.logs();
      for (const secret of [PROVIDER_KEY, CLIENT_KEY, SCOPED_KEY]) expect(logs).not.toContain(secret);
    });
  });

  describe('bodies', () => {
    const metric = async (t: Target, name: string): Promise<number> => {
      const text = await (await fetch(`${t.proc.url}/metrics`, { headers: bearer(CLIENT_KEY) })).text();
      let sum = 0;
      for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
      return sum;
    };

    it('deeply nested JSON gets 400 at once and holds nothing afterwards', async () => {
      const t = target();
      const before = t.upstream.seen.length;
      const depth = 200_000;
      for (const model of ['gpt-4o', 'echo-headers']) {
        const body = `{"model":"${model}","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`;
        for (let i = 0; i < 5; i++) {
          const r = await postChat(t, CLIENT_KEY, body);
          expect(r.status).toBe(400);
          expect(errorOf(r).message).toContain('nested');
        }
      }
      expect(t.upstream.seen.length).toBe(before);
      expect(await metric(t, 'plugboard_gateway_in_flight_requests')).toBe(0);
      // memory is not pinned: ten 400 KB bodies once pinned ~55 MB each for the total timeout
      const rss =
        Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${t.proc.child.pid}/status`, 'utf8'))?.[1]) / 1024;
      expect(rss).toBeLessThan(400);
      // and the gateway still serves
      const ok = await postChat(t, CLIENT_KEY, chatBody('gpt-4o'));
      expect(ok.status).toBe(200);
    });

    it('JSON endpoints take only JSON: a web page cannot post a form or text/plain to them', async () => {
      const t = target();
      for (const ctype of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        undefined,
      ]) {
        const r = await rawExchange(
          t.proc.url,
          rawRequest(
            'POST',
            '/v1/chat/completions',
            { ...(ctype ? { 'content-type': ctype } : {}), ...bearer(CLIENT_KEY) },
            chatBody('gpt-4o'),
          ),
        );
        expect(r.status, String(ctype)).toBe(415);
      }
    });

    it('a body that stops arriving gets 408 and its memory back', async () => {
      const t = target();
      const socket = await openSocket(t.proc.url);
      const done = closed(socket);
      socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-length: 1000000\r\n\r\n{"model":"gpt-4o","pad":"${'x'.repeat(900_000)}`,
      );
      const answer = await done; // the server ends it after --body-idle-timeout 2s
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(answer).toContain('request_timeout');
    });

    it('bodies beyond the buffer budget get 503 with retry-after, and the budget comes back', async () => {
      const t = target();
      // --max-buffered-bodies 8MiB: three stalled 3 MB bodies cannot all be held
      const sockets = await Promise.all([0, 1, 2, 3].map(() => openSocket(t.proc.url)));
      const answers = sockets.map((s) => closed(s));
      for (const s of sockets)
        s.write(
          `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nauthorization: Bearer ${CLIENT_KEY}\r\ncontent-length: 3000000\r\n\r\n{"model":"gpt-4o"`,
        );
      const texts = await Promise.all(answers);
      const statuses = texts.map((a) => Number(/^HTTP\/1\.1 (\d{3})/.exec(a)?.[1]));
      expect(statuses.filter((s) => s === 503).length, statuses.join(',')).toBeGreaterThanOrEqual(2);
      expect(
        statuses.every((s) => s === 503 || s === 408),
        statuses.join(','),
      ).toBe(true);
      expect(texts.find((a) => a.startsWith('HTTP/1.1 503'))).toContain('retry-after: 1');
      const ok = await postChat(t, CLIENT_KEY, chatBody('gpt-4o', `,"pad":"${'x'.repeat(4_000_000)}"`));
      expect(ok.status).toBe(200);
    });
  });

  describe('slow clients', () => {
    it('headers that never finish (slowloris) end the connection with 408', async () => {
      const t = target();
      const socket = await openSocket(t.proc.url);
      const done = closed(socket);
      socket.write('GET /v1/models HTTP/1.1\r\nhost: localhost\r\nx-slow: a');
      const timer = setInterval(() => socket.write('a'), 500);
      const answer = await done.finally(() => clearInterval(timer)); // --headers-timeout 2s
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
    });

    it('a connection that never sends a byte is closed', async () => {
      const t = target();
      const socket = await openSocket(t.proc.url);
      await closed(socket); // resolves only when the server closes it
    });
  });
});

describe('standalone only: a web page on the same machine', () => {
  it('cannot reach it by a name it does not serve (DNS rebinding)', async () => {
    const t = targets.find((x) => x.name === 'standalone') as Target;
    for (const host of ['evil.example', 'evil.example:8080', 'localhost.evil.example']) {
      const r = await rawExchange(
        t.proc.url,
        rawRequest('GET', '/v1/models', { host, ...bearer(CLIENT_KEY) }),
      );
      expect(r.status, host).toBe(403);
      expect(errorOf(r).code).toBe('host_not_allowed');
    }
    for (const host of ['localhost', 'localhost:8080', '127.0.0.1:8080', '[::1]:8080', 'LOCALHOST.']) {
      const r = await rawExchange(
        t.proc.url,
        rawRequest('GET', '/v1/models', { host, ...bearer(CLIENT_KEY) }),
      );
      expect(r.status, host).toBe(200);
    }
  });
});

describe('shutdown after the attacks', () => {
  it.each(['gateway', 'standalone'] as const)(
    '%s exits 0 on the first SIGTERM',
    async (name) => {
      const t = targets.find((x) => x.name === name) as Target;
      t.proc.child.kill('SIGTERM');
      const exit = await Promise.race([
        t.proc.exited,
        new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000)),
      ]);
      expect(exit, t.proc.logs().slice(-1500)).toEqual({ code: 0, signal: null });
    },
    40_000,
  );
});
