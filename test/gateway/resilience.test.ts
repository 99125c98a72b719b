import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { toFile } from 'openai';
import { describe, expect, it } from 'vitest';
import { StaticClientKeys } from '../../src/gateway/client-keys.ts';
import { closed, openSocket } from '../support/raw-http.ts';
import { conn, metricValue, refusedUrl, snapshot, startGateway, useGatewayFixtures } from './helpers.ts';

const { upstream, gateway, onCleanup } = useGatewayFixtures();
const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user' as const, content: 'hello' }],
  ...extra,
});

/** Starts a streamed request with node:http and returns the request and response for precise disconnects. */
function rawStream(url: string, body: unknown) {
  const req = httpRequest(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
  });
  req.on('error', () => undefined);
  req.end(JSON.stringify(body));
  return req;
}

describe('failover and passive health', () => {
  it('fails over from a 503 upstream and then cools it down', async () => {
    const bad = await upstream({ profile: 'openai', failure: { kind: 'status', status: 503 } });
    const good = await upstream({ profile: 'openai' });
    // The balancer's clock stands still unless the test moves it: the cooldown is judged on it, not on how long
    // six requests take on a busy machine.
    let now = 1_000_000;
    const h = await gateway(
      [conn(bad, { name: 'bad', models: ['gpt-4o'] }), conn(good, { name: 'good', models: ['gpt-4o'] })],
      { health: { baseCooldownMs: 1000, now: () => now } },
    );
    const client = h.client();
    for (let i = 0; i < 6; i++) await client.chat.completions.create(chat('gpt-4o'));
    // cooled down after its first failure: the bad one is not hit on every request
    expect(bad.requests.length).toBe(1);
    expect(good.requests.length).toBe(6);
    // once the cooldown is over it is tried again (and, still failing, cooled down again)
    now += 1001;
    for (let i = 0; i < 4; i++) await client.chat.completions.create(chat('gpt-4o'));
    expect(bad.requests.length).toBe(2);
    expect(good.requests.length).toBe(10);
    const m = await (await fetch(`${h.url}/metrics`)).text();
    expect(
      metricValue(m, 'plugboard_gateway_upstream_errors_total', {
        connection: 'ai/bad',
        reason: 'status_5xx',
      }),
    ).toBe(2);
  });

  it('fails over a multipart upload too: the whole form is held, so it can be sent again', async () => {
    const bad = await upstream({ profile: 'openai', failure: { kind: 'status', status: 503 } });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(bad, { name: 'bad', models: ['whisper-1'] }),
      conn(good, { name: 'good', models: ['whisper-1'] }),
    ]);
    for (let i = 0; i < 2; i++) {
      const r = await h.client().audio.transcriptions.create({
        model: 'whisper-1',
        file: await toFile(Buffer.alloc(2048, 1), 'a.wav'),
      });
      expect(r.text).toBeTruthy();
    }
    expect(bad.requests.length).toBe(1);
    expect(good.requests.length).toBe(2);
    expect(good.requests.at(-1)?.body).toMatchObject({ fields: { model: 'whisper-1' } });
  });

  it('fails over on connection refused and 429, streaming included', async () => {
    const limited = await upstream({
      profile: 'openai',
      failure: { kind: 'status', status: 429, retryAfter: '1' },
    });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(undefined, { name: 'down', url: await refusedUrl(), models: ['gpt-4o'] }),
      conn(limited, { name: 'limited', models: ['gpt-4o'] }),
      conn(good, { name: 'good', models: ['gpt-4o'] }),
    ]);
    const client = h.client();
    const results = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        if (i % 2) return (await client.chat.completions.create(chat('gpt-4o'))).choices.length;
        const s = await client.chat.completions.create({ ...chat('gpt-4o'), stream: true as const });
        let n = 0;
        for await (const _c of s) n++;
        return n > 0 ? 1 : 0;
      }),
    );
    expect(results.every((r) => r >= 1)).toBe(true);
  });

  it('names the connection on 502/504 and never leaks the key', async () => {
    const broken = await upstream({
      profile: 'openai',
      failure: { kind: 'status', status: 500, body: '{"error":{"message":"boom with sk-secret-999"}}' },
    });
    const h = await gateway([conn(broken, { name: 'broken', apiKey: 'sk-secret-999', models: ['gpt-4o'] })]);
    const err = await h
      .client()
      .chat.completions.create(chat('gpt-4o'))
      .catch((e) => e);
    expect(err.status).toBe(502);
    expect(err.message).toContain('ai/broken');
    expect(err.message).not.toContain('sk-secret-999');
    const down = await gateway([conn(undefined, { name: 'down', url: await refusedUrl(), models: ['m'] })]);
    const e2 = await down
      .client()
      .chat.completions.create(chat('m'))
      .catch((e) => e);
    expect(e2.status).toBe(502);
    expect(e2.code).toBe('upstream_unavailable');
    expect(e2.message).toContain('ai/down');
  });
});

