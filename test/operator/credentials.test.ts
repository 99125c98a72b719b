import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CredentialReasons } from '../../src/api/credentials.ts';
import {
  ProviderConnectionSpec,
  type ProviderConnectionSpecInput,
} from '../../src/api/provider-connection.ts';
import { ManifestStore } from '../../src/cli/local-adapters.ts';
import { loadManifests } from '../../src/cli/manifests.ts';
import {
  type MockIdentityProvider,
  type MockProvider,
  startMockIdentityProvider,
  startMockProvider,
} from '../../src/mock-provider/index.ts';
import { ControlLoop } from '../../src/operator/control-loop.ts';
import {
  ServiceAccountTokenError,
  type ServiceAccountTokenSource,
  tokenMinter,
} from '../../src/operator/credentials/mint.ts';
import { verifyTargetOf } from '../../src/operator/logic/reconcile.ts';
import {
  adoptToken,
  isTokenDue,
  type MintOutcome,
  RETRY_AFTER_MAX_MS,
  rememberMint,
  type TokenMemory,
  validToken,
} from '../../src/operator/logic/tokens.ts';
import { OperatorMetrics } from '../../src/operator/metrics.ts';
import type { ObjectEvent } from '../../src/operator/ports.ts';
import { verifyConnection } from '../../src/operator/verification/verify.ts';
import { signJwtRs256 } from '../../src/providers/credentials.ts';
import type { SnapshotConnection } from '../../src/snapshot/schema.ts';

/**
 * Each keyless credential kind against the simulated identity providers, through the operator's minting code
 * (real HTTP, the address policy, src/providers/credentials.ts), and the token used on a simulated upstream
 * exactly as the gateway sends it. The service account tokens here are JWTs signed like the API server's (the
 * kube tests get them from the real TokenRequest API).
 */

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const APP = '00001111-aaaa-2222-bbbb-3333cccc4444';
const SECRET = `app-secret-${randomBytes(12).toString('hex')}`;
const ISSUER = 'https://kubernetes.test.example/';
const PROVIDER =
  '//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/plugboard/providers/test-k8s';
const VERTEX_SA = 'vertex@mock-project.iam.gserviceaccount.com';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const KID = 'k8s-key-1';
const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

/** A stand-in for the TokenRequest API: JWTs signed with the "cluster's" key, as kube-apiserver signs them. */
function serviceAccounts(opts: { issuer?: string; lifetimeSeconds?: number } = {}) {
  const asked: { namespace: string; name: string; audience: string }[] = [];
  const source: ServiceAccountTokenSource = {
    async request(namespace, name, audience) {
      asked.push({ namespace, name, audience });
      if (name === 'missing') throw new ServiceAccountTokenError('ServiceAccountNotFound', `no ${name}`);
      const iat = Math.floor(Date.now() / 1000);
      return signJwtRs256(
        {
          iss: opts.issuer ?? ISSUER,
          sub: `system:serviceaccount:${namespace}:${name}`,
          aud: [audience],
          iat,
          nbf: iat,
          exp: iat + (opts.lifetimeSeconds ?? 600),
        },
        pem,
        KID,
      );
    },
  };
  return { source, asked };
}

let idp: MockIdentityProvider;
let azure: MockProvider;
let vertex: MockProvider;

beforeAll(async () => {
  idp = await startMockIdentityProvider({
    issuers: [
      { issuer: ISSUER, jwks: () => ({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: KID }] }) },
    ],
    entraApps: [
      {
        tenantID: TENANT,
        clientID: APP,
        clientSecrets: [SECRET],
        federatedCredentials: [
          {
            issuer: ISSUER,
            subject: 'system:serviceaccount:ai:azure',
            audience: 'api://AzureADTokenExchange',
          },
        ],
      },
    ],
    googleProviders: [{ name: PROVIDER, issuer: ISSUER }],
    googleServiceAccounts: [{ email: VERTEX_SA, impersonators: ['system:serviceaccount:ai:vertex'] }],
  });
  azure = await startMockProvider({
    profile: 'azure',
    acceptToken: idp.accepts('https://cognitiveservices.azure.com'),
  });
  vertex = await startMockProvider({
    profile: 'vertex',
    acceptToken: idp.accepts('https://www.googleapis.com/auth/cloud-platform'),
  });
});

afterAll(async () => {
  await Promise.all([idp?.close(), azure?.close(), vertex?.close()]);
});

