/** Public types of the simulated upstream providers (see index.ts). */

export type MockProfileName =
  | 'openai'
  | 'azure'
  | 'anthropic'
  | 'gemini'
  | 'deepseek'
  | 'perplexity'
  | 'minimax'
  | 'openrouter'
  | 'no-models'
  | 'github-models'
  | 'mistral'
  | 'vertex';

export type MockFailure =
  /** `times`: fail that many requests, then recover; default forever. */
  | {
      kind: 'status';
      status: number;
      body?: string;
      contentType?: string;
      retryAfter?: string;
      times?: number;
    }
  /** Destroy the socket before the headers, or mid-stream after `afterChunks` SSE chunks. */
  | { kind: 'reset'; afterChunks?: number; times?: number }
  /** 200 with an HTML body on /models. */
  | { kind: 'non-json'; times?: number }
  /** Accept the request and never answer (until the client aborts). */
  | { kind: 'hang'; times?: number };

export type MockFailureScope = 'all' | 'models' | 'inference';

/** How a profile lists its models, or why it cannot. */
export type ModelsStyle =
  | 'openai' // {object:'list', data:[{id, object:'model', created, owned_by}]}
  | 'ownedOnly' // deepseek: {object:'list', data:[{id, object:'model', owned_by}]}
  | 'google' // gemini: {object:'list', data:[{id:'models/<id>', object:'model', owned_by}]}
  | 'openrouter' // {data:[{id, name, created, context_length, pricing, ...}]} (no `object`)
  | 'azure' // GET /openai/models?api-version= (or /openai/v1/models)
  | 'anthropic' // paginated, x-api-key + anthropic-version
  | 'none-json' // 404 with the provider's error JSON
  | 'none-text'; // 404 text/plain "404 page not found"

/**
 * The quirks of a profile that a test may override to combine them differently (e.g. Mistral's 422 on an
 * upstream without /models); every profile's defaults are the real provider's behaviour.
 */
export interface MockQuirks {
  /** How /models answers; `none-json`/`none-text` for a server that does not list its models. */
  models: ModelsStyle;
  /**
   * true: a path the server does not serve is a 404 before the key is looked at, as servers that route before
   * they authenticate do; false: a wrong key is a 401 on any path under the base.
   */
  pathBeforeKey: boolean;
  /** The status of a request body the API refuses (no messages, no model): 400, or 422 from FastAPI servers. */
  invalidStatus: 400 | 422;
}

export interface MockProviderOptions {
  profile: MockProfileName;
  /** Overrides of the profile's quirks. */
  quirks?: Partial<MockQuirks>;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** When set, requests must carry it in the profile's auth header, else that provider's 401 error JSON. */
  apiKey?: string;
  /**
   * When set, requests must carry `Authorization: Bearer <token>` with a token this accepts (undefined: valid;
   * else why not), else the provider's 401 for a bad token: an upstream behind Entra ID or Google Cloud IAM
   * (see MockIdentityProvider.accepts). Replaces apiKey.
   */
  acceptToken?: (token: string) => string | undefined;
  /** Override the profile's model IDs. */
  models?: string[];
  /** Generate this many model IDs (openrouter default 5000), `vendor-${i % 50}/model-${i}`. */
  modelCount?: number;
  /** Delay before response headers (all endpoints). */
  latencyMs?: number;
  /** Delay between streamed SSE chunks (default 0). */
  chunkDelayMs?: number;
  /** Applies to every endpoint (incl. /models) unless failureScope says otherwise. */
  failure?: MockFailure;
  failureScope?: MockFailureScope;
  /** Serve HTTPS with a freshly generated self-signed certificate. */
  tls?: boolean;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  query: Record<string, string>;
  /** Lower-cased names. */
  headers: Record<string, string>;
  /**
   * Parsed JSON for JSON bodies; for multipart `{ fields, files: {field, filename, size}[] }`; otherwise the byte
   * length as `{ bytes: n }`.
   */
  body: unknown;
  /** performance.now() when the request arrived. */
  receivedAt: number;
  /** When the response headers were written. */
  firstByteSentAt?: number;
  /** When the response finished normally. */
  closedAt?: number;
  /** When the client went away before the response finished. */
  abortedAt?: number;
}

export interface MockProvider {
  readonly profile: MockProfileName;
  /** Base URL an admin would configure, per profile. */
  readonly url: string;
  /** scheme://host:port */
  readonly origin: string;
  /** PEM, when tls. */
  readonly caCert?: string;
  readonly requests: RecordedRequest[];
  setFailure(failure: MockFailure | undefined, scope?: MockFailureScope): void;
  setModels(ids: string[]): void;
  setApiKey(key: string | undefined): void;
  setLatency(ms: number): void;
  /** The pause between streamed chunks, for requests from now on and for streams in progress. */
  setChunkDelay(ms: number): void;
  waitForRequest(pred: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Resolves when a matching request has abortedAt. */
  waitForAbort(pred: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Clears the recorded requests. */
  reset(): void;
  /** Closes all sockets immediately. */
  close(): Promise<void>;
}
