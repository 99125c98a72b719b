/** Plugboard in its own process (`node bin/plugboard.js gateway|standalone ...`), for whole-process checks. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../../src/snapshot/schema.ts';
import { freePort } from '../support/control-plane.ts';

const ROOT = join(import.meta.dirname, '..', '..');

export interface GatewayProcess {
  url: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stdout + stderr so far (JSON log lines). */
  logs(): string;
  /** Open file descriptors of the gateway process, and how many of them are sockets. */
  fds(): { total: number; sockets: number };
  stop(): Promise<void>;
}

export async function spawnGateway(snapshot: Snapshot, extraArgs: string[] = []): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-gwproc-'));
  const file = join(dir, 'snapshot.json');
  writeFileSync(file, JSON.stringify(snapshot));
  const p = await spawnPlugboard('gateway', ['--config-file', file, ...extraArgs]);
  const stop = p.stop;
  p.stop = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return p;
}

/**
 * `node bin/plugboard.js <command> --listen 127.0.0.1:<free port> ...args`, ready when /readyz answers 200.
 * The environment has no KUBERNETES_SERVICE_HOST (loopback upstreams allowed), plus `env`.
 */
export async function spawnPlugboard(
  command: 'gateway' | 'standalone' | 'start',
  args: string[],
  opts: { env?: Record<string, string>; ready?: boolean } = {},
): Promise<GatewayProcess> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  delete env.KUBERNETES_SERVICE_HOST; // outside a cluster: loopback upstreams are allowed
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'plugboard.js'), command, '--listen', `127.0.0.1:${port}`, ...args],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let logs = '';
  child.stdout?.on('data', (d) => {
    logs += d;
  });
  child.stderr?.on('data', (d) => {
    logs += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (opts.ready === false) break;
    if (child.exitCode !== null)
      throw new Error(`${command} exited ${child.exitCode}:\n${logs.slice(-2000)}`);
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`${command} not ready within 60 s:\n${logs.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    exited,
    logs: () => logs,
    fds() {
      const dirFd = `/proc/${child.pid}/fd`;
      let sockets = 0;
      const entries = readdirSync(dirFd);
      for (const fd of entries) {
        try {
          if (readlinkSync(join(dirFd, fd)).startsWith('socket:')) sockets++;
        } catch {
          // closed meanwhile
        }
      }
      return { total: entries.length, sockets };
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