const entraSpec = (entra: Record<string, unknown>) =>
  ProviderConnectionSpec.parse({
    provider: 'AzureOpenAI',
    url: azure.url,
    azure: { apiVersion: 'v1' },
    entraID: { tenantID: TENANT, clientID: APP, authorityHost: idp.authorityHost, ...entra },
  } satisfies ProviderConnectionSpecInput);
const googleSpec = (google: Record<string, unknown>) =>
  ProviderConnectionSpec.parse({
    url: vertex.url,
    googleCloud: google,
  } satisfies ProviderConnectionSpecInput);
const wif = (extra: Record<string, unknown> = {}) =>
  googleSpec({
    workloadIdentityFederation: {
      serviceAccountName: 'vertex',
      audience: PROVIDER,
      tokenURL: idp.stsUrl,
      iamCredentialsURL: idp.iamCredentialsUrl,
      ...extra,
    },
  });

const failure = (m: MintOutcome) => {
  if (m.ok) throw new Error('expected a failure, got a token');
  return m;
};

describe('Entra ID', () => {
  it('client secret: a token for Cognitive Services, which Azure OpenAI takes as Authorization: Bearer', async () => {
    const spec = entraSpec({ clientSecretRef: { name: 's' } });
    const m = await tokenMinter()({ namespace: 'ai', spec, secret: SECRET });
    expect(m.ok).toBe(true);
    if (!m.ok) return;
    expect(m.expiresAt).toBeGreaterThan(Date.now() + 3000 * 1000);
    // verification sends it exactly as the gateway will
    const out = await verifyConnection(verifyTargetOf(spec, m.token, 'accessToken'));
    expect(out).toMatchObject({ ok: true, reason: 'Verified' });
    const seen = azure.requests.at(-1);
    expect(seen?.headers.authorization).toBe(`Bearer ${m.token}`);
    expect(seen?.headers['api-key']).toBeUndefined();
  });

  it('workload identity: the service account token (audience api://AzureADTokenExchange) as client_assertion', async () => {
    const sa = serviceAccounts();
    const m = await tokenMinter({ serviceAccounts: sa.source })({
      namespace: 'ai',
      spec: entraSpec({ workloadIdentity: { serviceAccountName: 'azure' } }),
    });
    expect(m.ok).toBe(true);
    expect(sa.asked).toEqual([{ namespace: 'ai', name: 'azure', audience: 'api://AzureADTokenExchange' }]);
    expect(idp.requests.at(-1)).toMatchObject({ endpoint: 'entra', status: 200 });
  });

  it.each([
    [
      'a tenant that does not exist',
      { tenantID: '11111111-2222-3333-4444-555555555555', clientSecretRef: { name: 's' } },
      SECRET,
      'InvalidRequest',
      'AADSTS90002: Tenant',
    ],
    [
      'an application the tenant does not have',
      { clientID: '99999999-aaaa-2222-bbbb-3333cccc4444', clientSecretRef: { name: 's' } },
      SECRET,
      'UnauthorizedClient',
      "AADSTS700016: Application with identifier '99999999-aaaa-2222-bbbb-3333cccc4444' was not found",
    ],
    [
      'a wrong client secret',
      { clientSecretRef: { name: 's' } },
      'not-the-secret',
      'InvalidClient',
      'AADSTS7000215',
    ],
    [
      'a resource that is not in the tenant',
      { scope: 'https://example.invalid/.default', clientSecretRef: { name: 's' } },
      SECRET,
      'InvalidResource',
      'AADSTS500011',
    ],
  ])(
    '%s → %s with the AADSTS code and text, without the trace IDs',
    async (_what, entra, secret, reason, text) => {
      const m = failure(await tokenMinter()({ namespace: 'ai', spec: entraSpec(entra), secret }));
      expect(m.reason).toBe(reason);
      expect(m.message).toContain(text);
      expect(m.message).toMatch(/^Entra ID refused the token request \(HTTP 40[01] /);
      expect(m.message).not.toMatch(/Trace ID|Correlation ID/);
    },
  );

  it.each([
    ['a subject the federated credential does not name', 'other', {}, 'AADSTS700213'],
    ['an issuer Entra ID does not trust', 'azure', { issuer: 'https://evil.example/' }, 'AADSTS700211'],
    ['an assertion that has expired', 'azure', { lifetimeSeconds: -60 }, 'AADSTS700024'],
  ])('workload identity with %s → InvalidClient (%s)', async (_what, name, opts, code) => {
    const sa = serviceAccounts(opts);
    const m = failure(
      await tokenMinter({ serviceAccounts: sa.source })({
        namespace: 'ai',
        spec: entraSpec({ workloadIdentity: { serviceAccountName: name } }),
      }),
    );
    expect(m.reason).toBe('InvalidClient');
    expect(m.message).toContain(code);
  });

  it('an assertion signed by another key → InvalidClient (signature)', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    const forged: ServiceAccountTokenSource = {
      request: async (namespace, name, audience) => {
        const iat = Math.floor(Date.now() / 1000);
        return signJwtRs256(
          {
            iss: ISSUER,
            sub: `system:serviceaccount:${namespace}:${name}`,
            aud: [audience],
            iat,
            exp: iat + 600,
          },
          other,
          KID,
        );
      },
    };
    const m = failure(
      await tokenMinter({ serviceAccounts: forged })({
        namespace: 'ai',
        spec: entraSpec({ workloadIdentity: { serviceAccountName: 'azure' } }),
      }),
    );
    expect(m).toMatchObject({ reason: 'InvalidClient', message: expect.stringContaining('AADSTS50013') });
  });

  it('a missing ServiceAccount, and no TokenRequest API at all (standalone), are said plainly', async () => {
    const spec = entraSpec({ workloadIdentity: { serviceAccountName: 'missing' } });
    const missing = failure(
      await tokenMinter({ serviceAccounts: serviceAccounts().source })({ namespace: 'ai', spec }),
    );
    expect(missing.reason).toBe('ServiceAccountNotFound');
    const outside = failure(await tokenMinter()({ namespace: 'ai', spec }));
    expect(outside.reason).toBe('WorkloadIdentityUnavailable');
    expect(outside.message).toContain('entraID.clientSecretRef');
  });

  it('the identity provider down: 503, a reset connection, nothing listening → IdentityProviderUnavailable', async () => {
    const spec = entraSpec({ clientSecretRef: { name: 's' } });
    idp.setFailure({ kind: 'status', status: 503, retryAfter: '7' });
    const down = failure(await tokenMinter()({ namespace: 'ai', spec, secret: SECRET }));
    expect(down).toMatchObject({ reason: 'IdentityProviderUnavailable', retryAfterMs: 7000 });
    expect(down.message).toContain('HTTP 503');
    idp.setFailure({ kind: 'reset' });
    const reset = failure(await tokenMinter()({ namespace: 'ai', spec, secret: SECRET }));
    expect(reset.reason).toBe('IdentityProviderUnavailable');
    idp.setFailure(undefined);
    const nowhere = entraSpec({ authorityHost: 'http://127.0.0.1:9', clientSecretRef: { name: 's' } });
    const refused = failure(await tokenMinter()({ namespace: 'ai', spec: nowhere, secret: SECRET }));
    expect(refused).toMatchObject({ reason: 'IdentityProviderUnavailable' });
    expect(refused.message).toContain('connection refused by Entra ID at 127.0.0.1:9');
  });

  it('what an identity provider says back never carries the secret it was sent', async () => {
    idp.setFailure({
      kind: 'status',
      status: 400,
      body: JSON.stringify({ error: 'invalid_client', error_description: `secret ${SECRET} is wrong` }),
      times: 1,
    });
    const spec = entraSpec({ clientSecretRef: { name: 's' } });
    const m = failure(await tokenMinter()({ namespace: 'ai', spec, secret: SECRET }));
    expect(m.reason).toBe('InvalidClient');
    expect(m.message).toContain('[redacted]');
    expect(m.message).not.toContain(SECRET);
  });
});

