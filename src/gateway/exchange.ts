import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';

type Controller = Dispatcher.DispatchController;

/** Receives body chunks; false asks the upstream to pause until resume(). */
export type BodySink = (chunk: Buffer) => boolean;

const NOOP = () => undefined;

/**
 * One upstream request over undici's dispatch API. undici's request() wraps every response in a Readable stream,
 * read through an async iterator, and listens on an AbortSignal; a proxy needs none of it and paid for it on
 * every request (about a tenth of the gateway's allocations). Here the body goes from the upstream socket
 * straight to a sink, with backpressure through pause/resume, and abort() cancels the request at any stage.
 */
export class Exchange implements Dispatcher.DispatchHandler {
  statusCode = 0;
  headers: IncomingHttpHeaders = {};
  /** Resolves when the response starts; rejects when the request fails, or is aborted, before that. */
  readonly head: Promise<void>;
  private resolveHead: () => void = NOOP;
  private rejectHead: (err: Error) => void = NOOP;
  private controller: Controller | undefined;
  private started = false;
  private ended = false;
  private failure: Error | undefined;
  /** Chunks that arrived before a sink was attached (often the whole body comes with the headers). */
  private queue: Buffer[] | undefined = [];
  private sink: BodySink | undefined;
  private resolvePipe: (() => void) | undefined;
  private rejectPipe: ((err: Error) => void) | undefined;

  constructor(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions) {
    this.head = new Promise<void>((resolve, reject) => {
      this.resolveHead = resolve;
      this.rejectHead = reject;
    });
    try {
      dispatcher.dispatch(opts, this);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** Cancels the request: before the response starts, `head` rejects with `reason`; after, `pipe` does. */
  abort(reason: Error): void {
    if (this.ended || this.failure) return;
    if (this.controller) {
      this.controller.abort(reason);
    }
    // Still queued for a connection: fail now; undici aborts it when it would start (onRequestStart).
    this.fail(reason);
  }

  /** Streams the rest of the body into `sink`; resolves at its end, rejects on an upstream error or abort. */
  pipe(sink: BodySink): Promise<void> {
    const queued = this.queue ?? [];
    this.queue = undefined;
    let ok = true;
    for (const chunk of queued) ok = sink(chunk) && ok;
    if (this.failure || this.ended) {
      this.release();
      return this.failure ? Promise.reject(this.failure) : Promise.resolve();
    }
    // No closure made here may capture `sink`: V8 can keep such a closure, and through the sink the client's
    // request and response, alive through minor GCs after release() dropped it (bench/README.md, "Closure over the sink").
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.sink = sink;
    this.resolvePipe = resolve;
    this.rejectPipe = reject;
    if (!ok) this.controller?.pause();
    return promise;
  }

  resume(): void {
    this.controller?.resume();
  }

  /** Up to `max` bytes of the body (an error body, for a message); `cut` when there was more. */
  async bytes(max: number): Promise<{ bytes: Buffer; cut: boolean }> {
    const parts: Buffer[] = [];
    let n = 0;
    try {
      await this.pipe((chunk) => {
        if (n < max) parts.push(chunk);
        n += chunk.length;
        if (n >= max) queueMicrotask(() => this.abort(new Error('read enough of the body')));
        return true;
      });
    } catch {
      // what was read is enough for a message
    }
    return { bytes: Buffer.concat(parts).subarray(0, max), cut: n >= max };
  }

  /** Discards the body; the connection is kept when the rest is at most `limit` bytes, else closed. */
  dump(limit = 128 * 1024): void {
    let n = 0;
    this.pipe((chunk) => {
      n += chunk.length;
      if (n > limit) queueMicrotask(() => this.abort(new Error('body too large to drain')));
      return true;
    }).catch(NOOP);
  }

  // --- undici's handler interface ---

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.failure) controller.abort(this.failure);
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders): void {
    this.statusCode = statusCode;
    this.headers = headers;
    this.started = true;
    this.resolveHead();
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.sink) {
      if (!this.sink(chunk)) controller.pause();
    } else {
      this.queue?.push(chunk);
    }
  }

  onResponseEnd(): void {
    this.ended = true;
    const resolve = this.resolvePipe;
    // Without a sink yet, the queued body waits for pipe(), which drops it once delivered.
    if (resolve) {
      this.release();
      resolve();
    }
  }

  onResponseError(_controller: Controller, err: Error): void {
    this.fail(err);
  }

  private fail(err: Error): void {
    if (this.failure || this.ended) return;
    this.failure = err;
    if (!this.started) this.rejectHead(err);
    const reject = this.rejectPipe;
    this.release();
    this.queue = undefined;
    reject?.(err);
  }

  /**
   * undici may hold a finished request's handler for a while; dropping the sink (which reaches the client's
   * request and response) lets them die young instead of being promoted with it.
   */
  private release(): void {
    this.sink = undefined;
    this.resolvePipe = undefined;
    this.rejectPipe = undefined;
    this.controller = undefined;
    this.resolveHead = NOOP;
    this.rejectHead = NOOP;
  }
}
