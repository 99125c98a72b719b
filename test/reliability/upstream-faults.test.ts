/**
 * Upstream faults (issue 8): reset mid-stream, slow headers, slow body, malformed SSE, oversized responses, 5xx
 * storms and a backend that flips between healthy and failing. Clients — the official `openai` client and raw
 * undici — get a clear error (an OpenAI-shaped HTTP error before the first byte, an in-band SSE error event
 * after it) or a failover; the gateway stays healthy and serves the next request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { request as undiciRequest } from 'undici';
import { describe, expect, it } from 'vitest';
import { conn, type Harness, metricValue, useGatewayFixtures } from '../gateway/helpers.ts';

const MODELS = ['gpt-4o', 'ok-model', 'only-reset', 'only-slow', 'cut-model', 'only-flappy'];
const { upstream, gateway, onCleanup } = useGatewayFixtures({ models: MODELS });
/** A hand-written upstream for what the mock provider cannot say (malformed SSE, huge bodies). */
async function rawUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const srv: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  onCleanup(
    () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}/v1`;
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user' as const, content: 'one two three four five six seven eight' }],
  ...extra,
});

async function post(h: Harness, body: unknown) {
  const r = await undiciRequest(`${h.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

function expectOpenAIError(text: string): { message: string; type: string; code: string | null } {
  const j = JSON.parse(text) as {
    error: { message: string; type: string; param: unknown; code: string | null };
  };
  expect(Object.keys(j.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof j.error.message).toBe('string');
  return j.error;
}

/** The gateway is healthy: probes answer and a request through a healthy connection succeeds. */
async function expectHealthy(h: Harness, model = 'ok-model'): Promise<void> {
  expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
  expect((await fetch(`${h.url}/readyz`)).status).toBe(200);
  const r = await post(h, chat(model));
  expect(r.status, r.text).toBe(200);
}

const streamOf = (client: OpenAI, model: string) =>
  client.chat.completions.create({ ...chat(model), stream: true as const });

describe('reset', () => {
  it('mid-stream: the openai client raises the in-band error; raw clients see data: {"error"} and the end', async () => {
    const midReset = await upstream({ profile: 'openai', failure: { kind: 'reset', afterChunks: 3 } });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(midReset, { name: 'midreset', models: ['gpt-4o'] }),
      conn(good, { name: 'good', models: ['ok-model'] }),
    ]);
    // the official client: some chunks, then an APIError carrying the gateway's message
    let chunks = 0;
    const err = await (async () => {
      for await (const _c of await streamOf(h.client(), 'gpt-4o')) chunks++;
    })().catch((e) => e);
    expect(chunks).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.message).toContain('Upstream ai/midreset closed the connection unexpectedly');
    // raw undici: the stream ends with the error event, after the chunks that made it
    const r = await post(h, chat('gpt-4o', { stream: true }));
    expect(r.status).toBe(200);
    const events = r.text.trim().split('\n\n');
    expect(events.length).toBeGreaterThan(1);
    const last = events.at(-1) as string;
    expect(last.startsWith('data: {"error":')).toBe(true);
    const e = expectOpenAIError(last.slice('data: '.length));
    expect(e.code).toBe('upstream_error');
    expect(r.text).not.toContain('[DONE]');
    await expectHealthy(h);
  });

  it('before the headers: 502 naming the connection, or a failover when another connection serves the model', async () => {
    const reset = await upstream({ profile: 'openai', failure: { kind: 'reset' } });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(reset, { name: 'reset', models: ['gpt-4o', 'only-reset'] }),
      conn(good, { name: 'good', models: ['gpt-4o', 'ok-model'] }),
    ]);
    const alone = await h
      .client()
      .chat.completions.create(chat('only-reset'))
      .catch((e) => e);
    expect(alone.status).toBe(502);
    expect(alone.code).toBe('upstream_unavailable');
    expect(alone.message).toContain('ai/reset');
    for (let i = 0; i < 5; i++) {
      const s = await streamOf(h.client(), 'gpt-4o');
      let text = '';
      for await (const c of s) text += c.choices[0]?.delta.content ?? '';
      expect(text).toContain('Hello from openai');
    }
    await expectHealthy(h);
  });
});

