import { createHash } from 'node:crypto';
import { parseDuration } from '../../api/common.ts';
import {
  CONDITION_CREDENTIAL_READY,
  CONDITION_MODELS_DISCOVERED,
  CONDITION_READY,
  CONDITION_STALLED,
  CONDITION_VERIFIED,
} from '../../api/conditions.ts';
import { credentialKind, usesAccessToken } from '../../api/credentials.ts';
import type { ProviderConnectionSpec, ProviderConnectionStatus } from '../../api/provider-connection.ts';
import { STATUS_MODELS_MAX } from '../../api/provider-connection.ts';
import { dialect } from '../../providers/dialects.ts';
import type { SnapshotConnection } from '../../snapshot/schema.ts';
import { type Condition, type DesiredCondition, kubeTime, mergeConditions } from '../runtime/conditions.ts';
import { sameStatus } from '../runtime/status.ts';
import { type DiscoveredModel, type VerifyOutcome, worksWithoutList } from '../verification/verify.ts';
import { type AllowlistRef, computeExposure } from './exposure.ts';
import { type ConnectionView, connectionConditions } from './readiness.ts';
import { type TokenMemory, tokenRequeueMs, validToken } from './tokens.ts';

const FAILURE_BACKOFF_BASE_MS = 5_000;

export type SecretState =
  | { kind: 'none' }
  /** `value`: the API key, client secret or service account key JSON the credential names. */
  | { kind: 'resolved'; value: string; version: string }
  | { kind: 'notFound'; secretName: string }
  /** `message` replaces the default advice when the key is missing for another reason (standalone: an unset env var). */
  | { kind: 'keyMissing'; secretName: string; key: string; message?: string };

/** What the operator remembers of a connection's last verification; rebuilt by verifying again after a restart. */
export interface VerificationMemory {
  fingerprint: string;
  outcome: VerifyOutcome;
  checkedAt: number;
  nextDueAt: number;
  consecutiveFailures: number;
  lastGood?: { models: DiscoveredModel[]; at: number };
}

export interface ConnectionObservation {
  namespace: string;
  name: string;
  generation: number;
  spec: ProviderConnectionSpec;
  secret: SecretState;
  allowlists: AllowlistRef[];
  memory: VerificationMemory | undefined;
  /** entraID and googleCloud: the access token held (refreshTokenIfDue). */
  token?: TokenMemory | undefined;
  previousStatus: ProviderConnectionStatus | undefined;
  now: Date;
}

export interface ConnectionPlan {
  status: ProviderConnectionStatus;
  /** True when `status` differs from the previous status and must be written. */
  statusChanged: boolean;
  snapshot: SnapshotConnection;
  /** What the connection decided for its allowlists: their status is planned from it (allowlist-status.ts). */
  view: ConnectionView;
  ready: DesiredCondition;
  /** Set when the many-models advice is new. */
  manyModels: boolean;
  requeueAfterMs?: number;
}

/**
 * Changes to these (and only these) make the operator verify again at once. `apiKey`: the key, or for an access
 * token the identity it is for (a routine refresh of the token is not a change).
 */
export function verificationFingerprint(spec: ProviderConnectionSpec, apiKey: string | undefined): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        spec.provider,
        spec.url,
        spec.azure?.apiVersion,
        spec.headers ?? {},
        spec.verification.timeout,
        apiKey ?? '',
      ]),
    )
    .digest('hex');
}

export function isVerificationDue(
  mem: VerificationMemory | undefined,
  fingerprint: string,
  now: number,
): boolean {
  return !mem || mem.fingerprint !== fingerprint || now >= mem.nextDueAt;
}

