import type { TestProject } from 'vitest/node';
import { startTestCluster } from './cluster.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
  }
}

export default async function setup(project: TestProject) {
  const started = Date.now();
  const cluster = await startTestCluster();
  console.log(`test cluster (${cluster.mode}) ready in ${Date.now() - started} ms`);
  project.provide('kubeconfig', cluster.kubeconfig);
  return () => cluster.stop();
}
