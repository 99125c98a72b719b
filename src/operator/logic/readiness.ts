import {
  CONDITION_MODELS_DISCOVERED,
  CONDITION_READY,
  CONDITION_RESOLVED_REFS,
  CONDITION_SECRET_RESOLVED,
  CONDITION_VERIFIED,
  type ConnectionReason,
} from '../../api/conditions.ts';
import type { AllowlistReadyReason, AllowlistRefReason } from '../../api/model-allowlist.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';
import type { VerificationReason } from '../../api/verification.ts';
import { dialect } from '../../providers/dialects.ts';
import { type DesiredCondition, kubeTime } from '../runtime/conditions.ts';
import { worksWithoutList } from '../verification/verify.ts';
import type { SecretState, VerificationMemory } from './connection-status.ts';
import { type AllowlistRef, isGlob } from './exposure.ts';

/**
 * Readiness as a chain of small named checks, cert-manager's policy chains: each check reads what the operator
 * observed and either passes (undefined) or says why the object is not Ready. The first failure gives Ready its
 * reason and message; a condition that depends on an earlier check is Unknown while that check fails.
 */

type Reason = ConnectionReason | VerificationReason | AllowlistReadyReason | AllowlistRefReason;

/** Why a check failed. */
export interface CheckFailure {
  reason: Reason;
  message: string;
  /** Ready's status: False, or Unknown while it cannot be known yet. */
  status: 'False' | 'Unknown';
  /** What the conditions this check gates say while it fails (default: `message`). */
  waiting?: string;
}

export type Check<I> = (input: I) => CheckFailure | undefined;

/** The first failing check of the chain, with its position; undefined when all pass. */
export function firstFailure<I>(
  chain: readonly Check<I>[],
  input: I,
): (CheckFailure & { check: string; index: number }) | undefined {
  for (const [index, check] of chain.entries()) {
    const failure = check(input);
    if (failure) return { ...failure, check: check.name, index };
  }
  return undefined;
}

const fail = (reason: Reason, message: string, status: 'False' | 'Unknown' = 'False'): CheckFailure => ({
  reason,
  message,
  status,
});

// ---- ProviderConnection ----

/** What a connection's checks read. */
export interface ConnectionInput {
  namespace: string;
  spec: ProviderConnectionSpec;
  secret: SecretState;
  memory: VerificationMemory | undefined;
  allowlists: AllowlistRef[];
  /** Models the gateway serves for the connection. */
  exposedCount: number;
}

/** `spec.enabled` false takes the connection out of service; nothing else is checked. */
export function connectionEnabled(i: ConnectionInput): CheckFailure | undefined {
  if (i.spec.enabled) return undefined;
  return fail('Disabled', 'spec.enabled is false: the connection is out of service and not verified');
}

/** The Secret apiKeySecretRef names exists in the connection's namespace and holds the key. */
export function apiKeyResolved(i: ConnectionInput): CheckFailure | undefined {
  const s = i.secret;
  if (s.kind === 'notFound') {
    return {
      ...fail(
        'SecretNotFound',
        `Secret "${s.secretName}" was not found in namespace ${i.namespace}; create it with the API key under key "${i.spec.apiKeySecretRef?.key ?? 'apiKey'}"`,
      ),
      waiting: 'waiting for the API key',
    };
  }
  if (s.kind === 'keyMissing') {
    return {
      ...fail(
        'SecretKeyMissing',
        s.message ??
          `Secret "${s.secretName}" has no key "${s.key}"; add the API key under that key or set spec.apiKeySecretRef.key`,
      ),
      waiting: 'waiting for the API key',
    };
  }
  return undefined;
}

/** A verification has finished since the operator started. */
export function verificationRan(i: ConnectionInput): CheckFailure | undefined {
  return i.memory ? undefined : fail('Pending', 'verification has not run yet', 'Unknown');
}

/**
 * The upstream accepted the key at spec.url: its model list answered, or the probe showed that only the list is
 * missing. While it fails, the last good list (if any) keeps serving and the message says so.
 */
export function upstreamAccepts(i: ConnectionInput): CheckFailure | undefined {
  const out = i.memory?.outcome;
  if (!out || out.ok || worksWithoutList(out)) return undefined;
  return fail(out.reason, `${out.message}${staleSuffix(i.memory)}`);
}

/** The gateway serves at least one model of the connection. */
export function modelsExposed(i: ConnectionInput): CheckFailure | undefined {
  const out = i.memory?.outcome;
  if (!out || i.exposedCount > 0) return undefined;
  if (out.ok) {
    return fail(
      'NoModelsExposed',
      dialect(i.spec.provider).deployments?.noneExposed ??
        `the allowlists match none of the ${out.models.length} models the upstream lists; fix the model IDs in the ModelAllowlist`,
    );
  }
  const globs = i.allowlists.flatMap((a) => a.models.filter(isGlob));
  return fail(
    out.reason,
    globs.length > 0
      ? `${out.message}. The allowlists name only globs (${globs.slice(0, 5).join(', ')}), which need a model list to match`
      : out.message,
  );
}

