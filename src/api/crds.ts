import { stringify } from 'yaml';
import { z } from 'zod';
import { GROUP, VERSION } from './common.ts';
import { ModelAllowlistSpec, ModelAllowlistStatus } from './model-allowlist.ts';
import { ProviderConnectionSpec, ProviderConnectionStatus } from './provider-connection.ts';

type Json = Record<string, unknown>;

/**
 * zod's OpenAPI output is close to a Kubernetes structural schema; these are the differences, fixed recursively.
 */
function toStructural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toStructural);
  if (node === null || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node as Json)) {
    if (k === '$schema' || k === 'propertyNames' || k === 'id') continue;
    if (k === 'additionalProperties' && v === false) continue;
    out[k] = toStructural(v);
  }
  // Formats are validated by the API server itself; the long regexes zod adds would only duplicate them.
  if (out.format === 'date-time') delete out.pattern;
  if (out.type === 'integer') {
    out.format = 'int64';
    if (typeof out.maximum === 'number' && out.maximum >= Number.MAX_SAFE_INTEGER) delete out.maximum;
    if (typeof out.minimum === 'number' && out.minimum <= Number.MIN_SAFE_INTEGER) delete out.minimum;
  }
  return out;
}

export function openApiSchema(schema: z.ZodType): Json {
  return toStructural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' })) as Json;
}

interface Kind {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  columns: Json[];
}

const readyColumns = [
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
];

const KINDS: Kind[] = [
  {
    kind: 'ProviderConnection',
    plural: 'providerconnections',
    shortNames: ['pconn'],
    description:
      'A connection to one OpenAI-compatible model provider, verified continuously by the Plugboard operator and ' +
      'served through the Plugboard gateway.',
    spec: ProviderConnectionSpec,
    status: ProviderConnectionStatus,
    columns: [
      { name: 'Provider', type: 'string', jsonPath: '.spec.provider' },
      { name: 'URL', type: 'string', jsonPath: '.spec.url' },
      ...readyColumns,
      { name: 'Models', type: 'integer', jsonPath: '.status.exposedModelCount' },
      { name: 'Enabled', type: 'boolean', jsonPath: '.spec.enabled', priority: 1 },
      { name: 'Verified', type: 'date', jsonPath: '.status.lastVerifiedTime', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  },
  {
    kind: 'ModelAllowlist',
    plural: 'modelallowlists',
    shortNames: ['mallow'],
    description: 'The model IDs of a ProviderConnection that the Plugboard gateway exposes.',
    spec: ModelAllowlistSpec,
    status: ModelAllowlistStatus,
    columns: [
      { name: 'Connection', type: 'string', jsonPath: '.spec.connectionRef.name' },
      ...readyColumns,
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  },
];

export function customResourceDefinitions(): Json[] {
  return KINDS.map((k) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${k.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'plugboard', 'app.kubernetes.io/component': 'crd' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: k.kind,
        listKind: `${k.kind}List`,
        plural: k.plural,
        singular: k.kind.toLowerCase(),
        shortNames: k.shortNames,
        categories: ['plugboard'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: k.columns,
          schema: {
            openAPIV3Schema: {
              description: k.description,
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: openApiSchema(k.spec),
                status: openApiSchema(k.status),
              },
            },
          },
        },
      ],
    },
  }));
}

const HEADER = '# Generated from the zod schemas in src/api by `npm run generate`. Do not edit.\n';

/** One YAML file per CRD, keyed by file name, exactly as committed under crds/. */
export function crdFiles(): Map<string, string> {
  return new Map(
    customResourceDefinitions().map((crd) => [
      `${(crd.metadata as Json).name}.yaml`,
      HEADER + stringify(crd, { lineWidth: 0 }),
    ]),
  );
}

/** All CRDs as one multi-document YAML stream, what `plugboard crds | kubectl apply -f -` expects. */
export function crdsYaml(): string {
  return [...crdFiles().values()].join('---\n');
}
