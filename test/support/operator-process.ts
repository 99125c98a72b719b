import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './control-plane.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'plugboard.js');

export interface OperatorProcess {
  child: ChildProcess;
  /** http://127.0.0.1:<port> of its probes and metrics. */
  probes: string;
  /** The exit code, or the signal that ended it. */
  exited: Promise<NodeJS.Signals | number | null>;
  /** Everything it wrote so far (stdout and stderr). */
  logs(): string;
  /** SIGKILL if still running, then removes its files. */
  kill(): Promise<void>;
}

/**
 * `plugboard operator` as its own process, watching one namespace. Credentials: a kubeconfig file (outside a
 * cluster, loopback upstreams allowed), or `serviceAccount` token and CA files as in a pod.
 */
export async function spawnOperator(o: {
  namespace: string;
  kubeconfig?: string;
  serviceAccount?: { server: string; token: string; ca: Buffer };
  args?: string[];
}): Promise<OperatorProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-operator-'));
  const port = await freePort();
  const { KUBECONFIG: _k, KUBERNETES_SERVICE_HOST: _h, KUBERNETES_SERVICE_PORT: _p, ...base } = process.env;
  const env: NodeJS.ProcessEnv = { ...base, HOME: dir }; // no ~/.kube/config to fall back on
  if (o.kubeconfig) {
    writeFileSync(join(dir, 'kubeconfig'), o.kubeconfig);
    env.KUBECONFIG = join(dir, 'kubeconfig');
  }
  if (o.serviceAccount) {
    writeFileSync(join(dir, 'token'), o.serviceAccount.token);
    writeFileSync(join(dir, 'ca.crt'), o.serviceAccount.ca);
    const server = new URL(o.serviceAccount.server);
    Object.assign(env, {
      KUBERNETES_SERVICE_HOST: server.hostname,
      KUBERNETES_SERVICE_PORT: server.port,
      PLUGBOARD_SERVICEACCOUNT_DIR: dir,
    });
  }
  const args = ['operator', '--namespace', o.namespace, '--watch-namespaces', o.namespace];
  const child = spawn(process.execPath, [BIN, ...args, '--listen', `127.0.0.1:${port}`, ...(o.args ?? [])], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout?.on('data', (d) => {
    logs += d;
  });
  child.stderr?.on('data', (d) => {
    logs += d;
  });
  const exited = new Promise<NodeJS.Signals | number | null>((r) =>
    child.once('exit', (code, signal) => r(signal ?? code)),
  );
  return {
    child,
    probes: `http://127.0.0.1:${port}`,
    exited,
    logs: () => logs,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
