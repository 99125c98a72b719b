import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startMockProvider } from '../../src/mock-provider/index.ts';
import type { MockProvider } from '../../src/mock-provider/types.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { Api, eventually, startOperator } from '../operator/harness.ts';
import { freePort } from '../support/control-plane.ts';
import { createNamespace, kubeRaw, testKubeConfig } from '../support/kube.ts';
import { prometheusBinaries } from '../support/prometheus.ts';
import { KEYS, type Manifest, ROOT, render } from './helm.ts';

/** REST path of a manifest's collection (the kinds this chart renders, plus the Prometheus Operator's). */
const RESOURCES: Record<string, [group: string, plural: string, namespaced: boolean]> = {
  ServiceAccount: ['v1', 'serviceaccounts', true],
  Service: ['v1', 'services', true],
  ConfigMap: ['v1', 'configmaps', true],
  Pod: ['v1', 'pods', true],
  Deployment: ['apps/v1', 'deployments', true],
  HorizontalPodAutoscaler: ['autoscaling/v2', 'horizontalpodautoscalers', true],
  PodDisruptionBudget: ['policy/v1', 'poddisruptionbudgets', true],
  Role: ['rbac.authorization.k8s.io/v1', 'roles', true],
  RoleBinding: ['rbac.authorization.k8s.io/v1', 'rolebindings', true],
  ClusterRole: ['rbac.authorization.k8s.io/v1', 'clusterroles', false],
  ClusterRoleBinding: ['rbac.authorization.k8s.io/v1', 'clusterrolebindings', false],
  NetworkPolicy: ['networking.k8s.io/v1', 'networkpolicies', true],
  Ingress: ['networking.k8s.io/v1', 'ingresses', true],
  ServiceMonitor: ['monitoring.coreos.com/v1', 'servicemonitors', true],
  PrometheusRule: ['monitoring.coreos.com/v1', 'prometheusrules', true],
  CustomResourceDefinition: ['apiextensions.k8s.io/v1', 'customresourcedefinitions', false],
};

function path(m: Manifest): string {
  const entry = RESOURCES[m.kind];
  if (!entry) throw new Error(`unknown kind ${m.kind}`);
  const [gv, plural, namespaced] = entry;
  const base = gv === 'v1' ? '/api/v1' : `/apis/${gv}`;
  return `${base}${namespaced ? `/namespaces/${m.metadata.namespace}` : ''}/${plural}/${m.metadata.name}`;
}

/** Server-side apply (what `kubectl apply --server-side [--dry-run=server]` sends). */
async function apply(kc: KubeConfig, m: Manifest, dryRun: boolean) {
  // Strict: a field the schema does not know (a typo, a field of another version) is an error, not pruned.
  const q = `?fieldManager=plugboard-chart-test&force=true&fieldValidation=Strict${dryRun ? '&dryRun=All' : ''}`;
  return kubeRaw(kc, 'PATCH', path(m) + q, {
    body: m,
    headers: { 'content-type': 'application/apply-patch+yaml' },
  });
}

async function must(res: Promise<{ status: number; body: unknown }>, what: string) {
  const r = await res;
  if (r.status >= 300) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as Manifest;
}

/**
 * The Prometheus Operator's own ServiceMonitor and PrometheusRule CRDs (from its Go module, fetched by
 * scripts/build-prometheus.sh), so the API server validates the rendered objects against their real schemas.
 */
async function installMonitoringCrds(kc: KubeConfig) {
  const dir = join(prometheusBinaries(), 'prometheus-operator', 'example', 'prometheus-operator-crd');
  for (const plural of ['servicemonitors', 'prometheusrules']) {
    const crd = parse(readFileSync(join(dir, `monitoring.coreos.com_${plural}.yaml`), 'utf8')) as Manifest;
    await must(apply(kc, crd, false), `CRD ${plural}`);
    await eventually(async () => {
      const got = (await kubeRaw(kc, 'GET', path(crd))).body as Manifest;
      return got.status?.conditions?.some((c: Manifest) => c.type === 'Established' && c.status === 'True');
    }, `${plural} Established`);
  }
}

/** A kubeconfig for a ServiceAccount, with a token from the TokenRequest API (what `kubectl create token` does). */
async function serviceAccountKubeConfig(admin: KubeConfig, namespace: string, name: string): Promise<string> {
  const res = await must(
    kubeRaw(admin, 'POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { expirationSeconds: 3600 },
      },
    }),
    `token for ${name}`,
  );
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error('no cluster');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster, name: 'test' }],
    users: [{ name, token: res.status.token }],
    contexts: [{ name: 'sa', cluster: 'test', user: name, namespace }],
    currentContext: 'sa',
  });
  return kc.exportConfig();
}

function kubeConfigOf(yaml: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(yaml);
  return kc;
}

