import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { controlPlaneBinaries } from '../support/control-plane.ts';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CHART = join(ROOT, 'charts', 'plugboard');

let bin: string | undefined;
/** helm v3.22.0, built from the Go module proxy by scripts/build-control-plane.sh next to kube-apiserver. */
export function helmBin(): string {
  bin ??= join(controlPlaneBinaries(), 'helm');
  return bin;
}

export function helm(args: string[]): { status: number; stdout: string; stderr: string } {
  const res = spawnSync(helmBin(), args, {
    encoding: 'utf8',
    env: {
      ...process.env,
      HELM_CACHE_HOME: '/tmp/plugboard-helm-cache',
      HELM_CONFIG_HOME: '/tmp/plugboard-helm-config',
      HELM_DATA_HOME: '/tmp/plugboard-helm-data',
    },
  });
  return { status: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are free-form; tests assert on their shape
export type Manifest = Record<string, any>;

export interface RenderOptions {
  namespace?: string;
  release?: string;
  set?: string[];
  /** Values files as objects, merged in order like several --values (deeply, over the chart's defaults). */
  values?: Record<string, unknown> | Record<string, unknown>[];
  includeCrds?: boolean;
}

function args(o: RenderOptions): string[] {
  const a = ['template', o.release ?? 'pb', CHART, '--namespace', o.namespace ?? 'plugboard-system'];
  if (o.includeCrds) a.push('--include-crds');
  for (const s of o.set ?? []) a.push('--set', s);
  for (const v of [o.values ?? {}].flat()) {
    const file = join(mkdtempSync(join(tmpdir(), 'plugboard-values-')), 'values.json');
    writeFileSync(file, JSON.stringify(v));
    a.push('--values', file);
  }
  return a;
}

/** `helm template` → parsed manifests; throws with helm's stderr when rendering fails. */
export function render(o: RenderOptions = {}): Manifest[] {
  const res = helm(args(o));
  if (res.status !== 0) throw new Error(`helm template failed (${res.status}):\n${res.stderr}`);
  return parseAllDocuments(res.stdout)
    .map((d) => d.toJSON() as Manifest | null)
    .filter((d): d is Manifest => d !== null);
}

/** `helm template` that is expected to fail: its exit status and stderr. */
export function renderError(o: RenderOptions = {}): { status: number; stderr: string } {
  const res = helm(args(o));
  return { status: res.status, stderr: res.stderr };
}

/** The values every rendering needs (client keys are required by default). */
export const KEYS = { gateway: { clientKeys: { existingSecret: 'plugboard-client-keys' } } };

export function find(docs: Manifest[], kind: string, nameSuffix = ''): Manifest {
  const d = docs.find((m) => m.kind === kind && (m.metadata.name as string).endsWith(nameSuffix));
  if (!d)
    throw new Error(`no ${kind} *${nameSuffix} among ${docs.map((m) => `${m.kind}/${m.metadata.name}`)}`);
  return d;
}

/** NODE_OPTIONS of the first container of the Deployment whose name ends in `nameSuffix`. */
export function nodeOptionsOf(docs: Manifest[], nameSuffix: string): string | undefined {
  const env = find(docs, 'Deployment', nameSuffix).spec.template.spec.containers[0].env as Manifest[];
  return env.find((e) => e.name === 'NODE_OPTIONS')?.value;
}
