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
