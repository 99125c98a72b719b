/**
 * End to end on a real single-node cluster (issue 15): `helm install` of charts/plugboard with the locally built
 * image (no pull) into a namespace that enforces the restricted Pod Security Standard; a mock provider Deployment
 * from the same image, reached by its Service DNS name; chat through the gateway Service with the official openai
 * client from inside the cluster's network; client-key rotation per gateway replica; and, under 200 req/s of mixed
 * traffic, scaling, a deleted gateway pod, a rolling `helm upgrade` and a deleted leader, with no failed request.
 * Issue 17: the chart's ServiceMonitors, PrometheusRule and dashboard, installed with the Prometheus Operator's own
 * CRDs, read by one Prometheus (./prometheus.ts) that scrapes every pod through the whole run: healthy targets, the
 * series of every metric docs/operations.md names, an alert that fires on a wrong key and resolves when it is fixed,
 * and every dashboard panel answering after the suite's traffic.
 * The cluster itself is started by ./global-setup.ts (npm run cluster:up).
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dashboard, panelQueries } from '../support/grafana.ts';
import { prometheusBinaries } from '../support/prometheus.ts';
import type { PrometheusRule, ServiceMonitor } from '../support/prometheus-operator.ts';
import { Prometheus } from './prometheus.ts';
import {
  client,
  cluster,
  helm,
  isReady,
  kubectl,
  kubectlJson,
  type LoadResult,
  MemoryPeaks,
  type PodList,
  ROOT,
  startClient,
  until,
} from './support.ts';

const NS = 'plugboard-system';
const AI = 'ai';
const GATEWAY = `http://plugboard-gateway.${NS}.svc.cluster.local/v1`;
const MODEL = 'gpt-4o';
/** Client keys: the load uses one that every version of the Secret keeps; rotation swaps the other. */
const LOAD_KEY = 'pb-e2e-load';
const OLD_KEY = 'pb-e2e-old';
const NEW_KEY = 'pb-e2e-new';
const RPS = 200;
/**
 * Monitoring made fast for the test through chart values and the Prometheus resource's settings, not by editing
 * rules: the ServiceMonitors' scrape interval, the rules' evaluation interval, PlugboardConnectionNotReady's for:.
 */
const SCRAPE_S = 5;
const EVAL_S = 5;
const NOT_READY_FOR_S = 20;
const [repository, tag] = cluster.image.split(/:(?=[^:/]+$)/) as [string, string];

const memory = new MemoryPeaks();
let prom: Prometheus;
const figures: string[] = [];
const report = (line: string) => {
  figures.push(line);
  console.log(line);
};

function clientKeysSecret(keys: string[]): string {
  return `apiVersion: v1
kind: Secret
metadata: {name: plugboard-client-keys, namespace: ${NS}}
stringData:
  keys.yaml: |
${keys.map((k) => `    - {name: ${k}, key: ${k}}`).join('\n')}
`;
}

const restricted = `
      securityContext:
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}`;
const restrictedContainer = `
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}`;

const mockProvider = `apiVersion: apps/v1
kind: Deployment
metadata: {name: mock-openai, namespace: ${AI}}
spec:
  replicas: 1
  selector: {matchLabels: {app: mock-openai}}
  template:
    metadata: {labels: {app: mock-openai}}
    spec:${restricted}
      containers:
        - name: mock
          image: ${cluster.image}
          imagePullPolicy: Never
          args: [mock-provider, --profile, openai, --listen, "0.0.0.0:8081", --api-key, sk-e2e-upstream, --chunk-delay-ms, "5"]
          ports: [{name: http, containerPort: 8081}]
          readinessProbe: {tcpSocket: {port: http}, periodSeconds: 2}
          resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}${restrictedContainer}
---
apiVersion: v1
kind: Service
metadata: {name: mock-openai, namespace: ${AI}}
spec:
  selector: {app: mock-openai}
  ports: [{port: 80, targetPort: http}]
`;

const connection = `apiVersion: v1
kind: Secret
metadata: {name: mock-openai-key, namespace: ${AI}}
stringData: {apiKey: sk-e2e-upstream}
---
apiVersion: plugboard.dev/v1alpha1
kind: ProviderConnection
metadata: {name: mock, namespace: ${AI}}
spec:
  url: http://mock-openai.${AI}.svc.cluster.local/v1
  apiKeySecretRef: {name: mock-openai-key}
`;

