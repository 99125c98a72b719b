import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { transitioned } from '../../src/operator/runtime/conditions.ts';
import {
  Controller,
  ControllerMetrics,
  type ReconcileOutcome,
  type Reconciler,
} from '../../src/operator/runtime/controller.ts';
import { handlingOf, Stalling, Waiting } from '../../src/operator/runtime/errors.ts';
import { WorkQueue } from '../../src/operator/runtime/queue.ts';
import { patchStatusIfChanged, sameStatus, statusMergePatch } from '../../src/operator/runtime/status.ts';

const log = pino({ level: 'silent' });

describe('typed reconcile errors', () => {
  it('Stalling is terminal, Waiting requeues after its delay, anything else backs off', () => {
    expect(handlingOf(new Stalling('InvalidSpec', 'bad'))).toEqual({
      outcome: 'terminal_error',
      level: 'error',
    });
    expect(handlingOf(new Waiting('DependencyNotReady', 'later', 30_000))).toEqual({
      outcome: 'requeue',
      level: 'info',
      requeueAfterMs: 30_000,
    });
    expect(handlingOf(new Error('conflict'))).toEqual({ outcome: 'error', level: 'warn', backoff: true });
    expect(handlingOf('not even an Error')).toMatchObject({ outcome: 'error' });
  });

  it('the controller acts on them: no retry, a plain requeue, or a retry with the key backing off', async () => {
    const queue = new WorkQueue({ baseDelayMs: 60_000 });
    const outcomes: { key: string; outcome: ReconcileOutcome }[] = [];
    let settle: (() => void) | undefined;
    const throwing: Record<string, () => Error> = {
      stalled: () => new Stalling('InvalidSpec', 'spec fails validation'),
      waiting: () => new Waiting('Later', 'waits for another object', 60_000),
      failing: () => new Error('the API server is away'),
    };
    const reconcile: Reconciler = async (key) => {
      throw throwing[key]?.();
    };
    const controller = new Controller({
      name: 'test',
      queue,
      reconcile,
      log,
      metrics: new ControllerMetrics(new Registry()),
      concurrency: 1,
      onReconciled: (key, outcome) => {
        outcomes.push({ key, outcome });
        if (outcomes.length === 3) settle?.();
      },
    });
    const all = new Promise<void>((r) => {
      settle = r;
    });
    controller.start();
    for (const key of Object.keys(throwing)) queue.add(key);
    await all;
    expect(outcomes).toEqual([
      { key: 'stalled', outcome: 'terminal_error' },
      { key: 'waiting', outcome: 'requeue' },
      { key: 'failing', outcome: 'error' },
    ]);
    // Scheduled again: the waiting key (without a failure counted) and the failing one (with one).
    expect(queue.depth).toBe(2);
    expect(['stalled', 'waiting', 'failing'].map((k) => queue.numRequeues(k))).toEqual([0, 0, 1]);
    await controller.stop();
  });
});

describe('status written only when it changed', () => {
  const ready = { type: 'Ready', status: 'True', reason: 'Verified', message: 'ok', lastTransitionTime: 't' };
  const other = {
    type: 'Verified',
    status: 'True',
    reason: 'Verified',
    message: 'ok',
    lastTransitionTime: 't',
  };

  it('ignores field order, undefined fields and the order of conditions', () => {
    expect(
      sameStatus(
        { observedGeneration: 1, conditions: [ready, other], models: undefined },
        { conditions: [other, ready], observedGeneration: 1 },
      ),
    ).toBe(true);
    expect(sameStatus({ observedGeneration: 1 }, { observedGeneration: 2 })).toBe(false);
    expect(sameStatus(undefined, { observedGeneration: 1 })).toBe(false);
  });

  it('patches only a difference, removing the fields the new status no longer has', async () => {
    const patches: Record<string, unknown>[] = [];
    const write = async (p: Record<string, unknown>) => {
      patches.push(p);
    };
    const current = { observedGeneration: 1, conditions: [ready], lastVerifiedTime: 'x' };
    expect(await patchStatusIfChanged(current, { ...current }, write)).toBe(false);
    expect(await patchStatusIfChanged(current, { observedGeneration: 2, conditions: [ready] }, write)).toBe(
      true,
    );
    expect(patches).toEqual([{ observedGeneration: 2, conditions: [ready], lastVerifiedTime: null }]);
    expect(statusMergePatch(undefined, { a: 1 })).toEqual({ a: 1 });
  });

  it('a condition change is reported when its status or its reason changes, not its message', () => {
    expect(transitioned(undefined, { status: 'True', reason: 'Verified' })).toBe(true);
    expect(transitioned({ status: 'True', reason: 'Verified' }, { status: 'True', reason: 'Verified' })).toBe(
      false,
    );
    expect(
      transitioned({ status: 'False', reason: 'Unauthorized' }, { status: 'False', reason: 'Timeout' }),
    ).toBe(true);
    expect(
      transitioned({ status: 'Unknown', reason: 'Pending' }, { status: 'False', reason: 'Pending' }),
    ).toBe(true);
  });
});
