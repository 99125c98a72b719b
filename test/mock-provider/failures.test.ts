import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';
import { describe, expect, it } from 'vitest';
import { useMockProviders } from '../support/mocks.ts';

// Outages, slow upstreams, client aborts, TLS and the CLI: what a gateway's resilience is tested against.
const mock = useMockProviders('each');

const chatBody = (stream = false) =>
  JSON.stringify({
    model: 'gpt-4o',
    stream,
    messages: [{ role: 'user', content: 'one two three four five' }],
  });
const post = (url: string, body: string, signal?: AbortSignal) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });

describe('mock provider failures', () => {
  it('429 with Retry-After for a limited number of requests, then recovers', async () => {
    const m = await mock({
      profile: 'openai',
      failure: { kind: 'status', status: 429, retryAfter: '7', times: 2 },
    });
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${m.url}/models`);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('7');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');
    }
    expect((await fetch(`${m.url}/models`)).status).toBe(200);
  });

  it('failureScope limits a failure to /models or to inference; custom bodies are sent verbatim', async () => {
    const m = await mock({ profile: 'openai' });
    m.setFailure({ kind: 'status', status: 503, body: 'upstream down', contentType: 'text/plain' }, 'models');
    const models = await fetch(`${m.url}/models`);
    expect(models.status).toBe(503);
    expect(await models.text()).toBe('upstream down');
    expect((await post(`${m.url}/chat/completions`, chatBody())).status).toBe(200);
    m.setFailure({ kind: 'status', status: 500 }, 'inference');
    expect((await fetch(`${m.url}/models`)).status).toBe(200);
    expect((await post(`${m.url}/chat/completions`, chatBody())).status).toBe(500);
    m.setFailure(undefined);
    expect((await post(`${m.url}/chat/completions`, chatBody())).status).toBe(200);
  });

  it('non-json: /models answers 200 with an HTML page', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'non-json' } });
    const res = await fetch(`${m.url}/models`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toMatch(/^<!DOCTYPE html>/);
  });

  it('reset before headers fails the request; reset mid-stream cuts the SSE after N chunks', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'reset', times: 1 } });
    await expect(fetch(`${m.url}/models`)).rejects.toThrow();
    expect((await fetch(`${m.url}/models`)).status).toBe(200);

    m.setFailure({ kind: 'reset', afterChunks: 2 });
    const client = new OpenAI({ baseURL: m.url, apiKey: 'k', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'cut me off' }],
      stream: true,
    });
    let received = 0;
    await expect(
      (async () => {
        for await (const _ of stream) received++;
      })(),
    ).rejects.toThrow();
    expect(received).toBe(2);
    const rec = m.requests.at(-1);
    expect(rec?.closedAt).toBeUndefined();
    expect(rec?.abortedAt).toBeUndefined(); // the server reset it, the client did not go away
  });

  it('hang: never answers, and the client abort is recorded', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'hang' } });
    const ac = new AbortController();
    const pending = post(`${m.url}/chat/completions`, chatBody(), ac.signal).catch((e: unknown) => e);
    const rec = await m.waitForRequest((r) => r.path === '/v1/chat/completions');
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.firstByteSentAt).toBeUndefined();
    const abortAt = performance.now();
    ac.abort();
    const aborted = await m.waitForAbort((r) => r === rec, 10_000);
    console.log(`hang: the abort was recorded after ${((aborted.abortedAt ?? 0) - abortAt).toFixed(1)} ms`);
    expect(aborted.firstByteSentAt).toBeUndefined();
    expect(await pending).toBeInstanceOf(Error);
  });

  it('latency delays the headers and a slow stream notices the abort between chunks', async () => {
    const m = await mock({ profile: 'openai', latencyMs: 150, chunkDelayMs: 200 });
    const ac = new AbortController();
    const t0 = performance.now();
    // 200 words at 200 ms a chunk: the stream would last 40 s, so only the abort can end it within the wait below
    const body = JSON.stringify({
      model: 'gpt-4o',
      stream: true,
      messages: [{ role: 'user', content: 'word '.repeat(200) }],
    });
    const res = await post(`${m.url}/chat/completions`, body, ac.signal);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    const abortAt = performance.now();
    ac.abort();
    const rec = await m.waitForAbort((r) => r.path === '/v1/chat/completions', 10_000);
    console.log(
      `slow stream: the abort was recorded after ${((rec.abortedAt ?? 0) - abortAt).toFixed(1)} ms`,
    );
    expect(rec.closedAt).toBeUndefined();
    expect((rec.firstByteSentAt ?? 0) - rec.receivedAt).toBeGreaterThanOrEqual(140);
  });

  it('the api key can be switched at runtime, and reset() clears the recorded requests', async () => {
    const m = await mock({ profile: 'deepseek' });
    expect((await fetch(`${m.url}/models`)).status).toBe(200);
    m.setApiKey('rotated');
    expect((await fetch(`${m.url}/models`)).status).toBe(401);
    expect((await fetch(`${m.url}/models`, { headers: { authorization: 'Bearer rotated' } })).status).toBe(
      200,
    );
    m.setModels(['deepseek-v9']);
    const list = (await (
      await fetch(`${m.url}/models`, { headers: { authorization: 'Bearer rotated' } })
    ).json()) as { data: { id: string }[] };
    expect(list.data.map((d) => d.id)).toEqual(['deepseek-v9']);
    expect(m.requests).toHaveLength(4);
    m.reset();
    expect(m.requests).toHaveLength(0);
  });
});

describe('mock provider over TLS', () => {
  it('serves HTTPS with a self-signed certificate that clients trust through caCert', async () => {
    const m = await mock({ profile: 'openai', tls: true });
    expect(m.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(m.caCert).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const trusted = new Agent({ connect: { ca: m.caCert } });
    const res = await undiciFetch(`${m.url}/models`, { dispatcher: trusted });
    expect(res.status).toBe(200);
    await trusted.close();
    // Without the CA the certificate is refused.
    const refused = await new Promise<Error>((resolve) => {
      request(`${m.url}/models`, (r) => resolve(new Error(`unexpected ${r.statusCode}`)))
        .on('error', resolve)
        .end();
    });
    expect(refused.message).toMatch(/self[- ]signed/i);
  });
});

describe('plugboard mock-provider', () => {
  it('prints the URL, serves it and exits 0 on SIGTERM', async () => {
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js');
    const child = spawn(
      process.execPath,
      [bin, 'mock-provider', '--profile', 'openai', '--listen', '127.0.0.1:0', '--api-key', 'cli-key'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const m = /^mock-provider openai listening on (http:\/\/127\.0\.0\.1:\d+\/v1)$/.exec(line);
      expect(m, line).toBeTruthy();
      const client = new OpenAI({ baseURL: m?.[1], apiKey: 'cli-key', maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'cli' }],
      });
      expect(r.choices[0]?.message.content).toBe('Hello from openai! You said: cli');
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('refuses an unknown profile with the list of profiles', async () => {
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js');
    const child = spawn(process.execPath, [bin, 'mock-provider', '--profile', 'nope'], { stdio: 'pipe' });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(err).toContain('openrouter');
  });
});
