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
  /**
   * What one client (a client key, or an address where keys are not used) may hold: a quarter of the budget, or
   * the largest body allowed if that is more. Slow bodies from one client cannot take every other client's share.
   */
  readonly share: number;
  private used = 0;
  private readonly byOwner = new Map<string, number>();

  constructor(limit = defaultBudget(), largestBody = 0) {
    this.limit = limit;
    this.share = Math.max(Math.floor(limit / 4), largestBody);
  }

  get inUse(): number {
    return this.used;
  }

  take(n: number, owner: string): boolean {
    const mine = this.byOwner.get(owner) ?? 0;
    if (this.used + n > this.limit || mine + n > this.share) return false;
    this.used += n;
    this.byOwner.set(owner, mine + n);
    return true;
  }

  give(n: number, owner: string): void {
    if (n <= 0) return;
    this.used = Math.max(0, this.used - n);
    const left = (this.byOwner.get(owner) ?? 0) - n;
    if (left > 0) this.byOwner.set(owner, left);
    else this.byOwner.delete(owner);
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

const busy = errors.busy;

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
  /** Whose share of the budget the body counts against. */
  private readonly owner: string;
  private held = 0;
  private size = 0;
  private readonly idle: NodeJS.Timeout;

  /**
   * Throws 413 or 503 at once when the declared length is over the limit or the budget; `onStall` gets the 408
   * when the body pauses longer than the idle limit.
   */
  constructor(ctx: RequestContext, limits: BodyLimits, onStall: (err: GatewayError) => void) {
    this.limits = limits;
    this.owner = ctx.clientKey ? `key:${ctx.clientKey.name}` : `addr:${ctx.req.socket.remoteAddress ?? ''}`;
    ctx.release = () => {
      this.stop();
      limits.budget.give(this.held, this.owner);
      this.held = 0;
    };
    const declared = Number(ctx.req.headers['content-length']);
    if (declared > limits.max) throw errors.tooLarge(limits.max);
    if (declared > 0) {
      if (!limits.budget.take(declared, this.owner)) throw busy();
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
      if (!this.limits.budget.take(this.size - this.held, this.owner)) throw busy();
      this.held = this.size;
    }
  }

  /** Counts `bytes` more against the budget (what parsing the body will take); false when over it. */
  reserve(bytes: number): boolean {
    if (bytes <= 0) return true;
    if (!this.limits.budget.take(bytes, this.owner)) return false;
    this.held += bytes;
    return true;
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
export function readBody(
  ctx: RequestContext,
  limits: BodyLimits,
  done: (body: Buffer, guard: BodyGuard) => void,
): void {
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
    done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), guard);
  });
}

/** Answers an error and ends the connection, so an unread body is not drained. */
export function refuse(ctx: RequestContext, err: GatewayError): void {
  ctx.res.setHeader('connection', 'close');
  respondWithError(ctx, err);
}
