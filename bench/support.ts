/** Helpers shared by the benchmarks: ports, readiness, child output, memory. */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { KEYS, nodeOptionsOf, render } from '../test/deploy/helm.ts';

export { freePort } from '../test/support/control-plane.ts';

/**
 * NODE_OPTIONS as the Helm chart's defaults set them for a component (its heap sizing follows the memory
 * limit), so a benchmark measures a process configured as it is deployed. Needs the helm binary the test set-up
 * builds (npm run test:setup).
 */
export function chartNodeOptions(component: 'gateway' | 'operator'): string {
  const v = nodeOptionsOf(render({ values: KEYS }), `-${component}`);
  if (typeof v !== 'string') throw new Error(`the chart sets no NODE_OPTIONS for the ${component}`);
  return v;
}

/** Waits for a line matching `re` on the child's stdout (stderr is kept for the error message). */
export function waitLine(child: ChildProcess, re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let errText = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${re}: ${errText.slice(-500)}`)),
      timeoutMs,
    );
    child.stderr?.on('data', (d: Buffer) => {
      errText += d.toString();
    });
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        resolve(m);
      }
      if (buf.length > 1e6) buf = buf.slice(-1e5);
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`exited with ${code} before printing ${re}: ${errText.slice(-500)}`)),
    );
  });
}

export async function waitHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      await fetch(url);
      return;
    } catch {
      await sleep(200);
    }
  }
  throw new Error(`${url} did not come up`);
}

/** Resident memory of a process in MiB (NaN once it is gone). */
export function rssMiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (user + system) a process has used so far, in seconds (0 without a pid or once it is gone). */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    // /proc/<pid>/stat: fields 14 and 15 are utime and stime in clock ticks (100 per second on Linux)
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}
