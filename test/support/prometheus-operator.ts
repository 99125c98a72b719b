/**
 * What the Prometheus Operator makes of the chart's monitoring objects, for a Prometheus the tests run themselves:
 * the scrape configuration of a ServiceMonitor and the rule file of a PrometheusRule.
 *
 * The scrape configuration follows the operator's own generator (`generateServiceMonitorConfig` in
 * pkg/prometheus/promcfg.go of github.com/prometheus-operator/prometheus-operator v0.85.0) for a Prometheus with
 * the operator's defaults: the `endpoints` discovery role, one shard, no scrape classes, no enforced namespace
 * label, no overrides. test/deploy/monitoring.test.ts compares it with that generator's golden test files. A field
 * this translation does not implement is refused, so nothing is silently scraped differently than the operator would.
 */

/** A ServiceMonitor as the API server returns it (monitoring.coreos.com/v1). */
export interface ServiceMonitor {
  metadata: { name: string; namespace: string };
  spec: {
    jobLabel?: string;
    targetLabels?: string[];
    podTargetLabels?: string[];
    namespaceSelector?: { any?: boolean; matchNames?: string[] };
    selector?: {
      matchLabels?: Record<string, string>;
      matchExpressions?: {
        key: string;
        operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
        values?: string[];
      }[];
    };
    attachMetadata?: { node?: boolean };
    endpoints: Endpoint[];
    [unsupported: string]: unknown;
  };
}

interface Endpoint {
  port?: string;
  path?: string;
  interval?: string;
  scrapeTimeout?: string;
  honorLabels?: boolean;
  honorTimestamps?: boolean;
  scheme?: string;
  params?: Record<string, string[]>;
  filterRunning?: boolean;
  [unsupported: string]: unknown;
}

type Relabel = Record<string, unknown>;
export type ScrapeConfig = Record<string, unknown>;

const SPEC_FIELDS = new Set([
  'jobLabel',
  'targetLabels',
  'podTargetLabels',
  'namespaceSelector',
  'selector',
  'attachMetadata',
  'endpoints',
]);
const ENDPOINT_FIELDS = new Set([
  'port',
  'path',
  'interval',
  'scrapeTimeout',
  'honorLabels',
  'honorTimestamps',
  'scheme',
  'params',
  'filterRunning',
]);

// biome-ignore lint/suspicious/noTemplateCurlyInString: Prometheus' relabel replacement syntax, not a template
const GROUP_1 = '${1}';

/** The operator's sanitizeLabelName. */
const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, '_');

/** The `kubernetes_sd_configs` entry (generateK8SSDConfig), for the `endpoints` role. */
export function kubernetesSdConfig(sm: ServiceMonitor): Record<string, unknown> {
  const sel = sm.spec.namespaceSelector ?? {};
  const namespaces = sel.any ? [] : sel.matchNames?.length ? sel.matchNames : [sm.metadata.namespace];
  return {
    role: 'endpoints',
    ...(namespaces.length ? { namespaces: { names: namespaces } } : {}),
    ...(sm.spec.attachMetadata ? { attach_metadata: { node: sm.spec.attachMetadata.node ?? false } } : {}),
  };
}

/**
 * One scrape job per endpoint of the ServiceMonitor, named `serviceMonitor/<namespace>/<name>/<i>`. Sharding rules
 * keep the operator's `$(SHARD)` placeholder, which its config reloader fills in (see {@link substituteEnv}).
 */
export function scrapeConfigs(sm: ServiceMonitor): ScrapeConfig[] {
  const extra = Object.keys(sm.spec).filter((k) => !SPEC_FIELDS.has(k));
  if (extra.length)
    throw new Error(
      `ServiceMonitor ${sm.metadata.namespace}/${sm.metadata.name}: spec.${extra.join(', spec.')} is not translated (test/support/prometheus-operator.ts)`,
    );
  return sm.spec.endpoints.map((ep, i) => scrapeConfig(sm, ep, i));
}

