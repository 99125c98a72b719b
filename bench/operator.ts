// Operator at scale on the local test control plane: N connections with allowlists against one simulated
// upstream. Prints time until all are Ready, apply→Ready latency of single changes under that load, status
// writes per minute in steady state, the operator's RSS and the snapshot size (also with OpenRouter-sized lists).
// Run: npm run bench:operator [-- --connections 1000]
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION } from '../src/api/common.ts';
import { startMockProvider } from '../src/mock-provider/index.ts';
import {
  encodeSnapshot,
  MAX_SHARDS,
  SNAPSHOT_FORMAT,
  SNAPSHOT_MAX_BYTES,
  type Snapshot,
  type SnapshotConnection,
  shardedCapacity,
  splitSnapshot,
} from '../src/snapshot/index.ts';
import { installCrds } from '../test/support/cluster.ts';
import { startControlPlane } from '../test/support/control-plane.ts';
import { kubeRaw } from '../test/support/kube-raw.ts';
import { chartNodeOptions, freePort, rssMiB } from './support.ts';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    'steady-seconds': { type: 'string', default: '30' },
    // Default: what the Helm chart's defaults set (heap sized from the memory limit); '' for V8's own sizing
    'node-options': { type: 'string' },
  },
});
const N = Number(values.connections);
const nodeOptions = values['node-options'] ?? chartNodeOptions('operator');
const NS = 'bench';
const root = join(import.meta.dirname, '..');

