import { Agent, type Dispatcher, request } from 'undici';
import type { ProviderType } from '../../api/provider-connection.ts';
import { UNLISTED_BUT_WORKING, type VerificationReason } from '../../api/verification.ts';
import { addressPolicy, checkUpstreamUrl, isBlockedAddressError } from '../../net/address-policy.ts';
import { classifyNetworkError, errorCode } from '../../net/errors.ts';
import { retryAfterMs } from '../../net/retry-after.ts';
import { type SafeConnectorOptions, safeConnector } from '../../net/safe-connect.ts';
import { type CredentialScheme, credentialHeaders, dialect, PROBE_BODY } from '../../providers/dialects.ts';
import { keyRejectedIn, redactKey, upstreamErrorMessage } from '../../providers/upstream-errors.ts';

export interface VerifyTarget {
  provider: ProviderType;
  url: string;
  /** The API key, or the access token when `scheme` is accessToken (entraID, googleCloud). */
  apiKey?: string;
  /** How the dialect sends it: the key, or `Authorization: Bearer` for an access token. Default apiKey. */
  scheme?: CredentialScheme;
  azureApiVersion?: string;
  headers?: Record<string, string>;
  timeoutMs: number;
}

export interface DiscoveredModel {
  /** The ID the gateway exposes and allowlists match (before the connection's prefix). */
  id: string;
  /** The ID as the upstream listed it, when it differs from `id`; the gateway sends this one upstream. */
  upstreamId?: string;
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

/** Whether an outcome leaves the connection working without a model list (its allowlists' exact IDs). */
export function worksWithoutList(o: VerifyOutcome): boolean {
  return !o.ok && UNLISTED_BUT_WORKING.includes(o.reason);
}

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const MAX_PAGES = 100;

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
    ...credentialHeaders(t.provider, t.apiKey, 'models', t.scheme),
  };
  return { url: t.url + dialect(t.provider).models(t.azureApiVersion, afterId), headers };
}

/**
 * The verification probe for an upstream that does not list its models, per dialect: POST {@link PROBE_BODY} to
 * its chat completions path with the key as inference sends it; where the dialect has none, what a missing
 * model list says is wrong.
 */
export function probeRequest(
  t: VerifyTarget,
): { url: string; headers: Record<string, string>; body: string } | { wrongUrl: string } {
  const probe = dialect(t.provider).probe(t.azureApiVersion);
  if (!('path' in probe)) return probe;
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...t.headers,
    'content-type': 'application/json',
    ...credentialHeaders(t.provider, t.apiKey, 'inference', t.scheme),
  };
  return { url: t.url + probe.path, headers, body: PROBE_BODY };
}

/** Removes the key from anything an upstream says back before it reaches status, events or logs. */
function scrub(text: string, key: string | undefined): string {
  const out = redactKey(text.replace(/\s+/g, ' ').trim(), key, '[redacted]');
  return out.length > 300 ? `${out.slice(0, 300)}...` : out;
}

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
  const e = err as { message?: string; cause?: { message?: string } };
  const code = errorCode(err);
  const detail = e.cause?.message ?? e.message ?? String(err);
  switch (classifyNetworkError(err)) {
    case 'connect_timeout':
    case 'first_byte_timeout':
    case 'idle_timeout':
    case 'timeout':
      return {
        ok: false,
        reason: 'Timeout',
        message: `${host} did not answer within ${timeoutMs / 1000}s; check that it is reachable from the cluster or raise spec.verification.timeout`,
      };
    case 'dns':
      return { ok: false, reason: 'DNSError', message: `cannot resolve host ${host}; check spec.url` };
    case 'refused':
      return {
        ok: false,
        reason: 'ConnectionRefused',
        message: `connection refused by ${host}; is the server running and the URL's port right?`,
      };
    case 'tls':
      return {
        ok: false,
        reason: 'TLSError',
        message: `TLS with ${host} failed (${code || detail}); the server's certificate is not trusted or does not match the host`,
      };
    default:
      return { ok: false, reason: 'UpstreamError', message: `request to ${host} failed: ${code || detail}` };
  }
}

type Failure = Omit<VerifyOutcome & { ok: false }, 'durationMs'>;

