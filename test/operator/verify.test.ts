import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
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

  it('lists 5,000 OpenRouter models', async () => {
    const m = await mock({ profile: 'openrouter', apiKey: 'or' });
    const out = await verifyConnection(target(m, { apiKey: 'or' }));
    expect(out.ok && out.models.length).toBe(5000);
  });
});

describe('verification failures become reasons a person can act on', () => {
  it.each([
    ['no-models', 'ModelsEndpointUnsupported', /add the model IDs you use to a ModelAllowlist/],
    ['perplexity', 'ModelsEndpointUnsupported', /does not list its models/],
    ['minimax', 'ModelsEndpointUnsupported', /ModelAllowlist/],
  ] as const)('%s → %s', async (profile, reason, message) => {
    const m = await mock({ profile });
    const out = await verifyConnection(target(m));
    expect(out.reason).toBe(reason);
    expect(out.message).toMatch(message);
  });

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
    const started = performance.now();
    const out = await verifyConnection(target(m, { timeoutMs: 500 }));
    expect(out.reason).toBe('Timeout');
    expect(performance.now() - started).toBeLessThan(2000);
    await m.waitForAbort(() => true, 2000);
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
