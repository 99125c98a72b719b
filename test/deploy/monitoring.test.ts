/**
 * The chart's monitoring objects, checked by the tools that will read them, without a cluster: promtool (built
 * from Prometheus' Go module by scripts/build-prometheus.sh) parses every alert rule and every dashboard query and
 * runs the alerts' unit tests (./alerts.promtool.yaml); the dashboard is checked against Grafana's dashboard model;
 * every alert has its runbook; the scrape configuration the tests derive from the ServiceMonitors is the Prometheus
 * Operator's (its generator's golden files). test/cluster/chart.cluster.test.ts runs all of it on a real cluster.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Dashboard, isRow, leafPanels, panelQueries } from '../support/grafana.ts';
import { prometheusBinaries, promtool } from '../support/prometheus.ts';
import { kubernetesSdConfig, type ServiceMonitor, scrapeConfigs } from '../support/prometheus-operator.ts';
import { find, KEYS, type Manifest, ROOT, render } from './helm.ts';

const MONITORING = {
  metrics: {
    serviceMonitor: { enabled: true },
    prometheusRule: { enabled: true },
    grafanaDashboard: { enabled: true },
  },
};

/** The rendered PrometheusRule's alerting rules. */
const alertsOf = (rule: Manifest) =>
  (rule.spec.groups as Manifest[]).flatMap((g) => g.rules as Manifest[]).filter((r) => r.alert);

/** A temporary directory holding `rules.yaml` (a PrometheusRule's spec, as the operator writes it). */
function rulesDir(spec: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-rules-'));
  writeFileSync(join(dir, 'rules.yaml'), stringify(spec));
  return dir;
}

const seconds = (d: string) => {
  const m = /^(\d+)(ms|s|m|h)$/.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
};

