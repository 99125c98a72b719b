/**
 * The OpenAPI 3.1 description of the gateway's own API, served at `GET /openapi.json`. It describes what the
 * gateway checks and answers, no more: request bodies at the level the gateway validates them (a JSON object or
 * a multipart form naming a `model`; everything else is passed through to the upstream), the errors it writes
 * itself (OpenAI-shaped), and the upstream's answers it passes through (4xx with the upstream's status and body).
 * test/reliability/schemathesis.test.ts runs schemathesis against this document and a live gateway.
 */
import { formatBytes } from './errors.ts';

export interface OpenApiOptions {
  maxJsonBody: number;
  maxMultipartBody: number;
  /** Client keys are required: every /v1 and /api request needs a bearer token. */
  clientKeys: boolean;
}

type Obj = Record<string, unknown>;

const ERROR_SCHEMA: Obj = {
  type: 'object',
  description: 'OpenAI-shaped error, what every OpenAI client library parses into its typed exceptions.',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'param', 'code'],
      properties: {
        message: { type: 'string' },
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
        code: { type: ['string', 'null'] },
      },
    },
  },
};

const errorResponse = (description: string): Obj => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** An upstream's 4xx is passed through with its status and body (upstreams speaking OpenAI's API answer JSON). */
const PASSTHROUGH_4XX: Obj = {
  description:
    "The upstream's own 4xx answer, passed through with its status and body (e.g. 400 for parameters the " +
    'upstream rejects, 429 when every connection is rate limited).',
  content: { 'application/json': { schema: {} }, 'text/plain': { schema: { type: 'string' } } },
};

const GATEWAY_ERRORS = (opts: OpenApiOptions, extra: Record<string, Obj> = {}): Record<string, Obj> => ({
  ...(opts.clientKeys ? { '401': errorResponse('Missing or invalid gateway key (`invalid_api_key`).') } : {}),
  '503': errorResponse(
    'No routing snapshot loaded yet, client keys not loaded, or the gateway is shutting down (`unavailable`, `draining`).',
  ),
  ...extra,
});

const PROXY_ERRORS = (opts: OpenApiOptions, limit: number): Record<string, Obj> =>
  GATEWAY_ERRORS(opts, {
    '400': errorResponse(
      'Not a JSON object / not multipart, or no `model` (`invalid_json`, `missing_model`, `invalid_multipart`, ' +
        "`invalid_content_type`); or the upstream's own 400, passed through.",
    ),
    '404': errorResponse(
      "The model is not served or not allowed for this key (`model_not_found`); or the upstream's own 404.",
    ),
    '413': errorResponse(
      `The body is over the gateway's limit of ${formatBytes(limit)} (\`request_too_large\`).`,
    ),
    '4XX': PASSTHROUGH_4XX,
    '502': errorResponse(
      'Every connection serving the model failed (5xx, connect error, reset); the message names the last one ' +
        '(`upstream_error`, `upstream_unavailable`).',
    ),
    '504': errorResponse('The upstream did not answer in time (`upstream_timeout`).'),
  });

/** A request body the gateway reads: a JSON object with a string `model`; the rest goes to the upstream as is. */
const jsonBody = (description: string, properties: Obj = {}): Obj => ({
  required: true,
  content: {
    'application/json': {
      schema: {
        type: 'object',
        description,
        required: ['model'],
        properties: {
          model: { type: 'string', minLength: 1, description: 'A model ID from GET /v1/models.' },
          ...properties,
        },
        additionalProperties: true,
      },
    },
  },
});

const multipartBody = (description: string): Obj => ({
  required: true,
  content: {
    'multipart/form-data': {
      schema: {
        type: 'object',
        description,
        required: ['model', 'file'],
        properties: {
          model: { type: 'string', minLength: 1 },
          file: { type: 'string', contentMediaType: 'application/octet-stream' },
        },
        additionalProperties: true,
      },
    },
  },
});

const STREAMABLE = { stream: { type: 'boolean', description: 'Server-sent events when true.' } };
/** Server-sent events, described per event (`data: {...}` lines; the last is `data: [DONE]` where the API has one). */
const SSE = {
  'text/event-stream': {
    schema: {
      type: 'object',
      properties: { event: { type: 'string' }, data: { type: 'string' }, id: { type: 'string' } },
    },
  },
};
const JSON_ANY = { 'application/json': { schema: { type: 'object' } } };

interface ProxyOp {
  path: string;
  summary: string;
  operationId: string;
  body: Obj;
  ok: Obj;
  multipart?: boolean;
}

