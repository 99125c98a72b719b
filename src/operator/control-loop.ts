import { credentialSecretRef } from '../api/credentials.ts';
import { objectKey } from '../kube/informer.ts';
import type { Snapshot } from '../snapshot/schema.ts';
import { AllowlistController } from './controllers/allowlist.ts';
import { ConnectionController } from './controllers/connection.ts';
import { type Minter, tokenMinter } from './credentials/mint.ts';
import type { Verifier } from './logic/reconcile.ts';
import type { OperatorMetrics } from './metrics.ts';
import type { AllowlistObject, ConnectionObject, Ports } from './ports.ts';
import { Controller, type Log, type ReconcileOutcome } from './runtime/controller.ts';
import { WorkQueue } from './runtime/queue.ts';
import { ReferenceIndex } from './runtime/reference-index.ts';
import { verifyConnection } from './verification/verify.ts';

export type Change = 'add' | 'update' | 'delete';

export interface ControlLoopOptions extends Ports {
  metrics: OperatorMetrics;
  log: Log;
  /** verifyConnection, or a stand-in. */
  verify?: Verifier;
  /** tokenMinter over the serviceAccountTokens port, or a stand-in. */
  mint?: Minter;
  /** ProviderConnection workers (a slow upstream holds one for at most its verification timeout). */
  concurrency?: number;
  /** Called after every reconcile with controller name, key and outcome (tests count reconciles per key). */
  onReconciled?: (controller: string, key: string, outcome: ReconcileOutcome) => void;
}

const secretRefOf = (c: ConnectionObject): string[] => {
  const name = c.spec ? credentialSecretRef(c.spec)?.name : undefined;
  return typeof name === 'string' ? [`${c.metadata.namespace}/${name}`] : [];
};
const connectionRefOf = (a: AllowlistObject): string =>
  `${a.metadata.namespace}/${a.spec?.connectionRef?.name}`;

/**
 * The reconciler shell both modes run: one work queue and controller per kind, the indexes that turn a change
 * into the keys it affects, and the two controllers. Changes come in as keys, never as events to replay: the
 * operator's informers and standalone's manifest files call the `on*` methods; everything after that is the same.
 */
export class ControlLoop {
  private readonly o: ControlLoopOptions;
  private readonly connQueue = new WorkQueue();
  private readonly allowQueue = new WorkQueue();
  /** Secret `namespace/name` → the connections whose credential names it. */
  private readonly secretRefs = new ReferenceIndex();
  /** Allowlist → the connection it names; reversed, a connection's allowlists. */
  private readonly allowlistRefs = new ReferenceIndex();
  private readonly connections: ConnectionController;
  private readonly allowlists: AllowlistController;
  private readonly controllers: Controller[] = [];
  private stopped = false;

  constructor(o: ControlLoopOptions) {
    this.o = o;
    const exit = { status: o.status, events: o.events, metrics: o.metrics };
    this.connections = new ConnectionController({
      ...exit,
      objects: o.objects,
      secrets: o.secrets,
      snapshot: o.snapshot,
      verify: o.verify ?? verifyConnection,
      mint: o.mint ?? tokenMinter({ serviceAccounts: o.serviceAccountTokens }),
      allowlistsOf: (key) =>
        this.allowlistRefs
          .referrers(key)
          .sort()
          .flatMap((k) => o.objects.allowlist(k) ?? []),
      reconciled: (key) => {
        for (const a of this.allowlistRefs.referrers(key)) this.allowQueue.add(a);
      },
    });
    this.allowlists = new AllowlistController({
      ...exit,
      objects: o.objects,
      viewOf: (key) => this.connections.view(key),
    });
  }

  /** The last good model lists of a snapshot written before a restart (see ConnectionController.seed). */
  seed(previous: Snapshot): void {
    this.connections.seed(previous);
  }

  onConnection(change: Change, obj: ConnectionObject, old?: ConnectionObject): void {
    const key = objectKey(obj);
    if (change === 'delete') this.secretRefs.delete(key);
    else this.secretRefs.set(key, secretRefOf(obj));
    // Status writes come back as updates of the same generation; only spec changes and deletes need work.
    if (change === 'update' && old?.metadata.generation === obj.metadata.generation) return;
    this.connQueue.add(key);
  }

  onAllowlist(change: Change, obj: AllowlistObject, old?: AllowlistObject): void {
    const key = objectKey(obj);
    if (change === 'delete') this.allowlistRefs.delete(key);
    else this.allowlistRefs.set(key, [connectionRefOf(obj)]);
    if (change === 'update' && old?.metadata.generation === obj.metadata.generation) return;
    // The connection plans with its allowlists and then enqueues them; one it no longer names is replanned too.
    this.connQueue.add(connectionRefOf(obj));
    if (old && connectionRefOf(old) !== connectionRefOf(obj)) this.connQueue.add(connectionRefOf(old));
  }

  /** A Secret changed: exactly the connections that reference it are reconciled (an index, not a scan). */
  onSecret(key: string): void {
    for (const c of this.secretRefs.referrers(key)) this.connQueue.add(c);
  }

  start(): void {
    const { o } = this;
    const controller = (name: string, queue: WorkQueue, concurrency: number, timeoutMs?: number) => ({
      name,
      queue,
      log: o.log,
      metrics: o.metrics.controller,
      concurrency,
      ...(timeoutMs ? { timeoutMs } : {}),
      onReconciled: (key: string, outcome: ReconcileOutcome) => o.onReconciled?.(name, key, outcome),
    });
    this.controllers.push(
      new Controller({
        ...controller('providerconnection', this.connQueue, o.concurrency ?? 16, 6 * 60_000),
        reconcile: (key, ctx) => this.connections.reconcile(key, ctx),
      }),
      new Controller({
        ...controller('modelallowlist', this.allowQueue, 4),
        reconcile: (key, ctx) => this.allowlists.reconcile(key, ctx),
      }),
    );
    for (const c of this.controllers) c.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.controllers.map((c) => c.stop()));
  }

  /**
   * Resolves once nothing is queued or in flight on either controller: every change handed in so far, and the
   * allowlists it touched, has been reconciled (standalone waits for this before it publishes a snapshot).
   */
  async idle(): Promise<void> {
    while (!this.stopped && !(this.connQueue.idle && this.allowQueue.idle)) {
      await this.connQueue.whenIdle();
      await this.allowQueue.whenIdle();
    }
  }
}
