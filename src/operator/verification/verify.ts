import { Agent, type Dispatcher, errors, request } from 'undici';
import type { ProviderType } from '../../api/provider-connection.ts';
import { addressPolicy, checkUpstreamUrl, isBlockedAddressError } from '../../net/address-policy.ts';
import { type SafeConnectorOptions, safeConnector } from '../../net/safe-connect.ts';
import { credentialHeaders } from '../../providers/dialects.ts';
import { redactKey, upstreamErrorMessage } from '../../providers/upstream-errors.ts';

/** Condition reasons of a verification, each telling a person what to do. */
export const VerificationReasons = [
  'Verified',
  'Unauthorized',
  'Forbidden',
  'ModelsEndpointUnsupported',
  'RateLimited',
  'UpstreamError',
  'Timeout',
  'DNSError',
  'ConnectionRefused',
  'TLSError',
  'InvalidResponse',
  'BlockedAddress',
] as const;
export type VerificationReason = (typeof VerificationReasons)[number];

export interface VerifyTarget {
  provider: ProviderType;
  url: string;
  apiKey?: string;
  azureApiVersion?: string;
  headers?: Record<string, string>;
  timeoutMs: number;
}

export interface DiscoveredModel {
  id: string;
  created?: number;
  ownedBy?: string;
}

export type VerifyOutcome =
  | { ok: true; reason: 'Verified'; message: string; models: DiscoveredModel[]; durationMs: number }
  | {
      ok: false;
      reason: Exclude<VerificationReason, 'Verified'>;
      message: string;
      statusCode?: number;
      retryAfterMs?: number;
      durationMs: number;
    };

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const ANTHROPIC_MAX_PAGES = 100;

const AGENT_OPTIONS = { connections: 4, keepAliveTimeout: 10_000 } as const;
let sharedAgent: Agent | undefined;
function agent(): Agent {
  // Verification never follows redirects (undici does not by default) and keeps few idle sockets. Every
  // connection goes through the address policy (read at connect time, so the one the CLI sets applies).
  sharedAgent ??= new Agent({ ...AGENT_OPTIONS, connect: safeConnector({ timeoutMs: 10_000 }) });
  return sharedAgent;
}

/** How verification connects; omit for the process's address policy and the system resolver. */
export type VerifyNetOptions = Pick<SafeConnectorOptions, 'policy' | 'resolve' | 'connect' | 'ca'>;

/** Where and how to ask an upstream for its models, per dialect. */
export function modelsRequest(
  t: VerifyTarget,
  afterId?: string,
): { url: string; headers: Record<string, string> } {
  // Connection headers first, so they can never override the credentials.
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...t.headers,
    ...credentialHeaders(t.provider, t.apiKey, 'models'),
  };
  switch (t.provider) {
    case 'AzureOpenAI': {
      const q = new URLSearchParams({ 'api-version': t.azureApiVersion ?? '' });
      return { url: `${t.url}/openai/models?${q}`, headers };
    }
    case 'Anthropic': {
      const q = new URLSearchParams({ limit: '1000', ...(afterId ? { after_id: afterId } : {}) });
      return { url: `${t.url}/models?${q}`, headers };
    }
    default:
      return { url: `${t.url}/models`, headers };
  }
}

/** Removes the key from anything an upstream says back before it reaches status, events or logs. */
function scrub(text: string, key: string | undefined): string {
  const out = redactKey(text.replace(/\s+/g, ' ').trim(), key, '[redacted]');
  return out.length > 300 ? `${out.slice(0, 300)}...` : out;
}

