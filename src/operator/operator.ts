import { createServer, type Server } from 'node:http';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION, GROUP, VERSION } from '../api/common.ts';
import { REASON_INVALID_SPEC } from '../api/conditions.ts';
import type { ModelAllowlist } from '../api/model-allowlist.ts';
import {
  type ProviderConnection,
  ProviderConnectionSpec,
  type ProviderConnectionStatus,
} from '../api/provider-connection.ts';
import { describeIssues } from '../api/validate.ts';
import type { KubeAuth } from '../kube/auth.ts';
import { KubeClient, KubeError, resourcePath } from '../kube/client.ts';
import { Informer, type ObjectWithMeta, objectKey } from '../kube/informer.ts';
import { SNAPSHOT_SECRET_NAME } from '../snapshot/codec.ts';
import { planAllowlist } from './logic/allowlist-status.ts';
import type { ConnectionPlan, SecretState, VerificationMemory } from './logic/connection-status.ts';
import type { AllowlistRef } from './logic/exposure.ts';
import { planInvalidSpec } from './logic/invalid-spec.ts';
import { verifyIfDueAndPlan } from './logic/reconcile.ts';
import { OperatorMetrics } from './metrics.ts';
import {
  Controller,
  type ReconcileContext,
  type ReconcileOutcome,
  type ReconcileResult,
} from './runtime/controller.ts';
import { Stalling } from './runtime/errors.ts';
import { EventRecorder } from './runtime/events.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import { WorkQueue } from './runtime/queue.ts';
import { ReferenceIndex } from './runtime/reference-index.ts';
import { sameStatus } from './runtime/status.ts';
import { SnapshotWriter } from './snapshot-writer.ts';
import { verifyConnection } from './verification/verify.ts';

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

type Conn = ProviderConnection & ObjectWithMeta;
type Allow = ModelAllowlist & ObjectWithMeta;
interface SecretMeta extends ObjectWithMeta {}
interface Secret {
  metadata: { resourceVersion?: string };
  data?: Record<string, string>;
}

const CONNECTIONS = 'providerconnections';
/** `namespace/name` of the Secret a connection reads its key from, for the Secret → connections index. */
const secretRefOf = (c: Conn): string[] => {
  const name = c.spec?.apiKeySecretRef?.name;
  return typeof name === 'string' ? [`${c.metadata?.namespace}/${name}`] : [];
};
const ALLOWLISTS = 'modelallowlists';

export class Operator {
  readonly metrics = new OperatorMetrics();
  private readonly o: OperatorOptions;
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly events: EventRecorder;
  private readonly memory = new Map<string, VerificationMemory>();
  /** Secret `namespace/name` → the connections whose apiKeySecretRef names it. */
  private readonly secretRefs = new ReferenceIndex();
  private readonly connInformers: Informer<Conn>[] = [];
  private readonly allowInformers: Informer<Allow>[] = [];
  private readonly secretInformers: Informer<SecretMeta>[] = [];
  private readonly connQueue = new WorkQueue();
  private readonly allowQueue = new WorkQueue();
  private readonly controllers: Controller[] = [];
  private readonly writer: SnapshotWriter;
  private elector: LeaderElector | undefined;
  private server: Server | undefined;
  private running = false;
  private startedLeading: Promise<void> | undefined;

