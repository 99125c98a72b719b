import { afterAll, describe, expect, inject, it } from 'vitest';
import { buildGateway } from '../../src/gateway/app.ts';
import { KubernetesSnapshotSource } from '../../src/gateway/snapshot-source.ts';
import { KubeClient, KubeError, type WatchEvent } from '../../src/kube/client.ts';
import { Informer, type ObjectWithMeta } from '../../src/kube/informer.ts';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import { SNAPSHOT_DATA_KEY, SNAPSHOT_SECRET_NAME } from '../../src/snapshot/index.ts';
import { metricValue } from '../gateway/helpers.ts';
import { Api, eventually, kubeConfigFrom, startOperator } from '../operator/harness.ts';
import { installCrds } from '../support/cluster.ts';
import { startControlPlane } from '../support/control-plane.ts';
import { createNamespace, kubeRaw, testKubeConfig } from '../support/kube.ts';
import { spawnOperator } from '../support/operator-process.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});
async function mock(opts: Parameters<typeof startMockProvider>[0]): Promise<MockProvider> {
  const m = await startMockProvider(opts);
  cleanups.push(() => m.close());
  return m;
}

/** `plugboard operator` as its own process, so it can be killed without any chance to clean up. */
async function operatorProcess(ns: string, kubeconfig: string) {
  // one replica: no Lease to wait out after the kill (leader failover has its own test)
  const op = await spawnOperator({ namespace: ns, kubeconfig, args: ['--leader-elect', 'false'] });
  cleanups.push(op.kill);
  return op;
}

describe('operator killed mid-reconcile', () => {
  it('SIGKILL during a hanging verification; a new operator converges (status and snapshot)', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'killed');
    const api = new Api(kc, ns);
    const m = await mock({ profile: 'openai', failure: { kind: 'hang' }, failureScope: 'models' });
    await api.connection('hung', { url: m.url, verification: { timeout: '60s', interval: '5m' } });

    const first = await operatorProcess(ns, inject('kubeconfig'));
    // the operator is in the middle of verifying: its /models request is open upstream
    await m
      .waitForRequest((r) => r.path === '/v1/models', 20_000)
      .catch((e) => {
        throw new Error(`${e.message}\n${first.logs().slice(-2000)}`);
      });
    first.child.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    const before = await api.getConnection('hung');
    expect(before.status?.conditions?.find((c) => c.type === 'Ready')?.reason).not.toBe('Verified');

    // the upstream recovers; a new operator starts from what the API server holds
    m.setFailure(undefined);
    const second = await operatorProcess(ns, inject('kubeconfig'));
    await api.waitReady('hung', 'Verified', 30_000).catch((e) => {
      throw new Error(`${e.message}\n${second.logs().slice(-2000)}`);
    });
    const snap = await eventually(
      async () => {
        const s = await api.snapshot();
        return s?.connections.find((c) => c.name === 'hung' && c.models.length > 0) ? s : undefined;
      },
      'snapshot with the connection',
      15_000,
    );
    expect(snap.connections.find((c) => c.name === 'hung')?.serving).toBe(true);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 90_000);
});

/** A client whose next watch is held back (a partition) until release(); records what the real server answered. */
class PartitionedClient extends KubeClient {
  hold: Promise<void> | undefined;
  errors: unknown[] = [];
  watches = 0;
  override async watch<T>(
    path: string,
    params: Record<string, string>,
    onEvent: (ev: WatchEvent<T>) => void,
    signal: AbortSignal,
    accept?: string,
  ): Promise<void> {
    this.watches++;
    if (this.hold) {
      const h = this.hold;
      this.hold = undefined;
      await h;
    }
    try {
      return await super.watch<T>(path, params, onEvent, signal, accept);
    } catch (err) {
      this.errors.push(err);
      throw err;
    }
  }
}

