import {
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  randomBytes,
  randomUUID,
  verify,
} from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MockFailure } from './types.ts';

/**
 * Simulated identity providers for keyless upstream credentials, on one port: Microsoft Entra ID's v2.0 token
 * endpoint (`/{tenant}/oauth2/v2.0/token`), Google's Security Token Service (`/v1/token`), IAM Credentials
 * (`/v1/projects/-/serviceAccounts/{email}:generateAccessToken`) and OAuth token endpoint (`/token`). They check
 * what the real ones check (grant type, client, secret or assertion: its signature against the issuer's keys,
 * issuer, audience, subject and expiry; the scope) and answer with the real ones' error codes and texts
 * (AADSTS700016, invalid_target, "Invalid JWT Signature.", ...). Tokens are opaque, short-lived if asked, and
 * `accepts()` tells a simulated upstream whether one is currently valid for it.
 */

/** An OIDC issuer whose JWTs are trusted as assertions (the test cluster's service account issuer). */
export interface TrustedIssuer {
  issuer: string;
  /** The issuer's JSON Web Key Set, as its jwks_uri serves it (read again when a key ID is unknown). */
  jwks(): Promise<{ keys: JsonWebKey[] }> | { keys: JsonWebKey[] };
}

/** An Entra ID app registration (or managed identity) in a tenant. */
export interface MockEntraApp {
  tenantID: string;
  clientID: string;
  clientSecrets?: string[];
  /** Federated identity credentials: an assertion must match one in issuer, subject and audience. */
  federatedCredentials?: { issuer: string; subject: string; audience: string }[];
}

/** A Google workload identity pool provider (OIDC). */
export interface MockGoogleProvider {
  /** //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X */
  name: string;
  issuer: string;
  /** Default: https: + name, what Google allows when none are configured. */
  allowedAudiences?: string[];
}

export interface MockGoogleServiceAccount {
  email: string;
  /** Pool subjects (`system:serviceaccount:<ns>:<sa>`) granted roles/iam.workloadIdentityUser on it. */
  impersonators?: string[];
}

export interface MockIdentityOptions {
  host?: string;
  port?: number;
  /** Lifetime of issued access tokens (default 3600 s; tests use seconds so refresh happens). */
  tokenLifetimeSeconds?: number;
  issuers?: TrustedIssuer[];
  entraApps?: MockEntraApp[];
  /** Resources tokens may be asked for (scope without /.default); default Cognitive Services. */
  entraResources?: string[];
  googleProviders?: MockGoogleProvider[];
  googleServiceAccounts?: MockGoogleServiceAccount[];
}

/** One request as the mock saw it: the endpoint, the grant, and the outcome (no secrets). */
export interface IdentityRequest {
  endpoint: 'entra' | 'sts' | 'iamcredentials' | 'oauth' | 'unknown';
  path: string;
  status: number;
  /** The error code of a refusal (invalid_client, PERMISSION_DENIED, ...). */
  error?: string;
  at: number;
}

interface Issued {
  /** What the token is for: an Entra resource, or a Google scope. */
  resource: string;
  expiresAt: number;
  /** Google: the principal (federated subject, or a service account e-mail). */
  principal?: string;
  kind: 'entra' | 'sts' | 'impersonated' | 'oauth';
}

export interface MockIdentityProvider {
  readonly origin: string;
  /** For entraID.authorityHost. */
  readonly authorityHost: string;
  /** For googleCloud.workloadIdentityFederation.tokenURL. */
  readonly stsUrl: string;
  /** For googleCloud.workloadIdentityFederation.iamCredentialsURL. */
  readonly iamCredentialsUrl: string;
  readonly requests: IdentityRequest[];
  /** How many access tokens it has issued. */
  readonly issuedCount: number;
  /**
   * For leak tests: every access token issued, and every credential presented (client secrets, assertions,
   * subject tokens, bearer tokens), which must never show up in logs, status, Events, metrics or error bodies.
   */
  secrets(): { issued: string[]; presented: string[] };
  /** When an issued token expires (ms since the epoch); undefined for one it did not issue. */
  expiryOf(token: string): number | undefined;
  /** A new Google service account key JSON (what the console downloads) whose token_uri is this mock. */
  serviceAccountKey(email: string): string;
  /** Whether `token` is one this mock issued for `resource` and has not expired; else why not. */
  check(token: string, resource: string): string | undefined;
  /** `check` bound to a resource, for startMockProvider's acceptToken. */
  accepts(resource: string): (token: string) => string | undefined;
  /** `times`: that many requests fail, then it recovers. */
  setFailure(f: MockFailure | undefined): void;
  setTokenLifetime(seconds: number): void;
  addEntraApp(app: MockEntraApp): void;
  close(): Promise<void>;
}

