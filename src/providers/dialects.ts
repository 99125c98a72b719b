import type { ProviderType } from '../api/provider-connection.ts';

/** The version header Anthropic's API requires; its OpenAI compatibility layer accepts it too. */
export const ANTHROPIC_VERSION = '2023-06-01';

/**
 * Azure api-version values that select Azure's v1 API: `{url}/openai/v1/{endpoint}` with the deployment named by
 * `model` in the body, as on OpenAI. `v1` sends no api-version (the GA API takes none); `preview` and `latest`
 * are sent as `?api-version=` to opt into Azure's preview features. Every other (dated) value selects the
 * deployments API: `{url}/openai/deployments/{deployment}/{endpoint}?api-version={date}`.
 */
export const AZURE_V1_API_VERSIONS = ['v1', 'latest', 'preview'] as const;

export function isAzureV1(apiVersion: string | undefined): boolean {
  return (AZURE_V1_API_VERSIONS as readonly (string | undefined)[]).includes(apiVersion);
}

function azureQuery(apiVersion: string | undefined): string {
  if (apiVersion === 'v1') return '';
  return `?${new URLSearchParams({ 'api-version': apiVersion ?? '' })}`;
}

/**
 * The verification probe's body: a chat completion request without `model` and without `messages`, both of
 * which every chat completions API requires, so a server refuses it (400, or 422 from pydantic/FastAPI servers)
 * after it has checked the key and before any model runs. `max_tokens: 1` bounds what a server that ignores
 * the missing fields could generate. docs/operator.md explains the choice per server.
 */
export const PROBE_BODY = '{"max_tokens":1}';

/**
 * What a connection's secret is: an API key (from apiKeySecretRef), or an OAuth 2.0 access token the operator
 * obtained (entraID, googleCloud; src/providers/credentials.ts), which every dialect sends as
 * `Authorization: Bearer`.
 */
export type CredentialScheme = 'apiKey' | 'accessToken';

/**
 * One wire dialect as data: how a connection's key is sent, where its requests go (relative to spec.url, no
 * trailing slash), how its model list is read and what the model IDs mean. Verification, status planning and
 * the gateway read this record and nothing else about a provider.
 */
export interface Dialect {
  /**
   * The headers that carry the key: for verification's model list (`models`) and for proxied requests and the
   * probe (`inference`). No key, no credential header.
   */
  credentials(
    apiKey: string | undefined,
    use: 'models' | 'inference',
    scheme: CredentialScheme,
  ): Record<string, string>;
  /** The model list (one page; `afterId` continues a paged list). */
  models(apiVersion: string | undefined, afterId?: string): string;
  /** Whether the model list is paged with `has_more`/`last_id` (then `afterId` is followed). */
  paged: boolean;
  /**
   * The path of the verification probe (POST {@link PROBE_BODY}) that checks the URL and key of an upstream
   * that does not list its models; or, where a missing model list can only mean a wrong URL, what to check.
   */
  probe(apiVersion: string | undefined): { path: string } | { wrongUrl: string };
  /** A proxied endpoint (`chat/completions`, ...), for the model the upstream knows as `upstreamModel`. */
  inference(endpoint: string, upstreamModel: string, apiVersion: string | undefined): string;
  /**
   * The model ID a listed ID is exposed and matched as. Google's OpenAI compatibility layer lists resource
   * names (`models/gemini-2.5-pro`) where its docs and every client use the bare ID, which its chat endpoint
   * takes as well ("prefixed by models/ if no slash appears in it"); the listed ID stays what is sent upstream.
   */
  exposedId(listed: string): string;
  /**
   * gen_ai.provider.name in OpenTelemetry's GenAI semantic conventions: the API the gateway speaks, which for the
   * OpenAI dialect includes every OpenAI-compatible server (the conventions' "best knowledge" rule; the host tells
   * them apart).
   */
  genAiProviderName: string;
  /**
   * Set when requests name deployments that the model list does not show (it lists base models). Allowlist
   * entries are then the exact deployment names, and a glob has no list of deployments to match.
   */
  deployments?: {
    /** Ready's message while no allowlist names a deployment. */
    noneExposed: string;
    /** Why a glob can never match, for the allowlist's GlobNeedsModelList message. */
    globsUnmatchable: string;
  };
}