  constructor(o: OperatorOptions) {
    this.o = o;
    this.client = new KubeClient(o.kubeConfig);
    this.log = o.log;
    this.events = new EventRecorder(this.client, 'plugboard-operator', o.log);
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

  private namespaces(): (string | undefined)[] {
    return this.o.watchNamespaces?.length ? this.o.watchNamespaces : [undefined];
  }

  private async lead(): Promise<void> {
    this.running = true;
    this.metrics.isLeader.set(1);
    const previous = await this.writer.load();
    for (const c of previous?.connections ?? []) {
      // Seed the last good models so a failing upstream keeps serving after a restart.
      const at = c.status.lastVerifiedTime ? Date.parse(c.status.lastVerifiedTime) : Date.now();
      this.memory.set(`${c.namespace}/${c.name}`, {
        fingerprint: '',
        outcome: {
          ok: false,
          reason: 'UpstreamError',
          message: 'not verified since the operator started',
          durationMs: 0,
        },
        checkedAt: 0,
        nextDueAt: 0,
        consecutiveFailures: 0,
        lastGood: {
          models: c.models.map((m) => {
            // The exposed ID without the connection's prefix; the listed ID when the upstream spells it otherwise.
            const id = c.modelPrefix ? m.id.slice(c.modelPrefix.length + 1) : m.id;
            return {
              id,
              ...(id !== m.upstreamId ? { upstreamId: m.upstreamId } : {}),
              created: m.created,
              ownedBy: m.ownedBy,
            };
          }),
          at,
        },
      });
    }
    if (this.o.snapshotSecretName === undefined && previous)
      this.metrics.snapshotGeneration.set(previous.generation);

    for (const ns of this.namespaces()) {
      const connInf = new Informer<Conn>(
        this.client,
        { path: resourcePath({ group: GROUP, version: VERSION, plural: CONNECTIONS, namespace: ns }) },
        this.log,
      );
      const allowInf = new Informer<Allow>(
        this.client,
        { path: resourcePath({ group: GROUP, version: VERSION, plural: ALLOWLISTS, namespace: ns }) },
        this.log,
      );
      const secretInf = new Informer<SecretMeta>(
        this.client,
        {
          path: resourcePath({ group: '', version: 'v1', plural: 'secrets', namespace: ns }),
          metadataOnly: true,
        },
        this.log,
      );
      connInf.on((ev, obj, old) => {
        if (ev === 'delete') this.secretRefs.delete(objectKey(obj));
        else this.secretRefs.set(objectKey(obj), secretRefOf(obj));
        // Our own status writes come back as updates; only spec (generation) changes and deletes need work.
        if (ev === 'update' && old?.metadata?.generation === obj.metadata?.generation) return;
        this.connQueue.add(objectKey(obj));
      });
      allowInf.on((ev, obj, old) => {
        if (ev === 'update' && old?.metadata?.generation === obj.metadata?.generation) return;
        const ns = obj.metadata?.namespace as string;
        this.connQueue.add(`${ns}/${obj.spec?.connectionRef?.name}`);
        if (old && old.spec?.connectionRef?.name !== obj.spec?.connectionRef?.name) {
          this.connQueue.add(`${ns}/${old.spec?.connectionRef?.name}`);
        }
        if (ev !== 'delete') this.allowQueue.add(objectKey(obj));
      });
      secretInf.on((_ev, obj) => {
        for (const key of this.secretRefs.referrers(objectKey(obj))) this.connQueue.add(key);
      });
      this.connInformers.push(connInf);
      this.allowInformers.push(allowInf);
      this.secretInformers.push(secretInf);
    }
    const all = [...this.connInformers, ...this.allowInformers, ...this.secretInformers];
    for (const inf of all) inf.start();
    await Promise.all(all.map((i) => i.waitForSync()));

    // Connections deleted while no operator ran leave the snapshot now.
    const live = new Set(this.allConnections().map(objectKey));
    for (const key of this.writer.keys()) if (!live.has(key)) this.writer.delete(key);
    this.writer.sync();

    const concurrency = this.o.concurrency ?? 16;
    this.controllers.push(
      new Controller({
        name: 'providerconnection',
        queue: this.connQueue,
        reconcile: (key, ctx) => this.reconcileConnection(key, ctx),
        log: this.log,
        metrics: this.metrics.controller,
        concurrency,
        timeoutMs: 6 * 60_000,
        onReconciled: (key, outcome) => this.o.onReconciled?.('providerconnection', key, outcome),
      }),
      new Controller({
        name: 'modelallowlist',
        queue: this.allowQueue,
        reconcile: (key, ctx) => this.reconcileAllowlist(key, ctx),
        log: this.log,
        metrics: this.metrics.controller,
        concurrency: 4,
        onReconciled: (key, outcome) => this.o.onReconciled?.('modelallowlist', key, outcome),
      }),
    );
    for (const c of this.controllers) c.start();
    this.log.info({ connections: live.size }, 'operator started');
  }

  /** `flush`: still the leader (graceful stop), so pending snapshot changes are written before letting go. */
  private async stopControllers(flush: boolean): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await Promise.all(this.controllers.map((c) => c.stop()));
    if (flush) await this.writer.flush();
    this.writer.stop();
    await Promise.all(
      [...this.connInformers, ...this.allowInformers, ...this.secretInformers].map((i) => i.stop()),
    );
  }

  private allConnections(): Conn[] {
    return this.connInformers.flatMap((i) => i.list());
  }

  private findConnection(key: string): Conn | undefined {
    for (const i of this.connInformers) {
      const c = i.get(key);
      if (c) return c;
    }
    return undefined;
  }

  private allowlistsFor(namespace: string, name: string): Allow[] {
    return this.allowInformers
      .flatMap((i) => i.list())
      .filter((a) => a.metadata?.namespace === namespace && a.spec?.connectionRef?.name === name);
  }

