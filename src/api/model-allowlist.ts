import { z } from 'zod';
import { API_VERSION, conditions, ObjectMeta, objectName } from './common.ts';
import { withRules } from './rules.ts';

const MODEL_ID = /^\S+$/;

export const modelPattern = withRules(
  z.string().max(256),
  [
    {
      cel: "self.matches('^\\\\S+$')",
      message: 'model IDs must be non-empty and contain no whitespace',
      check: (s) => MODEL_ID.test(s),
    },
  ],
  'An exact model ID (for Azure OpenAI, a deployment name) or a glob where * matches any run of characters.',
);

export const ModelAllowlistSpec = z
  .object({
    connectionRef: z
      .object({
        name: objectName.meta({ description: 'Name of a ProviderConnection in the same namespace.' }),
      })
      .meta({ description: 'The connection whose models this list exposes.' }),
    models: withRules(
      z.array(modelPattern).max(1000),
      [
        {
          cel: 'size(self) > 0',
          message: 'models must list at least one model ID or glob, e.g. [gpt-4o, "claude-*"]',
          check: (m) => m.length > 0,
        },
        // The API server reports duplicates itself through x-kubernetes-list-type: set.
        { message: 'model IDs must be unique', check: (m) => new Set(m).size === m.length },
      ],
      'Model IDs or globs exposed through the gateway. Several allowlists on one connection add up.',
    ).meta({ 'x-kubernetes-list-type': 'set' }),
  })
  .meta({ description: 'Which model IDs of a connection the gateway exposes.' });
export type ModelAllowlistSpec = z.output<typeof ModelAllowlistSpec>;

export const ModelAllowlistStatus = z
  .object({
    observedGeneration: z.int().min(0).optional(),
    conditions,
    exposedModels: z.array(z.string().max(256)).max(1000).optional().meta({
      description: 'Model IDs this list exposes (the upstream offers them, or cannot list its models).',
    }),
    missingModels: z
      .array(z.string().max(256))
      .max(1000)
      .optional()
      .meta({ description: 'Listed model IDs the upstream does not offer.' }),
  })
  .meta({ description: 'Observed state, written by the operator.' });
export type ModelAllowlistStatus = z.output<typeof ModelAllowlistStatus>;

/** The reasons of a ModelAllowlist's `Ready` condition (docs/operator.md says what to do about each). */
export const AllowlistReadyReasons = [
  /** Every listed ID and glob is served. */
  'ModelsExposed',
  /** Listed IDs (or globs matching nothing) the upstream does not offer; status.missingModels names them. */
  'ModelsMissing',
  /**
   * Globs on a connection whose upstream lists no models (no /models, or Azure, whose deployments are not
   * listed): a glob can only match a list, so it never matches anything there.
   */
  'GlobNeedsModelList',
  /** The connection is not Ready and nothing of this list is served. */
  'ConnectionNotReady',
  /** The connection has spec.enabled false. */
  'ConnectionDisabled',
  /** spec.connectionRef names no ProviderConnection in the namespace. */
  'ConnectionNotFound',
] as const;
export type AllowlistReadyReason = (typeof AllowlistReadyReasons)[number];

/** The reasons of a ModelAllowlist's `ResolvedRefs` condition. */
export const AllowlistRefReasons = [
  /** spec.connectionRef names a ProviderConnection in the namespace. */
  'ConnectionFound',
  /** It names none. */
  'ConnectionNotFound',
] as const;
export type AllowlistRefReason = (typeof AllowlistRefReasons)[number];

/** Ready reasons that are the allowlist's own fault rather than its connection's: fix the list itself. */
export const ALLOWLIST_FAULTS: readonly AllowlistReadyReason[] = ['ModelsMissing', 'GlobNeedsModelList'];
export const isAllowlistFault = (reason: string) => (ALLOWLIST_FAULTS as readonly string[]).includes(reason);

export const ModelAllowlist = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('ModelAllowlist'),
  metadata: ObjectMeta,
  spec: ModelAllowlistSpec,
  status: ModelAllowlistStatus.optional(),
});
export type ModelAllowlist = z.output<typeof ModelAllowlist>;
