/**
 * Helpers for the end-to-end suite: kubectl, helm and the clients run inside the cluster's network namespace
 * (nsenter --net, not `ip netns exec`, which remounts /sys), where every cluster address lives.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';

export const ROOT = join(import.meta.dirname, '..', '..');
export const cluster = inject('cluster');
const nsenter: [string, string] = ['nsenter', `--net=/run/netns/${cluster.netns}`];

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string[], input?: string, timeoutMs = 300_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(nsenter[0], [nsenter[1], ...cmd], {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => {
      stdout += d;
    });
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) {
      child.stdin?.on('error', () => {}); // a command that exits without reading fails on its own exit code
      child.stdin?.end(input);
    }
  });
}

async function ok(cmd: string[], input?: string, timeoutMs?: number): Promise<string> {
  const r = await run(cmd, input, timeoutMs);
  if (r.code !== 0)
    throw new Error(`${cmd.slice(0, 4).join(' ')} ... exited ${r.code}:\n${r.stderr || r.stdout}`);
  return r.stdout;
}

export const kubectl = (args: string[], input?: string) =>
  ok([join(cluster.bins.cluster, 'kubectl'), '--kubeconfig', cluster.kubeconfig, ...args], input);

export const kubectlJson = async <T = unknown>(args: string[]): Promise<T> =>
  JSON.parse(await kubectl([...args, '-o', 'json'])) as T;

export const helm = (args: string[], timeoutMs = 600_000) =>
  ok(
    [join(cluster.bins.controlPlane, 'helm'), '--kubeconfig', cluster.kubeconfig, ...args],
    undefined,
    timeoutMs,
  );

/** One client run (test/cluster/client.ts) inside the namespace; returns its JSON. */
export async function client<T>(mode: string, args: Record<string, unknown>): Promise<T> {
  const out = await ok([
    process.execPath,
    join(ROOT, 'test', 'cluster', 'client.ts'),
    mode,
    JSON.stringify(args),
  ]);
  return JSON.parse(out.trim().split('\n').at(-1) as string) as T;
}

/** What the load client (test/cluster/client.ts load) prints: counts per phase, with the client's own retries. */
export interface LoadResult {
  seconds: number;
  clientCpuSeconds: number;
  phases: {
    name: string;
    sent: number;
    ok: number;
    failed: number;
    /** HTTP attempts beyond one per request: the official client's retries. */
    retries: number;
    /** What made an attempt fail and the client retry: error code or HTTP status, with counts. */
    retryCauses: Record<string, number>;
    errors: string[];
    p50Ms: number;
    p99Ms: number;
  }[];
}

/**
 * A client (test/cluster/client.ts) kept running: write(line) talks to its stdin, stderrHas(text) waits for a line
 * it prints when ready, result() closes its stdin with `stop` and parses its JSON.
 */
export function startClient<T>(mode: string, args: Record<string, unknown>) {
  const child: ChildProcess = spawn(
    nsenter[0],
    [nsenter[1], process.execPath, join(ROOT, 'test', 'cluster', 'client.ts'), mode, JSON.stringify(args)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  child.stdin?.on('error', () => {}); // after a crash, result() reports the exit code and stderr
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  return {
    write: (line: string) => child.stdin?.write(`${line}\n`),
    stderrHas: (text: string) =>
      until(`${mode} client printing ${text}`, async () => stderr.includes(text), 30_000),
    async result(): Promise<T> {
      child.stdin?.write('stop\n');
      const code = await exited;
      if (code !== 0) throw new Error(`${mode} client exited ${code}:\n${stderr}`);
      return JSON.parse(stdout.trim().split('\n').at(-1) as string) as T;
    },
    kill: () => child.kill('SIGKILL'),
  };
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs: number,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(
    `${what}: not within ${timeoutMs / 1000} s${last ? ` (last error: ${(last as Error).message})` : ''}`,
  );
}

/**
 * Peak memory of every container, from the node's cgroups (v1: memory.max_usage_in_bytes; v2: memory.peak),
 * sampled while the suite runs so that pods deleted on the way are counted too.
 */
export class MemoryPeaks {
  readonly peaks = new Map<string, number>();
  private names = new Map<string, string>(); // container ID -> namespace/pod/container
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  start(namespaces: string[]) {
    const tick = async () => {
      if (this.busy) return;
      this.busy = true;
      try {
        for (const ns of namespaces) {
          const pods = await kubectlJson<PodList>(['-n', ns, 'get', 'pods']);
          for (const p of pods.items)
            for (const c of p.status.containerStatuses ?? [])
              if (c.containerID)
                this.names.set(c.containerID.replace(/^.*:\/\//, ''), `${ns}/${p.metadata.name}/${c.name}`);
        }
        for (const [id, name] of this.names) {
          const bytes = peakOf(id);
          if (bytes !== undefined) this.peaks.set(name, Math.max(this.peaks.get(name) ?? 0, bytes));
        }
      } catch {
        // the next tick tries again
      } finally {
        this.busy = false;
      }
    };
    void tick();
    this.timer = setInterval(() => void tick(), 1000);
  }

  async stop() {
    clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 50));
  }
}

const cgroupDirs = new Map<string, string>();
function peakOf(containerId: string): number | undefined {
  let dir = cgroupDirs.get(containerId);
  if (!dir) {
    dir =
      findDir('/sys/fs/cgroup/memory/kubepods', containerId, 3) ??
      findDir('/sys/fs/cgroup/kubepods', containerId, 3);
    if (!dir) return undefined;
    cgroupDirs.set(containerId, dir);
  }
  for (const f of ['memory.max_usage_in_bytes', 'memory.peak']) {
    const file = join(dir, f);
    if (existsSync(file)) {
      try {
        return Number(readFileSync(file, 'utf8').trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function findDir(root: string, name: string, depth: number): string | undefined {
  if (depth < 0 || !existsSync(root)) return undefined;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    if (e.name === name) return join(root, e.name);
    const found = findDir(join(root, e.name), name, depth - 1);
    if (found) return found;
  }
  return undefined;
}

export interface PodList {
  items: {
    metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
    status: {
      phase: string;
      podIP?: string;
      conditions?: { type: string; status: string }[];
      containerStatuses?: {
        name: string;
        ready: boolean;
        restartCount: number;
        containerID?: string;
        lastState?: { terminated?: { reason?: string } };
        state?: { terminated?: { reason?: string } };
      }[];
    };
  }[];
}

export const isReady = (p: PodList['items'][number]) =>
  !p.metadata.deletionTimestamp &&
  p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
