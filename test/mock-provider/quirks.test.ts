import { describe, expect, it } from 'vitest';
import { MOCK_PROFILES, type MockProfileName } from '../../src/mock-provider/index.ts';
import { useMockProviders } from '../support/mocks.ts';

// Each profile reproduces the wire quirks of the real provider that a gateway has to cope with.
const mock = useMockProviders('each');

const chat = (url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer k', ...headers },
    body: JSON.stringify(body),
  });

async function sse(res: Response): Promise<unknown[]> {
  const text = await res.text();
  expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .map((e) => JSON.parse(e.slice(6)));
}

type Chunk = { choices: { delta: Record<string, unknown>; finish_reason: string | null }[]; usage?: unknown };

describe('mock provider quirks', () => {
  it('serves every profile under the base URL an admin would configure', async () => {
    const expected: Record<MockProfileName, string> = {
      openai: '/v1',
      azure: '',
      anthropic: '/v1',
      gemini: '/v1beta/openai',
      deepseek: '/v1',
      perplexity: '',
      minimax: '/v1',
      openrouter: '/api/v1',
      'no-models': '/v1',
      'github-models': '/inference',
      mistral: '/v1',
      vertex: '/v1/projects/mock-project/locations/us-central1/endpoints/openapi',
    };
    expect([...MOCK_PROFILES].sort()).toEqual(Object.keys(expected).sort());
    for (const profile of MOCK_PROFILES) {
      const m = await mock({ profile });
      expect(m.url).toBe(`${m.origin}${expected[profile]}`);
      expect(m.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      if (profile === 'azure') continue;
      const model = profile === 'openrouter' ? 'vendor-1/model-1' : undefined;
      const res = await chat(`${m.url}/chat/completions`, {
        model: model ?? (await firstModel(profile)),
        messages: [{ role: 'user', content: 'hi' }],
      });
      expect(res.status, profile).toBe(200);
      const body = (await res.json()) as { choices: { message: { content: string } }[] };
      expect(body.choices[0]?.message.content).toContain(`Hello from ${profile}! You said: hi`);
    }
  });

  it('azure: deployments path, api-key header, api-version required, Azure error JSON', async () => {
    const m = await mock({ profile: 'azure', apiKey: 'az-key' });
    const base = `${m.url}/openai/deployments/my-gpt-4o-deployment/chat/completions`;
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi azure' }] });
    const post = (url: string, headers: Record<string, string>) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

    const noVersion = await post(base, { 'api-key': 'az-key' });
    expect(noVersion.status).toBe(400);
    expect(await noVersion.json()).toEqual({
      error: { code: 'MissingApiVersionParameter', message: expect.stringContaining('api-version') },
    });
    const bearer = await post(`${base}?api-version=2024-10-21`, { authorization: 'Bearer az-key' });
    expect(bearer.status).toBe(401);
    expect(await bearer.json()).toEqual({
      error: { code: '401', message: expect.stringContaining('Access denied') },
    });

    const ok = await post(`${base}?api-version=2024-10-21`, { 'api-key': 'az-key' });
    expect(ok.status).toBe(200);
    const reply = (await ok.json()) as { model: string; choices: { message: { content: string } }[] };
    expect(reply.choices[0]?.message.content).toBe('Hello from azure! You said: hi azure');
    expect(reply.model).toBe('my-gpt-4o-deployment');

    const unknown = await post(`${m.url}/openai/deployments/nope/chat/completions?api-version=2024-10-21`, {
      'api-key': 'az-key',
    });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('DeploymentNotFound');

    const models = await fetch(`${m.url}/openai/models?api-version=2024-10-21`, {
      headers: { 'api-key': 'az-key' },
    });
    const list = (await models.json()) as { object: string; data: { id: string }[] };
    expect(list.object).toBe('list');
    expect(list.data.map((d) => d.id)).toContain('my-gpt-4o-deployment');
  });

  it('anthropic: /models needs x-api-key and anthropic-version and pages 45 models in 3 pages', async () => {
    const ids = Array.from({ length: 45 }, (_, i) => `claude-test-${i}`);
    const m = await mock({ profile: 'anthropic', apiKey: 'ant-key', models: ids });
    const bearer = await fetch(`${m.url}/models`, {
      headers: { authorization: 'Bearer ant-key', 'anthropic-version': '2023-06-01' },
    });
    expect(bearer.status).toBe(401);
    expect(await bearer.json()).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: expect.any(String) },
    });
    const noVersion = await fetch(`${m.url}/models`, { headers: { 'x-api-key': 'ant-key' } });
    expect(noVersion.status).toBe(400);
    expect(((await noVersion.json()) as { error: { type: string } }).error.type).toBe(
      'invalid_request_error',
    );

    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const q = after ? `?limit=20&after_id=${after}` : '?limit=20';
      const res = await fetch(`${m.url}/models${q}`, {
        headers: { 'x-api-key': 'ant-key', 'anthropic-version': '2023-06-01' },
      });
      const page = (await res.json()) as {
        data: { type: string; id: string; display_name: string; created_at: string }[];
        has_more: boolean;
        first_id: string;
        last_id: string;
      };
      pages++;
      expect(page.data[0]).toMatchObject({ type: 'model', display_name: expect.any(String) });
      expect(page.first_id).toBe(page.data[0]?.id);
      seen.push(...page.data.map((d) => d.id));
      if (!page.has_more) break;
      after = page.last_id;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(ids);

    const compat = await chat(
      `${m.url}/chat/completions`,
      {
        model: 'claude-test-3',
        messages: [{ role: 'user', content: 'hi' }],
      },
      { authorization: 'Bearer ant-key' },
    );
    expect(compat.status).toBe(200);
    expect(((await compat.json()) as { id: string }).id).toMatch(/^msg_/);
  });

  it('openrouter: lists 5000 models with created and no owned_by', async () => {
    const m = await mock({ profile: 'openrouter' });
    const res = await fetch(`${m.url}/models`);
    const body = (await res.json()) as { data: { id: string; created: number; owned_by?: string }[] };
    expect(body.data).toHaveLength(5000);
    expect(body.data.map((d) => d.id)).toContain('vendor-7/model-57');
    expect(body.data[0]).toMatchObject({ id: 'anthropic/claude-sonnet-4-5', created: expect.any(Number) });
    expect(body.data[0]?.owned_by).toBeUndefined();
    const small = await mock({ profile: 'openrouter', modelCount: 3 });
    const few = (await (await fetch(`${small.url}/models`)).json()) as { data: { id: string }[] };
    expect(few.data.map((d) => d.id)).toEqual(['vendor-0/model-0', 'vendor-1/model-1', 'vendor-2/model-2']);
  });

  it('gemini: a double slash after the base URL is a 404, the exact path works', async () => {
    const m = await mock({ profile: 'gemini' });
    expect((await fetch(`${m.url}/models`)).status).toBe(200);
    const broken = await fetch(`${m.url}//models`);
    expect(broken.status).toBe(404);
    expect(m.requests.at(-1)?.path).toBe('/v1beta/openai//models');
  });

  it('no-models, perplexity, minimax and github-models have no /models', async () => {
    const none = await mock({ profile: 'no-models' });
    const res = await fetch(`${none.url}/models`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('404 page not found');

    const pplx = await mock({ profile: 'perplexity' });
    const p = await fetch(`${pplx.url}/models`);
    expect(p.status).toBe(404);
    expect(await p.json()).toMatchObject({ error: { type: 'not_found' } });

    const mm = await mock({ profile: 'minimax' });
    const r = await fetch(`${mm.url}/models`);
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ base_resp: { status_code: 404 } });

    const gh = await mock({ profile: 'github-models' });
    expect((await fetch(`${gh.url}/models`)).status).toBe(404);
    const catalog = (await (await fetch(`${gh.origin}/catalog/models`)).json()) as { id: string }[];
    expect(catalog.map((c) => c.id)).toContain('openai/gpt-4.1');
  });

  it('the order of path and key: perplexity answers 404 for an unknown path before the key, openai checks the key first', async () => {
    const pplx = await mock({ profile: 'perplexity', apiKey: 'right' });
    const wrong = { authorization: 'Bearer wrong' };
    expect((await fetch(`${pplx.url}/models`, { headers: wrong })).status).toBe(404);
    expect((await fetch(`${pplx.url}/v2/chat/completions`, { method: 'POST', headers: wrong })).status).toBe(
      404,
    );
    expect((await chat(`${pplx.url}/chat/completions`, {}, wrong)).status).toBe(401);
    const oai = await mock({ profile: 'openai', apiKey: 'right' });
    expect((await fetch(`${oai.url}/nope`, { headers: wrong })).status).toBe(401);
    expect((await fetch(`${oai.url}/nope`, { headers: { authorization: 'Bearer right' } })).status).toBe(404);
  });

  it('a chat request without messages is refused after the key check: 400, or 422 with pydantic detail (mistral)', async () => {
    const oai = await mock({ profile: 'openai', apiKey: 'k' });
    expect(
      (await chat(`${oai.url}/chat/completions`, { max_tokens: 1 }, { authorization: 'Bearer x' })).status,
    ).toBe(401);
    const bad = await chat(`${oai.url}/chat/completions`, { max_tokens: 1 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { message: "Missing required parameter: 'messages'." } });
    const mistral = await mock({ profile: 'mistral' });
    const res = await chat(`${mistral.url}/chat/completions`, { max_tokens: 1 });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({
      object: 'error',
      message: { detail: [{ loc: ['body', 'model'] }, { loc: ['body', 'messages'] }] },
    });
    expect((await fetch(`${mistral.url}/models`)).status).toBe(200);
    const unlisted = await mock({ profile: 'mistral', quirks: { models: 'none-json' } });
    expect((await fetch(`${unlisted.url}/models`)).status).toBe(404);
  });

  it('gemini: lists models/<id>, chat takes both spellings, a wrong key is 400 API_KEY_INVALID in an array', async () => {
    const m = await mock({ profile: 'gemini', apiKey: 'AIza-right' });
    const auth = { authorization: 'Bearer AIza-right' };
    const list = (await (await fetch(`${m.url}/models`, { headers: auth })).json()) as {
      data: { id: string }[];
    };
    expect(list.data.map((d) => d.id)).toContain('models/gemini-2.5-pro');
    const messages = [{ role: 'user', content: 'hi' }];
    for (const model of ['gemini-2.5-pro', 'models/gemini-2.5-pro']) {
      expect((await chat(`${m.url}/chat/completions`, { model, messages }, auth)).status, model).toBe(200);
    }
    const wrong = await fetch(`${m.url}/models`, { headers: { authorization: 'Bearer AIza-wrong' } });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject([
      { error: { status: 'INVALID_ARGUMENT', details: [{ reason: 'API_KEY_INVALID' }, {}] } },
    ]);
  });

  it('azure v1: /openai/v1/chat/completions names the deployment in the body and takes no dated api-version', async () => {
    const m = await mock({ profile: 'azure', apiKey: 'az' });
    const post = (path: string, body: unknown) =>
      fetch(`${m.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'api-key': 'az' },
        body: JSON.stringify(body),
      });
    const messages = [{ role: 'user', content: 'hi v1' }];
    const ok = await post('/openai/v1/chat/completions', { model: 'my-gpt-4o-deployment', messages });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { model: string }).model).toBe('my-gpt-4o-deployment');
    expect(
      (await post('/openai/v1/chat/completions?api-version=preview', { model: 'gpt-4o', messages })).status,
    ).toBe(200);
    expect((await post('/openai/v1/chat/completions', { model: 'nope', messages })).status).toBe(404);
    expect(
      (await post('/openai/v1/chat/completions?api-version=2024-10-21', { model: 'gpt-4o', messages }))
        .status,
    ).toBe(400);
    // The deployments API knows dated versions only.
    expect(
      (await post('/openai/deployments/my-gpt-4o-deployment/chat/completions?api-version=v1', { messages }))
        .status,
    ).toBe(404);
    const list = await fetch(`${m.url}/openai/v1/models`, { headers: { 'api-key': 'az' } });
    expect(list.status).toBe(200);
  });

  it('perplexity: rejects stop and frequency_penalty, adds citations', async () => {
    const m = await mock({ profile: 'perplexity' });
    const messages = [{ role: 'user', content: 'search this' }];
    const stop = await chat(`${m.url}/chat/completions`, { model: 'sonar-pro', messages, stop: ['\n'] });
    expect(stop.status).toBe(400);
    expect(await stop.json()).toMatchObject({
      error: { type: 'invalid_parameter', message: expect.stringContaining('stop') },
    });
    const fp = await chat(`${m.url}/chat/completions`, {
      model: 'sonar-pro',
      messages,
      frequency_penalty: 1,
    });
    expect(fp.status).toBe(400);
    const ok = await chat(`${m.url}/chat/completions`, { model: 'sonar-pro', messages });
    expect(((await ok.json()) as { citations: string[] }).citations.length).toBeGreaterThan(0);
  });

  it('deepseek-reasoner streams reasoning_content before content', async () => {
    const m = await mock({ profile: 'deepseek' });
    const messages = [{ role: 'user', content: 'think' }];
    const chunks = (await sse(
      await chat(`${m.url}/chat/completions`, { model: 'deepseek-reasoner', messages, stream: true }),
    )) as Chunk[];
    const kinds = chunks.map((c) =>
      c.choices[0]?.delta.reasoning_content ? 'r' : c.choices[0]?.delta.content ? 'c' : '-',
    );
    const firstContent = kinds.indexOf('c');
    expect(kinds.lastIndexOf('r')).toBeLessThan(firstContent);
    expect(kinds.filter((k) => k === 'r').length).toBeGreaterThan(1);
    const plain = await chat(`${m.url}/chat/completions`, { model: 'deepseek-reasoner', messages });
    const msg = ((await plain.json()) as { choices: { message: Record<string, string> }[] }).choices[0]
      ?.message;
    expect(msg?.reasoning_content).toContain('think');
    expect(msg?.content).toBe('Hello from deepseek! You said: think');
    // deepseek-chat has no reasoning.
    const chatModel = await chat(`${m.url}/chat/completions`, { model: 'deepseek-chat', messages });
    expect(JSON.stringify(await chatModel.json())).not.toContain('reasoning_content');
  });

  it('minimax wraps reasoning in <think> at the start of the content', async () => {
    const m = await mock({ profile: 'minimax' });
    const res = await chat(`${m.url}/chat/completions`, {
      model: 'MiniMax-M2.5',
      messages: [{ role: 'user', content: 'code' }],
    });
    const content = ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]
      ?.message.content;
    expect(content).toMatch(/^<think>\n[\s\S]*\n<\/think>\n\nHello from minimax! You said: code$/);
  });

  it('include_usage adds a final chunk with empty choices and usage before [DONE]', async () => {
    const m = await mock({ profile: 'openai' });
    const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'count me' }], stream: true };
    const withUsage = (await sse(
      await chat(`${m.url}/chat/completions`, { ...body, stream_options: { include_usage: true } }),
    )) as Chunk[];
    expect(withUsage.at(-1)).toMatchObject({
      choices: [],
      usage: { completion_tokens: 7, prompt_tokens: 2 },
    });
    expect(withUsage.at(-2)?.choices[0]?.finish_reason).toBe('stop');
    const without = (await sse(await chat(`${m.url}/chat/completions`, body))) as Chunk[];
    expect(without.every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
  });
});

async function firstModel(profile: MockProfileName): Promise<string> {
  const { defaultModelIds } = await import('../../src/mock-provider/profiles.ts');
  return defaultModelIds(profile)[0] as string;
}
