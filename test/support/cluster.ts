/**
 * The cluster the Kubernetes tests run against, chosen once per run:
 * - PLUGBOARD_TEST_KUBECONFIG=<path>: an existing cluster (opt-in; tests use their own namespaces);
 * - otherwise (and always in CI here): etcd + kube-apiserver built from source and started locally.
 * Whatever is chosen, the CRDs from crds/ are applied and Established before any test runs. A cluster that
 * cannot start fails the run with the reason; nothing is skipped.
 */
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { customResourceDefinitions } from '../../src/api/crds.ts';
import { startControlPlane } from './control-plane.ts';
import { kubeRaw } from './kube-raw.ts';

export interface TestCluster {
  kubeconfig: string;
  mode: 'local' | 'kubeconfig';
  stop(): Promise<void>;
}

export async function startTestCluster(): Promise<TestCluster> {
  const external = process.env.PLUGBOARD_TEST_KUBECONFIG;
  let cluster: TestCluster;
  if (external) {
    cluster = { kubeconfig: readFileSync(external, 'utf8'), mode: 'kubeconfig', stop: async () => {} };
  } else {
    const cp = await startControlPlane();
    cluster = { kubeconfig: cp.kubeconfig, mode: 'local', stop: () => cp.stop() };
  }
  try {
    await installCrds(cluster.kubeconfig);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Creates or replaces the CRDs (as raw JSON, see kubeRaw) and waits until the API server serves them. */
export async function installCrds(kubeconfig: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfig);
  const base = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
  for (const crd of customResourceDefinitions()) {
    const name = (crd.metadata as { name: string }).name;
    const existing = await kubeRaw(kc, 'GET', `${base}/${name}`);
    const res =
      existing.status === 404
        ? await kubeRaw(kc, 'POST', base, { body: crd })
        : await kubeRaw(kc, 'PUT', `${base}/${name}`, {
            body: {
              ...crd,
              metadata: {
                ...(crd.metadata as object),
                resourceVersion: (existing.body as { metadata: { resourceVersion: string } }).metadata
                  .resourceVersion,
              },
            },
          });
    if (res.status >= 300)
      throw new Error(`installing CRD ${name} failed (${res.status}): ${JSON.stringify(res.body)}`);
  }
  const deadline = Date.now() + 30_000;
  for (const crd of customResourceDefinitions()) {
    const name = (crd.metadata as { name: string }).name;
    for (;;) {
      const got = (await kubeRaw(kc, 'GET', `${base}/${name}`)).body as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      if (got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established within 30s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
