/**
 * An upstream that leaks what it is sent: it answers `/models` like an OpenAI-compatible server (checking the
 * key first, as OpenAI does), and for every other request echoes the key it received into response headers and
 * bodies, in the spellings a buggy or hostile server may use. The `model` of a request picks the leak:
 * - `echo-headers`: 200, with the key in `www-authenticate`, `set-cookie`, an `x-` header and `x-request-id`;
 * - `echo-4xx`: 400, the key plain, lower-cased, base64-encoded (at an odd offset), `\u`-escaped, and once
 *   straddling the gateway's 64 KiB cut of error bodies;
 * - `echo-5xx`: 503, the key in the message the gateway quotes;
 * - anything else: a normal chat completion.
 * Every request is recorded, so a test can prove that a refused request never reached it.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { SNAPSHOT_FORMAT, type Snapshot } from '../../src/snapshot/schema.ts';

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface HostileUpstream {
  url: string;
  /** Requests other than `GET /v1/models`. */
  seen: Seen[];
  close(): Promise<void>;
}

export const HOSTILE_MODELS = [
  'gpt-4o',
  'gpt-4o-mini',
  'secret-model',
  'echo-headers',
  'echo-4xx',
  'echo-5xx',
];

const CUT = 64 * 1024;

export async function hostileUpstream(apiKey: string): Promise<HostileUpstream> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const presented = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      if (req.method === 'GET' && req.url === '/v1/models') {
        if (presented !== apiKey) {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${presented}` } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ object: 'list', data: HOSTILE_MODELS.map((id) => ({ id, object: 'model' })) }),
        );
        return;
      }
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      let model = '';
      try {
        model = String(JSON.parse(body).model ?? '');
      } catch {
        // multipart or not JSON
      }
      const key = presented;
      if (model === 'echo-headers') {
        res.writeHead(200, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="x", error="invalid_token", token="${key}"`,
          'set-cookie': `session=${Buffer.from(key).toString('base64')}`,
          'x-debug-authorization': `Bearer ${key}`,
          'x-request-id': key,
          'openai-organization': 'org-secret-account',
          'x-ratelimit-remaining-requests': '99',
        });
        res.end(JSON.stringify(completion(model)));
        return;
      }
      if (model === 'echo-4xx') {
        const escaped = [...key].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
        const offsetB64 = Buffer.from(`Bearer ${key}`).toString('base64');
        const head =
          `{"error":{"message":"Incorrect API key provided: ${key} (also ${key.toLowerCase()}, ` +
          `${offsetB64}, ${escaped})","padding":"`;
        // The last copy of the key starts a few bytes before the 64 KiB cut and ends after it.
        const pad = 'x'.repeat(CUT - Buffer.byteLength(head) - 10);
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(`${head}${pad}${key}"}}`);
        return;
      }
      if (model === 'echo-5xx') {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `overloaded; your key ${key} is fine` } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(completion(model)));
    });
  });
  return { ...(await listenOnLoopback(server)), seen };
}

/** Starts an upstream on a free loopback port: its base URL (`…/v1`) and how to stop it. */
export async function listenOnLoopback(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A snapshot with one serving connection `ai/<name>` to `url` with `apiKey`, exposing `models` as they are. */
export function oneConnectionSnapshot(
  name: string,
  url: string,
  apiKey: string,
  models: readonly string[],
): Snapshot {
  const ok = { status: 'True' as const, reason: 'Verified', message: '' };
  return {
    format: SNAPSHOT_FORMAT,
    generation: 1,
    generatedAt: new Date().toISOString(),
    connections: [
      {
        namespace: 'ai',
        name,
        provider: 'OpenAI',
        url,
        apiKey,
        headers: {},
        dropParams: [],
        tags: [],
        timeouts: { connectMs: 5000, firstByteMs: 10_000, idleMs: 10_000, totalMs: 30_000 },
        serving: true,
        status: { ready: ok, verified: ok },
        models: models.map((id) => ({ id, upstreamId: id })),
      },
    ],
  };
}

/** A minimal non-streamed chat completion answering `model`. */
export function completion(model: string) {
  return {
    id: 'chatcmpl-hostile',
    object: 'chat.completion',
    created: 0,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}
