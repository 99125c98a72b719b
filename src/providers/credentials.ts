import { createPrivateKey, sign } from 'node:crypto';
import {
  type CredentialKind,
  type CredentialReason,
  CredentialReasons,
  type EntraID,
  type GoogleCloud,
} from '../api/credentials.ts';
import { retryAfterMs } from '../net/retry-after.ts';
import { SecretScrubber } from './upstream-errors.ts';

/**
 * How each keyless credential kind obtains an access token, as data: which identity provider it asks, where,
 * with which form fields, and how the answer is read. The operator's minting (src/operator/credentials/) and
 * `plugboard verify --connect` run exactly these requests; the gateway only sends the token they return, as its
 * dialect says (src/providers/dialects.ts: `Authorization: Bearer`).
 */

/** RFC 7523: a JWT as the client's credential (Entra ID's federated credentials). */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** RFC 7523: a JWT as the authorization grant (Google service account keys). */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** RFC 8693 token exchange (Google STS). */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** Google's limit on a service account JWT assertion's lifetime, and the lifetime of impersonated tokens. */
export const GOOGLE_ASSERTION_SECONDS = 3600;

/** One HTTP request to an identity provider, and how to read its answer. */
export interface TokenRequest {
  /** Who is asked, for messages: "Entra ID", "Google STS", "Google IAM Credentials", "Google OAuth". */
  issuer: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** Values sent that must never be quoted back: client secret, assertion, subject token, bearer token. */
  secrets: string[];
  /** What the answer means. `now` is when the request was sent (expiry is counted from it). */
  read(answer: TokenAnswer, now: number): TokenOutcome;
}

/** An identity provider's HTTP answer. */
export interface TokenAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export type TokenOutcome =
  | { ok: true; token: string; expiresAt: number }
  | { ok: false; reason: CredentialReason; message: string; retryAfterMs?: number };

/** What a kind needs besides its spec: the service account token, the Secret's value, the time. */
export interface TokenMaterial {
  serviceAccountToken?: string;
  secret?: string;
  now: number;
}

/** One credential kind: whether it presents a service account token, and the requests that turn it into a token. */
export interface CredentialRecord {
  /** The Kubernetes service account token it presents (TokenRequest), or undefined. */
  serviceAccountToken?(spec: KindSpec): { serviceAccountName: string; audience: string };
  /** The first request; a failure when the material cannot make one (a malformed key JSON). */
  first(spec: KindSpec, m: TokenMaterial): TokenRequest | Extract<TokenOutcome, { ok: false }>;
  /** A request that follows with the token the previous one returned (impersonation), if any. */
  next?(spec: KindSpec, token: string): TokenRequest | undefined;
  /** Says where the token comes from, for CredentialReady's message. */
  describe(spec: KindSpec): string;
}

export interface KindSpec {
  entraID?: EntraID;
  googleCloud?: GoogleCloud;
}

export type TokenKind = Exclude<CredentialKind, 'none' | 'apiKey'>;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const FORM = {
  'content-type': 'application/x-www-form-urlencoded',
  accept: 'application/json',
} as const;

/** At most this much of what an identity provider says reaches a condition message. */
const MAX_QUOTE = 400;