/** Records a verification outcome and when the next one is due: interval with jitter, or backoff while failing. */
export function rememberOutcome(
  prev: VerificationMemory | undefined,
  fingerprint: string,
  outcome: VerifyOutcome,
  intervalMs: number,
  now: number,
): VerificationMemory {
  const jittered = (ms: number) => ms * (0.9 + Math.random() * 0.2);
  const healthy = outcome.ok || worksWithoutList(outcome);
  const failures = healthy ? 0 : (prev?.consecutiveFailures ?? 0) + 1;
  let delay = jittered(intervalMs);
  if (!healthy) {
    delay = Math.min(intervalMs, jittered(FAILURE_BACKOFF_BASE_MS * 2 ** (failures - 1)));
    // An upstream's Retry-After is honoured up to the verification interval, never beyond it.
    if (!outcome.ok && outcome.retryAfterMs !== undefined)
      delay = Math.max(delay, Math.min(outcome.retryAfterMs, intervalMs));
  }
  return {
    fingerprint,
    outcome,
    checkedAt: now,
    nextDueAt: now + delay,
    consecutiveFailures: failures,
    lastGood: outcome.ok ? { models: outcome.models, at: now } : prev?.lastGood,
  };
}

function snapshotTimeouts(spec: ProviderConnectionSpec) {
  return {
    connectMs: parseDuration(spec.timeouts.connect),
    firstByteMs: parseDuration(spec.timeouts.firstByte),
    idleMs: parseDuration(spec.timeouts.idle),
    totalMs: parseDuration(spec.timeouts.total),
  };
}

/**
 * Pure: from what the operator observed, the status to write, the snapshot entry, and what the connection
 * decided for its allowlists (their status is planned from that, by the allowlist controller).
 */
