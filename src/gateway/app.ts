import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { resolve as resolvePath } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import type { DestinationStream } from 'pino';
import { BodyBudget } from './body.ts';
import type { ClientKeysSource } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { followClientKeys, followSnapshots } from './follow.ts';
import { contextOf, frontDoor, requestIdOf } from './front-door.ts';
import { InFlightRequests } from './in-flight.ts';
import { type JsonEndpointDeps, jsonHandler } from './json-endpoint.ts';
import { GatewayMetrics } from './metrics.ts';
import { multipartHandler } from './multipart-endpoint.ts';
import {
  type GatewayState,
  healthPlugin,
  metricsPlugin,
  modelsPlugin,
  openApiPlugin,
  uiPlugin,
} from './plugins.ts';
import { accessLine } from './request-context.ts';
import { ROUTES, Router } from './routes.ts';
import { Balancer, compileRoutes, connectionKey, type HealthOptions, type RouteTable } from './routing.ts';
import { createGatewayServer } from './server.ts';
import type { SnapshotSource } from './snapshot-source.ts';
import { Pools } from './upstream.ts';

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
  /** Bytes of request bodies held at once, across requests (see body.ts). Default: half the V8 heap limit. */
  bodyBudget?: number;
  /** Longest silence while a request body arrives (then 408). Default 30 s. */
  bodyIdleTimeoutMs?: number;
  /** Time to receive a request's headers (then 408; slowloris). Default 30 s. */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, body included (then 408). Default 5 min. */
  requestTimeoutMs?: number;
  /** Concurrent client connections; more are closed at once. Default 4096. */
  maxConnections?: number;
  /**
   * Names the `Host` header may carry (IP addresses are always accepted); others get 403 (DNS rebinding).
   * Unset: any host (a gateway behind a Service or Ingress is reached by many names). Standalone sets it.
   */
  allowedHosts?: readonly string[];
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

export { JSON_ENDPOINTS, MULTIPART_ENDPOINTS } from './upstream.ts';

