import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

let dir: string | undefined;
/**
 * The directory scripts/build-prometheus.sh fills (and prints): prometheus and promtool built from their Go module,
 * and under prometheus-operator/ the Prometheus Operator's CRDs and generator golden files.
 */
export function prometheusBinaries(): string {
  if (dir) return dir;
  const res = spawnSync('bash', [join(ROOT, 'scripts', 'build-prometheus.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const out = res.stdout?.trim().split('\n').at(-1);
  if (res.status !== 0 || !out)
    throw new Error(
      `could not build prometheus and promtool (scripts/build-prometheus.sh exited ${res.status ?? res.signal}); ` +
        'they are built from the Go module proxy. Its output is above.',
    );
  dir = out;
  return dir;
}

/** Runs promtool; its output is returned, not thrown, so a test can show it when it fails. */
export function promtool(args: string[], cwd?: string): { status: number; output: string } {
  const res = spawnSync(join(prometheusBinaries(), 'promtool'), args, { encoding: 'utf8', cwd });
  return { status: res.status ?? -1, output: `${res.stdout}${res.stderr}`.trim() };
}
