import { expect, inject, it } from 'vitest';
import { Api, eventually } from '../operator/harness.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { useMockProviders } from '../support/mocks.ts';
import { type OperatorProcess, spawnOperator } from '../support/operator-process.ts';

const mock = useMockProviders('each');

it('`plugboard operator` runs with KUBECONFIG, serves probes and metrics, and exits 0 on SIGTERM', async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'opcli');
  const upstream = await mock({ profile: 'openai' });
  const op = await spawnOperator({ namespace: ns, kubeconfig: inject('kubeconfig') });
  try {
    await eventually(async () => (await fetch(`${op.probes}/readyz`)).ok, 'operator ready');
    const api = new Api(kc, ns);
    await api.connection('local', { url: upstream.url });
    await api.waitReady('local', 'Verified').catch((e) => {
      throw new Error(`${e.message}\n${op.logs()}`);
    });
    const metrics = await (await fetch(`${op.probes}/metrics`)).text();
    expect(metrics).toContain('plugboard_operator_leader 1');
    // Structured JSON logs, one object per line.
    for (const line of op.logs().trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    expect(op.logs()).toContain('"msg":"became leader"');
  } finally {
    await stopsCleanly(op, 'SIGTERM');
  }
});

it('in a pod it authenticates with the service-account token and CA files, without a kubeconfig; SIGINT stops it', async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'incluster');
  const cluster = kc.getCurrentCluster();
  const token = kc.getCurrentUser()?.token;
  if (!cluster || !token) throw new Error('the test kubeconfig has no cluster or token');
  const upstream = await mock({ profile: 'openai' });
  const op = await spawnOperator({
    namespace: ns,
    serviceAccount: { server: cluster.server, token, ca: Buffer.from(cluster.caData ?? '', 'base64') },
    args: ['--allow-loopback=true'], // in a cluster loopback is refused by default; the upstream is local here
  });
  try {
    await eventually(async () => (await fetch(`${op.probes}/readyz`)).ok, 'operator ready');
    expect(op.logs()).toContain('"auth":"service account"');
    const api = new Api(kc, ns);
    await api.connection('local', { url: upstream.url });
    await api.waitReady('local', 'Verified');
  } finally {
    await stopsCleanly(op, 'SIGINT');
  }
});

/**
 * The signal stops it: exit 0 by itself, nothing left holding the process (else the shutdown watchdog logs
 * which handles did, and exits anyway).
 */
async function stopsCleanly(op: OperatorProcess, signal: 'SIGTERM' | 'SIGINT'): Promise<void> {
  try {
    op.child.kill(signal);
    expect(await op.exited, op.logs().slice(-2000)).toBe(0);
    expect(op.logs()).toContain(`"signal":"${signal}","msg":"shutting down"`);
    expect(op.logs()).not.toContain('a handle was left open');
  } finally {
    await op.kill();
  }
}
