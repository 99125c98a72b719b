import type { MockProfileName, MockQuirks } from './types.ts';

export const MOCK_PROFILES: readonly MockProfileName[] = [
  'openai',
  'azure',
  'anthropic',
  'gemini',
  'deepseek',
  'perplexity',
  'minimax',
  'openrouter',
  'no-models',
  'github-models',
  'mistral',
  'vertex',
];

/** What went wrong, independent of how a provider spells it. */
export type ErrorKind =
  | 'auth'
  | 'bad_request'
  | 'not_found'
  | 'model_not_found'
  | 'rate_limit'
  | 'server'
  | 'overloaded'
  | 'forbidden';

export interface ErrorReply {
  status: number;
  contentType: string;
  body: string;
}

export interface MockProfile extends MockQuirks {
  name: MockProfileName;
  /** Path prefix of the base URL an admin configures ('' for the origin itself). */
  basePath: string;
  auth: 'bearer' | 'azure' | 'anthropic';
  defaultModels: string[];
  /** owned_by in model lists. */
  owner: string;
  /** Prefix of chat completion ids. */
  chatIdPrefix: string;
  error(kind: ErrorKind, message: string, status?: number): ErrorReply;
  /** The reply to a wrong key, where it is not `error('auth')` (Google: 400 API_KEY_INVALID). */
  wrongKey?: () => ErrorReply;
  /** The 401 message for a missing, invalid or expired OAuth access token (acceptToken). */
  tokenRejected: string;
}

const GOOGLE_UNAUTHENTICATED =
  'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid ' +
  'authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';
const INVALID_TOKEN = 'Invalid authentication token.';

const STATUS: Record<ErrorKind, number> = {
  auth: 401,
  bad_request: 400,
  not_found: 404,
  model_not_found: 404,
  rate_limit: 429,
  server: 500,
  overloaded: 503,
  forbidden: 403,
};

const json = (status: number, body: unknown): ErrorReply => ({
  status,
  contentType: 'application/json',
  body: JSON.stringify(body),
});

/** OpenAI's error shape, also used by DeepSeek and most OpenAI-compatible servers. */
function openaiError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const type: Record<ErrorKind, string> = {
    auth: 'invalid_request_error',
    bad_request: 'invalid_request_error',
    not_found: 'invalid_request_error',
    model_not_found: 'invalid_request_error',
    rate_limit: 'requests',
    server: 'server_error',
    overloaded: 'server_error',
    forbidden: 'invalid_request_error',
  };
  const code: Record<ErrorKind, string | null> = {
    auth: 'invalid_api_key',
    bad_request: null,
    not_found: null,
    model_not_found: 'model_not_found',
    rate_limit: 'rate_limit_exceeded',
    server: null,
    overloaded: null,
    forbidden: 'unsupported_country_region_territory',
  };
  return json(status, {
    error: {
      message,
      type: type[kind],
      param: kind === 'model_not_found' ? 'model' : null,
      code: code[kind],
    },
  });
}

function azureError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const code: Record<ErrorKind, string> = {
    auth: '401',
    bad_request: 'BadRequest',
    not_found: '404',
    model_not_found: 'DeploymentNotFound',
    rate_limit: '429',
    server: 'InternalServerError',
    overloaded: 'ServiceUnavailable',
    forbidden: '403',
  };
  return json(status, { error: { code: code[kind], message } });
}

function anthropicError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const type: Record<ErrorKind, string> = {
    auth: 'authentication_error',
    bad_request: 'invalid_request_error',
    not_found: 'not_found_error',
    model_not_found: 'not_found_error',
    rate_limit: 'rate_limit_error',
    server: 'api_error',
    overloaded: 'overloaded_error',
    forbidden: 'permission_error',
  };
  return json(status, { type: 'error', error: { type: type[kind], message } });
}

/** Google APIs: {error:{code, message, status}}. */
function googleError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const s: Record<ErrorKind, string> = {
    auth: 'UNAUTHENTICATED',
    bad_request: 'INVALID_ARGUMENT',
    not_found: 'NOT_FOUND',
    model_not_found: 'NOT_FOUND',
    rate_limit: 'RESOURCE_EXHAUSTED',
    server: 'INTERNAL',
    overloaded: 'UNAVAILABLE',
    forbidden: 'PERMISSION_DENIED',
  };
  return json(status, { error: { code: status, message, status: s[kind] } });
}

