import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { publicConnections } from '../snapshot/public-view.ts';
import { allows, type ClientKey, type ClientKeysSource } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { API_HEADS, contextOf, notFound } from './front-door.ts';
import { requireTable } from './json-endpoint.ts';
import type { GatewayMetrics } from './metrics.ts';
import { openApiDocument } from './openapi.ts';
import type { RouteTable } from './routing.ts';
import type { SnapshotSource } from './snapshot-source.ts';

/**
 * The routes fastify serves, one plugin per concern; every one of them is a row of the route table
 * (routes.ts), and the front door has already read the target and authenticated the client, whose key a handler
 * finds with contextOf(). The proxied endpoints are not here: they are served from node:http
 * (json-endpoint.ts, multipart-endpoint.ts).
 */
export interface GatewayState {
  table(): RouteTable | undefined;
  draining(): boolean;
  snapshots: SnapshotSource;
  clientKeys?: ClientKeysSource;
  metrics: GatewayMetrics;
}

const keyOf = (request: { raw: IncomingMessage }): ClientKey | undefined => contextOf(request.raw)?.clientKey;

/** `/healthz` (the process answers) and `/readyz` (it has a snapshot and its keys, and is not draining). */
export async function healthPlugin(app: FastifyInstance, s: GatewayState): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const table = s.table();
    const draining = s.draining();
    const st = s.snapshots.status();
    const keys = s.clientKeys?.status();
    // Revoked keys keep the gateway ready: its 401s say why, where a pod out of the Service would refuse silently.
    const keysLoaded = keys?.state !== 'loading';
    const ready = !draining && table !== undefined && keysLoaded;
    return reply.code(ready ? 200 : 503).send({
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
      ...(keys ? { clientKeys: keys } : {}),
    });
  });
}

/**
 * `/metrics` on the API port (a client key needed when keys are configured; the metrics listener has none). Its
 * labels name every model and connection, so a key limited to some models may not read it (403).
 */
export async function metricsPlugin(app: FastifyInstance, s: GatewayState): Promise<void> {
  app.get('/metrics', async (request, reply) => {
    if (keyOf(request)?.models)
      throw new GatewayError(
        403,
        'A key limited to some models cannot read /metrics, which names every model; use a key without models, or the metrics listener (--metrics-listen).',
        { type: 'permission_error', code: 'scoped_key' },
      );
    reply.header('content-type', s.metrics.registry.contentType);
    return s.metrics.registry.metrics();
  });
}

/** `/openapi.json`: the API's description, serialised once. */
export async function openApiPlugin(
  app: FastifyInstance,
  o: { maxJsonBody: number; maxMultipartBody: number; clientKeys: boolean },
): Promise<void> {
  const doc = JSON.stringify(openApiDocument(o));
  app.get('/openapi.json', async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(doc),
  );
}

/**
 * `/v1/models`, `/v1/models/{model}` and `/api/connections`: what the routing table offers, as a client key's
 * scope lets it see (a scoped key sees the models it may use, and only the connections that serve them).
 */
export async function modelsPlugin(app: FastifyInstance, s: GatewayState): Promise<void> {
  app.get('/v1/models', async (request, reply) => {
    const t = requireTable(s.table());
    reply.header('content-type', 'application/json; charset=utf-8');
    const key = keyOf(request);
    if (!key?.models) return t.modelsJson;
    return JSON.stringify({ object: 'list', data: t.models.filter((m) => allows(key, m.id)) });
  });
  app.get('/v1/models/{model}', async (request) => {
    const t = requireTable(s.table());
    const id = contextOf(request.raw)?.param ?? '';
    // The table first: only IDs from it are matched against the key's scope (a backtracking glob).
    const entry = t.models.find((m) => m.id === id);
    if (!entry || !allows(keyOf(request), id)) throw errors.modelNotFound(id);
    return entry;
  });
  app.get('/api/connections', async (request) => {
    const key = keyOf(request);
    return publicConnections(
      requireTable(s.table()).snapshot,
      key?.models ? (id) => allows(key, id) : undefined,
    );
  });
}

/** A browser navigation: no credentials, HTML accepted, not an API path. */
function wantsPage(req: IncomingMessage, head: string | undefined): boolean {
  if (req.headers.authorization) return false;
  if (head !== undefined && API_HEADS.has(head)) return false;
  return (req.headers.accept ?? '').includes('text/html');
}

/**
 * `/`: the chat UI's files when there is a built UI (with index.html for browser navigations to any other page),
 * else a short text page. Everything not found is an OpenAI-shaped 404.
 */
export async function uiPlugin(app: FastifyInstance, o: { uiDir: string | undefined }): Promise<void> {
  if (o.uiDir) {
    const { default: fastifyStatic } = await import('@fastify/static');
    await app.register(fastifyStatic, { root: o.uiDir, wildcard: false, index: ['index.html'] });
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
  const ui = o.uiDir !== undefined;
  app.setNotFoundHandler(async (request, reply) => {
    const target = contextOf(request.raw)?.target ?? { path: '/', segments: [], encodedSlash: false };
    // The UI's pages are for browsers: an API client whose base URL lacks /v1 gets JSON that says so.
    if (ui && request.method === 'GET' && wantsPage(request.raw, target.segments[0]))
      return reply.sendFile('index.html');
    throw notFound(request.method, target);
  });
}
