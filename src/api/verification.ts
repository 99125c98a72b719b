/**
 * The reasons a connection's verification ends with: the reason of its `Verified` condition, and of `Ready` when
 * verification decides it. What each means and what to do about it is in docs/operator.md ("Reasons, and what
 * to do"); the message of each condition says the same for the case at hand.
 */
export const VerificationReasons = [
  /** The upstream listed its models (GET /models) with the key. */
  'Verified',
  /** The upstream rejected the key (or wanted one): HTTP 401, or Google's HTTP 400 with API_KEY_INVALID. */
  'Unauthorized',
  /** HTTP 403: the key is valid but may not do this (permissions, project, region). */
  'Forbidden',
  /**
   * No model list (GET /models answered 404/405), and the verification probe showed that spec.url serves the
   * API and accepts the key: the connection serves the exact IDs its allowlists name.
   */
  'ModelsEndpointUnsupported',
  /**
   * No model list, and the upstream answered the probe (a request it must refuse) with 2xx: URL and key work,
   * but the upstream may have run, and billed, a completion for it.
   */
  'ProbeAccepted',
  /**
   * Neither the model list nor the probe's path exists at spec.url: the base URL is wrong (for Azure's dated
   * API, the URL or azure.apiVersion).
   */
  'EndpointNotFound',
  /** HTTP 429; verification retries after Retry-After. */
  'RateLimited',
  /** HTTP 5xx, an unexpected 4xx, a redirect (never followed) or a reset connection. */
  'UpstreamError',
  /** No answer within spec.verification.timeout. */
  'Timeout',
  /** The host does not resolve. */
  'DNSError',
  /** Nothing listens at the URL's host and port. */
  'ConnectionRefused',
  /** The certificate is not trusted or names another host. */
  'TLSError',
  /** The model list is not JSON, or has no `data` list. */
  'InvalidResponse',
  /** The address policy refuses the URL's host or what it resolves to. */
  'BlockedAddress',
] as const;
export type VerificationReason = (typeof VerificationReasons)[number];

/**
 * Outcomes after which a connection works although the upstream lists no models: the key and URL were checked
 * by the probe, so the exact model IDs its allowlists name are served (a glob cannot match without a list).
 */
export const UNLISTED_BUT_WORKING: readonly VerificationReason[] = [
  'ModelsEndpointUnsupported',
  'ProbeAccepted',
];
