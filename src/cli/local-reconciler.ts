import { isAllowlistFault } from '../api/model-allowlist.ts';
import type { ProviderConnection, ProviderConnectionStatus } from '../api/provider-connection.ts';
import { planAllowlist } from '../operator/logic/allowlist-status.ts';
import type { VerificationMemory } from '../operator/logic/connection-status.ts';
import type { AllowlistRef } from '../operator/logic/exposure.ts';
import { type ReconcileStep, type Verifier, verifyIfDueAndPlan } from '../operator/logic/reconcile.ts';
import { SNAPSHOT_FORMAT, type Snapshot, type SnapshotConnection } from '../snapshot/schema.ts';
import type { Loaded, ManifestSet } from './manifests.ts';
import { resolveSecretFromManifests } from './secrets.ts';

export interface LocalLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface LocalReconcilerOptions {
  verify: Verifier;
  log: LocalLog;
  env?: NodeJS.ProcessEnv;
  /** Called with every new snapshot (content changed), after the first full round of verifications. */
  onSnapshot: (snapshot: Snapshot) => void;
  /** Called after each connection's reconcile (metrics). */
  onReconciled?: (key: string, step: ReconcileStep) => void;
  onForget?: (key: string) => void;
}

/** The allowlists naming a connection, as the operator gathers them. */
export function allowlistRefsFor(set: ManifestSet, namespace: string, name: string): AllowlistRef[] {
  return set.allowlists
    .filter((a) => a.namespace === namespace && a.value.spec.connectionRef.name === name)
    .map((a) => ({
      name: a.name,
      generation: a.value.metadata.generation ?? 1,
      models: a.value.spec.models,
    }));
}

const keyOf = (c: Loaded<ProviderConnection>) => `${c.namespace}/${c.name}`;

/**
 * The operator's reconcile loop for manifests in files: each connection is verified on the operator's schedule
 * (verifyIfDueAndPlan: interval with jitter, backoff while failing, at once when its spec or key changes) and
 * planned with planConnection; the plans' snapshot entries make the routing snapshot. Status stays in memory
 * (there is no API server to write it to) and is served by the gateway's /api/connections.
 */
export class LocalReconciler {
  private readonly o: LocalReconcilerOptions;
  private config: ManifestSet | undefined;
  private readonly memory = new Map<string, VerificationMemory>();
  private readonly status = new Map<string, ProviderConnectionStatus>();
  private readonly entries = new Map<string, SnapshotConnection>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly abort = new AbortController();
  private generation = 0;
  private lastContent = '';
  private started = false;
  private stopped = false;

  constructor(o: LocalReconcilerOptions) {
    this.o = o;
  }

  /** Applies a valid manifest set: removed connections leave, every other one is reconciled. */
  async apply(config: ManifestSet): Promise<void> {
    this.config = config;
    const live = new Set(config.connections.map(keyOf));
    for (const key of [...this.entries.keys(), ...this.memory.keys()]) {
      if (live.has(key)) continue;
      this.memory.delete(key);
      this.status.delete(key);
      this.entries.delete(key);
      clearTimeout(this.timers.get(key));
      this.timers.delete(key);
      this.o.onForget?.(key);
    }
    await Promise.all([...live].map((key) => this.reconcile(key)));
    this.started = true;
    this.publish();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Runs one reconcile of a connection; a request during a running one runs once more after it. */
  private reconcile(key: string): Promise<void> {
    const running = this.inFlight.get(key);
    if (running) {
      this.again.add(key);
      return running;
    }
    const run = this.reconcileOnce(key)
      .catch((err) => this.o.log.warn({ connection: key, err: (err as Error).message }, 'reconcile failed'))
      .finally(() => {
        this.inFlight.delete(key);
        if (this.again.delete(key) && !this.stopped) void this.reconcile(key);
      });
    this.inFlight.set(key, run);
    return run;
  }

  private async reconcileOnce(key: string): Promise<void> {
    const config = this.config;
    const conn = config?.connections.find((c) => keyOf(c) === key);
    if (!config || !conn || this.stopped) return;
    const { namespace, name } = conn;
    const spec = conn.value.spec;
    const previousStatus = this.status.get(key);
    const step = await verifyIfDueAndPlan(
      {
        namespace,
        name,
        generation: conn.value.metadata.generation ?? 1,
        spec,
        secret: resolveSecretFromManifests(namespace, spec, config.secrets, this.o.env),
        allowlists: allowlistRefsFor(config, namespace, name),
        memory: this.memory.get(key),
        previousStatus,
      },
      this.o.verify,
      this.abort.signal,
    );
    // The connection may have been removed or replaced while its upstream was being called.
    if (this.stopped || this.config?.connections.every((c) => keyOf(c) !== key)) return;
    const { plan } = step;
    if (step.memory) this.memory.set(key, step.memory);
    this.status.set(key, plan.status);
    this.entries.set(key, plan.snapshot);
    if (step.verified) {
      this.o.log.debug(
        { connection: key, reason: step.verified.reason, ms: Math.round(step.verified.durationMs) },
        'verified',
      );
    }
    const before = previousStatus?.conditions?.find((c) => c.type === 'Ready');
    if (before?.reason !== plan.ready.reason || before?.status !== plan.ready.status) {
      // What the operator records as an Event.
      const fields = { connection: key, reason: plan.ready.reason, message: plan.ready.message };
      if (plan.ready.status === 'True') this.o.log.info(fields, 'connection ready');
      else this.o.log.warn(fields, 'connection not ready');
    }
    for (const a of allowlistRefsFor(config, namespace, name)) {
      const { ready } = planAllowlist({
        namespace,
        name: a.name,
        generation: a.generation ?? 1,
        connectionName: name,
        connection: plan.view,
        previousStatus: undefined,
        now: new Date(),
      });
      if (ready.status !== 'True' && isAllowlistFault(ready.reason)) {
        this.o.log.warn(
          { allowlist: `${namespace}/${a.name}`, reason: ready.reason, message: ready.message },
          'allowlist not ready',
        );
      }
    }
    this.o.onReconciled?.(key, step);

    clearTimeout(this.timers.get(key));
    if (plan.requeueAfterMs !== undefined && !this.stopped) {
      const t = setTimeout(() => void this.reconcile(key).then(() => this.publish()), plan.requeueAfterMs);
      t.unref();
      this.timers.set(key, t);
    }
    if (this.started) this.publish();
  }

  /** Builds the snapshot from the current plans; a new generation only when something changed. */
  private publish(): void {
    if (!this.started || this.stopped) return;
    const connections = [...this.entries.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, c]) => c);
    const content = JSON.stringify(connections);
    if (content === this.lastContent) return;
    this.lastContent = content;
    this.generation += 1;
    this.o.onSnapshot({
      format: SNAPSHOT_FORMAT,
      generation: this.generation,
      generatedAt: new Date().toISOString(),
      connections,
    });
  }

  /** For the log line after a reload. */
  summary(): { connections: number; ready: number } {
    const all = [...this.entries.values()];
    return { connections: all.length, ready: all.filter((c) => c.status.ready.status === 'True').length };
  }
}
