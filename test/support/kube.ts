import { randomBytes } from 'node:crypto';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';

/** The admin KubeConfig of the run's test cluster. */
export function testKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(inject('kubeconfig'));
  return kc;
}

/** A fresh namespace per test file keeps files independent and runnable in parallel. */
export async function createNamespace(kc: KubeConfig, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  return name;
}

export { kubeRaw } from './kube-raw.ts';