const bearer = (apiKey: string | undefined): Record<string, string> =>
  apiKey ? { authorization: `Bearer ${apiKey}` } : {};

const same = (id: string) => id;

const DIALECTS: Record<ProviderType, Dialect> = {
  OpenAI: {
    // Every OpenAI-compatible server.
    credentials: bearer,
    models: () => '/models',
    paged: false,
    probe: () => ({ path: '/chat/completions' }),
    inference: (endpoint) => `/${endpoint}`,
    exposedId: (listed) => (/^models\/[^/]+$/.test(listed) ? listed.slice('models/'.length) : listed),
    genAiProviderName: 'openai',
  },
  Anthropic: {
    // The native /v1/models reads x-api-key and anthropic-version; the OpenAI compatibility layer (chat and the
    // rest) reads Authorization: Bearer, so inference sends both. (No access tokens: the API refuses entraID here.)
    credentials: (apiKey, use) => ({
      ...(apiKey && use === 'inference' ? bearer(apiKey) : {}),
      ...(apiKey ? { 'x-api-key': apiKey } : {}),
      'anthropic-version': ANTHROPIC_VERSION,
    }),
    // The native list pages 1,000 at a time; chat goes through the OpenAI compatibility layer.
    models: (_v, afterId) =>
      `/models?${new URLSearchParams({ limit: '1000', ...(afterId ? { after_id: afterId } : {}) })}`,
    paged: true,
    probe: () => ({ path: '/chat/completions' }),
    inference: (endpoint) => `/${endpoint}`,
    exposedId: same,
    genAiProviderName: 'anthropic',
  },
  AzureOpenAI: {
    // A resource key goes in api-key; an Entra ID token in Authorization: Bearer, which both Azure APIs accept.
    credentials: (apiKey, _use, scheme): Record<string, string> =>
      scheme === 'accessToken' ? bearer(apiKey) : apiKey ? { 'api-key': apiKey } : {},
    // Azure lists base models, not deployments, on both APIs; allowlist entries are deployment names.
    models: (v) => (isAzureV1(v) ? `/openai/v1/models${azureQuery(v)}` : `/openai/models${azureQuery(v)}`),
    paged: false,
    // The dated API serves /openai/models on every version it supports, so a 404 there means a wrong URL or
    // api-version; its chat path needs a deployment name, which verification does not have.
    probe: (v) =>
      isAzureV1(v)
        ? { path: `/openai/v1/chat/completions${azureQuery(v)}` }
        : {
            wrongUrl: `Azure serves its model list on every api-version it supports, so spec.url is not the resource endpoint (https://<resource>.openai.azure.com, no path) or azure.apiVersion ${JSON.stringify(v)} is not one Azure supports`,
          },
    inference: (endpoint, deployment, v) => {
      if (isAzureV1(v)) return `/openai/v1/${endpoint}${azureQuery(v)}`;
      // The Responses API is not per deployment.
      if (endpoint === 'responses') return `/openai/responses${azureQuery(v)}`;
      return `/openai/deployments/${encodeURIComponent(deployment)}/${endpoint}${azureQuery(v)}`;
    },
    exposedId: same,
    genAiProviderName: 'azure.ai.openai',
    deployments: {
      noneExposed: 'Azure OpenAI model IDs are deployment names: list your deployments in a ModelAllowlist',
      globsUnmatchable: 'Azure model IDs are deployment names and Azure does not list deployments',
    },
  },
};

export function dialect(provider: ProviderType): Dialect {
  return DIALECTS[provider];
}

/** The headers that carry a connection's key (or access token) for `use`, as its dialect sends them. */
export function credentialHeaders(
  provider: ProviderType,
  apiKey: string | undefined,
  use: 'models' | 'inference',
  scheme: CredentialScheme = 'apiKey',
): Record<string, string> {
  return DIALECTS[provider].credentials(apiKey, use, scheme);
}
