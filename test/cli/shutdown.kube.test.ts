/**
 * `plugboard gateway` reading its snapshot and client keys from Secrets (two watches on the real API server, and
 * its HTTP/2 connection): the first SIGTERM or SIGINT drains and the process exits 0 by itself, without the
 * shutdown watchdog's "a handle was left open" warning. The file-backed variants are in shutdown.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import { encodeSnapshot, SNAPSHOT_DATA_KEY } from '../../src/snapshot/index.ts';
import { conn, snapshot } from '../gateway/helpers.ts';
import { spawnPlugboard } from '../reliability/process.ts';
import { createNamespace, kubeRaw, testKubeConfig } from '../support/kube.ts';

const CLIENT_KEY = 'sk-shutdown-kube-client-key';

let dir: string;
let ns: string;
let upstream: MockProvider;

beforeAll(async () => {
  const kc = testKubeConfig();
  ns = await createNamespace(kc, 'gwshutdown');
  upstream = await startMockProvider({ profile: 'openai' });
  dir = mkdtempSync(join(tmpdir(), 'plugboard-shutdown-kube-'));
  writeFileSync(join(dir, 'kubeconfig'), inject('kubeconfig'));
  const secret = async (name: string, body: object) => {
    const r = await kubeRaw(kc, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
      body: { apiVersion: 'v1', kind: 'Secret', metadata: { name }, ...body },
    });
    if (r.status >= 300) throw new Error(`creating Secret ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  const snap = snapshot([conn(upstream, { name: 'up', models: ['gpt-4o'] })]);
  await secret('plugboard-snapshot', {
    data: { [SNAPSHOT_DATA_KEY]: encodeSnapshot(snap).toString('base64') },
  });
  await secret('client-keys', { stringData: { 'keys.yaml': `- name: t\n  key: ${CLIENT_KEY}\n` } });
});

afterAll(async () => {
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it.each(['SIGTERM', 'SIGINT'] as const)(
  'gateway --snapshot-secret --client-keys-secret exits 0 on %s',
  async (signal) => {
    const p = await spawnPlugboard(
      'gateway',
      [`--snapshot-secret=${ns}/plugboard-snapshot`, `--client-keys-secret=${ns}/client-keys`],
      { env: { KUBECONFIG: join(dir, 'kubeconfig') } },
    );
    try {
      const r = await fetch(`${p.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(r.status, p.logs().slice(-1500)).toBe(200);
      await r.text();
      p.child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([
        p.exited,
        new Promise<'hung'>((res) => {
          timer = setTimeout(() => res('hung'), 20_000);
        }),
      ]).finally(() => clearTimeout(timer));
      expect(exit, p.logs().slice(-2000)).toEqual({ code: 0, signal: null });
      expect(p.logs()).toContain(`"signal":"${signal}","msg":"shutting down"`);
      expect(p.logs()).not.toContain('a handle was left open');
    } finally {
      await p.stop();
    }
  },
  60_000,
);
