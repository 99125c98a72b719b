import { createServer, type Server } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION } from '../api/common.ts';
import type { KubeAuth } from '../kube/auth.ts';
import { KubeClient, resourcePath } from '../kube/client.ts';
import { Informer, type ObjectWithMeta, objectKey } from '../kube/informer.ts';
import { SNAPSHOT_SECRET_NAME } from '../snapshot/codec.ts';
import {
  type CachedAllowlist,
  type CachedConnection,
  eventsToApi,
  InformerObjects,
  PLURALS,
  secretsFromApi,
  serviceAccountTokensFromApi,
  statusToApi,
} from './adapters/kube.ts';
import { ControlLoop } from './control-loop.ts';
import { OperatorMetrics } from './metrics.ts';
import type { ReconcileOutcome } from './runtime/controller.ts';
import { EventRecorder } from './runtime/events.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { SnapshotWriter } from './snapshot-writer.ts';

export interface OperatorOptions {
  /** A kubeconfig, or the in-cluster service account (src/kube/auth.ts). */
  kubeConfig: KubeConfig | KubeAuth;
  /** The operator's own namespace: the snapshot Secret and the leader Lease live here. */
  namespace: string;
  /** Namespaces to watch; empty means all. */
  watchNamespaces?: string[];
  identity: string;
  log: Logger;
  leaderElection?: boolean;
  leaseName?: string;
  snapshotSecretName?: string;
  /** Largest gzip chunk per snapshot Secret (default SNAPSHOT_MAX_BYTES); tests shard small snapshots with it. */
  snapshotChunkBytes?: number;
  concurrency?: number;
  /** host:port for /healthz, /readyz and /metrics; omit to serve nothing. */
  probeListen?: { host: string; port: number };
  /** Shorter lease timings for tests. */
  leaseDurationMs?: number;
  retryPeriodMs?: number;
  renewDeadlineMs?: number;
  /** Called when leadership is lost (the CLI exits so the pod restarts cleanly). */
  onLostLeadership?: () => void;
  /** Called after every reconcile with controller name, key and outcome (tests count reconciles per key). */
  onReconciled?: (controller: string, key: string, outcome: ReconcileOutcome) => void;
}

/**
 * The manager: leader election, probes and metrics, and, while leading, the informers that feed the control
 * loop (control-loop.ts) through the Kubernetes adapters (adapters/kube.ts) and the snapshot Secret writer.
 */
export class Operator {
  readonly metrics = new OperatorMetrics();
  private readonly o: OperatorOptions;
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly writer: SnapshotWriter;
  private objects = new InformerObjects();
  private secretInformers: Informer<ObjectWithMeta>[] = [];
  private loop: ControlLoop | undefined;
  private elector: LeaderElector | undefined;
  private server: Server | undefined;
  private running = false;
  private startedLeading: Promise<void> | undefined;

  constructor(o: OperatorOptions) {
    this.o = o;
    this.client = new KubeClient(o.kubeConfig);
    this.log = o.log;
    this.writer = new SnapshotWriter({
      client: this.client,
      namespace: o.namespace,
      name: o.snapshotSecretName ?? SNAPSHOT_SECRET_NAME,
      chunkBytes: o.snapshotChunkBytes,
      log: o.log.child({ component: 'snapshot' }),
      onWritten: (generation, bytes, secrets) => {
        this.metrics.snapshotGeneration.set(generation);
        this.metrics.snapshotBytes.set(bytes);
        this.metrics.snapshotSecrets.set(secrets);
        this.metrics.snapshotLastSync.set(Date.now() / 1000);
      },
    });
  }

  get snapshotGeneration(): number {
    return this.writer.currentGeneration;
  }

  get isLeader(): boolean {
    return this.running;
  }

  async start(): Promise<void> {
    if (this.o.probeListen) await this.serveProbes(this.o.probeListen);
    if (this.o.leaderElection === false) {
      await this.lead();
      return;
    }
    this.elector = new LeaderElector(
      this.client,
      {
        namespace: this.o.namespace,
        name: this.o.leaseName ?? 'plugboard-operator',
        identity: this.o.identity,
        leaseDurationMs: this.o.leaseDurationMs,
        retryPeriodMs: this.o.retryPeriodMs,
        renewDeadlineMs: this.o.renewDeadlineMs,
      },
      this.log,
    );
    this.elector.run(
      () => {
        this.startedLeading = this.lead().catch((err) =>
          this.log.error({ err: (err as Error).message }, 'failed to start'),
        );
      },
      () => {
        this.metrics.isLeader.set(0);
        void this.stopControllers(false);
        this.o.onLostLeadership?.();
      },
    );
  }

