import type { JsonWebKey } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import type { TrustedIssuer } from '../../src/mock-provider/index.ts';
import { kubeRaw } from './kube-raw.ts';

/**
 * The test cluster's service account issuer, as an identity provider trusts it: the issuer from the API
 * server's OIDC discovery document and the keys from its JWKS, read with the test's credentials (a cloud reads
 * them from the public issuer URL). So the simulated identity providers verify the real signatures of tokens
 * from the real TokenRequest API.
 */
export async function clusterIssuer(kc: KubeConfig): Promise<TrustedIssuer> {
  const discovery = await kubeRaw(kc, 'GET', '/.well-known/openid-configuration');
  if (discovery.status !== 200) throw new Error(`OIDC discovery failed: HTTP ${discovery.status}`);
  const { issuer } = discovery.body as { issuer: string };
  return {
    issuer,
    jwks: async () => {
      // The API server serves its keys here whatever jwks_uri says (which may point at a public copy).
      const res = await kubeRaw(kc, 'GET', '/openid/v1/jwks');
      if (res.status !== 200) throw new Error(`JWKS failed: HTTP ${res.status}`);
      return res.body as { keys: JsonWebKey[] };
    },
  };
}

export async function createServiceAccount(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  const res = await kubeRaw(kc, 'POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, {
    body: { metadata: { name } },
  });
  if (res.status >= 300) throw new Error(`creating ServiceAccount ${name}: HTTP ${res.status}`);
}
