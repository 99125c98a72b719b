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

  it('fills in the Entra ID defaults: public-cloud authority, the Cognitive Services scope, the exchange audience', () => {
    const spec = ProviderConnectionSpec.parse({
      provider: 'AzureOpenAI',
      url: 'https://my-resource.openai.azure.com',
      azure: { apiVersion: 'v1' },
      entraID: {
        tenantID: '72f988bf-86f1-41af-91ab-2d7cd011db47',
        clientID: '00001111-aaaa-2222-bbbb-3333cccc4444',
        authorityHost: 'https://login.microsoftonline.us/',
        workloadIdentity: { serviceAccountName: 'plugboard-azure' },
      },
    });
    expect(spec.entraID).toEqual({
      tenantID: '72f988bf-86f1-41af-91ab-2d7cd011db47',
      clientID: '00001111-aaaa-2222-bbbb-3333cccc4444',
      authorityHost: 'https://login.microsoftonline.us',
      scope: 'https://cognitiveservices.azure.com/.default',
      workloadIdentity: { serviceAccountName: 'plugboard-azure', audience: 'api://AzureADTokenExchange' },
    });
  });

  it("fills in the Google defaults: cloud-platform scope, Google's STS and IAM Credentials endpoints", () => {
    const spec = ProviderConnectionSpec.parse({
      url: 'https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi',
      googleCloud: {
        workloadIdentityFederation: {
          serviceAccountName: 'vertex',
          audience:
            '//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/my-pool/providers/my-k8s',
        },
      },
    });
    expect(spec.googleCloud).toEqual({
      scope: 'https://www.googleapis.com/auth/cloud-platform',
      workloadIdentityFederation: {
        serviceAccountName: 'vertex',
        audience:
          '//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/my-pool/providers/my-k8s',
        tokenURL: 'https://sts.googleapis.com/v1/token',
        iamCredentialsURL: 'https://iamcredentials.googleapis.com',
      },
    });
    const key = ProviderConnectionSpec.parse({
      url: 'https://aiplatform.googleapis.com/v1/projects/p/locations/global/endpoints/openapi',
      googleCloud: { serviceAccountKeySecretRef: { name: 'vertex-key' } },
    });
    expect(key.googleCloud?.serviceAccountKeySecretRef).toEqual({
      name: 'vertex-key',
      key: 'credentials.json',
    });
  });

  it('accepts plain http only for a loopback identity provider (a local test double)', () => {
    const entra = (authorityHost: string) =>
      ProviderConnectionSpec.safeParse({
        provider: 'AzureOpenAI',
        url: 'https://r.openai.azure.com',
        azure: { apiVersion: 'v1' },
        entraID: {
          tenantID: 'contoso.onmicrosoft.com',
          clientID: '00001111-aaaa-2222-bbbb-3333cccc4444',
          authorityHost,
          clientSecretRef: { name: 's' },
        },
      }).success;
    expect(entra('http://127.0.0.1:8089')).toBe(true);
    expect(entra('http://[::1]:8089/')).toBe(true);
    expect(entra('http://login.example.com')).toBe(false);
    expect(entra('http://127.0.0.1.example.com')).toBe(false);
    expect(entra('https://user:pw@login.example.com')).toBe(false);
    expect(entra('https://login.example.com/?x=1')).toBe(false);
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
