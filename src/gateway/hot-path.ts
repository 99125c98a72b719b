import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import { authenticateClient, type ClientKeysSource } from './client-keys.ts';
import { errors, GatewayError } from './errors.ts';
import { type JsonEndpointDeps, respondWithError, serveJson } from './json-endpoint.ts';
import type { RequestContext } from './proxy.ts';
import { type Endpoint, JSON_ENDPOINTS } from './upstream.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

// A random prefix per process and a counter: unique across replicas and restarts, and much cheaper than a UUID.
const ID_PREFIX = randomBytes(8).toString('hex');
let sequence = 0;

/** The client's `x-request-id` when it is a sane token, else a fresh ID. */
export function requestIdOf(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : `${ID_PREFIX}-${(++sequence).toString(36)}`;
}

export interface HotPathOptions {
  deps: JsonEndpointDeps;
  clientKeys?: ClientKeysSource;
  maxJsonBody: number;
  log: FastifyBaseLogger;
  /** True once the gateway is closing: fastify then answers 503 to new requests. */
  closing(): boolean;
}

/**
 * The data plane's hot path: `POST /v1/<JSON endpoint>` served straight from node:http. Fastify's request
 * pipeline (hooks, content-type parsers, reply objects) was about a sixth of the gateway's CPU on a proxied chat
 * completion (16% of a profile; 1.6% with this path); these routes need none of it. The handler returns false for
 * every other request, which fastify serves. The same routes are registered with fastify too (for inject() and
 * the rare request this declines), and both paths end in serveJson, so they answer alike.
 */
export function hotPath(o: HotPathOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const routes = new Map<string, Endpoint>();
  for (const e of JSON_ENDPOINTS) {
    routes.set(`/v1/${e}`, e);
    routes.set(`/v1/${e}/`, e);
  }
  const noop = () => undefined;

  return (req, res) => {
    if (req.method !== 'POST' || o.closing()) return false;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const endpoint = routes.get(q < 0 ? url : url.slice(0, q));
    if (!endpoint) return false;

    const id = requestIdOf(req);
    const ctx: RequestContext = {
      req,
      res,
      id,
      log: o.log.child({ requestId: id }),
      clientKey: undefined,
      started: performance.now(),
      logged: noop,
    };
    if (o.clientKeys) {
      try {
        ctx.clientKey = authenticateClient(o.clientKeys, req.headers.authorization);
      } catch (err) {
        return fail(ctx, err as GatewayError);
      }
    }
    const declared = Number(req.headers['content-length']);
    if (declared > o.maxJsonBody) return fail(ctx, errors.tooLarge(o.maxJsonBody), true);

    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > o.maxJsonBody) {
        refused = true;
        fail(ctx, errors.tooLarge(o.maxJsonBody), true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', noop); // the client went away while sending: nothing to answer
    req.on('end', () => {
      if (refused) return;
      const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
      serveJson(o.deps, ctx, endpoint, body).catch((err: unknown) => {
        ctx.log.error({ err }, 'request failed');
        fail(ctx, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
      });
    });
    return true;
  };
}

/** Answers an error; `close` ends the connection too, so an unread oversized body is not drained. */
function fail(ctx: RequestContext, err: GatewayError, close = false): true {
  if (close) ctx.res.setHeader('connection', 'close');
  respondWithError(ctx, err);
  return true;
}
