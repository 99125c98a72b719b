import type { ProviderType } from '../api/provider-connection.ts';

/** The version header Anthropic's API requires; its OpenAI compatibility layer accepts it too. */
export const ANTHROPIC_VERSION = '2023-06-01';

/**
 * The headers that carry a connection's key, per wire dialect: the one place that knows how each provider
 * authenticates, for verification (`models`) and for proxied requests (`inference`).
 * - OpenAI and every compatible server: `Authorization: Bearer`.
 * - AzureOpenAI: `api-key`.
 * - Anthropic: `x-api-key` and `anthropic-version` on its native /v1/models; its OpenAI compatibility layer
 *   (chat and the rest) reads `Authorization: Bearer`, so inference sends both.
 */
export function credentialHeaders(
  provider: ProviderType,
  apiKey: string | undefined,
  use: 'models' | 'inference',
): Record<string, string> {
  switch (provider) {
    case 'AzureOpenAI':
      return apiKey ? { 'api-key': apiKey } : {};
    case 'Anthropic':
      return {
        ...(apiKey && use === 'inference' ? { authorization: `Bearer ${apiKey}` } : {}),
        ...(apiKey ? { 'x-api-key': apiKey } : {}),
        'anthropic-version': ANTHROPIC_VERSION,
      };
    default:
      return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
  }
}

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

/** Where a dialect's requests go, relative to the connection's base URL (spec.url, no trailing slash). */
interface Dialect {
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
}

const same = (id: string) => id;

const DIALECTS: Record<ProviderType, Dialect> = {
  OpenAI: {
    models: () => '/models',
    paged: false,
    probe: () => ({ path: '/chat/completions' }),
    inference: (endpoint) => `/${endpoint}`,
    exposedId: (listed) => (/^models\/[^/]+$/.test(listed) ? listed.slice('models/'.length) : listed),
    genAiProviderName: 'openai',
  },
  Anthropic: {
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
  },
};

export function dialect(provider: ProviderType): Dialect {
  return DIALECTS[provider];
}