  private async resolveSecret(
    namespace: string,
    spec: ProviderConnectionSpec,
    signal: AbortSignal,
  ): Promise<SecretState> {
    const ref = spec.apiKeySecretRef;
    if (!ref) return { kind: 'none' };
    try {
      const s = await this.client.get<Secret>(`/api/v1/namespaces/${namespace}/secrets/${ref.name}`, {
        signal,
      });
      const raw = s.data?.[ref.key];
      if (raw === undefined) return { kind: 'keyMissing', secretName: ref.name, key: ref.key };
      return {
        kind: 'resolved',
        apiKey: Buffer.from(raw, 'base64').toString('utf8').trim(),
        version: s.metadata.resourceVersion ?? '',
      };
    } catch (err) {
      // 403 is reported like 404 so the message never reveals what exists where the operator may not look.
      if (KubeError.is(err, 404) || KubeError.is(err, 403)) return { kind: 'notFound', secretName: ref.name };
      throw err;
    }
  }

  private async reconcileConnection(
    key: string,
    ctx: ReconcileContext,
  ): Promise<ReconcileResult | undefined> {
    const [namespace, name] = key.split('/') as [string, string];
    const cached = this.findConnection(key);
    if (!cached || cached.metadata?.deletionTimestamp) {
      this.memory.delete(key);
      this.writer.delete(key);
      this.metrics.forgetConnection(namespace, name);
      for (const a of this.allowlistsFor(namespace, name)) this.allowQueue.add(objectKey(a));
      return undefined;
    }
    const obj = structuredClone(cached);
    const parsed = ProviderConnectionSpec.safeParse(obj.spec);
    if (!parsed.success) return this.stallConnection(obj, describeIssues(parsed.error));
    const spec = parsed.data;
    const secret = await this.resolveSecret(namespace, spec, ctx.signal);
    const allowlists: AllowlistRef[] = this.allowlistsFor(namespace, name).map((a) => ({
      name: a.metadata.name,
      generation: a.metadata.generation,
      models: a.spec.models,
    }));

    const step = await verifyIfDueAndPlan(
      {
        namespace,
        name,
        generation: obj.metadata.generation ?? 0,
        spec,
        secret,
        allowlists,
        memory: this.memory.get(key),
        previousStatus: obj.status,
      },
      verifyConnection,
      ctx.signal,
    );
    if (step.verified) {
      this.metrics.verificationDuration.observe({ provider: spec.provider }, step.verified.durationMs / 1000);
      this.metrics.verificationResults.inc({ reason: step.verified.reason });
      ctx.log.debug({ reason: step.verified.reason, ms: Math.round(step.verified.durationMs) }, 'verified');
    }
    if (step.memory) this.memory.set(key, step.memory);
    const plan = step.plan;
    await this.applyPlan(obj, plan, ctx);
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
  }

  /**
   * A spec the API server admitted but validation refuses: Ready False and Stalled True with the errors, an
   * Event on the transition, and no retry (the object's next generation enqueues it). The snapshot keeps the last
   * valid spec, if there was one, so bad input takes nothing out of service.
   */
  private async stallConnection(obj: Conn, issues: string[]): Promise<never> {
    const { namespace, name } = obj.metadata as { namespace: string; name: string };
    const plan = planInvalidSpec<ProviderConnectionStatus>({
      generation: obj.metadata.generation ?? 0,
      issues,
      serving: this.writer.has(`${namespace}/${name}`),
      previousStatus: obj.status,
      now: new Date(),
    });
    if (plan.statusChanged) {
      await this.patchStatus(CONNECTIONS, namespace, name, plan.status);
      this.metrics.statusWrites.inc({ kind: 'ProviderConnection' });
      const before = obj.status?.conditions?.find((c) => c.type === 'Ready');
      if (before?.reason !== REASON_INVALID_SPEC || before?.status !== plan.ready.status) {
        await this.events.record(
          { apiVersion: API_VERSION, kind: 'ProviderConnection', namespace, name, uid: obj.metadata.uid },
          'Warning',
          REASON_INVALID_SPEC,
          plan.ready.message,
        );
      }
    }
    this.metrics.connectionUp.set({ namespace, name }, 0);
    throw new Stalling(REASON_INVALID_SPEC, `spec fails validation: ${issues.slice(0, 3).join('; ')}`);
  }

