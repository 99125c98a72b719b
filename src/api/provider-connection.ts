import { z } from 'zod';
import { API_VERSION, conditions, duration, ObjectMeta } from './common.ts';
import { EntraID, GoogleCloud, secretKeyRef } from './credentials.ts';
import { withRules } from './rules.ts';
import { upstreamUrl } from './upstream-url.ts';

export const PROVIDER_TYPES = ['OpenAI', 'AzureOpenAI', 'Anthropic'] as const;
export const ProviderType = z
  .enum(PROVIDER_TYPES)
  .default('OpenAI')
  .meta({
    description:
      'Wire dialect of the upstream. OpenAI covers every OpenAI-compatible server (Gemini, DeepSeek, Mistral, Groq, ' +
      'OpenRouter, vLLM, llama.cpp, Vertex AI, ...). AzureOpenAI uses deployment paths, api-version and an api-key ' +
      'header (Authorization: Bearer with entraID). ' +
      "Anthropic uses Anthropic's OpenAI compatibility layer with x-api-key for model discovery.",
  });
export type ProviderType = z.output<typeof ProviderType>;

/** Headers that carry credentials: they belong in the Secret, never in a spec that GitOps stores in plain text. */
export const CREDENTIAL_HEADERS = ['authorization', 'api-key', 'x-api-key', 'proxy-authorization', 'cookie'];
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

export const SecretKeyRef = secretKeyRef(
  'apiKey',
  'the API key',
  'Secret holding the API key. Omit for local servers that need none.',
);

const headers = withRules(
  z.record(z.string().max(256), z.string().max(4096)),
  [
    {
      cel: "self.all(k, k.matches('^[A-Za-z0-9!#$%&\\'*+.^_`|~-]+$'))",
      message: "header names must be HTTP tokens (letters, digits and !#$%&'*+-.^_`|~)",
      check: (h) => Object.keys(h).every((k) => HEADER_NAME.test(k)),
    },
    {
      cel: `self.all(k, !(k.lowerAscii() in [${CREDENTIAL_HEADERS.map((h) => `'${h}'`).join(', ')}]))`,
      message:
        'headers must not carry credentials (Authorization, api-key, x-api-key, Proxy-Authorization, Cookie); ' +
        'put the key in the Secret named by apiKeySecretRef',
      check: (h) => Object.keys(h).every((k) => !CREDENTIAL_HEADERS.includes(k.toLowerCase())),
    },
  ],
  "Static extra headers sent upstream on every request, e.g. OpenRouter's HTTP-Referer and X-Title.",
).meta({ maxProperties: 32 });