  async stop(): Promise<void> {
    await this.startedLeading;
    await this.stopControllers(true);
    await this.elector?.stop();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server?.closeAllConnections();
    this.client.close();
  }

  /** Waits until the current snapshot content has been written. */
  async flushSnapshot(): Promise<void> {
    await this.writer.flush();
  }

  /** Every informer, for start, sync, readiness and stop. */
  private informers(): Pick<Informer<ObjectWithMeta>, 'start' | 'waitForSync' | 'hasSynced' | 'stop'>[] {
    return [...this.objects.connections, ...this.objects.allowlists, ...this.secretInformers];
  }

  private async lead(): Promise<void> {
    this.running = true;
    this.metrics.isLeader.set(1);
    this.objects = new InformerObjects();
    this.secretInformers = [];
    const loop = new ControlLoop({
      objects: this.objects,
      secrets: secretsFromApi(this.client),
      serviceAccountTokens: serviceAccountTokensFromApi(this.client),
      status: statusToApi(this.client),
      events: eventsToApi(new EventRecorder(this.client, 'plugboard-operator', this.log)),
      snapshot: this.writer,
      metrics: this.metrics,
      log: this.log,
      concurrency: this.o.concurrency,
      onReconciled: this.o.onReconciled,
    });
    this.loop = loop;
    // The snapshot already there keeps routing (and its last good lists) across the restart.
    const previous = await this.writer.load();
    if (previous) loop.seed(previous);
    if (this.o.snapshotSecretName === undefined && previous)
      this.metrics.snapshotGeneration.set(previous.generation);

    const namespaces = this.o.watchNamespaces?.length ? this.o.watchNamespaces : [undefined];
    const watch = <T extends ObjectWithMeta>(plural: string, namespace?: string, core = false) =>
      new Informer<T>(
        this.client,
        {
          path: resourcePath({ group: core ? '' : GROUP, version: core ? 'v1' : VERSION, plural, namespace }),
          metadataOnly: core,
        },
        this.log,
      );
    for (const ns of namespaces) {
      const conns = watch<CachedConnection>(PLURALS.ProviderConnection, ns);
      const lists = watch<CachedAllowlist>(PLURALS.ModelAllowlist, ns);
      // Metadata only: a Secret event says which connections to reconcile; the key is read at reconcile time.
      const secrets = watch<ObjectWithMeta>('secrets', ns, true);
      conns.on((change, obj, old) => loop.onConnection(change, obj, old));
      lists.on((change, obj, old) => loop.onAllowlist(change, obj, old));
      secrets.on((_change, obj) => loop.onSecret(objectKey(obj)));
      this.objects.connections.push(conns);
      this.objects.allowlists.push(lists);
      this.secretInformers.push(secrets);
    }
    const all = this.informers();
    for (const inf of all) inf.start();
    await Promise.all(all.map((i) => i.waitForSync()));

    // Connections deleted while no operator ran leave the snapshot now.
    const live = new Set(this.objects.allConnections().map(objectKey));
    for (const key of this.writer.keys()) if (!live.has(key)) this.writer.delete(key);
    this.writer.sync();
    loop.start();
    this.log.info({ connections: live.size }, 'operator started');
  }

  /** `flush`: still the leader (graceful stop), so pending snapshot changes are written before letting go. */
  private async stopControllers(flush: boolean): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.loop?.stop();
    if (flush) await this.writer.flush();
    this.writer.stop();
    await Promise.all(this.informers().map((i) => i.stop()));
  }

  private ready(): { ok: boolean; detail: string } {
    if (this.elector && !this.running) return { ok: true, detail: 'standby (not leader)' };
    if (!this.running) return { ok: false, detail: 'starting' };
    const unsynced = this.informers().filter((i) => !i.hasSynced).length;
    if (unsynced) return { ok: false, detail: `${unsynced} caches not synced` };
    if (this.writer.lastError) return { ok: true, detail: `leader; snapshot: ${this.writer.lastError}` };
    return { ok: true, detail: `leader; snapshot generation ${this.writer.currentGeneration}` };
  }

  private async serveProbes(listen: { host: string; port: number }): Promise<void> {
    this.server = createServer(async (req, res) => {
      if (req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (req.url === '/readyz') {
        const r = this.ready();
        res.writeHead(r.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${r.detail}\n`);
      } else if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
        res.end(await this.metrics.registry.metrics());
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => this.server?.listen(listen.port, listen.host, resolve));
  }

  get probeAddress(): string | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? `http://${a.address}:${a.port}` : undefined;
  }
}
