// Measures the test control plane: the (cached) build, then three warm starts and an API server restart; and,
// on the last one, how long a new snapshot Secret takes to reach the gateway's watch (KubernetesSnapshotSource).
// Run: npm run bench:control-plane
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { KubernetesSnapshotSource } from '../src/gateway/snapshot-source.ts';
import { encodeSnapshot, SNAPSHOT_DATA_KEY, SNAPSHOT_SECRET_NAME } from '../src/snapshot/codec.ts';
import { SNAPSHOT_FORMAT } from '../src/snapshot/schema.ts';
import { controlPlaneBinaries, startControlPlane } from '../test/support/control-plane.ts';

const SNAPSHOT_WRITES = 20;

const t0 = performance.now();
const binDir = controlPlaneBinaries();
console.log(`binaries ready in ${(performance.now() - t0).toFixed(0)} ms (${binDir})`);
const starts: number[] = [];
for (let i = 0; i < 3; i++) {
  const timings = { buildMs: 0, etcdMs: 0, apiServerMs: 0 };
  const t = performance.now();
  const cp = await startControlPlane({ binDir, timings });
  starts.push(performance.now() - t);
  console.log(`start ${i + 1}: etcd ${timings.etcdMs} ms, kube-apiserver ${timings.apiServerMs} ms`);
  if (i === 2) {
    const r = performance.now();
    await cp.restartApiServer();
    console.log(`kube-apiserver restart: ${(performance.now() - r).toFixed(0)} ms`);
    await snapshotPropagation(cp.kubeconfig);
  }
  await cp.stop();
}
starts.sort((a, b) => a - b);
console.log(
  `warm start median ${starts[1]?.toFixed(0)} ms (min ${starts[0]?.toFixed(0)}, max ${starts[2]?.toFixed(0)})`,
);

/** Write (create, then replace) → applied by a watching KubernetesSnapshotSource, one write at a time. */
async function snapshotPropagation(kubeconfig: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const src = new KubernetesSnapshotSource(kc, 'default');
  await src.start();
  const ms: number[] = [];
  try {
    for (let generation = 1; generation <= SNAPSHOT_WRITES; generation++) {
      const data = encodeSnapshot({
        format: SNAPSHOT_FORMAT,
        generation,
        generatedAt: new Date().toISOString(),
        connections: [],
      }).toString('base64');
      const body = { metadata: { name: SNAPSHOT_SECRET_NAME }, data: { [SNAPSHOT_DATA_KEY]: data } };
      const t = performance.now();
      if (generation === 1) await core.createNamespacedSecret({ namespace: 'default', body });
      else await core.replaceNamespacedSecret({ name: SNAPSHOT_SECRET_NAME, namespace: 'default', body });
      while (src.current()?.generation !== generation) {
        if (performance.now() - t > 30_000) throw new Error(`generation ${generation} not applied in 30 s`);
        await new Promise((r) => setTimeout(r, 1));
      }
      ms.push(performance.now() - t);
    }
  } finally {
    await src.stop();
  }
  ms.sort((a, b) => a - b);
  const at = (q: number) => (ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] as number).toFixed(0);
  console.log(
    `snapshot Secret write → applied by the gateway's watch (${SNAPSHOT_WRITES} writes): ` +
      `median ${at(0.5)} ms, max ${at(1)} ms`,
  );
}
