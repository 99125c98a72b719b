import { createHash } from 'node:crypto';
import { parseDuration } from '../../api/common.ts';
import { CONDITION_STALLED } from '../../api/conditions.ts';
import type { ProviderConnectionSpec, ProviderConnectionStatus } from '../../api/provider-connection.ts';
import { STATUS_MODELS_MAX } from '../../api/provider-connection.ts';
import { dialect } from '../../providers/dialects.ts';
import type { SnapshotConnection } from '../../snapshot/schema.ts';
import { type Condition, type DesiredCondition, kubeTime, mergeConditions } from '../runtime/conditions.ts';
import { sameStatus } from '../runtime/status.ts';
import { type DiscoveredModel, type VerifyOutcome, worksWithoutList } from '../verification/verify.ts';
import { type AllowlistExposure, type AllowlistRef, computeExposure, isGlob } from './exposure.ts';

/** Above this many models and no allowlist, the operator recommends one (OpenRouter lists thousands). */
export const MANY_MODELS = 200;
const FAILURE_BACKOFF_BASE_MS = 5_000;

export type SecretState =
  | { kind: 'none' }
  | { kind: 'resolved'; apiKey: string; version: string }
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
  previousStatus: ProviderConnectionStatus | undefined;
  now: Date;
}

export interface AllowlistPlan {
  name: string;
  generation?: number;
  conditions: DesiredCondition[];
  exposedModels: string[];
  missingModels: string[];
}

export interface ConnectionPlan {
  status: ProviderConnectionStatus;
  /** True when `status` differs from the previous status and must be written. */
  statusChanged: boolean;
  snapshot: SnapshotConnection;
  allowlists: AllowlistPlan[];
  ready: DesiredCondition;
  /** Set when the many-models advice is new. */
  manyModels: boolean;
  requeueAfterMs?: number;
}

/** Changes to these (and only these) make the operator verify again at once. */
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
    if (!outcome.ok && outcome.retryAfterMs !== undefined) delay = Math.max(delay, outcome.retryAfterMs);
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

const cond = (
  type: string,
  status: DesiredCondition['status'],
  reason: string,
  message: string,
  generation: number,
): DesiredCondition => ({ type, status, reason, message, observedGeneration: generation });