describe('Google Cloud', () => {
  it('workload identity federation: STS exchanges the service account token; Vertex AI takes the access token', async () => {
    const sa = serviceAccounts();
    const spec = wif();
    const m = await tokenMinter({ serviceAccounts: sa.source })({ namespace: 'ai', spec });
    expect(m.ok).toBe(true);
    expect(sa.asked[0]?.audience).toBe(`https:${PROVIDER}`);
    if (!m.ok) return;
    // Vertex AI lists no models: the probe shows that the URL and the token work
    const out = await verifyConnection(verifyTargetOf(spec, m.token, 'accessToken'));
    expect(out).toMatchObject({ ok: false, reason: 'ModelsEndpointUnsupported' });
    expect(out.message).toContain('the URL and the access token work');
  });

  it('impersonation: the federated token buys the service account access token', async () => {
    const m = await tokenMinter({ serviceAccounts: serviceAccounts().source })({
      namespace: 'ai',
      spec: wif({ impersonateServiceAccount: VERTEX_SA }),
    });
    expect(m.ok).toBe(true);
    expect(idp.requests.slice(-2).map((r) => [r.endpoint, r.status])).toEqual([
      ['sts', 200],
      ['iamcredentials', 200],
    ]);
  });

  it('impersonation without roles/iam.workloadIdentityUser → PermissionDenied', async () => {
    const m = failure(
      await tokenMinter({ serviceAccounts: serviceAccounts().source })({
        namespace: 'other',
        spec: wif({ serviceAccountName: 'vertex', impersonateServiceAccount: VERTEX_SA }),
      }),
    );
    expect(m.reason).toBe('PermissionDenied');
    expect(m.message).toContain("Permission 'iam.serviceAccounts.getAccessToken' denied");
  });

  it('a pool provider that does not exist → InvalidTarget; a token for another audience → InvalidGrant', async () => {
    const sa = serviceAccounts();
    const target = failure(
      await tokenMinter({ serviceAccounts: sa.source })({
        namespace: 'ai',
        spec: wif({ audience: PROVIDER.replace('test-k8s', 'gone-k8s') }),
      }),
    );
    expect(target.reason).toBe('InvalidTarget');
    const wrongIssuer = failure(
      await tokenMinter({ serviceAccounts: serviceAccounts({ issuer: 'https://other.example/' }).source })({
        namespace: 'ai',
        spec: wif(),
      }),
    );
    expect(wrongIssuer).toMatchObject({ reason: 'InvalidGrant', message: expect.stringContaining('issuer') });
  });

  it('a service account key: a JWT signed with it buys an access token at its token_uri', async () => {
    const key = idp.serviceAccountKey(VERTEX_SA);
    const spec = googleSpec({ serviceAccountKeySecretRef: { name: 'k' } });
    const m = await tokenMinter()({ namespace: 'ai', spec, secret: key });
    expect(m.ok).toBe(true);
    expect(idp.requests.at(-1)).toMatchObject({ endpoint: 'oauth', status: 200 });
    // a key Google does not know (deleted), and a file that is not a key
    const unknown = JSON.stringify({
      ...JSON.parse(key),
      client_email: 'gone@mock-project.iam.gserviceaccount.com',
    });
    expect(failure(await tokenMinter()({ namespace: 'ai', spec, secret: unknown }))).toMatchObject({
      reason: 'InvalidGrant',
      message: expect.stringContaining('account not found'),
    });
    const notAKey = failure(
      await tokenMinter()({ namespace: 'ai', spec, secret: '{"type":"authorized_user"}' }),
    );
    expect(notAKey.reason).toBe('InvalidServiceAccountKey');
    expect(notAKey.message).toContain('"type" is "authorized_user", not "service_account"');
  });
});