export function planConnection(o: ConnectionObservation): ConnectionPlan {
  const { spec, memory: mem, now } = o;
  const tokens = usesAccessToken(spec);
  const token = tokens ? validToken(o.token, now.getTime()) : undefined;
  const usable =
    spec.enabled &&
    (o.secret.kind === 'none' || o.secret.kind === 'resolved') &&
    (!tokens || token !== undefined);
  const out = mem?.outcome;
  const discovered = out?.ok ? out.models : mem?.lastGood?.models;
  const exposure = usable && mem ? computeExposure(spec.provider, discovered, o.allowlists) : undefined;
  // Without any successful listing and no allowlist fallback, nothing is exposed (an unknown upstream).
  const unlisted =
    dialect(spec.provider).deployments !== undefined || (out !== undefined && worksWithoutList(out));
  const matched = exposure !== undefined && (discovered !== undefined || unlisted);
  const exposedModels = matched ? exposure.exposed : [];
  const desired = connectionConditions({ ...o, exposedCount: exposedModels.length }, o.generation);
  // Stalled (InvalidSpec) describes a generation the operator refused; a generation it plans for is not stalled.
  // CredentialReady belongs to connections with an access token only.
  const previous = (o.previousStatus?.conditions as Condition[] | undefined)?.filter(
    (c) => c.type !== CONDITION_STALLED && (tokens || c.type !== CONDITION_CREDENTIAL_READY),
  );
  const conditions = mergeConditions(previous, desired, now);
  const ready = desired.find((c) => c.type === CONDITION_READY) as DesiredCondition;

  const prefix = spec.modelPrefix ? `${spec.modelPrefix}.` : '';
  const exposedIds = exposedModels.map((m) => prefix + m.id);
  const prev = o.previousStatus;
  const base: ProviderConnectionStatus = {
    observedGeneration: o.generation,
    conditions,
    models: exposedIds.slice(0, STATUS_MODELS_MAX),
    exposedModelCount: exposedIds.length,
    ...(discovered !== undefined ? { discoveredModelCount: discovered.length } : {}),
    ...(tokens && o.token?.token ? { credentialExpiresAt: kubeTime(new Date(o.token.token.expiresAt)) } : {}),
  };
  // lastVerifiedTime moves only together with another change, so a steady state makes no status writes.
  const lastSuccess = mem?.lastGood?.at;
  const withTime = (t: string | undefined) => (t ? { ...base, lastVerifiedTime: t } : base);
  const unchanged = withTime(prev?.lastVerifiedTime);
  const statusChanged = !sameStatus(unchanged, prev);
  const status = statusChanged
    ? withTime(lastSuccess ? kubeTime(new Date(lastSuccess)) : prev?.lastVerifiedTime)
    : prev;

  const verified = desired.find((c) => c.type === CONDITION_VERIFIED) as DesiredCondition;
  const snapshot: SnapshotConnection = {
    namespace: o.namespace,
    name: o.name,
    provider: spec.provider,
    url: spec.url,
    // The API key, or the access token; never another Secret's value (a client secret, a service account key).
    ...(credentialKind(spec) === 'apiKey' && o.secret.kind === 'resolved' && spec.enabled
      ? { apiKey: o.secret.value }
      : {}),
    ...(token && usable
      ? {
          accessToken: token.value,
          accessTokenExpiresAt: new Date(token.expiresAt).toISOString(),
          credentialFingerprint: (o.token as TokenMemory).fingerprint,
        }
      : {}),
    ...(spec.azure ? { azureApiVersion: spec.azure.apiVersion } : {}),
    headers: spec.headers ?? {},
    dropParams: spec.dropParams ?? [],
    ...(spec.modelPrefix ? { modelPrefix: spec.modelPrefix } : {}),
    tags: spec.tags ?? [],
    timeouts: snapshotTimeouts(spec),
    serving: usable && exposedModels.length > 0,
    status: {
      ready: { status: ready.status, reason: ready.reason, message: ready.message },
      verified: { status: verified.status, reason: verified.reason, message: verified.message },
      ...(lastSuccess ? { lastVerifiedTime: kubeTime(new Date(lastSuccess)) } : {}),
      ...(discovered !== undefined ? { discoveredModelCount: discovered.length } : {}),
    },
    models: usable
      ? exposedModels.map((m) => ({
          id: prefix + m.id,
          upstreamId: m.upstreamId ?? m.id,
          ...(m.created !== undefined ? { created: m.created } : {}),
          ...(m.ownedBy !== undefined ? { ownedBy: m.ownedBy } : {}),
        }))
      : [],
  };

  const view: ConnectionView = {
    enabled: spec.enabled,
    ready,
    globsUnmatchable:
      dialect(spec.provider).deployments?.globsUnmatchable ??
      `the upstream does not list its models (${ready.reason})`,
    allowlists: new Map(
      o.allowlists.map((a) => {
        const own = exposure?.perAllowlist.get(a.name);
        return [
          a.name,
          {
            generation: a.generation,
            // Only what the connection really serves: nothing while it has never been verified.
            exposedModels: matched ? (own?.exposed ?? []).map((id) => prefix + id) : [],
            missingModels: own?.missing ?? [],
            unmatchableGlobs: unlisted ? (own?.unmatchable ?? []) : [],
          },
        ];
      }),
    ),
  };
  const prevMany = prev?.conditions?.some(
    (c) => c.type === CONDITION_MODELS_DISCOVERED && c.reason === 'TooManyModels',
  );
  const manyModels = !prevMany && desired.some((c) => c.reason === 'TooManyModels');

  let requeueAfterMs: number | undefined;
  if (spec.enabled && usable && mem) requeueAfterMs = Math.max(0, mem.nextDueAt - now.getTime());
  else if (spec.enabled) requeueAfterMs = parseDuration(spec.verification.interval);
  // The next token refresh (or retry), or the moment the token expires, if sooner; not while the Secret it needs
  // is missing (its change reconciles the connection).
  const secretOk = o.secret.kind === 'none' || o.secret.kind === 'resolved';
  const tokenDue = spec.enabled && secretOk ? tokenRequeueMs(spec, o.token, now.getTime()) : undefined;
  if (tokenDue !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? tokenDue, tokenDue);

  return {
    status: status as ProviderConnectionStatus,
    statusChanged,
    snapshot,
    view,
    ready,
    manyModels,
    requeueAfterMs,
  };
}
