/**
 * The image built from the Dockerfile, as a black box (issue 15): a gateway container and a mock-provider
 * container from the same image, on their own container network, started with testcontainers through podman's
 * Docker API and hardened the way the chart runs them (read-only root, no capabilities, no privilege escalation).
 * The gateway must run as UID 65532, as PID 1, serve /readyz, proxy chat (plain and streamed) with the official
 * openai client, and on SIGTERM finish the streams in flight and exit 0.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { SNAPSHOT_FORMAT, type Snapshot } from '../../src/snapshot/schema.ts';
import { loadTestcontainers } from './support.ts';

const image = inject('image');
const tc = await loadTestcontainers(image);
type Started = Awaited<ReturnType<InstanceType<typeof tc.PlugboardContainer>['start']>>;

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  while (cleanup.length) await cleanup.pop()?.();
});

let network: Awaited<ReturnType<InstanceType<typeof tc.Network>['start']>>;
let configDir: string;
let mockUrl: string;
let gateway: Started;
let gatewayUrl: string;

const GATEWAY_ARGS = [
  'gateway',
  '--config-file=/config/snapshot.json',
  '--listen=0.0.0.0:8080',
  '--drain-timeout=30s',
  '--log-level=info',
];

/** A gateway container on the test network, ready (/readyz 200); removed after the file. */
async function startGateway(): Promise<{ container: Started; url: string }> {
  const container = await new tc.PlugboardContainer()
    .withNetwork(network)
    .withBindMounts([{ source: configDir, target: '/config', mode: 'ro' }])
    .withCommand(GATEWAY_ARGS)
    .withWaitStrategy(tc.Wait.forHttp('/readyz', 8080).forStatusCode(200))
    .withStartupTimeout(60_000)
    .start();
  cleanup.push(() => container.stop({ timeout: 0 }).catch(() => {}));
  return { container, url: `http://${container.getHost()}:${container.getMappedPort(8080)}` };
}

beforeAll(async () => {
  network = await new tc.Network().start();
  cleanup.push(() => network.stop());
  const mock = await new tc.PlugboardContainer()
    .withNetwork(network)
    .withCommand([
      'mock-provider',
      '--profile',
      'openai',
      '--listen',
      '0.0.0.0:8081',
      '--chunk-delay-ms',
      '40',
    ])
    .withWaitStrategy(tc.Wait.forLogMessage(/mock-provider openai listening/))
    .withStartupTimeout(60_000)
    .start();
  cleanup.push(() => mock.stop({ timeout: 0 }));
  mockUrl = `http://${mock.getIpAddress(network.getName())}:8081/v1`;

  // The gateway reads a routing snapshot file here (in a cluster, the operator's Secret); it is mounted read-only.
  configDir = mkdtempSync(join(tmpdir(), 'plugboard-container-'));
  chmodSync(configDir, 0o755); // readable by the image's user (65532)
  cleanup.push(async () => rmSync(configDir, { recursive: true, force: true }));
  const ok = { status: 'True' as const, reason: 'Verified', message: '' };
  const snap: Snapshot = {
    format: SNAPSHOT_FORMAT,
    generation: 1,
    generatedAt: new Date().toISOString(),
    connections: [
      {
        namespace: 'ai',
        name: 'mock',
        provider: 'OpenAI',
        url: mockUrl,
        headers: {},
        dropParams: [],
        tags: [],
        timeouts: { connectMs: 5000, firstByteMs: 30_000, idleMs: 30_000, totalMs: 120_000 },
        serving: true,
        status: { ready: ok, verified: ok },
        models: [{ id: 'gpt-4o', upstreamId: 'gpt-4o' }],
      },
    ],
  };
  writeFileSync(join(configDir, 'snapshot.json'), JSON.stringify(snap), { mode: 0o644 });
  ({ container: gateway, url: gatewayUrl } = await startGateway());
});

/** Runs `node -e <script>` inside the gateway container (there is no shell in the image) and parses its JSON. */
async function nodeInGateway(script: string): Promise<Record<string, unknown>> {
  const r = await gateway.exec(['/nodejs/bin/node', '-e', script]);
  if (r.exitCode !== 0) throw new Error(`node -e in the container exited ${r.exitCode}: ${r.output}`);
  return JSON.parse(r.stdout);
}

