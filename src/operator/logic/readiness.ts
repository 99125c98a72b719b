import {
  CONDITION_CREDENTIAL_READY,
  CONDITION_MODELS_DISCOVERED,
  CONDITION_READY,
  CONDITION_RESOLVED_REFS,
  CONDITION_SECRET_RESOLVED,
  CONDITION_VERIFIED,
  type ConnectionReason,
} from '../../api/conditions.ts';
import {
  type CredentialKind,
  type CredentialReason,
  credentialKind,
  credentialSecretRef,
  usesAccessToken,
} from '../../api/credentials.ts';
import { isGlob } from '../../api/glob.ts';
import type { AllowlistReadyReason, AllowlistRefReason } from '../../api/model-allowlist.ts';
import type { ProviderConnectionSpec } from '../../api/provider-connection.ts';
import type { VerificationReason } from '../../api/verification.ts';
import { credentialRecord, type TokenKind } from '../../providers/credentials.ts';
import { dialect } from '../../providers/dialects.ts';
import { type DesiredCondition, kubeTime } from '../runtime/conditions.ts';
import { worksWithoutList } from '../verification/verify.ts';
import type { SecretState, VerificationMemory } from './connection-status.ts';
import type { AllowlistRef } from './exposure.ts';
import { type TokenMemory, validToken } from './tokens.ts';

/**
 * Readiness as a chain of small named checks, as cert-manager's policy chains: each check reads what was
 * observed and passes (undefined) or says why the object is not Ready. The first failure gives Ready its reason
 * and message; a condition that depends on an earlier check is Unknown with that check's reason while it fails.
 */

type Reason =
  | ConnectionReason
  | VerificationReason
  | CredentialReason
  | AllowlistReadyReason
  | AllowlistRefReason;
type State = Pick<DesiredCondition, 'status' | 'reason' | 'message'>;

/** Why a check failed: Ready's status (False, or Unknown while it cannot be known yet), reason and message. */
export interface CheckFailure extends State {
  reason: Reason;
  status: 'False' | 'Unknown';
  /** What the conditions this check gates say while it fails (default: `message`). */
  waiting?: string;
}

export type Check<I> = (input: I) => CheckFailure | undefined;
type Failure = CheckFailure & { check: string; index: number };

/** The first failing check of the chain, with its name and position; undefined when all pass. */
export function firstFailure<I>(chain: readonly Check<I>[], input: I): Failure | undefined {
  for (const [index, check] of chain.entries()) {
    const f = check(input);
    if (f) return { ...f, check: check.name, index };
  }
  return undefined;
}

const state = (status: State['status'], reason: string, message: string): State => ({
  status,
  reason,
  message,
});
const fail = (reason: Reason, message: string, status: 'False' | 'Unknown' = 'False'): CheckFailure => ({
  status,
  reason,
  message,
});

/**
 * A condition that depends on the checks before position `gatedBy`: Unknown with the reason of the one that
 * fails, else what `own` finds.
 */
function gated(type: string, gatedBy: number, f: Failure | undefined, own: () => State, g: number) {
  const s = f && f.index < gatedBy ? state('Unknown', f.reason, f.waiting ?? f.message) : own();
  return { type, ...s, observedGeneration: g };
}

/** A condition decided by one check: False with its failure, else `passed`. */
function decidedBy<I>(check: Check<I>, input: I, passed: () => State): State {
  const f = check(input);
  return f ? state('False', f.reason, f.message) : passed();
}

/** Ready: the first failure, else `passed`. */
const ready = (f: Failure | undefined, passed: () => State, g: number): DesiredCondition => ({
  type: CONDITION_READY,
  ...(f ? state(f.status, f.reason, f.message) : passed()),
  observedGeneration: g,
});

// ---- ProviderConnection ----

export interface ConnectionInput {
  namespace: string;
  spec: ProviderConnectionSpec;
  secret: SecretState;
  memory: VerificationMemory | undefined;
  allowlists: AllowlistRef[];
  /** Models the gateway serves for the connection. */
  exposedCount: number;
  /** entraID and googleCloud: the access token held, and the time it is judged at. */
  token?: TokenMemory | undefined;
  now?: Date;
}

/** `spec.enabled` false takes the connection out of service; nothing else is checked. */
export function connectionEnabled(i: ConnectionInput): CheckFailure | undefined {
  if (i.spec.enabled) return undefined;
  return fail('Disabled', 'spec.enabled is false: the connection is out of service and not verified');
}

