import { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MockProvider, startMockIdentityProvider } from '../../src/mock-provider/index.ts';
import { conn, type Harness, mock, startGateway } from './helpers.ts';

describe('provider rules', () => {
  let azure: MockProvider;
  let anthropic: MockProvider;
  let pplx: MockProvider;
  let deepseek: MockProvider;
  let openai: MockProvider;
  let h: Harness;

  beforeAll(async () => {
    [azure, anthropic, pplx, deepseek, openai] = await Promise.all([
      mock({ profile: 'azure', apiKey: 'az-key-1234' }),
      mock({ profile: 'anthropic', apiKey: 'sk-ant-1234' }),
      mock({ profile: 'perplexity', apiKey: 'pplx-1234' }),
      mock({ profile: 'deepseek', apiKey: 'ds-1234' }),
      mock({ profile: 'openai', apiKey: 'sk-oa-1234' }),
    ]);
    h = await startGateway([
      conn(azure, {
        name: 'azure',
        apiKey: 'az-key-1234',
        models: ['my-gpt-4o-deployment', 'whisper'],
        azureApiVersion: '2024-10-21',
      }),
      conn(azure, {
        name: 'azure-v1',
        apiKey: 'az-key-1234',
        models: ['gpt-4o-mini', 'text-embedding-3-small'],
        azureApiVersion: 'v1',
      }),
      conn(azure, {
        name: 'azure-preview',
        apiKey: 'az-key-1234',
        models: ['gpt-4o'],
        azureApiVersion: 'preview',
        modelPrefix: 'pv',
      }),
      conn(anthropic, { name: 'claude', apiKey: 'sk-ant-1234', models: ['claude-sonnet-4-5'] }),
      conn(pplx, {
        name: 'pplx',
        apiKey: 'pplx-1234',
        models: ['sonar-pro'],
        dropParams: ['stop', 'frequency_penalty'],
      }),
      conn(deepseek, { name: 'deepseek', apiKey: 'ds-1234', models: ['deepseek-reasoner'] }),
      conn(openai, {
        name: 'openai-eu',
        apiKey: 'sk-oa-1234',
        models: ['gpt-4o', 'whisper-1'],
        modelPrefix: 'eu',
      }),
    ]);
  });
  afterAll(async () => {
    await h.close();
    await Promise.all([azure, anthropic, pplx, deepseek, openai].map((m) => m.close()));
  });

  it('Azure: deployment path, api-version and api-key header', async () => {
    const res = await h.client().chat.completions.create({
      model: 'my-gpt-4o-deployment',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(res.choices[0]?.message.content).toBeTruthy();
    const rec = azure.requests.at(-1);
    expect(rec?.path).toBe('/openai/deployments/my-gpt-4o-deployment/chat/completions');
    expect(rec?.query['api-version']).toBe('2024-10-21');
    expect(rec?.headers['api-key']).toBe('az-key-1234');
    expect(rec?.headers.authorization).toBeUndefined();
    const tr = await h.client().audio.transcriptions.create({
      model: 'whisper',
      file: await toFile(Buffer.alloc(500, 3), 'a.wav'),
    });
    expect(typeof tr.text).toBe('string');
    expect(azure.requests.at(-1)?.path).toBe('/openai/deployments/whisper/audio/transcriptions');
  });

  it("Azure's v1 API: /openai/v1/{endpoint}, the deployment in the body, api-version only for preview", async () => {
    const res = await h.client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi v1' }],
    });
    expect(res.choices[0]?.message.content).toBe('Hello from azure! You said: hi v1');
    let rec = azure.requests.at(-1);
    expect(rec).toMatchObject({ path: '/openai/v1/chat/completions', query: {} });
    expect(rec?.body).toMatchObject({ model: 'gpt-4o-mini' });
    expect(rec?.headers['api-key']).toBe('az-key-1234');
    const emb = await h.client().embeddings.create({ model: 'text-embedding-3-small', input: 'x' });
    expect(emb.data).toHaveLength(1);
    expect(azure.requests.at(-1)?.path).toBe('/openai/v1/embeddings');

    await h
      .client()
      .chat.completions.create({ model: 'pv.gpt-4o', messages: [{ role: 'user', content: 'p' }] });
    rec = azure.requests.at(-1);
    expect(rec).toMatchObject({ path: '/openai/v1/chat/completions', query: { 'api-version': 'preview' } });
    expect(rec?.body).toMatchObject({ model: 'gpt-4o' });
  });

  it('Anthropic: the compat layer gets its key, streaming works', async () => {
    const stream = await h.client().chat.completions.create({
      model: 'claude-sonnet-4-5',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBeTruthy();
    const rec = anthropic.requests.at(-1);
    expect(rec?.headers['x-api-key']).toBe('sk-ant-1234');
    expect(rec?.headers.authorization).toBe('Bearer sk-ant-1234');
  });

  it('Perplexity: dropParams are removed, everything else passes', async () => {
    const res = await h.client().chat.completions.create({
      model: 'sonar-pro',
      messages: [{ role: 'user', content: 'hi' }],
      stop: ['x'],
      frequency_penalty: 0.5,
      temperature: 0.1,
    });
    expect(res.choices[0]?.message.content).toBeTruthy();
    expect((res as unknown as { citations: unknown[] }).citations.length).toBeGreaterThan(0);
    const body = pplx.requests.at(-1)?.body as Record<string, unknown>;
    expect(body.stop).toBeUndefined();
    expect(body.frequency_penalty).toBeUndefined();
    expect(body.temperature).toBe(0.1);
  });

  it('DeepSeek: reasoning_content passes through, streamed and not', async () => {
    const res = await h.client().chat.completions.create({
      model: 'deepseek-reasoner',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(
      (res.choices[0]?.message as unknown as { reasoning_content?: string } | undefined)?.reasoning_content,
    ).toBeTruthy();
    const stream = await h.client().chat.completions.create({
      model: 'deepseek-reasoner',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let reasoning = '';
    for await (const c of stream)
      reasoning +=
        (c.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
    expect(reasoning).toContain('deepseek');
  });

  it('modelPrefix: exposed as <prefix>.<id>, stripped upstream (JSON and multipart)', async () => {
    const ids = (await h.client().models.list()).data.map((m) => m.id);
    expect(ids).toContain('eu.gpt-4o');
    expect(ids).not.toContain('gpt-4o');
    const res = await h
      .client()
      .chat.completions.create({ model: 'eu.gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    expect(res.choices).toHaveLength(1);
    expect((openai.requests.at(-1)?.body as { model?: string } | undefined)?.model).toBe('gpt-4o');
    // replies name the model the client asked for, in every streamed chunk too
    expect(res.model).toBe('eu.gpt-4o');
    const stream = await h.client().chat.completions.create({
      model: 'eu.gpt-4o',
      messages: [{ role: 'user', content: 'several words to stream here' }],
      stream: true,
    });
    const models = new Set<string>();
    for await (const chunk of stream) models.add(chunk.model);
    expect([...models]).toEqual(['eu.gpt-4o']);
    await h
      .client()
      .audio.transcriptions.create({ model: 'eu.whisper-1', file: await toFile(Buffer.alloc(10), 'a.wav') });
    expect(openai.requests.at(-1)?.body).toMatchObject({ fields: { model: 'whisper-1' } });
  });
});

describe('access tokens (entraID, googleCloud)', () => {
  it('go upstream as Authorization: Bearer (Azure too, without api-key); a token said back is scrubbed', async () => {
    const idp = await startMockIdentityProvider({
      entraApps: [{ tenantID: 'contoso.onmicrosoft.com', clientID: 'app', clientSecrets: ['s'] }],
    });
    const azure = await mock({
      profile: 'azure',
      acceptToken: idp.accepts('https://cognitiveservices.azure.com'),
    });
    const res = await fetch(`${idp.authorityHost}/contoso.onmicrosoft.com/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=app&client_secret=s&scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default',
    });
    const { access_token: token } = (await res.json()) as { access_token: string };
    const echo = await mock({
      profile: 'openai',
      failure: {
        kind: 'status',
        status: 401,
        body: JSON.stringify({ error: { message: `token ${token} has expired` } }),
      },
    });
    const h = await startGateway([
      conn(azure, { name: 'azure', accessToken: token, models: ['gpt-4o-mini'], azureApiVersion: 'v1' }),
      conn(echo, { name: 'echo', accessToken: token, models: ['gpt-4o'] }),
    ]);
    try {
      const reply = await h.client().chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
      });
      expect(reply.choices[0]?.message.content).toBe('Hello from azure! You said: hi');
      const rec = azure.requests.at(-1);
      expect(rec?.headers.authorization).toBe(`Bearer ${token}`);
      expect(rec?.headers['api-key']).toBeUndefined();
      const refused = await fetch(`${h.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
      });
      expect(refused.status).toBe(401);
      const text = await refused.text();
      expect(text).toContain('has expired');
      expect(text).not.toContain(token);
    } finally {
      await h.close();
      await Promise.all([idp.close(), azure.close(), echo.close()]);
    }
  });
});
