import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, inject, it } from 'vitest';
import { startMockProvider } from '../../src/mock-provider/index.ts';
import { Api, eventually } from '../operator/harness.ts';
import { freePort } from '../support/control-plane.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';

it('`plugboard operator` runs with KUBECONFIG, serves probes and metrics, and exits 0 on SIGTERM', async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'opcli');
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-opcli-'));
  writeFileSync(join(dir, 'kubeconfig'), inject('kubeconfig'));
  const port = await freePort();
  const mock = await startMockProvider({ profile: 'openai' });
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js');
  const child = spawn(
    process.execPath,
    [bin, 'operator', '--namespace', ns, '--watch-namespaces', ns, '--listen', `127.0.0.1:${port}`],
    {
      env: { ...process.env, KUBECONFIG: join(dir, 'kubeconfig') },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let logs = '';
  child.stdout.on('data', (c) => {
    logs += c;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 'operator ready');
    const api = new Api(kc, ns);
    await api.connection('local', { url: mock.url });
    await api.waitReady('local', 'Verified').catch((e) => {
      throw new Error(`${e.message}\n${logs}`);
    });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('plugboard_operator_leader 1');
    // Structured JSON logs, one object per line.
    for (const line of logs.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
    expect(logs).toContain('"msg":"became leader"');
  } finally {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await mock.close();
  }
});

it('in a pod it authenticates with the service-account token and CA files, without a kubeconfig', async () => {
  const kc = testKubeConfig();
  const ns = await createNamespace(kc, 'incluster');
  const cluster = kc.getCurrentCluster();
  const token = kc.getCurrentUser()?.token;
  if (!cluster || !token) throw new Error('the test kubeconfig has no cluster or token');
  const sa = mkdtempSync(join(tmpdir(), 'plugboard-sa-'));
  writeFileSync(join(sa, 'token'), token);
  writeFileSync(join(sa, 'ca.crt'), Buffer.from(cluster.caData ?? '', 'base64'));
  const server = new URL(cluster.server);
  const port = await freePort();
  const mock = await startMockProvider({ profile: 'openai' });
  const bin = join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js');
  const { KUBECONFIG: _, ...env } = process.env;
  const child = spawn(
    process.execPath,
    [
      bin,
      'operator',
      '--namespace',
      ns,
      '--watch-namespaces',
      ns,
      '--listen',
      `127.0.0.1:${port}`,
      '--allow-loopback=true',
    ],
    {
      env: {
        ...env,
        KUBERNETES_SERVICE_HOST: server.hostname,
        KUBERNETES_SERVICE_PORT: server.port,
        PLUGBOARD_SERVICEACCOUNT_DIR: sa,
        HOME: sa, // no ~/.kube/config to fall back on
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let logs = '';
  child.stdout.on('data', (c) => {
    logs += c;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok, 'operator ready');
    expect(logs).toContain('"auth":"service account"');
    const api = new Api(kc, ns);
    await api.connection('local', { url: mock.url });
    await api.waitReady('local', 'Verified');
  } finally {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await mock.close();
  }
});
