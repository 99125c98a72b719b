/**
 * Attacks found in the review of the rebuilt gateway, each run as an outside attacker would: against
 * `plugboard gateway` and `plugboard standalone` in their own processes, over raw sockets, in front of an upstream
 * that records what it is sent. The attacks that stall or crash a process get a gateway of their own, so that a
 * regression fails its own test and no other.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Snapshot } from '../../src/snapshot/schema.ts';
import { type GatewayProcess, spawnPlugboard } from '../reliability/process.ts';
import { freePort } from '../support/control-plane.ts';
import { type RawResponse, rawExchange, rawRequest } from '../support/raw-http.ts';
import { completion, listenOnLoopback, oneConnectionSnapshot } from './hostile-upstream.ts';

const PROVIDER_KEY = 'sk-provider-Zq8vXw3Lm5Np7Rt9Hk2Jd4Fg6';
const CLIENT_KEY = 'pb-review-client-key-0123456789';
/** May use `gpt-*` only. */
const SCOPED_KEY = 'pb-review-scoped-key-0123456789';
/** May use models whose ID mentions llama: a scope with two `*`. */
const LLAMA_KEY = 'pb-review-llama-key-0123456789';

const KEYS_YAML =
  `- {name: full, key: ${CLIENT_KEY}}\n` +
  `- {name: scoped, key: ${SCOPED_KEY}, models: ["gpt-*"]}\n` +
  `- {name: llama, key: ${LLAMA_KEY}, models: ["*llama*"]}\n`;

const MODELS = [
  'gpt-4o',
  'secret-model',
  'llama-3',
  'echo-utf16-4xx',
  'echo-utf16-5xx',
  'echo-escaped-5xx',
  'echo-gzip-4xx',
];

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const json = (key: string) => ({ 'content-type': 'application/json', ...bearer(key) });
const chat = (model: string) => `{"model":"${model}","messages":[{"role":"user","content":"hi"}]}`;

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

interface Upstream {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

/**
 * An OpenAI-compatible upstream that records every request but `GET /models`. The model picks the answer:
 * `echo-gzip-4xx` echoes the key in a gzip-compressed error (the gateway asks for `identity`; an upstream may
 * ignore it), `echo-utf16-4xx` echoes the key in a UTF-16 JSON error (as some .NET servers write them), `echo-utf16-5xx` does
 * so in a 500, `echo-escaped-5xx` in a 500 whose JSON spells the UTF-16 text with `\u0000` escapes; anything else
 * gets a chat completion.
 */
async function upstream(): Promise<Upstream> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: MODELS.map((id) => ({ id, object: 'model' })) }));
        return;
      }
      seen.push({ url: req.url ?? '', headers: req.headers, body });
      const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      let model = '';
      try {
        model = String(JSON.parse(body).model ?? '');
      } catch {
        // not JSON
      }
      const message = `Incorrect API key provided: ${key}`;
      if (model === 'echo-gzip-4xx') {
        const gz = gzipSync(JSON.stringify({ error: { message } }));
        res.writeHead(401, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          'content-length': gz.length,
        });
        res.end(gz);
        return;
      }
      if (model === 'echo-utf16-4xx') {
        res.writeHead(401, { 'content-type': 'application/json; charset=utf-16' });
        res.end(Buffer.from(JSON.stringify({ error: { message } }), 'utf16le'));
        return;
      }
      if (model === 'echo-utf16-5xx') {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-16' });
        res.end(Buffer.from(message, 'utf16le'));
        return;
      }
      if (model === 'echo-escaped-5xx') {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: Buffer.from(message, 'utf16le').toString('latin1') } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(completion(model)));
    });
  });
  return { ...(await listenOnLoopback(server)), seen };
}

const dirs: string[] = [];
const procs: GatewayProcess[] = [];
const children: ChildProcess[] = [];
let up: Upstream;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-review-'));
  dirs.push(dir);
  return dir;
}

