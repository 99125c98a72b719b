/**
 * Set-up for the `container` project: builds the image from the Dockerfile (scripts/build-image.sh: podman,
 * base-image stand-ins where no registry is reachable; a few seconds when nothing changed) and starts podman's
 * Docker-compatible API on a private socket for testcontainers. Anything missing (podman, root, the build) fails
 * the run with the reason; nothing is skipped.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The image under test, e.g. localhost/plugboard:dev. */
    image: string;
    /** unix:// address of podman's Docker-compatible API. */
    dockerHost: string;
  }
}

const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);
/** Label on every container the suite starts, so teardown can remove leftovers of a crashed run. */
export const TEST_LABEL = 'dev.plugboard.test';

export default async function setup(project: TestProject) {
  let started = Date.now();
  const built = await run('bash', [join(ROOT, 'scripts', 'build-image.sh')], {
    cwd: ROOT,
    maxBuffer: 64 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`building the image failed:\n${(err.stderr ?? err.message).slice(-4000)}`);
  });
  const image = built.stdout.trim().split('\n').at(-1) as string;
  console.log(`image ${image} ready in ${Date.now() - started} ms`);

  started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'plugboard-podman-'));
  const socket = join(dir, 'podman.sock');
  let logs = '';
  // podman-env.sh points podman at the project's containers.conf (rlimits that runc may set here).
  const service: ChildProcess = spawn(
    'bash',
    [
      '-c',
      `source ${JSON.stringify(join(ROOT, 'scripts', 'podman-env.sh'))} && exec podman system service --time=0 unix://${socket}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  service.stdout?.on('data', (d) => {
    logs = (logs + d).slice(-8000);
  });
  service.stderr?.on('data', (d) => {
    logs = (logs + d).slice(-8000);
  });
  const stop = async () => {
    await run('bash', [
      '-c',
      `source ${JSON.stringify(join(ROOT, 'scripts', 'podman-env.sh'))} && podman rm -f -t 0 --filter label=${TEST_LABEL} >/dev/null; podman network prune -f --filter label=${TEST_LABEL} >/dev/null`,
    ]).catch(() => {});
    if (service.exitCode === null && service.signalCode === null) {
      const exited = new Promise((r) => service.once('exit', r));
      service.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  while (!(await ping(socket))) {
    if (service.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`podman system service did not answer on ${socket}:\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`podman API on ${socket} ready in ${Date.now() - started} ms`);
  project.provide('image', image);
  project.provide('dockerHost', `unix://${socket}`);
  return stop;
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
