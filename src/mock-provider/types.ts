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
  | 'github-models';

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

export interface MockProviderOptions {
  profile: MockProfileName;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** When set, requests must carry it in the profile's auth header, else that provider's 401 error JSON. */
  apiKey?: string;
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
  waitForRequest(pred: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Resolves when a matching request has abortedAt. */
  waitForAbort(pred: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Clears the recorded requests. */
  reset(): void;
  /** Closes all sockets immediately. */
  close(): Promise<void>;
}
