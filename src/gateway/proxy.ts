import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { isBlockedAddressError } from '../net/address-policy.ts';
import { classifyNetworkError, errorCode } from '../net/errors.ts';
import { retryAfterMs } from '../net/retry-after.ts';
import { SecretScrubber, upstreamErrorMessage } from '../providers/upstream-errors.ts';
import { type SnapshotConnection, upstreamSecret } from '../snapshot/schema.ts';
import { GatewayError } from './errors.ts';
import { Exchange } from './exchange.ts';
import type { InFlightRequests } from './in-flight.ts';
import type { GatewayMetrics } from './metrics.ts';
import { ModelRewriter } from './model-rewrite.ts';
import { accessLine, type RequestContext, writeError } from './request-context.ts';
import { responseHeaders } from './response-headers.ts';
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

export type { RequestContext } from './request-context.ts';

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

/** The gateway's name for a network failure (the `reason` label of plugboard_gateway_upstream_errors_total). */
function classify(err: unknown): FailureReason {
  if (err instanceof TotalTimeout) return 'total_timeout';
  const f = classifyNetworkError(err);
  switch (f) {
    case 'blocked_address':
    case 'connect_timeout':
    case 'first_byte_timeout':
    case 'idle_timeout':
    case 'reset':
      return f;
    case 'timeout':
      return 'connect_timeout';
    default:
      // dns, refused, unreachable, tls: the upstream could not be reached
      return 'connect_error';
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
      const code = errorCode(err);
      return `could not be reached (${code === 'ECONNREFUSED' ? 'connection refused' : code || 'connect error'})`;
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

/** Longest upstream error body passed to the client (scrubbed first); a 5xx message quotes at most 300 chars. */
const ERROR_BODY_MAX = 64 * 1024;

const scrubbers = new WeakMap<SnapshotConnection, SecretScrubber>();

/** The scrubber of a connection's key or token (built once per snapshot connection); undefined without one. */
function scrubberOf(c: SnapshotConnection): SecretScrubber | undefined {
  let s = scrubbers.get(c);
  if (!s) {
    const secret = upstreamSecret(c)?.value;
    if (!secret) return undefined;
    s = new SecretScrubber(secret);
    scrubbers.set(c, s);
  }
  return s;
}

/**
 * How the reply's `model` members become the IDs the client knows (model-rewrite.ts); undefined when the exposed
 * ID is the upstream's and the connection has no prefix, which is the common case and costs nothing.
 */
function rewriterFor(c: Candidate): ModelRewriter | undefined {
  const { id, upstreamId } = c.model;
  const prefix = c.connection.modelPrefix;
  if (id === upstreamId && !prefix) return undefined;
  return new ModelRewriter((v) =>
    v === upstreamId ? id : prefix && !v.startsWith(`${prefix}.`) ? `${prefix}.${v}` : v,
  );
}

/**
 * Reads an upstream error body and removes the connection's key from it in every form, before it is cut to
 * `max` characters: the read reaches far enough past `max` that a key which starts before the cut is inside
 * what is scrubbed.
 */
async function scrubbedText(r: Exchange, c: Candidate, max: number): Promise<string> {
  const scrubber = scrubberOf(c.connection);
  const reach = scrubber ? scrubber.longest * 6 : 0; // a form written entirely in \u escapes is 6x longer
  const read = await r.bytes(max + reach);
  const { text, cut } = errorText(r.headers['content-encoding'], read.bytes, read.cut, max + reach);
  const clean = scrubber ? scrubber.scrub(text, cut) : text;
  return clean.length > max ? clean.slice(0, max) : clean;
}

/** Largest decoded error body: one that expands further (a compression bomb) is not read. */
const DECODED_MAX = 1024 * 1024;

/**
 * An error body as text, at most `max` bytes of it. An upstream may compress it although the gateway asks for
 * `identity`: it is decoded first (gzip, deflate, br), so that the scrubber reads what the client would, and
 * the client gets it decoded; a body that cannot be decoded is not passed on.
 */
function errorText(
  encoding: string | string[] | undefined,
  body: Buffer,
  cut: boolean,
  max: number,
): { text: string; cut: boolean } {
  const enc = String(encoding ?? '')
    .trim()
    .toLowerCase();
  let bytes = body;
  if (enc !== '' && enc !== 'identity') {
    // what arrived may be a prefix of the stream (the read stops at max): decode what it holds
    const zopts = { maxOutputLength: DECODED_MAX, finishFlush: zlib.constants.Z_SYNC_FLUSH };
    try {
      if (enc === 'gzip' || enc === 'x-gzip') bytes = zlib.gunzipSync(body, zopts);
      else if (enc === 'deflate') {
        try {
          bytes = zlib.inflateSync(body, zopts);
        } catch {
          bytes = zlib.inflateRawSync(body, zopts); // deflate without its zlib wrapper, as some servers send it
        }
      } else if (enc === 'br')
        bytes = zlib.brotliDecompressSync(body, {
          maxOutputLength: DECODED_MAX,
          finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
        });
      else return { text: '', cut: false };
    } catch {
      return { text: '', cut: false };
    }
  }
  return { text: bytes.subarray(0, max).toString('utf8'), cut: cut || bytes.length > max };
}

/**
 * Proxies one request: `proxy()` tries the candidates in the balancer's order, failing over on connect errors,
 * timeouts, 5xx and 429 until a response starts; `relay()` streams that response through as it arrives;
 * `record()` counts it and writes its access line. The answer and the access line are written here.
 *
 * What a request holds is given back on every way out, whatever throws: an attempt's total-timeout timer and
 * balancer slot (releaseAttempt), the request's in-flight entry and its body's share of the buffer budget
 * (finally).
 *
 * The request's state lives in this function's scope; the steps are functions that take what they need and
 * return what they found. Not a class: as a `ProxyRun` object holding the same state in fields, with the steps as
 * its methods, ended requests survived minor GCs (1.2 MB promoted per scavenge at concurrency 1 against 0.3 MB,
 * and 0.8-0.9x the throughput; bench/README.md, "GC retention").
 */
export async function proxy(deps: ProxyDeps, ctx: RequestContext, call: ProxyCall): Promise<void> {
  const { balancer, pools, metrics } = deps;
  const { log, res } = ctx;

  let current: Exchange | undefined;
  let gone = false;
  let terminated = false;
  let sse = false;
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

  // The current attempt's holdings.
  let timer: NodeJS.Timeout | undefined;
  let slot: string | undefined;
  const releaseAttempt = () => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (slot !== undefined) {
      balancer.release(slot);
      slot = undefined;
    }
  };

  let chosen: Candidate | undefined;
  let status = 0;
  let usage: Usage | undefined;
  let attempts = 0;
  let failure: string | undefined;
  const answer = (err: GatewayError) => {
    status = err.status;
    failure = err.message;
    writeError(res, ctx.id, err);
  };

  try {
    const ordered = balancer.order(call.candidates);
    let response: Exchange | undefined;
    let lastError: GatewayError | undefined;
    for (let i = 0; i < ordered.length; i++) {
      const cand = ordered[i] as Candidate;
      const last = i === ordered.length - 1 || !call.replayable;
      if (gone || terminated) break;
      attempts++;
      // The body first: if it cannot be made, nothing has been taken yet.
      const { data, length } = call.body(cand);
      const target = upstreamRequest(ctx, call, cand, length);
      balancer.acquire(cand.key);
      slot = cand.key;
      timer = setTimeout(
        () => current?.abort(new TotalTimeout('total timeout')),
        cand.connection.timeouts.totalMs,
      );
      try {
        const r = new Exchange(pools.get(cand.connection), { ...target, method: 'POST', body: data });
        current = r;
        await r.head;
        if (r.statusCode >= 500 || r.statusCode === 429) {
          const reason: FailureReason = r.statusCode === 429 ? 'status_429' : 'status_5xx';
          metrics.upstreamErrors.inc({ connection: cand.key, reason });
          balancer.failure(cand.key, retryAfterMs(r.headers['retry-after']));
          if (!last) {
            log.warn(
              { connection: cand.key, status: r.statusCode },
              'upstream failed; trying the next connection',
            );
            r.dump(64 * 1024);
            releaseAttempt();
            continue;
          }
          if (r.statusCode >= 500) {
            lastError = await failedWith(r, cand);
            releaseAttempt();
            chosen = cand;
            break;
          }
        } else {
          balancer.success(cand.key);
        }
        chosen = cand;
        response = r;
        break;
      } catch (err) {
        releaseAttempt();
        if (gone || terminated) break;
        const reason = classify(err);
        metrics.upstreamErrors.inc({ connection: cand.key, reason });
        balancer.failure(cand.key);
        chosen = cand;
        lastError = unreachable(cand, reason, err);
        log.warn({ connection: cand.key, reason, err: (err as Error).message }, 'upstream request failed');
        if (last) break;
      }
    }

    if (!response || !chosen) {
      if (terminated && !gone)
        answer(new GatewayError(503, 'The gateway is shutting down; retry.', { code: 'draining' }));
      else if (gone) status = 499;
      else
        answer(
          lastError ??
            new GatewayError(502, 'No upstream could serve the request.', { code: 'upstream_error' }),
        );
      return;
    }

    // The response starts: from here on, no failover.
    const cand = chosen;
    status = response.statusCode;
    if (status >= 300 && status < 400) {
      // Never followed (SSRF) and never handed to the client, whose next hop it would become.
      response.dump();
      releaseAttempt();
      answer(
        new GatewayError(
          502,
          `Upstream ${cand.key} answered with a redirect (HTTP ${status}), which the gateway never follows; check its URL.`,
          { type: 'upstream_error', code: 'upstream_redirect' },
        ),
      );
      return;
    }
    if (status >= 400 && scrubberOf(cand.connection)) {
      await relayScrubbed(ctx, cand, response);
      releaseAttempt();
      return;
    }
    sse = String(response.headers['content-type'] ?? '').startsWith('text/event-stream');
    try {
      usage = await relay(metrics, ctx, call, cand, response, sse);
    } catch (err) {
      if (!res.headersSent) throw err; // not an upstream failure: the gateway's own (below)
      if (gone) status = 499;
      else failure = endBroken(deps, ctx, cand, err, sse, terminated);
    }
  } catch (err) {
    if (err instanceof GatewayError && !res.headersSent) {
      metrics.answered(ctx.route?.path ?? 'none', err.status, err.code);
      answer(err);
    } else {
      status = 500;
      failure = (err as Error).message;
      log.error({ err }, 'proxy failed');
      if (sse && res.headersSent) res.end();
      else
        writeError(res, ctx.id, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
    }
  } finally {
    releaseAttempt();
    ctx.release();
    res.off('close', onClose);
    deps.active.remove(inFlight);
    metrics.inFlightAdd(call.endpoint, -1);
    record(metrics, ctx, call, chosen, status, usage, attempts, failure);
  }
}

/** The request to one candidate: where it goes, with the dialect's headers and what passes from the client. */
function upstreamRequest(
  ctx: RequestContext,
  call: ProxyCall,
  cand: Candidate,
  length: number | undefined,
): { origin: string; path: string; headers: Record<string, string> } {
  const { req } = ctx;
  const target = upstreamTarget(cand.connection, call.endpoint, cand.model.upstreamId);
  const headers: Record<string, string> = {
    ...target.headers,
    'content-type': call.contentType,
    accept: req.headers.accept ?? '*/*',
    'accept-encoding': 'identity',
    'x-request-id': ctx.id,
  };
  if (length !== undefined) headers['content-length'] = String(length);
  const beta = req.headers['openai-beta'];
  if (typeof beta === 'string') headers['openai-beta'] = beta;
  return { origin: target.origin, path: target.path, headers };
}

/** The answer when a candidate could not be reached, refused the address policy, or timed out. */
function unreachable(cand: Candidate, reason: FailureReason, err: unknown): GatewayError {
  return new GatewayError(isTimeout(reason) ? 504 : 502, `Upstream ${cand.key} ${describe(reason, err)}.`, {
    type: 'upstream_error',
    code: isTimeout(reason)
      ? 'upstream_timeout'
      : reason === 'blocked_address'
        ? 'upstream_blocked'
        : 'upstream_unavailable',
  });
}

/** The answer when the last candidate failed with a 5xx: its status and its own message, scrubbed. */
async function failedWith(r: Exchange, cand: Candidate): Promise<GatewayError> {
  const said = upstreamErrorMessage(await scrubbedText(r, cand, 16 * 1024));
  // Reading the JSON undoes escapes the scrubber leaves in place (`\u0000`): what it said is scrubbed again.
  const scrubber = scrubberOf(cand.connection);
  const msg = said && scrubber ? scrubber.scrub(said) : said;
  return new GatewayError(
    502,
    `Upstream ${cand.key} failed with HTTP ${r.statusCode}${msg ? `: ${msg.slice(0, 300)}` : ''}`,
    { type: 'upstream_error', code: 'upstream_error' },
  );
}

/**
 * An upstream error (4xx) passed through, but scrubbed first: some providers echo the key in them. The body is
 * decoded (errorText), so it goes without its content-encoding.
 */
async function relayScrubbed(ctx: RequestContext, cand: Candidate, response: Exchange): Promise<void> {
  const text = await scrubbedText(response, cand, ERROR_BODY_MAX);
  const headers = responseHeaders(response.headers, ctx.id, false, scrubberOf(cand.connection));
  delete headers['content-encoding'];
  headers['content-length'] = String(Buffer.byteLength(text));
  ctx.res.writeHead(response.statusCode, headers);
  ctx.res.end(text);
}

/**
 * Streams a response that started through to the client, as it arrives, rewriting `model` members when the
 * client knows the model by another ID; returns the usage it reported. Throws when the upstream fails midway.
 */
async function relay(
  metrics: GatewayMetrics,
  ctx: RequestContext,
  call: ProxyCall,
  cand: Candidate,
  response: Exchange,
  sse: boolean,
): Promise<Usage | undefined> {
  const { res } = ctx;
  const status = response.statusCode;
  const rewriter = status < 300 ? rewriterFor(cand) : undefined;
  const out = responseHeaders(response.headers, ctx.id, sse, scrubberOf(cand.connection));
  // A rewritten body has another length: it is sent chunked.
  if (rewriter) delete out['content-length'];
  res.writeHead(status, out);
  const tap = sse ? new SseUsageTap({ hideUsage: call.hideUsage }) : undefined;
  const wantTail = !sse && status < 300 && String(response.headers['content-type'] ?? '').includes('json');
  let tail: Buffer | undefined;
  let first = true;
  const started = ctx.started;
  const resume = () => response.resume();
  await response.pipe((chunk) => {
    if (first) {
      first = false;
      if (sse)
        metrics.firstToken(
          cand,
          { connection: cand.key, model: call.model, endpoint: call.endpoint, upstream: cand.connection },
          (performance.now() - started) / 1000,
        );
    }
    const tapped = tap ? tap.push(chunk) : chunk;
    const bytes = rewriter ? rewriter.push(tapped) : tapped;
    if (wantTail) tail = tail ? Buffer.concat([tail, chunk]).subarray(-4096) : chunk.subarray(-4096);
    if (bytes.length === 0 || res.write(bytes)) return true;
    res.once('drain', resume);
    return false;
  });
  let usage: Usage | undefined;
  if (tap) {
    const rest = tap.flush();
    const bytes = rewriter && rest.length ? rewriter.push(rest) : rest;
    if (bytes.length) res.write(bytes);
    usage = tap.usage;
  } else if (tail) {
    // Decode only from the usage field on (it is the last one OpenAI-compatible servers write).
    const at = tail.lastIndexOf('"usage"');
    if (at >= 0) usage = usageFromJsonTail(tail.toString('utf8', at));
  }
  const held = rewriter?.flush();
  if (held?.length) res.write(held);
  res.end();
  return usage;
}

/**
 * Ends a response that failed after it started reaching the client: an SSE error event when streaming, else the
 * connection is cut (the client sees a truncated body, never a complete-looking one). Returns what the access
 * line says.
 */
function endBroken(
  deps: ProxyDeps,
  ctx: RequestContext,
  cand: Candidate,
  err: unknown,
  sse: boolean,
  terminated: boolean,
): string {
  const reason: FailureReason | 'shutdown' = terminated ? 'shutdown' : classify(err);
  if (reason !== 'shutdown') {
    deps.metrics.upstreamErrors.inc({ connection: cand.key, reason });
    deps.balancer.failure(cand.key);
  }
  ctx.log.warn({ connection: cand.key, reason }, 'response failed after the first byte');
  if (!sse) ctx.res.destroy();
  else if (reason === 'shutdown')
    ctx.res.end(
      sseErrorEvent('The gateway is shutting down and ended this stream; retry.', 'server_error', 'draining'),
    );
  else
    ctx.res.end(
      sseErrorEvent(
        `Upstream ${cand.key} ${describe(reason, err)}.`,
        'upstream_error',
        isTimeout(reason) ? 'upstream_timeout' : 'upstream_error',
      ),
    );
  return reason === 'shutdown' ? 'gateway shutting down' : `upstream ${describe(reason, err)}`;
}

/** Counts a finished request and writes its access line. */
function record(
  metrics: GatewayMetrics,
  ctx: RequestContext,
  call: ProxyCall,
  chosen: Candidate | undefined,
  status: number,
  usage: Usage | undefined,
  attempts: number,
  failure: string | undefined,
): void {
  const connection = chosen?.key ?? '';
  metrics.record(chosen, {
    connection,
    model: call.model,
    endpoint: call.endpoint,
    status,
    seconds: (performance.now() - ctx.started) / 1000,
    promptTokens: chosen ? usage?.promptTokens : undefined,
    completionTokens: chosen ? usage?.completionTokens : undefined,
    upstream: chosen?.connection,
    clientKey: ctx.clientKey?.name,
  });
  accessLine(ctx, status, {
    endpoint: call.endpoint,
    model: call.model,
    connection,
    attempts,
    ...(usage ? { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens } : {}),
    ...(failure ? { error: failure } : {}),
  });
}
