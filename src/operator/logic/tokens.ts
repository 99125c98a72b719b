import { createHash } from 'node:crypto';
import type { CredentialReason } from '../../api/credentials.ts';
import { usesAccessToken } from '../../api/credentials.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';

/**
 * When an access token is obtained and replaced, as pure functions of what happened and the time. The operator
 * holds each connection's token in memory (ConnectionController) and puts it into the routing snapshot; nothing
 * else stores it. docs/credentials.md explains the schedule.
 */

/** A token is replaced at this fraction of its lifetime, ± REFRESH_JITTER, so replicas' refreshes spread out. */
export const REFRESH_FRACTION = 0.5;
export const REFRESH_JITTER = 0.1;
/** A long-lived token is replaced at least this long before it expires. */
export const REFRESH_MARGIN_MS = 5 * 60_000;
/**
 * Failed requests are retried after 2 s, doubling, at least every minute (±20% jitter): without a valid token the
 * connection is out of service, so an identity provider that recovers is noticed within about a minute.
 */
export const RETRY_BASE_MS = 2_000;
export const RETRY_MAX_MS = 60_000;
/** The longest Retry-After an identity provider gets honoured for. */
export const RETRY_AFTER_MAX_MS = 10 * 60_000;

export interface HeldToken {
  value: string;
  issuedAt: number;
  expiresAt: number;
}

/** What the operator remembers of a connection's access token. Rebuilt by asking again after a restart. */
export interface TokenMemory {
  /** The identity the token is for: the credential's spec and the Secret's value, hashed. */
  fingerprint: string;
  /** The last token obtained for this identity; kept after it expires, to say when it did. */
  token?: HeldToken;
  /** When to ask the identity provider next. */
  refreshAt: number;
  /** Failed attempts since the last success. */
  failures: number;
  lastFailure?: { reason: CredentialReason; message: string; at: number };
}

export type MintOutcome =
  | { ok: true; token: string; expiresAt: number; durationMs: number }
  | { ok: false; reason: CredentialReason; message: string; retryAfterMs?: number; durationMs: number };

/** A change to these (and only these) asks for a new token at once and drops the old one. */
export function tokenFingerprint(spec: ProviderConnectionSpec, secret: string | undefined): string {
  return createHash('sha256')
    .update(JSON.stringify([spec.entraID ?? null, spec.googleCloud ?? null, secret ?? null]))
    .digest('hex');
}

export function isTokenDue(mem: TokenMemory | undefined, fingerprint: string, now: number): boolean {
  return !mem || mem.fingerprint !== fingerprint || now >= mem.refreshAt;
}

/** The token the gateway may send now: held and not yet expired. */
export function validToken(mem: TokenMemory | undefined, now: number): HeldToken | undefined {
  return mem?.token && mem.token.expiresAt > now ? mem.token : undefined;
}

/**
 * Remembers an attempt. A new token is replaced at REFRESH_FRACTION of its lifetime ± REFRESH_JITTER, and for
 * a token that lives longer than twice REFRESH_MARGIN_MS no later than REFRESH_MARGIN_MS before it expires. A
 * failure keeps the token of the same identity while it is valid and retries with exponential backoff, never
 * later than halfway to its expiry, so several attempts fit into what remains of its life.
 */
export function rememberMint(
  prev: TokenMemory | undefined,
  fingerprint: string,
  outcome: MintOutcome,
  now: number,
  random: () => number = Math.random,
): TokenMemory {
  if (outcome.ok) {
    const lifetime = Math.max(0, outcome.expiresAt - now);
    let delay = lifetime * (REFRESH_FRACTION + (random() * 2 - 1) * REFRESH_JITTER);
    if (lifetime > 2 * REFRESH_MARGIN_MS) delay = Math.min(delay, lifetime - REFRESH_MARGIN_MS);
    return {
      fingerprint,
      token: { value: outcome.token, issuedAt: now, expiresAt: outcome.expiresAt },
      refreshAt: now + delay,
      failures: 0,
    };
  }
  const same = prev?.fingerprint === fingerprint;
  const failures = (same ? (prev?.failures ?? 0) : 0) + 1;
  let delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (failures - 1)) * (0.8 + random() * 0.4);
  // The identity provider's Retry-After is honoured up to RETRY_AFTER_MAX_MS: a hostile or broken one must not park
  // the connection without a token for days (or overflow a timer into a 1 ms requeue loop).
  if (outcome.retryAfterMs !== undefined)
    delay = Math.max(delay, Math.min(outcome.retryAfterMs, RETRY_AFTER_MAX_MS));
  const token = same ? prev?.token : undefined;
  const remaining = token ? token.expiresAt - now : 0;
  if (remaining > 0) delay = Math.min(delay, Math.max(RETRY_BASE_MS / 2, remaining / 2));
  return {
    fingerprint,
    ...(token ? { token } : {}),
    refreshAt: now + delay,
    failures,
    lastFailure: { reason: outcome.reason, message: outcome.message, at: now },
  };
}

/**
 * When the connection must be reconciled again for its token's sake: the next attempt, or the moment the held
 * token expires (its condition changes then). Undefined for a connection without an access token.
 */
export function tokenRequeueMs(
  spec: ProviderConnectionSpec,
  mem: TokenMemory | undefined,
  now: number,
): number | undefined {
  if (!usesAccessToken(spec) || !mem) return undefined;
  const at = [mem.refreshAt, ...(validToken(mem, now) ? [(mem.token as HeldToken).expiresAt] : [])];
  return Math.max(0, Math.min(...at) - now);
}

/**
 * A token from the snapshot written before a restart, adopted while it is valid: it keeps serving, and a new one is
 * asked for at once (its age is unknown). Kept through failures only while the identity is unchanged.
 */
export function adoptToken(
  entry: { accessToken?: string; accessTokenExpiresAt?: string; credentialFingerprint?: string },
  now: number,
): TokenMemory | undefined {
  const expiresAt = entry.accessTokenExpiresAt ? Date.parse(entry.accessTokenExpiresAt) : Number.NaN;
  if (!entry.accessToken || !entry.credentialFingerprint || !(expiresAt > now)) return undefined;
  return {
    fingerprint: entry.credentialFingerprint,
    token: { value: entry.accessToken, issuedAt: now, expiresAt },
    refreshAt: now,
    failures: 0,
  };
}
