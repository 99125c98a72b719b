import { CONDITION_READY } from '../api/conditions.ts';
import type { ModelAllowlist } from '../api/model-allowlist.ts';
import type { ProviderConnection, ProviderConnectionSpec } from '../api/provider-connection.ts';
import type { MemorySnapshotSource } from '../gateway/snapshot-source.ts';
import type { Change, ControlLoop } from '../operator/control-loop.ts';
import type { SecretState } from '../operator/logic/connection-status.ts';
import type { AllowlistRef } from '../operator/logic/exposure.ts';
import type {
  AllowlistObject,
  ConnectionObject,
  EventSink,
  Kind,
  ObjectSource,
  SecretSource,
  StatusSink,
} from '../operator/ports.ts';
import type { Log } from '../operator/runtime/controller.ts';
import type { SnapshotSink } from '../operator/snapshot-compiler.ts';
import type { Loaded, ManifestSet, SecretManifest } from './manifests.ts';
import { resolveSecretFromManifests } from './secrets.ts';

/**
 * The control loop's ports on manifest files and the environment, for standalone mode: the files are the objects,
 * status lives in memory (served by the gateway's /api/connections), Events are log lines and the snapshot goes
 * straight to the gateway. Everything else is the operator's own code.
 */

/** The allowlists naming a connection, as the control loop gathers them. */
export function allowlistRefsFor(set: ManifestSet, namespace: string, name: string): AllowlistRef[] {
  return set.allowlists
    .filter((a) => a.namespace === namespace && a.value.spec.connectionRef.name === name)
    .map((a) => ({
      name: a.name,
      generation: a.value.metadata.generation ?? 1,
      models: a.value.spec.models,
    }));
}

interface Stored<T> {
  object: T;
  /** The spec as last loaded, to tell an edit from a reload that changed nothing. */
  spec: string;
}

type Manifest = ProviderConnection | ModelAllowlist;

/**
 * Objects in, Secret lookup and status out, on a manifest set. Like the API server it keeps status apart from
 * the files and moves `metadata.generation` on when a spec changes, so an edit looks to the loop as it would
 * in a cluster.
 */
export class ManifestStore implements ObjectSource, SecretSource, StatusSink {
  private readonly env: NodeJS.ProcessEnv;
  private readonly objects: Record<Kind, Map<string, Stored<ConnectionObject | AllowlistObject>>> = {
    ProviderConnection: new Map(),
    ModelAllowlist: new Map(),
  };
  private secrets = new Map<string, { manifest: Loaded<SecretManifest>; data: string }>();

  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.env = env;
  }

  /** Takes a valid manifest set and hands every object that appeared, changed or went to the loop. */
  apply(set: ManifestSet, loop: ControlLoop): void {
    this.replace('ProviderConnection', set.connections, (c, o, old) =>
      loop.onConnection(c, o as ConnectionObject, old as ConnectionObject | undefined),
    );
    this.replace('ModelAllowlist', set.allowlists, (c, o, old) =>
      loop.onAllowlist(c, o as AllowlistObject, old as AllowlistObject | undefined),
    );
    const before = this.secrets;
    this.secrets = new Map(
      set.secrets.map((s) => [
        `${s.namespace}/${s.name}`,
        { manifest: s, data: JSON.stringify([s.value.data, s.value.stringData]) },
      ]),
    );
    for (const key of new Set([...before.keys(), ...this.secrets.keys()])) {
      if (before.get(key)?.data !== this.secrets.get(key)?.data) loop.onSecret(key);
    }
  }

  private replace(
    kind: Kind,
    loaded: Loaded<Manifest>[],
    changed: (
      c: Change,
      obj: ConnectionObject | AllowlistObject,
      old?: ConnectionObject | AllowlistObject,
    ) => void,
  ): void {
    const store = this.objects[kind];
    const live = new Set<string>();
    for (const l of loaded) {
      const key = `${l.namespace}/${l.name}`;
      live.add(key);
      const spec = JSON.stringify(l.value.spec);
      const old = store.get(key);
      if (old?.spec === spec) continue;
      const generation = old ? (old.object.metadata.generation ?? 0) + 1 : (l.value.metadata.generation ?? 1);
      const object = {
        ...l.value,
        metadata: { ...l.value.metadata, namespace: l.namespace, generation },
        status: old?.object.status,
      } as ConnectionObject | AllowlistObject;
      store.set(key, { object, spec });
      changed(old ? 'update' : 'add', object, old?.object);
    }
    for (const [key, old] of store) {
      if (live.has(key)) continue;
      store.delete(key);
      changed('delete', old.object);
    }
  }

  connection(key: string): ConnectionObject | undefined {
    return this.objects.ProviderConnection.get(key)?.object as ConnectionObject | undefined;
  }

  allowlist(key: string): AllowlistObject | undefined {
    return this.objects.ModelAllowlist.get(key)?.object as AllowlistObject | undefined;
  }

  async secret(namespace: string, spec: ProviderConnectionSpec): Promise<SecretState> {
    const secrets = [...this.secrets.values()].map((s) => s.manifest);
    return resolveSecretFromManifests(namespace, spec, secrets, this.env);
  }

  async patch(kind: Kind, namespace: string, name: string, patch: Record<string, unknown>): Promise<void> {
    const stored = this.objects[kind].get(`${namespace}/${name}`);
    if (!stored) return;
    const status: Record<string, unknown> = { ...stored.object.status };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete status[k];
      else status[k] = v;
    }
    // A new object: what the loop read before stays as it was.
    stored.object = { ...stored.object, status } as ConnectionObject | AllowlistObject;
  }
}

/** Events out, as log lines: a Ready change as "connection ready" / "... not ready", anything else by reason. */
export function eventsToLog(log: Log): EventSink {
  return {
    async record(e) {
      const noun = e.kind === 'ProviderConnection' ? 'connection' : 'allowlist';
      const what = e.condition === CONDITION_READY ? (e.type === 'Normal' ? 'ready' : 'not ready') : e.reason;
      const fields = { [noun]: `${e.namespace}/${e.name}`, reason: e.reason, message: e.message };
      if (e.type === 'Normal') log.info(fields, `${noun} ${what}`);
      else log.warn(fields, `${noun} ${what}`);
    },
  };
}

/** Snapshot out: straight to the gateway's in-memory source (no Secret, so no bytes or Secrets to count). */
export function snapshotsToGateway(source: MemorySnapshotSource, afterSet: () => void): SnapshotSink {
  return {
    async write(snapshot) {
      source.set(snapshot);
      afterSet();
      return { bytes: 0, secrets: 0 };
    },
  };
}
