/**
 * Simulated upstream providers (OpenAI, Azure OpenAI, Anthropic, Gemini, DeepSeek, Perplexity, MiniMax, OpenRouter,
 * GitHub Models and a server without /models) with their wire quirks, for every test suite and
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
  RecordedRequest,
} from './types.ts';
