import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';

/** How to reach and authenticate to the API server: what KubeClient needs, nothing more. */
export interface KubeAuth {
  /** Where the credentials come from, for logs: `service account` or `kubeconfig`. */
  source: string;
  server: string;
  tls: {
    ca?: string | Buffer;
    cert?: string | Buffer;
    key?: string | Buffer;
    rejectUnauthorized?: boolean;
    servername?: string;
  };
  /** Headers for one request; called per request because tokens rotate. */
  headers(): Promise<Record<string, string>>;
}

export const SERVICE_ACCOUNT_DIR =
  process.env.PLUGBOARD_SERVICEACCOUNT_DIR ?? '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * In a pod: the API server from KUBERNETES_SERVICE_HOST/PORT, the projected service-account token (re-read when
 * the kubelet rotates it, as client-go does) and the cluster CA. Undefined outside a cluster.
 */
export function inClusterAuth(dir = SERVICE_ACCOUNT_DIR): KubeAuth | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  const tokenFile = join(dir, 'token');
  if (!host) return undefined;
  let token = '';
  let mtime = -1;
  let checkedAt = 0;
  const read = () => {
    const now = Date.now();
    if (now - checkedAt < 10_000 && token) return token;
    checkedAt = now;
    const m = statSync(tokenFile).mtimeMs;
    if (m !== mtime) {
      token = readFileSync(tokenFile, 'utf8').trim();
      mtime = m;
    }
    return token;
  };
  return {
    source: 'service account',
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    tls: { ca: readFileSync(join(dir, 'ca.crt')) },
    headers: async () => ({ authorization: `Bearer ${read()}` }),
  };
}

/** Any kubeconfig (files, exec plugins, client certificates, OIDC): delegated to @kubernetes/client-node. */
export function kubeConfigAuth(kc: KubeConfig): KubeAuth {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the kubeconfig has no current cluster');
  const probe: Parameters<KubeConfig['applyToHTTPSOptions']>[0] & Record<string, unknown> = {};
  return {
    source: 'kubeconfig',
    server,
    get tls() {
      return {
        ca: probe.ca as Buffer | undefined,
        cert: probe.cert as Buffer | undefined,
        key: probe.key as Buffer | undefined,
        rejectUnauthorized: probe.rejectUnauthorized as boolean | undefined,
        servername: probe.servername as string | undefined,
      };
    },
    async headers() {
      const opts: { headers?: Record<string, string> } & Record<string, unknown> = { headers: {} };
      await kc.applyToHTTPSOptions(opts);
      Object.assign(probe, opts);
      return opts.headers ?? {};
    },
  };
}

export function isKubeAuth(x: KubeConfig | KubeAuth): x is KubeAuth {
  return typeof (x as KubeAuth).headers === 'function' && typeof (x as KubeAuth).server === 'string';
}

/**
 * In a pod, the service account without loading @kubernetes/client-node (its generated API is ~80 MiB of
 * resident memory, most of an operator's footprint); elsewhere KUBECONFIG or ~/.kube/config through it.
 */
export async function loadKubeAuth(): Promise<KubeAuth> {
  const inCluster = inClusterAuth();
  if (inCluster) return inCluster;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return kubeConfigAuth(kc);
}
