/**
 * Simulated upstream providers (OpenAI, Azure OpenAI, Anthropic, Gemini, DeepSeek, Mistral, Perplexity, MiniMax,
 * OpenRouter, GitHub Models, Vertex AI and a server without /models) with their wire quirks, and the identity
 * providers keyless credentials ask (Entra ID, Google STS, IAM Credentials and OAuth), for every test suite and
 * `plugboard mock-provider`.
 */
export {
  type IdentityRequest,
  type MockEntraApp,
  type MockGoogleProvider,
  type MockGoogleServiceAccount,
  type MockIdentityOptions,
  type MockIdentityProvider,
  startMockIdentityProvider,
  type TrustedIssuer,
} from './identity.ts';
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