export function openApiDocument(opts: OpenApiOptions): Obj {
  const security = opts.clientKeys ? [{ bearer: [] }] : [];
  const proxied: ProxyOp[] = [
    {
      path: '/v1/chat/completions',
      summary: 'Chat completion (streamed with `stream: true`)',
      operationId: 'createChatCompletion',
      body: jsonBody('OpenAI chat completion request.', {
        ...STREAMABLE,
        messages: { type: 'array', items: { type: 'object' } },
      }),
      ok: { ...JSON_ANY, ...SSE },
    },
    {
      path: '/v1/completions',
      summary: 'Legacy text completion',
      operationId: 'createCompletion',
      body: jsonBody('OpenAI completion request.', STREAMABLE),
      ok: { ...JSON_ANY, ...SSE },
    },
    {
      path: '/v1/embeddings',
      summary: 'Embeddings',
      operationId: 'createEmbedding',
      body: jsonBody('OpenAI embeddings request.'),
      ok: JSON_ANY,
    },
    {
      path: '/v1/audio/speech',
      summary: 'Text to speech (audio bytes, or events with `stream_format: sse`)',
      operationId: 'createSpeech',
      body: jsonBody('OpenAI speech request.'),
      ok: {
        'audio/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } },
        ...SSE,
        ...JSON_ANY,
      },
    },
    {
      path: '/v1/images/generations',
      summary: 'Image generation',
      operationId: 'createImage',
      body: jsonBody('OpenAI image generation request.', STREAMABLE),
      ok: { ...JSON_ANY, ...SSE },
    },
    {
      path: '/v1/responses',
      summary: 'Responses API (experimental: passed through)',
      operationId: 'createResponse',
      body: jsonBody('OpenAI Responses request.', STREAMABLE),
      ok: { ...JSON_ANY, ...SSE },
    },
    {
      path: '/v1/audio/transcriptions',
      summary: 'Speech to text (streamed multipart upload)',
      operationId: 'createTranscription',
      body: multipartBody('OpenAI transcription request.'),
      ok: { ...JSON_ANY, 'text/plain': { schema: { type: 'string' } }, ...SSE },
      multipart: true,
    },
    {
      path: '/v1/audio/translations',
      summary: 'Speech to English text (streamed multipart upload)',
      operationId: 'createTranslation',
      body: multipartBody('OpenAI translation request.'),
      ok: { ...JSON_ANY, 'text/plain': { schema: { type: 'string' } } },
      multipart: true,
    },
    {
      path: '/v1/images/edits',
      summary: 'Image edit (streamed multipart upload)',
      operationId: 'createImageEdit',
      body: multipartBody('OpenAI image edit request.'),
      ok: { ...JSON_ANY, ...SSE },
      multipart: true,
    },
  ];

  const paths: Record<string, Obj> = {
    '/healthz': {
      get: {
        summary: 'Liveness',
        operationId: 'healthz',
        responses: {
          '200': {
            description: 'The process serves requests.',
            content: {
              'application/json': {
                schema: { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } },
              },
            },
          },
        },
      },
    },
    '/readyz': {
      get: {
        summary: 'Readiness, with the routing snapshot in use and its last load error',
        operationId: 'readyz',
        responses: {
          '200': { description: 'Ready.', content: { 'application/json': { schema: READYZ } } },
          '503': {
            description: 'Not ready: no snapshot yet, client keys not loaded, or draining.',
            content: { 'application/json': { schema: READYZ } },
          },
        },
      },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics',
        operationId: 'metrics',
        responses: {
          '200': {
            description: 'Text exposition format.',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      },
    },
    '/v1/models': {
      get: {
        summary: 'The models this key may use',
        operationId: 'listModels',
        security,
        responses: {
          '200': {
            description: 'OpenAI model list.',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['object', 'data'],
                  properties: {
                    object: { const: 'list' },
                    data: { type: 'array', items: { $ref: '#/components/schemas/Model' } },
                  },
                },
              },
            },
          },
          ...GATEWAY_ERRORS(opts),
        },
      },
    },
    '/v1/models/{model}': {
      get: {
        summary: 'One model (IDs may contain `/`)',
        operationId: 'retrieveModel',
        security,
        parameters: [{ name: 'model', in: 'path', required: true, schema: { type: 'string', minLength: 1 } }],
        responses: {
          '200': {
            description: 'The model.',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Model' } } },
          },
          ...GATEWAY_ERRORS(opts, {
            '400': errorResponse('The path cannot be decoded (`invalid_url`).'),
            '404': errorResponse('No such model for this key (`model_not_found`).'),
            '414': errorResponse('The model ID is over 1,000 characters (`invalid_url`).'),
          }),
        },
      },
    },
    '/api/connections': {
      get: {
        summary:
          'The connections in the routing snapshot and their status (no URLs with credentials, no keys)',
        operationId: 'listConnections',
        security,
        responses: {
          '200': { description: 'Connections.', content: { 'application/json': { schema: {} } } },
          ...GATEWAY_ERRORS(opts),
        },
      },
    },
    '/openapi.json': {
      get: {
        summary: 'This document',
        operationId: 'openapi',
        responses: { '200': { description: 'OpenAPI 3.1.', content: JSON_ANY } },
      },
    },
  };
  for (const p of proxied) {
    paths[p.path] = {
      post: {
        summary: p.summary,
        operationId: p.operationId,
        security,
        requestBody: p.body,
        responses: {
          '200': { description: "The upstream's answer, streamed through.", content: p.ok },
          ...PROXY_ERRORS(opts, p.multipart ? opts.maxMultipartBody : opts.maxJsonBody),
        },
      },
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Plugboard gateway',
      version: '1',
      description:
        'OpenAI-compatible gateway. Every error the gateway writes is `{"error":{"message","type","param","code"}}`; ' +
        "upstream 4xx answers are passed through; failures after a stream's first byte arrive as an SSE " +
        '`data: {"error":{...}}` event.',
    },
    paths,
    components: {
      schemas: { Error: ERROR_SCHEMA, Model: MODEL_SCHEMA },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A gateway client key.' } },
    },
  };
}

const MODEL_SCHEMA: Obj = {
  type: 'object',
  required: ['id', 'object'],
  properties: {
    id: { type: 'string' },
    object: { const: 'model' },
    created: { type: 'integer' },
    owned_by: { type: 'string' },
  },
};

const READYZ: Obj = {
  type: 'object',
  required: ['ready', 'snapshot'],
  properties: {
    ready: { type: 'boolean' },
    reason: { type: 'string' },
    snapshot: {
      type: 'object',
      required: ['source', 'generation', 'lastError'],
      properties: {
        source: { type: 'string' },
        generation: { type: ['integer', 'null'] },
        lastReloadAt: { type: ['string', 'null'] },
        lastError: { type: ['string', 'null'] },
        lastErrorAt: { type: ['string', 'null'] },
      },
    },
  },
};
