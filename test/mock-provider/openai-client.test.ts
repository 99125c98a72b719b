import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';

// The official OpenAI client against the simulated OpenAI: what a gateway (or a user) sees on the wire.
describe('mock provider: the official openai client works against the openai profile', () => {
  let mock: MockProvider;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await startMockProvider({ profile: 'openai', apiKey: 'sk-test' });
    client = new OpenAI({ baseURL: mock.url, apiKey: 'sk-test', maxRetries: 0 });
  });
  afterAll(() => mock.close());

  it('answers a chat deterministically from the last user message, with usage', async () => {
    const r = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'ping pong' },
      ],
    });
    expect(r.choices[0]?.message.content).toBe('Hello from openai! You said: ping pong');
    expect(r.choices[0]?.finish_reason).toBe('stop');
    expect(r.usage).toEqual({ prompt_tokens: 4, completion_tokens: 7, total_tokens: 11 });
    const rec = await mock.waitForRequest(
      (q) => q.path === '/v1/chat/completions' && JSON.stringify(q.body).includes('ping pong'),
    );
    expect(rec.headers.authorization).toBe('Bearer sk-test');
    expect(rec.body).toMatchObject({ model: 'gpt-4o' });
    expect(rec.closedAt).toBeGreaterThanOrEqual(rec.firstByteSentAt ?? Number.POSITIVE_INFINITY);
  });

  it('streams word chunks that add up to the same reply, role first and finish_reason last', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'stream me' }],
      stream: true,
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(3);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(
      'Hello from openai! You said: stream me',
    );
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.slice(0, -1).every((c) => c.choices[0]?.finish_reason === null)).toBe(true);
  });

  it('calls the first tool when asked about the weather, streaming the arguments in pieces', async () => {
    const tools = [
      {
        type: 'function' as const,
        function: { name: 'get_weather', parameters: { type: 'object', properties: {} } },
      },
    ];
    const messages = [{ role: 'user' as const, content: 'What is the weather in Berlin?' }];
    const r = await client.chat.completions.create({ model: 'gpt-4o', messages, tools });
    expect(r.choices[0]?.finish_reason).toBe('tool_calls');
    const call = r.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === 'function' && call.function.name).toBe('get_weather');
    expect(call?.type === 'function' && JSON.parse(call.function.arguments)).toEqual({ location: 'Berlin' });

    const stream = await client.chat.completions.create({ model: 'gpt-4o', messages, tools, stream: true });
    let args = '';
    let deltas = 0;
    let finish: string | null | undefined;
    for await (const c of stream) {
      const tc = c.choices[0]?.delta.tool_calls?.[0];
      if (tc?.function?.arguments) {
        args += tc.function.arguments;
        deltas++;
      }
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(deltas).toBeGreaterThan(1);
    expect(JSON.parse(args)).toEqual({ location: 'Berlin' });
    expect(finish).toBe('tool_calls');
  });

  it('returns a JSON string as content for response_format json_object', async () => {
    const r = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'give json' }],
      response_format: { type: 'json_object' },
    });
    expect(JSON.parse(r.choices[0]?.message.content ?? '')).toMatchObject({ you_said: 'give json' });
  });

  it('rejects an unknown model with OpenAI’s model_not_found error', async () => {
    const err = await client.chat.completions
      .create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).error).toEqual({
      message: 'The model `gpt-9` does not exist',
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    });
  });

  it('rejects a wrong key with 401', async () => {
    const bad = new OpenAI({ baseURL: mock.url, apiKey: 'sk-wrong', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('lists and retrieves models with created and owned_by', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toContain('gpt-4o');
    expect(page.data[0]).toMatchObject({ object: 'model', owned_by: 'system', created: expect.any(Number) });
    expect((await client.models.retrieve('whisper-1')).id).toBe('whisper-1');
  });

  it('returns deterministic embeddings honouring dimensions and base64', async () => {
    const a = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a cat', 'a dog'] });
    expect(a.data).toHaveLength(2);
    expect(a.data[0]?.embedding).toHaveLength(1536);
    const b = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'a cat',
      dimensions: 64,
      encoding_format: 'float',
    });
    expect(b.data[0]?.embedding).toHaveLength(64);
    const norm = Math.hypot(...(b.data[0]?.embedding ?? []));
    expect(norm).toBeCloseTo(1, 4);
    // The client asks for base64 by default and decodes it: same numbers as the float call.
    const c = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'a cat',
      dimensions: 64,
    });
    expect(c.data[0]?.embedding).toEqual(b.data[0]?.embedding);
    const raw = await mock.waitForRequest(
      (q) => q.path === '/v1/embeddings' && (q.body as { dimensions?: number }).dimensions === 64,
    );
    expect(raw.body).toMatchObject({ input: 'a cat', encoding_format: 'float' });
  });

  it('speaks: binary audio streamed in several chunks with the requested content type', async () => {
    const res = await client.audio.speech.create({
      model: 'tts-1',
      voice: 'alloy',
      input: 'one two three four',
    });
    expect(res.headers.get('content-type')).toBe('audio/mpeg');
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.subarray(0, 4).toString('ascii')).toBe('RIFF');
    expect(bytes.length).toBeGreaterThan(4096);
    const wavRes = await client.audio.speech.create({
      model: 'tts-1',
      voice: 'alloy',
      input: 'hi',
      response_format: 'wav',
    });
    expect(wavRes.headers.get('content-type')).toBe('audio/wav');
  });

  it('transcribes a multipart upload, reporting the file size and model it received', async () => {
    const audio = Buffer.alloc(300_000, 7);
    const r = await client.audio.transcriptions.create({
      model: 'whisper-1',
      file: await toFile(audio, 'meeting.wav'),
    });
    expect(r.text).toBe('Transcribed 300000 bytes of meeting.wav with whisper-1.');
    const rec = await mock.waitForRequest((q) => q.path === '/v1/audio/transcriptions');
    expect(rec.body).toEqual({
      fields: { model: 'whisper-1' },
      files: [{ field: 'file', filename: 'meeting.wav', size: 300_000 }],
    });
    const text = await client.audio.translations.create({
      model: 'whisper-1',
      file: await toFile(Buffer.from('abc'), 'a.mp3'),
      response_format: 'text',
    });
    expect(String(text).trim()).toBe('Translated 3 bytes of a.mp3 with whisper-1.');
  });

  it('generates images as base64 PNG or as a URL that serves the PNG', async () => {
    const b64 = await client.images.generate({
      model: 'dall-e-3',
      prompt: 'a fox',
      response_format: 'b64_json',
    });
    const png = Buffer.from(b64.data?.[0]?.b64_json ?? '', 'base64');
    expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
    const url = await client.images.generate({
      model: 'dall-e-3',
      prompt: 'a fox',
      response_format: 'url',
      n: 2,
    });
    expect(url.data).toHaveLength(2);
    const img = await fetch(url.data?.[0]?.url ?? '');
    expect(img.headers.get('content-type')).toBe('image/png');
    const edit = await client.images.edit({
      model: 'dall-e-3',
      prompt: 'add a hat',
      image: await toFile(Buffer.alloc(1234), 'fox.png', { type: 'image/png' }),
      response_format: 'b64_json',
    });
    expect(edit.data?.[0]?.b64_json).toBeTruthy();
    const rec = await mock.waitForRequest((q) => q.path === '/v1/images/edits');
    expect((rec.body as { files: unknown[] }).files).toEqual([
      { field: 'image', filename: 'fox.png', size: 1234 },
    ]);
  });

  it('serves a minimal Responses API, plain and streamed', async () => {
    const r = await client.responses.create({ model: 'gpt-4o', input: 'hello responses' });
    expect(r.output_text).toBe('Hello from openai! You said: hello responses');
    const stream = await client.responses.create({ model: 'gpt-4o', input: 'hi', stream: true });
    let text = '';
    const types: string[] = [];
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') text += e.delta;
    }
    expect(text).toBe('Hello from openai! You said: hi');
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
  });

  it('serves legacy completions', async () => {
    const r = await client.completions.create({ model: 'gpt-4o', prompt: 'old school' });
    expect(r.choices[0]?.text).toBe('Hello from openai! You said: old school');
  });
});
