import { getHeapStatistics } from 'node:v8';
import { errors, GatewayError } from './errors.ts';
import { type RequestContext, respondWithError } from './request-context.ts';

/**
 * How many bytes of request bodies the gateway holds at once, across all requests. A proxied JSON body stays in
 * memory until its request ends (failover may send it again), so without a budget a few hundred clients that
 * send large bodies, or send them slowly, pin any amount of memory. A request that would go over the budget is
 * refused with 503 and `retry-after`, and its connection closed. The default is half the V8 heap limit (the chart
 * derives that from the container's memory limit), between 32 MiB and 1 GiB.
 */
export class BodyBudget {
  readonly limit: number;
  private used = 0;

  constructor(limit = defaultBudget()) {
    this.limit = limit;
  }

  get inUse(): number {
    return this.used;
  }

  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

export function defaultBudget(): number {
  const half = Math.floor(getHeapStatistics().heap_size_limit / 2);
  return Math.min(1024 ** 3, Math.max(32 * 1024 ** 2, half));
}

export interface BodyLimits {
  /** The route's body limit (413 above it). */
  max: number;
  /** Longest silence while the body arrives (408 after it). */
  idleMs: number;
  budget: BodyBudget;
}

const busy = () =>
  new GatewayError(503, 'The gateway is holding as many request bodies as it may; retry shortly.', {
    type: 'server_error',
    code: 'server_busy',
    headers: { 'retry-after': '1' },
  });

const stalled = () =>
  new GatewayError(408, 'The request body stopped arriving; send it without long pauses.', {
    code: 'request_timeout',
  });

/**
 * The limits of one request body as it arrives: its size (413), its share of the budget (503), pauses (408).
 * The bytes stay counted against the budget until `ctx.release()`, which every way a request ends calls.
 */
export class BodyGuard {
  private readonly limits: BodyLimits;
  private held = 0;
  private size = 0;
  private readonly idle: NodeJS.Timeout;

  /**
   * Throws 413 or 503 at once when the declared length is over the limit or the budget; `onStall` gets the 408
   * when the body pauses longer than the idle limit.
   */
  constructor(ctx: RequestContext, limits: BodyLimits, onStall: (err: GatewayError) => void) {
    this.limits = limits;
    ctx.release = () => {
      this.stop();
      limits.budget.give(this.held);
      this.held = 0;
    };
    const declared = Number(ctx.req.headers['content-length']);
    if (declared > limits.max) throw errors.tooLarge(limits.max);
    if (declared > 0) {
      if (!limits.budget.take(declared)) throw busy();
      this.held = declared;
    }
    this.idle = setTimeout(() => onStall(stalled()), limits.idleMs);
  }

  /** Counts a chunk; throws 413 or 503 when it goes over the limit or the budget. */
  chunk(length: number): void {
    this.idle.refresh();
    this.size += length;
    if (this.size > this.limits.max) throw errors.tooLarge(this.limits.max);
    if (this.size > this.held) {
      if (!this.limits.budget.take(this.size - this.held)) throw busy();
      this.held = this.size;
    }
  }

  /** The body is complete (or abandoned): no more pauses to watch. */
  stop(): void {
    clearTimeout(this.idle);
  }
}

/**
 * Reads a whole request body within the limits and calls `done` with it; on a limit it answers the error itself
 * (413, 408, 503), closing the connection so an unread rest is not drained.
 */
export function readBody(ctx: RequestContext, limits: BodyLimits, done: (body: Buffer) => void): void {
  const { req } = ctx;
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const fail = (err: GatewayError) => {
    if (finished) return;
    finished = true;
    guard.stop();
    refuse(ctx, err);
  };
  let guard: BodyGuard;
  try {
    guard = new BodyGuard(ctx, limits, fail);
  } catch (err) {
    refuse(ctx, err as GatewayError);
    return;
  }
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    try {
      guard.chunk(chunk.length);
    } catch (err) {
      return fail(err as GatewayError);
    }
    size += chunk.length;
    chunks.push(chunk);
  });
  // the client went away while sending: nothing to answer, the budget comes back
  const gone = () => {
    if (finished) return;
    finished = true;
    ctx.release();
  };
  req.on('error', gone);
  req.on('close', gone);
  req.on('end', () => {
    if (finished) return;
    finished = true;
    guard.stop();
    done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
  });
}

/** Answers an error and ends the connection, so an unread body is not drained. */
export function refuse(ctx: RequestContext, err: GatewayError): void {
  ctx.res.setHeader('connection', 'close');
  respondWithError(ctx, err);
}
