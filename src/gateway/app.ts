import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { resolve as resolvePath } from 'node:path';
import { Readable } from 'node:stream';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { DestinationStream } from 'pino';
import { publicConnections } from '../snapshot/public-view.ts';
import type { Snapshot } from '../snapshot/schema.ts';
import { allows, type ClientKey, type ClientKeysSource } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { GatewayMetrics } from './metrics.ts';
import { boundaryOf, MultipartError, readMultipartHead, rewriteModel } from './multipart.ts';
import { openApiDocument } from './openapi.ts';
import { type ActiveRequest, type ProxyDeps, proxy } from './proxy.ts';
import {
  Balancer,
  type Candidate,
  compileRoutes,
  connectionKey,
  type HealthOptions,
  type RouteTable,
} from './routing.ts';
import type { SnapshotSource } from './snapshot-source.ts';
import { type Endpoint, Pools } from './upstream.ts';

export interface GatewayLoggerOptions {
  level?: string;
  /** A pino destination (tests pass a stream to read the log lines). */
  stream?: NodeJS.WritableStream | DestinationStream;
}

export interface GatewayOptions {
  snapshots: SnapshotSource;
  /** When set, every /v1 and /api request needs `Authorization: Bearer <key>`. */
  clientKeys?: ClientKeysSource;
  /** Default 8 MiB. */
  maxJsonBody?: number;
  /** Default 25 MiB. */
  maxMultipartBody?: number;
  /** Built UI assets, served at / with index.html as the SPA fallback. */
  uiDir?: string;
  /** false: no logs. Default: JSON lines at info on stdout. */
  logger?: false | GatewayLoggerOptions;
  /** How long drain() lets in-flight requests finish. Default 30 s. */
  drainTimeoutMs?: number;
  /** Extra CA certificates for upstream TLS. */
  upstreamCa?: string | string[];
  /** Default true; tests creating many gateways may turn the process metrics off. */
  defaultMetrics?: boolean;
  health?: HealthOptions;
}

export interface Gateway {
  app: FastifyInstance;
  metrics: GatewayMetrics;
  /** The compiled routing table in use, if a snapshot is loaded. */
  routes(): RouteTable | undefined;
  /** Resolves with the URL, e.g. http://127.0.0.1:8080. */
  listen(host: string, port: number): Promise<string>;
  /** Serves /metrics on a separate listener too (e.g. for a metrics-only port). */
  listenMetrics(host: string, port: number): Promise<string>;
  /** SIGTERM: readiness fails at once; in-flight requests finish up to the drain deadline; then close. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyRequest {
    clientKey: ClientKey | undefined;
    /** Set by the proxy, which writes the access line itself. */
    accessLogged: boolean;
  }
}

