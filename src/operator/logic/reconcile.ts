import { parseDuration } from '../../api/common.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';
import type { VerifyOutcome, VerifyTarget } from '../verification/verify.ts';
import {
  type ConnectionObservation,
  type ConnectionPlan,
  isVerificationDue,
  planConnection,
  rememberOutcome,
  type VerificationMemory,
  verificationFingerprint,
} from './connection-status.ts';

/** `verifyConnection` or a stand-in; injected so this module stays free of network code. */
export type Verifier = (target: VerifyTarget, signal?: AbortSignal) => Promise<VerifyOutcome>;

/** What verification calls for a connection: its dialect, URL, key, extra headers and timeout. */
export function verifyTargetOf(spec: ProviderConnectionSpec, apiKey: string | undefined): VerifyTarget {
  return {
    provider: spec.provider,
    url: spec.url,
    apiKey,
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

/**
 * One reconcile of a connection without the cluster I/O: verify the upstream when it is due (spec or key
 * changed, interval passed, or backing off after failures), then plan status and snapshot entry. The operator,
 * standalone mode and `plugboard verify --connect` all run exactly this.
 */
export async function verifyIfDueAndPlan(
  o: Omit<ConnectionObservation, 'now'>,
  verify: Verifier,
  signal?: AbortSignal,
  clock: () => number = Date.now,
): Promise<ReconcileStep> {
  let memory = o.memory;
  let verified: VerifyOutcome | undefined;
  const { spec, secret } = o;
  if (spec.enabled && (secret.kind === 'none' || secret.kind === 'resolved')) {
    const apiKey = secret.kind === 'resolved' ? secret.apiKey : undefined;
    const fingerprint = verificationFingerprint(spec, apiKey);
    if (isVerificationDue(memory, fingerprint, clock())) {
      verified = await verify(verifyTargetOf(spec, apiKey), signal);
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
