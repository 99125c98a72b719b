import { customResourceDefinitions } from './crds.ts';

type Json = Record<string, unknown>;

/** Escapes text for a Markdown table cell. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n+/g, ' ');
}

const code = (v: unknown) => `\`${typeof v === 'string' ? v : JSON.stringify(v)}\``;

function typeOf(node: Json): string {
  const t = node.type as string | undefined;
  if (t === 'array') {
    const items = (node.items as Json | undefined) ?? {};
    return `[]${typeOf(items)}`;
  }
  if (t === 'object' && node.additionalProperties && typeof node.additionalProperties === 'object') {
    return `map[string]${typeOf(node.additionalProperties as Json)}`;
  }
  if (node.format && node.format !== 'int64') return `${t} (${node.format})`;
  return t ?? 'any';
}

/** Every constraint the API server enforces on this node, in words. */
function constraints(node: Json, required: boolean): string[] {
  const out: string[] = [];
  if (required) out.push('**required**');
  if (Array.isArray(node.enum)) out.push(`one of ${(node.enum as unknown[]).map(code).join(', ')}`);
  if (node.minLength !== undefined) out.push(`min length ${node.minLength}`);
  if (node.maxLength !== undefined) out.push(`max length ${node.maxLength}`);
  if (node.minimum !== undefined) out.push(`≥ ${node.minimum}`);
  if (node.maximum !== undefined) out.push(`≤ ${node.maximum}`);
  if (node.minItems !== undefined) out.push(`at least ${node.minItems} items`);
  if (node.maxItems !== undefined) out.push(`at most ${node.maxItems} items`);
  if (node.maxProperties !== undefined) out.push(`at most ${node.maxProperties} entries`);
  if (node.pattern !== undefined) out.push(`matches ${code(node.pattern)}`);
  if (node['x-kubernetes-list-type'] === 'map') {
    out.push(
      `list map keyed by ${((node['x-kubernetes-list-map-keys'] as string[]) ?? []).map(code).join(', ')}`,
    );
  } else if (node['x-kubernetes-list-type'] === 'set') out.push('unique items');
  for (const v of (node['x-kubernetes-validations'] as Json[] | undefined) ?? []) {
    // The API server's own message (the CEL rule itself is in the CRD).
    out.push(`"${(v.message as string | undefined) ?? code(v.rule)}"`);
  }
  return out;
}

/** A Markdown table with padded columns, as the repository's formatter (biome) writes them. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

interface Row {
  path: string;
  type: string;
  def: string;
  constraints: string;
  description: string;
}

function walk(node: Json, path: string, required: boolean, rows: Row[]): void {
  rows.push({
    path: code(path),
    type: code(typeOf(node)),
    def: node.default === undefined ? '' : code(node.default),
    constraints: constraints(node, required).join('; '),
    description: (node.description as string | undefined) ?? '',
  });
  const req = new Set((node.required as string[] | undefined) ?? []);
  for (const [k, child] of Object.entries((node.properties as Record<string, Json> | undefined) ?? {})) {
    walk(child, `${path}.${k}`, req.has(k), rows);
  }
  const items = node.items as Json | undefined;
  if (items?.properties) {
    const ireq = new Set((items.required as string[] | undefined) ?? []);
    for (const [k, child] of Object.entries(items.properties as Record<string, Json>)) {
      walk(child, `${path}[].${k}`, ireq.has(k), rows);
    }
  }
  const values = node.additionalProperties as Json | undefined;
  if (values && typeof values === 'object' && values.properties) walk(values, `${path}{}`, false, rows);
}

/**
 * docs/reference.md: every field of every CRD (path, type, default, constraints with the API server's own
 * validation messages, description), rendered from the generated CRD schemas so it cannot drift from them.
 */
export function referenceMarkdown(): string {
  const lines = [
    '<!-- Generated from the zod schemas in src/api by `npm run generate` (src/api/reference.ts). Do not edit. -->',
    '',
    '# API reference',
    '',
    'Every field of every Plugboard resource, as the API server validates it. Group `plugboard.dev`, version',
    '`v1alpha1`. Status fields are written by the operator only. Conditions and their reasons are explained in',
    '[operator.md](operator.md#conditions).',
    '',
  ];
  for (const crd of customResourceDefinitions()) {
    const spec = crd.spec as Json;
    const names = spec.names as Json;
    const version = (spec.versions as Json[])[0] as Json;
    const root = (version.schema as Json).openAPIV3Schema as Json;
    const props = root.properties as Record<string, Json>;
    lines.push(
      `## ${names.kind}`,
      '',
      `${root.description as string}`,
      '',
      `\`apiVersion: ${spec.group as string}/${version.name as string}\` · plural \`${names.plural as string}\` · ` +
        `short name ${(names.shortNames as string[]).map(code).join(', ')} · namespaced`,
      '',
    );
    for (const part of ['spec', 'status'] as const) {
      const rows: Row[] = [];
      const schema = props[part] as Json;
      walk(schema, `.${part}`, part === 'spec', rows);
      const header = ['field', 'type', 'default', 'validation', 'description'];
      const body = rows.map((r) => [r.path, r.type, r.def, r.constraints, r.description].map(cell));
      lines.push(`### ${names.kind} ${part}`, '', ...table(header, body), '');
    }
  }
  return lines.join('\n');
}