  private async applyPlan(obj: Conn, plan: ConnectionPlan, ctx: ReconcileContext) {
    const { namespace, name } = obj.metadata as { namespace: string; name: string };
    const involved = {
      apiVersion: API_VERSION,
      kind: 'ProviderConnection',
      namespace,
      name,
      uid: obj.metadata.uid,
    };
    // Routing first: the snapshot entry is queued before Ready shows in status, and a failed status write does not
    // hold back routing.
    this.writer.set(`${namespace}/${name}`, plan.snapshot);
    if (plan.statusChanged) {
      const removed = Object.fromEntries(
        Object.keys(obj.status ?? {})
          .filter((k) => !(k in plan.status))
          .map((k) => [k, null]),
      );
      await this.patchStatus(CONNECTIONS, namespace, name, { ...removed, ...plan.status });
      this.metrics.statusWrites.inc({ kind: 'ProviderConnection' });
      const before = obj.status?.conditions?.find((c) => c.type === 'Ready');
      if (before?.reason !== plan.ready.reason || before?.status !== plan.ready.status) {
        await this.events.record(
          involved,
          plan.ready.status === 'True' ? 'Normal' : 'Warning',
          plan.ready.reason,
          plan.ready.message,
        );
      }
    }
    if (plan.manyModels) {
      const msg = plan.status.conditions?.find((c) => c.type === 'ModelsDiscovered')?.message ?? '';
      await this.events.record(involved, 'Warning', 'TooManyModels', msg);
    }
    for (const a of plan.view.allowlists.keys()) {
      const current = this.allowInformers.map((i) => i.get(`${namespace}/${a}`)).find(Boolean);
      if (!current) continue;
      const { status } = planAllowlist({
        namespace,
        name: a,
        generation: current.metadata.generation ?? 0,
        connectionName: name,
        connection: plan.view,
        previousStatus: current.status,
        now: new Date(),
      });
      if (!sameStatus(status, current.status ?? {})) {
        await this.patchStatus(ALLOWLISTS, namespace, a, status);
        this.metrics.statusWrites.inc({ kind: 'ModelAllowlist' });
      }
    }
    this.metrics.connectionUp.set({ namespace, name }, plan.ready.status === 'True' ? 1 : 0);
    this.metrics.modelsExposed.set({ namespace, name }, plan.status.exposedModelCount ?? 0);
    if (plan.status.discoveredModelCount !== undefined) {
      this.metrics.modelsDiscovered.set({ namespace, name }, plan.status.discoveredModelCount);
    }
    const last = this.memory.get(`${namespace}/${name}`)?.lastGood?.at;
    if (last) this.metrics.lastVerified.set({ namespace, name }, last / 1000);
    ctx.log.debug({ ready: plan.ready.reason, wrote: plan.statusChanged }, 'reconciled');
  }

  private async reconcileAllowlist(key: string, ctx: ReconcileContext): Promise<ReconcileResult | undefined> {
    const current = this.allowInformers.map((i) => i.get(key)).find(Boolean);
    if (!current) return undefined;
    const [namespace] = key.split('/') as [string];
    const connName = current.spec.connectionRef.name;
    if (this.findConnection(`${namespace}/${connName}`)) {
      // The connection's reconcile computes this list's exposure together with its own.
      this.connQueue.add(`${namespace}/${connName}`);
      return undefined;
    }
    const { status } = planAllowlist({
      namespace,
      name: current.metadata.name,
      generation: current.metadata.generation ?? 0,
      connectionName: connName,
      connection: undefined,
      previousStatus: current.status,
      now: new Date(),
    });
    if (!sameStatus(status, current.status ?? {})) {
      await this.patchStatus(ALLOWLISTS, namespace, current.metadata.name, status);
      this.metrics.statusWrites.inc({ kind: 'ModelAllowlist' });
      ctx.log.debug('allowlist refers to a missing connection');
    }
    return undefined;
  }

  private async patchStatus(plural: string, namespace: string, name: string, status: unknown) {
    try {
      await this.client.request(
        'PATCH',
        resourcePath({ group: GROUP, version: VERSION, plural, namespace, name, subresource: 'status' }),
        { body: { status }, contentType: 'application/merge-patch+json' },
      );
    } catch (err) {
      if (KubeError.is(err, 404)) return; // deleted meanwhile; its delete event cleans up
      throw err;
    }
  }

  private ready(): { ok: boolean; detail: string } {
    const informers = [...this.connInformers, ...this.allowInformers, ...this.secretInformers];
    if (this.elector && !this.running) return { ok: true, detail: 'standby (not leader)' };
    if (!this.running) return { ok: false, detail: 'starting' };
    const unsynced = informers.filter((i) => !i.hasSynced).length;
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
