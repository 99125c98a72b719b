import { Agent, type Dispatcher, request } from 'undici';
import { parseDuration } from '../../api/common.ts';
import { type CredentialReason, credentialKind } from '../../api/credentials.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';
import { isBlockedAddressError } from '../../net/address-policy.ts';
import { classifyNetworkError, errorCode } from '../../net/errors.ts';
import { type SafeConnectorOptions, safeConnector } from '../../net/safe-connect.ts';
import {
  credentialRecord,
  type TokenKind,
  type TokenOutcome,
  type TokenRequest,
} from '../../providers/credentials.ts';
import type { MintOutcome } from '../logic/tokens.ts';

/**
 * Obtains a connection's access token: a service account token from the TokenRequest API where the kind
 * presents one, then the identity provider's requests as its credential record says (src/providers/credentials.ts),
 * each through the address policy, with the connection's verification timeout, never following a redirect.
 */

/** A Kubernetes service account token, audience-bound and short-lived, from the TokenRequest API. */
export interface ServiceAccountTokenSource {
  request(
    namespace: string,
    serviceAccountName: string,
    audience: string,
    signal?: AbortSignal,
  ): Promise<string>;
}

/** Why the TokenRequest API gave no token, as CredentialReady's reason and message. */
export class ServiceAccountTokenError extends Error {
  readonly reason: CredentialReason;
  constructor(reason: CredentialReason, message: string) {
    super(message);
    this.name = 'ServiceAccountTokenError';
    this.reason = reason;
  }
}

export interface MintInput {
  namespace: string;
  spec: ProviderConnectionSpec;
  /** The Secret's value where the kind reads one (a client secret, a service account key JSON). */
  secret?: string;
}

export type Minter = (input: MintInput, signal?: AbortSignal) => Promise<MintOutcome>;

export interface MinterOptions {
  /** The TokenRequest API; undefined outside a cluster (standalone, plugboard verify). */
  serviceAccounts?: ServiceAccountTokenSource;
  /** How to connect (tests); default: the process's address policy and the system resolver. */
  net?: Pick<SafeConnectorOptions, 'policy' | 'resolve' | 'connect' | 'ca'>;
}

/** Identity provider answers are small; anything larger is not one. */
const MAX_BODY_BYTES = 1024 * 1024;

const AGENT_OPTIONS = { connections: 4, keepAliveTimeout: 10_000 } as const;
let sharedAgent: Agent | undefined;

const OUTSIDE_A_CLUSTER =
  'workload identity needs the operator in a cluster: there is no TokenRequest API here to get a ServiceAccount ' +
  'token from; outside a cluster use entraID.clientSecretRef or googleCloud.serviceAccountKeySecretRef';

export function tokenMinter(o: MinterOptions = {}): Minter {
  return async (input, signal) => {
    const started = performance.now();
    const done = (r: TokenOutcome): MintOutcome =>
      r.ok
        ? { ok: true, token: r.token, expiresAt: r.expiresAt, durationMs: performance.now() - started }
        : { ...r, durationMs: performance.now() - started };
    const kind = credentialKind(input.spec) as TokenKind;
    const record = credentialRecord(kind);
    const timeoutMs = parseDuration(input.spec.verification.timeout);
    let serviceAccountToken: string | undefined;
    const sa = record.serviceAccountToken?.(input.spec);
    if (sa) {
      if (!o.serviceAccounts) {
        return done({ ok: false, reason: 'WorkloadIdentityUnavailable', message: OUTSIDE_A_CLUSTER });
      }
      try {
        serviceAccountToken = await o.serviceAccounts.request(
          input.namespace,
          sa.serviceAccountName,
          sa.audience,
          signal,
        );
      } catch (err) {
        if (err instanceof ServiceAccountTokenError)
          return done({ ok: false, reason: err.reason, message: err.message });
        throw err;
      }
    }
    const own = o.net
      ? new Agent({ ...AGENT_OPTIONS, connect: safeConnector({ ...o.net, timeoutMs }) })
      : undefined;
    sharedAgent ??= new Agent({ ...AGENT_OPTIONS, connect: safeConnector({ timeoutMs: 10_000 }) });
    const dispatcher = own ?? sharedAgent;
    try {
      const first = record.first(input.spec, { serviceAccountToken, secret: input.secret, now: Date.now() });
      if (!('url' in first)) return done(first);
      const got = await send(first, dispatcher, timeoutMs, signal);
      if (!got.ok) return done(got);
      const next = record.next?.(input.spec, got.token);
      return done(next ? await send(next, dispatcher, timeoutMs, signal) : got);
    } finally {
      if (own) void own.destroy().catch(() => undefined);
    }
  };
}

/** One request to an identity provider; network failures become IdentityProviderUnavailable. */
async function send(
  r: TokenRequest,
  dispatcher: Dispatcher,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<TokenOutcome> {
  const host = new URL(r.url).host;
  const now = Date.now();
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(Object.assign(new Error('timeout'), { name: 'TimeoutError' })),
    timeoutMs,
  );
  const onAbort = () => ac.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await request(r.url, {
      method: 'POST',
      headers: r.headers,
      body: r.body,
      dispatcher,
      signal: ac.signal,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > MAX_BODY_BYTES) {
        res.body.destroy();
        return {
          ok: false,
          reason: 'InvalidTokenResponse',
          message: `${r.issuer} at ${host} answered with more than ${MAX_BODY_BYTES} bytes`,
        };
      }
      chunks.push(c as Buffer);
    }
    if (res.statusCode >= 300 && res.statusCode < 400) {
      return {
        ok: false,
        reason: 'TokenRequestRejected',
        message: `${r.issuer} at ${host} answered HTTP ${res.statusCode}, a redirect, which Plugboard never follows; set the endpoint to the address that serves tokens`,
      };
    }
    return r.read(
      { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') },
      now,
    );
  } catch (err) {
    return {
      ok: false,
      reason: 'IdentityProviderUnavailable',
      message: unreachable(r.issuer, host, err, timeoutMs),
    };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

function unreachable(issuer: string, host: string, err: unknown, timeoutMs: number): string {
  const at = `${issuer} at ${host}`;
  if (isBlockedAddressError(err)) return `cannot ask ${at}: ${err.message}`;
  switch (classifyNetworkError(err)) {
    case 'connect_timeout':
    case 'first_byte_timeout':
    case 'idle_timeout':
    case 'timeout':
      return `${at} did not answer within ${timeoutMs / 1000}s (spec.verification.timeout); retrying with backoff`;
    case 'dns':
      return `cannot resolve ${host} (${issuer}); retrying with backoff`;
    case 'refused':
      return `connection refused by ${at}; retrying with backoff`;
    case 'tls':
      return `TLS with ${at} failed (${errorCode(err) || 'handshake'}); retrying with backoff`;
    default:
      return `request to ${at} failed (${errorCode(err) || (err as Error).message || 'reset'}); retrying with backoff`;
  }
}
