import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { isBlockedAddressError } from '../net/address-policy.ts';
import { redactKey, upstreamErrorMessage } from '../providers/upstream-errors.ts';
import type { ClientKey } from './client-keys.ts';
import { GatewayError } from './errors.ts';
import { Exchange } from './exchange.ts';
import type { InFlightRequests } from './in-flight.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { Balancer, Candidate } from './routing.ts';
import { SseUsageTap, sseErrorEvent, type Usage, usageFromJsonTail } from './sse.ts';
import { type Endpoint, type Pools, upstreamTarget } from './upstream.ts';

/** What the proxy needs from the gateway; one instance per gateway. */
export interface ProxyDeps {
  balancer: Balancer;
  pools: Pools;
  metrics: GatewayMetrics;
  /** Requests in progress, so drain can finish or terminate them. */
  active: InFlightRequests;
}

/**
 * One client request, whichever server path received it: fastify's routes or the hot path that serves the JSON
 * endpoints straight from node:http (src/gateway/hot-path.ts).
 */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  id: string;
  /** Carries the request ID in every line. */
  log: FastifyBaseLogger;
  clientKey: ClientKey | undefined;
  /** performance.now() when the request arrived. */
  started: number;
  /** Told once the proxy has written the request's access line, so no second one is written. */
  logged(): void;
}

export interface ProxyCall {
  endpoint: Endpoint;
  /** The model as the client named it (a snapshot ID, so safe as a metric label). */
  model: string;
  candidates: Candidate[];
  /** Request body for a candidate: a buffer (replayable, so failover is possible) or a one-shot stream. */
  body: (c: Candidate) => { data: Buffer | Readable; length?: number };
  replayable: boolean;
  contentType: string;
  /** Hide a usage-only SSE chunk the client did not ask for. */
  hideUsage: boolean;
}

type FailureReason =
  | 'blocked_address'
  | 'connect_error'
  | 'connect_timeout'
  | 'first_byte_timeout'
  | 'idle_timeout'
  | 'total_timeout'
  | 'reset'
  | 'status_5xx'
  | 'status_429';

class TotalTimeout extends Error {}
class ClientGone extends Error {}
class Terminated extends Error {}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
]);

function classify(err: unknown): FailureReason {
  if (err instanceof TotalTimeout) return 'total_timeout';
  if (isBlockedAddressError(err)) return 'blocked_address';
  const code = (err as { code?: string })?.code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect_timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'first_byte_timeout';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'idle_timeout';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'CERT_HAS_EXPIRED':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'connect_error';
    default:
      return 'reset';
  }
}

function describe(reason: FailureReason, err: unknown): string {
  switch (reason) {
    case 'blocked_address': {
      // The host and the rule, not the resolved address: clients need not learn the cluster's DNS answers.
      const e = isBlockedAddressError(err) ? err : undefined;
      return `is at an address the gateway's policy refuses (${e ? `${e.host}: ${e.rule}` : 'blocked'}); nothing was sent to it`;
    }
    case 'connect_error': {
      const code = (err as { code?: string })?.code;
      return `could not be reached (${code === 'ECONNREFUSED' ? 'connection refused' : (code ?? 'connect error')})`;
    }
    case 'connect_timeout':
      return 'did not accept a connection in time (connect timeout)';
    case 'first_byte_timeout':
      return 'did not answer in time (first-byte timeout)';
    case 'idle_timeout':
      return 'stopped sending in the middle of the response (idle timeout)';
    case 'total_timeout':
      return 'exceeded the total request timeout';
    case 'reset':
      return 'closed the connection unexpectedly';
    default:
      return 'failed';
  }
}

const isTimeout = (r: FailureReason) => r.endsWith('_timeout');

/** Replaces the connection's key wherever an upstream echoed it. */
function scrub(text: string, c: Candidate): string {
  return redactKey(text, c.connection.apiKey, '***');
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

function responseHeaders(
  h: IncomingHttpHeaders,
  requestId: string,
  sse: boolean,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    if (sse && k === 'content-length') continue;
    out[k] = v;
  }
  out['x-request-id'] = requestId;
  if (sse) {
    out['cache-control'] = 'no-cache';
    out['x-accel-buffering'] = 'no';
  }
  return out;
}

/**
 * Proxies one request: tries candidates in the balancer's order, failing over on connect errors, timeouts,
 * 5xx and 429 until a response starts reaching the client; then streams the response through as it arrives.
 * Writes the response and the access log line itself (fastify routes hijack their reply before calling it).
 */