/** The proxied endpoints by body type; tests take the list from here so they cover every route. */
export const JSON_ENDPOINTS: readonly Endpoint[] = [
  'chat/completions',
  'completions',
  'embeddings',
  'audio/speech',
  'images/generations',
  'responses',
];
export const MULTIPART_ENDPOINTS: readonly Endpoint[] = [
  'audio/transcriptions',
  'audio/translations',
  'images/edits',
];
/** Endpoints whose streamed replies carry usage when `stream_options.include_usage` is set. */
const USAGE_STREAMING: ReadonlySet<Endpoint> = new Set(['chat/completions', 'completions']);

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildGateway(opts: GatewayOptions): Promise<Gateway> {
  const maxJsonBody = opts.maxJsonBody ?? 8 * 1024 * 1024;
  const maxMultipartBody = opts.maxMultipartBody ?? 25 * 1024 * 1024;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
  const metrics = new GatewayMetrics({ defaultMetrics: opts.defaultMetrics });
  const balancer = new Balancer(opts.health);
  const pools = new Pools({ ca: opts.upstreamCa });
  const active = new Set<ActiveRequest>();
  const deps: ProxyDeps = { balancer, pools, metrics, active };

  const app = Fastify({
    logger:
      opts.logger === false
        ? false
        : {
            level: opts.logger?.level ?? 'info',
            redact: {
              paths: [
                'req.headers.authorization',
                'req.headers["api-key"]',
                'req.headers["x-api-key"]',
                'headers.authorization',
                'headers["api-key"]',
                'headers["x-api-key"]',
              ],
              censor: '[redacted]',
            },
            ...(opts.logger?.stream ? { stream: opts.logger.stream } : {}),
          },
    // one access line per request, written by the proxy or the onResponse hook below
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    bodyLimit: maxJsonBody,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
    },
    keepAliveTimeout: 72_000,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 1000, ignoreTrailingSlash: true },
    // URLs the router cannot decode (`/v1/%ff`) or with over-long parameters: OpenAI-shaped, like every error
    frameworkErrors: (err, _request, reply) =>
      sendError(
        reply,
        new GatewayError((err as { statusCode?: number }).statusCode ?? 400, err.message, {
          code: 'invalid_url',
        }),
      ),
  });
  app.decorateRequest('clientKey', undefined);
  app.decorateRequest('accessLogged', false);

  // --- snapshot → routing table ---
  let table: RouteTable | undefined;
  let draining = false;
  const apply = (snapshot: Snapshot | undefined) => {
    const st = opts.snapshots.status();
    if (snapshot && snapshot !== table?.snapshot) {
      table = compileRoutes(snapshot);
      balancer.retain(new Set(snapshot.connections.map(connectionKey)));
      metrics.snapshotGeneration.set(snapshot.generation);
      metrics.snapshotLastReload.set(Date.now() / 1000);
      app.log.info(
        {
          generation: snapshot.generation,
          connections: snapshot.connections.length,
          models: table.models.length,
        },
        'routing snapshot applied',
      );
    }
    if (st.lastError) {
      metrics.snapshotErrors.inc();
      metrics.snapshotOk.set(0);
      app.log.error(
        { error: st.lastError, keptGeneration: table?.generation ?? null, source: st.source },
        'routing snapshot rejected; keeping the last good one',
      );
    } else {
      metrics.snapshotOk.set(1);
    }
  };
  const unsubscribe = opts.snapshots.subscribe(apply);
  const initial = opts.snapshots.current();
  if (initial) apply(initial);
  await opts.snapshots.start?.();
  await opts.clientKeys?.start?.();

  // --- body parsing: raw buffers, so bodies can pass through byte for byte ---
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxJsonBody }, (_req, body, done) =>
    done(null, body),
  );
  // multipart is streamed by the handler itself
  app.addContentTypeParser('multipart/form-data', (_req, _payload, done) => done(null, undefined));

  // --- errors: always OpenAI-shaped ---
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    if (err instanceof GatewayError) return sendError(reply, err);
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return sendError(reply, errors.tooLarge(maxJsonBody));
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) request.log.error({ err }, 'request failed');
    return sendError(
      reply,
      new GatewayError(status, status >= 500 ? 'Internal gateway error.' : err.message, {
        code: err.code ?? null,
        type: status >= 500 ? 'server_error' : 'invalid_request_error',
      }),
    );
  });

  // --- client authentication ---
  // Callback-style hooks: they run on every request, and an async hook costs a promise each time.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    if (!opts.clientKeys) return done();
    const url = request.url;
    if (!url.startsWith('/v1/') && url !== '/v1' && !url.startsWith('/api/')) return done();
    const keys = opts.clientKeys.current();
    if (!keys) return done(errors.unavailable('Client API keys are not loaded yet.'));
    const key = keys.authenticate(request.headers.authorization);
    if (!key) return done(errors.unauthenticated());
    request.clientKey = key;
    done();
  });

  app.addHook('onResponse', (request, reply, done) => {
    // Proxied requests write their own, richer access line (connection, model, tokens).
    if (!request.accessLogged) {
      const quiet = request.url === '/healthz' || request.url === '/readyz' || request.url === '/metrics';
      request.log[quiet ? 'debug' : 'info'](
        {
          method: request.method,
          url: request.url,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime),
          ...(request.clientKey ? { clientKey: request.clientKey.name } : {}),
        },
        'request completed',
      );
    }
    done();
  });

  // --- health, readiness, metrics ---
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const st = opts.snapshots.status();
    const keysError = opts.clientKeys?.lastError();
    const keysLoaded = !opts.clientKeys || opts.clientKeys.current() !== undefined;
    const ready = !draining && table !== undefined && keysLoaded;
    const body = {
      ready,
      ...(draining ? { reason: 'draining' } : {}),
      ...(!table ? { reason: 'no routing snapshot loaded yet' } : {}),
      ...(!keysLoaded ? { reason: 'client keys not loaded' } : {}),
      snapshot: {
        source: st.source,
        generation: table?.generation ?? null,
        lastReloadAt: st.lastReloadAt?.toISOString() ?? null,
        lastError: st.lastError ?? null,
        lastErrorAt: st.lastErrorAt?.toISOString() ?? null,
      },
      ...(keysError ? { clientKeys: { lastError: keysError } } : {}),
    };
    return reply.code(ready ? 200 : 503).send(body);
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  const openapi = JSON.stringify(
    openApiDocument({ maxJsonBody, maxMultipartBody, clientKeys: opts.clientKeys !== undefined }),
  );
  app.get('/openapi.json', async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(openapi),
  );

  // --- models ---
  const requireTable = (): RouteTable => {
    if (!table) throw errors.unavailable('The gateway has no routing snapshot yet.');
    return table;
  };
  app.get('/v1/models', async (request, reply) => {
    const t = requireTable();
    reply.header('content-type', 'application/json; charset=utf-8');
    const key = request.clientKey;
    if (!key?.models) return t.modelsJson;
    return JSON.stringify({ object: 'list', data: t.models.filter((m) => allows(key, m.id)) });
  });
  app.get('/v1/models/*', async (request) => {
    const t = requireTable();
    const id = (request.params as { '*': string })['*'];
    const entry = allows(request.clientKey, id) ? t.models.find((m) => m.id === id) : undefined;
    if (!entry) throw errors.modelNotFound(id);
    return entry;
  });
  app.get('/api/connections', async () => publicConnections(requireTable().snapshot));

  // --- proxied endpoints ---
  const candidatesFor = (
    request: FastifyRequest,
    model: string,
  ): { t: RouteTable; candidates: Candidate[] } => {
    const t = requireTable();
    const candidates = allows(request.clientKey, model) ? t.routes.get(model) : undefined;
    if (!candidates) throw errors.modelNotFound(model);
    return { t, candidates };
  };

  for (const endpoint of JSON_ENDPOINTS) {
    app.post(`/v1/${endpoint}`, async (request, reply) => {
      const raw = request.body as Buffer | undefined;
      if (!raw || raw.length === 0) throw errors.badJson('the body is empty');
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw errors.badJson((err as Error).message);
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
        throw errors.badJson('the body must be a JSON object');
      const body = parsed as Record<string, unknown>;
      const model = body.model;
      if (typeof model !== 'string' || model === '') throw errors.missingModel();
      const { candidates } = candidatesFor(request, model);
      const stream = body.stream === true;
      const so = body.stream_options as Record<string, unknown> | undefined | null;
      const clientWantsUsage = !!so && typeof so === 'object' && so.include_usage === true;
      const injectUsage = stream && USAGE_STREAMING.has(endpoint) && !clientWantsUsage;
      const keys = Object.keys(body);
      const cache = new Map<Candidate, Buffer>();
      await proxy(deps, request, reply, {
        endpoint,
        model,
        candidates,
        replayable: true,
        contentType: 'application/json',
        hideUsage: injectUsage,
        body: (c) => {
          let out = cache.get(c);
          if (!out) {
            out = upstreamBody(raw, body, keys, c, model, injectUsage);
            cache.set(c, out);
          }
          return { data: out, length: out.length };
        },
      });
    });
  }

  for (const endpoint of MULTIPART_ENDPOINTS) {
    app.post(`/v1/${endpoint}`, async (request, reply) => {
      const ctype = request.headers['content-type'] ?? '';
      const boundary = boundaryOf(ctype);
      if (!ctype.toLowerCase().startsWith('multipart/form-data') || !boundary)
        throw new GatewayError(400, 'This endpoint takes multipart/form-data with a boundary.', {
          code: 'invalid_content_type',
        });
      const declared = Number(request.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxMultipartBody) {
        reply.header('connection', 'close');
        throw errors.tooLarge(maxMultipartBody);
      }
      let head: Awaited<ReturnType<typeof readMultipartHead>>;
      try {
        head = await readMultipartHead(request.raw, boundary, maxMultipartBody);
      } catch (err) {
        if (err instanceof MultipartError) {
          if (err.kind === 'too_large') {
            reply.header('connection', 'close');
            throw errors.tooLarge(maxMultipartBody);
          }
          if (err.kind === 'no_model') throw errors.missingModel();
          throw new GatewayError(400, err.message, { code: 'invalid_multipart' });
        }
        throw err;
      }
      const { candidates } = candidatesFor(request, head.model);
      const raw = request.raw;
      const declaredLength = Number.isFinite(declared) && declared > 0 ? declared : undefined;
      // The rest of the body is read once, so only the first candidate can be tried unless it was all read.
      const complete = raw.readableEnded;
      await proxy(deps, request, reply, {
        endpoint,
        model: head.model,
        candidates,
        replayable: complete,
        contentType: ctype,
        hideUsage: false,
        body: (c) => {
          const prefix = rewriteModel(head, c.model.upstreamId);
          const length =
            declaredLength === undefined ? undefined : declaredLength + prefix.length - head.prefix.length;
          if (complete) return { data: prefix, length: prefix.length };
          return {
            data: Readable.from(restOfBody(prefix, raw, maxMultipartBody - head.prefix.length)),
            length,
          };
        },
      });
    });
  }

  // --- UI and fallbacks ---
  const uiDir = opts.uiDir ? resolvePath(opts.uiDir) : undefined;
  if (uiDir && existsSync(uiDir)) {
    const { default: fastifyStatic } = await import('@fastify/static');
    await app.register(fastifyStatic, { root: uiDir, wildcard: false, index: ['index.html'] });
  } else {
    app.get('/', async (_request, reply) =>
      reply
        .type('text/plain; charset=utf-8')
        .send(
          'Plugboard gateway: an OpenAI-compatible API at /v1 (GET /v1/models lists the models).\n' +
            'Health: /healthz, /readyz. Metrics: /metrics. Connections: /api/connections.\n',
        ),
    );
  }
  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    if (uiDir && request.method === 'GET' && !path.startsWith('/v1') && !path.startsWith('/api/'))
      return reply.sendFile('index.html');
    throw errors.notFound(`${request.method} ${path}`);
  });

  // --- lifecycle ---
  let metricsServer: Server | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    unsubscribe();
    await app.close();
    await new Promise<void>((r) => (metricsServer ? metricsServer.close(() => r()) : r()));
    await pools.close();
    await opts.snapshots.stop?.();
    await opts.clientKeys?.stop?.();
  };

  return {
    app,
    metrics,
    routes: () => table,
    async listen(host, port) {
      await app.listen({ host, port });
      const addr = app.server.address();
      if (!addr || typeof addr === 'string') return String(addr);
      const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      return `http://${h}:${addr.port}`;
    },
    async listenMetrics(host, port) {
      metricsServer = createServer((req, res) => {
        if (req.url !== '/metrics') {
          res.writeHead(404).end();
          return;
        }
        void metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
        });
      });
      await new Promise<void>((r) => metricsServer?.listen(port, host, r));
      const addr = metricsServer.address();
      return typeof addr === 'object' && addr ? `http://${host}:${addr.port}` : String(addr);
    },
    async drain() {
      if (draining) return;
      draining = true;
      app.log.info({ inFlight: active.size, deadlineMs: drainTimeoutMs }, 'draining');
      const deadline = Date.now() + drainTimeoutMs;
      while (active.size > 0 && Date.now() < deadline) await sleep(Math.min(50, deadline - Date.now()));
      if (active.size > 0) {
        app.log.warn({ inFlight: active.size }, 'drain deadline reached; ending the remaining requests');
        for (const a of active) a.terminate();
        const until = Date.now() + 2000;
        while (active.size > 0 && Date.now() < until) await sleep(10);
      }
      await close();
    },
    close,
  };
}