/** The Secret the credential names exists in the connection's namespace and holds the key. */
export function apiKeyResolved(i: ConnectionInput): CheckFailure | undefined {
  const s = i.secret;
  if (s.kind !== 'notFound' && s.kind !== 'keyMissing') return undefined;
  const ref = credentialSecretRef(i.spec);
  const holds = ref?.holds ?? 'the API key';
  const message =
    s.kind === 'notFound'
      ? `Secret "${s.secretName}" was not found in namespace ${i.namespace}; create it with ${holds} under key "${ref?.key ?? 'apiKey'}"`
      : (s.message ??
        `Secret "${s.secretName}" has no key "${s.key}"; add ${holds} under that key or set spec.${ref?.field ?? 'apiKeySecretRef'}.key`);
  const reason = s.kind === 'notFound' ? 'SecretNotFound' : 'SecretKeyMissing';
  return { ...fail(reason, message), waiting: `waiting for ${holds}` };
}

/**
 * entraID and googleCloud: the operator holds an access token that has not expired. Without one, the identity
 * provider's last answer says why (its error code is the reason, its words the message).
 */
export function credentialIssued(i: ConnectionInput): CheckFailure | undefined {
  if (!usesAccessToken(i.spec)) return undefined;
  const now = (i.now ?? new Date()).getTime();
  if (validToken(i.token, now)) return undefined;
  const f = i.token?.lastFailure;
  const held = i.token?.token;
  const expired = held ? `the access token expired at ${kubeTime(new Date(held.expiresAt))}: ` : '';
  if (!f) return fail('Pending', `${expired}no access token yet`, 'Unknown');
  return { ...fail(f.reason, `${expired}${f.message}`), waiting: 'waiting for an access token' };
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
  const only = `. The allowlists name only globs (${globs.slice(0, 5).join(', ')}), which need a model list to match`;
  return fail(out.reason, `${out.message}${globs.length > 0 ? only : ''}`);
}

/** A connection is Ready when every check passes, in this order. */
export const CONNECTION_READINESS: readonly Check<ConnectionInput>[] = [
  connectionEnabled,
  apiKeyResolved,
  credentialIssued,
  verificationRan,
  upstreamAccepts,
  modelsExposed,
];

/** Above this many models and no allowlist, the operator recommends one (OpenRouter lists thousands). */
export const MANY_MODELS = 200;

function staleSuffix(mem: VerificationMemory | undefined): string {
  const good = mem?.lastGood;
  return good
    ? `; serving the last good list of ${good.models.length} models verified at ${kubeTime(new Date(good.at))} (stale)`
    : '';
}

/** The last verification; read only where verificationRan has passed. */
const lastRun = (i: ConnectionInput) => i.memory as VerificationMemory;

const RESOLVED: Record<CredentialKind, string> = {
  none: 'no apiKeySecretRef: requests carry no API key',
  apiKey: 'API key read from Secret',
  entraWorkloadIdentity: 'workload identity: no Secret to read',
  entraClientSecret: 'client secret read from Secret',
  googleWorkloadIdentity: 'workload identity federation: no Secret to read',
  googleServiceAccountKey: 'service account key read from Secret',
};

function secretResolved(i: ConnectionInput): State {
  const ref = credentialSecretRef(i.spec);
  const what = RESOLVED[credentialKind(i.spec)];
  return i.secret.kind === 'none' || !ref
    ? state('True', 'NoSecretRequired', what)
    : state('True', 'SecretResolved', `${what} "${ref.name}"`);
}

/** CredentialReady once an access token is held: since when it is good, and whether refreshing it fails. */
function credentialReady(i: ConnectionInput): State {
  const mem = i.token as TokenMemory;
  const held = mem.token as NonNullable<TokenMemory['token']>;
  const until = kubeTime(new Date(held.expiresAt));
  if (mem.lastFailure) {
    return state(
      'True',
      'TokenRefreshFailing',
      `the access token stays valid until ${until}, but refreshing it fails: ${mem.lastFailure.message}`,
    );
  }
  const from = credentialRecord(credentialKind(i.spec) as TokenKind).describe(i.spec);
  return state('True', 'TokenIssued', `access token from ${from}, valid until ${until}`);
}

function verified(i: ConnectionInput): State {
  const out = lastRun(i).outcome;
  if (out.ok) return state('True', 'Verified', `${i.spec.url}/models ${out.message}`);
  return state(worksWithoutList(out) ? 'True' : 'False', out.reason, out.message);
}

function modelsDiscovered(i: ConnectionInput): State {
  const mem = lastRun(i);
  const out = mem.outcome;
  const n = out.ok ? out.models.length : 0;
  if (out.ok && i.allowlists.length === 0 && n > MANY_MODELS) {
    const advice = 'add a ModelAllowlist to expose only the models you use';
    return state('True', 'TooManyModels', `${n} models discovered and all exposed; ${advice}`);
  }
  if (out.ok) return state('True', 'ModelsDiscovered', `${n} models discovered`);
  if (mem.lastGood && !worksWithoutList(out)) {
    return state('True', 'StaleModelList', `verification is failing (${out.reason})${staleSuffix(mem)}`);
  }
  return state('False', out.reason, out.message);
}

