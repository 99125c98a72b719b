/**
 * A real Kubernetes control plane for tests, in the manner of controller-runtime's envtest: etcd and
 * kube-apiserver built from the Go module proxy (scripts/build-control-plane.sh), started on free loopback ports
 * in a temporary directory with RBAC authorization, an admin token and service-account signing keys.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = join(import.meta.dirname, '..', '..');

export interface ControlPlane {
  /** A kubeconfig (YAML) for the cluster-admin user. */
  kubeconfig: string;
  server: string;
  caData: string;
  adminToken: string;
  /** Directory with the component logs, kept when startup fails. */
  dir: string;
  /** Stops kube-apiserver and starts it again on the same port and etcd (clients see a restart). */
  restartApiServer(): Promise<void>;
  stop(): Promise<void>;
}

export interface ControlPlaneTimings {
  buildMs: number;
  etcdMs: number;
  apiServerMs: number;
}

/** Builds (or finds cached) binaries; fails with the build's own output when the toolchain is missing. */
export function controlPlaneBinaries(): string {
  const res = spawnSync('bash', [join(ROOT, 'scripts', 'build-control-plane.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const dir = res.stdout?.trim().split('\n').at(-1);
  if (res.status !== 0 || !dir) {
    throw new Error(
      `could not build the test control plane (scripts/build-control-plane.sh exited ${res.status ?? res.signal}); ` +
        'it needs Go and the Go module proxy. Its output is above.',
    );
  }
  return dir;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
}

function launch(bin: string, args: string[], logFile: string): Proc {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, exited };
}

async function terminate(p: Proc | undefined, graceMs = 5000): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitFor(
  what: string,
  proc: Proc,
  logFile: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) {
      throw new Error(`${what} exited with code ${proc.child.exitCode} during startup:\n${tail(logFile)}`);
    }
    if (await probe().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} was not ready within ${timeoutMs / 1000}s:\n${tail(logFile)}`);
}

function httpsGet(url: string, ca: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { ca, headers: { authorization: `Bearer ${token}` }, timeout: 2000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export async function startControlPlane(
  opts: { binDir?: string; timings?: ControlPlaneTimings } = {},
): Promise<ControlPlane> {
  const t0 = Date.now();
  const bin = opts.binDir ?? controlPlaneBinaries();
  const tBuilt = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-cp-'));
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];

  const etcdLog = join(dir, 'etcd.log');
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const etcd = launch(
    join(bin, 'etcd'),
    [
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${peerPort}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    etcdLog,
  );
  let api: Proc | undefined;
  const stopAll = async () => {
    await terminate(api);
    await terminate(etcd);
  };
  const onExit = () => {
    api?.child.kill('SIGKILL');
    etcd.child.kill('SIGKILL');
  };
  process.once('exit', onExit);

  try {
    await waitFor(
      'etcd',
      etcd,
      etcdLog,
      async () => {
        const res = await fetch(`${etcdUrl}/health`);
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
      30_000,
    );
    const tEtcd = Date.now();

    const pki = join(dir, 'pki');
    mkdirSync(pki);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(pki, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(pki, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const adminToken = randomBytes(24).toString('hex');
    writeFileSync(join(pki, 'tokens.csv'), `${adminToken},admin,admin-uid,system:masters\n`, { mode: 0o600 });
    const server = `https://127.0.0.1:${apiPort}`;
    const apiLog = join(dir, 'kube-apiserver.log');
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${join(dir, 'certs')}`,
      `--secure-port=${apiPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      '--authorization-mode=RBAC',
      `--token-auth-file=${join(pki, 'tokens.csv')}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      '--disable-admission-plugins=ServiceAccount',
      `--service-account-issuer=${server}/`,
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--v=1',
    ];
    let caData = '';
    const startApi = async () => {
      api = launch(join(bin, 'kube-apiserver'), apiArgs, apiLog);
      await waitFor(
        'kube-apiserver',
        api,
        apiLog,
        async () => {
          // The self-signed serving bundle (certificate + its CA) appears once the server has generated it.
          caData = readFileSync(join(dir, 'certs', 'apiserver.crt'), 'utf8');
          const ready = await httpsGet(`${server}/readyz`, caData, adminToken);
          if (ready.status !== 200) return false;
          const ns = await httpsGet(`${server}/api/v1/namespaces/default`, caData, adminToken);
          return ns.status === 200;
        },
        90_000,
      );
    };
    await startApi();
    const tApi = Date.now();
    if (opts.timings) {
      opts.timings.buildMs = tBuilt - t0;
      opts.timings.etcdMs = tEtcd - tBuilt;
      opts.timings.apiServerMs = tApi - tEtcd;
    }

    const kubeconfig = kubeconfigYaml(server, caData, adminToken);
    writeFileSync(join(dir, 'kubeconfig'), kubeconfig, { mode: 0o600 });
    return {
      kubeconfig,
      server,
      caData,
      adminToken,
      dir,
      async restartApiServer() {
        await terminate(api);
        await startApi();
      },
      async stop() {
        process.removeListener('exit', onExit);
        await stopAll();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    process.removeListener('exit', onExit);
    throw new Error(`test control plane failed to start (logs kept in ${dir}): ${(err as Error).message}`);
  }
}

export function kubeconfigYaml(server: string, caData: string, token: string, user = 'admin'): string {
  const ca = Buffer.from(caData).toString('base64');
  return `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: ${server}
    certificate-authority-data: ${ca}
users:
- name: ${user}
  user:
    token: ${token}
contexts:
- name: test
  context:
    cluster: test
    user: ${user}
current-context: test
`;
}
