import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeAuth } from '../kube/auth.ts';
import { KubeClient } from '../kube/client.ts';
import { Informer } from '../kube/informer.ts';
import { decodeSnapshot, SNAPSHOT_DATA_KEY, SNAPSHOT_SECRET_NAME } from '../snapshot/codec.ts';
import { type ClientKeySet, type ClientKeysSource, parseClientKeys } from './client-keys.ts';
import { BaseSnapshotSource } from './snapshot-source.ts';

/** `ns/name` → parts (name defaults to `defaultName` when only a namespace is given). */
export function parseSecretRef(ref: string, defaultName?: string): { namespace: string; name: string } {
  const [namespace, name] = ref.includes('/') ? ref.split('/', 2) : [ref, defaultName];
  if (!namespace || !name) throw new Error(`expected <namespace>/<name>, got ${JSON.stringify(ref)}`);
  return { namespace, name };
}

interface SecretObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  data?: Record<string, string>;
}

/**
 * Watches exactly one Secret with the shared informer (list + watch with `fieldSelector=metadata.name=<name>`,
 * so RBAC can restrict the gateway to that Secret by resourceNames). Watches resume from the last
 * resourceVersion; 410 Gone relists; errors (API server restarts, network) retry with jittered backoff.
 */
export class SecretWatcher {
  private readonly informer: Informer<SecretObject>;
  private readonly client: KubeClient;

  constructor(
    kc: KubeConfig | KubeAuth,
    namespace: string,
    name: string,
    onSecret: (s: SecretObject | undefined) => void,
    onError: (message: string) => void,
  ) {
    this.client = new KubeClient(kc);
    this.informer = new Informer<SecretObject>(this.client, {
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
      fieldSelector: `metadata.name=${name}`,
      watchTimeoutSeconds: 240,
      onError: (m) => onError(`watching Secret ${namespace}/${name} failed: ${m}`),
    });
    const key = `${namespace}/${name}`;
    this.informer.on(() => onSecret(this.informer.get(key)));
    // The first list of a missing Secret emits nothing: report the absence once the list has run.
    void this.informer.waitForSync().then(() => {
      if (!this.informer.get(key)) onSecret(undefined);
    });
  }

  /** Milliseconds; tests shorten it. */
  get backoff(): { initial: number; max: number } {
    return this.informer.backoff;
  }

  /** Resolves after the first list (successful or not). */
  start(): Promise<void> {
    return this.informer.start();
  }

  async stop(): Promise<void> {
    await this.informer.stop();
    this.client.close();
  }
}

/**
 * The operator's snapshot Secret (`plugboard-snapshot`, data key `snapshot.json.gz`). A new generation applies
 * as soon as the watch delivers it; a corrupted or deleted Secret keeps the last good snapshot and is reported.
 */
export class KubernetesSnapshotSource extends BaseSnapshotSource {
  private readonly watcher: SecretWatcher;
  private lastData: string | undefined;

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name = SNAPSHOT_SECRET_NAME) {
    super(`secret:${namespace}/${name}`);
    this.watcher = new SecretWatcher(
      kc,
      namespace,
      name,
      (s) => this.onSecret(s),
      (m) => this.fail(m),
    );
  }

  get backoff(): { initial: number; max: number } {
    return this.watcher.backoff;
  }

  start(): Promise<void> {
    return this.watcher.start();
  }

  stop(): Promise<void> {
    return this.watcher.stop();
  }

  private onSecret(secret: SecretObject | undefined): void {
    const where = this.state.source.slice('secret:'.length);
    if (!secret) {
      this.fail(`Secret ${where} does not exist (or was deleted); keeping the last good snapshot`);
      return;
    }
    const data = secret.data?.[SNAPSHOT_DATA_KEY];
    if (!data) {
      this.fail(`Secret ${where} has no ${SNAPSHOT_DATA_KEY}`);
      return;
    }
    if (data === this.lastData && this.snapshot && !this.state.lastError) return;
    try {
      const snapshot = decodeSnapshot(Buffer.from(data, 'base64'));
      this.lastData = data;
      this.accept(snapshot);
    } catch (err) {
      this.fail(`Secret ${where}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** Client keys from a Secret (data key `keys.yaml`), kept current by a watch; a broken Secret keeps the last keys. */
export class SecretClientKeys implements ClientKeysSource {
  static readonly DATA_KEY = 'keys.yaml';
  private set: ClientKeySet | undefined;
  private error: string | undefined;
  private readonly watcher: SecretWatcher;

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name: string) {
    this.watcher = new SecretWatcher(
      kc,
      namespace,
      name,
      (s) => {
        const data = s?.data?.[SecretClientKeys.DATA_KEY];
        if (!data) {
          this.error = `Secret ${namespace}/${name} is missing or has no ${SecretClientKeys.DATA_KEY}`;
          return;
        }
        try {
          this.set = parseClientKeys(Buffer.from(data, 'base64').toString('utf8'));
          this.error = undefined;
        } catch (err) {
          this.error = `Secret ${namespace}/${name}: ${(err as Error).message}`;
        }
      },
      (m) => {
        this.error = m;
      },
    );
  }
  current(): ClientKeySet | undefined {
    return this.set;
  }
  lastError(): string | undefined {
    return this.error;
  }
  start(): Promise<void> {
    return this.watcher.start();
  }
  stop(): Promise<void> {
    return this.watcher.stop();
  }
}