function scrapeConfig(sm: ServiceMonitor, ep: Endpoint, i: number): ScrapeConfig {
  const id = `${sm.metadata.namespace}/${sm.metadata.name}`;
  const extra = Object.keys(ep).filter((k) => !ENDPOINT_FIELDS.has(k));
  if (extra.length)
    throw new Error(
      `ServiceMonitor ${id}: endpoints[${i}].${extra.join(', .')} is not translated (test/support/prometheus-operator.ts)`,
    );
  if (!ep.port)
    throw new Error(`ServiceMonitor ${id}: endpoints[${i}] without a port name is not translated`);
  const cfg: ScrapeConfig = {
    job_name: `serviceMonitor/${id}/${i}`,
    honor_labels: ep.honorLabels ?? false,
  };
  if (ep.honorTimestamps !== undefined) cfg.honor_timestamps = ep.honorTimestamps;
  cfg.kubernetes_sd_configs = [kubernetesSdConfig(sm)];
  if (ep.interval) cfg.scrape_interval = ep.interval;
  if (ep.scrapeTimeout) cfg.scrape_timeout = ep.scrapeTimeout;
  if (ep.path) cfg.metrics_path = ep.path;
  if (ep.params) cfg.params = ep.params;
  if (ep.scheme) cfg.scheme = ep.scheme;

  const relabel: Relabel[] = [{ source_labels: ['job'], target_label: '__tmp_prometheus_job_name' }];
  const svcLabel = (k: string) => [
    `__meta_kubernetes_service_label_${sanitize(k)}`,
    `__meta_kubernetes_service_labelpresent_${sanitize(k)}`,
  ];
  const matchLabels = sm.spec.selector?.matchLabels ?? {};
  // Go ranges over sortutil.SortedKeys: byte order, not locale order.
  for (const k of Object.keys(matchLabels).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)))
    relabel.push({ action: 'keep', source_labels: svcLabel(k), regex: `(${matchLabels[k]});true` });
  for (const e of sm.spec.selector?.matchExpressions ?? []) {
    const present = `__meta_kubernetes_service_labelpresent_${sanitize(e.key)}`;
    const values = `(${(e.values ?? []).join('|')});true`;
    if (e.operator === 'In') relabel.push({ action: 'keep', source_labels: svcLabel(e.key), regex: values });
    if (e.operator === 'NotIn')
      relabel.push({ action: 'drop', source_labels: svcLabel(e.key), regex: values });
    if (e.operator === 'Exists') relabel.push({ action: 'keep', source_labels: [present], regex: 'true' });
    if (e.operator === 'DoesNotExist')
      relabel.push({ action: 'drop', source_labels: [present], regex: 'true' });
  }
  relabel.push({ action: 'keep', source_labels: ['__meta_kubernetes_endpoint_port_name'], regex: ep.port });
  const target = [
    '__meta_kubernetes_endpoint_address_target_kind',
    '__meta_kubernetes_endpoint_address_target_name',
  ];
  relabel.push(
    { source_labels: target, separator: ';', regex: 'Node;(.*)', replacement: GROUP_1, target_label: 'node' },
    { source_labels: target, separator: ';', regex: 'Pod;(.*)', replacement: GROUP_1, target_label: 'pod' },
    { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
    { source_labels: ['__meta_kubernetes_service_name'], target_label: 'service' },
    { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
    { source_labels: ['__meta_kubernetes_pod_container_name'], target_label: 'container' },
  );
  if (ep.filterRunning ?? true)
    relabel.push({
      action: 'drop',
      source_labels: ['__meta_kubernetes_pod_phase'],
      regex: '(Failed|Succeeded)',
    });
  for (const l of sm.spec.targetLabels ?? [])
    relabel.push({
      source_labels: [`__meta_kubernetes_service_label_${sanitize(l)}`],
      target_label: sanitize(l),
      regex: '(.+)',
      replacement: GROUP_1,
    });
  for (const l of sm.spec.podTargetLabels ?? [])
    relabel.push({
      source_labels: [`__meta_kubernetes_pod_label_${sanitize(l)}`],
      target_label: sanitize(l),
      regex: '(.+)',
      replacement: GROUP_1,
    });
  relabel.push({
    source_labels: ['__meta_kubernetes_service_name'],
    target_label: 'job',
    replacement: GROUP_1,
  });
  if (sm.spec.jobLabel)
    relabel.push({
      source_labels: [`__meta_kubernetes_service_label_${sanitize(sm.spec.jobLabel)}`],
      target_label: 'job',
      regex: '(.+)',
      replacement: GROUP_1,
    });
  relabel.push({ target_label: 'endpoint', replacement: ep.port });
  // appendShardingRelabelingWithAddress, one shard
  relabel.push(
    {
      source_labels: ['__address__', '__tmp_hash'],
      target_label: '__tmp_hash',
      regex: '(.+);',
      replacement: '$1',
      action: 'replace',
    },
    { source_labels: ['__tmp_hash'], target_label: '__tmp_hash', modulus: 1, action: 'hashmod' },
    { source_labels: ['__tmp_hash', '__tmp_disable_sharding'], regex: '$(SHARD);|.+;.+', action: 'keep' },
  );
  cfg.relabel_configs = relabel;
  return cfg;
}

/** A PrometheusRule as the API server returns it. */
export interface PrometheusRule {
  metadata: { name: string; namespace: string; uid?: string };
  spec: { groups: unknown[] };
}

/**
 * The rule file the operator writes for a PrometheusRule (generateRulesConfiguration: its spec as YAML), and the
 * name it gives it: `<namespace>-<name>-<uid>.yaml`.
 */
export function ruleFile(rule: PrometheusRule): { name: string; content: { groups: unknown[] } } {
  return {
    name: `${rule.metadata.namespace}-${rule.metadata.name}-${rule.metadata.uid ?? 'rendered'}.yaml`,
    content: { groups: rule.spec.groups },
  };
}

/**
 * What the operator's config reloader does to the generated configuration before Prometheus reads it: `$(VAR)`
 * becomes the variable's value (SHARD for the one shard is 0; POD_NAME the replica's name).
 */
export function substituteEnv(text: string, env: Record<string, string>): string {
  return text.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
}