describe('the simulated upstreams accept only currently valid tokens', () => {
  it("a token past its lifetime is refused with the provider's 401", async () => {
    idp.setTokenLifetime(1);
    try {
      const spec = entraSpec({ clientSecretRef: { name: 's' } });
      const m = await tokenMinter()({ namespace: 'ai', spec, secret: SECRET });
      if (!m.ok) throw new Error(m.message);
      const ask = () =>
        fetch(`${azure.url}/openai/v1/models`, { headers: { authorization: `Bearer ${m.token}` } });
      expect((await ask()).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500));
      const late = await ask();
      expect(late.status).toBe(401);
      expect(await late.text()).toContain('Access token is missing, invalid, audience is incorrect');
      // a Google token is not an Azure one
      expect(idp.check(m.token, 'https://www.googleapis.com/auth/cloud-platform')).toBeDefined();
    } finally {
      idp.setTokenLifetime(3600);
    }
  });
});

describe('the refresh schedule', () => {
  const at = Date.parse('2026-01-01T00:00:00Z');
  const issued = (lifetimeMs: number): MintOutcome => ({
    ok: true,
    token: 't1',
    expiresAt: at + lifetimeMs,
    durationMs: 1,
  });
  const down: MintOutcome = {
    ok: false,
    reason: 'IdentityProviderUnavailable',
    message: 'Entra ID is unavailable (HTTP 503)',
    durationMs: 1,
  };

  it('replaces a token at half its lifetime ± 10%, and a long one at least 5 minutes before it expires', () => {
    for (const r of [0, 0.5, 1]) {
      const short = rememberMint(undefined, 'f', issued(20_000), at, () => r);
      expect(short.refreshAt - at).toBeGreaterThanOrEqual(8_000);
      expect(short.refreshAt - at).toBeLessThanOrEqual(12_000);
      const hour = rememberMint(undefined, 'f', issued(3_600_000), at, () => r);
      expect(hour.refreshAt - at).toBeGreaterThanOrEqual(0.4 * 3_600_000);
      expect(hour.refreshAt - at).toBeLessThanOrEqual(0.6 * 3_600_000);
    }
    // An 11-minute token: 60% of its life (6.6 min) would be later than 5 minutes before its end (6 min).
    const eleven = rememberMint(undefined, 'f', issued(11 * 60_000), at, () => 1);
    expect(eleven.refreshAt - at).toBe(6 * 60_000);
  });

  it('a failed refresh keeps the valid token and retries with backoff, more than once before it expires', () => {
    let m = rememberMint(undefined, 'f', issued(60_000), at, () => 0.5);
    const token = m.token;
    const attempts: number[] = [];
    let now = m.refreshAt;
    while (now < at + 60_000) {
      m = rememberMint(m, 'f', down, now, () => 0.5);
      expect(m.token).toEqual(token);
      expect(validToken(m, now)).toEqual(token);
      attempts.push(m.refreshAt - now);
      now = m.refreshAt;
    }
    expect(m.failures).toBe(attempts.length);
    expect(attempts.length).toBeGreaterThanOrEqual(4);
    // doubling from 2 s, then never beyond halfway to the expiry
    expect(attempts.slice(0, 3)).toEqual([2_000, 4_000, 8_000]);
    expect(validToken(m, at + 60_000)).toBeUndefined();
    expect(m.lastFailure?.reason).toBe('IdentityProviderUnavailable');
    // once expired, retries back off to one a minute (+20% jitter at most)
    for (let i = 0; i < 20; i++) m = rememberMint(m, 'f', down, now, () => 1);
    expect(m.refreshAt - now).toBe(72_000);
  });

  it("honours an identity provider's Retry-After up to 10 minutes, never days (nor an overflowing timer)", () => {
    const busy = (retryAfterMs: number): MintOutcome => ({ ...down, retryAfterMs });
    expect(rememberMint(undefined, 'f', busy(120_000), at, () => 0.5).refreshAt - at).toBe(120_000);
    for (const huge of [3_000_000_000, Number.POSITIVE_INFINITY])
      expect(rememberMint(undefined, 'f', busy(huge), at, () => 0.5).refreshAt - at).toBe(RETRY_AFTER_MAX_MS);
  });

  it('a changed identity asks again at once and drops the token of the old one', () => {
    const m = rememberMint(undefined, 'old', issued(3_600_000), at);
    expect(isTokenDue(m, 'old', at + 1000)).toBe(false);
    expect(isTokenDue(m, 'new', at + 1000)).toBe(true);
    const failed = rememberMint(m, 'new', down, at + 1000);
    expect(failed.token).toBeUndefined();
    expect(failed.failures).toBe(1);
  });

  it('after a restart, a valid token from the snapshot is adopted and replaced at once; kept if that fails', () => {
    const entry = {
      accessToken: 't0',
      accessTokenExpiresAt: new Date(at + 600_000).toISOString(),
      credentialFingerprint: 'f',
    };
    const adopted = adoptToken(entry, at) as TokenMemory;
    expect(adopted.token).toMatchObject({ value: 't0', expiresAt: at + 600_000 });
    expect(isTokenDue(adopted, 'f', at)).toBe(true);
    const failed = rememberMint(adopted, 'f', down, at);
    expect(validToken(failed, at + 1000)?.value).toBe('t0');
    // of another identity (the spec or Secret changed meanwhile): dropped on the first failure
    expect(rememberMint(adopted, 'g', down, at).token).toBeUndefined();
    // expired, or without its expiry or identity: not adopted
    expect(adoptToken(entry, at + 600_000)).toBeUndefined();
    expect(adoptToken({ accessToken: 't0', credentialFingerprint: 'f' }, at)).toBeUndefined();
    expect(adoptToken({ ...entry, credentialFingerprint: undefined }, at)).toBeUndefined();
  });

  it('a Retry-After longer than the backoff is honoured', () => {
    const m = rememberMint(undefined, 'f', { ...down, retryAfterMs: 30_000 }, at, () => 0.5);
    expect(m.refreshAt - at).toBe(30_000);
  });
});

