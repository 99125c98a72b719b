import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { conn, type Harness, metricValue, mock, startGateway } from './helpers.ts';

describe('gateway endpoints through the official openai client', () => {
  let openai: MockProvider;
  let router: MockProvider;
  let h: Harness;
  let client: OpenAI;
  /** A metric's value now (counters add up over the file's tests: compare before and after). */
  const metric = async (name: string, labels: Record<string, string>) =>
    metricValue(await (await fetch(`${h.url}/metrics`)).text(), name, labels);

  beforeAll(async () => {
    openai = await mock({ profile: 'openai', apiKey: 'sk-upstream-openai-123' });
    router = await mock({
      profile: 'openrouter',
      apiKey: 'sk-or-1',
      models: ['anthropic/claude-sonnet-4-5'],
    });
    h = await startGateway([
      conn(openai, {
        name: 'openai',
        apiKey: 'sk-upstream-openai-123',
        models: [
          'gpt-4o',
          'gpt-4o-mini',
          'text-embedding-3-small',
          'tts-1',
          'whisper-1',
          'dall-e-3',
          'gpt-image-1',
        ],
        headers: { 'X-Title': 'Plugboard' },
        tags: ['cloud'],
      }),
      conn(router, { name: 'openrouter', apiKey: 'sk-or-1', models: ['anthropic/claude-sonnet-4-5'] }),
    ]);
    client = h.client();
  });
  afterAll(async () => {
    await h.close();
    await openai.close();
    await router.close();
  });

  it('lists and retrieves models, including IDs with a slash', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain('gpt-4o');
    expect(ids).toContain('anthropic/claude-sonnet-4-5');
    const m = list.data.find((x) => x.id === 'gpt-4o') as unknown as Record<string, unknown>;
    expect(m).toMatchObject({
      object: 'model',
      plugboard: { connection: 'ai/openai', provider: 'OpenAI', tags: ['cloud'] },
    });
    expect(typeof m.created).toBe('number');
    expect(typeof m.owned_by).toBe('string');
    const one = await client.models.retrieve('anthropic/claude-sonnet-4-5');
    expect(one.id).toBe('anthropic/claude-sonnet-4-5');
    const raw = await fetch(`${h.url}/v1/models/anthropic/claude-sonnet-4-5`);
    expect(raw.status).toBe(200);
    await expect(client.models.retrieve('nope')).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
    });
  });

  it('passes chat parameters through untouched and adds the key and connection headers', async () => {
    openai.reset();
    const counted = { connection: 'ai/openai', model: 'gpt-4o', endpoint: 'chat/completions', status: '200' };
    const before = await metric('plugboard_gateway_requests_total', counted);
    const params = {
      model: 'gpt-4o',
      messages: [{ role: 'user' as const, content: 'hello there' }],
      temperature: 0.2,
      top_p: 0.9,
      max_tokens: 50,
      max_completion_tokens: 60,
      stop: ['\n\n'],
      seed: 7,
      logit_bias: { '50256': -100 },
      n: 1,
      user: 'u-1',
      response_format: { type: 'text' as const },
    };
    const res = await client.chat.completions.create(params);
    expect(res.choices[0]?.message.content).toBeTruthy();
    expect(res.usage?.total_tokens).toBeGreaterThan(0);
    const rec = openai.requests.find((r) => r.path === '/v1/chat/completions');
    expect(rec?.body).toEqual(params);
    expect(rec?.headers.authorization).toBe('Bearer sk-upstream-openai-123');
    expect(rec?.headers['x-title']).toBe('Plugboard');
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(
      metricValue(metrics, 'plugboard_gateway_tokens_total', { connection: 'ai/openai', type: 'prompt' }),
    ).toBeGreaterThan(0);
    expect(metricValue(metrics, 'plugboard_gateway_requests_total', counted)).toBe(before + 1);
  });

  it('streams chat, counts tokens and hides the usage chunk the client did not ask for', async () => {
    openai.reset();
    const ttft = { model: 'gpt-4o-mini' };
    const before = await metric('plugboard_gateway_time_to_first_token_seconds_count', ttft);
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'tell me a story' }],
      stream: true,
    });
    let text = '';
    let usageChunks = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usageChunks++;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usageChunks).toBe(0);
    const rec = openai.requests.find((r) => r.path === '/v1/chat/completions');
    expect((rec?.body as { stream_options?: unknown } | undefined)?.stream_options).toEqual({
      include_usage: true,
    });
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    expect(
      metricValue(metrics, 'plugboard_gateway_tokens_total', { model: 'gpt-4o-mini', type: 'completion' }),
    ).toBeGreaterThan(0);
    expect(metricValue(metrics, 'plugboard_gateway_time_to_first_token_seconds_count', ttft)).toBe(
      before + 1,
    );

    const withUsage = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'again' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: unknown;
    for await (const chunk of withUsage) if (chunk.usage) usage = chunk.usage;
    expect(usage).toMatchObject({ prompt_tokens: expect.any(Number) });
  });

  it('returns tool calls', async () => {
    const res = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'what is the weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
          },
        },
      ],
      tool_choice: 'auto',
    });
    expect(res.choices[0]?.message.tool_calls?.[0]).toMatchObject({
      type: 'function',
      function: { name: 'get_weather' },
    });
  });

  it('serves completions, embeddings, speech, images and responses', async () => {
    const comp = await client.completions.create({ model: 'gpt-4o-mini', prompt: 'Say hi' });
    expect(comp.choices[0]?.text).toBeDefined();
    const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(emb.data).toHaveLength(2);
    expect(emb.data[0]?.embedding.length).toBeGreaterThan(0);
    const speech = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hello' });
    const audio = Buffer.from(await speech.arrayBuffer());
    expect(audio.length).toBeGreaterThan(0);
    const img = await client.images.generate({ model: 'dall-e-3', prompt: 'a cat' });
    expect(img.data?.length).toBeGreaterThan(0);
    const resp = await client.responses.create({ model: 'gpt-4o', input: 'hello' });
    expect(resp.output_text).toBeTruthy();
  });

  it('streams multipart uploads (transcription, translation, image edits)', async () => {
    openai.reset();
    const file = await toFile(Buffer.alloc(200_000, 7), 'audio.wav', { type: 'audio/wav' });
    const tr = await client.audio.transcriptions.create({ file, model: 'whisper-1' });
    expect(typeof tr.text).toBe('string');
    const rec = openai.requests.find((r) => r.path === '/v1/audio/transcriptions');
    expect(rec?.body).toMatchObject({
      fields: { model: 'whisper-1' },
      files: [{ field: 'file', size: 200_000 }],
    });
    const tl = await client.audio.translations.create({
      model: 'whisper-1',
      file: await toFile(Buffer.alloc(1000, 1), 'a.mp3', { type: 'audio/mpeg' }),
    });
    expect(typeof tl.text).toBe('string');
    const edit = await client.images.edit({
      model: 'gpt-image-1',
      prompt: 'add a hat',
      image: await toFile(Buffer.alloc(1000, 2), 'img.png', { type: 'image/png' }),
    });
    expect(edit.data?.length).toBeGreaterThan(0);
  });

  it('reports errors in the OpenAI shape as the client typed errors', async () => {
    await expect(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 404, code: 'model_not_found', type: 'not_found_error' });
    const bad = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model": "gpt-4o", ',
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: { code: 'invalid_json', type: 'invalid_request_error' },
    });
    const noModel = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"messages": []}',
    });
    expect(noModel.status).toBe(400);
    expect(await noModel.json()).toMatchObject({ error: { param: 'model', code: 'missing_model' } });
    // an upstream 4xx passes through with its status and body
    await expect(client.chat.completions.create({ model: 'gpt-4o', messages: [] })).rejects.toBeInstanceOf(
      OpenAI.BadRequestError,
    );
    const unknownPath = await fetch(`${h.url}/v1/nothing-here`);
    expect(unknownPath.status).toBe(404);
    expect(await unknownPath.json()).toMatchObject({ error: { code: 'unknown_url' } });
  });

  it('answers alike for every spelling of a path (query string, trailing slash, encodings, dot segments)', async () => {
    const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'same answer?' }] };
    const viaHttp = async (path: string, body: string) => {
      const r = await fetch(`${h.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'req-same-1' },
        body,
      });
      return { status: r.status, id: r.headers.get('x-request-id'), body: await r.json() };
    };
    const strip = (b: { id?: string; created?: number }) => ({ ...b, id: undefined, created: undefined });
    const reference = await viaHttp('/v1/chat/completions', JSON.stringify(chat));
    expect(reference.status).toBe(200);
    expect(reference.id).toBe('req-same-1');
    for (const path of [
      '/v1/chat/completions/',
      '/v1/chat/completions?x=1',
      '/v1//chat/completions',
      '/v1/./chat/completions',
      '/v1/models/../chat/completions',
      '/%76%31/chat/completions',
    ]) {
      const a = await viaHttp(path, JSON.stringify(chat));
      expect(a.status, path).toBe(200);
      expect(a.id).toBe('req-same-1');
      expect(strip(a.body), path).toEqual(strip(reference.body));
    }
  });

  it('serves health, readiness, connections and a root page', async () => {
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, snapshot: { lastError: null } });
    const conns = await (await fetch(`${h.url}/api/connections`)).text();
    expect(conns).toContain('ai/openai'.split('/')[1]);
    expect(conns).not.toContain('sk-upstream');
    const root = await fetch(`${h.url}/`);
    expect(await root.text()).toContain('Plugboard gateway');
  });
});
