import { describe, expect, it } from 'vitest';
import { ProviderConnectionSpec, parseDuration, parseResource } from '../../src/api/index.ts';
import { PROVIDER_PROFILES } from '../../src/providers/profiles.ts';
import { exampleFiles, invalidFixtures } from '../support/fixtures.ts';

describe('offline validation rejects what the API server rejects, with the same words', () => {
  for (const f of invalidFixtures()) {
    it(f.name, () => {
      const res = parseResource(f.object);
      expect(res.ok).toBe(false);
      if (!res.ok) expect(res.errors.join('\n')).toContain(f.expectZod);
    });
  }
});

describe('the example for every provider', () => {
  const examples = exampleFiles();

  it('exists for each provider profile', () => {
    expect(examples.map((e) => e.name).sort()).toEqual(PROVIDER_PROFILES.map((p) => p.id).sort());
  });

  for (const { name, docs } of examples) {
    it(`${name} is valid, and every reference in it resolves within the file`, () => {
      const secrets = new Set(
        docs.filter((d) => d.kind === 'Secret').map((d) => (d.metadata as { name: string }).name),
      );
      for (const doc of docs.filter((d) => d.kind !== 'Secret')) {
        const res = parseResource(doc);
        expect(res.ok ? [] : res.errors).toEqual([]);
        if (res.ok && res.kind === 'ProviderConnection' && res.value.spec.apiKeySecretRef) {
          expect(secrets).toContain(res.value.spec.apiKeySecretRef.name);
        }
        if (res.ok && res.kind === 'ModelAllowlist') {
          expect(
            docs.some(
              (d) =>
                d.kind === 'ProviderConnection' &&
                (d.metadata as { name: string }).name === res.value.spec.connectionRef.name,
            ),
          ).toBe(true);
        }
      }
    });
  }

  it('includes an allowlist exactly where the provider cannot list its models usefully', () => {
    for (const p of PROVIDER_PROFILES) {
      const docs = examples.find((e) => e.name === p.id)?.docs ?? [];
      expect(
        docs.some((d) => d.kind === 'ModelAllowlist'),
        p.id,
      ).toBe(p.allowlist !== 'discovered');
    }
  });
});

describe('ProviderConnection spec defaults and normalisation', () => {
  it('fills in the documented defaults', () => {
    expect(ProviderConnectionSpec.parse({ url: 'https://api.openai.com/v1' })).toEqual({
      provider: 'OpenAI',
      url: 'https://api.openai.com/v1',
      enabled: true,
      verification: { interval: '5m', timeout: '10s' },
      timeouts: { connect: '10s', firstByte: '5m', idle: '5m', total: '1h' },
    });
  });

  it("removes a trailing slash (Gemini's /v1beta/openai breaks with one)", () => {
    const spec = ProviderConnectionSpec.parse({
      url: 'https://generativelanguage.googleapis.com/v1beta/openai/',
    });
    expect(spec.url).toBe('https://generativelanguage.googleapis.com/v1beta/openai');
  });

  it('defaults the Secret key to apiKey', () => {
    const spec = ProviderConnectionSpec.parse({ url: 'http://vllm:8000/v1', apiKeySecretRef: { name: 'k' } });
    expect(spec.apiKeySecretRef).toEqual({ name: 'k', key: 'apiKey' });
  });

  it('accepts an Azure connection with its api-version', () => {
    const spec = ProviderConnectionSpec.parse({
      provider: 'AzureOpenAI',
      url: 'https://my-resource.openai.azure.com',
      azure: { apiVersion: '2024-02-15-preview' },
    });
    expect(spec.azure?.apiVersion).toBe('2024-02-15-preview');
  });
});

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
  ])('%s is %d ms', (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });

  it.each(['', '5', '-5m', '5 m', '1d', 'm5'])('rejects %j', (s) => {
    expect(() => parseDuration(s)).toThrow(/invalid duration/);
  });
});