/** `plugboard gateway` in front of the upstream, with the review's keys (or `keysYaml`). */
async function startGateway(
  opts: { keysYaml?: string; env?: Record<string, string>; args?: string[] } = {},
): Promise<{ proc: GatewayProcess; keysFile: string }> {
  const dir = tempDir();
  const keysFile = join(dir, 'keys.yaml');
  writeFileSync(keysFile, opts.keysYaml ?? KEYS_YAML);
  const file = join(dir, 'snapshot.json');
  writeFileSync(file, JSON.stringify(snapshotFor(up)));
  const proc = await spawnPlugboard(
    'gateway',
    ['--config-file', file, '--client-keys-file', keysFile, ...(opts.args ?? [])],
    { env: opts.env },
  );
  procs.push(proc);
  return { proc, keysFile };
}

function snapshotFor(upstream: Upstream): Snapshot {
  return oneConnectionSnapshot('upstream', upstream.url, PROVIDER_KEY, MODELS);
}

/** `plugboard standalone` with a ProviderConnection for the upstream, once it serves the upstream's models. */
async function startStandalone(opts: { keys?: boolean } = {}): Promise<GatewayProcess> {
  const dir = tempDir();
  const manifests = join(dir, 'upstream.yaml');
  writeFileSync(
    manifests,
    [
      'apiVersion: plugboard.dev/v1alpha1',
      'kind: ProviderConnection',
      'metadata: {name: upstream, namespace: ai}',
      `spec: {url: "${up.url}", apiKeySecretRef: {name: upstream-key}}`,
      '---',
      'apiVersion: v1',
      'kind: Secret',
      'metadata: {name: upstream-key, namespace: ai}',
      `stringData: {apiKey: ${PROVIDER_KEY}}`,
      '',
    ].join('\n'),
  );
  const keysFile = join(dir, 'keys.yaml');
  writeFileSync(keysFile, KEYS_YAML);
  const keys = opts.keys === false ? [] : ['--client-keys-file', keysFile];
  const proc = await spawnPlugboard('standalone', ['-f', manifests, ...keys]);
  procs.push(proc);
  await until(
    async () => {
      const r = await fetch(`${proc.url}/v1/models`, { headers: bearer(CLIENT_KEY) });
      return r.ok && (await r.text()).includes('secret-model');
    },
    `standalone never served the models:\n${proc.logs().slice(-2000)}`,
  );
  return proc;
}

/**
 * `plugboard gateway` with its stdout and stderr going to a file, as a container runtime's log pipe takes them
 * (spawnPlugboard keeps them in the test's memory, which an attack on the log would exhaust first).
 */
async function startGatewayLoggingToFile(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string }> {
  const dir = tempDir();
  const keysFile = join(dir, 'keys.yaml');
  writeFileSync(keysFile, KEYS_YAML);
  const file = join(dir, 'snapshot.json');
  writeFileSync(file, JSON.stringify(snapshotFor(up)));
  const port = await freePort();
  const out = openSync(join(dir, 'gateway.log'), 'w');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete childEnv.KUBERNETES_SERVICE_HOST;
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js'),
      'gateway',
      '--listen',
      `127.0.0.1:${port}`,
      '--config-file',
      file,
      '--client-keys-file',
      keysFile,
    ],
    { env: childEnv, stdio: ['ignore', out, out] },
  );
  closeSync(out);
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await until(
    async () =>
      fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      ),
    'the gateway did not get ready',
  );
  return { child, url };
}

