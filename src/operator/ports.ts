import type { ModelAllowlistSpec, ModelAllowlistStatus } from '../api/model-allowlist.ts';
import type { ProviderConnectionSpec, ProviderConnectionStatus } from '../api/provider-connection.ts';
import type { SnapshotConnection } from '../snapshot/schema.ts';
import type { ServiceAccountTokenSource } from './credentials/mint.ts';
import type { SecretState } from './logic/connection-status.ts';

/**
 * What the control loop (control-loop.ts) needs from the world, and nothing more. The operator implements these
 * ports with the API server (adapters/kube.ts), standalone mode with manifest files and the environment
 * (src/cli/local-adapters.ts); scheduling, planning, snapshot compilation and metrics are the same in both.
 */

export type Kind = 'ProviderConnection' | 'ModelAllowlist';

/**
 * An object as the loop reads it. The spec is what was admitted, not yet checked by Plugboard's own validation
 * (the connection controller does that). Objects come from a cache: never mutate them.
 */
export interface StoredObject<Spec, Status> {
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    deletionTimestamp?: unknown;
  };
  spec: Spec;
  status?: Status;
}
export type ConnectionObject = StoredObject<ProviderConnectionSpec, ProviderConnectionStatus>;
export type AllowlistObject = StoredObject<ModelAllowlistSpec, ModelAllowlistStatus>;

/** Objects in: the current state of an object by `namespace/name`, undefined when it does not exist. */
export interface ObjectSource {
  connection(key: string): ConnectionObject | undefined;
  allowlist(key: string): AllowlistObject | undefined;
}

/**
 * Secret lookup: the value of the Secret key a connection's credential names (credentialSecretRef: an API key, an
 * Entra ID client secret, a Google service account key), read fresh at every reconcile (it is never cached).
 */
export interface SecretSource {
  secret(namespace: string, spec: ProviderConnectionSpec, signal: AbortSignal): Promise<SecretState>;
}

export type { ServiceAccountTokenSource };

/** Status out: a merge patch of an object's status (top-level fields; null removes one). */
export interface StatusSink {
  patch(kind: Kind, namespace: string, name: string, patch: Record<string, unknown>): Promise<void>;
}

/** Snapshot out: the compiler's per-connection entries (SnapshotCompiler). */
export interface SnapshotEntries {
  has(key: string): boolean;
  set(key: string, entry: SnapshotConnection): void;
  delete(key: string): void;
}

/** A condition's transition (or advice), as an Event in a cluster and a log line in standalone mode. */
export interface ObjectEvent {
  kind: Kind;
  namespace: string;
  name: string;
  uid?: string;
  type: 'Normal' | 'Warning';
  /** The condition whose change this reports. */
  condition: string;
  /** Equal to the condition's reason. */
  reason: string;
  message: string;
}

/** Events and logs out; a failed record is logged by the adapter, never fatal. */
export interface EventSink {
  record(event: ObjectEvent): Promise<void>;
}

/** Every port the control loop takes. */
export interface Ports {
  objects: ObjectSource;
  secrets: SecretSource;
  /** Service account tokens for workload identity (the TokenRequest API); absent outside a cluster. */
  serviceAccountTokens?: ServiceAccountTokenSource;
  status: StatusSink;
  events: EventSink;
  snapshot: SnapshotEntries;
}
