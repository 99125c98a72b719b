import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { authenticateClient, type ClientKeysSource } from './client-keys.ts';
import { GatewayError } from './errors.ts';
import type { GatewayMetrics } from './metrics.ts';
import { bodyUnread, noRelease, type RequestContext, respondWithError } from './request-context.ts';
import { isRefusal, parseRequestTarget, type RequestTarget } from './request-target.ts';
import type { Route, Router } from './routes.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

// A random prefix per process and a counter: unique across replicas and restarts, and much cheaper than a UUID.
const ID_PREFIX = randomBytes(8).toString('hex');
let sequence = 0;

/** The client's `x-request-id` when it is a sane token, else a fresh ID. */
export function requestIdOf(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : `${ID_PREFIX}-${(++sequence).toString(36)}`;
}

const CONTEXT = Symbol('plugboard.request');

/** The context the front door made for a request; undefined for a request that did not pass it. */
export function contextOf(req: IncomingMessage): RequestContext | undefined {
  return (req as IncomingMessage & { [CONTEXT]?: RequestContext })[CONTEXT];
}

export interface FrontDoorHandlers {
  /** A proxied JSON endpoint (src/gateway/json-endpoint.ts). */
  json(ctx: RequestContext): void;
  /** A proxied multipart endpoint (src/gateway/multipart-endpoint.ts). */
  multipart(ctx: RequestContext): void;
  /** Everything else: the fastify app, which finds the context with contextOf(). */
  app(req: IncomingMessage, res: ServerResponse): void;
}

export interface FrontDoorOptions {
  router: Router;
  /** When set, every route that is not public needs `Authorization: Bearer <client key>`. */
  clientKeys?: ClientKeysSource;
  /**
   * When set, the `Host` header must name one of these (or be an IP address), else 403: a web page that points
   * its own name at the gateway's address (DNS rebinding) cannot read the answers. A browser's `Origin` must
   * then be the gateway's own (403 `cross_origin`): a page elsewhere cannot post to it. Standalone mode sets it.
   */
  allowedHosts?: readonly string[];
  log: FastifyBaseLogger;
  metrics: GatewayMetrics;
  /** True once the gateway is closing: new requests get 503. */
  closing(): boolean;
  /** True while the gateway drains: every response ends its connection (`Connection: close`). */
  draining(): boolean;
  handlers: FrontDoorHandlers;
}

/**
 * Every request enters here, once: the target is read (request-target.ts), the route found in the one table
 * (routes.ts), the client authenticated unless the route is public, and only then is the request handed to
 * the part that serves it, with a RequestContext that carries those decisions. Nothing downstream reads the raw
 * target again: fastify receives the route's own path as `req.url`.
 */