export async function buildGateway(opts: GatewayOptions): Promise<Gateway> {
  const maxJsonBody = opts.maxJsonBody ?? 8 * 1024 * 1024;
  const maxMultipartBody = opts.maxMultipartBody ?? 25 * 1024 * 1024;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
  const metrics = new GatewayMetrics({ defaultMetrics: opts.defaultMetrics });
  const balancer = new Balancer(opts.health);
  const pools = new Pools({ ca: opts.upstreamCa });
  const active = new InFlightRequests();
  const budget = new BodyBudget(opts.bodyBudget, Math.max(maxJsonBody, maxMultipartBody));
  metrics.watchBudget(budget);
  const bodyIdleMs = opts.bodyIdleTimeoutMs ?? 30_000;
  let table: RouteTable | undefined;
  const deps: JsonEndpointDeps = { balancer, pools, metrics, active, table: () => table };
  const uiDir = opts.uiDir ? resolvePath(opts.uiDir) : undefined;
  const ui = uiDir !== undefined && existsSync(uiDir);
  // Set once fastify exists: the front door needs fastify's logger and handler, fastify needs the server.
  let door: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let draining = false;
  let appHandler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
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
    // one access line per request, written by accessLine() (request-context.ts)
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    bodyLimit: maxJsonBody,
    genReqId: (req) => contextOf(req)?.id ?? requestIdOf(req),
    // Every request enters through the front door (front-door.ts), which hands fastify only what it serves.
    serverFactory: (handler) => {
      appHandler = handler;
      return createGatewayServer((req, res) => door?.(req, res), { ...opts, metrics });
    },
    return503OnClosing: true,
    routerOptions: { maxParamLength: 1000 },
  });
  // No route may exist outside the one table: a fastify route the front door does not know could never be
  // authenticated. Checked as each route is added; the UI plugin's file routes are the UI route's.
  let addingUiFiles = false;
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    for (const method of methods) {
      if (method === 'HEAD' || (addingUiFiles && method === 'GET')) continue;
      if (!ROUTES.some((x) => x.serve === 'app' && x.method === method && x.path === r.url))
        throw new Error(`gateway route ${method} ${r.url} is not in the route table (src/gateway/routes.ts)`);
    }
  });

  door = frontDoor({
    router: new Router(ROUTES, { ui }),
    clientKeys: opts.clientKeys,
    allowedHosts: opts.allowedHosts,
    log: app.log,
    metrics,
    closing: () => closed,
    draining: () => draining,
    handlers: {
      json: jsonHandler(deps, { max: maxJsonBody, idleMs: bodyIdleMs, budget }),
      multipart: multipartHandler(deps, { max: maxMultipartBody, idleMs: bodyIdleMs, budget }),
      app: (req, res) => appHandler?.(req, res),
    },
  });

  // --- sources: a new snapshot becomes the routing table ---
  const unsubscribe = followSnapshots(opts.snapshots, {
    metrics,
    log: app.log,
    generation: () => table?.generation,
    use: (snapshot) => {
      table = compileRoutes(snapshot);
      balancer.retain(new Set(snapshot.connections.map(connectionKey)));
      return { models: table.models.length };
    },
  });
  const unsubscribeKeys = opts.clientKeys && followClientKeys(opts.clientKeys, { metrics, log: app.log });

  // No route fastify serves takes a body; a body sent anyway is read and ignored.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  // --- errors: always OpenAI-shaped ---
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    const e =
      err instanceof GatewayError
        ? err
        : new GatewayError(
            err.statusCode && err.statusCode >= 400 ? err.statusCode : 500,
            err.statusCode && err.statusCode < 500 ? err.message : 'Internal gateway error.',
            { code: err.code ?? null },
          );
    if (e.status >= 500 && !(err instanceof GatewayError)) request.log.error({ err }, 'request failed');
    const ctx = contextOf(request.raw);
    metrics.answered(ctx?.route?.path ?? 'none', e.status, e.code);
    return sendError(reply, e);
  });

  // --- the front door's decisions, for fastify's routes ---
  // Callback-style hooks: they run on every request, and an async hook costs a promise each time.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    // Deny by default: a request that did not come through the front door (app.inject()) is not served.
    if (!contextOf(request.raw))
      return done(
        new GatewayError(400, 'The request did not come through the gateway.', { code: 'no_route' }),
      );
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const ctx = contextOf(request.raw);
    if (ctx) accessLine(ctx, reply.statusCode);
    done();
  });
  // --- what fastify serves, one plugin per concern (plugins.ts) ---
  const state: GatewayState = {
    table: () => table,
    draining: () => draining,
    snapshots: opts.snapshots,
    clientKeys: opts.clientKeys,
    metrics,
  };
  await healthPlugin(app, state);
  await metricsPlugin(app, state);
  await openApiPlugin(app, { maxJsonBody, maxMultipartBody, clientKeys: opts.clientKeys !== undefined });
  await modelsPlugin(app, state);
  addingUiFiles = ui;
  await uiPlugin(app, { uiDir: ui ? uiDir : undefined });
  await app.after();
  addingUiFiles = false;

  // --- lifecycle ---
  let metricsServer: Server | undefined;
  const close = async () => {
    if (closed) return;
    closed = true;
    unsubscribe();
    unsubscribeKeys?.();
    await app.close();
    await new Promise<void>((r) => (metricsServer ? metricsServer.close(() => r()) : r()));
    await pools.close();
    await opts.snapshots.stop();
    await opts.clientKeys?.stop();
  };

  return {
    app,
    metrics,
    routes: () => table,
    async listen(host, port) {
      // Building the gateway starts nothing; listening starts following its sources first.
      await Promise.all([opts.snapshots.start(), opts.clientKeys?.start()]);
      await app.listen({ host, port });
      const addr = app.server.address();
      if (!addr || typeof addr === 'string') return String(addr);
      const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      return `http://${h}:${addr.port}`;
    },
    async listenMetrics(host, port) {
      metricsServer = createServer((req, res) => {
        if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
          res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
          res.end(JSON.stringify(errors.notFound('(this listener serves GET /metrics only)').toJSON()));
          return;
        }
        void metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
        });
      });
      metricsServer.headersTimeout = 10_000;
      metricsServer.requestTimeout = 30_000;
      await new Promise<void>((r) => metricsServer?.listen(port, host, r));
      const addr = metricsServer.address();
      return typeof addr === 'object' && addr ? `http://${host}:${addr.port}` : String(addr);
    },
    async drain() {
      if (draining) return;
      draining = true;
      app.log.info({ inFlight: active.size, deadlineMs: drainTimeoutMs }, 'draining');
      // Keep-alive connections end now rather than when the process exits, where a client's next request on
      // one would meet a reset: idle ones are closed at once (and as they fall idle), busy ones after their
      // response, which says `Connection: close` (front-door.ts).
      app.server.closeIdleConnections();
      const deadline = Date.now() + drainTimeoutMs;
      let lastSweep = Date.now();
      while (active.size > 0 && Date.now() < deadline) {
        await sleep(Math.min(50, deadline - Date.now()));
        if (Date.now() - lastSweep >= 1000) {
          app.server.closeIdleConnections();
          lastSweep = Date.now();
        }
      }
      if (active.size > 0) {
        app.log.warn({ inFlight: active.size }, 'drain deadline reached; ending the remaining requests');
        active.terminateAll();
        const until = Date.now() + 2000;
        while (active.size > 0 && Date.now() < until) await sleep(10);
      }
      // A request still receiving its body is not in flight, and closing waits for its connection: one that
      // trickles in would hold the process until the request timeout. The deadline ends every connection.
      const force = setTimeout(() => app.server.closeAllConnections(), Math.max(0, deadline - Date.now()));
      try {
        await close();
      } finally {
        clearTimeout(force);
      }
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
