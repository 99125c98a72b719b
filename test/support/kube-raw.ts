import { request } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export interface RawResponse {
  status: number;
  body: unknown;
}

/**
 * A raw JSON API request with the kubeconfig's credentials. The typed clients serialise through their own models,
 * which silently drop keys they do not know (a CRD's `x-kubernetes-validations`, `default`, `enum`), and cannot ask
 * for Table output; this sends exactly the JSON given.
 */
export async function kubeRaw(
  kc: KubeConfig,
  method: string,
  path: string,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('kubeconfig has no current cluster');
  const options: Parameters<typeof request>[1] = { method, headers: { ...opts.headers } };
  await kc.applyToHTTPSOptions(options);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  if (payload) (options.headers as Record<string, string>)['content-type'] ??= 'application/json';
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server), options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}
