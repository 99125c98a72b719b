import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { dialect } from '../providers/dialects.ts';
import type { SnapshotConnection } from '../snapshot/schema.ts';
import { type HistogramCell, HotHistogram } from './hot-histogram.ts';

/** What one request adds to the per-route series, recorded by GatewayMetrics.record(). */
export interface RequestRecord {
  connection: string;
  model: string;
  endpoint: string;
  status: number;
  seconds: number;
  promptTokens?: number;
  completionTokens?: number;
  /** The connection that answered, when one was tried: its provider and host label the GenAI series. */
  upstream?: SnapshotConnection;
  /** The name of the client key that authenticated the request (a name from the keys file, never the key). */
  clientKey?: string;
}

/** The OpenTelemetry GenAI series of one route, made when the route is first recorded with its upstream. */
interface GenAiSeries {
  /** What the labels were made from: a connection whose URL or provider changes gets new series. */
  from: { url: string; provider: string };
  labels: GenAiLabels;
  /** By error_type: '' for a success, else the HTTP status of the failed call. */
  duration: Map<string, HistogramCell>;
  input: HistogramCell;
  output: HistogramCell;
  ttft: HistogramCell;
}

/** Plain totals of one (connection, model, endpoint), folded into prom-client's series at scrape time. */
interface RouteTotals {
  labels: { connection: string; model: string; endpoint: string };
  byStatus: Map<number, number>;
  promptTokens: number;
  completionTokens: number;
  duration: HistogramCell;
  /** Made on the route's first streamed response. */
  ttft?: HistogramCell;
  genAi?: GenAiSeries;
}

/** Plain totals of one (client key, model): who spent what. */
interface ClientTotals {
  labels: { client_key: string; model: string };
  byStatus: Map<number, number>;
  promptTokens: number;
  completionTokens: number;
}

const GENAI_LABELS = [
  'gen_ai_operation_name',
  'gen_ai_provider_name',
  'gen_ai_request_model',
  'server_address',
] as const;
type GenAiLabels = Record<(typeof GENAI_LABELS)[number], string>;

/**
 * gen_ai.operation.name of each proxied endpoint: the semantic conventions' predefined value where one applies, else
 * the endpoint itself (the conventions allow a provider-specific name where none does).
 */
const GENAI_OPERATION: Record<string, string> = {
  'chat/completions': 'chat',
  responses: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
};

/** The host of a connection's URL: server.address. */
function serverAddress(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}