describe('the control loop on manifest files (standalone mode) with keyless credentials', () => {
  it('a client secret becomes a token in the snapshot; the secret itself never does; workload identity says why not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'plugboard-keyless-'));
    const store = new ManifestStore({});
    const snapshot = new Map<string, SnapshotConnection>();
    const events: ObjectEvent[] = [];
    const loop = new ControlLoop({
      objects: store,
      secrets: store,
      status: store,
      events: { record: async (e) => void events.push(e) },
      snapshot,
      metrics: new OperatorMetrics({ defaultMetrics: false }),
      log: pino({ level: 'silent' }),
    });
    loop.start();
    try {
      const entra = (name: string, proof: string) =>
        `apiVersion: plugboard.dev/v1alpha1\nkind: ProviderConnection\nmetadata: {name: ${name}}\nspec: {provider: AzureOpenAI, url: '${azure.url}', azure: {apiVersion: v1}, entraID: {tenantID: ${TENANT}, clientID: ${APP}, authorityHost: '${idp.authorityHost}', ${proof}}}`;
      const list = (name: string) =>
        `apiVersion: plugboard.dev/v1alpha1\nkind: ModelAllowlist\nmetadata: {name: ${name}}\nspec: {connectionRef: {name: ${name}}, models: [my-gpt-4o-deployment]}`;
      writeFileSync(
        join(dir, 'all.yaml'),
        [
          `apiVersion: v1\nkind: Secret\nmetadata: {name: app}\nstringData: {clientSecret: ${SECRET}}`,
          entra('secret', 'clientSecretRef: {name: app}'),
          list('secret'),
          entra('federated', 'workloadIdentity: {serviceAccountName: azure}'),
        ].join('\n---\n'),
      );
      const set = await loadManifests([dir]);
      expect(set.errors).toEqual([]);
      store.apply(set, loop);
      await loop.idle();

      const entry = snapshot.get('default/secret');
      expect(entry).toMatchObject({ serving: true, models: [{ id: 'my-gpt-4o-deployment' }] });
      expect(entry?.apiKey).toBeUndefined();
      expect(idp.check(entry?.accessToken ?? '', 'https://cognitiveservices.azure.com')).toBeUndefined();
      expect(JSON.stringify([...snapshot.values()])).not.toContain(SECRET);
      const status = store.connection('default/secret')?.status;
      const cond = (type: string) => status?.conditions?.find((c) => c.type === type);
      expect(cond('SecretResolved')).toMatchObject({
        status: 'True',
        message: 'client secret read from Secret "app"',
      });
      expect(cond('CredentialReady')).toMatchObject({ status: 'True', reason: 'TokenIssued' });
      expect(cond('CredentialReady')?.message).toContain(
        `Entra ID (tenant ${TENANT}, client ${APP}, client secret)`,
      );
      expect(cond('Ready')).toMatchObject({ status: 'True', reason: 'Verified' });
      expect(Date.parse(status?.credentialExpiresAt ?? '')).toBeGreaterThan(Date.now() + 3000 * 1000);
      expect(JSON.stringify(status)).not.toContain(entry?.accessToken);

      const federated = store.connection('default/federated')?.status?.conditions;
      expect(federated?.find((c) => c.type === 'CredentialReady')).toMatchObject({
        status: 'False',
        reason: 'WorkloadIdentityUnavailable',
      });
      expect(federated?.find((c) => c.type === 'Ready')).toMatchObject({
        status: 'False',
        reason: 'WorkloadIdentityUnavailable',
      });
      expect(federated?.find((c) => c.type === 'Verified')).toMatchObject({ status: 'Unknown' });
      expect(snapshot.get('default/federated')).toMatchObject({ serving: false, models: [] });
      expect(snapshot.get('default/federated')?.accessToken).toBeUndefined();
      expect(JSON.stringify(events)).not.toContain(entry?.accessToken);
    } finally {
      await loop.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('docs/credentials.md', () => {
  it('has a troubleshooting row for every CredentialReady reason', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'credentials.md'), 'utf8');
    for (const reason of CredentialReasons) {
      expect(doc, reason).toMatch(new RegExp(`^\\| \`${reason}\`[^|]*\\|[^|]+\\|[^|]+\\|$`, 'm'));
    }
  });
});
