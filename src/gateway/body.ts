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

/**
 * Reads a whole request body within the limits and calls `done` with it; on a limit it answers the error itself
 * (413, 408, 503), closing the connection so an unread rest is not drained. The bytes are counted against the
 * budget until `ctx.release()`, which every way the request ends calls.
 */
export function readBody(ctx: RequestContext, limits: BodyLimits, done: (body: Buffer) => void): void {
  const { req } = ctx;
  const declared = Number(req.headers['content-length']);
  if (declared > limits.max) {
    refuse(ctx, errors.tooLarge(limits.max));
    return;
  }
  let held = 0;
  const release = () => {
    limits.budget.give(held);
    held = 0;
  };
  ctx.release = release;
  if (declared > 0) {
    if (!limits.budget.take(declared)) {
      refuse(ctx, busy());
      return;
    }
    held = declared;
  }

  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const idle = setTimeout(() => {
    if (finished) return;
    finished = true;
    refuse(
      ctx,
      new GatewayError(408, 'The request body stopped arriving; send it without long pauses.', {
        code: 'request_timeout',
      }),
    );
  }, limits.idleMs);
  const stop = () => {
    finished = true;
    clearTimeout(idle);
  };
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    idle.refresh();
    size += chunk.length;
    if (size > limits.max) {
      stop();
      return refuse(ctx, errors.tooLarge(limits.max));
    }
    if (size > held) {
      if (!limits.budget.take(size - held)) {
        stop();
        return refuse(ctx, busy());
      }
      held = size;
    }
    chunks.push(chunk);
  });
  req.on('error', () => {
    // the client went away while sending: nothing to answer
    stop();
    release();
  });
  req.on('close', () => {
    if (!finished) {
      stop();
      release();
    }
  });
  req.on('end', () => {
    if (finished) return;
    stop();
    done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
  });
}

/** Answers an error and ends the connection, so an unread body is not drained. */
export function refuse(ctx: RequestContext, err: GatewayError): void {
  ctx.res.setHeader('connection', 'close');
  respondWithError(ctx, err);
}