function parseRetryAfter(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const secs = Number(s);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

const BLOCKED_ADVICE: Record<string, string> = {
  loopback: "point spec.url at the upstream's Service or pod address",
  'deny-cidrs':
    'point spec.url at another upstream, or ask the cluster admin to remove the range from --deny-cidrs',
  'allow-cidrs':
    'point spec.url at an upstream inside --allow-cidrs, or ask the cluster admin to add its range',
};

function networkFailure(
  err: unknown,
  host: string,
  timeoutMs: number,
): Omit<VerifyOutcome & { ok: false }, 'durationMs'> {
  if (isBlockedAddressError(err)) {
    return {
      ok: false,
      reason: 'BlockedAddress',
      message: `refused to connect: ${err.message}; ${BLOCKED_ADVICE[err.rule] ?? "this address is never allowed: point spec.url at the upstream's real address"}`,
    };
  }
  const e = err as {
    code?: string;
    name?: string;
    message?: string;
    cause?: { code?: string; message?: string };
  };
  const code = e.code ?? e.cause?.code ?? '';
  const detail = e.cause?.message ?? e.message ?? String(err);
  if (
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    err instanceof errors.HeadersTimeoutError ||
    err instanceof errors.BodyTimeoutError ||
    err instanceof errors.ConnectTimeoutError ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'ETIMEDOUT'
  ) {
    return {
      ok: false,
      reason: 'Timeout',
      message: `${host} did not answer within ${timeoutMs / 1000}s; check that it is reachable from the cluster or raise spec.verification.timeout`,
    };
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME') {
    return { ok: false, reason: 'DNSError', message: `cannot resolve host ${host}; check spec.url` };
  }
  if (code === 'ECONNREFUSED') {
    return {
      ok: false,
      reason: 'ConnectionRefused',
      message: `connection refused by ${host}; is the server running and the URL's port right?`,
    };
  }
  if (TLS_CODES.has(code) || /certificate|ssl|tls/i.test(detail)) {
    return {
      ok: false,
      reason: 'TLSError',
      message: `TLS with ${host} failed (${code || detail}); the server's certificate is not trusted or does not match the host`,
    };
  }
  return { ok: false, reason: 'UpstreamError', message: `request to ${host} failed: ${code || detail}` };
}

/** Calls the upstream's model list the way its provider expects and classifies the outcome. */
export async function verifyConnection(
  t: VerifyTarget,
  signal?: AbortSignal,
  net?: VerifyNetOptions,
): Promise<VerifyOutcome> {
  const started = performance.now();
  const host = new URL(t.url).host;
  // A dedicated agent when the caller chose how to connect (tests, `plugboard verify`), else the shared one.
  const own = net
    ? new Agent({ ...AGENT_OPTIONS, connect: safeConnector({ ...net, timeoutMs: t.timeoutMs }) })
    : undefined;
  const dispatcher: Dispatcher = own ?? agent();
  // A cleared timer rather than AbortSignal.timeout/any, which stay alive until they fire.
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(Object.assign(new Error('timeout'), { name: 'TimeoutError' })),
    t.timeoutMs,
  );
  const onAbort = () => ac.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const abort = ac.signal;
  const finish = <T extends object>(o: T) => ({ ...o, durationMs: performance.now() - started });
  const models: DiscoveredModel[] = [];
  let afterId: string | undefined;
  try {
    for (let page = 0; page < ANTHROPIC_MAX_PAGES; page++) {
      const { url, headers } = modelsRequest(t, afterId);
      const path = new URL(url).pathname;
      const res = await request(url, {
        method: 'GET',
        headers,
        signal: abort,
        dispatcher,
        headersTimeout: t.timeoutMs,
        bodyTimeout: t.timeoutMs,
      });
      const length = Number(res.headers['content-length'] ?? 0);
      if (length > MAX_BODY_BYTES) {
        res.body.destroy();
        return finish({
          ok: false as const,
          reason: 'InvalidResponse' as const,
          message: `GET ${path} returned ${length} bytes, more than the ${MAX_BODY_BYTES} allowed`,
        });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_BODY_BYTES) {
          res.body.destroy();
          return finish({
            ok: false as const,
            reason: 'InvalidResponse' as const,
            message: `GET ${path} returned more than ${MAX_BODY_BYTES} bytes`,
          });
        }
        chunks.push(chunk as Buffer);
      }
      const text = Buffer.concat(chunks).toString('utf8');
      const status = res.statusCode;
      const said = () => scrub(upstreamErrorMessage(text) ?? text, t.apiKey);
      if (status === 401) {
        return finish({
          ok: false as const,
          reason: 'Unauthorized' as const,
          statusCode: status,
          message: `the upstream rejected the API key (HTTP 401: ${said()}); put a valid key in the referenced Secret`,
        });
      }
      if (status === 403) {
        return finish({
          ok: false as const,
          reason: 'Forbidden' as const,
          statusCode: status,
          message: `the API key may not list models (HTTP 403: ${said()}); check the key's permissions or project`,
        });
      }
      if (status === 404 || status === 405) {
        return finish({
          ok: false as const,
          reason: 'ModelsEndpointUnsupported' as const,
          statusCode: status,
          message: `GET ${path} returned HTTP ${status}: this upstream does not list its models; add the model IDs you use to a ModelAllowlist`,
        });
      }
      if (status === 429) {
        const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
        return finish({
          ok: false as const,
          reason: 'RateLimited' as const,
          statusCode: status,
          retryAfterMs,
          message: `the upstream is rate limiting (HTTP 429${retryAfterMs !== undefined ? `, retry after ${Math.ceil(retryAfterMs / 1000)}s` : ''}): ${said()}`,
        });
      }
      if (status >= 300 && status < 400) {
        return finish({
          ok: false as const,
          reason: 'UpstreamError' as const,
          statusCode: status,
          message: redirectMessage(path, status, res.headers.location, t, net),
        });
      }
      if (status < 200 || status >= 300) {
        return finish({
          ok: false as const,
          reason: 'UpstreamError' as const,
          statusCode: status,
          message: `GET ${path} failed with HTTP ${status}: ${said()}`,
        });
      }
      let body: { data?: unknown; has_more?: boolean; last_id?: string };
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        const type = res.headers['content-type'] ?? 'unknown';
        return finish({
          ok: false as const,
          reason: 'InvalidResponse' as const,
          statusCode: status,
          message: `GET ${path} did not return JSON (content-type ${type}); is spec.url the API base, e.g. ending in /v1?`,
        });
      }
      if (!Array.isArray(body.data)) {
        return finish({
          ok: false as const,
          reason: 'InvalidResponse' as const,
          statusCode: status,
          message: `GET ${path} returned JSON without a "data" list of models; is spec.url the API base, e.g. ending in /v1?`,
        });
      }
      for (const m of body.data as {
        id?: unknown;
        created?: unknown;
        created_at?: unknown;
        owned_by?: unknown;
      }[]) {
        if (typeof m?.id !== 'string' || !m.id) continue;
        const created =
          typeof m.created === 'number'
            ? m.created
            : typeof m.created_at === 'string'
              ? Math.floor(Date.parse(m.created_at) / 1000) || undefined
              : undefined;
        models.push({
          id: m.id,
          ...(created !== undefined ? { created } : {}),
          ...(typeof m.owned_by === 'string' ? { ownedBy: m.owned_by } : {}),
        });
      }
      if (t.provider !== 'Anthropic' || !body.has_more || !body.last_id) break;
      afterId = body.last_id;
    }
  } catch (err) {
    return finish(networkFailure(err, host, t.timeoutMs));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    if (own) void own.destroy().catch(() => undefined);
  }
  return finish({
    ok: true as const,
    reason: 'Verified' as const,
    models,
    message: `listed ${models.length} models`,
  });
}

/** A redirect is reported, never followed: where it pointed (scrubbed) and whether that address is refused. */
function redirectMessage(
  path: string,
  status: number,
  location: string | string[] | undefined,
  t: VerifyTarget,
  net: VerifyNetOptions | undefined,
): string {
  const loc = Array.isArray(location) ? location[0] : location;
  let where = '';
  if (loc) {
    where = ` to ${scrub(loc, t.apiKey).slice(0, 200)}`;
    try {
      const target = new URL(loc, t.url).href;
      const policy = typeof net?.policy === 'function' ? net.policy() : (net?.policy ?? addressPolicy());
      const v = checkUpstreamUrl(target, policy);
      if (!v.ok && v.rule !== 'invalid-url')
        where += ` (refused: ${v.message.replace(/; Plugboard.*$/, '')})`;
    } catch {
      // an unparsable Location is reported as written
    }
  }
  return `GET ${path} answered HTTP ${status}, a redirect${where}; Plugboard never follows redirects: set spec.url to the address that serves the API`;
}