describe('slow upstreams', () => {
  it('slow headers: 504 upstream_timeout, or a failover within the first-byte timeout', async () => {
    // the slow one would answer long after the first-byte timeout, so a 504 at all means the timeout ended it
    const slow = await upstream({ profile: 'openai', latencyMs: 30_000 });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(slow, { name: 'slow', models: ['gpt-4o', 'only-slow'], timeouts: { firstByteMs: 250 } }),
      conn(good, { name: 'good', models: ['gpt-4o', 'ok-model'] }),
    ]);
    const err = await h
      .client()
      .chat.completions.create(chat('only-slow'))
      .catch((e) => e);
    expect(err.status).toBe(504);
    expect(err.code).toBe('upstream_timeout');
    // the slow one is tried first or second; either way the client gets an answer
    const results = await Promise.all(
      Array.from({ length: 4 }, () => h.client().chat.completions.create(chat('gpt-4o'))),
    );
    expect(results.every((r) => r.choices[0]?.message.content?.includes('Hello'))).toBe(true);
    await expectHealthy(h);
  });

  it('slow body: an idle stream ends with an SSE error event; a cut JSON body is an error, never a short success', async () => {
    // the next chunk would come long after the idle timeout, however busy the machine
    const dribble = await upstream({ profile: 'openai', chunkDelayMs: 30_000 });
    const cut = await upstream({ profile: 'openai', failure: { kind: 'reset', afterChunks: 1 } });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(dribble, { name: 'dribble', models: ['gpt-4o'], timeouts: { idleMs: 1000 } }),
      conn(cut, { name: 'cut', models: ['cut-model'] }),
      conn(good, { name: 'good', models: ['ok-model'] }),
    ]);
    const err = await (async () => {
      for await (const _c of await streamOf(h.client({ timeout: 10_000 }), 'gpt-4o'));
    })().catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.message).toContain('stopped sending in the middle of the response (idle timeout)');
    // a non-streamed body cut after the headers: the declared length is not met, the client sees the failure
    const cutErr = await h
      .client()
      .chat.completions.create(chat('cut-model'))
      .catch((e) => e);
    // (the openai client surfaces fetch's body error as is: TypeError: terminated)
    expect(cutErr).toBeInstanceOf(Error);
    expect(cutErr.message).toMatch(/terminated|Connection error/);
    const raw = await post(h, chat('cut-model')).catch((e: Error) => e);
    expect(raw).toBeInstanceOf(Error);
    await expectHealthy(h);
  });
});

describe('malformed and oversized responses', () => {
  const MALFORMED: Record<string, string[]> = {
    'not JSON': [
      'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
      'data: {not json at all\n\n',
      'data: [DONE]\n\n',
    ],
    'no terminator at the end': [
      'data: {"choices":[]}\n\n',
      'data: {"choices":[{"delta":{"content":"unterminated"',
    ],
    'broken usage': [
      'data: {"choices":[],"usage":{"prompt_tokens":\n\n',
      'data: {"usage": 12, "choices": []}\n\n',
    ],
    'binary garbage': ['data: \u0000\u0001\u00ff\ufffd\n\n', ':\n\n', 'event: \n\ndata\n\n', '\r\n\r\n\n\n'],
    'CRLF and split events': ['data: {"a":1}\r\n', '\r\ndata: {"b"', ':2}\n', '\n'],
  };

  it('malformed SSE is passed through byte for byte, usage parsing never breaks the stream', async () => {
    let plan: string[] = [];
    const url = await rawUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const parts = [...plan];
      const next = () => {
        const p = parts.shift();
        if (p === undefined) return res.end();
        res.write(p);
        setTimeout(next, 2);
      };
      next();
    });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(undefined, { name: 'weird', url, models: ['gpt-4o'] }),
      conn(good, { name: 'good', models: ['ok-model'] }),
    ]);
    for (const [name, parts] of Object.entries(MALFORMED)) {
      plan = parts;
      // without include_usage (the gateway asks for usage and hides it) and with it
      for (const extra of [{}, { stream_options: { include_usage: true } }]) {
        const r = await post(h, chat('gpt-4o', { stream: true, ...extra }));
        expect(r.status, name).toBe(200);
        expect(r.text, name).toBe(parts.join(''));
      }
    }
    await expectHealthy(h);
  });

  it('oversized: a 6 MiB unterminated SSE event and a 64 MiB body stream through with backpressure', async () => {
    const BIG = 64 * 1024 * 1024;
    let written = 0;
    let mode: 'json' | 'sse' = 'json';
    const url = await rawUpstream((_req, res) => {
      written = 0;
      if (mode === 'sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: {"choices":[{"delta":{"content":"${'x'.repeat(6 * 1024 * 1024)}`);
        res.end('"}}]}\n\ndata: [DONE]\n\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(BIG) });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (written < BIG) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(undefined, { name: 'big', url, models: ['gpt-4o'] }),
      conn(good, { name: 'good', models: ['ok-model'] }),
    ]);
    mode = 'sse';
    const sse = await post(h, chat('gpt-4o', { stream: true }));
    expect(sse.status).toBe(200);
    expect(sse.text.length).toBeGreaterThan(6 * 1024 * 1024);
    expect(sse.text.endsWith('data: [DONE]\n\n')).toBe(true);

    mode = 'json';
    const r = await undiciRequest(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat('gpt-4o')),
      highWaterMark: 64 * 1024,
    });
    expect(r.statusCode).toBe(200);
    // a client that stops reading: the gateway stops reading the upstream (socket buffers, not the whole body)
    r.body.pause();
    await new Promise((res) => setTimeout(res, 500));
    expect(written).toBeLessThan(24 * 1024 * 1024);
    let received = 0;
    r.body.resume();
    for await (const c of r.body) received += (c as Buffer).length;
    expect(received).toBe(BIG);
    await expectHealthy(h);
  });
});

