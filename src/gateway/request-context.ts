import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { ClientKey } from './client-keys.ts';
import { type GatewayError, truncate } from './errors.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { RequestTarget } from './request-target.ts';
import type { Route } from './routes.ts';

/**
 * One client request, made by the front door (src/gateway/front-door.ts) once the target was read, the route
 * found and the client authenticated. Every part that answers the request reads it from here.
 */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  id: string;
  /** Carries the request ID in every line. */
  log: FastifyBaseLogger;
  /** The canonical target: the only reading of the path (request-target.ts). */
  target: RequestTarget;
  /** Undefined when the request was refused before a route matched. */
  route: Route | undefined;
  /** The route's rest parameter, decoded (a model ID). */
  param?: string;
  clientKey: ClientKey | undefined;
  /** performance.now() when the request arrived. */
  started: number;
  metrics: GatewayMetrics;
  /** Set once the access line is written, so no second one is. */
  logged: boolean;
  /** Gives back what the request holds (its body's share of the buffer budget); idempotent. */
  release: () => void;
}

const NOOP = () => undefined;
/** Probes and scrapes: logged at debug, or they would drown the access log. */
const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

export { NOOP as noRelease };

/**
 * Whether the request declared a body that has not been read: an answer that refuses it also ends the
 * connection, so the rest is not read (node:http would drain it to reuse the connection).
 */
export function bodyUnread(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** The path a log line or error names: the canonical one, never the raw target or the query string. */
export function pathOf(ctx: RequestContext): string {
  return ctx.target.path;
}

export function writeError(res: ServerResponse, requestId: string, err: GatewayError): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(err.status, {
    'content-type': 'application/json; charset=utf-8',
    'x-request-id': requestId,
    ...err.headers,
  });
  res.end(JSON.stringify(err.toJSON()));
}

/**
 * Answers with an OpenAI-shaped error the gateway decided itself (not an upstream's), counts it by route and
 * code, and writes the access line.
 */
export function respondWithError(ctx: RequestContext, err: GatewayError): void {
  ctx.release();
  writeError(ctx.res, ctx.id, err);
  ctx.metrics.answered(ctx.route?.path ?? 'none', err.status, err.code);
  accessLine(ctx, err.status);
}

/**
 * Longest path an access line quotes. A target may be 8 KiB, and a client that pipelines requests without
 * reading the answers makes lines faster than stdout takes them: the log's buffer, not the request, would hold
 * the bytes.
 */
const MAX_LOGGED_PATH = 256;

/** The one access line of a request (the proxy adds connection, model, tokens through `extra`). */
export function accessLine(ctx: RequestContext, status: number, extra?: Record<string, unknown>): void {
  if (ctx.logged) return;
  ctx.logged = true;
  const quiet = status < 400 && ctx.route !== undefined && QUIET.has(ctx.route.path);
  ctx.log[quiet ? 'debug' : 'info'](
    {
      method: ctx.req.method,
      path: truncate(ctx.target.path, MAX_LOGGED_PATH),
      ...(ctx.route ? { route: ctx.route.path } : {}),
      status,
      ms: Math.round(performance.now() - ctx.started),
      ...(ctx.clientKey ? { clientKey: ctx.clientKey.name } : {}),
      ...extra,
    },
    'request completed',
  );
}