const cp = await startControlPlane();
const cleanups: (() => unknown)[] = [() => cp.stop()];
try {
  await installCrds(cp.kubeconfig);
  const kc = new KubeConfig();
  kc.loadFromString(cp.kubeconfig);
  const must = async (method: string, path: string, body?: unknown, contentType?: string) => {
    const r = await kubeRaw(kc, method, path, {
      body,
      headers: contentType ? { 'content-type': contentType } : {},
    });
    if (r.status >= 300)
      throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    return r.body;
  };
  await must('POST', '/api/v1/namespaces', { metadata: { name: NS } });
  const mock = await startMockProvider({ profile: 'openai', apiKey: 'bench-key' });
  cleanups.push(() => mock.close());
  await must('POST', `/api/v1/namespaces/${NS}/secrets`, {
    metadata: { name: 'key' },
    stringData: { apiKey: 'bench-key' },
  });

  const base = `/apis/${GROUP}/${VERSION}/namespaces/${NS}`;
  const names = Array.from({ length: N }, (_, i) => `conn-${String(i).padStart(4, '0')}`);
  const pool = async <T>(items: T[], n: number, fn: (x: T) => Promise<unknown>) => {
    let i = 0;
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (i < items.length) await fn(items[i++] as T);
      }),
    );
  };
  const tCreate = performance.now();
  await pool(names, 16, async (name) => {
    await must('POST', `${base}/providerconnections`, {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ProviderConnection',
      metadata: { name },
      spec: { url: mock.url, apiKeySecretRef: { name: 'key' }, verification: { interval: '1h' } },
    });
    await must('POST', `${base}/modelallowlists`, {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ModelAllowlist',
      metadata: { name },
      spec: { connectionRef: { name }, models: ['gpt-4o', 'gpt-4o-mini'] },
    });
  });
  console.log(
    `created ${N} connections + ${N} allowlists in ${((performance.now() - tCreate) / 1000).toFixed(1)} s`,
  );

  // The operator runs as its own process, as in a cluster, so its RSS is its own.
  // As in a pod: the service-account token and CA files and KUBERNETES_SERVICE_HOST/PORT, no kubeconfig.
  const saDir = join(cp.dir, 'serviceaccount');
  mkdirSync(saDir);
  writeFileSync(join(saDir, 'token'), cp.adminToken);
  writeFileSync(join(saDir, 'ca.crt'), cp.caData);
  const apiServer = new URL(cp.server);
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [
      join(root, 'bin/plugboard.js'),
      'operator',
      '--namespace',
      NS,
      '--watch-namespaces',
      NS,
      '--leader-elect=false',
      '--allow-loopback=true', // the simulated upstream is on loopback
      '--listen',
      `127.0.0.1:${port}`,
      '--log-level',
      'warn',
    ],
    {
      // The compiled output, as the image runs it (npm run bench:operator builds it first): type stripping's
      // compiler would otherwise add its own memory to the RSS measured here.
      env: {
        ...process.env,
        KUBERNETES_SERVICE_HOST: apiServer.hostname,
        KUBERNETES_SERVICE_PORT: apiServer.port,
        PLUGBOARD_SERVICEACCOUNT_DIR: saDir,
        NODE_OPTIONS: nodeOptions,
        PLUGBOARD_FROM_DIST: '1',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  cleanups.push(() => child.kill('SIGTERM'));
  const childRss = () => rssMiB(child.pid);
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
  };

  const readyCount = async () => {
    const list = (await must('GET', `${base}/providerconnections`)) as {
      items: { status?: { conditions?: { type: string; status: string }[] } }[];
    };
    return list.items.filter((c) =>
      c.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
    ).length;
  };
  let ready = 0;
  let peakRss = 0;
  while (ready < N) {
    await new Promise((r) => setTimeout(r, 250));
    ready = await readyCount().catch(() => 0);
    try {
      peakRss = Math.max(peakRss, childRss());
    } catch {}
    if (performance.now() - t0 > 180_000) throw new Error(`only ${ready}/${N} Ready after 180 s`);
  }
  const allReadyS = (performance.now() - t0) / 1000;
  console.log(
    `all ${N} Ready ${allReadyS.toFixed(1)} s after operator start (target ≤ 30 s); peak RSS ${peakRss.toFixed(0)} MiB`,
  );

  // Steady state: no status writes while nothing changes.
  await new Promise((r) => setTimeout(r, 3000));
  const w0 = await metric('plugboard_operator_status_writes_total');
  const steadyMs = Number(values['steady-seconds']) * 1000;
  await new Promise((r) => setTimeout(r, steadyMs));
  const w1 = await metric('plugboard_operator_status_writes_total');
  const writesPerMin = ((w1 - w0) / steadyMs) * 60_000;
  const idleRss = childRss();
  const heapMiB = (await metric('nodejs_heap_size_used_bytes')) / 2 ** 20;
  const heapTotalMiB = (await metric('nodejs_heap_size_total_bytes')) / 2 ** 20;
  const externalMiB = (await metric('nodejs_external_memory_bytes')) / 2 ** 20;
  console.log(
    `steady state: ${writesPerMin.toFixed(1)} status writes/min (target 0); RSS ${idleRss.toFixed(0)} MiB (target ≤ 150; NODE_OPTIONS="${nodeOptions}"; V8 heap used ${heapMiB.toFixed(0)} of ${heapTotalMiB.toFixed(0)} MiB, external ${externalMiB.toFixed(0)} MiB)`,
  );

  // apply→Ready for single spec changes (each re-verifies), one at a time, under the full load.
  const latencies: number[] = [];
  for (let i = 0; i < 50; i++) {
    const name = names[(i * 37) % N] as string;
    const timeout = `${5 + (i % 2)}s`;
    const t = performance.now();
    const patched = (await must(
      'PATCH',
      `${base}/providerconnections/${name}`,
      { spec: { verification: { timeout } } },
      'application/merge-patch+json',
    )) as { metadata: { generation: number } };
    for (;;) {
      const c = (await must('GET', `${base}/providerconnections/${name}`)) as {
        status?: { conditions?: { type: string; status: string; observedGeneration?: number }[] };
      };
      const r = c.status?.conditions?.find((x) => x.type === 'Ready');
      if (r?.status === 'True' && r.observedGeneration === patched.metadata.generation) break;
      await new Promise((res) => setTimeout(res, 2));
    }
    latencies.push(performance.now() - t);
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] as number;
  console.log(
    `apply→Ready (50 single changes, polled every 2 ms): p50 ${pct(50).toFixed(0)} ms, p99 ${pct(99).toFixed(0)} ms (targets 100 / 500)`,
  );

  const snapshotBytes = await metric('plugboard_snapshot_bytes');
  console.log(
    `snapshot with ${N} allowlisted connections: ${(snapshotBytes / 1024).toFixed(1)} KiB compressed`,
  );

  // Snapshot size with OpenRouter-sized lists and no allowlists, identical and all-different lists.
  const orModels = Array.from({ length: 5000 }, (_, i) => ({
    id: `vendor-${i % 50}/model-${i}`,
    upstreamId: `vendor-${i % 50}/model-${i}`,
    created: 1_700_000_000 + i,
  }));
  const entry = (i: number, models: SnapshotConnection['models']): SnapshotConnection => ({
    namespace: NS,
    name: `conn-${i}`,
    provider: 'OpenAI',
    url: 'https://openrouter.ai/api/v1',
    apiKey: `sk-or-v1-${'x'.repeat(48)}`,
    headers: {},
    dropParams: [],
    tags: [],
    timeouts: { connectMs: 10_000, firstByteMs: 300_000, idleMs: 300_000, totalMs: 3_600_000 },
    serving: true,
    status: {
      ready: { status: 'True', reason: 'Verified', message: '5000 models exposed' },
      verified: { status: 'True', reason: 'Verified', message: 'listed 5000 models' },
    },
    models,
  });
  const snap = (conns: SnapshotConnection[]): Snapshot => ({
    format: SNAPSHOT_FORMAT,
    generation: 1,
    generatedAt: new Date().toISOString(),
    connections: conns,
  });
  const same = encodeSnapshot(snap(Array.from({ length: N }, (_, i) => entry(i, orModels)))).length;
  const distinctBytes = encodeSnapshot(
    snap(
      Array.from({ length: N }, (_, i) =>
        entry(
          i,
          orModels.map((m) => ({ ...m, id: `${m.id}-${i}`, upstreamId: `${m.upstreamId}-${i}` })),
        ),
      ),
    ),
  );
  const distinct = distinctBytes.length;
  // Over SNAPSHOT_MAX_BYTES the operator shards it over the root Secret and `plugboard-snapshot-1…`.
  const secrets = splitSnapshot(distinctBytes).length;
  const fits = distinct <= shardedCapacity() ? 'fits' : 'does NOT fit';
  console.log(
    `snapshot with ${N} × 5,000-model lists: ${(same / 1024).toFixed(0)} KiB when the lists are the same (one aggregator), ${(distinct / 1024 / 1024).toFixed(1)} MiB when all differ: ${secrets} Secrets of ${SNAPSHOT_MAX_BYTES.toLocaleString('en')} bytes (${fits} the ${(shardedCapacity() / 1024 / 1024).toFixed(0)} MiB of the root + ${MAX_SHARDS} shards)`,
  );
} finally {
  for (const c of cleanups.reverse()) await c();
}