export function frontDoor(o: FrontDoorOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const hosts = o.allowedHosts ? new Set(o.allowedHosts.map((h) => h.toLowerCase())) : undefined;
  const contextFor = (
    req: IncomingMessage,
    res: ServerResponse,
    target: RequestTarget,
    started: number,
    match?: { route: Route; param?: string },
  ): RequestContext => {
    const id = requestIdOf(req);
    return {
      req,
      res,
      id,
      log: o.log.child({ requestId: id }),
      target,
      route: match?.route,
      param: match?.param,
      clientKey: undefined,
      started,
      metrics: o.metrics,
      logged: false,
      release: noRelease,
    };
  };
  const refuse = (req: IncomingMessage, res: ServerResponse, target: RequestTarget, err: GatewayError) => {
    const ctx = contextFor(req, res, target, performance.now());
    if (bodyUnread(req)) res.setHeader('connection', 'close');
    respondWithError(ctx, err);
  };

  return (req, res) => {
    const started = performance.now();
    if (o.draining()) res.setHeader('connection', 'close');
    const parsed = parseRequestTarget(req.url);
    if (isRefusal(parsed))
      return refuse(
        req,
        res,
        UNREADABLE,
        new GatewayError(400, `Invalid request target: ${parsed.reason}.`, {
          code: 'invalid_request_target',
        }),
      );
    const target = parsed;
    if (o.closing())
      return refuse(
        req,
        res,
        target,
        new GatewayError(503, 'The gateway is shutting down; retry.', {
          type: 'server_error',
          code: 'draining',
          headers: { connection: 'close' },
        }),
      );
    if (hosts && !sameOrigin(req.headers.origin, req.headers.host))
      return refuse(
        req,
        res,
        target,
        new GatewayError(
          403,
          'The request comes from a web page of another origin; the gateway serves only its own pages.',
          { type: 'permission_error', code: 'cross_origin' },
        ),
      );
    if (hosts && !hostAllowed(req.headers.host, hosts))
      return refuse(
        req,
        res,
        target,
        new GatewayError(
          403,
          'The Host header names a host this gateway does not serve; add it with --allowed-hosts if it is yours.',
          { type: 'permission_error', code: 'host_not_allowed' },
        ),
      );
    const m = o.router.match(req.method ?? '', target);
    if (m.kind === 'ambiguous')
      return refuse(
        req,
        res,
        target,
        new GatewayError(400, 'Invalid request target: an encoded "/" is accepted only inside a model ID.', {
          code: 'invalid_request_target',
        }),
      );
    if (m.kind === 'method')
      return refuse(
        req,
        res,
        target,
        new GatewayError(405, `${req.method} is not allowed on ${target.path}; use ${m.allow.join(', ')}.`, {
          code: 'method_not_allowed',
          headers: { allow: m.allow.join(', ') },
        }),
      );
    if (m.kind === 'none') return refuse(req, res, target, notFound(req.method ?? '', target));

    const ctx = contextFor(req, res, target, started, m);
    if (m.route.access !== 'public' && o.clientKeys) {
      try {
        ctx.clientKey = authenticateClient(o.clientKeys, req.headers.authorization);
      } catch (err) {
        if (bodyUnread(req)) res.setHeader('connection', 'close');
        return respondWithError(ctx, err as GatewayError);
      }
    }
    switch (m.route.serve) {
      case 'json':
        return o.handlers.json(ctx);
      case 'multipart':
        return o.handlers.multipart(ctx);
      default:
        (req as IncomingMessage & { [CONTEXT]?: RequestContext })[CONTEXT] = ctx;
        // fastify routes by the route's own path (the UI by the canonical one): it cannot read the target differently.
        req.url = m.route.path === '/*' ? target.path : m.route.path;
        return o.handlers.app(req, res);
    }
  };
}

/** The target of a request whose target could not be read: logs and metrics name no path. */
const UNREADABLE: RequestTarget = Object.freeze({ path: '(invalid)', segments: [], encodedSlash: false });

/**
 * The first segments of OpenAI API paths: what a client sends when its base URL lacks `/v1`
 * (`{base}/models`, `{base}/chat/completions`, ...). Such a request gets a 404 that says so, never the UI's page.
 */
export const API_HEADS: ReadonlySet<string> = new Set([
  'models',
  'chat',
  'completions',
  'embeddings',
  'audio',
  'images',
  'responses',
  'moderations',
  'files',
  'batches',
]);

export function notFound(method: string, target: RequestTarget): GatewayError {
  const hint = API_HEADS.has(target.segments[0] ?? '')
    ? ` The OpenAI API is under /v1: set the client's base URL to end in /v1 (…/v1${target.path}).`
    : '';
  return new GatewayError(404, `Unknown path: ${method} ${truncatePath(target.path)}.${hint}`, {
    code: 'unknown_url',
  });
}

function truncatePath(p: string): string {
  return p.length > 200 ? `${p.slice(0, 200)}…` : p;
}

/**
 * Whether a browser's `Origin` (absent on requests a browser did not make, and on its navigations) is the
 * gateway's own. A page elsewhere can post a multipart form (or fetch in no-cors mode) without a preflight,
 * which would drive the multipart endpoints of a gateway that needs no key; `Origin: null` (a sandboxed frame,
 * a file) is another origin too.
 */
function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  if (!host) return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

/** The Host header's name (no port, no brackets), lower-cased; undefined when absent or malformed. */
function hostAllowed(header: string | undefined, hosts: Set<string>): boolean {
  if (!header) return false;
  let name = header.trim().toLowerCase();
  if (name.startsWith('[')) {
    const end = name.indexOf(']');
    if (end < 0) return false;
    name = name.slice(1, end);
  } else {
    const colon = name.lastIndexOf(':');
    if (colon >= 0) name = name.slice(0, colon);
  }
  if (name.endsWith('.')) name = name.slice(0, -1);
  // An address cannot be rebound: a page that sends it was loaded from that address.
  return isIP(name) !== 0 || hosts.has(name);
}
