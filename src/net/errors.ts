import { isBlockedAddressError } from './address-policy.ts';

/**
 * What went wrong on the way to an upstream, in the terms both planes report: the operator's verification turns
 * it into a condition reason, the gateway into a failover decision, a status code and a metric label. One
 * reading of Node's, undici's and the TLS layer's error codes, so both planes always agree on what happened.
 */
export type NetworkFailure =
  /** The address policy refused the address (src/net/address-policy.ts); nothing was sent. */
  | 'blocked_address'
  /** No TCP connection within the connect timeout. */
  | 'connect_timeout'
  /** Connected, but no response headers within the first-byte timeout. */
  | 'first_byte_timeout'
  /** The body stopped arriving for longer than the idle timeout. */
  | 'idle_timeout'
  /** A deadline of the caller (an AbortSignal timeout) or a socket timeout. */
  | 'timeout'
  /** The host name does not resolve. */
  | 'dns'
  /** Nothing listens at host:port. */
  | 'refused'
  /** No route to the host or its network. */
  | 'unreachable'
  /** TLS failed: an untrusted or mismatched certificate, or not TLS at all. */
  | 'tls'
  /** Anything else: the connection was reset or closed unexpectedly. */
  | 'reset';

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
]);

/** The error's code, or its cause's (undici wraps socket errors). */
export function errorCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  return e?.code ?? e?.cause?.code ?? '';
}

export function classifyNetworkError(err: unknown): NetworkFailure {
  if (isBlockedAddressError(err)) return 'blocked_address';
  const e = err as { name?: string; message?: string; cause?: { message?: string } } | undefined;
  const code = errorCode(err);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect_timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'first_byte_timeout';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'idle_timeout';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return 'dns';
    case 'ECONNREFUSED':
      return 'refused';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'unreachable';
  }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timeout';
  if (TLS_CODES.has(code)) return 'tls';
  const detail = e?.cause?.message ?? e?.message ?? '';
  if (/certificate|ssl|tls/i.test(detail)) return 'tls';
  return 'reset';
}

export const isTimeoutFailure = (f: NetworkFailure): boolean => f.endsWith('timeout');
