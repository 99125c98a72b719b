/** Same-origin calls to the gateway: /v1/* (OpenAI API) and /api/connections. */
import type { PublicConnections } from '../snapshot/public-view.ts';
import { sseData } from './sse.ts';

export type { PublicConnection, PublicConnections } from '../snapshot/public-view.ts';

const KEY_STORAGE = 'plugboard.apiKey';

export function getApiKey(): string {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export function setApiKey(key: string): void {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** An error answer from the gateway (OpenAI error JSON), or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  constructor(status: number, message: string, type = '', code = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = type;
    this.code = code;
  }
}

async function toApiError(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { message?: string; type?: string; code?: string | number } };
    if (body.error?.message) {
      return new ApiError(
        res.status,
        body.error.message,
        body.error.type ?? '',
        String(body.error.code ?? ''),
      );
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(res.status, text.trim().slice(0, 500) || res.statusText || `HTTP ${res.status}`);
}

async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = getApiKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers });
  } catch (err) {
    if (init.signal?.aborted) throw err;
    throw new ApiError(
      0,
      'The gateway could not be reached. Check your connection and that the gateway is running.',
    );
  }
  if (!res.ok) throw await toApiError(res);
  return res;
}

export interface ModelInfo {
  id: string;
  ownedBy: string;
  /** namespace/name of the connection that serves it, when known. */
  connection: string;
  tags: string[];
}

interface WireModel {
  id: string;
  owned_by?: string;
  plugboard?: { connection?: string; namespace?: string; name?: string; tags?: string[] };
  'plugboard.connection'?: string;
  'plugboard.tags'?: string[];
}

export async function listModels(): Promise<ModelInfo[]> {
  const res = await apiFetch('/v1/models');
  const body = (await res.json()) as { data?: WireModel[] };
  return (body.data ?? []).map((m) => {
    const p = m.plugboard;
    const connection =
      p?.connection ??
      m['plugboard.connection'] ??
      (p?.namespace && p.name ? `${p.namespace}/${p.name}` : '');
    return { id: m.id, ownedBy: m.owned_by ?? '', connection, tags: p?.tags ?? m['plugboard.tags'] ?? [] };
  });
}

export async function listConnections(): Promise<PublicConnections> {
  const res = await apiFetch('/api/connections');
  return (await res.json()) as PublicConnections;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  signal: AbortSignal;
  /** Called for every delta; `reasoning` from reasoning_content (DeepSeek) or reasoning (OpenRouter). */
  onDelta(delta: { content?: string; reasoning?: string }): void;
}

interface ChunkJson {
  choices?: {
    delta?: { content?: string | null; reasoning_content?: string | null; reasoning?: string | null };
  }[];
  error?: { message?: string; type?: string; code?: string | number };
}

/** Streams a chat completion. Resolves when the stream ends; rejects with ApiError or an AbortError. */
export async function streamChat(req: ChatRequest): Promise<{ finishReason?: string }> {
  const body: Record<string, unknown> = { model: req.model, messages: req.messages, stream: true };
  if (req.temperature !== undefined) body.temperature = req.temperature;
  if (req.maxTokens !== undefined) body.max_tokens = req.maxTokens;
  const res = await apiFetch('/v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify(body),
    signal: req.signal,
  });
  if (!res.body) throw new ApiError(502, 'The gateway sent an empty answer.');
  let finishReason: string | undefined;
  try {
    for await (const data of sseData(res.body)) {
      if (data === '[DONE]') break;
      let chunk: ChunkJson & { choices?: { finish_reason?: string | null }[] };
      try {
        chunk = JSON.parse(data);
      } catch {
        continue;
      }
      if (chunk.error) {
        throw new ApiError(
          502,
          chunk.error.message ?? 'The stream failed.',
          chunk.error.type,
          String(chunk.error.code ?? ''),
        );
      }
      const choice = chunk.choices?.[0];
      const d = choice?.delta;
      const reasoning = d?.reasoning_content ?? d?.reasoning ?? undefined;
      const content = d?.content ?? undefined;
      if (reasoning || content)
        req.onDelta({ ...(content ? { content } : {}), ...(reasoning ? { reasoning } : {}) });
      if (choice?.finish_reason) finishReason = choice.finish_reason;
    }
  } catch (err) {
    if (req.signal.aborted || err instanceof ApiError) throw err;
    throw new ApiError(0, 'The connection to the gateway broke during the reply.');
  }
  return finishReason ? { finishReason } : {};
}

/**
 * Plain words for an error, naming the connection when we know which one serves the model. The gateway passes
 * an upstream's 4xx through unchanged, so a 401 is the gateway's own only when `gatewayAuth` says so (the
 * caller checks whether /v1/models is refused too).
 */
export function describeError(
  err: ApiError,
  model: string,
  connection: string,
  gatewayAuth = false,
): { title: string; detail: string } {
  const via = connection ? ` (connection ${connection})` : '';
  const detail = err.message;
  const code = err.code.toLowerCase();
  if (err.status === 0) return { title: 'Cannot reach the gateway', detail };
  if (err.status === 401 || err.status === 403) {
    if (gatewayAuth) return { title: 'The gateway needs a valid API key', detail };
    return { title: `The provider refused the request${via}`, detail: `HTTP ${err.status}: ${detail}` };
  }
  if (err.status === 404 || code === 'model_not_found') {
    return { title: `Model ${model} is not available${via}`, detail };
  }
  if (err.status === 408 || err.status === 504 || code.includes('timeout')) {
    return { title: `The provider did not answer in time${via}`, detail };
  }
  if (err.status === 429) return { title: `Rate limited${via}`, detail };
  if (err.status === 400 || err.status === 413 || err.status === 422) {
    return { title: `The request was rejected${via}`, detail };
  }
  if (err.status >= 500) return { title: `The provider failed${via}`, detail };
  return { title: `Request failed with HTTP ${err.status}${via}`, detail };
}