/** A connection is Ready when every check passes, in this order. */
export const CONNECTION_READINESS: readonly Check<ConnectionInput>[] = [
  connectionEnabled,
  apiKeyResolved,
  verificationRan,
  upstreamAccepts,
  modelsExposed,
];

/** Above this many models and no allowlist, the operator recommends one (OpenRouter lists thousands). */
export const MANY_MODELS = 200;

function staleSuffix(mem: VerificationMemory | undefined): string {
  return mem?.lastGood
    ? `; serving the last good list of ${mem.lastGood.models.length} models verified at ${kubeTime(new Date(mem.lastGood.at))} (stale)`
    : '';
}

type Own = Omit<DesiredCondition, 'type' | 'observedGeneration'>;

const secretResolved = (i: ConnectionInput): Own =>
  i.secret.kind === 'none'
    ? {
        status: 'True',
        reason: 'NoSecretRequired',
        message: 'no apiKeySecretRef: requests carry no API key',
      }
    : {
        status: 'True',
        reason: 'SecretResolved',
        message: `API key read from Secret "${i.spec.apiKeySecretRef?.name}"`,
      };

/** The last verification; only read where verificationRan has passed. */
const lastRun = (i: ConnectionInput) => i.memory as VerificationMemory;

function verified(i: ConnectionInput): Own {
  const out = lastRun(i).outcome;
  if (out.ok) return { status: 'True', reason: 'Verified', message: `${i.spec.url}/models ${out.message}` };
  return { status: worksWithoutList(out) ? 'True' : 'False', reason: out.reason, message: out.message };
}

function modelsDiscovered(i: ConnectionInput): Own {
  const mem = lastRun(i);
  const out = mem.outcome;
  if (out.ok) {
    return i.allowlists.length === 0 && out.models.length > MANY_MODELS
      ? {
          status: 'True',
          reason: 'TooManyModels',
          message: `${out.models.length} models discovered and all exposed; add a ModelAllowlist to expose only the models you use`,
        }
      : { status: 'True', reason: 'ModelsDiscovered', message: `${out.models.length} models discovered` };
  }
  if (mem.lastGood && !worksWithoutList(out)) {
    return {
      status: 'True',
      reason: 'StaleModelList',
      message: `verification is failing (${out.reason})${staleSuffix(mem)}`,
    };
  }
  return { status: 'False', reason: out.reason, message: out.message };
}

function connectionReady(i: ConnectionInput): Own {
  const out = lastRun(i).outcome;
  if (out.ok) return { status: 'True', reason: 'Verified', message: `${i.exposedCount} models exposed` };
  // The probe checked URL and key; only the model list is missing, so the allowlists' exact IDs are served.
  return {
    status: 'True',
    reason: out.reason,
    message:
      out.reason === 'ProbeAccepted'
        ? `${i.exposedCount} allowlisted models exposed; the upstream does not list its models and answered the verification probe with success, so each verification may be billed (see Verified)`
        : `${i.exposedCount} allowlisted models exposed; the upstream does not list its models`,
  };
}

/**
 * A condition that depends on the checks before `gatedBy`: while one of them fails it is Unknown with that
 * check's reason, otherwise it says what it found itself.
 */
function gate<I>(
  type: string,
  gatedBy: number,
  failure: ReturnType<typeof firstFailure<I>>,
  own: () => Own,
  generation: number,
): DesiredCondition {
  const state: Own =
    failure && failure.index < gatedBy
      ? { status: 'Unknown', reason: failure.reason, message: failure.waiting ?? failure.message }
      : own();
  return { type, ...state, observedGeneration: generation };
}

/** An own condition from the check that decides it: False with its failure, else `passed`. */
const decidedBy = <I>(check: Check<I>, input: I, passed: () => Own): Own => {
  const f = check(input);
  return f ? { status: 'False', reason: f.reason, message: f.message } : passed();
};

const position = (check: Check<ConnectionInput>) => CONNECTION_READINESS.indexOf(check);

/** A connection's four conditions: SecretResolved, Verified and ModelsDiscovered, and Ready from the chain. */
export function connectionConditions(i: ConnectionInput, generation: number): DesiredCondition[] {
  const failure = firstFailure(CONNECTION_READINESS, i);
  const afterVerification = position(verificationRan) + 1;
  return [
    gate(
      CONDITION_SECRET_RESOLVED,
      position(apiKeyResolved),
      failure,
      () => decidedBy(apiKeyResolved, i, () => secretResolved(i)),
      generation,
    ),
    gate(CONDITION_VERIFIED, afterVerification, failure, () => verified(i), generation),
    gate(CONDITION_MODELS_DISCOVERED, afterVerification, failure, () => modelsDiscovered(i), generation),
    failure
      ? {
          type: CONDITION_READY,
          status: failure.status,
          reason: failure.reason,
          message: failure.message,
          observedGeneration: generation,
        }
      : { type: CONDITION_READY, ...connectionReady(i), observedGeneration: generation },
  ];
}

