import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseResource } from '../../src/api/validate.ts';
import { GatewayMetrics } from '../../src/gateway/metrics.ts';
import { OperatorMetrics } from '../../src/operator/metrics.ts';
import { MAX_SHARDS, shardedCapacity, shardSecretName } from '../../src/snapshot/shards.ts';
import { CHART, find, helm, KEYS, type Manifest, nodeOptionsOf, ROOT, render, renderError } from './helm.ts';

const podSpecs = (docs: Manifest[]) =>
  docs.filter((d) => d.kind === 'Deployment').map((d) => [d.metadata.name, d.spec.template.spec] as const);

/** The snapshot's shard Secrets the writer may use, `plugboard-snapshot-1` … `-<MAX_SHARDS>`. */
const SHARDS = Array.from({ length: MAX_SHARDS }, (_, i) => shardSecretName('plugboard-snapshot', i + 1));

function args(docs: Manifest[], component: string): string[] {
  return find(docs, 'Deployment', `-${component}`).spec.template.spec.containers[0].args;
}

describe('helm chart charts/plugboard', () => {
  it('passes `helm lint --strict` with client keys given and with them turned off', () => {
    for (const set of ['gateway.clientKeys.existingSecret=keys', 'gateway.clientKeys.required=false']) {
      const res = helm(['lint', '--strict', CHART, '--set', set]);
      expect(res.status, res.stdout + res.stderr).toBe(0);
    }
  });

  it('ships CRDs byte-identical to crds/ (npm run generate writes both)', () => {
    const ours = readdirSync(join(CHART, 'crds')).sort();
    expect(ours).toEqual(readdirSync(join(ROOT, 'crds')).sort());
    for (const f of ours) {
      expect(readFileSync(join(CHART, 'crds', f), 'utf8'), f).toBe(
        readFileSync(join(ROOT, 'crds', f), 'utf8'),
      );
    }
    const kinds = render({ values: KEYS, includeCrds: true }).filter(
      (d) => d.kind === 'CustomResourceDefinition',
    );
    expect(kinds.map((d) => d.metadata.name).sort()).toEqual([
      'modelallowlists.plugboard.dev',
      'providerconnections.plugboard.dev',
    ]);
  });

  it('refuses to render without client keys, and says how to provide them or opt out', () => {
    const res = renderError();
    expect(res.status).not.toBe(0);
    expect(res.stderr).toContain('gateway.clientKeys.existingSecret=plugboard-client-keys');
    expect(res.stderr).toContain('gateway.clientKeys.required=false');
  });

  describe('defaults (cluster-wide)', () => {
    const docs = render({ values: KEYS });

    it('renders exactly the expected resources', () => {
      expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(
        [
          'ClusterRole/pb-plugboard-operator-plugboard-system',
          'ClusterRoleBinding/pb-plugboard-operator-plugboard-system',
          'Deployment/pb-plugboard-gateway',
          'Deployment/pb-plugboard-operator',
          'HorizontalPodAutoscaler/pb-plugboard-gateway',
          'PodDisruptionBudget/pb-plugboard-gateway',
          'PodDisruptionBudget/pb-plugboard-operator',
          'Role/pb-plugboard-gateway',
          'Role/pb-plugboard-operator',
          'RoleBinding/pb-plugboard-gateway',
          'RoleBinding/pb-plugboard-operator',
          'Service/pb-plugboard-gateway',
          'Service/pb-plugboard-gateway-metrics',
          'Service/pb-plugboard-operator-metrics',
          'ServiceAccount/pb-plugboard-gateway',
          'ServiceAccount/pb-plugboard-operator',
        ].sort(),
      );
    });

    it('operator: 2 replicas, leader election, namespace from the downward API, probes and metrics on :8081', () => {
      const d = find(docs, 'Deployment', '-operator');
      expect(d.spec.replicas).toBe(2);
      const c = d.spec.template.spec.containers[0];
      expect(c.args).toEqual(
        expect.arrayContaining([
          'operator',
          '--namespace=$(POD_NAMESPACE)',
          '--leader-elect=true',
          '--listen=0.0.0.0:8081',
        ]),
      );
      expect(c.args.some((a: string) => a.startsWith('--watch-namespaces'))).toBe(false);
      expect(c.env).toContainEqual({
        name: 'POD_NAMESPACE',
        valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
      });
      expect(c.ports).toEqual([{ name: 'http-metrics', containerPort: 8081, protocol: 'TCP' }]);
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http-metrics' });
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http-metrics' });
      expect(find(docs, 'PodDisruptionBudget', '-operator').spec.maxUnavailable).toBe(1);
    });

    it('gateway: snapshot and client keys from Secrets, HPA instead of replicas, PDB, drain within the grace period', () => {
      const d = find(docs, 'Deployment', '-gateway');
      expect(d.spec.replicas).toBeUndefined();
      const spec = d.spec.template.spec;
      const c = spec.containers[0];
      expect(c.args).toEqual(
        expect.arrayContaining([
          'gateway',
          '--snapshot-secret=$(POD_NAMESPACE)/plugboard-snapshot',
          '--client-keys-secret=$(POD_NAMESPACE)/plugboard-client-keys',
          '--drain-timeout=120s',
          '--metrics-listen=0.0.0.0:9090',
        ]),
      );
      expect(c.lifecycle.preStop).toEqual({ sleep: { seconds: 5 } });
      expect(spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(5 + 120);
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      const hpa = find(docs, 'HorizontalPodAutoscaler');
      expect(hpa.spec).toMatchObject({
        minReplicas: 2,
        maxReplicas: 10,
        scaleTargetRef: { name: d.metadata.name },
      });
      expect(find(docs, 'PodDisruptionBudget', '-gateway').spec.selector.matchLabels).toEqual(
        d.spec.selector.matchLabels,
      );
      const svc = find(docs, 'Service', '-gateway');
      expect(svc.spec).toMatchObject({ type: 'ClusterIP', ports: [{ port: 80, targetPort: 'http' }] });
    });

    it('every pod meets the restricted Pod Security Standard and has requests and limits', () => {
      for (const [name, spec] of podSpecs(docs)) {
        expect(spec.securityContext, name).toMatchObject({
          runAsNonRoot: true,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        for (const c of spec.containers) {
          expect(c.securityContext, name).toMatchObject({
            runAsNonRoot: true,
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
            seccompProfile: { type: 'RuntimeDefault' },
          });
          expect(Object.keys(c.resources.requests).sort(), name).toEqual(['cpu', 'memory']);
          expect(Object.keys(c.resources.limits).sort(), name).toEqual(['cpu', 'memory']);
          expect(c.livenessProbe && c.readinessProbe && c.startupProbe, name).toBeTruthy();
        }
        expect(spec.automountServiceAccountToken, name).toBe(true);
      }
      for (const sa of docs.filter((d) => d.kind === 'ServiceAccount'))
        expect(sa.automountServiceAccountToken).toBe(false);
    });

    it('sizes the V8 heap and its threads from the limits of each container (half the memory for the old generation)', () => {
      expect(nodeOptionsOf(docs, '-gateway')).toBe(
        '--max-old-space-size=128 --max-semi-space-size=16 --v8-pool-size=1',
      );
      expect(nodeOptionsOf(docs, '-operator')).toBe(
        '--max-old-space-size=128 --max-semi-space-size=4 --v8-pool-size=1',
      );
      const big = render({
        values: [KEYS, { gateway: { resources: { limits: { cpu: '4', memory: '2Gi' } } } }],
      });
      expect(nodeOptionsOf(big, '-gateway')).toBe(
        '--max-old-space-size=1024 --max-semi-space-size=16 --v8-pool-size=3',
      );
      const small = render({
        values: [KEYS, { operator: { resources: { limits: { cpu: '500m', memory: '96Mi' } } } }],
      });
      expect(nodeOptionsOf(small, '-operator')).toBe(
        '--max-old-space-size=48 --max-semi-space-size=2 --v8-pool-size=1',
      );
    });

    it('RBAC: the gateway may get/list/watch exactly the snapshot and client-keys Secrets, and get the shards', () => {
      const role = find(docs, 'Role', '-gateway');
      expect(role.rules).toEqual([
        {
          apiGroups: [''],
          resources: ['secrets'],
          resourceNames: ['plugboard-snapshot', 'plugboard-client-keys'],
          verbs: ['get', 'list', 'watch'],
        },
        { apiGroups: [''], resources: ['secrets'], resourceNames: SHARDS, verbs: ['get'] },
      ]);
      expect(SHARDS.at(-1)).toBe('plugboard-snapshot-64');
      const binding = find(docs, 'RoleBinding', '-gateway');
      expect(binding.subjects).toEqual([
        { kind: 'ServiceAccount', name: 'pb-plugboard-gateway', namespace: 'plugboard-system' },
      ]);
      expect(
        docs.filter((d) => d.kind.startsWith('Cluster') && JSON.stringify(d).includes('gateway')),
      ).toEqual([]);
    });

    it('RBAC: the operator reads its CRs and Secrets, patches status, creates Events; snapshot and Lease by name', () => {
      const cr = find(docs, 'ClusterRole');
      expect(cr.rules).toEqual([
        {
          apiGroups: ['plugboard.dev'],
          resources: ['providerconnections', 'modelallowlists'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['plugboard.dev'],
          resources: ['providerconnections/status', 'modelallowlists/status'],
          verbs: ['patch'],
        },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      ]);
      const own = find(docs, 'Role', '-operator');
      expect(own.metadata.namespace).toBe('plugboard-system');
      expect(own.rules).toEqual([
        { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
        {
          apiGroups: [''],
          resources: ['secrets'],
          resourceNames: ['plugboard-snapshot'],
          verbs: ['get', 'update'],
        },
        {
          apiGroups: [''],
          resources: ['secrets'],
          resourceNames: SHARDS,
          verbs: ['get', 'update', 'delete'],
        },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
        {
          apiGroups: ['coordination.k8s.io'],
          resources: ['leases'],
          resourceNames: ['plugboard-operator'],
          verbs: ['get', 'update'],
        },
      ]);
      // no wildcards anywhere
      for (const r of docs
        .filter((d) => d.kind === 'Role' || d.kind === 'ClusterRole')
        .flatMap((d) => d.rules)) {
        expect([...r.verbs, ...r.resources, ...r.apiGroups]).not.toContain('*');
      }
    });

    it('optional integrations are off', () => {
      for (const kind of ['NetworkPolicy', 'ServiceMonitor', 'PrometheusRule', 'Ingress', 'ConfigMap']) {
        expect(
          docs.some((d) => d.kind === kind),
          kind,
        ).toBe(false);
      }
    });
  });

  it('no TokenRequest access by default; workloadIdentity.serviceAccounts grants it per ServiceAccount by name', () => {
    const tokenRules = (docs: Manifest[]) =>
      docs
        .filter((d) => d.kind === 'Role' || d.kind === 'ClusterRole')
        .flatMap((d) => d.rules as Manifest[])
        .filter((r) => (r.resources as string[]).some((x) => x.startsWith('serviceaccounts')));
    expect(tokenRules(render({ values: KEYS }))).toEqual([]);
    const docs = render({
      values: [
        KEYS,
        {
          watchNamespaces: ['team-a'],
          workloadIdentity: {
            serviceAccounts: [
              { namespace: 'team-a', name: 'plugboard-azure' },
              { namespace: 'team-a', name: 'plugboard-vertex' },
            ],
          },
        },
      ],
    });
    for (const sa of ['plugboard-azure', 'plugboard-vertex']) {
      const role = docs.find(
        (d) => d.kind === 'Role' && d.metadata.name === `pb-plugboard-operator-token-${sa}`,
      );
      expect(role?.metadata.namespace).toBe('team-a');
      expect(role?.rules).toEqual([
        { apiGroups: [''], resources: ['serviceaccounts/token'], resourceNames: [sa], verbs: ['create'] },
      ]);
      const rb = docs.find(
        (d) => d.kind === 'RoleBinding' && d.metadata.name === `pb-plugboard-operator-token-${sa}`,
      );
      expect(rb?.metadata.namespace).toBe('team-a');
      expect(rb?.roleRef.name).toBe(`pb-plugboard-operator-token-${sa}`);
      expect(rb?.subjects).toEqual([
        { kind: 'ServiceAccount', name: 'pb-plugboard-operator', namespace: 'plugboard-system' },
      ]);
    }
    expect(tokenRules(docs)).toHaveLength(2);
    const bad = renderError({
      values: [KEYS, { workloadIdentity: { serviceAccounts: [{ namespace: 'team-a' }] } }],
    });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('name');
  });

  it('watchNamespaces: one Role per namespace and no cluster-wide access at all', () => {
    const docs = render({ values: [KEYS, { watchNamespaces: ['team-a', 'team-b'] }] });
    expect(docs.filter((d) => d.kind.startsWith('Cluster'))).toEqual([]);
    expect(args(docs, 'operator')).toContain('--watch-namespaces=team-a,team-b');
    for (const ns of ['team-a', 'team-b']) {
      const role = docs.find((d) => d.kind === 'Role' && d.metadata.namespace === ns);
      expect(role?.rules.find((r: Manifest) => r.resources.includes('secrets'))?.verbs).toEqual([
        'get',
        'list',
        'watch',
      ]);
      const rb = docs.find((d) => d.kind === 'RoleBinding' && d.metadata.namespace === ns);
      expect(rb?.subjects[0]).toEqual({
        kind: 'ServiceAccount',
        name: 'pb-plugboard-operator',
        namespace: 'plugboard-system',
      });
    }
  });

  it('client keys off: no --client-keys-secret and the gateway reads only the snapshot Secret', () => {
    const docs = render({ set: ['gateway.clientKeys.required=false'] });
    expect(args(docs, 'gateway').some((a) => a.startsWith('--client-keys-secret'))).toBe(false);
    const rules = find(docs, 'Role', '-gateway').rules;
    expect(rules[0].resourceNames).toEqual(['plugboard-snapshot']);
    expect(rules[1].resourceNames).toEqual(SHARDS);
  });

  it('passes the upstream address policy to both roles: no loopback in a pod, deny/allow lists when given', () => {
    const byDefault = render({ values: KEYS });
    for (const role of ['operator', 'gateway'])
      expect(args(byDefault, role)).toContain('--allow-loopback=false');
    const docs = render({
      values: [
        KEYS,
        {
          upstreamAddressPolicy: {
            denyCidrs: ['10.96.0.0/12'],
            allowCidrs: ['10.0.0.0/8', '0.0.0.0/0'],
            nat64Prefixes: ['2001:db8:64::/96'],
          },
        },
      ],
    });
    for (const role of ['operator', 'gateway']) {
      expect(args(docs, role)).toEqual(
        expect.arrayContaining([
          '--deny-cidrs=10.96.0.0/12',
          '--allow-cidrs=10.0.0.0/8,0.0.0.0/0',
          '--nat64-prefixes=2001:db8:64::/96',
        ]),
      );
    }
    expect(
      renderError({ values: [KEYS, { upstreamAddressPolicy: { denyCidrs: ['nope'] } }] }).stderr,
    ).toContain("'nope' does not match pattern");
  });

  describe('every integration on', () => {
    const docs = render({
      values: [
        KEYS,
        {
          networkPolicy: {
            enabled: true,
            extraEgress: [{ to: [{ podSelector: { matchLabels: { app: 'vllm' } } }] }],
          },
          metrics: {
            serviceMonitor: { enabled: true },
            prometheusRule: { enabled: true },
            grafanaDashboard: { enabled: true },
          },
          ingress: {
            enabled: true,
            className: 'nginx',
            hosts: [{ host: 'ai.example.com', paths: [{ path: '/' }] }],
          },
          gateway: { autoscaling: { enabled: false }, replicas: 3 },
        },
      ],
    });

    it('NetworkPolicy: both pods, default deny, egress never to the cloud metadata address', () => {
      const policies = docs.filter((d) => d.kind === 'NetworkPolicy');
      expect(
        policies.map((p) => p.spec.podSelector.matchLabels['app.kubernetes.io/component']).sort(),
      ).toEqual(['gateway', 'operator']);
      for (const p of policies) {
        expect(p.spec.policyTypes).toEqual(['Ingress', 'Egress']);
        const blocks = p.spec.egress.flatMap((e: Manifest) => e.to ?? []).filter((t: Manifest) => t.ipBlock);
        const v4 = blocks.find((b: Manifest) => b.ipBlock.cidr === '0.0.0.0/0');
        expect(v4.ipBlock.except).toContain('169.254.169.254/32');
        expect(blocks.find((b: Manifest) => b.ipBlock.cidr === '::/0').ipBlock.except).toContain(
          'fd00:ec2::254/128',
        );
        // no rule opens egress to everything (a rule without `to` and without ports would)
        for (const e of p.spec.egress) expect(e.to || e.ports).toBeTruthy();
      }
      const gw = policies.find((p) => p.metadata.name.endsWith('-gateway'));
      expect(gw?.spec.egress.at(-1)).toEqual({ to: [{ podSelector: { matchLabels: { app: 'vllm' } } }] });
    });

    it('ServiceMonitors scrape the metrics ports of both components', () => {
      const sms = docs.filter((d) => d.kind === 'ServiceMonitor');
      expect(sms).toHaveLength(2);
      for (const sm of sms)
        expect(sm.spec.endpoints[0]).toMatchObject({ port: 'http-metrics', path: '/metrics' });
      // every ServiceMonitor selects a Service that has the port it scrapes
      for (const sm of sms) {
        const svc = docs.filter(
          (d) =>
            d.kind === 'Service' &&
            Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => d.metadata.labels[k] === v) &&
            d.spec.ports.some((p: Manifest) => p.name === 'http-metrics'),
        );
        expect(svc, sm.metadata.name).toHaveLength(1);
      }
    });

    it('PrometheusRule: the alerts of the issue, on metrics the operator and gateway really export', () => {
      const rule = find(docs, 'PrometheusRule');
      const alerts = rule.spec.groups.flatMap((g: Manifest) => g.rules) as Manifest[];
      const byName = Object.fromEntries(alerts.map((a) => [a.alert, a]));
      expect(byName.PlugboardConnectionNotReady.expr).toContain('plugboard_connection_up');
      expect(byName.PlugboardConnectionNotReady.expr).toMatch(/== 0$/);
      expect(byName.PlugboardConnectionNotReady.for).toBe('10m');
      expect(byName.PlugboardUpstreamErrorRatioHigh.expr).toContain(
        'plugboard_gateway_upstream_errors_total',
      );
      expect(byName.PlugboardGatewaySaturated.expr).toContain('plugboard_gateway_in_flight_requests');
      expect(byName.PlugboardSnapshotNotSynced.expr).toContain('plugboard_gateway_snapshot_generation');
      // 80% of what the root and MAX_SHARDS shards hold, the limit past which the operator stops writing
      expect(byName.PlugboardSnapshotNearSizeLimit.expr).toMatch(
        new RegExp(`^max\\(plugboard_snapshot_bytes\\{.*\\}\\) > 0\\.8 \\* ${shardedCapacity()}$`),
      );
      expect(byName.PlugboardGatewayAtMaxReplicas).toBeUndefined(); // autoscaling is off here
      for (const a of alerts) {
        expect(a.labels.severity, a.alert).toMatch(/^(warning|critical)$/);
        expect(a.annotations.summary, a.alert).toBeTruthy();
        expect(a.annotations.runbook_url, a.alert).toContain('docs/operations.md#');
      }
      const known = exportedMetricNames();
      const dashboard = JSON.parse(find(docs, 'ConfigMap', '-dashboard').data['plugboard.json']);
      const exprs = [
        ...alerts.map((a) => a.expr as string),
        ...dashboard.panels.flatMap((p: Manifest) =>
          (p.targets ?? []).map((t: Manifest) => t.expr as string),
        ),
      ];
      const used = new Set(exprs.flatMap((e) => e.match(/\bplugboard_[a-z_]+/g) ?? []));
      expect(used.size).toBeGreaterThan(10);
      for (const m of used)
        expect(known, `${m} is not exported`).toContain(m.replace(/_(bucket|sum|count)$/, ''));
      // the runbook anchors exist in docs/operations.md
      const ops = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8').toLowerCase();
      for (const a of alerts) {
        const anchor = (a.annotations.runbook_url as string).split('#')[1] as string;
        expect(ops, anchor).toContain(`### ${anchor}`);
      }
    });

    it('Ingress routes to the gateway Service; replicas are fixed when autoscaling is off', () => {
      const ing = find(docs, 'Ingress');
      expect(ing.spec.ingressClassName).toBe('nginx');
      expect(ing.spec.rules[0].http.paths[0].backend.service).toEqual({
        name: 'pb-plugboard-gateway',
        port: { name: 'http' },
      });
      expect(find(docs, 'Deployment', '-gateway').spec.replicas).toBe(3);
      expect(docs.some((d) => d.kind === 'HorizontalPodAutoscaler')).toBe(false);
    });
  });

  describe('values.schema.json and template checks reject bad values with a clear message', () => {
    const cases: [string, string[], RegExp][] = [
      [
        'a typo in a key',
        ['gateway.clientKey.existingSecret=x'],
        /additional properties 'clientKey' not allowed/,
      ],
      ['zero operator replicas', ['operator.replicas=0'], /operator\/replicas.*minimum/s],
      [
        'a drain timeout with a unit',
        ['gateway.drainTimeoutSeconds=2m'],
        /drainTimeoutSeconds.*(integer|number)/s,
      ],
      [
        'an invalid namespace name',
        ['watchNamespaces={Team_A}'],
        /watchNamespaces\/0.*does not match pattern/s,
      ],
      ['an unknown pull policy', ['image.pullPolicy=Sometimes'], /pullPolicy.*Always.*IfNotPresent.*Never/s],
      [
        'a blocked CIDR that is not a CIDR',
        ['networkPolicy.blockedEgressCIDRs={metadata}'],
        /blockedEgressCIDRs\/0/,
      ],
      ['an unknown log level', ['gateway.logLevel=verbose'], /logLevel.*trace/s],
      [
        'two operators without leader election',
        ['operator.leaderElection=false'],
        /operator.replicas > 1 needs operator.leaderElection=true/,
      ],
      [
        'minReplicas above maxReplicas',
        ['gateway.autoscaling.minReplicas=20'],
        /minReplicas must not exceed/,
      ],
    ];
    for (const [what, set, message] of cases) {
      it(what, () => {
        const res = renderError({ values: KEYS, set });
        expect(res.status, res.stderr).not.toBe(0);
        expect(res.stderr).toMatch(message);
      });
    }
  });
});

function exportedMetricNames(): string[] {
  const names = [
    ...new OperatorMetrics().registry.getMetricsAsArray(),
    ...new GatewayMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
  ].map((m) => m.name);
  return names;
}

describe('examples/gitops', () => {
  const dir = join(ROOT, 'examples', 'gitops');

  it('plugboard-values.yaml renders: namespaced RBAC, client keys, NetworkPolicy and monitoring', () => {
    const values = parse(readFileSync(join(dir, 'plugboard-values.yaml'), 'utf8'));
    const docs = render({ values });
    expect(docs.filter((d) => d.kind.startsWith('Cluster'))).toEqual([]);
    expect(docs.filter((d) => d.kind === 'NetworkPolicy')).toHaveLength(2);
    expect(docs.some((d) => d.kind === 'PrometheusRule')).toBe(true);
  });

  it('connections/ holds valid Plugboard resources', () => {
    const files = readdirSync(join(dir, 'connections')).filter((f) => f !== 'kustomization.yaml');
    const kinds: string[] = [];
    for (const f of files) {
      for (const doc of parseAllDocuments(readFileSync(join(dir, 'connections', f), 'utf8'))) {
        const obj = doc.toJSON();
        const parsed = parseResource(obj);
        expect(parsed.ok, `${f}: ${JSON.stringify(parsed)}`).toBe(true);
        kinds.push(obj.kind);
      }
    }
    expect(kinds.sort()).toEqual(['ModelAllowlist', 'ProviderConnection', 'ProviderConnection']);
  });
});
