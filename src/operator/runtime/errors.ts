/**
 * Reconcile errors that say how the controller handles them, after Flux's stalling, waiting and generic errors:
 * the reconciler states what happened, the controller alone decides requeue, logging and the outcome counted in
 * `plugboard_operator_reconcile_total{result}`.
 */

/**
 * Retrying cannot help (the object's own input is invalid): not requeued; a change to the object enqueues it
 * again. `reason` is the condition and event reason the reconciler reported it with.
 */
export class Stalling extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = 'Stalling';
    this.reason = reason;
  }
}

/**
 * Something else has to happen first (another object, a dependency becoming ready): requeued after
 * `requeueAfterMs` without counting as a failure, so the key's backoff does not grow.
 */
export class Waiting extends Error {
  readonly reason: string;
  readonly requeueAfterMs: number;
  constructor(reason: string, message: string, requeueAfterMs: number) {
    super(message);
    this.name = 'Waiting';
    this.reason = reason;
    this.requeueAfterMs = requeueAfterMs;
  }
}

/** How one failed reconcile is handled. */
export type ErrorHandling =
  | { outcome: 'terminal_error'; level: 'error' }
  | { outcome: 'requeue'; level: 'info'; requeueAfterMs: number }
  | { outcome: 'error'; level: 'warn'; backoff: true };

/** Stalling: terminal; Waiting: requeue after its delay; anything else (a generic error): per-key backoff. */
export function handlingOf(err: unknown): ErrorHandling {
  if (err instanceof Stalling) return { outcome: 'terminal_error', level: 'error' };
  if (err instanceof Waiting)
    return { outcome: 'requeue', level: 'info', requeueAfterMs: err.requeueAfterMs };
  return { outcome: 'error', level: 'warn', backoff: true };
}
