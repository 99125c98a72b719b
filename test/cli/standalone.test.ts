import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseResource } from '../../src/api/validate.ts';
import { type MockProvider, startMockProvider } from '../../src/mock-provider/index.ts';
import { OperatorMetrics } from '../../src/operator/metrics.ts';
import { findProfile } from '../../src/providers/profiles.ts';
import { loadYaml } from '../support/fixtures.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'plugboard.js');

/** A plugboard process as a user runs it, with its output collected. */
class Cli {
  readonly child: ChildProcess;
  out = '';
  private exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    const base = { ...process.env };
    delete base.OPENAI_API_KEY;
    this.child = spawn(process.execPath, [BIN, ...args], {
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (d) => {
      this.out += d;
    });
    this.child.stderr?.on('data', (d) => {
      this.out += d;
    });
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  /** Resolves with the first match of `re` in the output. */
  async waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.out.match(re);
      if (m) return m;
      if (this.child.exitCode !== null) throw new Error(`exited ${this.child.exitCode}:\n${this.out}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The JSON log lines. */
  logs(): Record<string, unknown>[] {
    return this.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Polls until `check` stops throwing. */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

interface PublicConn {
  namespace: string;
  name: string;
  ready: { status: string; reason: string; message: string };
  models: string[];
}
const getJson = async <T>(url: string): Promise<T> => (await fetch(url)).json() as Promise<T>;
const connections = async (url: string) =>
  (await getJson<{ connections: PublicConn[] }>(`${url}/api/connections`)).connections;

async function chat(url: string, model: string, text: string): Promise<string> {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10_000 });
  const stream = await client.chat.completions.create({
    model,
    stream: true,
    messages: [{ role: 'user', content: text }],
  });
  let reply = '';
  for await (const chunk of stream) reply += chunk.choices[0]?.delta?.content ?? '';
  return reply;
}

describe('npm start (plugboard start on examples/local)', () => {
  let dir: string;
  let cli: Cli;
  let url: string;

  beforeAll(async () => {
    // The example manifests name the simulated provider's fixed address; the copy points at a free port.
    const mockPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'plugboard-start-'));
    cpSync(join(ROOT, 'examples', 'local'), dir, { recursive: true });
    const mockFile = join(dir, 'mock.yaml');
    writeFileSync(
      mockFile,
      readFileSync(mockFile, 'utf8').replaceAll('127.0.0.1:8081', `127.0.0.1:${mockPort}`),
    );
    cli = new Cli(['start', '--listen', '127.0.0.1:0', '--mock-listen', `127.0.0.1:${mockPort}`, '-f', dir]);
    url = (await cli.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+)","msg":"Plugboard is running/))[1] as string;
  });

  afterAll(async () => {
    const code = await cli?.stop();
    rmSync(dir, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  it('reaches ready and serves a streamed chat reply through the openai client', async () => {
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await chat(url, 'mock.gpt-4o', 'hi there')).toBe('Hello from openai! You said: hi there');
  });

  it('shows one healthy connection and one failing with its reason, on /api/connections and /metrics', async () => {
    const conns = await connections(url);
    expect(conns.map((c) => [c.name, c.ready.status, c.ready.reason])).toEqual([
      ['mock', 'True', 'Verified'],
      ['openai', 'False', 'SecretKeyMissing'],
    ]);
    expect(conns[1]?.ready.message).toContain('environment variable OPENAI_API_KEY, which is not set');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/plugboard_connection_up\{namespace="default",name="mock"\} 1/);
    expect(metrics).toMatch(/plugboard_connection_up\{namespace="default",name="openai"\} 0/);
    // The operator's metric definitions, all of them: standalone runs the same reconciler.
    for (const m of new OperatorMetrics({ defaultMetrics: false }).registry.getMetricsAsArray()) {
      expect(metrics, m.name).toContain(`# TYPE ${m.name} `);
    }
    expect(metrics).toMatch(
      /plugboard_operator_reconcile_total\{controller="providerconnection",result="\w+"\} \d+/,
    );
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
  });

  it('picks up an added allowlist without a restart', async () => {
    const file = join(dir, 'allowlist.yaml');
    writeFileSync(
      file,
      'apiVersion: plugboard.dev/v1alpha1\nkind: ModelAllowlist\nmetadata: {name: mock}\nspec: {connectionRef: {name: mock}, models: [gpt-4o, "o3-*"]}\n',
    );
    try {
      await eventually(async () => {
        const models = await getJson<{ data: { id: string }[] }>(`${url}/v1/models`);
        expect(models.data.map((m) => m.id)).toEqual(['mock.gpt-4o', 'mock.o3-mini']);
      });
    } finally {
      // the other tests see the example as it is
      rmSync(file);
      await eventually(async () => {
        const models = await getJson<{ data: { id: string }[] }>(`${url}/v1/models`);
        expect(models.data.length).toBeGreaterThan(2);
      });
    }
  });

  it('reports a broken edit (file, document, field) and keeps serving the last good config', async () => {
    const mockFile = join(dir, 'mock.yaml');
    const good = readFileSync(mockFile, 'utf8');
    writeFileSync(mockFile, good.replace('url: http://', 'url: http://user:pw@'));
    const body = await eventually(async () => {
      const r = await getJson<{ ready: boolean; snapshot: { lastError: string | null } }>(`${url}/readyz`);
      expect(r.snapshot.lastError).toContain('mock.yaml#2 spec.url: url must not contain credentials');
      return r;
    });
    expect(body.ready).toBe(true);
    await cli.waitFor(
      /"msg":"invalid manifest: [^"]*mock\.yaml#2 spec\.url: url must not contain credentials/,
    );
    expect(await chat(url, 'mock.gpt-4o', 'still there?')).toBe('Hello from openai! You said: still there?');

    // Replace the file the way editors do (write elsewhere, rename over it): the fix applies and the error clears.
    writeFileSync(join(dir, '.mock.yaml.tmp'), good.replace('modelPrefix: mock', 'modelPrefix: sim'));
    const { renameSync } = await import('node:fs');
    renameSync(join(dir, '.mock.yaml.tmp'), mockFile);
    await eventually(async () => {
      const r = await getJson<{ snapshot: { lastError: string | null } }>(`${url}/readyz`);
      expect(r.snapshot.lastError).toBeNull();
      const ids = (await getJson<{ data: { id: string }[] }>(`${url}/v1/models`)).data.map((m) => m.id);
      expect(ids).toContain('sim.gpt-4o');
      expect(ids.filter((id) => !id.startsWith('sim.'))).toEqual([]);
    });
    // the other tests see the example as it is
    writeFileSync(mockFile, good);
    await eventually(async () => {
      const ids = (await getJson<{ data: { id: string }[] }>(`${url}/v1/models`)).data.map((m) => m.id);
      expect(ids).toContain('mock.gpt-4o');
    });
  });
});

