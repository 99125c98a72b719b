import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The gateway's Prometheus metrics, on a registry of its own (several gateways can live in one process, e.g. in
 * tests). Label values come from the snapshot (connection `ns/name`, exposed model IDs) or a fixed set, never
 * from free client input, so cardinality is bounded by configuration. The mapping to OpenTelemetry GenAI
 * semantic conventions is documented in docs/gateway.md.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'connection' | 'model' | 'endpoint' | 'status'>;
  readonly duration: Histogram<'connection' | 'model' | 'endpoint'>;
  readonly ttft: Histogram<'connection' | 'model' | 'endpoint'>;
  readonly tokens: Counter<'connection' | 'model' | 'type'>;
  readonly upstreamErrors: Counter<'connection' | 'reason'>;
  readonly inFlight: Gauge<'endpoint'>;
  readonly snapshotGeneration: Gauge;
  readonly snapshotLastReload: Gauge;
  readonly snapshotErrors: Counter;
  readonly snapshotOk: Gauge;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'plugboard_gateway_requests_total',
      help: 'Requests handled, by connection (ns/name, "" when none was chosen), model, endpoint and HTTP status.',
      labelNames: ['connection', 'model', 'endpoint', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'plugboard_gateway_request_duration_seconds',
      help: 'Time from the request to the end of the response, streamed responses included.',
      labelNames: ['connection', 'model', 'endpoint'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.ttft = new Histogram({
      name: 'plugboard_gateway_time_to_first_token_seconds',
      help: 'Time from the request to the first streamed chunk sent to the client (streaming requests).',
      labelNames: ['connection', 'model', 'endpoint'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.tokens = new Counter({
      name: 'plugboard_gateway_tokens_total',
      help: 'Tokens reported by upstreams in usage, by type (prompt or completion).',
      labelNames: ['connection', 'model', 'type'],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'plugboard_gateway_upstream_errors_total',
      help:
        'Upstream failures by reason: connect_error, connect_timeout, first_byte_timeout, idle_timeout, ' +
        'total_timeout, reset, status_5xx, status_429.',
      labelNames: ['connection', 'reason'],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'plugboard_gateway_in_flight_requests',
      help: 'Proxied requests in progress.',
      labelNames: ['endpoint'],
      registers,
    });
    this.snapshotGeneration = new Gauge({
      name: 'plugboard_gateway_snapshot_generation',
      help: 'Generation of the routing snapshot in use.',
      registers,
    });
    this.snapshotLastReload = new Gauge({
      name: 'plugboard_gateway_snapshot_last_reload_timestamp_seconds',
      help: 'When the snapshot in use was applied (Unix seconds).',
      registers,
    });
    this.snapshotErrors = new Counter({
      name: 'plugboard_gateway_snapshot_errors_total',
      help: 'Snapshots that could not be loaded (the last good one kept serving).',
      registers,
    });
    this.snapshotOk = new Gauge({
      name: 'plugboard_gateway_snapshot_ok',
      help: '1 when the last snapshot load succeeded, 0 when the last attempt failed.',
      registers,
    });
  }
}
