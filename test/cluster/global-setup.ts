/**
 * Set-up for the `cluster` project: `npm run cluster:up` (scripts/cluster.ts: builds what is missing, starts a
 * single-node cluster inside its own network namespace, loads the locally built image into the node) and, after
 * the run, `cluster:down`. A cluster that was already running is used and left running. A cluster that cannot
 * start fails the run with the reason; nothing is skipped.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

export interface ClusterInfo {
  kubeconfig: string;
  netns: string;
  image: string;
  /** Directories with kubectl (cluster) and helm (controlPlane). */
  bins: { cluster: string; controlPlane: string };
}

declare module 'vitest' {
  export interface ProvidedContext {
    cluster: ClusterInfo;
  }
}

const ROOT = join(import.meta.dirname, '..', '..');

function runCluster(
  command: 'up' | 'down',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'cluster.ts'), command], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
      process.stderr.write(d);
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function lastDir(script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(ROOT, 'scripts', script)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('exit', (code) =>
      code === 0
        ? resolve(out.trim().split('\n').at(-1) as string)
        : reject(new Error(`${script} exited ${code}`)),
    );
  });
}

export default async function setup(project: TestProject) {
  const started = Date.now();
  const up = await runCluster('up');
  if (up.code !== 0) throw new Error(`cluster:up failed (exit ${up.code}):\n${up.stderr.slice(-6000)}`);
  const info = JSON.parse(up.stdout.trim().split('\n').at(-1) as string) as Omit<ClusterInfo, 'bins'>;
  const reused = up.stderr.includes('already running');
  console.log(
    `cluster ${reused ? '(already running) ' : ''}ready in ${Date.now() - started} ms: ${JSON.stringify(info)}`,
  );
  const bins = {
    cluster: await lastDir('build-cluster.sh'),
    controlPlane: await lastDir('build-control-plane.sh'),
  };
  project.provide('cluster', { ...info, bins });
  return async () => {
    if (reused || process.env.PLUGBOARD_CLUSTER_KEEP === '1') return;
    const t = Date.now();
    const down = await runCluster('down');
    if (down.code !== 0)
      throw new Error(`cluster:down failed (exit ${down.code}):\n${down.stderr.slice(-4000)}`);
    console.log(`cluster down in ${Date.now() - t} ms`);
  };
}