describe('plugboard standalone', () => {
  let mock: MockProvider;
  let dir: string;
  const KEY = 'sk-standalone-secret-key-4711';

  beforeAll(async () => {
    mock = await startMockProvider({ profile: 'openai', apiKey: KEY });
    dir = mkdtempSync(join(tmpdir(), 'plugboard-standalone-'));
  });
  afterAll(async () => {
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('resolves a key from an environment variable and never shows it in logs, /api/connections or /v1/models', async () => {
    const file = join(dir, 'env.yaml');
    writeFileSync(
      file,
      [
        `apiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: ai}\nstringData: {apiKey: '\${PB_TEST_KEY}'}`,
        `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: good, namespace: ai}\nspec: {url: '${mock.url}', apiKeySecretRef: {name: k}}`,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal environment variable reference
        `apiVersion: v1\nkind: Secret\nmetadata: {name: k2, namespace: ai}\ndata: {apiKey: ${Buffer.from('${PB_UNSET_KEY}').toString('base64')}}`,
        `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: unset, namespace: ai}\nspec: {url: '${mock.url}', apiKeySecretRef: {name: k2}}`,
        // A Secret in another namespace is not visible, as in a cluster.
        `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: elsewhere}\nspec: {url: '${mock.url}', apiKeySecretRef: {name: k}}`,
      ].join('\n---\n'),
    );
    const cli = new Cli(['standalone', '-f', file, '--listen', '127.0.0.1:0', '--log-level', 'debug'], {
      PB_TEST_KEY: KEY,
    });
    try {
      const url = (
        await cli.waitFor(/"url":"(http:\/\/[^"]+)","msg":"plugboard standalone is serving/)
      )[1] as string;
      const conns = await connections(url);
      const byName = Object.fromEntries(conns.map((c) => [c.name, c.ready]));
      expect(byName.good?.reason).toBe('Verified');
      expect(byName.unset).toMatchObject({ status: 'False', reason: 'SecretKeyMissing' });
      expect(byName.unset?.message).toContain('PB_UNSET_KEY');
      expect(byName.elsewhere?.reason).toBe('SecretNotFound');
      expect(await chat(url, 'gpt-4o-mini', 'key?')).toBe('Hello from openai! You said: key?');
      const seen = mock.requests.filter((r) => r.path === '/v1/chat/completions');
      expect(seen.at(-1)?.headers.authorization).toBe(`Bearer ${KEY}`);

      const texts = [
        await (await fetch(`${url}/api/connections`)).text(),
        await (await fetch(`${url}/v1/models`)).text(),
        await (await fetch(`${url}/readyz`)).text(),
        await (await fetch(`${url}/metrics`)).text(),
      ];
      for (const t of texts) expect(t).not.toContain(KEY);
      await cli.stop();
      expect(cli.out).toContain('"msg":"connection ready"');
      expect(cli.out).not.toContain(KEY);
    } finally {
      await cli.stop();
    }
  });

  it('refuses to start on invalid manifests, naming file, document and field', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      `apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {apiKey: x}\n---\napiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: c}\nspec: {url: 'https://u:p@api.openai.com/v1', verification: {interval: 5x}}\n`,
    );
    const res = spawnSync(process.execPath, [BIN, 'standalone', '-f', file, '--listen', '127.0.0.1:0'], {
      encoding: 'utf8',
    });
    expect(res.status).toBe(1);
    expect(res.stderr).toMatch(/bad\.yaml#2 spec\.url: url must not contain credentials/);
    expect(res.stderr).toMatch(/bad\.yaml#2 spec\.verification\.interval: must be a duration/);
  });

  it('examples/local is valid and its real provider comes from the provider profile table', () => {
    const docs = loadYaml(readFileSync(join(ROOT, 'examples', 'local', 'openai.yaml'), 'utf8'));
    const conn = parseResource(docs.find((d) => d.kind === 'ProviderConnection'));
    const profile = findProfile('openai');
    expect(
      conn.ok && conn.kind === 'ProviderConnection' && [conn.value.spec.provider, conn.value.spec.url],
    ).toEqual([profile?.provider, profile?.url]);
    const res = spawnSync(process.execPath, [BIN, 'verify', '-f', join(ROOT, 'examples', 'local')], {
      encoding: 'utf8',
    });
    expect(res.stdout).toContain('OK    valid: 2 connection(s), 0 allowlist(s), 2 secret(s) in 2 file(s)');
    expect(res.status).toBe(0);
  });
});

