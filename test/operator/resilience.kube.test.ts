import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { SHARDS_ANNOTATION, SNAPSHOT_SECRET_NAME } from '../../src/snapshot/index.ts';
import { installCrds } from '../support/cluster.ts';
import { startControlPlane } from '../support/control-plane.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { Api, cond, eventually, kubeConfigFrom, startOperator } from './harness.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});
async function mock(opts: Parameters<typeof startMockProvider>[0]): Promise<MockProvider> {
  const m = await startMockProvider(opts);
  cleanups.push(() => m.close());
  return m;
}
function operator(...args: Parameters<typeof startOperator>): Operator {
  const op = startOperator(...args);
  cleanups.push(() => op.stop());
  return op;
}

describe('the operator survives restarts and failover without losing or duplicating work', () => {
  it('a restarted operator rebuilds from the API: same status (no writes), snapshot kept and continued', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'restart');
    const api = new Api(kc, ns);
    const m = await mock({ profile: 'openai' });
    await api.connection('local', { url: m.url });
    const first = operator(kc, ns, { leaderElection: false });
    const before = await api.waitReady('local', 'Verified');
    await first.flushSnapshot();
    const gen = first.snapshotGeneration;
    await first.stop();

    // While no operator runs, the upstream breaks: the restarted operator keeps serving the last good list.
    m.setFailure({ kind: 'status', status: 502 });
    const second = operator(kc, ns, { leaderElection: false });
    const failing = await api.waitReady('local', 'UpstreamError');
    expect(cond(failing, 'Ready')?.message).toContain('stale');
    const snap = await api.snapshot();
    expect(snap?.connections[0]?.models.length).toBe(before.status?.exposedModelCount);
    m.setFailure(undefined);
    await second.stop();

    const third = operator(kc, ns, { leaderElection: false });
    await api.waitReady('local', 'Verified', 20_000);
    await third.flushSnapshot();
    expect(third.snapshotGeneration).toBeGreaterThan(gen);
    const rv = (await api.getConnection('local')).metadata.resourceVersion;
    const fourth = operator(kc, ns, { leaderElection: false });
    await third.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await fourth.flushSnapshot();
    // Same upstream, same answer: a fresh operator writes nothing.
    expect((await api.getConnection('local')).metadata.resourceVersion).toBe(rv);
  });

  it('a snapshot sharded over several Secrets survives a restart: loaded, served while failing, continued', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'restart-shards');
    const api = new Api(kc, ns);
    // Random IDs compress poorly: 2,000 of them need several 4 KiB chunks.
    const models = Array.from({ length: 2000 }, () => `m-${randomBytes(10).toString('hex')}`);
    const m = await mock({ profile: 'openai', models });
    await api.connection('big', { url: m.url });
    const opts = { leaderElection: false, snapshotChunkBytes: 4096 };
    const first = operator(kc, ns, opts);
    await api.waitReady('big', 'Verified');
    await first.flushSnapshot();
    const gen = first.snapshotGeneration;
    const shards = Number((await api.secretMeta(SNAPSHOT_SECRET_NAME))?.annotations?.[SHARDS_ANNOTATION]);
    expect(shards).toBeGreaterThan(1);
    expect(await first.metrics.snapshotSecrets.get()).toMatchObject({ values: [{ value: shards + 1 }] });
    expect((await api.snapshot())?.connections[0]?.models.map((x) => x.id).sort()).toEqual(
      [...models].sort(),
    );
    await first.stop();

    // The restarted operator reads the sharded snapshot: the failing upstream keeps its 2,000 models (stale).
    m.setFailure({ kind: 'status', status: 502 });
    const second = operator(kc, ns, opts);
    const failing = await api.waitReady('big', 'UpstreamError');
    expect(cond(failing, 'Ready')?.message).toContain('stale');
    await second.flushSnapshot();
    expect(second.snapshotGeneration).toBeGreaterThan(gen);
    const snap = await api.snapshot();
    expect(snap?.generation).toBe(second.snapshotGeneration);
    expect(snap?.connections[0]?.models).toHaveLength(2000);
    await second.stop();
  });

  it('two replicas: one leads; when it stops, the other takes over and keeps reconciling', async () => {
    const kc = testKubeConfig();
    const ns = await createNamespace(kc, 'leader');
    const api = new Api(kc, ns);
    const m = await mock({ profile: 'openai' });
    const a = operator(kc, ns);
    const b = operator(kc, ns);
    await eventually(async () => a.isLeader !== b.isLeader, 'exactly one leader');
    const [leader, standby] = a.isLeader ? [a, b] : [b, a];
    await api.connection('one', { url: m.url });
    await api.waitReady('one', 'Verified');
    expect(standby.isLeader).toBe(false);

    await leader.stop(); // releases the Lease
    await eventually(async () => standby.isLeader, 'standby takes over', 10_000);
    await api.connection('two', { url: m.url });
    await api.waitReady('two', 'Verified');
  });

  it('an API server restart mid-watch loses no change', async () => {
    const cp = await startControlPlane();
    cleanups.push(() => cp.stop());
    await installCrds(cp.kubeconfig);
    const kc = kubeConfigFrom(cp.kubeconfig);
    const ns = await createNamespace(kc, 'apirestart');
    const api = new Api(kc, ns);
    const m = await mock({ profile: 'openai' });
    operator(kc, ns, { leaderElection: false });
    await api.connection('before', { url: m.url });
    await api.waitReady('before', 'Verified');

    await cp.restartApiServer();
    await api.connection('after', { url: m.url });
    await api.waitReady('after', 'Verified', 30_000);
    await api.patchConnection('before', { enabled: false });
    await api.waitReady('before', 'Disabled', 30_000);
  });
});