const ENTRA_EXCHANGE_DOCS = 'https://learn.microsoft.com/entra/workload-id/workload-identity-federation';

interface Jwt {
  header: { alg?: string; kid?: string };
  claims: { iss?: string; sub?: string; aud?: string | string[]; exp?: number; nbf?: number; iat?: number };
  signed: Buffer;
  signature: Buffer;
}

function parseJwt(token: string): Jwt | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const [h, c, s] = parts as [string, string, string];
    return {
      header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Jwt['header'],
      claims: JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Jwt['claims'],
      signed: Buffer.from(`${h}.${c}`),
      signature: Buffer.from(s, 'base64url'),
    };
  } catch {
    return undefined;
  }
}

const audiences = (j: Jwt) =>
  Array.isArray(j.claims.aud) ? j.claims.aud : j.claims.aud ? [j.claims.aud] : [];
const seconds = () => Math.floor(Date.now() / 1000);

export async function startMockIdentityProvider(
  opts: MockIdentityOptions = {},
): Promise<MockIdentityProvider> {
  let lifetime = opts.tokenLifetimeSeconds ?? 3600;
  let failure: MockFailure | undefined;
  const issuers = opts.issuers ?? [];
  const apps = [...(opts.entraApps ?? [])];
  const resources = opts.entraResources ?? ['https://cognitiveservices.azure.com'];
  const providers = opts.googleProviders ?? [];
  const serviceAccounts = opts.googleServiceAccounts ?? [];
  const saKeys = new Map<string, Map<string, JsonWebKey>>();
  const tokens = new Map<string, Issued>();
  const presented = new Set<string>();
  const requests: IdentityRequest[] = [];
  const jwksCache = new Map<string, JsonWebKey[]>();
  let origin = '';

  const keysOf = async (issuer: string, kid: string | undefined): Promise<JsonWebKey[]> => {
    const trusted = issuers.find((i) => i.issuer === issuer);
    if (!trusted) return [];
    let keys = jwksCache.get(issuer);
    if (!keys || (kid && !keys.some((k) => (k as { kid?: string }).kid === kid))) {
      keys = (await trusted.jwks()).keys;
      jwksCache.set(issuer, keys);
    }
    return kid ? keys.filter((k) => (k as { kid?: string }).kid === kid) : keys;
  };

  const signatureValid = (j: Jwt, keys: JsonWebKey[]) =>
    j.header.alg === 'RS256' &&
    keys.some((k) => {
      try {
        return verify('sha256', j.signed, createPublicKey({ key: k, format: 'jwk' }), j.signature);
      } catch {
        return false;
      }
    });

  const issue = (t: Omit<Issued, 'expiresAt'>): { token: string; expiresIn: number } => {
    const prefix = t.kind === 'entra' ? 'eyJ0eXAiOiJKV1Qi.mock' : 'ya29.mock';
    const token = `${prefix}-${randomBytes(24).toString('base64url')}`;
    tokens.set(token, { ...t, expiresAt: Date.now() + lifetime * 1000 });
    return { token, expiresIn: lifetime };
  };

  // ---- Entra ID --------------------------------------------------------------------------------------------

  const entraError = (
    status: number,
    error: string,
    code: number,
    text: string,
  ): [number, Record<string, unknown>] => {
    const trace = randomUUID();
    const correlation = randomUUID();
    const timestamp = new Date()
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z');
    return [
      status,
      {
        error,
        error_description: `AADSTS${code}: ${text} Trace ID: ${trace} Correlation ID: ${correlation} Timestamp: ${timestamp}`,
        error_codes: [code],
        timestamp,
        trace_id: trace,
        correlation_id: correlation,
        error_uri: `${origin}/error?code=${code}`,
      },
    ];
  };

  const entra = async (tenant: string, f: URLSearchParams): Promise<[number, Record<string, unknown>]> => {
    const inTenant = apps.filter((a) => a.tenantID === tenant);
    if (inTenant.length === 0) {
      return entraError(
        400,
        'invalid_request',
        90002,
        `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
      );
    }
    if (f.get('grant_type') !== 'client_credentials') {
      return entraError(400, 'unsupported_grant_type', 70003, 'The app requested an unsupported grant type.');
    }
    const clientId = f.get('client_id');
    if (!clientId) {
      return entraError(
        400,
        'invalid_request',
        900144,
        "The request body must contain the following parameter: 'client_id'.",
      );
    }
    const app = inTenant.find((a) => a.clientID === clientId);
    if (!app) {
      return entraError(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
      );
    }
    const scope = f.get('scope');
    if (!scope) {
      return entraError(
        400,
        'invalid_request',
        900144,
        "The request body must contain the following parameter: 'scope'.",
      );
    }
    if (!scope.endsWith('/.default')) {
      return entraError(
        400,
        'invalid_scope',
        1002012,
        `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`,
      );
    }
    const resource = scope.slice(0, -'/.default'.length);
    if (!resources.includes(resource)) {
      return entraError(
        400,
        'invalid_resource',
        500011,
        `The resource principal named ${resource} was not found in the tenant named ${tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`,
      );
    }
    const secret = f.get('client_secret');
    const assertion = f.get('client_assertion');
    if (secret !== null) {
      if (!app.clientSecrets?.includes(secret)) {
        return entraError(
          401,
          'invalid_client',
          7000215,
          `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
        );
      }
    } else if (assertion !== null) {
      if (f.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
        return entraError(
          400,
          'invalid_request',
          50027,
          "Invalid client_assertion_type: expected 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
        );
      }
      const j = parseJwt(assertion);
      if (!j) return entraError(401, 'invalid_client', 50027, 'JWT token is invalid or malformed.');
      const iss = j.claims.iss ?? '';
      const byIssuer = (app.federatedCredentials ?? []).filter((c) => c.issuer === iss);
      if (byIssuer.length === 0) {
        return entraError(
          401,
          'invalid_client',
          700211,
          `No matching federated identity record found for presented assertion issuer '${iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. ${ENTRA_EXCHANGE_DOCS}`,
        );
      }
      if (!signatureValid(j, await keysOf(iss, j.header.kid))) {
        return entraError(401, 'invalid_client', 50013, 'Assertion failed signature validation.');
      }
      const now = seconds();
      if (j.claims.exp === undefined || j.claims.exp <= now || (j.claims.nbf ?? 0) > now + 300) {
        return entraError(
          401,
          'invalid_client',
          700024,
          `Client assertion is not within its valid time range. Current time: ${new Date().toISOString()}, assertion valid from ${new Date((j.claims.nbf ?? j.claims.iat ?? 0) * 1000).toISOString()}, expiry time of assertion ${new Date((j.claims.exp ?? 0) * 1000).toISOString()}.`,
        );
      }
      const byAudience = byIssuer.filter((c) => audiences(j).includes(c.audience));
      if (byAudience.length === 0) {
        return entraError(
          401,
          'invalid_client',
          700212,
          `No matching federated identity record found for presented assertion audience '${audiences(j).join(',')}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. ${ENTRA_EXCHANGE_DOCS}`,
        );
      }
      if (!byAudience.some((c) => c.subject === j.claims.sub)) {
        return entraError(
          401,
          'invalid_client',
          700213,
          `No matching federated identity record found for presented assertion subject '${j.claims.sub}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. ${ENTRA_EXCHANGE_DOCS}`,
        );
      }
    } else {
      return entraError(
        401,
        'invalid_client',
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      );
    }
    const { token, expiresIn } = issue({ kind: 'entra', resource });
    return [
      200,
      { token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: token },
    ];
  };

  // ---- Google ----------------------------------------------------------------------------------------------

  const oauthError = (
    status: number,
    error: string,
    description: string,
  ): [number, Record<string, unknown>] => [status, { error, error_description: description }];
  const googleError = (code: number, status: string, message: string): [number, Record<string, unknown>] => [
    code,
    { error: { code, message, status } },
  ];

  const sts = async (f: URLSearchParams): Promise<[number, Record<string, unknown>]> => {
    if (f.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') {
      return oauthError(400, 'unsupported_grant_type', 'Invalid value for "grant_type".');
    }
    const subjectType = f.get('subject_token_type');
    if (
      subjectType !== 'urn:ietf:params:oauth:token-type:jwt' &&
      subjectType !== 'urn:ietf:params:oauth:token-type:id_token'
    ) {
      return oauthError(400, 'invalid_request', 'Invalid value for "subject_token_type".');
    }
    if (f.get('requested_token_type') !== 'urn:ietf:params:oauth:token-type:access_token') {
      return oauthError(400, 'invalid_request', 'Invalid value for "requested_token_type".');
    }
    const provider = providers.find((p) => p.name === f.get('audience'));
    if (!provider) {
      return oauthError(
        400,
        'invalid_target',
        'The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn\'t exist.',
      );
    }
    const scope = f.get('scope');
    if (!scope) return oauthError(400, 'invalid_scope', 'Scope(s) must be provided.');
    const j = parseJwt(f.get('subject_token') ?? '');
    if (!j) return oauthError(400, 'invalid_grant', 'Unable to parse the ID Token.');
    if (j.claims.iss !== provider.issuer) {
      return oauthError(
        400,
        'invalid_grant',
        `The issuer in ID Token ${j.claims.iss} does not match the expected issuer ${provider.issuer}.`,
      );
    }
    if (!signatureValid(j, await keysOf(provider.issuer, j.header.kid))) {
      return oauthError(400, 'invalid_grant', 'Invalid ID Token signature.');
    }
    const allowed = provider.allowedAudiences ?? [`https:${provider.name}`];
    if (!audiences(j).some((a) => allowed.includes(a))) {
      return oauthError(
        400,
        'invalid_grant',
        `The audience in ID Token [${audiences(j).join(', ')}] does not match the expected audience ${allowed.join(', ')}.`,
      );
    }
    if (j.claims.exp === undefined || j.claims.exp <= seconds()) {
      return oauthError(400, 'invalid_grant', 'ID Token has expired.');
    }
    const { token, expiresIn } = issue({ kind: 'sts', resource: scope, principal: j.claims.sub ?? '' });
    return [
      200,
      {
        access_token: token,
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        token_type: 'Bearer',
        expires_in: expiresIn,
      },
    ];
  };

  const UNAUTHENTICATED =
    'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';

  const impersonate = (
    email: string,
    req: IncomingMessage,
    body: string,
  ): [number, Record<string, unknown>] => {
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const t = tokens.get(bearer);
    if (t?.kind !== 'sts' || t.expiresAt <= Date.now()) {
      return googleError(401, 'UNAUTHENTICATED', UNAUTHENTICATED);
    }
    const sa = serviceAccounts.find((s) => s.email === email);
    if (!sa || !t.principal || !sa.impersonators?.includes(t.principal)) {
      return googleError(
        403,
        'PERMISSION_DENIED',
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
      );
    }
    let scope: unknown;
    try {
      scope = (JSON.parse(body) as { scope?: unknown }).scope;
    } catch {
      scope = undefined;
    }
    if (!Array.isArray(scope) || scope.length === 0) {
      return googleError(400, 'INVALID_ARGUMENT', 'Scope required.');
    }
    const { token } = issue({ kind: 'impersonated', resource: String(scope[0]), principal: email });
    const expireTime = new Date((tokens.get(token) as Issued).expiresAt)
      .toISOString()
      .replace(/\.\d+Z$/, 'Z');
    return [200, { accessToken: token, expireTime }];
  };

  const oauth = (f: URLSearchParams): [number, Record<string, unknown>] => {
    const grant = f.get('grant_type');
    if (grant !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grant ?? ''}`);
    }
    const j = parseJwt(f.get('assertion') ?? '');
    if (!j) return oauthError(400, 'invalid_grant', 'Invalid JWT: Unable to parse the assertion.');
    const keys = saKeys.get(j.claims.iss ?? '');
    if (!keys) return oauthError(400, 'invalid_grant', 'Invalid grant: account not found');
    const key = keys.get(j.header.kid ?? '');
    if (!key || !signatureValid(j, [key])) return oauthError(400, 'invalid_grant', 'Invalid JWT Signature.');
    const expected = `${origin}/token`;
    if (!audiences(j).includes(expected)) {
      return oauthError(
        400,
        'invalid_grant',
        `Invalid JWT: Failed audience check. The right audience is ${expected}`,
      );
    }
    const { iat, exp } = j.claims;
    const now = seconds();
    if (iat === undefined || exp === undefined || exp - iat > 3600 || iat > now + 300 || exp <= now) {
      return oauthError(
        400,
        'invalid_grant',
        'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
      );
    }
    const scope = (j.claims as { scope?: string }).scope;
    if (!scope) return oauthError(400, 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
    const { token, expiresIn } = issue({ kind: 'oauth', resource: scope, principal: j.claims.iss ?? '' });
    return [200, { access_token: token, expires_in: expiresIn, token_type: 'Bearer' }];
  };

  // ---- HTTP ------------------------------------------------------------------------------------------------

  const IMPERSONATE = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/;
  const ENTRA = /^\/([^/]+)\/oauth2\/v2\.0\/token$/;

  const takeFailure = (): MockFailure | undefined => {
    const f = failure;
    if (f?.times !== undefined) {
      f.times--;
      if (f.times <= 0) failure = undefined;
    }
    return f;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const path = new URL(req.url ?? '/', 'http://mock').pathname;
    const given = new URLSearchParams(body);
    for (const k of ['client_secret', 'client_assertion', 'subject_token', 'assertion']) {
      const v = given.get(k);
      if (v) presented.add(v);
    }
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (bearer) presented.add(bearer);
    const endpoint: IdentityRequest['endpoint'] = ENTRA.test(path)
      ? 'entra'
      : path === '/v1/token'
        ? 'sts'
        : IMPERSONATE.test(path)
          ? 'iamcredentials'
          : path === '/token'
            ? 'oauth'
            : 'unknown';
    const rec: IdentityRequest = { endpoint, path, status: 0, at: Date.now() };
    requests.push(rec);
    const f = takeFailure();
    if (f?.kind === 'hang') return;
    if (f?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    let status: number;
    let answer: Record<string, unknown>;
    if (f?.kind === 'status') {
      res.writeHead(f.status, {
        'content-type': f.contentType ?? 'application/json; charset=utf-8',
        ...(f.retryAfter ? { 'retry-after': f.retryAfter } : {}),
      });
      res.end(
        f.body ??
          JSON.stringify({
            error: 'temporarily_unavailable',
            error_description: 'The service is temporarily unavailable. Please try again later.',
          }),
      );
      rec.status = f.status;
      return;
    }
    if (req.method !== 'POST') {
      [status, answer] = [405, { error: 'invalid_request', error_description: 'POST only.' }];
    } else {
      const fields = new URLSearchParams(body);
      if (endpoint === 'entra') {
        [status, answer] = await entra(decodeURIComponent(ENTRA.exec(path)?.[1] ?? ''), fields);
      } else if (endpoint === 'sts') [status, answer] = await sts(fields);
      else if (endpoint === 'iamcredentials') {
        [status, answer] = impersonate(decodeURIComponent(IMPERSONATE.exec(path)?.[1] ?? ''), req, body);
      } else if (endpoint === 'oauth') [status, answer] = oauth(fields);
      else [status, answer] = googleError(404, 'NOT_FOUND', `No such endpoint: ${path}`);
    }
    rec.status = status;
    const e = answer.error;
    if (typeof e === 'string') rec.error = e;
    else if (e && typeof e === 'object') rec.error = String((e as { status?: unknown }).status);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
    res.end(JSON.stringify(answer));
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`mock identity provider error: ${err.message}`);
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: opts.port ?? 0 }, () => resolve());
  });
  origin = `http://${host}:${(server.address() as AddressInfo).port}`;

  const check = (token: string, resource: string): string | undefined => {
    const t = tokens.get(token);
    if (!t) return 'not a token this identity provider issued';
    if (t.expiresAt <= Date.now()) return 'the token has expired';
    if (t.resource !== resource) return `the token is for ${t.resource}, not ${resource}`;
    return undefined;
  };

  return {
    origin,
    authorityHost: origin,
    stsUrl: `${origin}/v1/token`,
    iamCredentialsUrl: origin,
    requests,
    get issuedCount() {
      return tokens.size;
    },
    serviceAccountKey(email) {
      const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const kid = randomBytes(20).toString('hex');
      const keys = saKeys.get(email) ?? new Map<string, JsonWebKey>();
      keys.set(kid, publicKey.export({ format: 'jwk' }));
      saKeys.set(email, keys);
      const [, project = 'mock-project'] = /@([^.]+)\./.exec(email) ?? [];
      return JSON.stringify({
        type: 'service_account',
        project_id: project,
        private_key_id: kid,
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
        client_email: email,
        client_id: String(Math.floor(Math.random() * 1e20)),
        auth_uri: `${origin}/o/oauth2/auth`,
        token_uri: `${origin}/token`,
        universe_domain: 'googleapis.com',
      });
    },
    secrets: () => ({ issued: [...tokens.keys()], presented: [...presented] }),
    expiryOf: (token) => tokens.get(token)?.expiresAt,
    check,
    accepts: (resource) => (token) => check(token, resource),
    setFailure(f) {
      failure = f ? { ...f } : undefined;
    },
    setTokenLifetime(s) {
      lifetime = s;
    },
    addEntraApp(app) {
      apps.push(app);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
