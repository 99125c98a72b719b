/**
 * A rate-limited work queue with client-go semantics: it holds keys, not events; a key is processed by at most
 * one worker at a time (adding it while in flight marks it dirty, so it runs once more afterwards); failures are
 * retried with per-key exponential backoff with jitter; a global token bucket caps the overall rate.
 */

/** The longest delay setTimeout takes (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface QueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Global limit: sustained keys per second and burst. */
  qps?: number;
  burst?: number;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private handingOut = false;
  private tokens: number;
  private lastRefill = performance.now();
  private shuttingDown = false;
  private readonly opts: Required<QueueOptions>;

  constructor(opts: QueueOptions = {}) {
    this.opts = {
      baseDelayMs: opts.baseDelayMs ?? 500,
      maxDelayMs: opts.maxDelayMs ?? 300_000,
      qps: opts.qps ?? 100,
      burst: opts.burst ?? 500,
    };
    this.tokens = this.opts.burst;
  }

  get length(): number {
    return this.queue.length;
  }

  /** Nothing waiting and nothing in flight (keys scheduled for later do not count). */
  get idle(): boolean {
    return this.queue.length === 0 && this.processing.size === 0;
  }

  /** Resolves once the queue is idle (at once if it is, or once shut down). */
  whenIdle(): Promise<void> {
    if (this.idle || this.shuttingDown) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Keys waiting, in flight or scheduled for later. */
  get depth(): number {
    return this.queue.length + this.processing.size + this.timers.size;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    const scheduled = this.timers.get(key);
    if (scheduled) {
      clearTimeout(scheduled.timer);
      this.timers.delete(key);
    }
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    if (this.waiters.length > 0) this.handOutSoon();
  }

  /**
   * Gives queued keys to waiting workers after the current task, so the adds of one burst of changes (a relist,
   * a reload of files) are deduplicated before any of them starts.
   */
  private handOutSoon(): void {
    if (this.handingOut) return;
    this.handingOut = true;
    queueMicrotask(() => {
      this.handingOut = false;
      for (;;) {
        const waiter = this.waiters[0];
        const key = this.queue[0];
        if (!waiter || key === undefined || this.shuttingDown) return;
        this.waiters.shift();
        this.queue.shift();
        this.queued.delete(key);
        this.processing.add(key);
        waiter(key);
      }
    });
  }

  /** Adds the key after `ms`; an earlier schedule or an immediate add wins over a later one. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    ms = Math.min(ms, MAX_TIMER_MS); // Node runs a longer (or infinite) timer after 1 ms
    const at = performance.now() + ms;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref?.();
    this.timers.set(key, { at, timer });
  }

  /** Requeues after this key's next backoff step: base·2^failures, capped, with ±25% jitter. */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** n) * (0.75 + Math.random() / 2);
    this.addAfter(key, delay);
    return delay;
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Clears the key's backoff (after a success). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Waits for the next key (respecting the global rate); undefined once shut down. */
  async get(): Promise<string | undefined> {
    await this.takeToken();
    if (this.shuttingDown) return undefined;
    const key = this.queue.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return key;
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
    if (this.idle) for (const w of this.idleWaiters.splice(0)) w();
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private async takeToken(): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.opts.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.opts.qps);
      this.lastRefill = now;
      if (this.tokens >= 1 || this.shuttingDown) {
        this.tokens -= 1;
        return;
      }
      await new Promise((r) => setTimeout(r, ((1 - this.tokens) / this.opts.qps) * 1000));
    }
  }
}
