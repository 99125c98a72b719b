import { randomUUID } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { handlingOf } from './errors.ts';
import type { WorkQueue } from './queue.ts';

export interface ReconcileResult {
  /** Reconcile this key again after this long (periodic re-verification). */
  requeueAfterMs?: number;
}

/** The logging a controller needs: pino's Logger, or the gateway's (fastify's) in standalone mode. */
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Log;
}

export interface ReconcileContext {
  log: Log;
  signal: AbortSignal;
}

export type Reconciler = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult | undefined>;

/** How one reconcile ended, as counted in plugboard_operator_reconcile_total's `result` label. */
export type ReconcileOutcome = 'success' | 'requeue' | 'error' | 'terminal_error';

export class ControllerMetrics {
  readonly reconciles: Counter<'controller' | 'result'>;
  readonly duration: Histogram<'controller'>;
  readonly depth: Gauge<'controller'>;

  constructor(registry: Registry) {
    this.reconciles = new Counter({
      name: 'plugboard_operator_reconcile_total',
      help: 'Reconciles by controller and result (success, requeue, error, terminal_error).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'plugboard_operator_reconcile_duration_seconds',
      help: 'Time spent in one reconcile.',
      labelNames: ['controller'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.depth = new Gauge({
      name: 'plugboard_operator_workqueue_depth',
      help: 'Keys waiting, in flight or scheduled, by controller.',
      labelNames: ['controller'],
      registers: [registry],
    });
  }
}

export interface ControllerOptions {
  name: string;
  queue: WorkQueue;
  reconcile: Reconciler;
  log: Log;
  metrics: ControllerMetrics;
  concurrency?: number;
  /** Upper bound on one reconcile, so a stuck call never holds a worker. */
  timeoutMs?: number;
  /** Called after every reconcile with its key and outcome (per-key counts without a per-key metric label). */
  onReconciled?: (key: string, outcome: ReconcileOutcome) => void;
}

/**
 * Runs reconcile workers over a queue with controller-runtime's reconcileHandler semantics: one worker per key
 * at a time, `requeueAfterMs` re-adds the key later, and an error is handled as its type says (errors.ts):
 * Stalling is not retried, Waiting comes back after its delay, anything else backs off per key.
 */
export class Controller {
  private readonly opts: ControllerOptions;
  private workers: Promise<void>[] = [];
  private readonly abort = new AbortController();

  constructor(opts: ControllerOptions) {
    this.opts = opts;
  }

  start(): void {
    const n = this.opts.concurrency ?? 8;
    for (let i = 0; i < n; i++) this.workers.push(this.worker());
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.opts.queue.shutdown();
    await Promise.all(this.workers);
  }

  private async worker(): Promise<void> {
    const { queue, name, metrics } = this.opts;
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      metrics.depth.set({ controller: name }, queue.depth);
      const log = this.opts.log.child({ controller: name, key, reconcileID: randomUUID() });
      // A plain controller and a cleared timer: AbortSignal.timeout/any would keep every signal alive until its
      // timer fires (minutes), which at thousands of reconciles is most of the operator's heap.
      const ac = new AbortController();
      const timer = setTimeout(
        () => ac.abort(new Error('reconcile timed out')),
        this.opts.timeoutMs ?? 60_000,
      );
      const onStop = () => ac.abort(new Error('controller stopping'));
      this.abort.signal.addEventListener('abort', onStop, { once: true });
      const end = metrics.duration.startTimer({ controller: name });
      let outcome: ReconcileOutcome | undefined;
      try {
        const res = await this.opts.reconcile(key, { log, signal: ac.signal });
        queue.forget(key);
        if (res?.requeueAfterMs !== undefined) queue.addAfter(key, res.requeueAfterMs);
        outcome = res?.requeueAfterMs !== undefined ? 'requeue' : 'success';
      } catch (err) {
        if (this.abort.signal.aborted) {
          queue.done(key);
          return;
        }
        const h = handlingOf(err);
        outcome = h.outcome;
        const message = (err as Error).message;
        if (h.outcome === 'terminal_error') {
          queue.forget(key);
          log.error({ err: message }, 'reconcile failed; not retrying');
        } else if (h.outcome === 'requeue') {
          queue.forget(key);
          queue.addAfter(key, h.requeueAfterMs);
          log.info({ reason: message, retryInMs: h.requeueAfterMs }, 'waiting');
        } else {
          const delay = queue.addRateLimited(key);
          log.warn({ err: message, retryInMs: Math.round(delay) }, 'reconcile failed; retrying');
        }
      } finally {
        clearTimeout(timer);
        this.abort.signal.removeEventListener('abort', onStop);
        end();
        queue.done(key);
        metrics.depth.set({ controller: name }, queue.depth);
        if (outcome) {
          metrics.reconciles.inc({ controller: name, result: outcome });
          this.opts.onReconciled?.(key, outcome);
        }
      }
    }
  }
}