describe('the image, run as a black box', () => {
  it('is distroless, non-root and prints its size', async () => {
    const info = tc.imageInfo;
    const size = (info as unknown as { Size: number }).Size;
    console.log(`image ${image}: ${(size / 1e6).toFixed(1)} MB (${info.Id.slice(0, 19)})`);
    expect(info.Config.User).toBe('65532:65532');
    expect(info.Config.Entrypoint).toEqual(['/nodejs/bin/node', '/app/bin/plugboard.js']);
    const shell = await gateway
      .exec(['/bin/sh', '-c', 'true'])
      .catch((err: Error) => ({ exitCode: -1, output: err.message }));
    expect(shell.exitCode, `a shell ran in the image: ${shell.output}`).not.toBe(0);
  });

  it('runs the gateway as PID 1, UID 65532, with no capabilities and a read-only root filesystem', async () => {
    const facts = await nodeInGateway(`
      const fs = require('node:fs');
      const status = Object.fromEntries(fs.readFileSync('/proc/1/status', 'utf8').trim().split('\\n')
        .map((l) => l.split(':\\t')).map(([k, v]) => [k, v.trim()]));
      const tryWrite = (p) => { try { fs.writeFileSync(p, 'x'); fs.rmSync(p); return 'ok'; } catch (e) { return e.code; } };
      console.log(JSON.stringify({
        cmdline: fs.readFileSync('/proc/1/cmdline', 'utf8').split('\\0').filter(Boolean),
        uid: status.Uid, gid: status.Gid, capEff: status.CapEff, capPrm: status.CapPrm, capBnd: status.CapBnd,
        noNewPrivs: status.NoNewPrivs,
        writeApp: tryWrite('/app/x'), writeRoot: tryWrite('/x'), writeTmp: tryWrite('/tmp/x'),
      }));`);
    expect(facts.cmdline).toEqual(['/nodejs/bin/node', '/app/bin/plugboard.js', ...GATEWAY_ARGS]);
    expect(facts.uid).toBe('65532\t65532\t65532\t65532');
    expect(facts.gid).toBe('65532\t65532\t65532\t65532');
    expect(facts.capEff).toBe('0000000000000000');
    expect(facts.capPrm).toBe('0000000000000000');
    expect(facts.capBnd).toBe('0000000000000000');
    expect(facts.noNewPrivs).toBe('1');
    expect(facts.writeApp).toBe('EROFS');
    expect(facts.writeRoot).toBe('EROFS');
    expect(facts.writeTmp).toBe('ok'); // the tmpfs the chart also mounts (emptyDir)
  });

  it('serves /healthz and /readyz', async () => {
    const health = await request(`${gatewayUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    const ready = await request(`${gatewayUrl}/readyz`);
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toMatchObject({
      ready: true,
      snapshot: { generation: 1, lastError: null },
    });
  });

  it('proxies chat to the mock-provider container, plain and streamed, with the openai client', async () => {
    const client = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['gpt-4o']);
    const reply = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hello from a container' }],
    });
    expect(reply.choices[0]?.message.content).toBeTruthy();
    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      stream: true,
      messages: [{ role: 'user', content: 'one two three four five' }],
    });
    let chunks = 0;
    let text = '';
    for await (const c of stream) {
      chunks++;
      text += c.choices[0]?.delta.content ?? '';
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text.length).toBeGreaterThan(0);
  });

  it('on SIGTERM to PID 1: readiness fails, streams in flight finish, exit 0', async () => {
    const { container: target, url } = await startGateway();
    const STREAMS = 20;
    let opened = 0;
    let allOpen: () => void = () => {};
    const open = new Promise<void>((r) => {
      allOpen = r;
    });
    // ~40 words at 40 ms per chunk: each stream lasts well over a second, far inside the 30 s drain deadline.
    const streams = Array.from({ length: STREAMS }, async () => {
      const r = await request(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4o',
          stream: true,
          messages: [{ role: 'user', content: Array.from({ length: 40 }, (_, k) => `w${k}`).join(' ') }],
        }),
      });
      let text = '';
      let first = true;
      for await (const c of r.body) {
        text += (c as Buffer).toString('utf8');
        if (first) {
          first = false;
          if (++opened === STREAMS) allOpen();
        }
      }
      return text;
    });
    await Promise.race([
      open,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`only ${opened}/${STREAMS} streams opened`)), 20_000),
      ),
    ]);

    const client = await tc.getContainerRuntimeClient();
    const container = client.container.getById(target.getId());
    await container.kill({ signal: 'SIGTERM' });
    let ready = 0;
    const readyDeadline = Date.now() + 5000;
    while (Date.now() < readyDeadline) {
      ready = await request(`${url}/readyz`).then(
        async (r) => {
          await r.body.dump();
          return r.statusCode;
        },
        () => 0,
      );
      if (ready === 503) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const texts = await Promise.all(streams);
    const state = (await container.wait()) as { StatusCode: number };
    const inspect = await container.inspect();
    const logs = await new Promise<string>((resolve, reject) => {
      container.logs({ stdout: true, stderr: true, follow: false }, (err, buf) =>
        err ? reject(err) : resolve(String(buf)),
      );
    });
    console.log(`SIGTERM to the gateway container with ${STREAMS} open streams: exit ${state.StatusCode}`);
    expect(ready).toBe(503);
    for (const t of texts) expect(t.endsWith('data: [DONE]\n\n'), t.slice(-300)).toBe(true);
    expect(state.StatusCode).toBe(0);
    expect(inspect.State.OOMKilled).toBe(false);
    expect(logs).toContain('"signal":"SIGTERM"');
  }, 60_000);
});