/**
 * Google answers a wrong API key with 400 INVALID_ARGUMENT and the ErrorInfo reason API_KEY_INVALID, and its
 * OpenAI compatibility layer wraps the error in a one-element array.
 */
function googleKeyInvalid(): ErrorReply {
  const message = 'API key not valid. Please pass a valid API key.';
  return json(400, [
    {
      error: {
        code: 400,
        message,
        status: 'INVALID_ARGUMENT',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'API_KEY_INVALID',
            domain: 'googleapis.com',
            metadata: { service: 'generativelanguage.googleapis.com' },
          },
          { '@type': 'type.googleapis.com/google.rpc.LocalizedMessage', locale: 'en-US', message },
        ],
      },
    },
  ]);
}

/** Mistral: its gateway's `{"message":"Unauthorized"}` for a key, the API's `{"object":"error", ...}` otherwise. */
function mistralError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  if (kind === 'auth') return json(status, { message: 'Unauthorized', request_id: 'mock' });
  const type = kind === 'server' || kind === 'overloaded' ? 'internal_server_error' : 'invalid_request_error';
  return json(status, { object: 'error', message, type, param: null, code: null });
}

function perplexityError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const type: Record<ErrorKind, string> = {
    auth: 'unauthorized',
    bad_request: 'invalid_parameter',
    not_found: 'not_found',
    model_not_found: 'invalid_model',
    rate_limit: 'rate_limit_exceeded',
    server: 'internal_error',
    overloaded: 'service_unavailable',
    forbidden: 'forbidden',
  };
  return json(status, { error: { message, type: type[kind], code: status } });
}

/** MiniMax reports errors in base_resp. */
function minimaxError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const code: Record<ErrorKind, number> = {
    auth: 1004,
    bad_request: 2013,
    not_found: 404,
    model_not_found: 2013,
    rate_limit: 1002,
    server: 1000,
    overloaded: 1001,
    forbidden: 1008,
  };
  return json(status, { base_resp: { status_code: code[kind], status_msg: message } });
}

function openrouterError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  return json(status, { error: { message, code: status } });
}

function githubError(kind: ErrorKind, message: string, status = STATUS[kind]): ErrorReply {
  const code: Record<ErrorKind, string> = {
    auth: 'unauthorized',
    bad_request: 'invalid_request_body',
    not_found: 'not_found',
    model_not_found: 'unknown_model',
    rate_limit: 'RateLimitReached',
    server: 'internal_error',
    overloaded: 'service_unavailable',
    forbidden: 'forbidden',
  };
  return json(status, { error: { code: code[kind], message, details: message } });
}

const OPENAI_MODELS = [
  'gpt-4o',
  'gpt-4o-mini',
  'gpt-4.1',
  'o3-mini',
  'text-embedding-3-small',
  'text-embedding-3-large',
  'tts-1',
  'gpt-4o-mini-tts',
  'whisper-1',
  'dall-e-3',
  'gpt-image-1',
];

