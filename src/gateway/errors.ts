/**
 * OpenAI-shaped errors: `{"error":{"message","type","param","code"}}`, what every OpenAI client library parses
 * into its typed exceptions. Messages name connections as `namespace/name`, never URLs or keys.
 */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    opts: {
      type?: string;
      code?: string | null;
      param?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.status = status;
    this.type = opts.type ?? defaultType(status);
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }

  toJSON(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function defaultType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'invalid_request_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'upstream_error';
  return 'invalid_request_error';
}

export const errors = {
  modelNotFound: (model: string) =>
    new GatewayError(
      404,
      `The model '${truncate(model, 256)}' does not exist or you do not have access to it.`,
      {
        code: 'model_not_found',
        param: 'model',
      },
    ),
  missingModel: () =>
    new GatewayError(400, "The request must name a model in the 'model' field.", {
      code: 'missing_model',
      param: 'model',
    }),
  badJson: (detail: string) =>
    new GatewayError(400, `The request body is not valid JSON: ${truncate(detail, 200)}`, {
      code: 'invalid_json',
    }),
  tooLarge: (limit: number) =>
    new GatewayError(413, `The request body is larger than the gateway's limit of ${formatBytes(limit)}.`, {
      code: 'request_too_large',
    }),
  unsupportedMediaType: (expected: string) =>
    new GatewayError(415, `This endpoint takes ${expected}; send a Content-Type: ${expected} header.`, {
      code: 'unsupported_media_type',
    }),
  unauthenticated: () =>
    new GatewayError(401, 'Missing or invalid API key: send Authorization: Bearer <gateway key>.', {
      code: 'invalid_api_key',
    }),
  notFound: (path: string) =>
    new GatewayError(404, `Unknown path ${truncate(path, 200)}.`, { code: 'unknown_url' }),
  busy: () =>
    new GatewayError(503, 'The gateway is holding as many request bodies as it may; retry shortly.', {
      type: 'server_error',
      code: 'server_busy',
      headers: { 'retry-after': '1' },
    }),
  unavailable: (message: string) =>
    new GatewayError(503, message, { type: 'server_error', code: 'unavailable' }),
};

export function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}
