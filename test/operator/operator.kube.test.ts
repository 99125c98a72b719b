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

beforeAll(async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'operator');
  api = new Api(kc, ns);
  op = startOperator(kc, ns, { leaderElection: false, probeListen: { host: '127.0.0.1', port: 0 } });
});

afterAll(async () => {
  await op?.stop();
});

describe('operator against a real API server', () => {
  let openai: MockProvider;

  it('verifies a connection, writes honest status and puts key and models in the snapshot', async () => {
    openai = await mock({ profile: 'openai', apiKey: KEY });
    await api.secret('openai-key', { apiKey: KEY });
    await api.connection('openai', {
      url: `${openai.url}/`,
      apiKeySecretRef: { name: 'openai-key' },
      tags: ['test'],
    });
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
    const before = (await op.metrics.statusWrites.get()).values.reduce((a, v) => a + v.value, 0);
    const rv = (await api.getConnection('openai')).metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 1500));
    const after = (await op.metrics.statusWrites.get()).values.reduce((a, v) => a + v.value, 0);
    expect(after).toBe(before);
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
    await api.patchConnection('openai', { verification: { timeout: '5s' } }); // a spec change re-verifies at once
    const c = await api.waitReady('openai', 'UpstreamError');
    expect(cond(c, 'Ready')?.message).toMatch(/serving the last good list of \d+ models .* \(stale\)/);
    expect(cond(c, 'ModelsDiscovered')?.reason).toBe('StaleModelList');
    const entry = (await api.snapshot())?.connections.find((x) => x.name === 'openai');
    expect(entry?.serving).toBe(true);
    expect(entry?.models.length).toBeGreaterThan(0);
    openai.setFailure(undefined);
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
    await api.deleteConnection('az');
    await eventually(
      async () => !(await api.snapshot())?.connections.some((x) => x.name === 'az'),
      'az gone',
    );
  });

  it('serves /metrics with connection and snapshot figures, never a key', async () => {
    const text = await (await fetch(`${op.probeAddress}/metrics`)).text();
    expect(text).toMatch(/plugboard_connection_up\{namespace="[^"]+",name="openai"\} 1/);
    expect(text).toMatch(/plugboard_snapshot_generation \d+/);
    expect(text).toMatch(/plugboard_verification_results_total\{reason="Unauthorized"\} \d+/);
    expect(text).not.toContain(KEY);
    expect((await fetch(`${op.probeAddress}/readyz`)).status).toBe(200);
  });
});
