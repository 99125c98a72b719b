/**
 * Simulated upstream providers (OpenAI, Azure OpenAI, Anthropic, Gemini, DeepSeek, Mistral, Perplexity, MiniMax,
 * OpenRouter, GitHub Models and a server without /models) with their wire quirks, for every test suite and
 * `plugboard mock-provider`.
 */
export { MOCK_PROFILES } from './profiles.ts';
export { startMockProvider } from './server.ts';
export type {
  MockFailure,
  MockFailureScope,
  MockProfileName,
  MockProvider,
  MockProviderOptions,
  MockQuirks,
  RecordedRequest,
} from './types.ts';
