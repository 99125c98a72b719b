import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** What one request adds to the per-route series, recorded by GatewayMetrics.record(). */
export interface RequestRecord {
  connection: string;
  model: string;
  endpoint: string;
  status: number;
  seconds: number;
  promptTokens?: number;
  completionTokens?: number;
}

/** Plain totals of one (connection, model, endpoint), folded into prom-client's series at scrape time. */
interface RouteTotals {
  labels: { connection: string; model: string; endpoint: string };
  byStatus: Map<number, number>;
  promptTokens: number;
  completionTokens: number;
  duration: { observe(value: number): void };
}

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
  readonly rejected: Counter<'route' | 'status' | 'code'>;
  readonly inFlight: Gauge<'endpoint'>;
  readonly snapshotGeneration: Gauge;
  readonly snapshotLastReload: Gauge;
  readonly snapshotErrors: Counter;
  readonly snapshotOk: Gauge;
  readonly clientKeys: Gauge;
  readonly logLinesDropped: Counter;
  readonly clientKeysState: Gauge<'state'>;
  // prom-client validates and hashes the label set on every inc(); on the proxy's path these are plain additions,
  // handed to prom-client when it is scraped. Keyed by label values, so bounded by the snapshot like the series.
  private readonly totals = new Map<string, RouteTotals>();
  private readonly totalsOf = new WeakMap<object, Map<string, RouteTotals>>();
  private readonly inFlightBy = new Map<string, number>();

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'plugboard_gateway_requests_total',
      help: 'Requests handled, by connection (ns/name, "" when none was chosen), model, endpoint and HTTP status.',
      labelNames: ['connection', 'model', 'endpoint', 'status'],
      registers,
      collect: () => {
        this.requests.reset();
        for (const t of this.totals.values())
          for (const [status, n] of t.byStatus) this.requests.inc({ ...t.labels, status: String(status) }, n);
      },
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
      collect: () => {
        this.tokens.reset();
        for (const { labels, promptTokens, completionTokens } of this.totals.values()) {
          const { connection, model } = labels;
          if (promptTokens) this.tokens.inc({ connection, model, type: 'prompt' }, promptTokens);
          if (completionTokens) this.tokens.inc({ connection, model, type: 'completion' }, completionTokens);
        }
      },
    });
    this.upstreamErrors = new Counter({
      name: 'plugboard_gateway_upstream_errors_total',
      help:
        'Upstream failures by reason: connect_error, connect_timeout, first_byte_timeout, idle_timeout, ' +
        'total_timeout, reset, status_5xx, status_429.',
      labelNames: ['connection', 'reason'],
      registers,
    });
    this.rejected = new Counter({
      name: 'plugboard_gateway_rejected_requests_total',
      help:
        'Requests the gateway answered itself with an error, before or instead of an upstream, by route ' +
        '("none" when no route matched), HTTP status and error code (e.g. invalid_api_key, model_not_found).',
      labelNames: ['route', 'status', 'code'],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'plugboard_gateway_in_flight_requests',
      help: 'Proxied requests in progress.',
      labelNames: ['endpoint'],
      registers,
      collect: () => {
        for (const [endpoint, n] of this.inFlightBy) this.inFlight.set({ endpoint }, n);
      },
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
    this.logLinesDropped = new Counter({
      name: 'plugboard_gateway_log_lines_dropped_total',
      help: 'Log lines dropped because they came faster than the log could be written (at most 4 MiB wait).',
      registers,
    });
    this.clientKeys = new Gauge({
      name: 'plugboard_gateway_client_keys',
      help: 'Client keys in use (0 when keys are revoked or not configured).',
      registers,
    });
    this.clientKeysState = new Gauge({
      name: 'plugboard_gateway_client_keys_state',
      help:
        '1 for the state the client keys are in: loading, loaded, stale (a malformed edit; the last good keys ' +
        'stay in use) or revoked (the Secret or file is gone; every request gets 401).',
      labelNames: ['state'],
      registers,
    });
  }

  /** Counts an error the gateway answered itself; every label value comes from a fixed set in the code. */
  answered(route: string, status: number, code: string | null): void {
    this.rejected.inc({ route, status: String(status), code: code ?? '' });
  }

  /** A proxied request starts (+1) or ends (-1). */
  inFlightAdd(endpoint: string, delta: number): void {
    this.inFlightBy.set(endpoint, (this.inFlightBy.get(endpoint) ?? 0) + delta);
  }

  /**
   * Counts a finished request. `route` is an object that stands for the label values (the routing candidate),
   * so the totals are found without building a key on every request.
   */
  record(route: object | undefined, r: RequestRecord): void {
    let byEndpoint = route ? this.totalsOf.get(route) : undefined;
    let t = byEndpoint?.get(r.endpoint);
    if (!t) {
      const id = `${r.connection}\u0000${r.model}\u0000${r.endpoint}`;
      t = this.totals.get(id);
      if (!t) {
        const labels = { connection: r.connection, model: r.model, endpoint: r.endpoint };
        t = {
          labels,
          byStatus: new Map(),
          promptTokens: 0,
          completionTokens: 0,
          duration: this.duration.labels(labels),
        };
        this.totals.set(id, t);
      }
      if (route) {
        if (!byEndpoint) {
          byEndpoint = new Map();
          this.totalsOf.set(route, byEndpoint);
        }
        byEndpoint.set(r.endpoint, t);
      }
    }
    t.byStatus.set(r.status, (t.byStatus.get(r.status) ?? 0) + 1);
    t.duration.observe(r.seconds);
    if (r.promptTokens) t.promptTokens += r.promptTokens;
    if (r.completionTokens) t.completionTokens += r.completionTokens;
  }
}