export const ProviderConnectionSpec = withRules(
  z.object({
    provider: ProviderType,
    url: upstreamUrl,
    apiKeySecretRef: SecretKeyRef.optional(),
    entraID: EntraID.optional(),
    googleCloud: GoogleCloud.optional(),
    enabled: z
      .boolean()
      .default(true)
      .meta({ description: 'Set to false to take the connection out of service without deleting it.' }),
    azure: z
      .object({
        apiVersion: z
          .string()
          .min(1)
          .max(64)
          .regex(
            /^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$|^v1$|^latest$|^preview$/,
            'must look like 2024-10-21, 2024-02-15-preview, v1, latest or preview',
          )
          .meta({
            description:
              'A date (2024-10-21, 2025-04-01-preview) selects the deployments API: ' +
              '{url}/openai/deployments/{deployment}/...?api-version={date}. v1, latest or preview select the v1 ' +
              "API: {url}/openai/v1/..., the deployment named by the request body's model (v1 sends no " +
              'api-version, latest and preview send theirs).',
          }),
      })
      .optional()
      .meta({
        description: 'Azure OpenAI settings. Required when provider is AzureOpenAI, forbidden otherwise.',
      }),
    modelPrefix: z
      .string()
      .min(1)
      .max(63)
      .regex(/^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$/, 'must be letters, digits, "-" and "_"')
      .optional()
      .meta({
        description:
          'Exposes models as <modelPrefix>.<id> so that several connections may offer the same upstream ID; the ' +
          'prefix is removed before calling the upstream.',
      }),
    headers: headers.optional(),
    dropParams: z
      .array(z.string().min(1).max(128))
      .max(64)
      .optional()
      .meta({
        description:
          'Request body parameters removed before calling this upstream because it rejects them ' +
          '(Perplexity rejects stop and frequency_penalty).',
        'x-kubernetes-list-type': 'set',
      }),
    verification: z
      .object({
        interval: duration({
          default: '5m',
          min: '10s',
          max: '24h',
          description: 'How often the operator re-verifies the connection (with jitter).',
        }),
        timeout: duration({
          default: '10s',
          min: '1s',
          max: '5m',
          description: 'Timeout of one verification call.',
        }),
      })
      .prefault({})
      .meta({ description: 'How the operator checks that the upstream works.' }),
    timeouts: z
      .object({
        connect: duration({ default: '10s', min: '100ms', max: '5m', description: 'TCP and TLS connect.' }),
        firstByte: duration({
          default: '5m',
          min: '1s',
          max: '1h',
          description: 'Until the upstream sends response headers (reasoning models may think for minutes).',
        }),
        idle: duration({
          default: '5m',
          min: '1s',
          max: '1h',
          description: 'Longest silence between two chunks of a streamed response.',
        }),
        total: duration({
          default: '1h',
          min: '1s',
          max: '24h',
          description: 'Whole request, including a streamed response.',
        }),
      })
      .prefault({})
      .meta({ description: 'Timeouts for requests proxied by the gateway.' }),
    tags: z.array(z.string().min(1).max(63)).max(16).optional().meta({
      description: 'Free-form labels shown in /v1/models metadata and the UI, e.g. [cloud, eu].',
      'x-kubernetes-list-type': 'set',
    }),
  }),
  [
    {
      cel: "self.provider != 'AzureOpenAI' || has(self.azure)",
      message:
        'azure.apiVersion is required when provider is AzureOpenAI (e.g. azure: {apiVersion: 2024-10-21})',
      check: (s) => s.provider !== 'AzureOpenAI' || s.azure !== undefined,
    },
    {
      cel: '(has(self.apiKeySecretRef) ? 1 : 0) + (has(self.entraID) ? 1 : 0) + (has(self.googleCloud) ? 1 : 0) <= 1',
      message:
        'name at most one credential: apiKeySecretRef (an API key in a Secret), entraID (Microsoft Entra ID tokens) or googleCloud (Google Cloud tokens)',
      check: (s) => [s.apiKeySecretRef, s.entraID, s.googleCloud].filter((c) => c !== undefined).length <= 1,
    },
    {
      cel: "!has(self.entraID) || self.provider != 'Anthropic'",
      message:
        'entraID needs provider AzureOpenAI (or OpenAI for an Azure endpoint that speaks it); Anthropic takes no Entra ID tokens',
      check: (s) => s.entraID === undefined || s.provider !== 'Anthropic',
    },
    {
      cel: "!has(self.googleCloud) || self.provider == 'OpenAI'",
      message: "googleCloud needs provider OpenAI (Vertex AI's OpenAI-compatible endpoint)",
      check: (s) => s.googleCloud === undefined || s.provider === 'OpenAI',
    },
    {
      cel: "self.provider == 'AzureOpenAI' || !has(self.azure)",
      message: 'azure is only valid when provider is AzureOpenAI; remove it or set provider: AzureOpenAI',
      check: (s) => s.provider === 'AzureOpenAI' || s.azure === undefined,
    },
  ],
  'Desired state of a connection to one OpenAI-compatible upstream.',
);
export type ProviderConnectionSpec = z.output<typeof ProviderConnectionSpec>;
export type ProviderConnectionSpecInput = z.input<typeof ProviderConnectionSpec>;

/** Bound on status.models so a 5,000-model upstream cannot bloat the object; counts carry the totals. */
export const STATUS_MODELS_MAX = 500;

export const ProviderConnectionStatus = z
  .object({
    observedGeneration: z.int().min(0).optional(),
    conditions,
    models: z
      .array(z.string().max(256))
      .max(STATUS_MODELS_MAX)
      .optional()
      .meta({ description: `Exposed model IDs (first ${STATUS_MODELS_MAX}, sorted).` }),
    exposedModelCount: z
      .int()
      .min(0)
      .optional()
      .meta({ description: 'Number of models the gateway exposes.' }),
    discoveredModelCount: z
      .int()
      .min(0)
      .optional()
      .meta({ description: 'Number of models the upstream listed at the last successful verification.' }),
    lastVerifiedTime: z.iso
      .datetime({ offset: true })
      .optional()
      .meta({ description: 'When the upstream last answered a verification call successfully.' }),
    credentialExpiresAt: z.iso
      .datetime({ offset: true })
      .optional()
      .meta({
        description:
          'entraID and googleCloud: when the access token the gateway sends expires (the token itself is never ' +
          'shown). The operator replaces it at about half its lifetime.',
      }),
  })
  .meta({ description: 'Observed state, written by the operator.' });
export type ProviderConnectionStatus = z.output<typeof ProviderConnectionStatus>;

export const ProviderConnection = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('ProviderConnection'),
  metadata: ObjectMeta,
  spec: ProviderConnectionSpec,
  status: ProviderConnectionStatus.optional(),
});
export type ProviderConnection = z.output<typeof ProviderConnection>;
