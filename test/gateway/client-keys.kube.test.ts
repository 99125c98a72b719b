/**
 * Issue 14, "revocation revokes": client keys from a Secret against a real API server. A rotation, a removed
 * key and a deleted Secret take effect as soon as the watch delivers them; a malformed edit keeps the keys in
 * use and says so in /readyz, a metric and a log line; a deleted Secret refuses every key with a 401 that names
 * it, while the gateway stays ready so the failure is visible to clients rather than a refused connection.
 */
import { PassThrough } from 'node:stream';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, type Gateway } from '../../src/gateway/app.ts';
import { SecretClientKeys } from '../../src/gateway/client-keys.ts';
import { MemorySnapshotSource } from '../../src/gateway/snapshot-source.ts';
import type { MockProvider } from '../../src/mock-provider/index.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { conn, mock, snapshot } from './helpers.ts';

const NAME = 'client-keys';
const A = 'pb-rotate-a-0123456789';
const A2 = 'pb-rotate-a2-0123456789';
const B = 'pb-rotate-b-0123456789';

/** Polls until `cond` holds; returns how long it took (ms). Generous deadline: a shared 2-core machine. */
async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<number> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now() - t0;
}

describe('client keys from a Secret, against a real API server', () => {
  const kc = testKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  let ns: string;
  let upstream: MockProvider;
  let gateway: Gateway;
  let url: string;
  const logs = new PassThrough();
  let logText = '';
  logs.on('data', (d) => {
    logText += d;
  });

  const status = async (key: string) =>
    (await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;
  const readyz = async () => {
    const r = await fetch(`${url}/readyz`);
    return {
      status: r.status,
      body: (await r.json()) as { clientKeys?: { state: string; keys: number; message?: string } },
    };
  };
  // what the metrics listener serves (on the API port /metrics needs a key, and these keys get revoked)
  const metrics = () => gateway.metrics.registry.metrics();
  const body = (yaml: string) => ({
    metadata: { name: NAME },
    data: { 'keys.yaml': Buffer.from(yaml).toString('base64') },
  });

  beforeAll(async () => {
    ns = await createNamespace(kc, 'gw-keys');
    upstream = await mock({ profile: 'openai' });
    await core.createNamespacedSecret({
      namespace: ns,
      body: body(`- {name: a, key: ${A}}\n- {name: b, key: ${B}}\n`),
    });
    const keys = new SecretClientKeys(kc, ns, NAME);
    keys.backoff.initial = 50;
    gateway = await buildGateway({
      snapshots: new MemorySnapshotSource(snapshot([conn(upstream, { name: 'o', models: ['gpt-4o'] })])),
      clientKeys: keys,
      logger: { level: 'info', stream: logs },
      defaultMetrics: false,
    });
    url = await gateway.listen('127.0.0.1', 0);
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream?.close();
  });

  it('rotation, removal, a malformed edit, deletion and return, each as soon as the watch delivers it', async () => {
    expect(await status(A)).toBe(200);
    expect(await status(B)).toBe(200);
    expect((await readyz()).body.clientKeys).toEqual({ state: 'loaded', keys: 2 });

    // rotation: a's key changes
    await core.replaceNamespacedSecret({
      name: NAME,
      namespace: ns,
      body: body(`- {name: a, key: ${A2}}\n- {name: b, key: ${B}}\n`),
    });
    const rotated = await until('the old key of a refused', async () => (await status(A)) === 401);
    expect(await status(A2)).toBe(200);

    // one key removed
    await core.replaceNamespacedSecret({
      name: NAME,
      namespace: ns,
      body: body(`- {name: a, key: ${A2}}\n`),
    });
    const removed = await until('b refused', async () => (await status(B)) === 401);
    expect(await status(A2)).toBe(200);

    // a malformed edit keeps the keys in use, and says so
    await core.replaceNamespacedSecret({
      name: NAME,
      namespace: ns,
      body: body(`- {name: a, key: ${A2}\n  - oops: [`),
    });
    await until(
      'the malformed edit reported',
      async () => (await readyz()).body.clientKeys?.state === 'stale',
    );
    const r = await readyz();
    expect(r.status).toBe(200);
    expect(r.body.clientKeys?.message).toContain(`Secret ${ns}/${NAME}`);
    expect(JSON.stringify(r.body)).not.toContain(A2);
    expect(await status(A2)).toBe(200);
    expect(await metrics()).toMatch(/^plugboard_gateway_client_keys_state\{state="stale"\} 1$/m);
    expect(logText).toContain('client keys could not be read; keeping the keys in use');

    // deletion revokes every key; the gateway stays ready and its 401 names the Secret
    await core.deleteNamespacedSecret({ name: NAME, namespace: ns });
    const revoked = await until(
      'every key refused after the deletion',
      async () => (await status(A2)) === 401,
    );
    const denied = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${A2}` } });
    const err = (await denied.json()) as { error: { code: string; message: string } };
    expect(err.error.code).toBe('client_keys_revoked');
    expect(err.error.message).toContain(`Secret ${ns}/${NAME} does not exist`);
    const after = await readyz();
    expect(after.status).toBe(200);
    expect(after.body.clientKeys).toMatchObject({ state: 'revoked', keys: 0 });
    expect(logText).toContain('client keys revoked');
    const text = await metrics();
    expect(text).toMatch(/^plugboard_gateway_client_keys_state\{state="revoked"\} 1$/m);
    expect(text).toMatch(/^plugboard_gateway_client_keys 0$/m);

    // and back
    await core.createNamespacedSecret({ namespace: ns, body: body(`- {name: a, key: ${A2}}\n`) });
    await until('the recreated Secret applied', async () => (await status(A2)) === 200);
    expect((await readyz()).body.clientKeys).toEqual({ state: 'loaded', keys: 1 });
    console.log(
      `client keys applied after: rotation ${rotated.toFixed(0)} ms, removal ${removed.toFixed(0)} ms, ` +
        `deletion ${revoked.toFixed(0)} ms`,
    );
  }, 90_000);
});