describe('watch expiry (410 Gone)', () => {
  it('a watch resumed from a resourceVersion the API server no longer has relists and converges', async () => {
    const cp = await startControlPlane();
    cleanups.push(() => cp.stop());
    await installCrds(cp.kubeconfig);
    const kc = kubeConfigFrom(cp.kubeconfig);
    const ns = await createNamespace(kc, 'gone');
    const cm = (name: string) =>
      kubeRaw(kc, 'POST', `/api/v1/namespaces/${ns}/configmaps`, {
        body: { metadata: { name }, data: { a: name } },
      });
    await cm('keep');
    await cm('doomed');

    const client = new PartitionedClient(kc);
    const informer = new Informer<ObjectWithMeta>(client, {
      path: `/api/v1/namespaces/${ns}/configmaps`,
      watchTimeoutSeconds: 1, // the server ends each watch after ~1 s; the informer resumes from its resourceVersion
    });
    informer.backoff.initial = 50;
    const seen: string[] = [];
    informer.on((ev, o) => seen.push(`${ev} ${o.metadata?.name}`));
    await informer.start();
    cleanups.push(() => informer.stop());
    expect(
      informer
        .list()
        .map((o) => o.metadata?.name)
        .sort(),
    ).toEqual(['doomed', 'keep']);

    // The next watch is held back: meanwhile objects change and the API server restarts, so its watch cache
    // starts after the informer's resourceVersion (as after a compaction).
    let release: () => void = () => {};
    client.hold = new Promise<void>((r) => {
      release = r;
    });
    const watchesBefore = client.watches;
    await eventually(async () => client.watches > watchesBefore, 'the informer to resume its watch', 15_000);
    await kubeRaw(kc, 'DELETE', `/api/v1/namespaces/${ns}/configmaps/doomed`);
    await cm('born');
    for (let i = 0; i < 20; i++) await cm(`churn-${i}`);
    await cp.restartApiServer();
    const restartsBefore = informer.restarts;
    release();

    // the real API server says the resourceVersion is gone (as an ERROR event in the watch stream)
    await eventually(
      async () => client.errors.some((e) => /too old resource version/.test((e as Error).message)),
      'the real API server to answer 410 Gone (too old resource version)',
      15_000,
    );
    // relisted: the deletion that happened during the partition is delivered, the new objects are added
    await eventually(
      async () => informer.get(`${ns}/born`) !== undefined && informer.get(`${ns}/doomed`) === undefined,
      'the informer cache to converge',
      10_000,
    );
    expect(seen).toContain('delete doomed');
    expect(seen).toContain('add born');
    expect(informer.list()).toHaveLength(2 + 20);
    // the 410 reaches the informer as 410: it relists at once, and that is not counted as a failed watch
    expect(client.errors.some((e) => KubeError.is(e, 410))).toBe(true);
    expect(informer.restarts).toBe(restartsBefore);
  }, 120_000);
});

describe('snapshot Secret corrupted', () => {
  it('the gateway keeps the last good snapshot, reports it in /readyz and a metric, recovers when fixed', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'corrupt');
    const api = new Api(kc, ns);
    const m = await mock({ profile: 'openai', models: ['gpt-4o'] });
    const op = startOperator(kc, ns, { leaderElection: false });
    cleanups.push(() => op.stop());
    await api.connection('main', { url: m.url });
    await api.waitReady('main', 'Verified');
    await op.flushSnapshot();

    const source = new KubernetesSnapshotSource(kc, ns);
    source.backoff.initial = 50;
    const gw = await buildGateway({ snapshots: source, logger: false, defaultMetrics: false });
    cleanups.push(() => gw.close());
    const url = await gw.listen('127.0.0.1', 0);
    await eventually(async () => gw.routes()?.models.some((x) => x.id === 'gpt-4o'), 'gateway routes');
    const goodGeneration = gw.routes()?.generation as number;
    const chat = () =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
      });
    expect((await chat()).status).toBe(200);

    // corrupted by hand (a bad kubectl edit, a broken backup restore)
    await api.must(
      'PATCH',
      `/api/v1/namespaces/${ns}/secrets/${SNAPSHOT_SECRET_NAME}`,
      { data: { [SNAPSHOT_DATA_KEY]: Buffer.from('this is not a gzipped snapshot').toString('base64') } },
      'application/merge-patch+json',
    );
    await eventually(async () => source.status().lastError, 'the gateway to notice');
    const ready = await (await fetch(`${url}/readyz`)).json();
    expect(ready).toMatchObject({ ready: true, snapshot: { generation: goodGeneration } });
    expect(ready.snapshot.lastError).toMatch(/unreadable|snapshot/);
    let metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, 'plugboard_gateway_snapshot_ok')).toBe(0);
    expect(metricValue(metrics, 'plugboard_gateway_snapshot_errors_total')).toBeGreaterThan(0);
    // still serving from the last good snapshot
    for (let i = 0; i < 5; i++) expect((await chat()).status).toBe(200);

    // the operator's next change rewrites the Secret; the gateway applies it and clears the error
    await api.patchConnection('main', { tags: ['rewritten'] });
    await eventually(
      async () => (gw.routes()?.generation ?? 0) > goodGeneration && !source.status().lastError,
      'the rewritten snapshot to be applied',
      15_000,
    );
    metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, 'plugboard_gateway_snapshot_ok')).toBe(1);
    expect((await (await fetch(`${url}/readyz`)).json()).snapshot.lastError).toBeNull();
    expect((await chat()).status).toBe(200);
  }, 60_000);
});