/** One HTTP exchange of a verification, its body read up to MAX_BODY_BYTES. */
interface Answer {
  /** `GET /v1/models`, for messages. */
  what: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

interface Exchange {
  dispatcher: Dispatcher;
  signal: AbortSignal;
  timeoutMs: number;
}

/** Sends one request; a body over MAX_BODY_BYTES is a Failure. Network errors are thrown. */
async function exchange(
  x: Exchange,
  method: 'GET' | 'POST',
  url: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer | Failure> {
  const what = `${method} ${new URL(url).pathname}`;
  const res = await request(url, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
    signal: x.signal,
    dispatcher: x.dispatcher,
    headersTimeout: x.timeoutMs,
    bodyTimeout: x.timeoutMs,
  });
  const tooBig = (n: string) => ({
    ok: false as const,
    reason: 'InvalidResponse' as const,
    statusCode: res.statusCode,
    message: `${what} returned ${n}, more than the ${MAX_BODY_BYTES} bytes allowed`,
  });
  const length = Number(res.headers['content-length'] ?? 0);
  if (length > MAX_BODY_BYTES) {
    res.body.destroy();
    return tooBig(`${length} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      res.body.destroy();
      return tooBig('a larger body');
    }
    chunks.push(chunk as Buffer);
  }
  return { what, status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') };
}

const isFailure = (a: Answer | Failure): a is Failure => 'reason' in a;

/**
 * The answers that mean the same on the model list and on the probe: the key rejected (401, or Google's 400
 * API_KEY_INVALID), not allowed (403), rate limited (429), or a redirect. Undefined for anything else.
 */
function refusal(
  a: Answer,
  t: VerifyTarget,
  net: VerifyNetOptions | undefined,
  via = '',
): Failure | undefined {
  const said = () => scrub(upstreamErrorMessage(a.text) ?? a.text, t.apiKey);
  const to = via ? ` to ${via}` : '';
  const token = t.scheme === 'accessToken';
  if (a.status === 401 || (a.status === 400 && keyRejectedIn(a.text))) {
    return {
      ok: false,
      reason: 'Unauthorized',
      statusCode: a.status,
      message: token
        ? `the upstream rejected the access token (HTTP ${a.status}${to}: ${said()}); check that the token's scope is the resource's (entraID.scope, googleCloud.scope) and that spec.url is that resource`
        : t.apiKey
          ? `the upstream rejected the API key (HTTP ${a.status}${to}: ${said()}); put a valid key in the referenced Secret`
          : `the upstream requires an API key (HTTP ${a.status}${to}: ${said()}); put the key in a Secret and name it in spec.apiKeySecretRef`,
    };
  }
  if (a.status === 403) {
    return {
      ok: false,
      reason: 'Forbidden',
      statusCode: a.status,
      message: token
        ? `the identity may not ${via ? `call ${a.what}` : 'list models'} (HTTP 403${to}: ${said()}); grant it a role on the resource (Azure: Cognitive Services OpenAI User; Vertex AI: roles/aiplatform.user)`
        : `the API key may not ${via ? `call ${a.what}` : 'list models'} (HTTP 403${to}: ${said()}); check the key's permissions or project`,
    };
  }
  if (a.status === 429) {
    const wait = retryAfterMs(a.headers['retry-after']);
    return {
      ok: false,
      reason: 'RateLimited',
      statusCode: a.status,
      retryAfterMs: wait,
      message: `the upstream is rate limiting (HTTP 429${to}${wait !== undefined ? `, retry after ${Math.ceil(wait / 1000)}s` : ''}): ${said()}`,
    };
  }
  if (a.status >= 300 && a.status < 400) {
    return {
      ok: false,
      reason: 'UpstreamError',
      statusCode: a.status,
      message: redirectMessage(a, t, net),
    };
  }
  return undefined;
}

/**
 * Verifies an upstream without a model list, without spending tokens: it POSTs the dialect's probe (a chat
 * completion request without model and messages) with the key and reads how the upstream refuses it.
 * - 400/422: the path exists and the key passed (servers check the key first) → ModelsEndpointUnsupported.
 * - 401/403 (or Google's 400 API_KEY_INVALID), 429, a redirect: as on the model list.
 * - 404/405 on this path too: nothing at spec.url speaks the API → EndpointNotFound.
 * - 2xx: URL and key work, but the upstream may have run a completion → ProbeAccepted, which says so.
 * - anything else (5xx, another 4xx): UpstreamError.
 */
async function probeUnlisted(
  x: Exchange,
  t: VerifyTarget,
  models: Answer,
  net: VerifyNetOptions | undefined,
): Promise<Failure> {
  const listing = `${models.what} returned HTTP ${models.status}`;
  const probe = probeRequest(t);
  if ('wrongUrl' in probe) {
    return {
      ok: false,
      reason: 'EndpointNotFound',
      statusCode: models.status,
      message: `${listing}: ${probe.wrongUrl}`,
    };
  }
  const a = await exchange(x, 'POST', probe.url, probe.headers, probe.body);
  if (isFailure(a)) return a;
  const said = () => scrub(upstreamErrorMessage(a.text) ?? a.text, t.apiKey);
  const refused = refusal(a, t, net, `the verification probe ${a.what}`);
  if (refused) return refused;
  const keyWorks =
    t.scheme === 'accessToken'
      ? 'the URL and the access token work'
      : t.apiKey
        ? 'the URL and the API key work'
        : 'the URL works (no API key is sent)';
  if (a.status === 400 || a.status === 422) {
    return {
      ok: false,
      reason: 'ModelsEndpointUnsupported',
      statusCode: models.status,
      message: `${listing}: this upstream does not list its models; ${a.what} refused a request without model and messages (HTTP ${a.status}), so ${keyWorks}; add the model IDs you use to a ModelAllowlist (exact IDs: a glob needs a model list)`,
    };
  }
  if (a.status === 404 || a.status === 405) {
    return {
      ok: false,
      reason: 'EndpointNotFound',
      statusCode: a.status,
      message: `${listing} and ${a.what} returned HTTP ${a.status}: nothing at ${t.url} answers like an OpenAI-compatible API; set spec.url to the API base the provider documents (e.g. https://api.openai.com/v1, https://api.perplexity.ai)`,
    };
  }
  if (a.status >= 200 && a.status < 300) {
    return {
      ok: false,
      reason: 'ProbeAccepted',
      statusCode: a.status,
      message: `${listing}: this upstream does not list its models, and ${a.what} answered HTTP ${a.status} to a request without model and messages that it should have refused, so ${keyWorks} but the upstream may have run (and billed) a completion of at most 1 token; it is sent again every spec.verification.interval; add the model IDs you use to a ModelAllowlist`,
    };
  }
  return {
    ok: false,
    reason: 'UpstreamError',
    statusCode: a.status,
    message: `${listing}, and the verification probe ${a.what} failed with HTTP ${a.status}: ${said()}`,
  };
}

/**
 * Calls the upstream's model list the way its dialect expects and classifies the outcome. When there is no
 * model list (404/405), the dialect's probe checks the URL and the key instead (see probeUnlisted).
 */
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
  // A cleared timer rather than AbortSignal.timeout/any, which stay alive until they fire.
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(Object.assign(new Error('timeout'), { name: 'TimeoutError' })),
    t.timeoutMs,
  );
  const onAbort = () => ac.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const x: Exchange = { dispatcher: own ?? agent(), signal: ac.signal, timeoutMs: t.timeoutMs };
  const finish = (o: Failure | Omit<VerifyOutcome & { ok: true }, 'durationMs'>): VerifyOutcome =>
    ({ ...o, durationMs: performance.now() - started }) as VerifyOutcome;
  const d = dialect(t.provider);
  const models: DiscoveredModel[] = [];
  const seen = new Set<string>();
  let afterId: string | undefined;
  try {
    for (let page = 0; page < MAX_PAGES; page++) {
      const { url, headers } = modelsRequest(t, afterId);
      const a = await exchange(x, 'GET', url, headers);
      if (isFailure(a)) return finish(a);
      const refused = refusal(a, t, net);
      if (refused) return finish(refused);
      if (a.status === 404 || a.status === 405) return finish(await probeUnlisted(x, t, a, net));
      if (a.status < 200 || a.status >= 300) {
        return finish({
          ok: false,
          reason: 'UpstreamError',
          statusCode: a.status,
          message: `${a.what} failed with HTTP ${a.status}: ${scrub(upstreamErrorMessage(a.text) ?? a.text, t.apiKey)}`,
        });
      }
      let body: { data?: unknown; has_more?: boolean; last_id?: string };
      try {
        body = JSON.parse(a.text) as typeof body;
      } catch {
        const type = a.headers['content-type'] ?? 'unknown';
        return finish({
          ok: false,
          reason: 'InvalidResponse',
          statusCode: a.status,
          message: `${a.what} did not return JSON (content-type ${type}); is spec.url the API base, e.g. ending in /v1?`,
        });
      }
      if (!Array.isArray(body.data)) {
        return finish({
          ok: false,
          reason: 'InvalidResponse',
          statusCode: a.status,
          message: `${a.what} returned JSON without a "data" list of models; is spec.url the API base, e.g. ending in /v1?`,
        });
      }
      for (const m of body.data as {
        id?: unknown;
        created?: unknown;
        created_at?: unknown;
        owned_by?: unknown;
      }[]) {
        if (typeof m?.id !== 'string' || !m.id) continue;
        const id = d.exposedId(m.id);
        if (seen.has(id)) continue;
        seen.add(id);
        const created =
          typeof m.created === 'number'
            ? m.created
            : typeof m.created_at === 'string'
              ? Math.floor(Date.parse(m.created_at) / 1000) || undefined
              : undefined;
        models.push({
          id,
          ...(id !== m.id ? { upstreamId: m.id } : {}),
          ...(created !== undefined ? { created } : {}),
          ...(typeof m.owned_by === 'string' ? { ownedBy: m.owned_by } : {}),
        });
      }
      if (!d.paged || !body.has_more || !body.last_id) break;
      afterId = body.last_id;
    }
  } catch (err) {
    return finish(networkFailure(err, host, t.timeoutMs));
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    if (own) void own.destroy().catch(() => undefined);
  }
  return finish({ ok: true, reason: 'Verified', models, message: `listed ${models.length} models` });
}

/** A redirect is reported, never followed: where it pointed (scrubbed) and whether that address is refused. */
function redirectMessage(a: Answer, t: VerifyTarget, net: VerifyNetOptions | undefined): string {
  const location = a.headers.location;
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
  return `${a.what} answered HTTP ${a.status}, a redirect${where}; Plugboard never follows redirects: set spec.url to the address that serves the API`;
}
