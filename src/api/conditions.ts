/**
 * Condition types and the reasons of the operator's own checks, as API. Each type states its polarity:
 * "normal-true" types are True when all is well (the kstatus convention for Ready); an "abnormal-true" type is
 * True only when something is wrong and is absent otherwise. Event reasons equal condition reasons.
 * Verification's reasons are in verification.ts, a ModelAllowlist's in model-allowlist.ts; docs/operator.md
 * says what to do about each.
 */

/**
 * Both kinds, normal-true: the object does what it asks for. It is summarised from the other conditions: the
 * first check that fails gives its reason (src/operator/logic/readiness.ts). kubectl wait, Flux and Argo CD
 * read it.
 */
export const CONDITION_READY = 'Ready';
/**
 * Both kinds, abnormal-true, present only when True: the operator has stopped acting on the object's current
 * generation, and only a change to the object makes it try again (kstatus: failed, not in progress).
 */
export const CONDITION_STALLED = 'Stalled';
/**
 * ProviderConnection, normal-true: the Secret its credential names was read (the API key, an Entra ID client
 * secret or a Google service account key), or the connection needs none.
 */
export const CONDITION_SECRET_RESOLVED = 'SecretResolved';
/**
 * ProviderConnection with entraID or googleCloud, normal-true (absent on other connections): the operator holds a
 * valid access token from the identity provider. Reasons in credentials.ts; `status.credentialExpiresAt` says
 * until when. Unknown while the Secret it needs is missing.
 */
export const CONDITION_CREDENTIAL_READY = 'CredentialReady';
/**
 * ProviderConnection, normal-true: the upstream accepted the key at spec.url (its model list answered or,
 * without one, the verification probe did). Unknown while an earlier check keeps it from running.
 */
export const CONDITION_VERIFIED = 'Verified';
/**
 * ProviderConnection, normal-true: the operator knows the upstream's models, possibly a stale list that is kept
 * serving while verification fails. False for an upstream that lists none.
 */
export const CONDITION_MODELS_DISCOVERED = 'ModelsDiscovered';
/** ModelAllowlist, normal-true: the ProviderConnection it names exists in its namespace. */
export const CONDITION_RESOLVED_REFS = 'ResolvedRefs';

/**
 * The API server admitted the spec but Plugboard's own validation refuses it: the installed CRD is older than
 * the operator, or a rule the CRD schema does not carry. Ready is False and Stalled True with this reason and
 * the validation errors as the message; the operator does nothing more until `metadata.generation` changes.
 */
export const REASON_INVALID_SPEC = 'InvalidSpec';

/** Reasons of a ProviderConnection's conditions that are not verification outcomes. */
export const ConnectionReasons = [
  /** spec.enabled is false: out of routing and not verified (Ready False, the other conditions Unknown). */
  'Disabled',
  /** SecretResolved False: the Secret the credential names does not exist in the connection's namespace. */
  'SecretNotFound',
  /** SecretResolved False: the Secret lacks the key (standalone: the environment variable it names is unset). */
  'SecretKeyMissing',
  /** SecretResolved True: the API key (or client secret, or service account key) was read from the Secret. */
  'SecretResolved',
  /** SecretResolved True: no Secret to read: no apiKeySecretRef (requests carry no key), or workload identity. */
  'NoSecretRequired',
  /** Unknown: the first verification has not finished yet. */
  'Pending',
  /** ModelsDiscovered True: the upstream listed its models. */
  'ModelsDiscovered',
  /** ModelsDiscovered True, with advice: over 200 models and no ModelAllowlist, so all are exposed. */
  'TooManyModels',
  /** ModelsDiscovered True: verification fails, and the last good list keeps serving. */
  'StaleModelList',
  /** Ready False: the allowlists match none of the listed models (Azure: no deployment listed yet). */
  'NoModelsExposed',
] as const;
export type ConnectionReason = (typeof ConnectionReasons)[number];
