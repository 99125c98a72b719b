import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeAuth } from '../kube/auth.ts';
import { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import type { Feed, Reading } from './watched-value.ts';

/** `ns/name` → parts (name defaults to `defaultName` when only a namespace is given). */
export function parseSecretRef(ref: string, defaultName?: string): { namespace: string; name: string } {
  const [namespace, name] = ref.includes('/') ? ref.split('/', 2) : [ref, defaultName];
  if (!namespace || !name) throw new Error(`expected <namespace>/<name>, got ${JSON.stringify(ref)}`);
  return { namespace, name };
}

export interface SecretObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
}

/**
 * One Secret, followed by name with the shared informer (list + watch with `fieldSelector=metadata.name=<name>`,
 * so RBAC can restrict the gateway to that Secret by `resourceNames`). Watches resume from the last
 * resourceVersion; 410 Gone relists; failures (API server restarts, network) are reported and retried with
 * jittered backoff. After every list the Secret is reported again, so a missing one is reported and a failure
 * is cleared once the API server answers, even when nothing changed.
 */
export class SecretFeed implements Feed<SecretObject> {
  readonly source: string;
  /** Also for plain GETs of Secrets the same RBAC grants by name (the snapshot's shards). */
  readonly client: KubeClient;
  readonly namespace: string;
  readonly name: string;
  private readonly informer: Informer<SecretObject>;
  private report: ((r: Reading<SecretObject>) => void) | undefined;

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name: string) {
    this.namespace = namespace;
    this.name = name;
    this.source = `secret:${namespace}/${name}`;
    this.client = new KubeClient(kc);
    const key = `${namespace}/${name}`;
    const emit = () => {
      const s = this.informer.get(key);
      this.report?.(
        s ? { kind: 'value', value: s } : { kind: 'gone', why: `the Secret ${key} does not exist` },
      );
    };
    this.informer = new Informer<SecretObject>(this.client, {
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
      fieldSelector: `metadata.name=${name}`,
      watchTimeoutSeconds: 240,
      onError: (m) => this.report?.({ kind: 'failed', why: `watching the Secret ${key} failed: ${m}` }),
      onListed: emit,
    });
    this.informer.on(emit);
  }

  /** Milliseconds; tests shorten it. */
  get backoff(): { initial: number; max: number } {
    return this.informer.backoff;
  }

  start(report: (r: Reading<SecretObject>) => void): Promise<void> {
    this.report = report;
    return this.informer.start();
  }

  async stop(): Promise<void> {
    this.report = undefined;
    await this.informer.stop();
    this.client.close();
  }
}

/** Two readings of a Secret are the same when its resourceVersion is. */
export const secretIdentity = (s: SecretObject): unknown => s.metadata?.resourceVersion ?? s;

/** A Secret's data value, decoded; undefined when the key is missing. */
export function secretData(s: SecretObject, key: string): Buffer | undefined {
  const v = s.data?.[key];
  return v === undefined ? undefined : Buffer.from(v, 'base64');
}