describe('the PrometheusRule, with promtool', () => {
  // The defaults render every alert (autoscaling is on, so PlugboardGatewayAtMaxReplicas is in).
  const docs = render({ values: [KEYS, MONITORING] });
  const rule = find(docs, 'PrometheusRule');

  it('passes `promtool check rules` with the defaults, without autoscaling and with every threshold changed', () => {
    const variants = [
      rule,
      find(
        render({ values: [KEYS, MONITORING], set: ['gateway.autoscaling.enabled=false'] }),
        'PrometheusRule',
      ),
      find(
        render({
          values: [
            KEYS,
            MONITORING,
            {
              metrics: {
                prometheusRule: {
                  connectionNotReadyFor: '20s',
                  upstreamErrorRatio: 0.2,
                  upstreamErrorRatioFor: '1h',
                  inFlightPerPod: 50,
                  saturationFor: '2m',
                  snapshotNotSyncedFor: '90s',
                  credentialExpiresWithinSeconds: 1800,
                },
              },
            },
          ],
        }),
        'PrometheusRule',
      ),
    ];
    for (const r of variants) {
      const res = promtool(['check', 'rules', join(rulesDir(r.spec), 'rules.yaml')]);
      expect(res.status, res.output).toBe(0);
      expect(res.output).toContain(`SUCCESS: ${alertsOf(r).length} rules found`);
    }
    expect(
      alertsOf(variants[2] as Manifest).find((a) => a.alert === 'PlugboardConnectionNotReady')?.for,
    ).toBe('20s');
    expect(
      alertsOf(variants[2] as Manifest).find((a) => a.alert === 'PlugboardCredentialExpiringSoon')?.expr,
    ).toMatch(/ < 1800$/);
  });

  it('passes its unit tests (alerts.promtool.yaml): each alert fires on its series and stays quiet on others', () => {
    const dir = rulesDir(rule.spec);
    copyFileSync(join(import.meta.dirname, 'alerts.promtool.yaml'), join(dir, 'alerts.promtool.yaml'));
    const res = promtool(['test', 'rules', 'alerts.promtool.yaml'], dir);
    expect(res.status, res.output).toBe(0);
  });

  it('has, for every alert, a test where it fires and one where it stays quiet for longer than its `for:`', () => {
    const tests = parse(readFileSync(join(import.meta.dirname, 'alerts.promtool.yaml'), 'utf8')).tests as {
      alert_rule_test: { eval_time: string; alertname: string; exp_alerts: unknown[] }[];
    }[];
    const cases = tests.flatMap((t) => t.alert_rule_test);
    const alerts = alertsOf(rule);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${a.alert} never fires in alerts.promtool.yaml`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0 && seconds(c.eval_time) > seconds(a.for)),
        `${a.alert} is never shown quiet past its for: ${a.for}`,
      ).toBe(true);
    }
    expect(new Set(cases.map((c) => c.alertname))).toEqual(new Set(alerts.map((a) => a.alert)));
  });

  it('links every alert to its own runbook in docs/operations.md: what it means, three checks, kubectl commands', () => {
    const ops = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
    const sections = new Map(
      ops
        .split(/^### /m)
        .slice(1)
        .map((s) => [s.slice(0, s.indexOf('\n')).trim().toLowerCase(), s] as const),
    );
    const anchors = new Set<string>();
    for (const a of alertsOf(rule)) {
      const url = a.annotations.runbook_url as string;
      expect(url).toMatch(/^https:\/\/github\.com\/plugboard\/plugboard\/blob\/main\/docs\/operations\.md#/);
      const anchor = url.split('#')[1] as string;
      expect(anchor, `${a.alert} shares its runbook`).toBe(a.alert.toLowerCase());
      anchors.add(anchor);
      const section = sections.get(anchor);
      expect(section, `docs/operations.md has no "### ${a.alert}"`).toBeDefined();
      expect(section, a.alert).toMatch(/\*\*What it means\.\*\*/);
      const checks =
        /\*\*Check first\.\*\*\n\n((?:\d\. .*\n(?: {3}.*\n)*)+)/.exec(section as string)?.[1] ?? '';
      expect(checks.match(/^\d\. /gm), `${a.alert}: three things to check`).toHaveLength(3);
      expect(section, `${a.alert}: kubectl commands`).toMatch(/```sh\n(?:.*\n)*?kubectl .*\n(?:.*\n)*?```/);
    }
    expect(anchors.size).toBe(alertsOf(rule).length);
  });
});

describe('the Grafana dashboard', () => {
  const docs = render({ values: [KEYS, MONITORING] });
  const cm = find(docs, 'ConfigMap', '-dashboard');
  const json = JSON.parse(cm.data['plugboard.json']);

  it("matches Grafana's dashboard model for the sidecar's provisioning (schemaVersion 39), with unique panel IDs in the grid", () => {
    expect(cm.metadata.labels.grafana_dashboard).toBe('1');
    const res = Dashboard.safeParse(json);
    expect(res.success, res.error ? JSON.stringify(res.error.issues, null, 1) : '').toBe(true);
    const d = res.data as Dashboard;
    expect(d.schemaVersion).toBe(39);
    const ids = (d.panels ?? []).flatMap((p) => [p.id, ...(isRow(p) ? p.panels.map((q) => q.id) : [])]);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of d.panels ?? [])
      expect(p.gridPos && p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
    // every data source reference names the dashboard's data source variable
    const dsVar = d.templating?.list?.find((v) => v.type === 'datasource');
    expect(dsVar?.query).toBe('prometheus');
    for (const p of leafPanels(d)) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: `\${${dsVar?.name}}` });
      for (const t of p.targets ?? []) expect(t.datasource, p.title).toEqual(p.datasource);
    }
  });

  it('refuses what Grafana would not read: a misspelt key, a panel wider than the grid', () => {
    const panel = leafPanels(Dashboard.parse(json))[0];
    expect(Dashboard.safeParse({ ...json, panels: [{ ...panel, gridpos: panel?.gridPos }] }).success).toBe(
      false,
    );
    expect(
      Dashboard.safeParse({ ...json, panels: [{ ...panel, gridPos: { x: 0, y: 0, w: 25, h: 4 } }] }).success,
    ).toBe(false);
  });

  it('has only queries promtool parses, once its variables are substituted', () => {
    const queries = panelQueries(Dashboard.parse(json), { namespace: ['plugboard-system', 'team-a'] });
    expect(queries.length).toBeGreaterThan(20);
    const groups = [
      {
        name: 'dashboard',
        rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: q.expr })),
      },
    ];
    const res = promtool(['check', 'rules', join(rulesDir({ groups }), 'rules.yaml')]);
    expect(res.status, res.output).toBe(0);
    for (const q of queries) expect(q.expr, q.panel).not.toContain('$');
    expect(queries.find((q) => q.panel === 'Requests/s')?.expr).toContain(
      'namespace=~"(plugboard-system|team-a)"',
    );
  });

  it('says 0, not "No data", for the 5xx ratio when no response was a 5xx', () => {
    const q = panelQueries(Dashboard.parse(json), { namespace: ['plugboard-system'] }).find(
      (x) => x.panel === '5xx ratio',
    );
    const dir = rulesDir({ groups: [] });
    const series = (status: string, values: string) => ({
      series: `plugboard_gateway_requests_total{namespace="plugboard-system",pod="gw-a",connection="ai/a",model="m",endpoint="chat/completions",status="${status}"}`,
      values,
    });
    writeFileSync(
      join(dir, 'panel.test.yaml'),
      stringify({
        rule_files: ['rules.yaml'],
        tests: [
          {
            interval: '1m',
            input_series: [series('200', '0+60x10'), series('404', '0+6x10')],
            promql_expr_test: [
              { expr: q?.expr, eval_time: '10m', exp_samples: [{ labels: '{}', value: 0 }] },
            ],
          },
          {
            interval: '1m',
            input_series: [series('200', '0+54x10'), series('502', '0+6x10')],
            promql_expr_test: [
              { expr: q?.expr, eval_time: '10m', exp_samples: [{ labels: '{}', value: 0.1 }] },
            ],
          },
        ],
      }),
    );
    const res = promtool(['test', 'rules', 'panel.test.yaml'], dir);
    expect(res.status, res.output).toBe(0);
  });
});

describe("the scrape configuration derived from the ServiceMonitors is the Prometheus Operator's", () => {
  const testdata = join(prometheusBinaries(), 'prometheus-operator', 'pkg', 'prometheus', 'testdata');
  const golden = (name: string) => parse(readFileSync(join(testdata, name), 'utf8'));
  // The inputs of the operator's own tests (pkg/prometheus/promcfg_test.go, v0.85.0) that produced these files.
  const sm = (name: string, spec: Partial<ServiceMonitor['spec']>): ServiceMonitor => ({
    metadata: { name, namespace: 'default' },
    spec: { endpoints: [], ...spec },
  });

  it('TestSettingHonorLabels: honorLabels, targetLabels', () => {
    const got = scrapeConfigs(
      sm('testservicemonitor1', {
        targetLabels: ['example', 'env'],
        endpoints: [{ honorLabels: true, port: 'web', interval: '30s' }],
      }),
    );
    expect(got).toEqual(golden('SettingHonorLabels.golden').scrape_configs);
  });

  it('TestScrapeClass without a scrape class: a matchLabels selector', () => {
    const got = scrapeConfigs(
      sm('defaultServiceMonitor', {
        selector: { matchLabels: { group: 'group1' } },
        endpoints: [{ port: 'web', interval: '30s' }],
      }),
    );
    expect(got).toEqual([golden('monitorObjectWithoutScrapeClass.golden').scrape_configs[0]]);
  });

  it('TestNamespaceSetCorrectly: namespaceSelector.matchNames, attachMetadata', () => {
    const got = kubernetesSdConfig(
      sm('testservicemonitor1', {
        namespaceSelector: { matchNames: ['test1', 'test2'] },
        attachMetadata: { node: true },
      }),
    );
    expect([got]).toEqual(
      golden('namespaces_from_MatchNames_are_returned_instead_of_the_current_namespace.golden')
        .kubernetes_sd_configs,
    );
  });

  it("translates the chart's ServiceMonitors field by field, and refuses a field it does not translate", () => {
    const sms = render({ values: [KEYS, MONITORING] }).filter((d) => d.kind === 'ServiceMonitor');
    const jobs = sms.flatMap((s) => scrapeConfigs(s as ServiceMonitor));
    expect(jobs.map((j) => [j.job_name, j.honor_labels, j.scrape_interval, j.metrics_path])).toEqual([
      ['serviceMonitor/plugboard-system/pb-plugboard-operator/0', true, '30s', '/metrics'],
      ['serviceMonitor/plugboard-system/pb-plugboard-gateway/0', false, '30s', '/metrics'],
    ]);
    const s = sms[0] as ServiceMonitor;
    expect(() => scrapeConfigs({ ...s, spec: { ...s.spec, sampleLimit: 10 } })).toThrow(/spec\.sampleLimit/);
    expect(() =>
      scrapeConfigs({ ...s, spec: { ...s.spec, endpoints: [{ port: 'x', tlsConfig: {} }] } }),
    ).toThrow(/endpoints\[0\]\.tlsConfig/);
  });
});