function served(i: ConnectionInput): State {
  const out = lastRun(i).outcome;
  if (out.ok) return state('True', 'Verified', `${i.exposedCount} models exposed`);
  // The probe checked URL and key; only the model list is missing, so the allowlists' exact IDs are served.
  const listed = `${i.exposedCount} allowlisted models exposed; the upstream does not list its models`;
  const billed =
    ' and answered the verification probe with success, so each verification may be billed (see Verified)';
  return state('True', out.reason, out.reason === 'ProbeAccepted' ? `${listed}${billed}` : listed);
}

const position = (check: Check<ConnectionInput>) => CONNECTION_READINESS.indexOf(check);

/**
 * A connection's conditions: SecretResolved, CredentialReady (with an access token only), Verified and
 * ModelsDiscovered, and Ready from the chain.
 */
export function connectionConditions(i: ConnectionInput, g: number): DesiredCondition[] {
  const f = firstFailure(CONNECTION_READINESS, i);
  const ran = position(verificationRan) + 1;
  const secret = () => decidedBy(apiKeyResolved, i, () => secretResolved(i));
  const credential = () => decidedBy(credentialIssued, i, () => credentialReady(i));
  return [
    gated(CONDITION_SECRET_RESOLVED, position(apiKeyResolved), f, secret, g),
    ...(usesAccessToken(i.spec)
      ? [gated(CONDITION_CREDENTIAL_READY, position(credentialIssued), f, credential, g)]
      : []),
    gated(CONDITION_VERIFIED, ran, f, () => verified(i), g),
    gated(CONDITION_MODELS_DISCOVERED, ran, f, () => modelsDiscovered(i), g),
    ready(f, () => served(i), g),
  ];
}

// ---- ModelAllowlist ----

/** What a connection decided for one of its allowlists (computed by the connection's reconcile). */
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

/** What an allowlist's checks read of its connection. */
export interface ConnectionView {
  enabled: boolean;
  ready: State;
  /** Why globs cannot match here, for GlobNeedsModelList. */
  globsUnmatchable: string;
  allowlists: Map<string, AllowlistExposureView>;
}

export interface AllowlistInput {
  namespace: string;
  connectionName: string;
  /** Undefined when no such connection exists. */
  connection: ConnectionView | undefined;
  exposure: AllowlistExposureView;
}

/** spec.connectionRef names a connection in the allowlist's namespace. */
export function connectionExists(i: AllowlistInput): CheckFailure | undefined {
  if (i.connection) return undefined;
  const message = `ProviderConnection "${i.connectionName}" does not exist in namespace ${i.namespace}`;
  return fail('ConnectionNotFound', message);
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
  const them = globs.length > 1 ? 'them' : 'it';
  return fail(
    'GlobNeedsModelList',
    `${globs.map((x) => JSON.stringify(x)).join(', ')} can never match: ${i.connection?.globsUnmatchable}; replace ${them} with the exact model IDs you use${exact > 0 ? ` (the ${exact} exact IDs are exposed)` : ''}`,
  );
}

/** The connection is Ready, or serves something of this list anyway (a stale list). */
export function connectionServes(i: AllowlistInput): CheckFailure | undefined {
  const r = i.connection?.ready;
  if (!r || r.status === 'True' || i.exposure.exposedModels.length > 0) return undefined;
  return fail(
    'ConnectionNotReady',
    `ProviderConnection "${i.connectionName}" is not ready (${r.reason}): ${r.message}`,
  );
}

/** The upstream offers every listed ID, and every glob matches something. */
export function modelsPresent(i: AllowlistInput): CheckFailure | undefined {
  const missing = i.exposure.missingModels;
  if (missing.length === 0) return undefined;
  const shown = `${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`;
  return fail('ModelsMissing', `the upstream does not offer ${missing.length} listed model(s): ${shown}`);
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
export function allowlistConditions(i: AllowlistInput, g: number): DesiredCondition[] {
  const f = firstFailure(ALLOWLIST_READINESS, i);
  const found = () => state('True', 'ConnectionFound', `ProviderConnection "${i.connectionName}" found`);
  return [
    { type: CONDITION_RESOLVED_REFS, ...decidedBy(connectionExists, i, found), observedGeneration: g },
    ready(f, () => state('True', 'ModelsExposed', `${i.exposure.exposedModels.length} models exposed`), g),
  ];
}