export async function proxy(deps: ProxyDeps, ctx: RequestContext, call: ProxyCall): Promise<void> {
  const { balancer, pools, metrics } = deps;
  const { log, res, req } = ctx;
  const requestId = ctx.id;
  const started = ctx.started;

  let current: Exchange | undefined;
  let gone = false;
  let terminated = false;
  let sseStarted = false;
  const onClose = () => {
    if (!res.writableFinished) {
      gone = true;
      current?.abort(new ClientGone('client disconnected'));
    }
  };
  res.on('close', onClose);
  const inFlight = deps.active.add({
    terminate: () => {
      terminated = true;
      current?.abort(new Terminated('gateway shutting down'));
    },
  });
  metrics.inFlightAdd(call.endpoint, 1);

  let chosen: Candidate | undefined;
  let status = 0;
  let usage: Usage | undefined;
  let attempts = 0;
  let failure: string | undefined;

  try {
    const ordered = balancer.order(call.candidates);
    let response: Exchange | undefined;
    let lastError: GatewayError | undefined;
    let timer: NodeJS.Timeout | undefined;
    for (let i = 0; i < ordered.length; i++) {
      const cand = ordered[i] as Candidate;
      const last = i === ordered.length - 1 || !call.replayable;
      if (gone || terminated) break;
      attempts++;
      timer = setTimeout(
        () => current?.abort(new TotalTimeout('total timeout')),
        cand.connection.timeouts.totalMs,
      );
      balancer.acquire(cand.key);
      const target = upstreamTarget(cand.connection, call.endpoint, cand.model.upstreamId);
      const { data, length } = call.body(cand);
      const headers: Record<string, string> = {
        ...target.headers,
        'content-type': call.contentType,
        accept: req.headers.accept ?? '*/*',
        'accept-encoding': 'identity',
        'x-request-id': requestId,
      };
      if (length !== undefined) headers['content-length'] = String(length);
      const beta = req.headers['openai-beta'];
      if (typeof beta === 'string') headers['openai-beta'] = beta;
      try {
        const r = new Exchange(pools.get(cand.connection), {
          origin: target.origin,
          method: 'POST',
          path: target.path,
          headers,
          body: data,
        });
        current = r;
        await r.head;
        if (r.statusCode >= 500 || r.statusCode === 429) {
          const reason: FailureReason = r.statusCode === 429 ? 'status_429' : 'status_5xx';
          metrics.upstreamErrors.inc({ connection: cand.key, reason });
          const ra = Number(r.headers['retry-after']);
          balancer.failure(cand.key, Number.isFinite(ra) ? ra * 1000 : undefined);
          if (!last) {
            log.warn(
              { connection: cand.key, status: r.statusCode },
              'upstream failed; trying the next connection',
            );
            r.dump(64 * 1024);
            balancer.release(cand.key);
            clearTimeout(timer);
            continue;
          }
          if (r.statusCode >= 500) {
            const text = scrub(await r.text(16 * 1024), cand);
            const msg = upstreamErrorMessage(text);
            balancer.release(cand.key);
            clearTimeout(timer);
            chosen = cand;
            lastError = new GatewayError(
              502,
              `Upstream ${cand.key} failed with HTTP ${r.statusCode}${msg ? `: ${msg.slice(0, 300)}` : ''}`,
              { type: 'upstream_error', code: 'upstream_error' },
            );
            break;
          }
        } else {
          balancer.success(cand.key);
        }
        chosen = cand;
        response = r;
        break;
      } catch (err) {
        balancer.release(cand.key);
        clearTimeout(timer);
        if (gone || terminated) break;
        const reason = classify(err);
        metrics.upstreamErrors.inc({ connection: cand.key, reason });
        balancer.failure(cand.key);
        chosen = cand;
        lastError = new GatewayError(
          isTimeout(reason) ? 504 : 502,
          `Upstream ${cand.key} ${describe(reason, err)}.`,
          {
            type: 'upstream_error',
            code: isTimeout(reason)
              ? 'upstream_timeout'
              : reason === 'blocked_address'
                ? 'upstream_blocked'
                : 'upstream_unavailable',
          },
        );
        log.warn({ connection: cand.key, reason, err: (err as Error).message }, 'upstream request failed');
        if (last) break;
      }
    }

    if (!response || !chosen) {
      if (terminated && !gone) {
        status = 503;
        writeError(
          res,
          requestId,
          new GatewayError(503, 'The gateway is shutting down; retry.', { code: 'draining' }),
        );
      } else if (gone) {
        status = 499;
      } else {
        const e =
          lastError ??
          new GatewayError(502, 'No upstream could serve the request.', { code: 'upstream_error' });
        status = e.status;
        failure = e.message;
        writeError(res, requestId, e);
      }
      return;
    }

    // The response starts: from here on, no failover.
    const cand = chosen;
    status = response.statusCode;
    if (status >= 300 && status < 400) {
      // Never followed (SSRF) and never handed to the client, whose next hop it would become.
      response.dump();
      clearTimeout(timer);
      balancer.release(cand.key);
      const e = new GatewayError(
        502,
        `Upstream ${cand.key} answered with a redirect (HTTP ${status}), which the gateway never follows; check its URL.`,
        { type: 'upstream_error', code: 'upstream_redirect' },
      );
      status = e.status;
      failure = e.message;
      writeError(res, requestId, e);
      return;
    }
    if (status >= 400 && cand.connection.apiKey) {
      // Upstream errors pass through, but some providers echo the key in them: scrub before it leaves.
      const text = scrub(await response.text(64 * 1024), cand);
      clearTimeout(timer);
      balancer.release(cand.key);
      const headers = responseHeaders(response.headers, requestId, false);
      headers['content-length'] = String(Buffer.byteLength(text));
      res.writeHead(status, headers);
      res.end(text);
      return;
    }
    const ctype = String(response.headers['content-type'] ?? '');
    const sse = ctype.startsWith('text/event-stream');
    res.writeHead(status, responseHeaders(response.headers, requestId, sse));
    sseStarted = sse;
    const tap = sse ? new SseUsageTap({ hideUsage: call.hideUsage }) : undefined;
    const wantTail = !sse && status < 300 && ctype.includes('json');
    let tail: Buffer | undefined;
    let first = true;
    const upstream = response;
    const resume = () => upstream.resume();
    try {
      await upstream.pipe((chunk) => {
        if (first) {
          first = false;
          if (sse)
            metrics.ttft.observe(
              { connection: cand.key, model: call.model, endpoint: call.endpoint },
              (performance.now() - started) / 1000,
            );
        }
        const out = tap ? tap.push(chunk) : chunk;
        if (wantTail) tail = tail ? Buffer.concat([tail, chunk]).subarray(-4096) : chunk.subarray(-4096);
        if (out.length === 0 || res.write(out)) return true;
        res.once('drain', resume);
        return false;
      });
      if (tap) {
        const rest = tap.flush();
        if (rest.length) res.write(rest);
        usage = tap.usage;
      } else if (tail) {
        // Decode only from the usage field on (it is the last one OpenAI-compatible servers write).
        const at = tail.lastIndexOf('"usage"');
        if (at >= 0) usage = usageFromJsonTail(tail.toString('utf8', at));
      }
      res.end();
    } catch (err) {
      if (gone) {
        status = 499;
      } else {
        const reason: FailureReason | 'shutdown' = terminated ? 'shutdown' : classify(err);
        if (reason !== 'shutdown') {
          metrics.upstreamErrors.inc({ connection: cand.key, reason });
          balancer.failure(cand.key);
        }
        failure = reason === 'shutdown' ? 'gateway shutting down' : `upstream ${describe(reason, err)}`;
        log.warn({ connection: cand.key, reason }, 'response failed after the first byte');
        if (sse) {
          res.end(
            sseErrorEvent(
              reason === 'shutdown'
                ? 'The gateway is shutting down and ended this stream; retry.'
                : `Upstream ${cand.key} ${describe(reason, err)}.`,
              reason === 'shutdown' ? 'server_error' : 'upstream_error',
              reason === 'shutdown' ? 'draining' : isTimeout(reason) ? 'upstream_timeout' : 'upstream_error',
            ),
          );
        } else {
          res.destroy();
        }
      }
    } finally {
      clearTimeout(timer);
      balancer.release(cand.key);
    }
  } catch (err) {
    status = 500;
    failure = (err as Error).message;
    log.error({ err }, 'proxy failed');
    if (sseStarted) res.end();
    else
      writeError(res, requestId, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
  } finally {
    res.off('close', onClose);
    deps.active.remove(inFlight);
    metrics.inFlightAdd(call.endpoint, -1);
    const connection = chosen?.key ?? '';
    const seconds = (performance.now() - started) / 1000;
    metrics.record(chosen, {
      connection,
      model: call.model,
      endpoint: call.endpoint,
      status,
      seconds,
      promptTokens: chosen ? usage?.promptTokens : undefined,
      completionTokens: chosen ? usage?.completionTokens : undefined,
    });
    ctx.logged();
    log.info(
      {
        method: req.method,
        url: req.url,
        endpoint: call.endpoint,
        model: call.model,
        connection,
        status,
        attempts,
        ...(ctx.clientKey ? { clientKey: ctx.clientKey.name } : {}),
        ms: Math.round(seconds * 1000),
        ...(usage ? { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens } : {}),
        ...(failure ? { error: failure } : {}),
      },
      'request completed',
    );
  }
}