async function until(check: () => Promise<boolean>, why: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(why);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A raw exchange that reports a connection the server dropped without an answer as status 0. */
async function exchange(url: string, request: Buffer, timeoutMs = 20_000): Promise<RawResponse> {
  try {
    return await rawExchange(url, request, timeoutMs);
  } catch (err) {
    return { status: 0, headers: {}, body: '', raw: String(err) };
  }
}

function errorCode(r: RawResponse): string | undefined {
  try {
    return (JSON.parse(r.body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

/** Whether text holds the key once NULs (UTF-16 read as bytes) are taken out. */
const holdsKey = (text: string) => text.replaceAll('\0', '').replaceAll('\\u0000', '').includes(PROVIDER_KEY);

beforeAll(async () => {
  up = await upstream();
});

afterAll(async () => {
  for (const p of procs) await p.stop();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await up?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.each(['gateway', 'standalone'] as const)('%s', (binary) => {
  let proc: GatewayProcess;
  beforeAll(async () => {
    proc = binary === 'gateway' ? (await startGateway()).proc : await startStandalone();
  }, 60_000);

  it('a scoped key cannot reach another model through a name that differs only in case (Go reads "Model" as "model")', async () => {
    const before = up.seen.length;
    for (const name of ['Model', 'MODEL', 'mOdEl', 'mod\\u0065L']) {
      const body = `{"model":"gpt-4o","${name}":"secret-model","messages":[{"role":"user","content":"hi"}]}`;
      const r = await exchange(proc.url, rawRequest('POST', '/v1/chat/completions', json(SCOPED_KEY), body));
      expect(r.status, `${name}: ${r.body}`).toBe(400);
      expect(errorCode(r)).toBe('invalid_json');
    }
    expect(up.seen.length, 'a body naming a second model reached the upstream').toBe(before);
  });

  it('a UTF-16 echo of the key is scrubbed from passed-through errors, 502 messages and logs', async () => {
    for (const model of ['echo-utf16-4xx', 'echo-utf16-5xx', 'echo-escaped-5xx']) {
      const r = await exchange(
        proc.url,
        rawRequest('POST', '/v1/chat/completions', json(CLIENT_KEY), chat(model)),
      );
      expect(r.status, model).toBe(model === 'echo-utf16-4xx' ? 401 : 502);
      expect(holdsKey(r.body), `${model} answered with the key: ${JSON.stringify(r.body)}`).toBe(false);
      if (r.status === 502) {
        const message = (JSON.parse(r.body) as { error: { message: string } }).error.message;
        expect(holdsKey(message), message).toBe(false);
      }
    }
    expect(holdsKey(proc.logs()), 'the logs hold the key').toBe(false);
  });

  it('a compressed error body is passed readable and scrubbed, not as bytes that only look compressed', async () => {
    const r = await fetch(`${proc.url}/v1/chat/completions`, {
      method: 'POST',
      headers: json(CLIENT_KEY),
      body: chat('echo-gzip-4xx'),
    });
    expect(r.status).toBe(401);
    // fetch decodes what content-encoding names; a gzip body read as UTF-8 text no longer is gzip
    const text = await r.text().catch((err: Error) => `unreadable: ${err.message} ${String(err.cause)}`);
    expect(text).not.toMatch(/^unreadable/);
    expect(holdsKey(text)).toBe(false);
    expect(text).toContain('Incorrect API key provided');
  });

  it('a key limited to some models does not read every model and connection in /metrics', async () => {
    await exchange(
      proc.url,
      rawRequest('POST', '/v1/chat/completions', json(CLIENT_KEY), chat('secret-model')),
    );
    const r = await exchange(proc.url, rawRequest('GET', '/metrics', bearer(SCOPED_KEY)));
    expect(r.body).not.toContain('secret-model');
  });
});

describe('standalone without client keys (npm start): a web page on the same machine', () => {
  let proc: GatewayProcess;
  beforeAll(async () => {
    proc = await startStandalone({ keys: false });
  }, 60_000);

  it('cannot post a multipart form cross-origin (a form or fetch no-cors needs no preflight)', async () => {
    const { host } = new URL(proc.url);
    const boundary = '----WebKitFormBoundary7MA4YWxkTrZu0gW';
    const form =
      `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na cat\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="blob"\r\n` +
      `Content-Type: application/octet-stream\r\n\r\nPNG\r\n--${boundary}--\r\n`;
    const browser = (origin: string) => ({
      host,
      origin,
      'content-type': `multipart/form-data; boundary=${boundary}`,
    });
    const before = up.seen.length;
    for (const origin of ['https://evil.example', 'null', 'http://127.0.0.1:1']) {
      const r = await exchange(proc.url, rawRequest('POST', '/v1/images/edits', browser(origin), form));
      expect(r.status, `${origin}: ${r.body}`).toBe(403);
    }
    expect(up.seen.length, 'a cross-origin form reached the upstream').toBe(before);
    // the gateway's own pages (same origin) still work
    const own = await exchange(
      proc.url,
      rawRequest('POST', '/v1/images/edits', browser(`http://${host}`), form),
    );
    expect(own.status, own.body).toBe(200);
  });
});

describe('exhaustion, each against a gateway of its own', () => {
  it('a scope with two * does not let a long model name stall the event loop', async () => {
    const { proc } = await startGateway();
    // `*llama*` is /^.*llama.*$/: a name with llama everywhere and a line break at the end backtracks
    // quadratically (1 MB: hours). The name names no model, so it is a 404 whatever the scope says.
    const body = `{"model":"${'llama'.repeat(200_000)}\\n","messages":[]}`;
    const r = await exchange(
      proc.url,
      rawRequest('POST', '/v1/chat/completions', json(LLAMA_KEY), body),
      15_000,
    );
    expect(r.status, r.raw.slice(0, 300)).toBe(404);
    expect(errorCode(r)).toBe('model_not_found');
    const health = await exchange(proc.url, rawRequest('GET', '/healthz'), 15_000);
    expect(health.status).toBe(200);
    await proc.stop();
  }, 60_000);

  it('multipart part headers full of spaces are checked in linear time', async () => {
    const { proc } = await startGateway();
    const b = 'pbreview';
    // 128 parts, each with an 8 KB Content-Disposition whose quoted filename is `name` and spaces: the header
    // trim and the `name=` search were quadratic in the run of spaces (about 0.2 s each per part here).
    let form = '';
    for (let i = 0; i < 127; i++)
      form += `--${b}\r\nContent-Disposition: form-data; name="f${i}"; filename="name${' '.repeat(8000)}"\r\n\r\nx\r\n`;
    form += `--${b}--\r\n`;
    const r = await exchange(
      proc.url,
      rawRequest(
        'POST',
        '/v1/audio/transcriptions',
        { 'content-type': `multipart/form-data; boundary=${b}`, ...bearer(CLIENT_KEY) },
        form,
      ),
      10_000,
    );
    expect(r.status, r.raw.slice(0, 300)).toBe(400);
    expect(errorCode(r)).toBe('missing_model');
    await proc.stop();
  }, 60_000);

  it('one JSON body within the size limit does not exhaust the heap of a replica sized like the chart', async () => {
    // The chart gives a 256Mi container `--max-old-space-size=128`. Parsing 8 MB of `{},` makes 2.7 million
    // objects: about 175 MB of heap from one request that counts 8 MB against the body budget.
    const { proc } = await startGateway({ env: { NODE_OPTIONS: '--max-old-space-size=128' } });
    const body = `{"model":"gpt-4o","messages":[],"x":[${'{},'.repeat(2_700_000)}{}]}`;
    const r = await exchange(
      proc.url,
      rawRequest('POST', '/v1/chat/completions', json(CLIENT_KEY), body),
      30_000,
    );
    await new Promise((res) => setTimeout(res, 500));
    const { exitCode, signalCode } = proc.child;
    expect({ exitCode, signalCode }, `the gateway died:\n${proc.logs().slice(-600)}`).toEqual({
      exitCode: null,
      signalCode: null,
    });
    expect([400, 413, 503], r.raw.slice(0, 300)).toContain(r.status);
    await proc.stop();
  }, 90_000);
});

describe('exhaustion without a key', () => {
  it('long targets pipelined on connections nobody reads do not pile up log lines until the heap is gone', async () => {
    // Every refused request writes an access line naming its path, and a target may be 8 KiB. The log is written
    // asynchronously, in turns of the event loop that parsing the requests takes: lines are made faster than they
    // leave, and wait in memory.
    const { child, url } = await startGatewayLoggingToFile({ NODE_OPTIONS: '--max-old-space-size=128' });
    const { port } = new URL(url);
    const burst = `GET /v1/models/${'x'.repeat(8000)} HTTP/1.1\r\nhost: x\r\n\r\n`.repeat(100);
    const sockets: Socket[] = [];
    const alive = () => child.exitCode === null && child.signalCode === null;
    const end = Date.now() + 25_000;
    for (let i = 0; i < 20; i++) {
      const s = connect(Number(port), '127.0.0.1');
      s.on('error', () => undefined);
      s.pause(); // the answers are never read
      const write = () => {
        while (Date.now() < end && alive()) if (!s.write(burst)) return void s.once('drain', write);
      };
      s.once('connect', write);
      sockets.push(s);
    }
    while (Date.now() < end && alive()) await new Promise((r) => setTimeout(r, 250));
    for (const s of sockets) s.destroy();
    expect({ exitCode: child.exitCode, signalCode: child.signalCode }).toEqual({
      exitCode: null,
      signalCode: null,
    });
    const health = await exchange(url, rawRequest('GET', '/healthz'), 20_000);
    expect(health.status).toBe(200);
    child.kill('SIGKILL');
  }, 90_000);
});

describe('shutdown', () => {
  it('a body that trickles in does not hold SIGTERM past the drain deadline', async () => {
    const { proc } = await startGateway({ args: ['--drain-timeout', '2s'] });
    const { port } = new URL(proc.url);
    const s = connect(Number(port), '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    // a byte every second: never idle long enough for the body-idle timeout, done only at the request timeout
    s.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
        `authorization: Bearer ${CLIENT_KEY}\r\ncontent-length: 100000\r\n\r\n{`,
    );
    const trickle = setInterval(() => s.write(' '), 1000);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      proc.child.kill('SIGTERM');
      const exited = await Promise.race([
        proc.exited,
        new Promise<'still running'>((r) => setTimeout(() => r('still running'), 20_000)),
      ]);
      expect(exited, 'the gateway was still running 20 s after SIGTERM with a 2 s drain').toEqual({
        code: 0,
        signal: null,
      });
    } finally {
      clearInterval(trickle);
      s.destroy();
    }
  }, 60_000);
});

describe('revocation', () => {
  it('emptying the keys file revokes every key', async () => {
    const { proc, keysFile } = await startGateway();
    const status = async () => {
      const r = await fetch(`${proc.url}/readyz`);
      return ((await r.json()) as { clientKeys: { state: string; keys: number } }).clientKeys;
    };
    expect(await status()).toMatchObject({ state: 'loaded', keys: 3 });
    for (const empty of ['', '# every key revoked\n', 'keys:\n']) {
      writeFileSync(keysFile, KEYS_YAML);
      await until(async () => (await status()).state === 'loaded', 'the keys were not read back');
      writeFileSync(keysFile, empty);
      await until(
        async () => {
          const s = await status();
          return s.state !== 'loaded' || s.keys !== 3;
        },
        `the gateway never noticed the edit to ${JSON.stringify(empty)}`,
      );
      const r = await exchange(proc.url, rawRequest('GET', '/v1/models', bearer(CLIENT_KEY)));
      expect(r.status, `after writing ${JSON.stringify(empty)}: ${JSON.stringify(await status())}`).toBe(401);
    }
    await proc.stop();
  }, 60_000);
});

describe('configuration that asks for keys and names none', () => {
  it('PLUGBOARD_CLIENT_KEYS set to nothing refuses every request instead of serving without keys', async () => {
    const dir = tempDir();
    const file = join(dir, 'snapshot.json');
    writeFileSync(file, JSON.stringify(snapshotFor(up)));
    const proc = await spawnPlugboard('gateway', ['--config-file', file], {
      env: { PLUGBOARD_CLIENT_KEYS: '' },
    });
    procs.push(proc);
    const r = await exchange(proc.url, rawRequest('GET', '/v1/models'));
    expect(r.status).toBe(401);
    const again = await exchange(proc.url, rawRequest('GET', '/v1/models', bearer(CLIENT_KEY)));
    expect(again.status).toBe(401);
    await proc.stop();
  }, 60_000);
});