/**
 * The gateway's Prometheus metrics, on a registry of its own (several gateways can live in one process, e.g. in
 * tests). Label values come from the snapshot (connection `ns/name`, exposed model IDs) or a fixed set, never
 * from free client input, so cardinality is bounded by configuration: client keys are named by the keys file an
 * admin writes. Next to the `plugboard_*` series, the OpenTelemetry GenAI semantic-convention metrics
 * (gen_ai.client.operation.duration, gen_ai.client.token.usage, gen_ai.server.time_to_first_token) are exported
 * under the names OpenTelemetry's Prometheus exporters give them, so GenAI dashboards read the gateway as they are;
 * docs/gateway.md maps one onto the other.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'connection' | 'model' | 'endpoint' | 'status'>;
  readonly duration: HotHistogram<'connection' | 'model' | 'endpoint'>;
  readonly ttft: HotHistogram<'connection' | 'model' | 'endpoint'>;
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
  readonly bufferedBodies: Gauge<'kind'>;
  readonly clientKeysState: Gauge<'state'>;
  readonly clientRequests: Counter<'client_key' | 'model' | 'status'>;
  readonly clientTokens: Counter<'client_key' | 'model' | 'type'>;
  readonly genAiDuration: HotHistogram<(typeof GENAI_LABELS)[number] | 'error_type'>;
  readonly genAiTokens: HotHistogram<(typeof GENAI_LABELS)[number] | 'gen_ai_token_type'>;
  readonly genAiTtft: HotHistogram<(typeof GENAI_LABELS)[number]>;
  // prom-client validates and hashes the label set on every inc(); on the proxy's path these are plain additions,
  // handed to prom-client when it is scraped. Keyed by label values, so bounded by the snapshot like the series.
  private readonly totals = new Map<string, RouteTotals>();
  private readonly totalsOf = new WeakMap<object, Map<string, RouteTotals>>();
  private readonly inFlightBy = new Map<string, number>();
  private readonly clients = new Map<string, ClientTotals>();
  private budget: { readonly inUse: number; readonly limit: number } | undefined;

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
    this.duration = new HotHistogram({
      name: 'plugboard_gateway_request_duration_seconds',
      help: 'Time from the request to the end of the response, streamed responses included.',
      labelNames: ['connection', 'model', 'endpoint'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.ttft = new HotHistogram({
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
    this.bufferedBodies = new Gauge({
      name: 'plugboard_gateway_buffered_body_bytes',
      help:
        'Request-body bytes held across requests (kind="held"; bodies and what parsing them takes) and the ' +
        'budget (kind="limit"); over it, requests get 503.',
      labelNames: ['kind'],
      registers,
      collect: () => {
        if (!this.budget) return;
        this.bufferedBodies.set({ kind: 'held' }, this.budget.inUse);
        this.bufferedBodies.set({ kind: 'limit' }, this.budget.limit);
      },
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
    this.clientRequests = new Counter({
      name: 'plugboard_gateway_client_requests_total',
      help:
        'Proxied requests by client key (its name in the keys file, never the key), model and HTTP status; ' +
        'requests without a client key are not counted here.',
      labelNames: ['client_key', 'model', 'status'],
      registers,
      collect: () => {
        this.clientRequests.reset();
        for (const t of this.clients.values())
          for (const [status, n] of t.byStatus)
            this.clientRequests.inc({ ...t.labels, status: String(status) }, n);
      },
    });
    this.clientTokens = new Counter({
      name: 'plugboard_gateway_client_tokens_total',
      help: 'Tokens reported by upstreams in usage, by client key name, model and type (prompt or completion).',
      labelNames: ['client_key', 'model', 'type'],
      registers,
      collect: () => {
        this.clientTokens.reset();
        for (const { labels, promptTokens, completionTokens } of this.clients.values()) {
          if (promptTokens) this.clientTokens.inc({ ...labels, type: 'prompt' }, promptTokens);
          if (completionTokens) this.clientTokens.inc({ ...labels, type: 'completion' }, completionTokens);
        }
      },
    });
    // Buckets: the semantic conventions' advice for each instrument.
    this.genAiDuration = new HotHistogram({
      name: 'gen_ai_client_operation_duration_seconds',
      help:
        'OpenTelemetry GenAI gen_ai.client.operation.duration: proxied requests, by operation, provider, ' +
        'requested model and upstream host; error_type is the HTTP status of a request that failed.',
      labelNames: [...GENAI_LABELS, 'error_type'],
      buckets: [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
      registers,
    });
    this.genAiTokens = new HotHistogram({
      name: 'gen_ai_client_token_usage',
      help: 'OpenTelemetry GenAI gen_ai.client.token.usage: tokens per request, by gen_ai_token_type (input or output).',
      labelNames: [...GENAI_LABELS, 'gen_ai_token_type'],
      buckets: [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
      registers,
    });
    this.genAiTtft = new HotHistogram({
      name: 'gen_ai_server_time_to_first_token_seconds',
      help: 'OpenTelemetry GenAI gen_ai.server.time_to_first_token: time to the first streamed chunk.',
      labelNames: [...GENAI_LABELS],
      buckets: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
      registers,
    });
  }

  /** The body budget that plugboard_gateway_buffered_body_bytes reports. */
  watchBudget(budget: { readonly inUse: number; readonly limit: number }): void {
    this.budget = budget;
  }

  /** Counts an error the gateway answered itself; every label value comes from a fixed set in the code. */
  answered(route: string, status: number, code: string | null): void {
    this.rejected.inc({ route, status: String(status), code: code ?? '' });
  }

  /** A proxied request starts (+1) or ends (-1). */
  inFlightAdd(endpoint: string, delta: number): void {
    this.inFlightBy.set(endpoint, (this.inFlightBy.get(endpoint) ?? 0) + delta);
  }

  /** The totals of a route, found by the object that stands for its labels (the routing candidate) when given. */
  private totalsFor(
    route: object | undefined,
    connection: string,
    model: string,
    endpoint: string,
    upstream: SnapshotConnection | undefined,
  ): RouteTotals {
    let byEndpoint = route ? this.totalsOf.get(route) : undefined;
    let t = byEndpoint?.get(endpoint);
    if (!t) {
      const id = `${connection}\u0000${model}\u0000${endpoint}`;
      t = this.totals.get(id);
      if (!t) {
        const labels = { connection, model, endpoint };
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
        byEndpoint.set(endpoint, t);
      }
    }
    if (upstream && (t.genAi?.from.url !== upstream.url || t.genAi.from.provider !== upstream.provider)) {
      const labels: GenAiLabels = {
        gen_ai_operation_name: GENAI_OPERATION[endpoint] ?? endpoint,
        gen_ai_provider_name: dialect(upstream.provider).genAiProviderName,
        gen_ai_request_model: model,
        server_address: serverAddress(upstream.url),
      };
      t.genAi = {
        from: { url: upstream.url, provider: upstream.provider },
        labels,
        duration: new Map(),
        input: this.genAiTokens.labels({ ...labels, gen_ai_token_type: 'input' }),
        output: this.genAiTokens.labels({ ...labels, gen_ai_token_type: 'output' }),
        ttft: this.genAiTtft.labels(labels),
      };
    }
    return t;
  }

  /** The first streamed chunk of a proxied response reached the client, `seconds` after the request arrived. */
  firstToken(
    route: object,
    r: { connection: string; model: string; endpoint: string; upstream: SnapshotConnection },
    seconds: number,
  ): void {
    const t = this.totalsFor(route, r.connection, r.model, r.endpoint, r.upstream);
    t.ttft ??= this.ttft.labels(t.labels);
    t.ttft.observe(seconds);
    t.genAi?.ttft.observe(seconds);
  }

  /**
   * Counts a finished request. `route` is an object that stands for the label values (the routing candidate),
   * so the totals are found without building a key on every request.
   */
  record(route: object | undefined, r: RequestRecord): void {
    const t = this.totalsFor(route, r.connection, r.model, r.endpoint, r.upstream);
    t.byStatus.set(r.status, (t.byStatus.get(r.status) ?? 0) + 1);
    t.duration.observe(r.seconds);
    if (r.promptTokens) t.promptTokens += r.promptTokens;
    if (r.completionTokens) t.completionTokens += r.completionTokens;
    const g = r.upstream && t.genAi;
    if (g) {
      const errorType = r.status >= 400 ? String(r.status) : '';
      let d = g.duration.get(errorType);
      if (!d) {
        d = this.genAiDuration.labels({ ...g.labels, error_type: errorType });
        g.duration.set(errorType, d);
      }
      d.observe(r.seconds);
      if (r.promptTokens) g.input.observe(r.promptTokens);
      if (r.completionTokens) g.output.observe(r.completionTokens);
    }
    if (r.clientKey !== undefined) {
      const id = `${r.clientKey}\u0000${r.model}`;
      let c = this.clients.get(id);
      if (!c) {
        c = {
          labels: { client_key: r.clientKey, model: r.model },
          byStatus: new Map(),
          promptTokens: 0,
          completionTokens: 0,
        };
        this.clients.set(id, c);
      }
      c.byStatus.set(r.status, (c.byStatus.get(r.status) ?? 0) + 1);
      if (r.promptTokens) c.promptTokens += r.promptTokens;
      if (r.completionTokens) c.completionTokens += r.completionTokens;
    }
  }
}
