// Measures the test control plane: the (cached) build, then three warm starts and an API server restart.
// Run: npm run bench:control-plane
import { controlPlaneBinaries, startControlPlane } from '../test/support/control-plane.ts';

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
  }
  await cp.stop();
}
starts.sort((a, b) => a - b);
console.log(
  `warm start median ${starts[1]?.toFixed(0)} ms (min ${starts[0]?.toFixed(0)}, max ${starts[2]?.toFixed(0)})`,
);