function compileConditions(o: ConnectionObservation, exposedCount: number, discovered: number | undefined) {
  const g = o.generation;
  const spec = o.spec;
  if (!spec.enabled) {
    const msg = 'spec.enabled is false: the connection is out of service and not verified';
    return [
      cond('SecretResolved', 'Unknown', 'Disabled', msg, g),
      cond('Verified', 'Unknown', 'Disabled', msg, g),
      cond('ModelsDiscovered', 'Unknown', 'Disabled', msg, g),
      cond('Ready', 'False', 'Disabled', msg, g),
    ];
  }
  const s = o.secret;
  if (s.kind === 'notFound' || s.kind === 'keyMissing') {
    const reason = s.kind === 'notFound' ? 'SecretNotFound' : 'SecretKeyMissing';
    const msg =
      s.kind === 'notFound'
        ? `Secret "${s.secretName}" was not found in namespace ${o.namespace}; create it with the API key under key "${spec.apiKeySecretRef?.key ?? 'apiKey'}"`
        : (s.message ??
          `Secret "${s.secretName}" has no key "${s.key}"; add the API key under that key or set spec.apiKeySecretRef.key`);
    return [
      cond('SecretResolved', 'False', reason, msg, g),
      cond('Verified', 'Unknown', reason, 'waiting for the API key', g),
      cond('ModelsDiscovered', 'Unknown', reason, 'waiting for the API key', g),
      cond('Ready', 'False', reason, msg, g),
    ];
  }
  const secretCond =
    s.kind === 'none'
      ? cond('SecretResolved', 'True', 'NoSecretRequired', 'no apiKeySecretRef: requests carry no API key', g)
      : cond(
          'SecretResolved',
          'True',
          'SecretResolved',
          `API key read from Secret "${spec.apiKeySecretRef?.name}"`,
          g,
        );
  const mem = o.memory;
  if (!mem) {
    const msg = 'verification has not run yet';
    return [
      secretCond,
      cond('Verified', 'Unknown', 'Pending', msg, g),
      cond('ModelsDiscovered', 'Unknown', 'Pending', msg, g),
      cond('Ready', 'Unknown', 'Pending', msg, g),
    ];
  }
  const out = mem.outcome;
  const noneMsg =
    dialect(o.spec.provider).deployments?.noneExposed ??
    `the allowlists match none of the ${discovered ?? 0} models the upstream lists; fix the model IDs in the ModelAllowlist`;
  if (out.ok) {
    const many = o.allowlists.length === 0 && out.models.length > MANY_MODELS;
    return [
      secretCond,
      cond('Verified', 'True', 'Verified', `${spec.url}/models ${out.message}`, g),
      many
        ? cond(
            'ModelsDiscovered',
            'True',
            'TooManyModels',
            `${out.models.length} models discovered and all exposed; add a ModelAllowlist to expose only the models you use`,
            g,
          )
        : cond('ModelsDiscovered', 'True', 'ModelsDiscovered', `${out.models.length} models discovered`, g),
      exposedCount > 0
        ? cond('Ready', 'True', 'Verified', `${exposedCount} models exposed`, g)
        : cond('Ready', 'False', 'NoModelsExposed', noneMsg, g),
    ];
  }
  if (worksWithoutList(out)) {
    // The probe checked URL and key; only the model list is missing, so the allowlists' exact IDs are served.
    const globs = o.allowlists.flatMap((a) => a.models.filter(isGlob));
    const served =
      out.reason === 'ProbeAccepted'
        ? `${exposedCount} allowlisted models exposed; the upstream does not list its models and answered the verification probe with success, so each verification may be billed (see Verified)`
        : `${exposedCount} allowlisted models exposed; the upstream does not list its models`;
    const none =
      globs.length > 0
        ? `${out.message}. The allowlists name only globs (${globs.slice(0, 5).join(', ')}), which need a model list to match`
        : out.message;
    return [
      secretCond,
      cond('Verified', 'True', out.reason, out.message, g),
      cond('ModelsDiscovered', 'False', out.reason, out.message, g),
      exposedCount > 0
        ? cond('Ready', 'True', out.reason, served, g)
        : cond('Ready', 'False', out.reason, none, g),
    ];
  }
  const stale = mem.lastGood
    ? `; serving the last good list of ${mem.lastGood.models.length} models verified at ${kubeTime(new Date(mem.lastGood.at))} (stale)`
    : '';
  return [
    secretCond,
    cond('Verified', 'False', out.reason, out.message, g),
    mem.lastGood
      ? cond(
          'ModelsDiscovered',
          'True',
          'StaleModelList',
          `verification is failing (${out.reason})${stale}`,
          g,
        )
      : cond('ModelsDiscovered', 'False', out.reason, out.message, g),
    cond('Ready', 'False', out.reason, `${out.message}${stale}`, g),
  ];
}

function snapshotTimeouts(spec: ProviderConnectionSpec) {
  return {
    connectMs: parseDuration(spec.timeouts.connect),
    firstByteMs: parseDuration(spec.timeouts.firstByte),
    idleMs: parseDuration(spec.timeouts.idle),
    totalMs: parseDuration(spec.timeouts.total),
  };
}

