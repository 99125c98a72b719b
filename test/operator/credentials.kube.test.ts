import type { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGateway, type Gateway } from '../../src/gateway/app.ts';
import { KubernetesSnapshotSource } from '../../src/gateway/snapshot-source.ts';
import {
  type MockIdentityProvider,
  type MockProvider,
  startMockIdentityProvider,
} from '../../src/mock-provider/index.ts';
import type { Operator } from '../../src/operator/operator.ts';
import { clusterIssuer, createServiceAccount } from '../support/identity.ts';
import { createNamespace, testKubeConfig } from '../support/kube.ts';
import { useMockProviders } from '../support/mocks.ts';
import { Api, cond, eventually, type Obj, startOperator } from './harness.ts';

/**
 * Keyless credentials end to end: the operator gets service account tokens from the real API server's
 * TokenRequest API, exchanges them at simulated identity providers that verify them against the API server's
 * published keys, puts the access token into the snapshot Secret, and a gateway reading that Secret serves with
 * it. Everything is real except the identity provider and the upstream.
 */

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const APP = '00001111-aaaa-2222-bbbb-3333cccc4444';
const PROVIDER =
  '//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/plugboard/providers/test-k8s';
const VERTEX_SA = 'vertex@mock-project.iam.gserviceaccount.com';
const COGNITIVE = 'https://cognitiveservices.azure.com';
const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';

const mock = useMockProviders();
let kc: KubeConfig;
let ns: string;
let api: Api;
let op: Operator;
let idp: MockIdentityProvider;
let gw: Gateway;
let gwUrl: string;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createNamespace(kc, 'keyless');
  api = new Api(kc, ns);
  for (const sa of ['azure', 'stranger', 'vertex']) await createServiceAccount(kc, ns, sa);
  const issuer = await clusterIssuer(kc);
  idp = await startMockIdentityProvider({
    issuers: [issuer],
    entraApps: [
      {
        tenantID: TENANT,
        clientID: APP,
        federatedCredentials: [
          {
            issuer: issuer.issuer,
            subject: `system:serviceaccount:${ns}:azure`,
            audience: 'api://AzureADTokenExchange',
          },
        ],
      },
    ],
    googleProviders: [{ name: PROVIDER, issuer: issuer.issuer }],
    googleServiceAccounts: [{ email: VERTEX_SA, impersonators: [`system:serviceaccount:${ns}:vertex`] }],
  });
  op = startOperator(kc, ns, { leaderElection: false, probeListen: { host: '127.0.0.1', port: 0 } });
  gw = await buildGateway({
    snapshots: new KubernetesSnapshotSource(kc, ns),
    logger: false,
    defaultMetrics: false,
  });
  gwUrl = await gw.listen('127.0.0.1', 0);
});

afterAll(async () => {
  await gw?.close();
  await op?.stop();
  await idp?.close();
});

const entra = (upstream: MockProvider, extra: Record<string, unknown> = {}) => ({
  provider: 'AzureOpenAI',
  url: upstream.url,
  azure: { apiVersion: 'v1' },
  entraID: {
    tenantID: TENANT,
    clientID: APP,
    authorityHost: idp.authorityHost,
    workloadIdentity: { serviceAccountName: 'azure' },
    ...extra,
  },
});

async function chat(model: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${gwUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });
  return { status: res.status, text: await res.text() };
}

/** Waits until the gateway serves `model` (it has read a snapshot in which the connection serves). */
const served = (model: string) =>
  eventually(async () => (await chat(model)).status === 200, `the gateway serving ${model}`, 30_000);

const condition = (name: string, type: string, pred: (c: NonNullable<ReturnType<typeof cond>>) => boolean) =>
  eventually(
    async () => {
      const o = await api.getConnection(name);
      const c = cond(o, type);
      return c && c.observedGeneration === o.metadata.generation && pred(c) ? o : undefined;
    },
    `${name} ${type}`,
    60_000,
  );