// ---- ModelAllowlist ----

/** What its connection decided for one allowlist (the connection's reconcile computes it; see ConnectionView). */
export interface AllowlistExposureView {
  /** The allowlist's generation the connection planned with. */
  generation: number | undefined;
  /** Its models the connection serves, with the connection's prefix. */
  exposedModels: string[];
  /** Its exact IDs, and globs matching nothing, that the upstream's list does not offer. */
  missingModels: string[];
  /** Its globs on an upstream without a model list: they can never match. */
  unmatchableGlobs: string[];
}

/** What an allowlist's checks read of its connection: the connection's state and what it exposes of the list. */
export interface ConnectionView {
  enabled: boolean;
  ready: Pick<DesiredCondition, 'status' | 'reason' | 'message'>;
  /** Why globs cannot match here, for GlobNeedsModelList. */
  globsUnmatchable: string;
  allowlists: Map<string, AllowlistExposureView>;
}

export interface AllowlistInput {
  namespace: string;
  connectionName: string;
  /** Undefined when no such connection exists. */
  connection: ConnectionView | undefined;
  /** What the connection exposes of this list (empty when it does not exist). */
  exposure: AllowlistExposureView;
}

/** spec.connectionRef names a connection in the allowlist's namespace. */
export function connectionExists(i: AllowlistInput): CheckFailure | undefined {
  if (i.connection) return undefined;
  return fail(
    'ConnectionNotFound',
    `ProviderConnection "${i.connectionName}" does not exist in namespace ${i.namespace}`,
  );
}

/** The connection is enabled. */
export function connectionIsEnabled(i: AllowlistInput): CheckFailure | undefined {
  if (i.connection?.enabled !== false) return undefined;
  return fail('ConnectionDisabled', `ProviderConnection "${i.connectionName}" is disabled`);
}

/** No glob of the list is on an upstream without a model list: the list's own fault, whatever the connection's state. */
export function globsCanMatch(i: AllowlistInput): CheckFailure | undefined {
  const globs = i.exposure.unmatchableGlobs;
  if (globs.length === 0) return undefined;
  const exact = i.exposure.exposedModels.length;
  return fail(
    'GlobNeedsModelList',
    `${globs.map((x) => JSON.stringify(x)).join(', ')} can never match: ${i.connection?.globsUnmatchable}; replace ${globs.length > 1 ? 'them' : 'it'} with the exact model IDs you use${exact > 0 ? ` (the ${exact} exact IDs are exposed)` : ''}`,
  );
}

/** The connection is Ready, or serves something of this list anyway (a stale list). */
export function connectionServes(i: AllowlistInput): CheckFailure | undefined {
  const ready = i.connection?.ready;
  if (!ready || ready.status === 'True' || i.exposure.exposedModels.length > 0) return undefined;
  return fail(
    'ConnectionNotReady',
    `ProviderConnection "${i.connectionName}" is not ready (${ready.reason}): ${ready.message}`,
  );
}

/** The upstream offers every listed ID, and every glob matches something. */
export function modelsPresent(i: AllowlistInput): CheckFailure | undefined {
  const missing = i.exposure.missingModels;
  if (missing.length === 0) return undefined;
  return fail(
    'ModelsMissing',
    `the upstream does not offer ${missing.length} listed model(s): ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`,
  );
}

/** An allowlist is Ready when every check passes, in this order. */
export const ALLOWLIST_READINESS: readonly Check<AllowlistInput>[] = [
  connectionExists,
  connectionIsEnabled,
  globsCanMatch,
  connectionServes,
  modelsPresent,
];

/** An allowlist's conditions: ResolvedRefs, and Ready from the chain. */
export function allowlistConditions(i: AllowlistInput, generation: number): DesiredCondition[] {
  const failure = firstFailure(ALLOWLIST_READINESS, i);
  const resolved = gate(
    CONDITION_RESOLVED_REFS,
    ALLOWLIST_READINESS.indexOf(connectionExists),
    failure,
    () =>
      decidedBy(connectionExists, i, () => ({
        status: 'True',
        reason: 'ConnectionFound',
        message: `ProviderConnection "${i.connectionName}" found`,
      })),
    generation,
  );
  const ready: DesiredCondition = failure
    ? {
        type: CONDITION_READY,
        status: failure.status,
        reason: failure.reason,
        message: failure.message,
        observedGeneration: generation,
      }
    : {
        type: CONDITION_READY,
        status: 'True',
        reason: 'ModelsExposed',
        message: `${i.exposure.exposedModels.length} models exposed`,
        observedGeneration: generation,
      };
  return [resolved, ready];
}
