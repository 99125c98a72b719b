import { describe, expect, it } from 'vitest';
import { ProviderConnectionSpec } from '../../src/api/provider-connection.ts';
import type { VerificationMemory } from '../../src/operator/logic/connection-status.ts';
import {
  ALLOWLIST_READINESS,
  type AllowlistInput,
  allowlistConditions,
  apiKeyResolved,
  CONNECTION_READINESS,
  type ConnectionInput,
  type ConnectionView,
  connectionConditions,
  connectionEnabled,
  connectionExists,
  connectionIsEnabled,
  connectionServes,
  credentialIssued,
  firstFailure,
  globsCanMatch,
  modelsExposed,
  modelsPresent,
  upstreamAccepts,
  verificationRan,
} from '../../src/operator/logic/readiness.ts';
import type { VerifyOutcome } from '../../src/operator/verification/verify.ts';

const spec = (extra: Record<string, unknown> = {}) =>
  ProviderConnectionSpec.parse({
    url: 'https://api.example.com/v1',
    apiKeySecretRef: { name: 'k' },
    ...extra,
  });
const memory = (outcome: VerifyOutcome, lastGood?: VerificationMemory['lastGood']): VerificationMemory => ({
  fingerprint: 'f',
  outcome,
  checkedAt: 0,
  nextDueAt: 0,
  consecutiveFailures: outcome.ok ? 0 : 1,
  ...(lastGood ? { lastGood } : {}),
});
const listed = (n: number): VerifyOutcome => ({
  ok: true,
  reason: 'Verified',
  message: `listed ${n} models`,
  models: Array.from({ length: n }, (_, i) => ({ id: `m${i}` })),
  durationMs: 1,
});
const failed = (reason: 'Unauthorized' | 'ModelsEndpointUnsupported' | 'ProbeAccepted'): VerifyOutcome => ({
  ok: false,
  reason,
  message: `said ${reason}`,
  durationMs: 1,
});
/** A connection that passes every check. */
const healthy: ConnectionInput = {
  namespace: 'ai',
  spec: spec(),
  secret: { kind: 'resolved', value: 'sk', version: '1' },
  memory: memory(listed(3)),
  allowlists: [],
  exposedCount: 3,
};

