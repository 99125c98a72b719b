/**
 * A small JSON client for the Kubernetes API on top of @kubernetes/client-node's KubeConfig (which handles
 * kubeconfig files, in-cluster service accounts, exec plugins and token refresh).
 *
 * Why not the library's typed clients and informer here: the typed clients serialise through their models and
 * silently drop fields they do not know (a custom object's status is `object`, but a CRD's schema loses
 * `x-kubernetes-validations`), their errors keep the body as a raw string, and the informer stops for good on
 * any error but 410 without backing off. This client sends exactly the JSON given, keeps one keep-alive agent,
 * normalises every failure into KubeError, and streams watches with an AbortSignal.
 */

import { request as httpRequest } from 'node:http';
import { Agent, type RequestOptions, request } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { isKubeAuth, type KubeAuth, kubeConfigAuth } from './auth.ts';

export class KubeError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.name = 'KubeError';
    this.code = code;
    this.reason = reason;
  }
  static is(err: unknown, code: number): boolean {
    return err instanceof KubeError && err.code === code;
  }
}

export interface KubeRequest {
  body?: unknown;
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export class KubeClient {
  readonly server: string;
  private readonly auth: KubeAuth;
  private agent: Agent | undefined;

  constructor(config: KubeConfig | KubeAuth) {
    this.auth = isKubeAuth(config) ? config : kubeConfigAuth(config);
    this.server = this.auth.server.replace(/\/+$/, '');
  }

  private async options(method: string, headers: Record<string, string>): Promise<RequestOptions> {
    const auth = await this.auth.headers();
    // One keep-alive agent with the cluster's TLS settings (known once the credentials were first applied).
    const tls = this.auth.tls;
    this.agent ??= new Agent({ keepAlive: true, maxSockets: 64, ...tls });
    return {
      method,
      headers: { ...headers, ...auth },
      agent: this.server.startsWith('https:') ? this.agent : undefined,
    };
  }

  async request<T = unknown>(method: string, path: string, req: KubeRequest = {}): Promise<T> {
    const headers: Record<string, string> = { accept: req.accept ?? 'application/json' };
    const payload = req.body === undefined ? undefined : JSON.stringify(req.body);
    if (payload !== undefined) headers['content-type'] = req.contentType ?? 'application/json';
    const opts = await this.options(method, headers);
    const url = new URL(this.server + path);
    const send = url.protocol === 'https:' ? request : httpRequest;
    return new Promise<T>((resolve, reject) => {
      const r = send(url, { ...opts, signal: req.signal, timeout: req.timeoutMs ?? 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve((text ? JSON.parse(text) : undefined) as T);
          } else {
            reject(statusError(status, text, `${method} ${path}`));
          }
        });
      });
      r.on('timeout', () => r.destroy(new KubeError(0, 'Timeout', `${method} ${path}: timed out`)));
      r.on('error', (err) =>
        reject(
          err instanceof KubeError
            ? err
            : new KubeError(0, 'NetworkError', `${method} ${path}: ${err.message}`),
        ),
      );
      r.end(payload);
    });
  }

  get<T>(path: string, req?: KubeRequest) {
    return this.request<T>('GET', path, req);
  }

  /**
   * Streams a watch until the server ends it, the signal aborts, or `timeoutSeconds` passes. Resolves when the
   * stream ends; rejects on HTTP errors (a 410 Gone arrives either as a status or as an ERROR event).
   */
  async watch<T>(
    path: string,
    params: Record<string, string>,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
    accept?: string,
  ): Promise<void> {
    const query = new URLSearchParams({ ...params, watch: '1', allowWatchBookmarks: 'true' });
    const opts = await this.options('GET', { accept: accept ?? 'application/json' });
    const url = new URL(`${this.server}${path}?${query}`);
    const send = url.protocol === 'https:' ? request : httpRequest;
    await new Promise<void>((resolve, reject) => {
      const r = send(url, { ...opts, signal }, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => reject(statusError(status, text, `watch ${path}`)));
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl = buffered.indexOf('\n');
          while (nl >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line) {
              try {
                onEvent(JSON.parse(line) as WatchEvent<T>);
              } catch (err) {
                r.destroy(err as Error);
                return;
              }
            }
            nl = buffered.indexOf('\n');
          }
        });
        res.on('end', resolve);
        res.on('error', (err) => (signal.aborted ? resolve() : reject(err)));
      });
      r.on('error', (err) =>
        signal.aborted
          ? resolve()
          : // A 410 (or other Status) thrown from an ERROR event keeps its code, so callers can relist at once.
            reject(
              err instanceof KubeError
                ? err
                : new KubeError(0, 'NetworkError', `watch ${path}: ${err.message}`),
            ),
      );
      r.end();
    });
  }

  close() {
    this.agent?.destroy();
  }
}

function statusError(status: number, text: string, what: string): KubeError {
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    return new KubeError(status, s.reason ?? 'Unknown', `${what}: ${s.message ?? text}`);
  } catch {
    return new KubeError(status, 'Unknown', `${what}: HTTP ${status} ${text.slice(0, 200)}`);
  }
}

/** API path for a resource collection or object. Core group has an empty group. */
export function resourcePath(r: {
  group: string;
  version: string;
  plural: string;
  namespace?: string;
  name?: string;
  subresource?: string;
}): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespace ? `/namespaces/${r.namespace}` : '';
  const name = r.name ? `/${r.name}` : '';
  const sub = r.subresource ? `/${r.subresource}` : '';
  return `${base}${ns}/${r.plural}${name}${sub}`;
}