describe('the chart against a real API server', () => {
  const admin = testKubeConfig();

  it('every rendered manifest (all options on) passes server-side dry-run, and the pods pass restricted PodSecurity', async () => {
    const ns = await createNamespace(admin, 'chart-dry');
    const team = await createNamespace(admin, 'chart-dry-team');
    await installMonitoringCrds(admin);
    // PodSecurity admission enforces `restricted` on this namespace (it only checks Pods, so we dry-run those too).
    await must(
      kubeRaw(admin, 'PATCH', `/api/v1/namespaces/${ns}`, {
        body: { metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } },
        headers: { 'content-type': 'application/merge-patch+json' },
      }),
      'label namespace',
    );
    const variants = [
      { values: [KEYS] }, // cluster-wide
      {
        values: [
          KEYS,
          {
            watchNamespaces: [team],
            networkPolicy: { enabled: true, apiServerCIDRs: ['10.0.0.1/32'] },
            metrics: {
              serviceMonitor: { enabled: true },
              prometheusRule: { enabled: true },
              grafanaDashboard: { enabled: true },
            },
            ingress: { enabled: true },
          },
        ],
      },
      { set: ['gateway.clientKeys.required=false', 'gateway.autoscaling.enabled=false'] },
    ];
    const kinds = new Set<string>();
    for (const v of variants) {
      const docs = render({ namespace: ns, release: `pb${variants.indexOf(v)}`, ...v });
      for (const m of docs) {
        kinds.add(m.kind);
        const res = await apply(admin, m, true);
        expect(res.status, `${m.kind}/${m.metadata.name}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
        if (m.kind === 'Deployment') {
          const pod = {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name: `${m.metadata.name}-probe`, namespace: ns },
            spec: m.spec.template.spec,
          };
          const r = await kubeRaw(admin, 'POST', `/api/v1/namespaces/${ns}/pods?dryRun=All`, { body: pod });
          expect(r.status, `${m.metadata.name} pod: ${JSON.stringify(r.body)}`).toBeLessThan(300);
        }
      }
    }
    expect([...kinds].sort()).toEqual(
      Object.keys(RESOURCES)
        .filter((k) => k !== 'Pod' && k !== 'CustomResourceDefinition')
        .sort(),
    );
    // the control: a privileged pod is refused in that namespace, so the check above means something
    const bad = await kubeRaw(admin, 'POST', `/api/v1/namespaces/${ns}/pods?dryRun=All`, {
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'bad' },
        spec: { containers: [{ name: 'c', image: 'x', securityContext: { privileged: true } }] },
      },
    });
    expect(bad.status).toBe(403);
    // the chart's CRDs dry-run too (they are installed for real by the test setup from crds/)
    for (const m of render({ values: KEYS, includeCrds: true }).filter(
      (d) => d.kind === 'CustomResourceDefinition',
    )) {
      const res = await apply(admin, m, true);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    }
  });

  describe('operator and gateway run with the tokens of the chart ServiceAccounts (RBAC on)', () => {
    let sys: string;
    let team: string;
    let other: string;
    let mock: MockProvider;
    let operator: Operator | undefined;
    let gateway: ChildProcess | undefined;
    let gatewayLogs = '';
    let gwKc: KubeConfig;
    let opKc: KubeConfig;
    let port: number;
    const clientKey = 'pb-test-client-key-1';

    beforeAll(async () => {
      sys = await createNamespace(admin, 'chart-sys');
      team = await createNamespace(admin, 'chart-team');
      other = await createNamespace(admin, 'chart-other');
      mock = await startMockProvider({
        profile: 'openai',
        apiKey: 'sk-upstream-secret',
        models: ['gpt-4o-mini'],
      });
      // The chart's ServiceAccounts, Roles and bindings, exactly as rendered, applied for real.
      const docs = render({
        namespace: sys,
        values: [
          KEYS,
          {
            watchNamespaces: [team],
            workloadIdentity: { serviceAccounts: [{ namespace: team, name: 'plugboard-vertex' }] },
          },
        ],
      });
      for (const m of docs.filter((d) => ['ServiceAccount', 'Role', 'RoleBinding'].includes(d.kind))) {
        await must(apply(admin, m, false), `${m.kind}/${m.metadata.name}`);
      }
      expect(docs.some((d) => d.kind.startsWith('Cluster'))).toBe(false);
      const sas = docs.filter((d) => d.kind === 'ServiceAccount').map((d) => d.metadata.name);
      expect(sas.sort()).toEqual(['pb-plugboard-gateway', 'pb-plugboard-operator']);
      opKc = kubeConfigOf(await serviceAccountKubeConfig(admin, sys, 'pb-plugboard-operator'));
      const gwYaml = await serviceAccountKubeConfig(admin, sys, 'pb-plugboard-gateway');
      gwKc = kubeConfigOf(gwYaml);

      const teamApi = new Api(admin, team);
      await teamApi.secret('upstream-key', { apiKey: 'sk-upstream-secret' });
      await teamApi.connection('openai', { url: mock.url, apiKeySecretRef: { name: 'upstream-key' } });
      await new Api(admin, sys).secret('plugboard-client-keys', {
        'keys.yaml': `- name: ci\n  key: ${clientKey}\n`,
      });
      await new Api(admin, sys).secret('unrelated', { token: 'not-for-the-gateway' });
      await new Api(admin, other).secret('elsewhere', { apiKey: 'not-for-anyone' });

      // The operator as the chart runs it: its own namespace, the watched namespace, leader election on.
      operator = startOperator(opKc, sys, { watchNamespaces: [team], leaderElection: true });

      const dir = mkdtempSync(join(tmpdir(), 'plugboard-chart-gw-'));
      writeFileSync(join(dir, 'kubeconfig'), gwYaml);
      port = await freePort();
      const env: NodeJS.ProcessEnv = { ...process.env, KUBECONFIG: join(dir, 'kubeconfig') };
      delete env.KUBERNETES_SERVICE_HOST;
      delete env.PLUGBOARD_CLIENT_KEYS;
      gateway = spawn(
        process.execPath,
        [
          join(ROOT, 'bin', 'plugboard.js'),
          'gateway',
          `--snapshot-secret=${sys}/plugboard-snapshot`,
          `--client-keys-secret=${sys}/plugboard-client-keys`,
          `--listen=127.0.0.1:${port}`,
          '--drain-timeout=2s',
        ],
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      gateway.stdout?.on('data', (c) => {
        gatewayLogs += c;
      });
      gateway.stderr?.on('data', (c) => {
        gatewayLogs += c;
      });
    });

    afterAll(async () => {
      if (gateway && gateway.exitCode === null) {
        const exited = new Promise((r) => gateway?.once('exit', r));
        gateway.kill('SIGTERM');
        await exited;
      }
      await operator?.stop();
      await mock?.close();
    });

    it('the connection becomes Ready, with an Event, a Lease and the snapshot Secret written by the operator', async () => {
      const teamApi = new Api(admin, team);
      await teamApi.waitReady('openai', 'Verified', 20_000);
      const snap = await eventually(
        async () => (await new Api(admin, sys).snapshot())?.connections.find((c) => c.name === 'openai'),
        'snapshot with the connection',
      );
      expect(snap.namespace).toBe(team);
      expect((await teamApi.events('openai')).map((e) => e.reason)).toContain('Verified');
      const lease = await must(
        kubeRaw(admin, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${sys}/leases/plugboard-operator`),
        'lease',
      );
      expect(lease.spec.holderIdentity).toMatch(/^test-/);
    });

    it('the gateway serves /v1/models and a chat completion from the snapshot, to the openai client with a client key', async () => {
      await eventually(
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok,
        `gateway ready; logs:\n${gatewayLogs}`,
        20_000,
      );
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: clientKey, maxRetries: 0 });
      const models = await eventually(async () => {
        const list = await client.models.list();
        return list.data.some((m) => m.id === 'gpt-4o-mini') ? list.data : undefined;
      }, 'model listed');
      expect(models.map((m) => m.id)).toContain('gpt-4o-mini');
      const chat = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hello' }],
      });
      expect(chat.choices[0]?.message.content).toBeTruthy();
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hello' }],
        stream: true,
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      expect(text.length).toBeGreaterThan(0);
      const anonymous = await fetch(`http://127.0.0.1:${port}/v1/models`);
      expect(anonymous.status).toBe(401);
      expect(gatewayLogs).not.toContain('sk-upstream-secret');
    });

    it('the operator token may request tokens for the listed ServiceAccount only (TokenRequest)', async () => {
      for (const sa of ['plugboard-vertex', 'plugboard-other']) {
        await must(
          kubeRaw(admin, 'POST', `/api/v1/namespaces/${team}/serviceaccounts`, {
            body: { metadata: { name: sa } },
          }),
          sa,
        );
      }
      await must(
        kubeRaw(admin, 'POST', `/api/v1/namespaces/${other}/serviceaccounts`, {
          body: { metadata: { name: 'plugboard-vertex' } },
        }),
        'other/plugboard-vertex',
      );
      const tokenRequest = (ns: string, sa: string) =>
        kubeRaw(opKc, 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
          body: {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenRequest',
            spec: { audiences: ['api://AzureADTokenExchange'], expirationSeconds: 600 },
          },
        });
      const granted = await tokenRequest(team, 'plugboard-vertex');
      expect(granted.status, JSON.stringify(granted.body)).toBe(201);
      const token = (granted.body as { status: { token: string } }).status.token;
      const claims = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8'));
      expect(claims.aud).toEqual(['api://AzureADTokenExchange']);
      expect(claims.sub).toBe(`system:serviceaccount:${team}:plugboard-vertex`);
      expect((await tokenRequest(team, 'plugboard-other')).status).toBe(403);
      expect((await tokenRequest(other, 'plugboard-vertex')).status).toBe(403);
      expect((await tokenRequest(sys, 'pb-plugboard-gateway')).status).toBe(403);
    });

    it('the gateway token can read the snapshot and client keys, and nothing else', async () => {
      const secrets = `/api/v1/namespaces/${sys}/secrets`;
      const allowed = [
        `${secrets}/plugboard-snapshot`,
        `${secrets}/plugboard-client-keys`,
        `${secrets}?fieldSelector=metadata.name%3Dplugboard-snapshot`,
      ];
      for (const p of allowed) expect((await kubeRaw(gwKc, 'GET', p)).status, p).toBe(200);
      // Shards of a snapshot too big for one Secret: get by name (404 = allowed, not there now), nothing more.
      for (const p of [`${secrets}/plugboard-snapshot-1`, `${secrets}/plugboard-snapshot-64`])
        expect((await kubeRaw(gwKc, 'GET', p)).status, p).toBe(404);
      const denied: [string, string][] = [
        ['GET', `${secrets}/plugboard-snapshot-65`],
        ['GET', `${secrets}?fieldSelector=metadata.name%3Dplugboard-snapshot-1`],
        ['DELETE', `${secrets}/plugboard-snapshot-1`],
        ['GET', `${secrets}/unrelated`],
        ['GET', secrets],
        ['GET', `${secrets}?fieldSelector=metadata.name%3Dunrelated`],
        ['GET', `${secrets}?watch=true&timeoutSeconds=1`],
        ['GET', '/api/v1/secrets'],
        ['GET', `/api/v1/namespaces/${team}/secrets/upstream-key`],
        ['GET', `/api/v1/namespaces/${other}/secrets/elsewhere`],
        ['GET', `/apis/plugboard.dev/v1alpha1/namespaces/${team}/providerconnections`],
        ['GET', `/apis/plugboard.dev/v1alpha1/namespaces/${team}/providerconnections/openai`],
        ['GET', '/apis/plugboard.dev/v1alpha1/providerconnections'],
        ['GET', `/apis/plugboard.dev/v1alpha1/namespaces/${team}/modelallowlists`],
        ['PUT', `${secrets}/plugboard-snapshot`],
        ['DELETE', `${secrets}/plugboard-snapshot`],
        ['POST', secrets],
      ];
      for (const [method, p] of denied) {
        const body =
          method === 'PUT' || method === 'POST' ? { metadata: { name: 'plugboard-snapshot' } } : undefined;
        expect((await kubeRaw(gwKc, method, p, { body })).status, `${method} ${p}`).toBe(403);
      }
    });

    it('the operator token cannot read Secrets outside the watched namespaces or other Secrets in its own', async () => {
      // It may get and delete the snapshot's shard Secrets by name (404: allowed, none there now).
      for (const method of ['GET', 'DELETE'])
        for (const n of [1, 64]) {
          const p = `/api/v1/namespaces/${sys}/secrets/plugboard-snapshot-${n}`;
          expect((await kubeRaw(opKc, method, p)).status, `${method} ${p}`).toBe(404);
        }
      const denied: [string, string][] = [
        ['GET', `/api/v1/namespaces/${sys}/secrets/plugboard-snapshot-65`],
        ['DELETE', `/api/v1/namespaces/${sys}/secrets/plugboard-snapshot`],
        ['GET', `/api/v1/namespaces/${other}/secrets/elsewhere`],
        ['GET', `/api/v1/namespaces/${other}/secrets`],
        ['GET', '/api/v1/secrets'],
        ['GET', `/api/v1/namespaces/${sys}/secrets/unrelated`],
        ['GET', `/api/v1/namespaces/${sys}/secrets`],
        ['PUT', `/api/v1/namespaces/${sys}/secrets/unrelated`],
        ['GET', `/apis/plugboard.dev/v1alpha1/namespaces/${other}/providerconnections`],
        ['PUT', `/apis/plugboard.dev/v1alpha1/namespaces/${team}/providerconnections/openai`],
        ['DELETE', `/apis/plugboard.dev/v1alpha1/namespaces/${team}/providerconnections/openai`],
      ];
      for (const [method, p] of denied) {
        const body = method === 'PUT' ? { metadata: { name: 'x' } } : undefined;
        expect((await kubeRaw(opKc, method, p, { body })).status, `${method} ${p}`).toBe(403);
      }
    });
  });
});