describe('connection readiness checks', () => {
  it('connectionEnabled: spec.enabled false → Disabled', () => {
    expect(connectionEnabled(healthy)).toBeUndefined();
    expect(connectionEnabled({ ...healthy, spec: spec({ enabled: false }) })).toMatchObject({
      reason: 'Disabled',
      status: 'False',
    });
  });

  it('apiKeyResolved: a missing Secret or key, with the advice, and what the checks after it wait for', () => {
    expect(apiKeyResolved(healthy)).toBeUndefined();
    expect(apiKeyResolved({ ...healthy, secret: { kind: 'none' } })).toBeUndefined();
    expect(apiKeyResolved({ ...healthy, secret: { kind: 'notFound', secretName: 'k' } })).toEqual({
      reason: 'SecretNotFound',
      status: 'False',
      message: 'Secret "k" was not found in namespace ai; create it with the API key under key "apiKey"',
      waiting: 'waiting for the API key',
    });
    expect(
      apiKeyResolved({ ...healthy, secret: { kind: 'keyMissing', secretName: 'k', key: 'apiKey' } }),
    ).toMatchObject({ reason: 'SecretKeyMissing', message: expect.stringMatching(/has no key "apiKey"/) });
    expect(
      apiKeyResolved({
        ...healthy,
        secret: { kind: 'keyMissing', secretName: 'k', key: 'apiKey', message: 'set OPENAI_API_KEY' },
      })?.message,
    ).toBe('set OPENAI_API_KEY');
  });

  it('verificationRan: before the first verification → Pending, Unknown', () => {
    expect(verificationRan(healthy)).toBeUndefined();
    expect(verificationRan({ ...healthy, memory: undefined })).toMatchObject({
      reason: 'Pending',
      status: 'Unknown',
    });
  });

  it('upstreamAccepts: a failed verification gives its reason, saying when a stale list keeps serving', () => {
    expect(upstreamAccepts(healthy)).toBeUndefined();
    expect(
      upstreamAccepts({ ...healthy, memory: memory(failed('ModelsEndpointUnsupported')) }),
    ).toBeUndefined();
    expect(upstreamAccepts({ ...healthy, memory: memory(failed('Unauthorized')) })).toEqual({
      reason: 'Unauthorized',
      status: 'False',
      message: 'said Unauthorized',
    });
    const stale = upstreamAccepts({
      ...healthy,
      memory: memory(failed('Unauthorized'), {
        models: [{ id: 'a' }],
        at: Date.parse('2026-01-01T00:00:00Z'),
      }),
    });
    expect(stale?.message).toBe(
      'said Unauthorized; serving the last good list of 1 models verified at 2026-01-01T00:00:00Z (stale)',
    );
  });

  it('modelsExposed: nothing served → NoModelsExposed, the dialect advice, or the probe outcome', () => {
    expect(modelsExposed(healthy)).toBeUndefined();
    expect(modelsExposed({ ...healthy, exposedCount: 0 })).toMatchObject({
      reason: 'NoModelsExposed',
      message: expect.stringMatching(/match none of the 3 models/),
    });
    const azure = spec({ provider: 'AzureOpenAI', azure: { apiVersion: 'v1' } });
    expect(modelsExposed({ ...healthy, spec: azure, exposedCount: 0 })?.message).toMatch(/deployment names/);
    const unlisted = {
      ...healthy,
      exposedCount: 0,
      memory: memory(failed('ModelsEndpointUnsupported')),
      allowlists: [{ name: 'l', models: ['sonar-*'] }],
    };
    expect(modelsExposed(unlisted)).toMatchObject({
      reason: 'ModelsEndpointUnsupported',
      message:
        'said ModelsEndpointUnsupported. The allowlists name only globs (sonar-*), which need a model list to match',
    });
  });

  it('credentialIssued: an access token held and unexpired passes; else the identity provider says why', () => {
    const entra = spec({
      apiKeySecretRef: undefined,
      provider: 'AzureOpenAI',
      azure: { apiVersion: 'v1' },
      entraID: {
        tenantID: 'contoso.onmicrosoft.com',
        clientID: '00001111-aaaa-2222-bbbb-3333cccc4444',
        workloadIdentity: { serviceAccountName: 'sa' },
      },
    });
    const now = new Date('2026-01-01T00:00:00Z');
    const at = now.getTime();
    const held = { value: 't', issuedAt: at - 60_000, expiresAt: at + 60_000 };
    const refused = {
      reason: 'UnauthorizedClient' as const,
      message: 'Entra ID refused the token request (HTTP 400 unauthorized_client: AADSTS700016: ...)',
      at,
    };
    const base = { ...healthy, spec: entra, secret: { kind: 'none' as const }, now };
    // an API key connection has no token to hold
    expect(credentialIssued({ ...healthy, now })).toBeUndefined();
    expect(
      credentialIssued({ ...base, token: { fingerprint: 'f', token: held, refreshAt: at, failures: 0 } }),
    ).toBeUndefined();
    // refreshing fails while the token is valid: still passes (CredentialReady says TokenRefreshFailing)
    const failing = { fingerprint: 'f', token: held, refreshAt: at, failures: 1, lastFailure: refused };
    expect(credentialIssued({ ...base, token: failing })).toBeUndefined();
    const [, credential] = connectionConditions({ ...base, token: failing }, 1);
    expect(credential).toMatchObject({
      type: 'CredentialReady',
      status: 'True',
      reason: 'TokenRefreshFailing',
    });
    expect(credential?.message).toContain('stays valid until 2026-01-01T00:01:00Z');
    // never obtained: the provider's reason and words
    expect(
      credentialIssued({
        ...base,
        token: { fingerprint: 'f', refreshAt: at, failures: 1, lastFailure: refused },
      }),
    ).toMatchObject({ status: 'False', reason: 'UnauthorizedClient', message: refused.message });
    // expired while refreshing failed: says when
    const later = new Date(at + 120_000);
    expect(credentialIssued({ ...base, now: later, token: failing })).toMatchObject({
      reason: 'UnauthorizedClient',
      message: `the access token expired at 2026-01-01T00:01:00Z: ${refused.message}`,
    });
  });

  it('the chain runs in order and the first failure wins', () => {
    expect(CONNECTION_READINESS.map((c) => c.name)).toEqual([
      'connectionEnabled',
      'apiKeyResolved',
      'credentialIssued',
      'verificationRan',
      'upstreamAccepts',
      'modelsExposed',
    ]);
    const everythingWrong = {
      ...healthy,
      spec: spec({ enabled: false }),
      secret: { kind: 'notFound' as const, secretName: 'k' },
      memory: undefined,
      exposedCount: 0,
    };
    expect(firstFailure(CONNECTION_READINESS, everythingWrong)).toMatchObject({
      check: 'connectionEnabled',
      index: 0,
    });
    expect(firstFailure(CONNECTION_READINESS, { ...everythingWrong, spec: spec() })).toMatchObject({
      check: 'apiKeyResolved',
    });
    expect(firstFailure(CONNECTION_READINESS, healthy)).toBeUndefined();
  });

  it('conditions after a failing check are Unknown with its reason; Ready says the first failure', () => {
    const byType = (i: ConnectionInput) =>
      Object.fromEntries(connectionConditions(i, 4).map((c) => [c.type, [c.status, c.reason, c.message]]));
    expect(byType({ ...healthy, secret: { kind: 'notFound', secretName: 'k' } })).toEqual({
      SecretResolved: ['False', 'SecretNotFound', expect.stringMatching(/was not found/)],
      Verified: ['Unknown', 'SecretNotFound', 'waiting for the API key'],
      ModelsDiscovered: ['Unknown', 'SecretNotFound', 'waiting for the API key'],
      Ready: ['False', 'SecretNotFound', expect.stringMatching(/was not found/)],
    });
    expect(byType({ ...healthy, memory: undefined })).toEqual({
      SecretResolved: ['True', 'SecretResolved', 'API key read from Secret "k"'],
      Verified: ['Unknown', 'Pending', 'verification has not run yet'],
      ModelsDiscovered: ['Unknown', 'Pending', 'verification has not run yet'],
      Ready: ['Unknown', 'Pending', 'verification has not run yet'],
    });
    expect(byType(healthy)).toEqual({
      SecretResolved: ['True', 'SecretResolved', 'API key read from Secret "k"'],
      Verified: ['True', 'Verified', 'https://api.example.com/v1/models listed 3 models'],
      ModelsDiscovered: ['True', 'ModelsDiscovered', '3 models discovered'],
      Ready: ['True', 'Verified', '3 models exposed'],
    });
    for (const c of connectionConditions(healthy, 4)) expect(c.observedGeneration).toBe(4);
  });
});

