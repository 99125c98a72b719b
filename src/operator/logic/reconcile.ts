import { parseDuration } from '../../api/common.ts';
import { usesAccessToken } from '../../api/credentials.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';
import type { CredentialScheme } from '../../providers/dialects.ts';
import type { Minter } from '../credentials/mint.ts';
import type { VerifyOutcome, VerifyTarget } from '../verification/verify.ts';
import {
  type ConnectionObservation,
  type ConnectionPlan,
  isVerificationDue,
  planConnection,
  rememberOutcome,
  type SecretState,
  type VerificationMemory,
  verificationFingerprint,
} from './connection-status.ts';
import { isTokenDue, rememberMint, type TokenMemory, tokenFingerprint, validToken } from './tokens.ts';

/** `verifyConnection` or a stand-in; injected so this module stays free of network code. */
export type Verifier = (target: VerifyTarget, signal?: AbortSignal) => Promise<VerifyOutcome>;

/**
 * What verification calls for a connection: its dialect, URL, key (or access token, sent exactly as the gateway
 * sends it), extra headers and timeout.
 */
export function verifyTargetOf(
  spec: ProviderConnectionSpec,
  apiKey: string | undefined,
  scheme: CredentialScheme = 'apiKey',
): VerifyTarget {
  return {
    provider: spec.provider,
    url: spec.url,
    apiKey,
    ...(scheme === 'accessToken' ? { scheme } : {}),
    azureApiVersion: spec.azure?.apiVersion,
    headers: spec.headers,
    timeoutMs: parseDuration(spec.verification.timeout),
  };
}

export interface ReconcileStep {
  plan: ConnectionPlan;
  /** The memory to keep for the next reconcile (unchanged when no verification was due). */
  memory: VerificationMemory | undefined;
  /** Set when this step called the upstream. */
  verified?: VerifyOutcome;
}

export interface TokenStep {
  /** The memory to keep (unchanged when no request was due); undefined for a connection without a token. */
  token: TokenMemory | undefined;
  /** Set when this step asked the identity provider. */
  minted?: Awaited<ReturnType<Minter>>;
}

/**
 * The access token step of a reconcile, for entraID and googleCloud connections: asks the identity provider
 * when it is due (no token yet, the identity or its Secret changed, the refresh time came, or retrying after a
 * failure); otherwise keeps what it holds. Runs before verifyIfDueAndPlan, which uses the token.
 */
export async function refreshTokenIfDue(
  o: { namespace: string; spec: ProviderConnectionSpec; secret: SecretState; token: TokenMemory | undefined },
  mint: Minter,
  signal?: AbortSignal,
  clock: () => number = Date.now,
): Promise<TokenStep> {
  const { spec, secret } = o;
  if (!usesAccessToken(spec)) return { token: undefined };
  if (!spec.enabled || !(secret.kind === 'none' || secret.kind === 'resolved')) return { token: o.token };
  const value = secret.kind === 'resolved' ? secret.value : undefined;
  const fingerprint = tokenFingerprint(spec, value);
  if (!isTokenDue(o.token, fingerprint, clock())) return { token: o.token };
  const minted = await mint(
    { namespace: o.namespace, spec, ...(value !== undefined ? { secret: value } : {}) },
    signal,
  );
  return { token: rememberMint(o.token, fingerprint, minted, clock()), minted };
}

/** The secret verification and the gateway send: the API key, or the access token while one is valid. */
export function upstreamCredential(
  spec: ProviderConnectionSpec,
  secret: SecretState,
  token: TokenMemory | undefined,
  now: number,
): { usable: boolean; value?: string; scheme: CredentialScheme; fingerprint: string } {
  const ok = spec.enabled && (secret.kind === 'none' || secret.kind === 'resolved');
  if (usesAccessToken(spec)) {
    const held = validToken(token, now);
    // The identity, not the token: a routine refresh does not make verification run again.
    return {
      usable: ok && held !== undefined,
      value: held?.value,
      scheme: 'accessToken',
      fingerprint: token?.fingerprint ?? '',
    };
  }
  const value = secret.kind === 'resolved' ? secret.value : undefined;
  return { usable: ok, value, scheme: 'apiKey', fingerprint: value ?? '' };
}

/**
 * One reconcile of a connection without the cluster I/O: verify the upstream when it is due (spec or key
 * changed, interval passed, or backing off after failures), then plan status and snapshot entry. The operator,
 * standalone mode and `plugboard verify --connect` all run exactly this (after refreshTokenIfDue).
 */
export async function verifyIfDueAndPlan(
  o: Omit<ConnectionObservation, 'now'>,
  verify: Verifier,
  signal?: AbortSignal,
  clock: () => number = Date.now,
): Promise<ReconcileStep> {
  let memory = o.memory;
  let verified: VerifyOutcome | undefined;
  const { spec } = o;
  const credential = upstreamCredential(spec, o.secret, o.token, clock());
  if (credential.usable) {
    const fingerprint = verificationFingerprint(spec, credential.fingerprint);
    if (isVerificationDue(memory, fingerprint, clock())) {
      verified = await verify(verifyTargetOf(spec, credential.value, credential.scheme), signal);
      memory = rememberOutcome(
        memory,
        fingerprint,
        verified,
        parseDuration(spec.verification.interval),
        clock(),
      );
    }
  }
  const plan = planConnection({ ...o, memory, now: new Date(clock()) });
  return { plan, memory, ...(verified ? { verified } : {}) };
}
