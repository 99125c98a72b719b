import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
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
import { allows, authenticateClient, type ClientKey, type ClientKeysSource } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { hotPath, requestIdOf } from './hot-path.ts';
import { InFlightRequests } from './in-flight.ts';
import { candidatesFor, type JsonEndpointDeps, requireTable, serveJson } from './json-endpoint.ts';
import { GatewayMetrics } from './metrics.ts';
import { boundaryOf, MultipartError, readMultipartHead, rewriteModel } from './multipart.ts';
import { openApiDocument } from './openapi.ts';
import { proxy, type RequestContext } from './proxy.ts';
import { Balancer, compileRoutes, connectionKey, type HealthOptions, type RouteTable } from './routing.ts';
import type { SnapshotSource } from './snapshot-source.ts';
import { JSON_ENDPOINTS, MULTIPART_ENDPOINTS, Pools } from './upstream.ts';

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

export { JSON_ENDPOINTS, MULTIPART_ENDPOINTS } from './upstream.ts';

const KEEP_ALIVE_MS = 72_000;

export async function buildGateway(opts: GatewayOptions): Promise<Gateway> {
  const maxJsonBody = opts.maxJsonBody ?? 8 * 1024 * 1024;
  const maxMultipartBody = opts.maxMultipartBody ?? 25 * 1024 * 1024;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
  const metrics = new GatewayMetrics({ defaultMetrics: opts.defaultMetrics });
  const balancer = new Balancer(opts.health);
  const pools = new Pools({ ca: opts.upstreamCa });
  const active = new InFlightRequests();
  let table: RouteTable | undefined;
  const deps: JsonEndpointDeps = { balancer, pools, metrics, active, table: () => table };
  // Set once the server is built: the hot path needs fastify's logger, fastify needs the server.
  let hot: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  let closed = false;

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
    genReqId: requestIdOf,
    // The JSON endpoints are served by the hot path before fastify sees them (see hot-path.ts).
    serverFactory: (handler) => {
      const server = createServer((req, res) => {
        if (!hot?.(req, res)) handler(req, res);
      });
      // what fastify sets on a server it creates itself
      server.keepAliveTimeout = KEEP_ALIVE_MS;
      server.requestTimeout = 0;
      return server;
    },
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

  hot = hotPath({
    deps,
    clientKeys: opts.clientKeys,
    maxJsonBody,
    log: app.log,
    closing: () => closed,
  });

  // --- snapshot → routing table ---
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
    try {
      request.clientKey = authenticateClient(opts.clientKeys, request.headers.authorization);
    } catch (err) {
      return done(err as GatewayError);
    }
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
  app.get('/v1/models', async (request, reply) => {
    const t = requireTable(table);
    reply.header('content-type', 'application/json; charset=utf-8');
    const key = request.clientKey;
    if (!key?.models) return t.modelsJson;
    return JSON.stringify({ object: 'list', data: t.models.filter((m) => allows(key, m.id)) });
  });
  app.get('/v1/models/*', async (request) => {
    const t = requireTable(table);
    const id = (request.params as { '*': string })['*'];
    const entry = allows(request.clientKey, id) ? t.models.find((m) => m.id === id) : undefined;
    if (!entry) throw errors.modelNotFound(id);
    return entry;
  });
  app.get('/api/connections', async () => publicConnections(requireTable(table).snapshot));

  // --- proxied endpoints ---
  const contextOf = (request: FastifyRequest, reply: FastifyReply): RequestContext => {
    reply.hijack();
    return {
      req: request.raw,
      res: reply.raw,
      id: request.id,
      log: request.log,
      clientKey: request.clientKey,
      started: performance.now(),
      logged: () => {
        request.accessLogged = true;
      },
    };
  };

  for (const endpoint of JSON_ENDPOINTS) {
    app.post(`/v1/${endpoint}`, (request, reply) =>
      serveJson(deps, contextOf(request, reply), endpoint, request.body as Buffer | undefined),
    );
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
      const candidates = candidatesFor(table, request.clientKey, head.model);
      const raw = request.raw;
      const declaredLength = Number.isFinite(declared) && declared > 0 ? declared : undefined;
      // The rest of the body is read once, so only the first candidate can be tried unless it was all read.
      const complete = raw.readableEnded;
      await proxy(deps, contextOf(request, reply), {
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
        active.terminateAll();
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