/** A second connection to the same mock, through its own Service, serving its models as `b.<id>`. */
const mockB = (key: string) => `apiVersion: v1
kind: Secret
metadata: {name: mock-b-key, namespace: ${AI}}
stringData: {apiKey: ${key}}
---
apiVersion: v1
kind: Service
metadata: {name: mock-b, namespace: ${AI}}
spec:
  selector: {app: mock-openai}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: plugboard.dev/v1alpha1
kind: ProviderConnection
metadata: {name: mock-b, namespace: ${AI}}
spec:
  url: http://mock-b.${AI}.svc.cluster.local/v1
  apiKeySecretRef: {name: mock-b-key}
  modelPrefix: b
`;

const gatewayPods = () =>
  kubectlJson<PodList>(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/component=gateway']);
const operatorPods = () =>
  kubectlJson<PodList>(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/component=operator']);

/** Waits until exactly n gateway pods exist and all are Ready (terminating ones gone). */
const gatewaysSettled = (n: number) =>
  until(
    `${n} gateway pods Ready and no other`,
    async () => {
      const pods = (await gatewayPods()).items;
      return pods.length === n && pods.every(isReady) ? pods : undefined;
    },
    300_000,
  );

const ms = (since: number) => Date.now() - since;

beforeAll(async () => {
  // A cluster that was already running may hold an earlier run's release.
  await helm(['uninstall', 'plugboard', '-n', NS, '--wait', '--ignore-not-found']).catch(() => '');
  await kubectl(['delete', 'namespace', NS, AI, '--ignore-not-found', '--wait=true', '--timeout=180s']);
  let t = Date.now();
  for (const ns of [NS, AI]) {
    await kubectl(['create', 'namespace', ns]);
    await kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
  }
  await kubectl(['apply', '-f', '-'], mockProvider);
  await kubectl(['apply', '-f', '-'], clientKeysSecret([LOAD_KEY, OLD_KEY]));
  // The Prometheus Operator's own CRDs (from its Go module), so the chart's objects meet their real schemas.
  const crds = join(prometheusBinaries(), 'prometheus-operator', 'example', 'prometheus-operator-crd');
  for (const plural of ['servicemonitors', 'prometheusrules'])
    await kubectl(['apply', '--server-side', '-f', join(crds, `monitoring.coreos.com_${plural}.yaml`)]);
  await kubectl([
    'wait',
    '--for=condition=Established',
    'crd/servicemonitors.monitoring.coreos.com',
    'crd/prometheusrules.monitoring.coreos.com',
  ]);
  memory.start([NS, AI]);
  await helm([
    'install',
    'plugboard',
    join(ROOT, 'charts', 'plugboard'),
    '-n',
    NS,
    '--set',
    `image.repository=${repository}`,
    '--set',
    `image.tag=${tag}`,
    '--set',
    'image.pullPolicy=Never',
    '--set',
    'gateway.clientKeys.existingSecret=plugboard-client-keys',
    '--set',
    `watchNamespaces={${AI}}`,
    '--set',
    'gateway.autoscaling.enabled=false',
    '--set',
    'gateway.replicas=3',
    '--set',
    'operator.replicas=2',
    '--set',
    'metrics.serviceMonitor.enabled=true',
    '--set',
    `metrics.serviceMonitor.interval=${SCRAPE_S}s`,
    '--set',
    `metrics.serviceMonitor.scrapeTimeout=${SCRAPE_S - 1}s`,
    '--set',
    'metrics.prometheusRule.enabled=true',
    '--set',
    `metrics.prometheusRule.connectionNotReadyFor=${NOT_READY_FOR_S}s`,
    '--set',
    'metrics.grafanaDashboard.enabled=true',
    '--wait',
    '--timeout=5m',
  ]);
  report(`helm install --wait: ${ms(t)} ms`);
  await kubectl(['-n', AI, 'rollout', 'status', 'deploy/mock-openai', '--timeout=120s']);
  t = Date.now();
  await kubectl(['apply', '-f', '-'], connection);
  await kubectl(['-n', AI, 'wait', '--for=condition=Ready', 'providerconnection/mock', '--timeout=120s']);
  report(`kubectl apply of a connection -> Ready: ${ms(t)} ms`);
  // Prometheus from the objects as the API server stores them (what the Prometheus Operator reads).
  t = Date.now();
  const sms = await kubectlJson<{ items: ServiceMonitor[] }>(['-n', NS, 'get', 'servicemonitors']);
  const rules = await kubectlJson<{ items: PrometheusRule[] }>(['-n', NS, 'get', 'prometheusrules']);
  prom = await Prometheus.start({
    serviceMonitors: sms.items,
    rules: rules.items,
    evaluationInterval: `${EVAL_S}s`,
  });
  report(
    `Prometheus ready, ${sms.items.length} ServiceMonitors and ${rules.items.length} PrometheusRule read from the API: ${ms(t)} ms`,
  );
}, 900_000);

afterAll(async () => {
  await prom?.stop();
  await memory.stop();
  const rows = [...memory.peaks].sort(([a], [b]) => a.localeCompare(b));
  console.log(
    `peak memory per container (cgroup):\n${rows.map(([n, b]) => `  ${n}: ${(b / 2 ** 20).toFixed(1)} MiB`).join('\n')}`,
  );
  console.log(`figures:\n  ${figures.join('\n  ')}`);
});

describe('Plugboard installed by its chart on a real cluster', () => {
  it('runs 2 operator and 3 gateway pods, Ready through the chart probes, under the restricted Pod Security Standard', async () => {
    const ns = await kubectlJson<{ metadata: { labels: Record<string, string> } }>(['get', 'namespace', NS]);
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const operators = (await operatorPods()).items;
    const gateways = (await gatewayPods()).items;
    expect(operators.filter(isReady)).toHaveLength(2);
    expect(gateways.filter(isReady)).toHaveLength(3);
    for (const p of [...operators, ...gateways]) {
      expect(p.status.phase).toBe('Running');
      for (const c of p.status.containerStatuses ?? []) expect(c.ready).toBe(true);
    }
    const deploy = await kubectlJson<{ spec: { template: { spec: { containers: { image: string }[] } } } }>([
      '-n',
      NS,
      'get',
      'deploy',
      'plugboard-gateway',
    ]);
    expect(deploy.spec.template.spec.containers[0]?.image).toBe(cluster.image);
  });

  it('verifies the connection to the mock provider by its Service DNS name', async () => {
    const pconn = await kubectlJson<{
      status: { conditions: { type: string; status: string; reason: string }[] };
    }>(['-n', AI, 'get', 'providerconnection', 'mock']);
    const ready = pconn.status.conditions.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'True', reason: 'Verified' });
  });

  it('serves chat, plain and streamed, through the gateway Service to the openai client in the cluster network', async () => {
    const r = await client<{ models: string[]; reply: string; chunks: number; text: string }>('chat', {
      baseURL: GATEWAY,
      apiKey: LOAD_KEY,
      model: MODEL,
    });
    expect(r.models).toContain(MODEL);
    expect(r.reply.length).toBeGreaterThan(0);
    expect(r.chunks).toBeGreaterThan(2);
    expect(r.text.length).toBeGreaterThan(0);
  });

  it('propagates a client-key rotation to every gateway replica (target: 2 s each)', async () => {
    const pods = (await gatewayPods()).items.filter(isReady);
    const targets = pods.map((p) => `http://${p.status.podIP}:8080`);
    const measure = async (keys: string[], newKey: string, oldKey?: string) => {
      const probe = startClient<Record<string, { acceptsNewMs: number | null; refusesOldMs: number | null }>>(
        'keys',
        { targets, newKey, oldKey },
      );
      await probe.stderrHas('ready');
      const since = Date.now();
      probe.write(`go ${since}`);
      await kubectl(['apply', '-f', '-'], clientKeysSecret(keys));
      return probe.result();
    };
    const added = await measure([LOAD_KEY, OLD_KEY, NEW_KEY], NEW_KEY);
    const removed = await measure([LOAD_KEY, NEW_KEY], NEW_KEY, OLD_KEY);
    const name = (i: number) => pods[i]?.metadata.name;
    const addMs = Object.values(added).map((r) => r.acceptsNewMs);
    const removeMs = Object.values(removed).map((r) => r.refusesOldMs);
    report(
      `key rotation, ms from the Secret update (kubectl apply started) to each replica: new key accepted ${targets.map((_, i) => `${name(i)}=${addMs[i]}`).join(' ')}; old key refused ${targets.map((_, i) => `${name(i)}=${removeMs[i]}`).join(' ')}`,
    );
    for (const v of [...addMs, ...removeMs]) {
      expect(v).not.toBeNull();
      expect(v as number).toBeLessThanOrEqual(2000);
    }
  }, 120_000);

  it(`under ${RPS} req/s: scale 3→5→2, a deleted gateway pod, helm upgrade and a deleted leader fail no request`, async () => {
    const load = startClient<LoadResult>('load', {
      baseURL: GATEWAY,
      apiKey: LOAD_KEY,
      model: MODEL,
      rps: RPS,
    });
    try {
      await load.stderrHas('ready');
      const phase = async (name: string, action: () => Promise<unknown>) => {
        load.write(`phase ${name}`);
        const t = Date.now();
        await action();
        report(`${name}: ${ms(t)} ms`);
      };
      await phase('steady (3 gateways)', () => new Promise((r) => setTimeout(r, 5000)));
      await phase('scale 3→5', async () => {
        await kubectl(['-n', NS, 'scale', 'deploy/plugboard-gateway', '--replicas=5']);
        await gatewaysSettled(5);
      });
      await phase('scale 5→2', async () => {
        await kubectl(['-n', NS, 'scale', 'deploy/plugboard-gateway', '--replicas=2']);
        await gatewaysSettled(2);
      });
      await phase('delete a gateway pod', async () => {
        const victim = (await gatewayPods()).items[0]?.metadata.name as string;
        await kubectl(['-n', NS, 'delete', 'pod', victim, '--wait=false']);
        await until(
          `${victim} gone and 2 gateways Ready`,
          async () => {
            const pods = (await gatewayPods()).items;
            return !pods.some((p) => p.metadata.name === victim) && pods.filter(isReady).length === 2;
          },
          300_000,
        );
      });
      await phase('helm upgrade (rolling)', async () => {
        await helm([
          'upgrade',
          'plugboard',
          join(ROOT, 'charts', 'plugboard'),
          '-n',
          NS,
          '--reuse-values',
          '--set',
          'gateway.replicas=2',
          '--set',
          `gateway.podAnnotations.e2e-rollout=r${Date.now()}`,
          '--set',
          `operator.podAnnotations.e2e-rollout=r${Date.now()}`,
          '--wait',
          '--timeout=5m',
        ]);
        await kubectl(['-n', NS, 'rollout', 'status', 'deploy/plugboard-gateway', '--timeout=300s']);
        await gatewaysSettled(2);
      });
      let leaderMs = 0;
      let leaseSeconds = 0;
      await phase('delete the leader operator pod', async () => {
        const lease = await kubectlJson<{ spec: { holderIdentity: string; leaseDurationSeconds: number } }>([
          '-n',
          NS,
          'get',
          'lease',
          'plugboard-operator',
        ]);
        leaseSeconds = lease.spec.leaseDurationSeconds;
        const leaderPod = lease.spec.holderIdentity.replace(/-\d+$/, '');
        const t = Date.now();
        await kubectl(['-n', NS, 'delete', 'pod', leaderPod, '--wait=false']);
        const next = await until(
          'a new leader',
          async () => {
            const l = await kubectlJson<{ spec: { holderIdentity?: string } }>([
              '-n',
              NS,
              'get',
              'lease',
              'plugboard-operator',
            ]);
            const holder = l.spec.holderIdentity?.replace(/-\d+$/, '');
            return holder && holder !== leaderPod ? holder : undefined;
          },
          120_000,
        );
        leaderMs = ms(t);
        report(
          `leader ${leaderPod} deleted; ${next} leads after ${leaderMs} ms (lease duration ${leaseSeconds} s)`,
        );
        await until(
          '2 operator pods Ready',
          async () => (await operatorPods()).items.filter(isReady).length === 2,
          300_000,
        );
      });
      await phase('after', () => new Promise((r) => setTimeout(r, 3000)));

      const result = await load.result();
      for (const p of result.phases) {
        const causes = Object.entries(p.retryCauses).map(([why, n]) => `${n}× ${why}`);
        report(
          `load phase "${p.name}": ${p.sent} requests, ${p.ok} ok, ${p.failed} failed, ${p.retries} client retries` +
            `${causes.length ? ` (${causes.join(', ')})` : ''}, p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms` +
            `${p.errors.length ? `; errors: ${p.errors.join(' | ')}` : ''}`,
        );
      }
      const total = result.phases.reduce((n, p) => n + p.sent, 0);
      report(
        `load: ${total} requests in ${result.seconds.toFixed(0)} s (${(total / result.seconds).toFixed(0)}/s offered); ` +
          `the load client used ${result.clientCpuSeconds.toFixed(0)} CPU s; machine load average ` +
          `${loadavg()
            .map((l) => l.toFixed(1))
            .join(' ')} (2 cores, shared)`,
      );
      expect(result.phases.map((p) => ({ name: p.name, failed: p.failed, errors: p.errors }))).toEqual(
        result.phases.map((p) => ({ name: p.name, failed: 0, errors: [] })),
      );
      expect(leaderMs).toBeLessThanOrEqual(leaseSeconds * 1000);
    } finally {
      load.kill();
    }
  }, 1_200_000);

  it('Prometheus scrapes every operator and gateway pod as a healthy target, labelled as the ServiceMonitors say', async () => {
    const t = Date.now();
    const expected = async () =>
      [...(await operatorPods()).items, ...(await gatewayPods()).items]
        .filter((p) => !p.metadata.deletionTimestamp)
        .map((p) => p.metadata.name)
        .sort();
    let last = '';
    const targets = await until(
      'one up target per operator and gateway pod, and no other',
      async () => {
        const pods = await expected();
        const ts = await prom.targets();
        last = ts.map((x) => `${x.labels.pod} ${x.health} ${x.lastError}`).join('; ');
        const scraped = ts.map((x) => x.labels.pod).sort();
        return JSON.stringify(scraped) === JSON.stringify(pods) && ts.every((x) => x.health === 'up')
          ? ts
          : undefined;
      },
      120_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\ntargets: ${last}\nprometheus log:\n${prom.log()}`);
    });
    report(
      `Prometheus targets up (${targets.length}: ${targets.map((x) => x.labels.pod).join(', ')}): ${ms(t)} ms`,
    );
    for (const x of targets) {
      const component = x.labels.job as string;
      expect(['operator', 'gateway'], x.labels.pod).toContain(component);
      expect(x.labels).toMatchObject({
        namespace: NS,
        service: `plugboard-${component}-metrics`,
        endpoint: 'http-metrics',
      });
      expect(x.scrapeUrl).toMatch(new RegExp(`:${component === 'gateway' ? 9090 : 8081}/metrics$`));
    }
  });

  it(`PlugboardConnectionNotReady fires within its for: (${NOT_READY_FOR_S} s, a chart value) plus one evaluation interval of a wrong key, and resolves when it is fixed`, async () => {
    const ALERT = 'PlugboardConnectionNotReady';
    const up = async () =>
      (await prom.query(`plugboard_connection_up{namespace="${AI}",name="mock-b"}`))[0]?.value[1];
    const mine = async () =>
      (await prom.alerts()).find((a) => a.labels.alertname === ALERT && a.labels.name === 'mock-b');
    await kubectl(['apply', '-f', '-'], mockB('sk-e2e-upstream'));
    await kubectl(['-n', AI, 'wait', '--for=condition=Ready', 'providerconnection/mock-b', '--timeout=120s']);
    // A new connection is not Ready until verified, so its first samples may be 0 and the alert pending: wait for
    // the rule's next evaluation after the 1.
    await until(
      `mock-b scraped as up and ${ALERT} inactive for it`,
      async () => (await up()) === '1' && (await mine()) === undefined,
      60_000,
    );

    const broken = Date.now();
    await kubectl(['apply', '-f', '-'], mockB('sk-e2e-wrong-key'));
    const seen: { down?: number; pending?: number; firing?: number } = {};
    const firing = await until(
      `${ALERT} firing for ai/mock-b`,
      async () => {
        if (seen.down === undefined && (await up()) === '0') seen.down = Date.now();
        const a = await mine();
        if (a?.state === 'pending' && seen.pending === undefined) seen.pending = Date.now();
        if (a?.state === 'firing') {
          seen.firing = Date.now();
          return a;
        }
        return undefined;
      },
      180_000,
    );
    const pconn = await kubectlJson<{ status: { conditions: { type: string; reason: string }[] } }>([
      '-n',
      AI,
      'get',
      'providerconnection',
      'mock-b',
    ]);
    const reason = pconn.status.conditions.find((c) => c.type === 'Ready')?.reason;
    const activeAt = Date.parse(firing.activeAt);
    report(
      `alert ${ALERT}: wrong key applied -> plugboard_connection_up 0 in Prometheus ${(seen.down as number) - broken} ms ` +
        `(Ready reason ${reason}); -> pending (activeAt) ${activeAt - broken} ms; -> firing ${(seen.firing as number) - broken} ms ` +
        `(${(seen.firing as number) - (seen.down as number)} ms after the 0 was seen; for: ${NOT_READY_FOR_S} s, evaluation every ${EVAL_S} s, scrape every ${SCRAPE_S} s)`,
    );
    expect(firing.labels).toMatchObject({ namespace: AI, name: 'mock-b', severity: 'warning' });
    expect(firing.annotations.summary).toBe(
      `ProviderConnection ${AI}/mock-b has not been Ready for ${NOT_READY_FOR_S}s`,
    );
    expect(firing.annotations.runbook_url).toMatch(/docs\/operations\.md#plugboardconnectionnotready$/);
    // Within for: plus one evaluation interval of the moment Prometheus held the 0 (polled each 250 ms; 10 s slack
    // for rule evaluation on a busy shared machine).
    expect((seen.firing as number) - (seen.down as number)).toBeLessThanOrEqual(
      (NOT_READY_FOR_S + EVAL_S + 10) * 1000,
    );
    expect((seen.firing as number) - activeAt).toBeGreaterThanOrEqual(NOT_READY_FOR_S * 1000 - 1000);

    const fixed = Date.now();
    await kubectl(['apply', '-f', '-'], mockB('sk-e2e-upstream'));
    let upAgain: number | undefined;
    await until(
      `${ALERT} resolved for ai/mock-b`,
      async () => {
        if (upAgain === undefined && (await up()) === '1') upAgain = Date.now();
        return upAgain !== undefined && (await mine()) === undefined;
      },
      120_000,
    );
    report(
      `alert ${ALERT}: key fixed -> plugboard_connection_up 1 in Prometheus ${(upAgain as number) - fixed} ms; -> resolved ${ms(fixed)} ms`,
    );
    expect(await prom.ruleState(ALERT)).toBe('inactive');
  }, 420_000);

  it('an upstream that refuses connections shows in the upstream-error series (its only model answers 502), an unknown client key in the rejected ones', async () => {
    // No endpoints behind mock-b's Service: kube-proxy rejects connections to it.
    await kubectl(['-n', AI, 'patch', 'service', 'mock-b', '-p', '{"spec":{"selector":{"app":"nobody"}}}']);
    try {
      const got = await until(
        'requests for b.gpt-4o answered 502',
        async () => {
          const r = await client<Record<string, number>>('requests', {
            baseURL: GATEWAY,
            apiKey: LOAD_KEY,
            model: 'b.gpt-4o',
            n: 5,
          });
          return r['502'] ? r : undefined;
        },
        60_000,
      );
      report(
        `b.gpt-4o with mock-b's upstream refusing connections: ${JSON.stringify(got)} (HTTP status: count)`,
      );
    } finally {
      await kubectl([
        '-n',
        AI,
        'patch',
        'service',
        'mock-b',
        '-p',
        '{"spec":{"selector":{"app":"mock-openai"}}}',
      ]);
    }
    const errors = await until(
      'upstream errors of ai/mock-b in Prometheus',
      async () => {
        const r = await prom.query(
          `sum by (reason) (plugboard_gateway_upstream_errors_total{connection="${AI}/mock-b"})`,
        );
        return r.length ? r : undefined;
      },
      60_000,
    );
    expect(errors.map((e) => e.metric.reason)).toContain('connect_error');
    const refused = await client<Record<string, number>>('requests', {
      baseURL: GATEWAY,
      apiKey: 'pb-e2e-unknown-key',
      model: MODEL,
      n: 3,
    });
    expect(refused).toEqual({ 401: 3 });
    await until(
      'the 401s in Prometheus',
      async () =>
        Number(
          (
            await prom.query(
              'sum(plugboard_gateway_rejected_requests_total{status="401",code="invalid_api_key"})',
            )
          )[0]?.value[1] ?? 0,
        ) >= 3,
      60_000,
    );
  }, 180_000);

  it('has series for every metric docs/operations.md names', async () => {
    const ops = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
    const table = ops.slice(ops.indexOf('## Metrics'), ops.indexOf('## Dashboard'));
    const named = [
      ...new Set(
        table
          .split('\n')
          .filter((l) => l.startsWith('| `'))
          .flatMap((l) =>
            [...(l.split('|')[1] as string).matchAll(/`([a-z_:]+\*?)(?:\{[^`]*\})?`/g)].map(
              (m) => m[1] as string,
            ),
          ),
      ),
    ];
    expect(named.length).toBeGreaterThan(30);
    const t = Date.now();
    let missing = named;
    await until(
      'a series for every metric named in docs/operations.md',
      async () => {
        const have = new Set(
          (await prom.query('count by (__name__) ({job=~"operator|gateway"})')).map(
            (r) => r.metric.__name__ as string,
          ),
        );
        missing = named.filter((n) =>
          n.endsWith('*')
            ? ![...have].some((h) => h.startsWith(n.slice(0, -1)))
            : !have.has(n) && !have.has(`${n}_bucket`),
        );
        return missing.length === 0;
      },
      60_000,
    ).catch(() => undefined);
    expect(missing, 'metrics named in docs/operations.md without a series').toEqual([]);
    const perJob = await prom.query('count by (job) (process_cpu_seconds_total)');
    expect(perJob.map((r) => r.metric.job).sort()).toEqual(['gateway', 'operator']);
    report(
      `metrics named in docs/operations.md with series: ${named.length} of ${named.length} (${ms(t)} ms)`,
    );
  }, 120_000);

  it('answers every query of every dashboard panel, with data, after the suite’s traffic', async () => {
    const cm = await kubectlJson<{ data: Record<string, string> }>([
      '-n',
      NS,
      'get',
      'configmap',
      'plugboard-dashboard',
    ]);
    const dashboard = Dashboard.parse(JSON.parse(cm.data['plugboard.json'] as string));
    // Template variables as Grafana fills them: the namespace variable's query, all of its values selected.
    const nsVar = dashboard.templating?.list?.find((v) => v.name === 'namespace');
    const query = (nsVar?.query as { query?: string } | undefined)?.query ?? '';
    const m = /^label_values\((\w+), *(\w+)\)$/.exec(query);
    expect(m, query).not.toBeNull();
    const namespaces = await prom.labelValues(m?.[2] as string, m?.[1] as string);
    expect(namespaces).toEqual([NS]);
    const queries = panelQueries(dashboard, { namespace: namespaces });
    const failed: string[] = [];
    let empty: string[] = [];
    // A rate() needs two samples of a series in its window: a series the suite's last traffic made may have one
    // scrape so far. Queries without data are asked again until the next scrapes (generous: a busy machine).
    const deadline = Date.now() + 60_000;
    for (let pending = queries; pending.length > 0; ) {
      empty = [];
      const again: typeof queries = [];
      for (const q of pending) {
        try {
          if ((await prom.query(q.expr)).length === 0) {
            empty.push(`${q.panel} (${q.refId}): ${q.expr}`);
            again.push(q);
          }
        } catch (err) {
          failed.push(`${q.panel} (${q.refId}): ${(err as Error).message}`);
        }
      }
      if (again.length === 0 || Date.now() > deadline) break;
      pending = again;
      await new Promise((r) => setTimeout(r, 5000));
    }
    const panels = new Set(queries.map((q) => q.panel));
    const withData = new Set(
      queries.filter((q) => !empty.some((e) => e.startsWith(`${q.panel} (`))).map((q) => q.panel),
    );
    report(
      `dashboard: ${withData.size} of ${panels.size} panels (${queries.length - empty.length - failed.length} of ${queries.length} queries) returned data`,
    );
    expect(failed, 'queries Prometheus refused').toEqual([]);
    expect(empty, 'queries without data').toEqual([]);
  }, 120_000);

  it('restarted or OOM-killed no container', async () => {
    for (const ns of [NS, AI, 'kube-system']) {
      const pods = await kubectlJson<PodList>(['-n', ns, 'get', 'pods']);
      for (const p of pods.items)
        for (const c of p.status.containerStatuses ?? []) {
          expect(c.restartCount, `${ns}/${p.metadata.name}/${c.name} restarts`).toBe(0);
          expect(c.lastState?.terminated?.reason, `${ns}/${p.metadata.name}/${c.name}`).not.toBe('OOMKilled');
        }
    }
    const events = await kubectl([
      'get',
      'events',
      '-A',
      '--field-selector',
      'reason=OOMKilling',
      '-o',
      'name',
    ]);
    expect(events.trim()).toBe('');
  });
});