function quote(text: string, secrets: string[]): string {
  let out = text.replace(/\s+/g, ' ').trim();
  for (const s of secrets) if (s) out = new SecretScrubber(s, '[redacted]').scrub(out);
  return out.length > MAX_QUOTE ? `${out.slice(0, MAX_QUOTE)}...` : out;
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const j = JSON.parse(text) as unknown;
    return j && typeof j === 'object' && !Array.isArray(j) ? (j as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** `invalid_client` → `InvalidClient`, for the OAuth 2.0 error codes that are reasons of their own. */
function oauthReason(code: string): CredentialReason {
  const camel = code
    .split('_')
    .map((w) => (w ? w[0]?.toUpperCase() + w.slice(1) : w))
    .join('') as CredentialReason;
  return CredentialReasons.includes(camel) && /^[a-z_]+$/.test(code) ? camel : 'TokenRequestRejected';
}

/**
 * Entra ID's error_description ends with "Trace ID: ... Correlation ID: ... Timestamp: ...", new on every
 * attempt: kept out of the message so that a retry that fails the same way writes no new status.
 */
const withoutTrace = (s: string) => s.replace(/\s*Trace ID:[\s\S]*$/, '');

/**
 * The answer of an OAuth 2.0 token endpoint (RFC 6749 section 5): `access_token` and `expires_in` on success,
 * `error` and `error_description` otherwise; Google's JSON API errors (`{"error":{"code","message","status"}}`)
 * are read too.
 */
function readOAuth(issuer: string, secrets: string[]) {
  return (a: TokenAnswer, now: number): TokenOutcome => {
    const j = parseJson(a.text);
    if (a.status >= 200 && a.status < 300) {
      const token = j?.access_token ?? j?.accessToken;
      const expiresIn = Number(j?.expires_in);
      const expireTime = typeof j?.expireTime === 'string' ? Date.parse(j.expireTime) : Number.NaN;
      const expiresAt = Number.isFinite(expiresIn) && expiresIn > 0 ? now + expiresIn * 1000 : expireTime;
      if (typeof token === 'string' && token && Number.isFinite(expiresAt))
        return { ok: true, token, expiresAt };
      return {
        ok: false,
        reason: 'InvalidTokenResponse',
        message: `${issuer} answered HTTP ${a.status} without an access token and its lifetime (expires_in)`,
      };
    }
    return refusal(issuer, a, j, secrets);
  };
}

function refusal(
  issuer: string,
  a: TokenAnswer,
  j: Record<string, unknown> | undefined,
  secrets: string[],
): Extract<TokenOutcome, { ok: false }> {
  const http = `HTTP ${a.status}`;
  if (a.status === 429 || a.status >= 500) {
    const said = j ? describeError(j) : a.text;
    const wait = retryAfterMs(a.headers['retry-after']);
    return {
      ok: false,
      reason: 'IdentityProviderUnavailable',
      message: `${issuer} is unavailable (${http}${said ? `: ${quote(withoutTrace(said), secrets)}` : ''}); retrying with backoff`,
      ...(wait !== undefined ? { retryAfterMs: wait } : {}),
    };
  }
  if (typeof j?.error === 'string') {
    const code = j.error;
    const description = typeof j.error_description === 'string' ? withoutTrace(j.error_description) : '';
    return {
      ok: false,
      reason: oauthReason(code),
      message: `${issuer} refused the token request (${http} ${quote(code, secrets)}${description ? `: ${quote(description, secrets)}` : ''})`,
    };
  }
  const e = j?.error as { message?: unknown; status?: unknown } | undefined;
  if (e && typeof e === 'object') {
    const status = typeof e.status === 'string' ? e.status : '';
    const reason: CredentialReason =
      a.status === 403 || a.status === 404
        ? 'PermissionDenied'
        : a.status === 401
          ? 'InvalidGrant'
          : a.status === 400
            ? 'InvalidRequest'
            : 'TokenRequestRejected';
    return {
      ok: false,
      reason,
      message: `${issuer} refused the token request (${http}${status ? ` ${status}` : ''}: ${quote(String(e.message ?? ''), secrets)})`,
    };
  }
  return {
    ok: false,
    reason: 'TokenRequestRejected',
    message: `${issuer} refused the token request (${http}${a.text.trim() ? `: ${quote(a.text, secrets)}` : ''})`,
  };
}

function describeError(j: Record<string, unknown>): string {
  if (typeof j.error === 'string') {
    return `${j.error}${typeof j.error_description === 'string' ? `: ${j.error_description}` : ''}`;
  }
  const e = j.error as { message?: unknown } | undefined;
  return typeof e?.message === 'string' ? e.message : '';
}

// ---- Microsoft Entra ID --------------------------------------------------------------------------------------

/** The v2.0 token endpoint of a tenant. */
export function entraTokenUrl(e: EntraID): string {
  return `${e.authorityHost.replace(/\/+$/, '')}/${encodeURIComponent(e.tenantID)}/oauth2/v2.0/token`;
}

/**
 * The OAuth 2.0 client-credentials grant at Entra ID, with either the app's client secret or (workload identity)
 * a federated assertion: the service account token, as client_assertion with the jwt-bearer assertion type.
 */
function entraRequest(e: EntraID, proof: { clientSecret: string } | { assertion: string }): TokenRequest {
  const fields: Record<string, string> = {
    grant_type: 'client_credentials',
    client_id: e.clientID,
    scope: e.scope,
  };
  const secret = 'clientSecret' in proof ? proof.clientSecret : proof.assertion;
  if ('clientSecret' in proof) fields.client_secret = proof.clientSecret;
  else {
    fields.client_assertion_type = CLIENT_ASSERTION_TYPE;
    fields.client_assertion = proof.assertion;
  }
  const secrets = [secret];
  return {
    issuer: 'Entra ID',
    url: entraTokenUrl(e),
    headers: { ...FORM },
    body: form(fields),
    secrets,
    read: readOAuth('Entra ID', secrets),
  };
}

// ---- Google Cloud --------------------------------------------------------------------------------------------

/** The audience of the service account token: the provider's default allowed audience, https: + its name. */
export function googleSubjectTokenAudience(audience: string): string {
  return `https:${audience}`;
}

/** RFC 8693 token exchange at Google's STS: the service account token for a federated access token. */
function googleStsRequest(g: GoogleCloud, subjectToken: string): TokenRequest {
  const wif = g.workloadIdentityFederation as NonNullable<GoogleCloud['workloadIdentityFederation']>;
  const secrets = [subjectToken];
  return {
    issuer: 'Google STS',
    url: wif.tokenURL,
    headers: { ...FORM },
    body: form({
      grant_type: TOKEN_EXCHANGE_GRANT,
      audience: wif.audience,
      scope: g.scope,
      requested_token_type: ACCESS_TOKEN_TYPE,
      subject_token: subjectToken,
      subject_token_type: JWT_TOKEN_TYPE,
    }),
    secrets,
    read: readOAuth('Google STS', secrets),
  };
}

/** Impersonation: the federated token buys a service account's access token (IAM Credentials generateAccessToken). */
function googleImpersonationRequest(g: GoogleCloud, federated: string): TokenRequest | undefined {
  const wif = g.workloadIdentityFederation;
  if (!wif?.impersonateServiceAccount) return undefined;
  const secrets = [federated];
  return {
    issuer: 'Google IAM Credentials',
    url: `${wif.iamCredentialsURL.replace(/\/+$/, '')}/v1/projects/-/serviceAccounts/${encodeURIComponent(wif.impersonateServiceAccount)}:generateAccessToken`,
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      authorization: `Bearer ${federated}`,
    },
    body: JSON.stringify({ scope: [g.scope], lifetime: `${GOOGLE_ASSERTION_SECONDS}s` }),
    secrets,
    read: readOAuth('Google IAM Credentials', secrets),
  };
}

/** The fields of a service account key JSON that signing needs. */
export interface ServiceAccountKey {
  clientEmail: string;
  privateKey: string;
  privateKeyId?: string;
  tokenUri: string;
}

const LOOPBACK_HTTP = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?(\/|$)/;

/**
 * A service account key as the console downloads it. `token_uri` is honoured, as Google's libraries do, under the
 * rule every identity provider URL follows (https, or http to loopback for a test double).
 */
export function parseServiceAccountKey(
  text: string,
): { ok: true; key: ServiceAccountKey } | { ok: false; message: string } {
  const j = parseJson(text);
  const bad = (why: string) => ({
    ok: false as const,
    message: `the Secret does not hold a service account key JSON (${why}); download a JSON key for the service account and store the whole file`,
  });
  if (!j) return bad('not a JSON object');
  if (j.type !== 'service_account')
    return bad(`"type" is ${JSON.stringify(j.type ?? null)}, not "service_account"`);
  if (typeof j.client_email !== 'string' || !j.client_email) return bad('no "client_email"');
  if (typeof j.private_key !== 'string' || !j.private_key.includes('PRIVATE KEY'))
    return bad('no "private_key"');
  try {
    createPrivateKey(j.private_key);
  } catch {
    return bad('"private_key" is not a PEM private key');
  }
  const tokenUri = typeof j.token_uri === 'string' ? j.token_uri : 'https://oauth2.googleapis.com/token';
  if (!URL.canParse(tokenUri) || !(tokenUri.startsWith('https://') || LOOPBACK_HTTP.test(tokenUri))) {
    return bad('"token_uri" must be an https:// URL');
  }
  return {
    ok: true,
    key: {
      clientEmail: j.client_email,
      privateKey: j.private_key,
      ...(typeof j.private_key_id === 'string' ? { privateKeyId: j.private_key_id } : {}),
      tokenUri,
    },
  };
}

const b64url = (v: string | Buffer) => Buffer.from(v).toString('base64url');

/** A compact JWS with RS256 (RFC 7515/7518), signed with node:crypto. */
export function signJwtRs256(claims: Record<string, unknown>, privateKeyPem: string, kid?: string): string {
  const header = { alg: 'RS256', typ: 'JWT', ...(kid ? { kid } : {}) };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = sign('sha256', Buffer.from(input), createPrivateKey(privateKeyPem));
  return `${input}.${b64url(signature)}`;
}

/**
 * RFC 7523 at Google's OAuth token endpoint: a JWT assertion signed with the service account's key (issuer its
 * e-mail, audience the token URI, at most an hour long) for an access token with the scope.
 */
function googleJwtBearerRequest(g: GoogleCloud, key: ServiceAccountKey, now: number): TokenRequest {
  const iat = Math.floor(now / 1000);
  const assertion = signJwtRs256(
    { iss: key.clientEmail, scope: g.scope, aud: key.tokenUri, iat, exp: iat + GOOGLE_ASSERTION_SECONDS },
    key.privateKey,
    key.privateKeyId,
  );
  const secrets = [assertion];
  return {
    issuer: 'Google OAuth',
    url: key.tokenUri,
    headers: { ...FORM },
    body: form({ grant_type: JWT_BEARER_GRANT, assertion }),
    secrets,
    read: readOAuth('Google OAuth', secrets),
  };
}

const missing = (what: string): Extract<TokenOutcome, { ok: false }> => ({
  ok: false,
  reason: 'InvalidServiceAccountKey',
  message: `no ${what} to present`,
});

const entra = (s: KindSpec) => s.entraID as EntraID;
const google = (s: KindSpec) => s.googleCloud as GoogleCloud;

export const CREDENTIALS: Record<TokenKind, CredentialRecord> = {
  entraWorkloadIdentity: {
    serviceAccountToken: (s) => {
      const wi = entra(s).workloadIdentity as NonNullable<EntraID['workloadIdentity']>;
      return { serviceAccountName: wi.serviceAccountName, audience: wi.audience };
    },
    first: (s, m) =>
      m.serviceAccountToken
        ? entraRequest(entra(s), { assertion: m.serviceAccountToken })
        : missing('service account token'),
    describe: (s) =>
      `Entra ID (tenant ${entra(s).tenantID}, client ${entra(s).clientID}, workload identity of ServiceAccount ${entra(s).workloadIdentity?.serviceAccountName}) for ${entra(s).scope}`,
  },
  entraClientSecret: {
    first: (s, m) =>
      m.secret !== undefined ? entraRequest(entra(s), { clientSecret: m.secret }) : missing('client secret'),
    describe: (s) =>
      `Entra ID (tenant ${entra(s).tenantID}, client ${entra(s).clientID}, client secret) for ${entra(s).scope}`,
  },
  googleWorkloadIdentity: {
    serviceAccountToken: (s) => {
      const wif = google(s).workloadIdentityFederation as NonNullable<
        GoogleCloud['workloadIdentityFederation']
      >;
      return {
        serviceAccountName: wif.serviceAccountName,
        audience: googleSubjectTokenAudience(wif.audience),
      };
    },
    first: (s, m) =>
      m.serviceAccountToken
        ? googleStsRequest(google(s), m.serviceAccountToken)
        : missing('service account token'),
    next: (s, token) => googleImpersonationRequest(google(s), token),
    describe: (s) => {
      const wif = google(s).workloadIdentityFederation;
      const as = wif?.impersonateServiceAccount
        ? `, impersonating ${wif.impersonateServiceAccount}`
        : ' (federated principal)';
      return `Google STS (workload identity federation of ServiceAccount ${wif?.serviceAccountName}${as}) for ${google(s).scope}`;
    },
  },
  googleServiceAccountKey: {
    first: (s, m) => {
      if (m.secret === undefined) return missing('service account key');
      const parsed = parseServiceAccountKey(m.secret);
      if (!parsed.ok) return { ok: false, reason: 'InvalidServiceAccountKey', message: parsed.message };
      return googleJwtBearerRequest(google(s), parsed.key, m.now);
    },
    describe: (s) => `Google OAuth (service account key) for ${google(s).scope}`,
  },
};

export function credentialRecord(kind: TokenKind): CredentialRecord {
  return CREDENTIALS[kind];
}