describe('Azure workload identity through the TokenRequest API', () => {
  it('obtains a token with the service account token as client assertion, and the gateway serves with it', async () => {
    const upstream = await mock({ profile: 'azure', acceptToken: idp.accepts(COGNITIVE) });
    await api.connection('azure', entra(upstream));
    await api.allowlist('azure', 'azure', ['gpt-4o-mini']);
    const c = await api.waitReady('azure', 'Verified', 30_000);
    expect(cond(c, 'SecretResolved')).toMatchObject({ status: 'True', reason: 'NoSecretRequired' });
    expect(cond(c, 'CredentialReady')).toMatchObject({ status: 'True', reason: 'TokenIssued' });
    expect(cond(c, 'CredentialReady')?.message).toContain(`workload identity of ServiceAccount azure`);
    expect(Date.parse(c.status?.credentialExpiresAt as string)).toBeGreaterThan(Date.now() + 3000 * 1000);
    // the exchange: a real service account token, checked against the API server's keys
    expect(idp.requests.some((r) => r.endpoint === 'entra' && r.status === 200)).toBe(true);
    const entry = await eventually(
      async () => (await api.snapshot())?.connections.find((x) => x.name === 'azure' && x.serving),
      'the connection serving in the snapshot',
    );
    expect(entry?.apiKey).toBeUndefined();
    expect(idp.check(entry?.accessToken ?? '', COGNITIVE)).toBeUndefined();

    await served('gpt-4o-mini');
    const rec = upstream.requests.at(-1);
    expect(rec?.path).toBe('/openai/v1/chat/completions');
    expect(rec?.headers.authorization).toBe(`Bearer ${entry?.accessToken}`);
    expect(rec?.headers['api-key']).toBeUndefined();
    const m = await (await fetch(`${op.probeAddress}/metrics`)).text();
    expect(m).toMatch(
      new RegExp(
        `plugboard_connection_credential_expiry_timestamp_seconds\\{namespace="${ns}",name="azure"\\} \\d+`,
      ),
    );
    expect(m).toContain(
      'plugboard_credential_token_requests_total{kind="entraWorkloadIdentity",reason="TokenIssued"}',
    );
  });

  it('replaces the token before it expires under continuous traffic, with no failed request', async () => {
    idp.setTokenLifetime(8);
    const upstream = await mock({ profile: 'azure', acceptToken: idp.accepts(COGNITIVE) });
    try {
      await api.connection('rotating', entra(upstream));
      await api.allowlist('rotating', 'rotating', ['my-gpt-4o-deployment']);
      await api.waitReady('rotating', 'Verified', 30_000);
      await served('my-gpt-4o-deployment');
      const first = (await api.snapshot())?.connections.find((x) => x.name === 'rotating')
        ?.accessToken as string;
      const firstExpiry = idp.expiryOf(first) as number;
      const failures: string[] = [];
      let sent = 0;
      // Traffic until the third token is in use: two replacements, each well past the expiry before it.
      const tokens = () => new Set(upstream.requests.map((r) => r.headers.authorization));
      while (tokens().size < 3 || Date.now() < firstExpiry + 1000) {
        const r = await chat('my-gpt-4o-deployment');
        sent++;
        if (r.status !== 200) failures.push(`${r.status} ${r.text.slice(0, 200)}`);
        if (sent > 5000) throw new Error('no third token after 5000 requests');
        await new Promise((res) => setTimeout(res, 20));
      }
      expect(failures).toEqual([]);
      // A request after the first token's expiry went out with a newer token and was answered.
      const chats = upstream.requests.filter((r) => r.path.endsWith('/chat/completions'));
      const afterExpiry = chats.filter((r) => r.headers.authorization !== `Bearer ${first}`);
      expect(afterExpiry.length).toBeGreaterThan(0);
      for (const r of afterExpiry) {
        const token = (r.headers.authorization as string).slice('Bearer '.length);
        expect(idp.expiryOf(token)).toBeGreaterThan(firstExpiry);
      }
      expect(upstream.requests.every((r) => r.headers.authorization !== undefined)).toBe(true);
      expect(sent).toBeGreaterThan(10);
    } finally {
      idp.setTokenLifetime(3600);
    }
  }, 120_000);

  it('the identity provider down: the token serves until it expires, then a clear condition; then it recovers', async () => {
    idp.setTokenLifetime(12);
    const upstream = await mock({ profile: 'azure', acceptToken: idp.accepts(COGNITIVE) });
    try {
      await api.connection('outage', entra(upstream));
      await api.allowlist('outage', 'outage', ['gpt-4o']);
      await api.waitReady('outage', 'Verified', 30_000);
      await served('gpt-4o');
      idp.setFailure({ kind: 'status', status: 503 });
      const failing = await condition('outage', 'CredentialReady', (c) => c.reason === 'TokenRefreshFailing');
      expect(cond(failing, 'CredentialReady')?.message).toMatch(
        /^the access token stays valid until .*Z, but refreshing it fails: Entra ID is unavailable \(HTTP 503/,
      );
      expect(cond(failing, 'Ready')).toMatchObject({ status: 'True', reason: 'Verified' });
      // still serving with the token it has
      expect((await chat('gpt-4o')).status).toBe(200);
      const events = await api.events('outage');
      expect(events.some((e) => e.reason === 'TokenRefreshFailing' && e.type === 'Warning')).toBe(true);

      const expired = await api.waitReady('outage', 'IdentityProviderUnavailable', 60_000);
      expect(cond(expired, 'Ready')?.status).toBe('False');
      expect(cond(expired, 'CredentialReady')).toMatchObject({
        status: 'False',
        reason: 'IdentityProviderUnavailable',
      });
      expect(cond(expired, 'CredentialReady')?.message).toMatch(
        /^the access token expired at .*Z: Entra ID is unavailable/,
      );
      expect(cond(expired, 'Verified')).toMatchObject({
        status: 'Unknown',
        reason: 'IdentityProviderUnavailable',
      });
      await eventually(
        async () => (await chat('gpt-4o')).status === 404,
        'the expired connection out of routing',
      );

      // The next retry comes within about a minute (RETRY_MAX_MS).
      idp.setFailure(undefined);
      const back = await api.waitReady('outage', 'Verified', 90_000);
      expect(cond(back, 'CredentialReady')).toMatchObject({ status: 'True', reason: 'TokenIssued' });
      await served('gpt-4o');
    } finally {
      idp.setFailure(undefined);
      idp.setTokenLifetime(3600);
    }
  }, 180_000);

  it('an operator restarted while the identity provider is down adopts the valid token and keeps serving', async () => {
    const upstream = await mock({ profile: 'azure', acceptToken: idp.accepts(COGNITIVE) });
    try {
      await api.connection('restart', { ...entra(upstream), modelPrefix: 'restart' });
      await api.allowlist('restart', 'restart', ['gpt-4o-mini']);
      await api.waitReady('restart', 'Verified', 30_000);
      await served('restart.gpt-4o-mini');
      const before = (await api.snapshot())?.connections.find((x) => x.name === 'restart');
      expect(before?.credentialFingerprint).toMatch(/^[0-9a-f]{64}$/);
      // the operator reckons the expiry from expires_in when the answer arrives: the mock's instant, give or take
      const drift =
        Date.parse(before?.accessTokenExpiresAt ?? '') - (idp.expiryOf(before?.accessToken ?? '') ?? 0);
      expect(Math.abs(drift)).toBeLessThan(5_000);

      idp.setFailure({ kind: 'status', status: 503 });
      await op.stop();
      op = startOperator(kc, ns, { leaderElection: false, probeListen: { host: '127.0.0.1', port: 0 } });
      // The new operator asks at once, is refused, and keeps the token it adopted from the snapshot.
      const failing = await condition(
        'restart',
        'CredentialReady',
        (c) => c.reason === 'TokenRefreshFailing',
      );
      expect(cond(failing, 'Ready')).toMatchObject({ status: 'True', reason: 'Verified' });
      const after = (await api.snapshot())?.connections.find((x) => x.name === 'restart');
      expect(after).toMatchObject({ serving: true, accessToken: before?.accessToken });
      expect((await chat('restart.gpt-4o-mini')).status).toBe(200);
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${before?.accessToken}`);

      idp.setFailure(undefined);
      await condition('restart', 'CredentialReady', (c) => c.reason === 'TokenIssued');
      const renewed = await eventually(async () => {
        const e = (await api.snapshot())?.connections.find((x) => x.name === 'restart');
        return e?.accessToken !== before?.accessToken ? e : undefined;
      }, 'a new token in the snapshot');
      expect(idp.check(renewed.accessToken ?? '', COGNITIVE)).toBeUndefined();
    } finally {
      idp.setFailure(undefined);
    }
  }, 120_000);

  it.each([
    [
      'wrong-tenant',
      'InvalidRequest',
      { tenantID: '11111111-2222-3333-4444-555555555555' },
      "AADSTS90002: Tenant '11111111-2222-3333-4444-555555555555' not found",
    ],
    [
      'wrong-client',
      'UnauthorizedClient',
      { clientID: '99999999-aaaa-2222-bbbb-3333cccc4444' },
      "AADSTS700016: Application with identifier '99999999-aaaa-2222-bbbb-3333cccc4444' was not found",
    ],
    [
      'wrong-subject',
      'InvalidClient',
      { workloadIdentity: { serviceAccountName: 'stranger' } },
      'AADSTS700213: No matching federated identity record found for presented assertion subject',
    ],
    [
      'no-such-sa',
      'ServiceAccountNotFound',
      { workloadIdentity: { serviceAccountName: 'nobody' } },
      'ServiceAccount "nobody" was not found in namespace',
    ],
  ])("%s → Ready False, CredentialReady %s with the provider's words", async (name, reason, extra, words) => {
    const upstream = await mock({ profile: 'azure', acceptToken: idp.accepts(COGNITIVE) });
    await api.connection(name, entra(upstream, extra));
    const c: Obj = await api.waitReady(name, reason, 30_000);
    expect(cond(c, 'Ready')).toMatchObject({ status: 'False', reason });
    expect(cond(c, 'CredentialReady')).toMatchObject({ status: 'False', reason });
    expect(cond(c, 'CredentialReady')?.message).toContain(words);
    expect(cond(c, 'CredentialReady')?.message).not.toMatch(/Trace ID/);
    expect(c.status?.credentialExpiresAt).toBeUndefined();
    expect(upstream.requests).toEqual([]);
    const events = await api.events(name);
    expect(events.some((e) => e.reason === reason && e.type === 'Warning')).toBe(true);
  });
});

describe('Google Cloud (Vertex AI)', () => {
  it('workload identity federation with impersonation: STS, then IAM Credentials, then Vertex AI', async () => {
    const vertex = await mock({ profile: 'vertex', acceptToken: idp.accepts(CLOUD_PLATFORM) });
    await api.connection('vertex', {
      url: vertex.url,
      googleCloud: {
        workloadIdentityFederation: {
          serviceAccountName: 'vertex',
          audience: PROVIDER,
          impersonateServiceAccount: VERTEX_SA,
          tokenURL: idp.stsUrl,
          iamCredentialsURL: idp.iamCredentialsUrl,
        },
      },
    });
    await api.allowlist('vertex', 'vertex', ['google/gemini-2.5-flash']);
    const c = await api.waitReady('vertex', 'ModelsEndpointUnsupported', 30_000);
    expect(cond(c, 'CredentialReady')).toMatchObject({ status: 'True', reason: 'TokenIssued' });
    expect(cond(c, 'CredentialReady')?.message).toContain(`impersonating ${VERTEX_SA}`);
    expect(cond(c, 'Verified')?.message).toContain('the URL and the access token work');
    await served('google/gemini-2.5-flash');
    expect(vertex.requests.at(-1)?.headers.authorization).toMatch(/^Bearer ya29\.mock-/);
  });

  it('a service account key from a Secret, signed into a JWT assertion', async () => {
    const vertex = await mock({ profile: 'vertex', acceptToken: idp.accepts(CLOUD_PLATFORM) });
    await api.secret('vertex-key', { 'credentials.json': idp.serviceAccountKey(VERTEX_SA) });
    await api.connection('vertex-key', {
      url: vertex.url,
      modelPrefix: 'keyed',
      googleCloud: { serviceAccountKeySecretRef: { name: 'vertex-key' } },
    });
    await api.allowlist('vertex-key', 'vertex-key', ['google/gemini-2.5-pro']);
    const c = await api.waitReady('vertex-key', 'ModelsEndpointUnsupported', 30_000);
    expect(cond(c, 'SecretResolved')).toMatchObject({
      reason: 'SecretResolved',
      message: 'service account key read from Secret "vertex-key"',
    });
    expect(cond(c, 'CredentialReady')).toMatchObject({ status: 'True', reason: 'TokenIssued' });
    await served('keyed.google/gemini-2.5-pro');
    const entry = (await api.snapshot())?.connections.find((x) => x.name === 'vertex-key');
    expect(JSON.stringify(entry)).not.toContain('PRIVATE KEY');
  });
});
