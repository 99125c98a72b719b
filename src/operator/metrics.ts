import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { ControllerMetrics } from './runtime/controller.ts';

/**
 * Every metric of the reconciler, defined once for the operator and standalone mode (which registers them on the
 * gateway's registry as well); docs/operations.md lists them with their meaning.
 */
export class OperatorMetrics {
  readonly registry = new Registry();
  readonly controller = new ControllerMetrics(this.registry);
  readonly connectionUp = new Gauge({
    name: 'plugboard_connection_up',
    help: '1 when the connection is Ready, else 0.',
    labelNames: ['namespace', 'name'],
    registers: [this.registry],
  });
  readonly verificationDuration = new Histogram({
    name: 'plugboard_verification_duration_seconds',
    help: 'Duration of one verification call (all pages of /models).',
    labelNames: ['provider'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly verificationResults = new Counter({
    name: 'plugboard_verification_results_total',
    help: 'Verification outcomes by condition reason.',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly modelsDiscovered = new Gauge({
    name: 'plugboard_connection_models_discovered',
    help: 'Models the upstream listed at the last successful verification.',
    labelNames: ['namespace', 'name'],
    registers: [this.registry],
  });
  readonly modelsExposed = new Gauge({
    name: 'plugboard_connection_models_exposed',
    help: 'Models the gateway exposes for the connection.',
    labelNames: ['namespace', 'name'],
    registers: [this.registry],
  });
  readonly lastVerified = new Gauge({
    name: 'plugboard_connection_last_verified_timestamp_seconds',
    help: 'Unix time of the last successful verification (status is written only on change; this is always current).',
    labelNames: ['namespace', 'name'],
    registers: [this.registry],
  });
  readonly credentialExpiry = new Gauge({
    name: 'plugboard_connection_credential_expiry_timestamp_seconds',
    help: 'Unix time at which the access token held for the connection expires (entraID and googleCloud).',
    labelNames: ['namespace', 'name'],
    registers: [this.registry],
  });
  readonly tokenRequests = new Counter({
    name: 'plugboard_credential_token_requests_total',
    help: 'Access token requests to identity providers by credential kind and outcome (TokenIssued, or the CredentialReady reason).',
    labelNames: ['kind', 'reason'],
    registers: [this.registry],
  });
  readonly statusWrites = new Counter({
    name: 'plugboard_operator_status_writes_total',
    help: 'Status subresource writes by kind (zero in steady state).',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly snapshotGeneration = new Gauge({
    name: 'plugboard_snapshot_generation',
    help: 'Generation of the last routing snapshot written.',
    registers: [this.registry],
  });
  readonly snapshotLastSync = new Gauge({
    name: 'plugboard_snapshot_last_sync_timestamp_seconds',
    help: 'Unix time of the last snapshot write.',
    registers: [this.registry],
  });
  readonly snapshotBytes = new Gauge({
    name: 'plugboard_snapshot_bytes',
    help: 'Compressed size of the last snapshot written, over all its Secrets (1 + up to 64 shards of ~1 MB).',
    registers: [this.registry],
  });
  readonly snapshotSecrets = new Gauge({
    name: 'plugboard_snapshot_secrets',
    help: 'Secrets holding the last snapshot written: 1, or 1 + shards when it outgrew one Secret.',
    registers: [this.registry],
  });
  readonly isLeader = new Gauge({
    name: 'plugboard_operator_leader',
    help: '1 on the replica that holds the leader Lease.',
    registers: [this.registry],
  });

  /** `defaultMetrics: false` where another registry already collects the process metrics. */
  constructor(o: { defaultMetrics?: boolean } = {}) {
    if (o.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  forgetConnection(namespace: string, name: string) {
    for (const g of [
      this.connectionUp,
      this.modelsDiscovered,
      this.modelsExposed,
      this.lastVerified,
      this.credentialExpiry,
    ]) {
      g.remove({ namespace, name });
    }
  }
}