describe('timeouts', () => {
  it('first-byte timeout → 504; idle timeout mid-stream → in-band SSE error', async () => {
    // the upstream would answer (or send its next chunk) long after the timeouts, however busy the machine
    const slow = await upstream({ profile: 'openai', latencyMs: 30_000 });
    const h = await gateway([
      conn(slow, { name: 'slow', models: ['gpt-4o'], timeouts: { firstByteMs: 300 } }),
    ]);
    const err = await h
      .client()
      .chat.completions.create(chat('gpt-4o'))
      .catch((e) => e);
    expect(err.status).toBe(504);
    expect(err.code).toBe('upstream_timeout');

    // undici checks its body timeout with a resolution of about a second
    const dribble = await upstream({ profile: 'openai', chunkDelayMs: 30_000 });
    const h2 = await gateway([
      conn(dribble, { name: 'dribble', models: ['gpt-4o'], timeouts: { idleMs: 1000 } }),
    ]);
    const res = await fetch(`${h2.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat('gpt-4o', { stream: true })),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/data: \{"error":\{"message":"Upstream ai\/dribble stopped sending/);
  });

  it('a healthy long stream is not cut by the idle timeout', async () => {
    // 40 ms between chunks against a 5 s idle timeout: a pause of the whole process does not cut it
    const steady = await upstream({ profile: 'openai', chunkDelayMs: 40 });
    const h = await gateway([
      conn(steady, { name: 'steady', models: ['gpt-4o'], timeouts: { idleMs: 5000 } }),
    ]);
    const s = await h.client().chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'a b c d e f g h i j k l m n o p' }],
      stream: true,
    });
    let chunks = 0;
    for await (const _c of s) chunks++;
    expect(chunks).toBeGreaterThan(3);
  });
});

// Each upstream here would go on for far longer than any test waits, so an abort it records can only have come
// from the client's disconnect. How quickly it arrives is printed and measured by bench/gateway.ts.
describe('client disconnects abort the upstream', () => {
  it('before the upstream sends headers', async () => {
    const hang = await upstream({ profile: 'openai', failure: { kind: 'hang' } });
    const h = await gateway([conn(hang, { name: 'hang', models: ['gpt-4o'] })]);
    const req = rawStream(h.url, chat('gpt-4o', { stream: true }));
    await hang.waitForRequest((r) => r.path === '/v1/chat/completions');
    const t0 = performance.now();
    req.destroy();
    const rec = await hang.waitForAbort(() => true, 10_000);
    console.log(
      `abort before headers reached the upstream after ${((rec.abortedAt as number) - t0).toFixed(1)} ms`,
    );
    expect(rec.firstByteSentAt).toBeUndefined();
  });

  it('before the first token and mid-stream', async () => {
    const slow = await upstream({ profile: 'openai', latencyMs: 60_000 });
    const h = await gateway([conn(slow, { name: 'slow', models: ['gpt-4o'] })]);
    const req = rawStream(h.url, chat('gpt-4o', { stream: true }));
    await slow.waitForRequest(() => true);
    let t0 = performance.now();
    req.destroy();
    let rec = await slow.waitForAbort(() => true, 10_000);
    console.log(
      `abort before the first token reached the upstream after ${((rec.abortedAt as number) - t0).toFixed(1)} ms`,
    );
    expect(rec.firstByteSentAt).toBeUndefined();

    // 200 words at 200 ms a chunk: 40 s of stream, so only the disconnect can end it within the wait below
    const dribble = await upstream({ profile: 'openai', chunkDelayMs: 200 });
    const h2 = await gateway([conn(dribble, { name: 'dribble', models: ['gpt-4o'] })]);
    const req2 = rawStream(
      h2.url,
      chat('gpt-4o', { stream: true, messages: [{ role: 'user', content: 'word '.repeat(200) }] }),
    );
    const [res] = (await once(req2, 'response')) as [NodeJS.ReadableStream];
    await once(res, 'data');
    t0 = performance.now();
    req2.destroy();
    rec = await dribble.waitForAbort(() => true, 10_000);
    console.log(
      `abort mid-stream reached the upstream after ${((rec.abortedAt as number) - t0).toFixed(1)} ms`,
    );
    expect(rec.closedAt).toBeUndefined();
  });
});

describe('hot reload', () => {
  it('applies new snapshots under load with zero failed requests', async () => {
    const a = await upstream({ profile: 'openai', chunkDelayMs: 5 });
    const b = await upstream({ profile: 'openai', chunkDelayMs: 5 });
    const ca = conn(a, { name: 'a', models: ['gpt-4o'] });
    const cb = conn(b, { name: 'b', models: ['gpt-4o'] });
    const h = await gateway([ca]);
    const client = h.client();
    let stop = false;
    let gen = 0;
    const reloader = (async () => {
      while (!stop) {
        gen++;
        h.source.set(snapshot(gen % 3 === 0 ? [ca, cb] : gen % 3 === 1 ? [cb] : [ca]));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let ok = 0;
    const worker = async () => {
      for (let i = 0; i < 25; i++) {
        if (i % 2) {
          const s = await client.chat.completions.create({ ...chat('gpt-4o'), stream: true as const });
          for await (const _c of s);
        } else {
          await client.chat.completions.create(chat('gpt-4o'));
        }
        ok++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    stop = true;
    await reloader;
    expect(ok).toBe(200);
    expect(gen).toBeGreaterThan(5);
    expect(a.requests.length).toBeGreaterThan(0);
    expect(b.requests.length).toBeGreaterThan(0);
  });
});

describe('limits and authentication', () => {
  it('413 for JSON and multipart bodies over the limits', async () => {
    const m = await upstream({ profile: 'openai' });
    const h = await gateway([conn(m, { name: 'o', models: ['gpt-4o', 'whisper-1'] })], {
      maxJsonBody: 1024,
      maxMultipartBody: 64 * 1024,
    });
    const err = await h
      .client()
      .chat.completions.create(chat('gpt-4o', { messages: [{ role: 'user', content: 'x'.repeat(5000) }] }))
      .catch((e) => e);
    expect(err.status).toBe(413);
    expect(err.code).toBe('request_too_large');
    // multipart with a declared length
    const form = new FormData();
    form.append('model', 'whisper-1');
    form.append('file', new Blob([Buffer.alloc(100_000)]), 'a.wav');
    const r = await fetch(`${h.url}/v1/audio/transcriptions`, { method: 'POST', body: form });
    expect(r.status).toBe(413);
    expect(await r.json()).toMatchObject({ error: { code: 'request_too_large' } });
    // chunked multipart (no content-length): counted while streaming
    const boundary = 'XyZ';
    const req = httpRequest(`${h.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'transfer-encoding': 'chunked',
      },
    });
    req.on('error', () => undefined);
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n`);
    for (let i = 0; i < 10; i++) req.write(Buffer.alloc(10_000));
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    expect(res.statusCode).toBe(413);
    req.destroy();
    expect(m.requests.length).toBe(0);
  });

  it('client keys: 401 without a valid key, per-key model filtering', async () => {
    const m = await upstream({ profile: 'openai' });
    const keys = new StaticClientKeys(
      JSON.stringify([
        { name: 'all', key: 'pb-all-0123456789' },
        { name: 'mini', key: 'pb-mini-0123456789', models: ['gpt-4o-mini*'] },
      ]),
    );
    const h = await gateway([conn(m, { name: 'o', models: ['gpt-4o', 'gpt-4o-mini'] })], {
      clientKeys: keys,
    });
    await expect(h.client({ apiKey: 'wrong-key-123' }).models.list()).rejects.toMatchObject({ status: 401 });
    expect((await fetch(`${h.url}/api/connections`)).status).toBe(401);
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    const all = (await h.client({ apiKey: 'pb-all-0123456789' }).models.list()).data.map((x) => x.id);
    expect(all.sort()).toEqual(['gpt-4o', 'gpt-4o-mini']);
    const mini = h.client({ apiKey: 'pb-mini-0123456789' });
    expect((await mini.models.list()).data.map((x) => x.id)).toEqual(['gpt-4o-mini']);
    await expect(mini.chat.completions.create(chat('gpt-4o'))).rejects.toMatchObject({ status: 404 });
    expect((await mini.chat.completions.create(chat('gpt-4o-mini'))).choices).toHaveLength(1);
    // the gateway key is never sent upstream
    expect(m.requests.at(-1)?.headers.authorization).toBeUndefined();
  });
});

describe('lifecycle', () => {
  it('readyz waits for a snapshot and reports the last error', async () => {
    const { MemorySnapshotSource } = await import('../../src/gateway/snapshot-source.ts');
    const { buildGateway } = await import('../../src/gateway/app.ts');
    const source = new MemorySnapshotSource();
    const gw = await buildGateway({ snapshots: source, logger: false, defaultMetrics: false });
    onCleanup(() => gw.close());
    const url = await gw.listen('127.0.0.1', 0);
    expect((await fetch(`${url}/readyz`)).status).toBe(503);
    expect((await fetch(`${url}/v1/models`)).status).toBe(503);
    source.set(snapshot([]));
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    source.reportError('compile failed');
    const r = await fetch(`${url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ snapshot: { lastError: 'compile failed' } });
  });

  it('drain: idle keep-alive connections close at once, busy ones after their response (Connection: close)', async () => {
    const m = await upstream({ profile: 'openai', chunkDelayMs: 100 });
    const h = await startGateway([conn(m, { name: 'o', models: ['gpt-4o'] })], { drainTimeoutMs: 20_000 });
    // an idle keep-alive connection: one request answered, the socket left open
    const idle = await openSocket(h.url);
    const idleClosed = closed(idle);
    idle.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
    await once(idle, 'data');
    // a busy one: a stream in flight when the drain starts
    const busy = fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(
        chat('gpt-4o', { stream: true, messages: [{ role: 'user', content: 'a '.repeat(20) }] }),
      ),
    });
    const res = await busy;
    const drained = h.gateway.drain();
    const body = res.text();
    // the idle connection is closed by the drain itself, before the stream in flight has finished
    expect(await Promise.race([idleClosed.then(() => 'idle closed'), body.then(() => 'stream done')])).toBe(
      'idle closed',
    );
    const late = await fetch(`${h.url}/healthz`);
    expect(late.headers.get('connection')).toBe('close');
    expect(await body).toContain('[DONE]');
    await drained;
  });

  it('drain: readiness fails at once, streams finish, then overdue ones get an SSE error', async () => {
    const m = await upstream({ profile: 'openai', chunkDelayMs: 100 });
    const h = await startGateway([conn(m, { name: 'o', models: ['gpt-4o'] })], { drainTimeoutMs: 400 });
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(
        chat('gpt-4o', { stream: true, messages: [{ role: 'user', content: 'a '.repeat(40) }] }),
      ),
    });
    const body = res.text();
    const drained = h.gateway.drain();
    expect((await fetch(`${h.url}/readyz`)).status).toBe(503);
    const text = await body;
    await drained;
    expect(text).toContain('"code":"draining"');
  });
});