function sendError(reply: FastifyReply, err: GatewayError): FastifyReply {
  return reply
    .code(err.status)
    .headers(err.headers)
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(err.toJSON()));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(1, ms)));

const SPLICE_USAGE = Buffer.from(',"stream_options":{"include_usage":true}');

/**
 * The body sent upstream. Untouched bytes when nothing changes; when the only change is asking for usage and the
 * client sent no stream_options, the field is spliced in before the closing brace; otherwise re-serialised.
 */
function upstreamBody(
  raw: Buffer,
  body: Record<string, unknown>,
  keys: string[],
  c: Candidate,
  model: string,
  injectUsage: boolean,
): Buffer {
  const drop = c.connection.dropParams;
  const dropping = drop.length > 0 && keys.some((k) => drop.includes(k));
  const inject = injectUsage && !drop.includes('stream_options');
  const renaming = c.model.upstreamId !== model;
  if (!dropping && !renaming && !inject) return raw;
  if (!dropping && !renaming && body.stream_options === undefined) {
    const end = raw.lastIndexOf(0x7d); // '}'
    if (end > 0) return Buffer.concat([raw.subarray(0, end), SPLICE_USAGE, raw.subarray(end)]);
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) if (!drop.includes(k)) out[k] = body[k];
  out.model = c.model.upstreamId;
  if (inject) {
    const so = body.stream_options;
    out.stream_options = { ...(so && typeof so === 'object' ? so : {}), include_usage: true };
  }
  return Buffer.from(JSON.stringify(out), 'utf8');
}

/** The routed prefix, then the rest of the upload as it arrives, bounded by the multipart limit. */
async function* restOfBody(
  prefix: Buffer,
  raw: NodeJS.ReadableStream,
  budget: number,
): AsyncGenerator<Buffer> {
  yield prefix;
  let n = 0;
  for await (const chunk of raw as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > budget) throw new GatewayError(413, 'body too large', { code: 'request_too_large' });
    yield chunk;
  }
}
