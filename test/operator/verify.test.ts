import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConnectionReasons, REASON_INVALID_SPEC } from '../../src/api/conditions.ts';
import { AllowlistReadyReasons, AllowlistRefReasons } from '../../src/api/model-allowlist.ts';
import { VerificationReasons } from '../../src/api/verification.ts';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { type VerifyTarget, verifyConnection } from '../../src/operator/verification/verify.ts';
import { useMockProviders } from '../support/mocks.ts';

const mock = useMockProviders();

const target = (m: MockProvider, extra: Partial<VerifyTarget> = {}): VerifyTarget => ({
  provider: 'OpenAI',
  url: m.url,
  timeoutMs: 2000,
  ...extra,
});

describe('verification speaks each provider dialect', () => {
  it('OpenAI: GET {url}/models with a Bearer key', async () => {
    const m = await mock({ profile: 'openai', apiKey: 'sk-test-openai' });
    const out = await verifyConnection(target(m, { apiKey: 'sk-test-openai' }));
    expect(out).toMatchObject({ ok: true, reason: 'Verified' });
    expect(out.ok && out.models.length).toBeGreaterThan(0);
    const req = m.requests.at(-1);
    expect(req?.path).toBe('/v1/models');
    expect(req?.headers.authorization).toBe('Bearer sk-test-openai');
  });

  it('sends no Authorization header when there is no key (local servers)', async () => {
    const m = await mock({ profile: 'openai' });
    await verifyConnection(target(m));
    expect(m.requests.at(-1)?.headers.authorization).toBeUndefined();
  });

  it('Azure: /openai/models?api-version= with an api-key header', async () => {
    const m = await mock({ profile: 'azure', apiKey: 'azure-key' });
    const out = await verifyConnection(
      target(m, { provider: 'AzureOpenAI', apiKey: 'azure-key', azureApiVersion: '2024-10-21' }),
    );
    expect(out.reason).toBe('Verified');
    const req = m.requests.at(-1);
    expect(req?.path).toBe('/openai/models');
    expect(req?.query['api-version']).toBe('2024-10-21');
    expect(req?.headers['api-key']).toBe('azure-key');
    expect(req?.headers.authorization).toBeUndefined();
  });

  it('Anthropic: x-api-key and anthropic-version, following pagination to the last page', async () => {
    const ids = Array.from({ length: 2345 }, (_, i) => `claude-test-${i}`);
    const m = await mock({ profile: 'anthropic', apiKey: 'sk-ant-test', models: ids });
    const out = await verifyConnection(target(m, { provider: 'Anthropic', apiKey: 'sk-ant-test' }));
    expect(out.ok && out.models.map((x) => x.id)).toEqual(ids);
    const pages = m.requests.filter((r) => r.path === '/v1/models');
    expect(pages.length).toBe(3);
    expect(pages[1]?.query.after_id).toBe('claude-test-999');
    for (const p of pages) {
      expect(p.headers['x-api-key']).toBe('sk-ant-test');
      expect(p.headers['anthropic-version']).toBe('2023-06-01');
    }
  });

  it('Gemini: the base path keeps /v1beta/openai and has no double slash', async () => {
    const m = await mock({ profile: 'gemini', apiKey: 'g' });
    const out = await verifyConnection(target(m, { apiKey: 'g' }));
    expect(out.reason).toBe('Verified');
    expect(m.requests.at(-1)?.path).toBe('/v1beta/openai/models');
  });

  it('Gemini: listed models/<id> are exposed as <id> and keep the listed ID for upstream', async () => {
    const m = await mock({ profile: 'gemini', apiKey: 'g' });
    const out = await verifyConnection(target(m, { apiKey: 'g' }));
    expect(out.ok && out.models).toContainEqual({
      id: 'gemini-2.5-pro',
      upstreamId: 'models/gemini-2.5-pro',
      ownedBy: 'google',
    });
    expect(out.ok && out.models.every((x) => !x.id.startsWith('models/'))).toBe(true);
  });

  it('Gemini: a wrong key (HTTP 400 API_KEY_INVALID) → Unauthorized', async () => {
    const m = await mock({ profile: 'gemini', apiKey: 'right' });
    const out = await verifyConnection(target(m, { apiKey: 'AIza-wrong-key-0123' }));
    expect(out).toMatchObject({ reason: 'Unauthorized', statusCode: 400 });
    expect(out.message).toMatch(/rejected the API key \(HTTP 400: API key not valid/);
  });

  it.each([
    ['v1', undefined],
    ['preview', 'preview'],
    ['latest', 'latest'],
  ])('Azure v1 API (apiVersion %s): GET /openai/v1/models, api-version %s', async (version, query) => {
    const m = await mock({ profile: 'azure', apiKey: 'azure-key' });
    const out = await verifyConnection(
      target(m, { provider: 'AzureOpenAI', apiKey: 'azure-key', azureApiVersion: version }),
    );
    expect(out.reason).toBe('Verified');
    const req = m.requests.at(-1);
    expect(req?.path).toBe('/openai/v1/models');
    expect(req?.query['api-version']).toBe(query);
    expect(req?.headers['api-key']).toBe('azure-key');
  });

  it('lists 5,000 OpenRouter models', async () => {
    const m = await mock({ profile: 'openrouter', apiKey: 'or' });
    const out = await verifyConnection(target(m, { apiKey: 'or' }));
    expect(out.ok && out.models.length).toBe(5000);
  });
});

describe('an upstream without /models is verified by a probe that spends no tokens', () => {
  it.each([
    ['no-models', 400],
    ['perplexity', 400],
    ['minimax', 400],
    ['github-models', 400],
  ] as const)(
    '%s: GET /models 404, then one POST chat/completions without model and messages → %s',
    async (profile, status) => {
      const m = await mock({ profile, apiKey: 'the-key' });
      const out = await verifyConnection(target(m, { apiKey: 'the-key' }));
      expect(out.reason).toBe('ModelsEndpointUnsupported');
      expect(out.message).toMatch(/does not list its models/);
      expect(out.message).toContain(`(HTTP ${status}), so the URL and the API key work`);
      expect(out.message).toMatch(/add the model IDs you use to a ModelAllowlist/);
      const base = new URL(m.url).pathname.replace(/\/$/, '');
      expect(m.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        `GET ${base}/models`,
        `POST ${base}/chat/completions`,
      ]);
      const probe = m.requests[1];
      expect(probe?.body).toEqual({ max_tokens: 1 });
      expect(probe?.headers['content-type']).toBe('application/json');
      expect(probe?.headers.authorization).toBe('Bearer the-key');
    },
  );

  it('a FastAPI server (Mistral) refuses the probe with 422: URL and key work', async () => {
    const m = await mock({ profile: 'mistral', apiKey: 'k', quirks: { models: 'none-json' } });
    const out = await verifyConnection(target(m, { apiKey: 'k' }));
    expect(out.reason).toBe('ModelsEndpointUnsupported');
    expect(out.message).toContain('(HTTP 422)');
  });

  it('a wrong key on a server that answers 404 before it looks at the key → Unauthorized', async () => {
    const m = await mock({ profile: 'perplexity', apiKey: 'the-right-key' });
    const out = await verifyConnection(target(m, { apiKey: 'pplx-canary-0123456789' }));
    expect(m.requests[0]).toMatchObject({ method: 'GET', path: '/models' });
    expect(out).toMatchObject({ reason: 'Unauthorized', statusCode: 401 });
    expect(out.message).toMatch(
      /^the upstream rejected the API key \(HTTP 401 to the verification probe POST \/chat\/completions: /,
    );
    expect(out.message).not.toContain('pplx-canary-0123456789');
  });

  it('no key where the upstream wants one → Unauthorized that says to configure one', async () => {
    const m = await mock({ profile: 'no-models', apiKey: 'needed' });
    const out = await verifyConnection(target(m));
    expect(out.reason).toBe('Unauthorized');
    expect(out.message).toMatch(/requires an API key .*spec\.apiKeySecretRef/);
  });

  it("Google's 400 API_KEY_INVALID on the probe → Unauthorized, not a key accepted", async () => {
    const m = await mock({ profile: 'gemini', apiKey: 'right', quirks: { models: 'none-json' } });
    const out = await verifyConnection(target(m, { apiKey: 'wrong' }));
    expect(out).toMatchObject({ reason: 'Unauthorized', statusCode: 400 });
  });

  it('a wrong base URL (404 before the key, on both paths) → EndpointNotFound, whatever the key', async () => {
    const m = await mock({ profile: 'perplexity', apiKey: 'the-right-key' });
    for (const apiKey of ['the-right-key', 'a-wrong-key']) {
      m.reset();
      const out = await verifyConnection(target(m, { url: `${m.origin}/v2`, apiKey }));
      expect(out.reason).toBe('EndpointNotFound');
      expect(out.message).toMatch(
        /^GET \/v2\/models returned HTTP 404 and POST \/v2\/chat\/completions returned HTTP 404: .*set spec\.url/,
      );
      expect(m.requests.map((r) => r.path)).toEqual(['/v2/models', '/v2/chat/completions']);
    }
  });

  it('on a server that checks the key before the path, a wrong base URL needs the right key to be found', async () => {
    const m = await mock({ profile: 'openai', apiKey: 'sk-right' });
    const wrongUrl = `${m.url}/v2`;
    expect((await verifyConnection(target(m, { url: wrongUrl, apiKey: 'sk-right' }))).reason).toBe(
      'EndpointNotFound',
    );
    expect((await verifyConnection(target(m, { url: wrongUrl, apiKey: 'sk-wrong' }))).reason).toBe(
      'Unauthorized',
    );
  });

  it.each([
    [403, 'Forbidden', /may not call POST \/v1\/chat\/completions/],
    [429, 'RateLimited', /rate limiting \(HTTP 429 to the verification probe/],
    [503, 'UpstreamError', /and the verification probe POST \/v1\/chat\/completions failed with HTTP 503/],
    [409, 'UpstreamError', /failed with HTTP 409/],
  ] as const)('the probe answering %s → %s', async (status, reason, message) => {
    const m = await mock({
      profile: 'no-models',
      failure: { kind: 'status', status },
      failureScope: 'inference',
    });
    const out = await verifyConnection(target(m));
    expect(out.reason).toBe(reason);
    expect(out.message).toMatch(message);
  });

  it('the probe answering 2xx → ProbeAccepted, which says it may have been billed', async () => {
    const m = await mock({
      profile: 'no-models',
      failure: { kind: 'status', status: 200, body: '{"choices":[]}' },
      failureScope: 'inference',
    });
    const out = await verifyConnection(target(m));
    expect(out).toMatchObject({ reason: 'ProbeAccepted', statusCode: 200 });
    expect(out.message).toMatch(/may have run \(and billed\) a completion of at most 1 token/);
  });

  it('Azure (dated API): /openai/models 404 means a wrong URL or api-version; no probe is sent', async () => {
    const m = await mock({ profile: 'azure', apiKey: 'az' });
    const out = await verifyConnection(
      target(m, {
        provider: 'AzureOpenAI',
        url: `${m.url}/openai`,
        apiKey: 'az',
        azureApiVersion: '2024-10-21',
      }),
    );
    expect(out.reason).toBe('EndpointNotFound');
    expect(out.message).toMatch(/not the resource endpoint .* or azure\.apiVersion "2024-10-21"/);
    expect(m.requests.map((r) => r.method)).toEqual(['GET']);
  });

  it('Azure v1 API: a wrong URL is probed at /openai/v1/chat/completions', async () => {
    const m = await mock({ profile: 'azure', apiKey: 'az' });
    const out = await verifyConnection(
      target(m, { provider: 'AzureOpenAI', url: `${m.url}/x`, apiKey: 'az', azureApiVersion: 'v1' }),
    );
    expect(out.reason).toBe('EndpointNotFound');
    expect(m.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /x/openai/v1/models',
      'POST /x/openai/v1/chat/completions',
    ]);
  });
});

describe('verification failures become reasons a person can act on', () => {
  it('401 → Unauthorized, and the key never appears in the message', async () => {
    const m = await mock({ profile: 'openai', apiKey: 'the-right-key' });
    const out = await verifyConnection(target(m, { apiKey: 'sk-canary-0123456789' }));
    expect(out.reason).toBe('Unauthorized');
    expect(out.message).toMatch(/rejected the API key/);
    expect(out.message).not.toContain('sk-canary-0123456789');
  });

  it('403 → Forbidden', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'status', status: 403 } });
    expect((await verifyConnection(target(m))).reason).toBe('Forbidden');
  });

  it('429 → RateLimited, honouring Retry-After', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'status', status: 429, retryAfter: '42' } });
    const out = await verifyConnection(target(m));
    expect(out).toMatchObject({ ok: false, reason: 'RateLimited', retryAfterMs: 42_000 });
  });

  it('5xx → UpstreamError', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'status', status: 503 } });
    const out = await verifyConnection(target(m));
    expect(out.reason).toBe('UpstreamError');
    expect(out.message).toContain('HTTP 503');
  });

  it('an HTML page → InvalidResponse that points at the base URL', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'non-json' } });
    const out = await verifyConnection(target(m));
    expect(out.reason).toBe('InvalidResponse');
    expect(out.message).toMatch(/ending in \/v1/);
  });

  it('JSON without a data list → InvalidResponse', async () => {
    const m = await mock({
      profile: 'openai',
      failure: { kind: 'status', status: 200, body: '{"models":[]}' },
    });
    expect((await verifyConnection(target(m))).reason).toBe('InvalidResponse');
  });

  it('a server that never answers → Timeout within the verification timeout', async () => {
    const m = await mock({ profile: 'openai', failure: { kind: 'hang' } });
    const out = await verifyConnection(target(m, { timeoutMs: 500 }));
    // the server never answers, so a Timeout at all means the timeout ended it; the message names which one
    expect(out.reason).toBe('Timeout');
    expect(out.message).toContain('did not answer within 0.5s');
    await m.waitForAbort(() => true, 10_000);
  });

  it('a closed port → ConnectionRefused', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const out = await verifyConnection({
      provider: 'OpenAI',
      url: `http://127.0.0.1:${port}/v1`,
      timeoutMs: 2000,
    });
    expect(out.reason).toBe('ConnectionRefused');
  });

  it('an unresolvable host → DNSError', async () => {
    const out = await verifyConnection({
      provider: 'OpenAI',
      url: 'http://no-such-host.invalid/v1',
      timeoutMs: 5000,
    });
    expect(out.reason).toBe('DNSError');
  });

  it('a self-signed certificate → TLSError', async () => {
    const m = await mock({ profile: 'openai', tls: true });
    const out = await verifyConnection(target(m));
    expect(out.reason).toBe('TLSError');
  });
});

describe('reasons are documented', () => {
  it('every condition reason has a row in docs/operator.md saying what to do', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'operator.md'), 'utf8');
    const reasons = [
      ...VerificationReasons,
      ...ConnectionReasons,
      REASON_INVALID_SPEC,
      ...AllowlistReadyReasons,
      ...AllowlistRefReasons,
    ];
    for (const reason of reasons) {
      expect(doc, reason).toMatch(new RegExp(`^\\| \`${reason}\`[^|]*\\|[^|]+\\|[^|]+\\|$`, 'm'));
    }
  });
});
