import type { Socket } from 'node:net';
import { getHeapStatistics } from 'node:v8';
import type { ClientKey } from './client-keys.ts';
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
  /**
   * What each owner holds. An owner's record stays when it holds nothing (pruned only when there are many): a
   * map that adds and deletes on every request retains ended requests through minor GCs (in-flight.ts says how).
   */
  private readonly owners = new Map<string, BudgetOwner>();

  constructor(limit = defaultBudget(), largestBody = 0) {
    this.limit = limit;
    this.share = Math.max(Math.floor(limit / 4), largestBody);
  }

  get inUse(): number {
    return this.used;
  }

  /** The record of one owner (a client key, or an address where keys are not used), for take() and give(). */
  ownerOf(name: string): BudgetOwner {
    let o = this.owners.get(name);
    if (!o) {
      if (this.owners.size >= MAX_OWNERS)
        for (const [k, v] of this.owners)
          if (v.held === 0 && v.watchers === 0) {
            v.pruned = true;
            this.owners.delete(k);
          }
      o = { held: 0, watchers: 0 };
      this.owners.set(name, o);
    }
    return o;
  }

  take(n: number, owner: BudgetOwner): boolean {
    if (this.used + n > this.limit || owner.held + n > this.share) return false;
    this.used += n;
    owner.held += n;
    return true;
  }

  give(n: number, owner: BudgetOwner): void {
    if (n <= 0) return;
    this.used = Math.max(0, this.used - n);
    owner.held = Math.max(0, owner.held - n);
  }
}

/** One owner's bytes in the budget. */
export interface BudgetOwner {
  held: number;
  /** Bodies being watched for this owner: a record in use is never pruned, even while it holds nothing. */
  watchers: number;
  /** Dropped from the budget's records (it held nothing): a copy kept elsewhere is looked up again. */
  pruned?: boolean;
}

/** Owner records kept before those holding nothing are pruned. */
const MAX_OWNERS = 4096;

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

const stalled = () =>
  new GatewayError(408, 'The request body stopped arriving; send it without long pauses.', {
    code: 'request_timeout',
  });

/** What watchBody() returns: the limits of one request body as it arrives. */
export interface BodyWatch {
  /** Counts a chunk; throws 413 or 503 when it goes over the limit or the budget. */
  chunk(length: number): void;
  /** Counts `bytes` more against the budget (what parsing the body will take); false when over it. */
  reserve(bytes: number): boolean;
  /** The body is complete (or abandoned): no more pauses to watch. */
  stop(): void;
}

/**
 * Watches one request body as it arrives: its size (413), its share of the budget (503), pauses (`onStall` gets
 * the 408). Throws 413 or 503 at once when the declared length is over the limit or the budget. The bytes stay
 * counted against the budget until `ctx.release()`, which every way a request ends calls.
 */
export function watchBody(
  ctx: RequestContext,
  limits: BodyLimits,
  onStall: (err: GatewayError) => void,
): BodyWatch {
  const { budget, max } = limits;
  const owner = ownerOf(ctx, budget);
  let held = 0;
  let size = 0;
  let idle: NodeJS.Timeout | undefined;
  let watching = false;
  const stop = () => {
    if (idle !== undefined) clearTimeout(idle);
    idle = undefined;
  };
  ctx.release = () => {
    stop();
    budget.give(held, owner);
    held = 0;
    if (watching) {
      watching = false;
      owner.watchers--;
    }
  };
  const declared = Number(ctx.req.headers['content-length']);
  if (declared > max) throw errors.tooLarge(max);
  if (declared > 0) {
    if (!budget.take(declared, owner)) throw errors.busy();
    held = declared;
  }
  watching = true;
  owner.watchers++;
  idle = setTimeout(stallTimer, limits.idleMs, onStall);
  return {
    chunk(length) {
      idle?.refresh();
      size += length;
      if (size > max) throw errors.tooLarge(max);
      if (size > held) {
        if (!budget.take(size - held, owner)) throw errors.busy();
        held = size;
      }
    },
    reserve(bytes) {
      if (bytes <= 0) return true;
      if (!budget.take(bytes, owner)) return false;
      held += bytes;
      return true;
    },
    stop,
  };
}

const OWNER = Symbol('plugboard.budgetOwner');
type OwnedSocket = Socket & {
  [OWNER]?: { key: ClientKey | undefined; budget: BodyBudget; owner: BudgetOwner };
};

/**
 * Whose share of the budget a body counts against: its client key's, or its address's where keys are not used.
 * Kept on the connection, so that the requests of a kept-alive connection find it without building a name.
 */
function ownerOf(ctx: RequestContext, budget: BodyBudget): BudgetOwner {
  const socket = ctx.req.socket as OwnedSocket;
  const known = socket[OWNER];
  if (known && known.key === ctx.clientKey && known.budget === budget && !known.owner.pruned)
    return known.owner;
  const owner = budget.ownerOf(
    ctx.clientKey ? `key:${ctx.clientKey.name}` : `addr:${socket.remoteAddress ?? ''}`,
  );
  socket[OWNER] = { key: ctx.clientKey, budget, owner };
  return owner;
}

/**
 * The pause timer's callback: a module function that gets `onStall` as its argument. A closure made in
 * watchBody's scope instead kept ended requests alive through minor GCs (1.1 MB promoted per scavenge at
 * concurrency 1 against 0.25-0.3 MB; bench/README.md, "GC retention").
 */
function stallTimer(onStall: (err: GatewayError) => void): void {
  onStall(stalled());
}

/**
 * Reads a whole request body within the limits and calls `done` with it; on a limit it answers the error itself
 * (413, 408, 503), closing the connection so an unread rest is not drained.
 */
export function readBody(
  ctx: RequestContext,
  limits: BodyLimits,
  done: (body: Buffer, watch: BodyWatch) => void,
): void {
  const { req } = ctx;
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const fail = (err: GatewayError) => {
    if (finished) return;
    finished = true;
    watch.stop();
    refuse(ctx, err);
  };
  let watch: BodyWatch;
  try {
    watch = watchBody(ctx, limits, fail);
  } catch (err) {
    refuse(ctx, err as GatewayError);
    return;
  }
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    try {
      watch.chunk(chunk.length);
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
    watch.stop();
    done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), watch);
  });
}

/** Answers an error and ends the connection, so an unread body is not drained. */
export function refuse(ctx: RequestContext, err: GatewayError): void {
  ctx.res.setHeader('connection', 'close');
  respondWithError(ctx, err);
}
