import type { z } from 'zod';
import { ModelAllowlist } from './model-allowlist.ts';
import { ProviderConnection } from './provider-connection.ts';

/** Kubernetes-style field path: spec.models[1], spec.headers.Authorization. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, seg) => (typeof seg === 'number' ? `${acc}[${seg}]` : acc ? `${acc}.${String(seg)}` : String(seg)),
    '',
  );
}

/** One line per problem, `field: message`, in the order a person fixes them. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    // A bad map key says only "Invalid key in record"; what is wrong with the key is in its nested issues.
    const why = i.code === 'invalid_key' ? `: ${i.issues.map((n) => n.message).join(', ')}` : '';
    return `${fieldPath(i.path) || '(root)'}: ${i.message}${why}`;
  });
}

export const RESOURCE_SCHEMAS = { ProviderConnection, ModelAllowlist } as const;
export type PlugboardKind = keyof typeof RESOURCE_SCHEMAS;

export type Parsed =
  | { ok: true; kind: 'ProviderConnection'; value: z.output<typeof ProviderConnection> }
  | { ok: true; kind: 'ModelAllowlist'; value: z.output<typeof ModelAllowlist> }
  | { ok: false; errors: string[] };

/** Validates a Plugboard resource exactly as the CRD schema would, returning defaults applied. */
export function parseResource(obj: unknown): Parsed {
  const kind = (obj as { kind?: unknown } | null)?.kind;
  if (kind !== 'ProviderConnection' && kind !== 'ModelAllowlist') {
    return {
      ok: false,
      errors: [`kind: expected ProviderConnection or ModelAllowlist, got ${JSON.stringify(kind)}`],
    };
  }
  const res = RESOURCE_SCHEMAS[kind].safeParse(obj);
  if (!res.success) return { ok: false, errors: describeIssues(res.error) };
  return { ok: true, kind, value: res.data } as Parsed;
}