describe('allowlist readiness checks', () => {
  const view = (over: Partial<ConnectionView> = {}): ConnectionView => ({
    enabled: true,
    ready: { status: 'True', reason: 'Verified', message: '2 models exposed' },
    globsUnmatchable: 'the upstream does not list its models (ModelsEndpointUnsupported)',
    allowlists: new Map(),
    ...over,
  });
  const input = (over: Partial<AllowlistInput> = {}, exposure: Partial<AllowlistInput['exposure']> = {}) => ({
    namespace: 'ai',
    connectionName: 'c',
    connection: view(),
    exposure: { generation: 1, exposedModels: ['a'], missingModels: [], unmatchableGlobs: [], ...exposure },
    ...over,
  });

  it('connectionExists: no such connection → ConnectionNotFound', () => {
    expect(connectionExists(input())).toBeUndefined();
    expect(connectionExists(input({ connection: undefined }))).toMatchObject({
      reason: 'ConnectionNotFound',
      message: 'ProviderConnection "c" does not exist in namespace ai',
    });
  });

  it('connectionIsEnabled: a disabled connection → ConnectionDisabled', () => {
    expect(connectionIsEnabled(input())).toBeUndefined();
    expect(connectionIsEnabled(input({ connection: view({ enabled: false }) }))?.reason).toBe(
      'ConnectionDisabled',
    );
  });

  it('globsCanMatch: a glob without a model list → GlobNeedsModelList, saying why and what is served', () => {
    expect(globsCanMatch(input())).toBeUndefined();
    expect(globsCanMatch(input({}, { unmatchableGlobs: ['sonar-*'] }))?.message).toBe(
      '"sonar-*" can never match: the upstream does not list its models (ModelsEndpointUnsupported); replace it with the exact model IDs you use (the 1 exact IDs are exposed)',
    );
  });

  it('connectionServes: a connection that is not Ready and serves nothing of the list → ConnectionNotReady', () => {
    const down = view({ ready: { status: 'False', reason: 'Unauthorized', message: 'bad key' } });
    expect(connectionServes(input({ connection: down }))).toBeUndefined(); // still serves a stale list
    expect(connectionServes(input({ connection: down }, { exposedModels: [] }))).toMatchObject({
      reason: 'ConnectionNotReady',
      message: 'ProviderConnection "c" is not ready (Unauthorized): bad key',
    });
  });

  it('modelsPresent: IDs the upstream does not offer → ModelsMissing, naming ten of them', () => {
    expect(modelsPresent(input())).toBeUndefined();
    const missing = Array.from({ length: 12 }, (_, i) => `x${i}`);
    expect(modelsPresent(input({}, { missingModels: missing }))?.message).toBe(
      'the upstream does not offer 12 listed model(s): x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, ...',
    );
  });

  it('the chain runs in order: the list is judged by its own faults before its connection is', () => {
    expect(ALLOWLIST_READINESS.map((c) => c.name)).toEqual([
      'connectionExists',
      'connectionIsEnabled',
      'globsCanMatch',
      'connectionServes',
      'modelsPresent',
    ]);
    const down = view({ ready: { status: 'False', reason: 'Timeout', message: 'slow' } });
    const both = input({ connection: down }, { exposedModels: [], unmatchableGlobs: ['a-*'] });
    expect(firstFailure(ALLOWLIST_READINESS, both)?.check).toBe('globsCanMatch');
    const conditions = allowlistConditions(input(), 3);
    expect(conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
      ['ResolvedRefs', 'True', 'ConnectionFound', 3],
      ['Ready', 'True', 'ModelsExposed', 3],
    ]);
    expect(allowlistConditions(input({ connection: undefined }), 3).map((c) => [c.status, c.reason])).toEqual(
      [
        ['False', 'ConnectionNotFound'],
        ['False', 'ConnectionNotFound'],
      ],
    );
  });
});