describe('plugboard standalone: upstreams that list models differently, or not at all', () => {
  const GEMINI_KEY = 'AIza-standalone-gemini-0042';
  const AZURE_KEY = 'az-standalone-0042';
  const PPLX_KEY = 'pplx-standalone-0042';
  let gemini: MockProvider;
  let azure: MockProvider;
  let pplx: MockProvider;
  let dir: string;
  let cli: Cli;
  let url: string;

  beforeAll(async () => {
    [gemini, azure, pplx] = await Promise.all([
      startMockProvider({ profile: 'gemini', apiKey: GEMINI_KEY }),
      startMockProvider({ profile: 'azure', apiKey: AZURE_KEY }),
      startMockProvider({ profile: 'perplexity', apiKey: PPLX_KEY }),
    ]);
    dir = mkdtempSync(join(tmpdir(), 'plugboard-dialects-'));
    const secret = (name: string, key: string) =>
      `apiVersion: v1\nkind: Secret\nmetadata: {name: ${name}}\nstringData: {apiKey: '${key}'}`;
    const connection = (name: string, spec: string) =>
      `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: ${name}}\nspec: {${spec}}`;
    const allowlist = (name: string, models: string) =>
      `apiVersion: plugboard.dev/v1alpha1\nkind: ModelAllowlist\nmetadata: {name: ${name}}\nspec: {connectionRef: {name: ${name}}, models: ${models}}`;
    writeFileSync(
      join(dir, 'all.yaml'),
      [
        secret('gemini', GEMINI_KEY),
        connection('gemini', `url: '${gemini.url}', apiKeySecretRef: {name: gemini}`),
        allowlist('gemini', '[gemini-2.5-pro]'),
        secret('azure', AZURE_KEY),
        connection(
          'azure',
          `provider: AzureOpenAI, url: '${azure.url}', apiKeySecretRef: {name: azure}, azure: {apiVersion: v1}`,
        ),
        allowlist('azure', '[my-gpt-4o-deployment]'),
        secret('pplx-wrong', 'pplx-wrong-key'),
        connection('pplx-badkey', `url: '${pplx.url}', apiKeySecretRef: {name: pplx-wrong}`),
        allowlist('pplx-badkey', '[sonar-pro]'),
        secret('pplx', PPLX_KEY),
        connection('pplx-badurl', `url: '${pplx.origin}/v2', apiKeySecretRef: {name: pplx}`),
        allowlist('pplx-badurl', '[sonar-reasoning-pro]'),
      ].join('\n---\n'),
    );
    cli = new Cli(['standalone', '-f', dir, '--listen', '127.0.0.1:0']);
    url = (await cli.waitFor(/"url":"(http:\/\/[^"]+)","msg":"plugboard standalone is serving/))[1] as string;
  });

  afterAll(async () => {
    await cli?.stop();
    await Promise.all([gemini, azure, pplx].map((m) => m?.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports each connection honestly: no Ready for a wrong key or base URL behind a missing /models', async () => {
    const byName = Object.fromEntries((await connections(url)).map((c) => [c.name, c.ready]));
    expect(byName.gemini).toMatchObject({ status: 'True', reason: 'Verified' });
    expect(byName.azure).toMatchObject({ status: 'True', reason: 'Verified' });
    expect(byName['pplx-badkey']).toMatchObject({ status: 'False', reason: 'Unauthorized' });
    expect(byName['pplx-badurl']).toMatchObject({ status: 'False', reason: 'EndpointNotFound' });
    const models = await getJson<{ data: { id: string }[] }>(`${url}/v1/models`);
    expect(models.data.map((m) => m.id).sort()).toEqual(['gemini-2.5-pro', 'my-gpt-4o-deployment']);
  });

  it('routes Gemini by the ID it listed (models/<id>) and Azure v1 by the deployment in the body', async () => {
    expect(await chat(url, 'gemini-2.5-pro', 'hi gemini')).toBe('Hello from gemini! You said: hi gemini');
    const g = gemini.requests.filter((r) => r.method === 'POST').at(-1);
    expect(g?.path).toBe('/v1beta/openai/chat/completions');
    expect(g?.body).toMatchObject({ model: 'models/gemini-2.5-pro' });
    expect(await chat(url, 'my-gpt-4o-deployment', 'hi azure')).toBe('Hello from azure! You said: hi azure');
    const a = azure.requests.filter((r) => r.method === 'POST').at(-1);
    expect(a).toMatchObject({ path: '/openai/v1/chat/completions', query: {} });
    expect(a?.body).toMatchObject({ model: 'my-gpt-4o-deployment' });
  });
});
