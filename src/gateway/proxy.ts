import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { isBlockedAddressError } from '../net/address-policy.ts';
import { classifyNetworkError, errorCode } from '../net/errors.ts';
import { SecretScrubber, upstreamErrorMessage } from '../providers/upstream-errors.ts';
import { type SnapshotConnection, upstreamSecret } from '../snapshot/schema.ts';
import { GatewayError } from './errors.ts';
import { Exchange } from './exchange.ts';
import type { InFlightHandle, InFlightRequests } from './in-flight.ts';
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
  const secret = upstreamSecret(c)?.value;
  if (!secret) return undefined;
  let s = scrubbers.get(c);
  if (!s) {
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
 * Proxies one request in three steps: `attempt` tries the candidates in the balancer's order, failing over on
 * connect errors, timeouts, 5xx and 429 until a response starts; `relay` streams that response through as it
 * arrives; `finish` records it (metrics, the access line). The response and the access line are written here.
 *
 * What a request holds is given back on every way out, whatever throws: an attempt's total-timeout timer and
 * balancer slot (releaseAttempt), the request's in-flight entry and its body's share of the buffer budget
 * (finish).
 */
export async function proxy(deps: ProxyDeps, ctx: RequestContext, call: ProxyCall): Promise<void> {
  const run = new ProxyRun(deps, ctx, call);
  try {
    const response = await run.attempt();
    if (response) await run.relay(response);
  } catch (err) {
    run.crashed(err);
  } finally {
    run.finish();
  }
}

/** One proxied request's state across its steps. Methods, not closures: nothing here outlives the request. */
class ProxyRun {
  private readonly deps: ProxyDeps;
  private readonly ctx: RequestContext;
  private readonly call: ProxyCall;
  private current: Exchange | undefined;
  private gone = false;
  private terminated = false;
  private sseStarted = false;
  // the current attempt's holdings
  private timer: NodeJS.Timeout | undefined;
  private slot: string | undefined;
  // what finish() records
  private chosen: Candidate | undefined;
  private status = 0;
  private usage: Usage | undefined;
  private attempts = 0;
  private failure: string | undefined;
  private readonly inFlight: InFlightHandle;
  private readonly onClose: () => void;

  constructor(deps: ProxyDeps, ctx: RequestContext, call: ProxyCall) {
    this.deps = deps;
    this.ctx = ctx;
    this.call = call;
    this.onClose = () => {
      if (!ctx.res.writableFinished) {
        this.gone = true;
        this.current?.abort(new ClientGone('client disconnected'));
      }
    };
    ctx.res.on('close', this.onClose);
    this.inFlight = deps.active.add({
      terminate: () => {
        this.terminated = true;
        this.current?.abort(new Terminated('gateway shutting down'));
      },
    });
    deps.metrics.inFlightAdd(call.endpoint, 1);
  }

  abortCurrent(reason: Error): void {
    this.current?.abort(reason);
  }

  private releaseAttempt(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.slot !== undefined) {
      this.deps.balancer.release(this.slot);
      this.slot = undefined;
    }
  }

  /** Tries the candidates; the response that starts reaching the client, or undefined when it was answered. */
  async attempt(): Promise<Exchange | undefined> {
    const { balancer, pools, metrics } = this.deps;
    const { call, ctx } = this;
    const { log, req } = ctx;
    const ordered = balancer.order(call.candidates);
    let lastError: GatewayError | undefined;
    for (let i = 0; i < ordered.length; i++) {
      const cand = ordered[i] as Candidate;
      const last = i === ordered.length - 1 || !call.replayable;
      if (this.gone || this.terminated) break;
      this.attempts++;
      // The body first: if it cannot be made, nothing has been taken yet.
      const { data, length } = call.body(cand);
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
      balancer.acquire(cand.key);
      this.slot = cand.key;
      this.timer = setTimeout(abortOnTotalTimeout, cand.connection.timeouts.totalMs, this);
      try {
        const r = new Exchange(pools.get(cand.connection), {
          origin: target.origin,
          method: 'POST',
          path: target.path,
          headers,
          body: data,
        });
        this.current = r;
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
            this.releaseAttempt();
            continue;
          }
          if (r.statusCode >= 500) {
            const said = upstreamErrorMessage(await scrubbedText(r, cand, 16 * 1024));
            // Reading the JSON undoes escapes the scrubber leaves in place (`\u0000`): what it said is scrubbed again.
            const scrubber = scrubberOf(cand.connection);
            const msg = said && scrubber ? scrubber.scrub(said) : said;
            this.releaseAttempt();
            this.chosen = cand;
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
        this.chosen = cand;
        return r;
      } catch (err) {
        this.releaseAttempt();
        if (this.gone || this.terminated) break;
        const reason = classify(err);
        metrics.upstreamErrors.inc({ connection: cand.key, reason });
        balancer.failure(cand.key);
        this.chosen = cand;
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
    if (this.terminated && !this.gone) {
      this.answer(new GatewayError(503, 'The gateway is shutting down; retry.', { code: 'draining' }));
    } else if (this.gone) {
      this.status = 499;
    } else {
      this.answer(
        lastError ??
          new GatewayError(502, 'No upstream could serve the request.', { code: 'upstream_error' }),
      );
    }
    return undefined;
  }

  /** Streams the response that started; no failover from here on. */
  async relay(response: Exchange): Promise<void> {
    const { metrics } = this.deps;
    const { ctx, call } = this;
    const { res } = ctx;
    const cand = this.chosen as Candidate;
    this.status = response.statusCode;
    if (this.status >= 300 && this.status < 400) {
      // Never followed (SSRF) and never handed to the client, whose next hop it would become.
      response.dump();
      this.releaseAttempt();
      this.answer(
        new GatewayError(
          502,
          `Upstream ${cand.key} answered with a redirect (HTTP ${this.status}), which the gateway never follows; check its URL.`,
          { type: 'upstream_error', code: 'upstream_redirect' },
        ),
      );
      return;
    }
    const scrubber = scrubberOf(cand.connection);
    if (this.status >= 400 && scrubber) {
      // Upstream errors pass through, but some providers echo the key in them: scrubbed before they leave.
      const text = await scrubbedText(response, cand, ERROR_BODY_MAX);
      this.releaseAttempt();
      const headers = responseHeaders(response.headers, ctx.id, false, scrubber);
      delete headers['content-encoding']; // the text is decoded (errorText)
      headers['content-length'] = String(Buffer.byteLength(text));
      res.writeHead(this.status, headers);
      res.end(text);
      return;
    }
    const ctype = String(response.headers['content-type'] ?? '');
    const sse = ctype.startsWith('text/event-stream');
    const rewriter = this.status < 300 ? rewriterFor(cand) : undefined;
    const out = responseHeaders(response.headers, ctx.id, sse, scrubber);
    // A rewritten body has another length: it is sent chunked.
    if (rewriter) delete out['content-length'];
    res.writeHead(this.status, out);
    this.sseStarted = sse;
    const tap = sse ? new SseUsageTap({ hideUsage: call.hideUsage }) : undefined;
    const wantTail = !sse && this.status < 300 && ctype.includes('json');
    let tail: Buffer | undefined;
    let first = true;
    const started = ctx.started;
    const resume = () => response.resume();
    try {
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
      if (tap) {
        const rest = tap.flush();
        const bytes = rewriter && rest.length ? rewriter.push(rest) : rest;
        if (bytes.length) res.write(bytes);
        this.usage = tap.usage;
      } else if (tail) {
        // Decode only from the usage field on (it is the last one OpenAI-compatible servers write).
        const at = tail.lastIndexOf('"usage"');
        if (at >= 0) this.usage = usageFromJsonTail(tail.toString('utf8', at));
      }
      const held = rewriter?.flush();
      if (held?.length) res.write(held);
      res.end();
    } catch (err) {
      this.broken(err, sse);
    }
  }

  /** The response failed after it started reaching the client. */
  private broken(err: unknown, sse: boolean): void {
    const { res } = this.ctx;
    const cand = this.chosen as Candidate;
    if (this.gone) {
      this.status = 499;
      return;
    }
    const reason: FailureReason | 'shutdown' = this.terminated ? 'shutdown' : classify(err);
    if (reason !== 'shutdown') {
      this.deps.metrics.upstreamErrors.inc({ connection: cand.key, reason });
      this.deps.balancer.failure(cand.key);
    }
    this.failure = reason === 'shutdown' ? 'gateway shutting down' : `upstream ${describe(reason, err)}`;
    this.ctx.log.warn({ connection: cand.key, reason }, 'response failed after the first byte');
    if (!sse) {
      res.destroy();
      return;
    }
    res.end(
      reason === 'shutdown'
        ? sseErrorEvent(
            'The gateway is shutting down and ended this stream; retry.',
            'server_error',
            'draining',
          )
        : sseErrorEvent(
            `Upstream ${cand.key} ${describe(reason, err)}.`,
            'upstream_error',
            isTimeout(reason) ? 'upstream_timeout' : 'upstream_error',
          ),
    );
  }

  /** Something threw that no step expected. */
  crashed(err: unknown): void {
    const { ctx } = this;
    if (err instanceof GatewayError && !ctx.res.headersSent) {
      this.deps.metrics.answered(ctx.route?.path ?? 'none', err.status, err.code);
      this.answer(err);
      return;
    }
    this.status = 500;
    this.failure = (err as Error).message;
    ctx.log.error({ err }, 'proxy failed');
    if (this.sseStarted) ctx.res.end();
    else
      writeError(ctx.res, ctx.id, new GatewayError(500, 'Internal gateway error.', { type: 'server_error' }));
  }

  /** Answers with an error instead of an upstream response. */
  private answer(err: GatewayError): void {
    this.status = err.status;
    this.failure = err.message;
    writeError(this.ctx.res, this.ctx.id, err);
  }

  /** Gives back what the request held, records it, and writes its access line. */
  finish(): void {
    const { metrics } = this.deps;
    const { ctx, call, chosen, usage } = this;
    this.releaseAttempt();
    this.current = undefined;
    ctx.release();
    ctx.res.off('close', this.onClose);
    this.deps.active.remove(this.inFlight);
    metrics.inFlightAdd(call.endpoint, -1);
    const connection = chosen?.key ?? '';
    const seconds = (performance.now() - ctx.started) / 1000;
    metrics.record(chosen, {
      connection,
      model: call.model,
      endpoint: call.endpoint,
      status: this.status,
      seconds,
      promptTokens: chosen ? usage?.promptTokens : undefined,
      completionTokens: chosen ? usage?.completionTokens : undefined,
      upstream: chosen?.connection,
      clientKey: ctx.clientKey?.name,
    });
    accessLine(ctx, this.status, {
      endpoint: call.endpoint,
      model: call.model,
      connection,
      attempts: this.attempts,
      ...(usage ? { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens } : {}),
      ...(this.failure ? { error: this.failure } : {}),
    });
  }
}

/** The total-timeout timer's callback (setTimeout passes the run; no closure per attempt). */
function abortOnTotalTimeout(run: ProxyRun): void {
  run.abortCurrent(new TotalTimeout('total timeout'));
}