export const PROFILES: Record<MockProfileName, MockProfile> = {
  openai: {
    name: 'openai',
    basePath: '/v1',
    auth: 'bearer',
    models: 'openai',
    defaultModels: OPENAI_MODELS,
    owner: 'system',
    chatIdPrefix: 'chatcmpl-',
    error: openaiError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  azure: {
    name: 'azure',
    basePath: '',
    auth: 'azure',
    models: 'azure',
    defaultModels: [
      'my-gpt-4o-deployment',
      'gpt-4o',
      'gpt-4o-mini',
      'text-embedding-3-small',
      'tts',
      'whisper',
      'dall-e-3',
    ],
    owner: 'system',
    chatIdPrefix: 'chatcmpl-',
    error: azureError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected:
      'Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired.',
  },
  anthropic: {
    name: 'anthropic',
    basePath: '/v1',
    auth: 'anthropic',
    models: 'anthropic',
    defaultModels: ['claude-sonnet-4-5', 'claude-opus-4-1', 'claude-haiku-4-5', 'claude-3-7-sonnet-latest'],
    owner: 'anthropic',
    chatIdPrefix: 'msg_',
    error: anthropicError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  gemini: {
    name: 'gemini',
    basePath: '/v1beta/openai',
    auth: 'bearer',
    models: 'google',
    defaultModels: ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.0-flash', 'gemini-embedding-001'],
    owner: 'google',
    chatIdPrefix: '',
    error: googleError,
    wrongKey: googleKeyInvalid,
    pathBeforeKey: true,
    invalidStatus: 400,
    tokenRejected: GOOGLE_UNAUTHENTICATED,
  },
  deepseek: {
    name: 'deepseek',
    basePath: '/v1',
    auth: 'bearer',
    models: 'ownedOnly',
    defaultModels: ['deepseek-chat', 'deepseek-reasoner'],
    owner: 'deepseek',
    chatIdPrefix: '',
    error: openaiError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  perplexity: {
    name: 'perplexity',
    basePath: '',
    auth: 'bearer',
    models: 'none-json',
    defaultModels: ['sonar', 'sonar-pro', 'sonar-reasoning-pro', 'sonar-deep-research'],
    owner: 'perplexity',
    chatIdPrefix: '',
    error: perplexityError,
    pathBeforeKey: true,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  minimax: {
    name: 'minimax',
    basePath: '/v1',
    auth: 'bearer',
    models: 'none-json',
    defaultModels: ['MiniMax-M2.5', 'MiniMax-M2'],
    owner: 'minimax',
    chatIdPrefix: '',
    error: minimaxError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  openrouter: {
    name: 'openrouter',
    basePath: '/api/v1',
    auth: 'bearer',
    models: 'openrouter',
    defaultModels: [], // generated, see defaultModelIds
    owner: 'openrouter',
    chatIdPrefix: 'gen-',
    error: openrouterError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  'no-models': {
    name: 'no-models',
    basePath: '/v1',
    auth: 'bearer',
    models: 'none-text',
    defaultModels: ['local-model'],
    owner: 'local',
    chatIdPrefix: 'chatcmpl-',
    error: openaiError,
    pathBeforeKey: true,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  'github-models': {
    name: 'github-models',
    basePath: '/inference',
    auth: 'bearer',
    models: 'none-json',
    defaultModels: ['openai/gpt-4.1', 'openai/gpt-4o-mini', 'openai/text-embedding-3-small'],
    owner: 'github',
    chatIdPrefix: 'chatcmpl-',
    error: githubError,
    pathBeforeKey: false,
    invalidStatus: 400,
    tokenRejected: INVALID_TOKEN,
  },
  mistral: {
    name: 'mistral',
    basePath: '/v1',
    auth: 'bearer',
    models: 'openai',
    defaultModels: ['mistral-large-latest', 'mistral-small-latest', 'codestral-latest', 'mistral-embed'],
    owner: 'mistralai',
    chatIdPrefix: '',
    error: mistralError,
    pathBeforeKey: false,
    // FastAPI: a request body that fails validation is a 422 with pydantic's `detail` list.
    invalidStatus: 422,
    tokenRejected: INVALID_TOKEN,
  },
  // Vertex AI's OpenAI-compatible endpoint: Google Cloud access tokens only, no model list, google/ model IDs.
  vertex: {
    name: 'vertex',
    basePath: '/v1/projects/mock-project/locations/us-central1/endpoints/openapi',
    auth: 'bearer',
    models: 'none-json',
    defaultModels: ['google/gemini-2.5-flash', 'google/gemini-2.5-pro', 'google/gemini-2.0-flash-001'],
    owner: 'google',
    chatIdPrefix: '',
    error: googleError,
    pathBeforeKey: true,
    invalidStatus: 400,
    tokenRejected: GOOGLE_UNAUTHENTICATED,
  },
};

export const OPENROUTER_DEFAULT_COUNT = 5000;

/** `vendor-${i % 50}/model-${i}` for i in [0, count). */
export function generateModelIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `vendor-${i % 50}/model-${i}`);
}

export function defaultModelIds(profile: MockProfileName, modelCount?: number): string[] {
  if (modelCount !== undefined) return generateModelIds(modelCount);
  if (profile === 'openrouter') {
    const named = ['anthropic/claude-sonnet-4-5', 'google/gemini-2.5-pro', 'openai/gpt-4o'];
    return [...named, ...generateModelIds(OPENROUTER_DEFAULT_COUNT - named.length)];
  }
  return [...PROFILES[profile].defaultModels];
}
