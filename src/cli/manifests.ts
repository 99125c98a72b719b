import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, isAbsolute, join, relative, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { ObjectMeta } from '../api/common.ts';
import type { ModelAllowlist } from '../api/model-allowlist.ts';
import type { ProviderConnection } from '../api/provider-connection.ts';
import { describeIssues, parseResource } from '../api/validate.ts';
import { describeYamlError, YAML_ALIAS_ERROR } from '../gateway/parse-config.ts';

/**
 * Reading ProviderConnection, ModelAllowlist and Secret manifests from files and directories, for
 * `plugboard standalone` and `plugboard verify`. Validation is the API's own (parseResource, the zod schemas
 * the CRDs come from); every problem names the file, the document (1-based) and the field.
 */

export const DEFAULT_NAMESPACE = 'default';
const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** A Secret as a manifest: `stringData` (plain text) and/or `data` (base64), as `kubectl apply` accepts it. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
export const SecretManifest = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Secret'),
  metadata: ObjectMeta,
  type: z.string().optional(),
  data: z
    .record(
      z.string(),
      z
        .string()
        .regex(
          BASE64,
          'must be base64; put plain text (or an environment variable reference) under stringData instead',
        ),
    )
    .optional(),
  stringData: z.record(z.string(), z.string()).optional(),
});
export type SecretManifest = z.output<typeof SecretManifest>;

export interface Origin {
  /** As given or relative to the working directory, e.g. examples/local/mock.yaml. */
  file: string;
  /** 1-based position of the document in the file. */
  doc: number;
}

export interface Loaded<T> {
  namespace: string;
  name: string;
  origin: Origin;
  value: T;
}

export interface ManifestError extends Origin {
  /** Kubernetes-style field path, `(root)` for the document itself, `(file)` for the file. */
  field: string;
  message: string;
}

export interface ManifestSet {
  connections: Loaded<ProviderConnection>[];
  allowlists: Loaded<ModelAllowlist>[];
  secrets: Loaded<SecretManifest>[];
  /** Documents of other kinds (a Namespace, a Deployment...), ignored. */
  skipped: { origin: Origin; kind: string }[];
  errors: ManifestError[];
  files: string[];
  /** Changes when any file's name or content changes (used to skip reloads that change nothing). */
  fingerprint: string;
}

/** `file#doc field: message`, the form every command prints. */
export function formatError(e: ManifestError): string {
  return `${e.doc > 0 ? `${e.file}#${e.doc}` : e.file} ${e.field}: ${e.message}`;
}

export const originText = (o: Origin) => `${o.file}#${o.doc}`;

function display(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

/** The manifest files a path names: the file itself, or a directory's *.yaml, *.yml and *.json (not recursive). */
async function filesOf(path: string): Promise<string[]> {
  const st = await stat(path);
  if (!st.isDirectory()) return [path];
  const names = await readdir(path);
  return names
    .filter((n) => !n.startsWith('.') && MANIFEST_EXTENSIONS.has(extname(n).toLowerCase()))
    .sort()
    .map((n) => join(path, n));
}

/** Splits `field: message` as describeIssues writes it. */
function splitIssue(line: string): { field: string; message: string } {
  const i = line.indexOf(': ');
  return i < 0 ? { field: '(root)', message: line } : { field: line.slice(0, i), message: line.slice(i + 2) };
}

export async function loadManifests(paths: string[]): Promise<ManifestSet> {
  const set: ManifestSet = {
    connections: [],
    allowlists: [],
    secrets: [],
    skipped: [],
    errors: [],
    files: [],
    fingerprint: '',
  };
  const hash = createHash('sha256');
  const seen = new Map<string, Origin>();
  for (const given of paths) {
    let files: string[];
    try {
      files = await filesOf(resolve(given));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const message =
        code === 'ENOENT' ? 'no such file or directory' : `cannot read (${code ?? String(err)})`;
      set.errors.push({ file: display(resolve(given)), doc: 0, field: '(file)', message });
      hash.update(`missing:${given}\n`);
      continue;
    }
    for (const path of files) {
      const file = display(path);
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        set.errors.push({
          file,
          doc: 0,
          field: '(file)',
          message: `cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
        });
        continue;
      }
      set.files.push(file);
      hash.update(`${path}\n${text}\n`);
      parseFile(file, text, set, seen);
    }
  }
  set.fingerprint = hash.digest('hex');
  return set;
}

function parseFile(file: string, text: string, set: ManifestSet, seen: Map<string, Origin>): void {
  // Secret manifests hold keys: YAML errors give the line, column and what is wrong, never the text
  // (describeYamlError), and warnings are not printed (they would write a code frame to stderr).
  const docs = parseAllDocuments(text, { logLevel: 'error' });
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((d, i) => {
    const origin = { file, doc: i + 1 };
    const fail = (field: string, message: string) => set.errors.push({ ...origin, field, message });
    const e = d.errors[0];
    if (e) {
      fail('(yaml)', describeYamlError(e));
      return;
    }
    let obj: unknown;
    try {
      obj = d.toJSON();
    } catch {
      fail('(yaml)', YAML_ALIAS_ERROR);
      return;
    }
    if (obj === null || obj === undefined) return; // an empty document (comments only)
    if (typeof obj !== 'object' || Array.isArray(obj)) {
      fail('(root)', 'expected a Kubernetes object with apiVersion, kind and metadata');
      return;
    }
    const { apiVersion, kind } = obj as { apiVersion?: unknown; kind?: unknown };
    const plugboard =
      kind === 'ProviderConnection' ||
      kind === 'ModelAllowlist' ||
      (typeof apiVersion === 'string' && apiVersion.startsWith('plugboard.dev/'));
    if (kind === 'Secret' && apiVersion === 'v1') {
      const res = SecretManifest.safeParse(obj);
      if (!res.success) {
        for (const line of describeIssues(res.error)) {
          const { field, message } = splitIssue(line);
          fail(field, message);
        }
        return;
      }
      add(set.secrets, res.data, 'Secret', origin, seen, set);
      return;
    }
    if (!plugboard) {
      if (typeof kind !== 'string' || typeof apiVersion !== 'string') {
        fail(typeof kind !== 'string' ? 'kind' : 'apiVersion', 'required: this is not a Kubernetes object');
      } else set.skipped.push({ origin, kind });
      return;
    }
    const res = parseResource(obj);
    if (!res.ok) {
      for (const line of res.errors) {
        const { field, message } = splitIssue(line);
        fail(field, message);
      }
      return;
    }
    if (res.kind === 'ProviderConnection') add(set.connections, res.value, res.kind, origin, seen, set);
    else add(set.allowlists, res.value, res.kind, origin, seen, set);
  });
}

function add<T extends { metadata: { name: string; namespace?: string } }>(
  list: Loaded<T>[],
  value: T,
  kind: string,
  origin: Origin,
  seen: Map<string, Origin>,
  set: ManifestSet,
): void {
  const namespace = value.metadata.namespace ?? DEFAULT_NAMESPACE;
  const name = value.metadata.name;
  const id = `${kind} ${namespace}/${name}`;
  const first = seen.get(id);
  if (first) {
    set.errors.push({
      ...origin,
      field: 'metadata.name',
      message: `duplicate ${id} (first defined in ${originText(first)})`,
    });
    return;
  }
  seen.set(id, origin);
  list.push({ namespace, name, origin, value });
}