/** Pure: from what the operator observed, the status to write, the snapshot entry and the allowlist statuses. */
export function planConnection(o: ConnectionObservation): ConnectionPlan {
  const { spec, memory: mem, now } = o;
  const usable = spec.enabled && (o.secret.kind === 'none' || o.secret.kind === 'resolved');
  const out = mem?.outcome;
  const discovered = out?.ok ? out.models : mem?.lastGood?.models;
  const exposure = usable && mem ? computeExposure(spec.provider, discovered, o.allowlists) : undefined;
  // Without any successful listing and no allowlist fallback, nothing is exposed (an unknown upstream).
  const unlisted =
    dialect(spec.provider).deployments !== undefined || (out !== undefined && worksWithoutList(out));
  const exposedModels = exposure && (discovered !== undefined || unlisted) ? exposure.exposed : [];
  const desired = compileConditions(o, exposedModels.length, discovered?.length);
  // Stalled (InvalidSpec) describes a generation the operator refused; a generation it plans for is not stalled.
  const previous = (o.previousStatus?.conditions as Condition[] | undefined)?.filter(
    (c) => c.type !== CONDITION_STALLED,
  );
  const conditions = mergeConditions(previous, desired, now);
  const ready = desired.find((c) => c.type === 'Ready') as DesiredCondition;

  const prefix = spec.modelPrefix ? `${spec.modelPrefix}.` : '';
  const exposedIds = exposedModels.map((m) => prefix + m.id);
  const prev = o.previousStatus;
  const base: ProviderConnectionStatus = {
    observedGeneration: o.generation,
    conditions,
    models: exposedIds.slice(0, STATUS_MODELS_MAX),
    exposedModelCount: exposedIds.length,
    ...(discovered !== undefined ? { discoveredModelCount: discovered.length } : {}),
  };
  // lastVerifiedTime moves only together with another change, so a steady state makes no status writes.
  const lastSuccess = mem?.lastGood?.at;
  const withTime = (t: string | undefined) => (t ? { ...base, lastVerifiedTime: t } : base);
  const unchanged = withTime(prev?.lastVerifiedTime);
  const statusChanged = !sameStatus(unchanged, prev);
  const status = statusChanged
    ? withTime(lastSuccess ? kubeTime(new Date(lastSuccess)) : prev?.lastVerifiedTime)
    : prev;

  const verified = desired.find((c) => c.type === 'Verified') as DesiredCondition;
  const snapshot: SnapshotConnection = {
    namespace: o.namespace,
    name: o.name,
    provider: spec.provider,
    url: spec.url,
    ...(o.secret.kind === 'resolved' && spec.enabled ? { apiKey: o.secret.apiKey } : {}),
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

  const served = new Set(exposedModels.map((m) => m.id));
  const allowlists = o.allowlists.map((a) =>
    planAllowlist(o, a, exposure?.perAllowlist.get(a.name), served, unlisted, ready, prefix),
  );
  const prevMany = prev?.conditions?.some(
    (c) => c.type === 'ModelsDiscovered' && c.reason === 'TooManyModels',
  );
  const manyModels = !prevMany && desired.some((c) => c.reason === 'TooManyModels');

  let requeueAfterMs: number | undefined;
  if (spec.enabled && usable && mem) requeueAfterMs = Math.max(0, mem.nextDueAt - now.getTime());
  else if (spec.enabled) requeueAfterMs = parseDuration(spec.verification.interval);

  return {
    status: status as ProviderConnectionStatus,
    statusChanged,
    snapshot,
    allowlists,
    ready,
    manyModels,
    requeueAfterMs,
  };
}

function planAllowlist(
  o: ConnectionObservation,
  a: AllowlistRef,
  own: AllowlistExposure | undefined,
  served: Set<string>,
  unlisted: boolean,
  connReady: DesiredCondition,
  prefix: string,
): AllowlistPlan {
  const g = a.generation ?? 0;
  const resolved = cond('ResolvedRefs', 'True', 'ConnectionFound', `ProviderConnection "${o.name}" found`, g);
  // Only what the connection really serves: nothing while it has never been verified.
  const exposedModels = (own?.exposed ?? []).filter((id) => served.has(id)).map((id) => prefix + id);
  const missingModels = own?.missing ?? [];
  const globs = unlisted ? (own?.unmatchable ?? []) : [];
  let ready: DesiredCondition;
  if (!o.spec.enabled) {
    ready = cond('Ready', 'False', 'ConnectionDisabled', `ProviderConnection "${o.name}" is disabled`, g);
  } else if (globs.length > 0) {
    // The list's own fault whatever the connection's state: there is no model list for a glob to match.
    const why =
      dialect(o.spec.provider).deployments?.globsUnmatchable ??
      `the upstream does not list its models (${connReady.reason})`;
    ready = cond(
      'Ready',
      'False',
      'GlobNeedsModelList',
      `${globs.map((x) => JSON.stringify(x)).join(', ')} can never match: ${why}; replace ${globs.length > 1 ? 'them' : 'it'} with the exact model IDs you use${exposedModels.length > 0 ? ` (the ${exposedModels.length} exact IDs are exposed)` : ''}`,
      g,
    );
  } else if (connReady.status !== 'True' && exposedModels.length === 0) {
    ready = cond(
      'Ready',
      'False',
      'ConnectionNotReady',
      `ProviderConnection "${o.name}" is not ready (${connReady.reason}): ${connReady.message}`,
      g,
    );
  } else if (missingModels.length > 0) {
    const shown = missingModels.slice(0, 10).join(', ');
    ready = cond(
      'Ready',
      'False',
      'ModelsMissing',
      `the upstream does not offer ${missingModels.length} listed model(s): ${shown}${missingModels.length > 10 ? ', ...' : ''}`,
      g,
    );
  } else {
    ready = cond('Ready', 'True', 'ModelsExposed', `${exposedModels.length} models exposed`, g);
  }
  return {
    name: a.name,
    generation: a.generation,
    conditions: [resolved, ready],
    exposedModels,
    missingModels,
  };
}
