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