describe('5xx storms and flapping backends', () => {
  it('a storm of 5xx on every connection: 200 concurrent clients get a quick 502, then service resumes at once', async () => {
    const a = await upstream({ profile: 'openai', failure: { kind: 'status', status: 500 } });
    const b = await upstream({ profile: 'openai', failure: { kind: 'status', status: 503 } });
    const good = await upstream({ profile: 'openai' });
    const h = await gateway([
      conn(a, { name: 'a', models: ['gpt-4o'] }),
      conn(b, { name: 'b', models: ['gpt-4o'] }),
      conn(good, { name: 'good', models: ['ok-model'] }),
    ]);
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        post(h, chat('gpt-4o', i % 2 ? { stream: true } : {})).catch((e: Error) => ({
          status: 0,
          text: e.message,
        })),
      ),
    );
    expect(performance.now() - t0).toBeLessThan(10_000);
    for (const r of results) {
      expect(r.status, r.text).toBe(502);
      const e = expectOpenAIError(r.text);
      expect(e.code).toBe('upstream_error');
      expect(e.message).toMatch(/Upstream ai\/[ab] failed with HTTP 50[03]/);
    }
    await expectHealthy(h);
    // the storm ends: cooling connections are tried last but never refused, so the next request succeeds
    a.setFailure(undefined);
    b.setFailure(undefined);
    const after = await h.client().chat.completions.create(chat('gpt-4o'));
    expect(after.choices).toHaveLength(1);
    const m = await (await fetch(`${h.url}/metrics`)).text();
    expect(
      metricValue(m, 'plugboard_gateway_upstream_errors_total', { reason: 'status_5xx' }),
    ).toBeGreaterThan(0);
  });

  it('a backend flipping between healthy and failing: every request succeeds through the failover', async () => {
    const flappy = await upstream({ profile: 'openai' });
    const steady = await upstream({ profile: 'openai' });
    const h = await gateway(
      [
        conn(flappy, { name: 'flappy', models: ['gpt-4o', 'only-flappy'] }),
        conn(steady, { name: 'steady', models: ['gpt-4o', 'ok-model'] }),
      ],
      // short cool-downs so the flapping backend keeps being tried
      { health: { baseCooldownMs: 20, maxCooldownMs: 100 } },
    );
    const faults = [
      { kind: 'status', status: 500 },
      { kind: 'reset' },
      undefined,
      { kind: 'status', status: 429, retryAfter: '0' },
      { kind: 'status', status: 503 },
      undefined,
    ] as const;
    let flips = 0;
    let flipping = true;
    const flipper = (async () => {
      while (flipping) {
        flappy.setFailure(faults[flips++ % faults.length] as never);
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    const client = h.client();
    let ok = 0;
    const onlyFlappy = { ok: 0, clearErrors: 0 };
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; i < 40; i++) {
          if ((w + i) % 2) {
            let text = '';
            for await (const c of await streamOf(client, 'gpt-4o')) text += c.choices[0]?.delta.content ?? '';
            expect(text).toContain('Hello');
          } else {
            const r = await client.chat.completions.create(chat('gpt-4o'));
            expect(r.choices).toHaveLength(1);
          }
          ok++;
        }
        // with no other connection the client gets the answer or a clear OpenAI error, never a hang
        for (let i = 0; i < 5; i++) {
          const r = await post(h, chat('only-flappy'));
          if (r.status === 200) onlyFlappy.ok++;
          else {
            expect([429, 502]).toContain(r.status);
            expectOpenAIError(r.text);
            onlyFlappy.clearErrors++;
          }
        }
      }),
    );
    flipping = false;
    await flipper;
    expect(ok).toBe(320);
    expect(onlyFlappy.ok + onlyFlappy.clearErrors).toBe(40);
    expect(flips).toBeGreaterThan(10);
    expect(flappy.requests.length).toBeGreaterThan(0);
    await expectHealthy(h);
  });
});
