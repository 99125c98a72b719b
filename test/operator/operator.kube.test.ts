import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { useMockProviders } from '../support/mocks.ts';
import { Api, cond, eventually, startOperator } from './harness.ts';

const KEY = 'sk-canary-operator-4f1c9a';
let api: Api;
let op: Operator;
const mock = useMockProviders();

/** The connection most tests look at or change; each test that changes it puts it back to Verified. */
let openai: MockProvider;

beforeAll(async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'operator');
  api = new Api(kc, ns);
  op = startOperator(kc, ns, { leaderElection: false, probeListen: { host: '127.0.0.1', port: 0 } });
  openai = await mock({ profile: 'openai', apiKey: KEY });
  await api.secret('openai-key', { apiKey: KEY });
  await api.connection('openai', {
    url: `${openai.url}/`,
    apiKeySecretRef: { name: 'openai-key' },
    tags: ['test'],
  });
  await api.waitReady('openai', 'Verified');
});

afterAll(async () => {
  await op?.stop();
});

describe('operator against a real API server', () => {
  it('verifies a connection, writes honest status and puts key and models in the snapshot', async () => {
    const c = await api.waitReady('openai', 'Verified');
    expect(cond(c, 'Ready')?.status).toBe('True');
    expect(cond(c, 'SecretResolved')).toMatchObject({ status: 'True', reason: 'SecretResolved' });
    expect(cond(c, 'Verified')).toMatchObject({ status: 'True', reason: 'Verified' });
    expect(cond(c, 'ModelsDiscovered')).toMatchObject({ status: 'True', reason: 'ModelsDiscovered' });
    for (const x of c.status?.conditions ?? []) expect(x.observedGeneration).toBe(c.metadata.generation);
    expect(c.status?.exposedModelCount).toBeGreaterThan(0);
    expect(c.status?.lastVerifiedTime).toMatch(/Z$/);
    expect(JSON.stringify(c.status)).not.toContain(KEY);

    const snap = await eventually(async () => {
      const s = await api.snapshot();
      return s?.connections.find((x) => x.name === 'openai' && x.serving) ? s : undefined;
    }, 'snapshot with the connection');
    const entry = snap.connections.find((x) => x.name === 'openai');
    expect(entry).toMatchObject({ apiKey: KEY, url: openai.url, serving: true, tags: ['test'] });
    expect(entry?.models.length).toBe(c.status?.exposedModelCount);
    // The trailing slash in spec.url was normalised away before calling the upstream.
    expect(openai.requests.some((r) => r.path === '/v1/models')).toBe(true);
  });

  it('makes no status writes in steady state', async () => {
    const writes = async () => (await op.metrics.statusWrites.get()).values.reduce((a, v) => a + v.value, 0);
    // Steady: what earlier changes set off has been written (a quiet second), however long that took.
    let before = await writes();
    await eventually(async () => {
      await new Promise((r) => setTimeout(r, 1000));
      const now = await writes();
      const quiet = now === before;
      before = now;
      return quiet;
    }, 'a second without status writes');
    const rv = (await api.getConnection('openai')).metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 1500));
    expect(await writes()).toBe(before);
    expect((await api.getConnection('openai')).metadata.resourceVersion).toBe(rv);
  });

  it('key rotation: a wrong key is reported at once, a fixed key recovers, the snapshot follows', async () => {
    await api.updateSecret('openai-key', { apiKey: 'sk-wrong-key' });
    const bad = await api.waitReady('openai', 'Unauthorized');
    expect(cond(bad, 'Verified')?.message).toMatch(/rejected the API key/);
    expect(JSON.stringify(bad.status)).not.toContain('sk-wrong-key');
    await api.updateSecret('openai-key', { apiKey: KEY });
    await api.waitReady('openai', 'Verified');
    await eventually(
      async () => (await api.snapshot())?.connections.find((x) => x.name === 'openai')?.apiKey === KEY,
      'rotated key in snapshot',
    );
    const events = await api.events('openai');
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['Verified', 'Unauthorized']));
    expect(events.find((e) => e.reason === 'Unauthorized')?.type).toBe('Warning');
    expect(JSON.stringify(events)).not.toContain(KEY);
  });

  it('deleting the Secret takes the connection out of the snapshot within seconds', async () => {
    await api.deleteSecret('openai-key');
    const c = await api.waitReady('openai', 'SecretNotFound');
    expect(cond(c, 'SecretResolved')?.message).toContain('Secret "openai-key" was not found');
    await eventually(async () => {
      const e = (await api.snapshot())?.connections.find((x) => x.name === 'openai');
      return e && !e.serving && e.apiKey === undefined && e.models.length === 0;
    }, 'connection not serving');
    await api.secret('openai-key', { apiKey: KEY });
    await api.waitReady('openai', 'Verified');
  });

  it('the enabled toggle disables without deleting, and re-enabling restores it', async () => {
    await api.patchConnection('openai', { enabled: false });
    const c = await api.waitReady('openai', 'Disabled');
    expect(cond(c, 'Ready')?.status).toBe('False');
    await eventually(
      async () => (await api.snapshot())?.connections.find((x) => x.name === 'openai')?.serving === false,
      'disabled in snapshot',
    );
    await api.patchConnection('openai', { enabled: true });
    await api.waitReady('openai', 'Verified');
  });

  it('allowlists filter the models; missing ones are reported', async () => {
    await api.allowlist('openai-some', 'openai', ['gpt-4o', 'no-such-model']);
    const a = await eventually(async () => {
      const x = await api.getAllowlist('openai-some');
      return cond(x, 'Ready')?.reason === 'ModelsMissing' ? x : undefined;
    }, 'allowlist status');
    expect(a.status?.exposedModels).toEqual(['gpt-4o']);
    expect(a.status?.missingModels).toEqual(['no-such-model']);
    expect(cond(a, 'ResolvedRefs')?.status).toBe('True');
    const c = await eventually(async () => {
      const x = await api.getConnection('openai');
      return x.status?.exposedModelCount === 1 ? x : undefined;
    }, 'one exposed model');
    expect(c.status?.models).toEqual(['gpt-4o']);
    await api.deleteAllowlist('openai-some');
    await eventually(
      async () => ((await api.getConnection('openai')).status?.exposedModelCount as number) > 1,
      'all models again',
    );
  });

  it('an upstream without /models is Ready once an allowlist names its models (Perplexity)', async () => {
    const pplx = await mock({ profile: 'perplexity', apiKey: 'pplx' });
    await api.secret('pplx', { apiKey: 'pplx' });
    await api.connection('pplx', { url: pplx.url, apiKeySecretRef: { name: 'pplx' }, dropParams: ['stop'] });
    const c = await api.waitReady('pplx', 'ModelsEndpointUnsupported');
    expect(cond(c, 'Ready')).toMatchObject({ status: 'False' });
    expect(cond(c, 'Ready')?.message).toMatch(/add the model IDs you use to a ModelAllowlist/);
    await api.allowlist('pplx', 'pplx', ['sonar-pro', 'sonar-reasoning-pro']);
    const ready = await eventually(async () => {
      const x = await api.getConnection('pplx');
      return cond(x, 'Ready')?.status === 'True' ? x : undefined;
    }, 'pplx ready');
    expect(ready.status?.models).toEqual(['sonar-pro', 'sonar-reasoning-pro']);
    const entry = await eventually(
      async () => (await api.snapshot())?.connections.find((x) => x.name === 'pplx' && x.serving),
      'pplx snapshot',
    );
    expect(entry.dropParams).toEqual(['stop']);
  });

  it('without /models, a wrong key or a wrong base URL is not Ready even with an allowlist', async () => {
    // Perplexity answers 404 for a path it does not serve before it looks at the key.
    const up = await mock({ profile: 'perplexity', apiKey: 'pplx-right' });
    await api.secret('pplx-wrong', { apiKey: 'pplx-wrong-key' });
    await api.secret('pplx-right', { apiKey: 'pplx-right' });
    await api.connection('pplx-badkey', { url: up.url, apiKeySecretRef: { name: 'pplx-wrong' } });
    await api.connection('pplx-badurl', { url: `${up.origin}/v2`, apiKeySecretRef: { name: 'pplx-right' } });
    await api.allowlist('pplx-badkey', 'pplx-badkey', ['sonar-pro']);
    await api.allowlist('pplx-badurl', 'pplx-badurl', ['sonar-pro']);

    const badKey = await api.waitReady('pplx-badkey', 'Unauthorized');
    expect(cond(badKey, 'Ready')?.status).toBe('False');
    expect(cond(badKey, 'Verified')?.message).toMatch(
      /rejected the API key \(HTTP 401 to the verification probe/,
    );
    expect(JSON.stringify(badKey.status)).not.toContain('pplx-wrong-key');
    const badUrl = await api.waitReady('pplx-badurl', 'EndpointNotFound');
    expect(cond(badUrl, 'Ready')?.message).toMatch(
      /GET \/v2\/models returned HTTP 404 and POST \/v2\/chat\/completions/,
    );
    for (const name of ['pplx-badkey', 'pplx-badurl']) {
      expect((await api.getConnection(name)).status?.exposedModelCount).toBe(0);
      const a = await eventually(async () => {
        const x = await api.getAllowlist(name);
        return cond(x, 'Ready')?.reason === 'ConnectionNotReady' ? x : undefined;
      }, `${name} allowlist not ready`);
      expect(a.status?.exposedModels).toEqual([]);
    }
    const snap = await eventually(async () => {
      const x = await api.snapshot();
      return x?.connections.some((e) => e.name === 'pplx-badurl') ? x : undefined;
    }, 'both in the snapshot');
    for (const name of ['pplx-badkey', 'pplx-badurl']) {
      expect(snap.connections.find((x) => x.name === name)).toMatchObject({ serving: false, models: [] });
    }
    // The probe spent no tokens: a chat request without model and messages, refused before any model ran.
    const probes = up.requests.filter((r) => r.method === 'POST');
    expect(probes.length).toBeGreaterThan(0);
    for (const r of probes) expect(r.body).toEqual({ max_tokens: 1 });
  });

  it('a glob on an upstream without a model list is reported on its allowlist', async () => {
    const up = await mock({ profile: 'perplexity', apiKey: 'pplx-glob' });
    await api.secret('pplx-glob', { apiKey: 'pplx-glob' });
    await api.connection('pplx-glob', { url: up.url, apiKeySecretRef: { name: 'pplx-glob' } });
    await api.allowlist('pplx-globs', 'pplx-glob', ['sonar-pro', 'sonar-*']);
    const a = await eventually(async () => {
      const x = await api.getAllowlist('pplx-globs');
      return cond(x, 'Ready')?.reason === 'GlobNeedsModelList' ? x : undefined;
    }, 'glob reported');
    expect(cond(a, 'Ready')?.status).toBe('False');
    expect(cond(a, 'Ready')?.message).toMatch(
      /^"sonar-\*" can never match: the upstream does not list its models/,
    );
    expect(a.status?.exposedModels).toEqual(['sonar-pro']);
    await api.deleteAllowlist('pplx-globs');
  });

  it('Gemini lists models/<id>: allowlists match <id>, the snapshot sends the listed ID upstream', async () => {
    const gem = await mock({ profile: 'gemini', apiKey: 'AIza-gemini' });
    await api.secret('gemini', { apiKey: 'AIza-gemini' });
    await api.connection('gemini', { url: gem.url, apiKeySecretRef: { name: 'gemini' } });
    await api.allowlist('gemini', 'gemini', ['gemini-2.5-pro', 'gemini-2.0-*']);
    const a = await eventually(async () => {
      const x = await api.getAllowlist('gemini');
      return cond(x, 'Ready')?.status === 'True' ? x : undefined;
    }, 'gemini allowlist ready');
    expect(a.status?.exposedModels).toEqual(['gemini-2.0-flash', 'gemini-2.5-pro']);
    const c = await api.waitReady('gemini', 'Verified');
    expect(c.status?.models).toEqual(['gemini-2.0-flash', 'gemini-2.5-pro']);
    // The first serving generation may predate the allowlist: wait for the one that applies it.
    const entry = await eventually(async () => {
      const e = (await api.snapshot())?.connections.find((x) => x.name === 'gemini' && x.serving);
      return e?.models.length === 2 ? e : undefined;
    }, 'gemini snapshot with the allowlist applied');
    expect(entry.models).toEqual([
      expect.objectContaining({ id: 'gemini-2.0-flash', upstreamId: 'models/gemini-2.0-flash' }),
      expect.objectContaining({ id: 'gemini-2.5-pro', upstreamId: 'models/gemini-2.5-pro' }),
    ]);
  });

  it("Azure's v1 API (apiVersion v1) is verified at /openai/v1/models", async () => {
    const az = await mock({ profile: 'azure', apiKey: 'az-v1' });
    await api.secret('az-v1', { apiKey: 'az-v1' });
    await api.connection('az-v1', {
      provider: 'AzureOpenAI',
      url: az.url,
      apiKeySecretRef: { name: 'az-v1' },
      azure: { apiVersion: 'v1' },
    });
    await api.allowlist('az-v1', 'az-v1', ['my-gpt-4o-deployment']);
    const c = await api.waitReady('az-v1', 'Verified');
    expect(c.status?.models).toEqual(['my-gpt-4o-deployment']);
    const req = az.requests.find((r) => r.method === 'GET');
    expect(req).toMatchObject({ path: '/openai/v1/models', query: {} });
  });

  it('Azure exposes the allowlisted deployment names', async () => {
    const az = await mock({ profile: 'azure', apiKey: 'az' });
    await api.secret('az', { apiKey: 'az' });
    await api.connection('az', {
      provider: 'AzureOpenAI',
      url: az.url,
      apiKeySecretRef: { name: 'az' },
      azure: { apiVersion: '2024-10-21' },
    });
    const none = await api.waitReady('az', 'NoModelsExposed');
    expect(cond(none, 'Ready')?.message).toMatch(/deployment names/);
    await api.allowlist('az', 'az', ['my-gpt-4o-deployment']);
    await eventually(
      async () => (await api.getConnection('az')).status?.exposedModelCount === 1,
      'deployment exposed',
    );
    expect(az.requests.at(-1)?.headers['api-key']).toBe('az');
  });

  it('an OpenRouter-sized list works, is bounded in status, and an allowlist is recommended', async () => {
    const or = await mock({ profile: 'openrouter', apiKey: 'or' });
    await api.secret('or', { apiKey: 'or' });
    await api.connection('openrouter', { url: or.url, apiKeySecretRef: { name: 'or' }, modelPrefix: 'or' });
    const c = await api.waitReady('openrouter', 'Verified');
    expect(cond(c, 'ModelsDiscovered')).toMatchObject({ status: 'True', reason: 'TooManyModels' });
    expect(cond(c, 'ModelsDiscovered')?.message).toMatch(/add a ModelAllowlist/);
    expect(c.status?.exposedModelCount).toBe(5000);
    const models = c.status?.models as string[];
    expect(models.length).toBe(500);
    expect(models[0]).toMatch(/^or\./);
    await eventually(
      async () => (await api.events('openrouter')).some((e) => e.reason === 'TooManyModels'),
      'TooManyModels event',
    );
  });

  it('a flaky upstream keeps its last good models (reported stale) instead of emptying the gateway', async () => {
    openai.setFailure({ kind: 'status', status: 503 }, 'models');
    try {
      // a spec change re-verifies at once
      await api.patchConnection('openai', { verification: { timeout: '5s' } });
      const c = await api.waitReady('openai', 'UpstreamError');
      expect(cond(c, 'Ready')?.message).toMatch(/serving the last good list of \d+ models .* \(stale\)/);
      expect(cond(c, 'ModelsDiscovered')?.reason).toBe('StaleModelList');
      // the snapshot follows the status asynchronously
      await eventually(async () => {
        const entry = (await api.snapshot())?.connections.find((x) => x.name === 'openai');
        return entry?.serving && entry.models.length > 0;
      }, 'the stale models still served');
    } finally {
      openai.setFailure(undefined);
    }
    await api.waitReady('openai', 'Verified', 20_000);
  });

  it('an allowlist naming a missing connection says so', async () => {
    await api.allowlist('orphan', 'does-not-exist', ['x']);
    const a = await eventually(async () => {
      const x = await api.getAllowlist('orphan');
      return cond(x, 'ResolvedRefs')?.reason === 'ConnectionNotFound' ? x : undefined;
    }, 'orphan status');
    expect(cond(a, 'Ready')?.status).toBe('False');
  });

  it('deleting a connection removes it from the snapshot', async () => {
    const up = await mock({ profile: 'openai' });
    await api.connection('doomed', { url: up.url });
    await api.waitReady('doomed', 'Verified');
    await eventually(
      async () => (await api.snapshot())?.connections.some((x) => x.name === 'doomed'),
      'doomed in the snapshot',
    );
    await api.deleteConnection('doomed');
    await eventually(
      async () => !(await api.snapshot())?.connections.some((x) => x.name === 'doomed'),
      'doomed gone',
    );
  });

  it('serves /metrics with connection and snapshot figures, never a key', async () => {
    const text = await (await fetch(`${op.probeAddress}/metrics`)).text();
    expect(text).toMatch(/plugboard_connection_up\{namespace="[^"]+",name="openai"\} 1/);
    expect(text).toMatch(/plugboard_snapshot_generation \d+/);
    expect(text).toMatch(/plugboard_verification_results_total\{reason="Verified"\} \d+/);
    expect(text).not.toContain(KEY);
    expect((await fetch(`${op.probeAddress}/readyz`)).status).toBe(200);
  });
});
