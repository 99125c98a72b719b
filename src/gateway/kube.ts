import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeAuth } from '../kube/auth.ts';
import { KubeClient, KubeError } from '../kube/client.ts';
import { Informer, sleep } from '../kube/informer.ts';
import { decodeSnapshot, SNAPSHOT_DATA_KEY, SNAPSHOT_SECRET_NAME } from '../snapshot/codec.ts';
import type { Snapshot } from '../snapshot/schema.ts';
import {
  assembleSnapshot,
  readShardAnnotations,
  type ShardLayout,
  SnapshotShardError,
  shardChunk,
  shardSecretName,
} from '../snapshot/shards.ts';
import { ClientKeysHolder } from './client-keys.ts';
import { BaseSnapshotSource } from './snapshot-source.ts';

/** `ns/name` → parts (name defaults to `defaultName` when only a namespace is given). */
export function parseSecretRef(ref: string, defaultName?: string): { namespace: string; name: string } {
  const [namespace, name] = ref.includes('/') ? ref.split('/', 2) : [ref, defaultName];
  if (!namespace || !name) throw new Error(`expected <namespace>/<name>, got ${JSON.stringify(ref)}`);
  return { namespace, name };
}

interface SecretObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
}

/**
 * Watches exactly one Secret with the shared informer (list + watch with `fieldSelector=metadata.name=<name>`,
 * so RBAC can restrict the gateway to that Secret by resourceNames). Watches resume from the last
 * resourceVersion; 410 Gone relists; errors (API server restarts, network) retry with jittered backoff.
 */
export class SecretWatcher {
  private readonly informer: Informer<SecretObject>;
  /** Also for plain GETs of Secrets the same RBAC grants by name (the snapshot's shards). */
  readonly client: KubeClient;

  constructor(
    kc: KubeConfig | KubeAuth,
    namespace: string,
    name: string,
    onSecret: (s: SecretObject | undefined) => void,
    onError: (message: string) => void,
  ) {
    this.client = new KubeClient(kc);
    const key = `${namespace}/${name}`;
    this.informer = new Informer<SecretObject>(this.client, {
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`,
      fieldSelector: `metadata.name=${name}`,
      watchTimeoutSeconds: 240,
      onError: (m) => onError(`watching Secret ${namespace}/${name} failed: ${m}`),
      // After every list, also when nothing changed: a missing Secret is reported, and a failure is cleared
      // once the API server answers again.
      onListed: () => onSecret(this.informer.get(key)),
    });
    this.informer.on(() => onSecret(this.informer.get(key)));
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
 *
 * Only the root is watched. When it names shard Secrets (src/snapshot/shards.ts) they are fetched by name and
 * checked against the root's sha256; a mismatch or a missing shard means the operator is writing a newer
 * generation (shards before root), so the read is retried briefly; the newer root normally arrives meanwhile and
 * supersedes it. Each root event starts a new attempt and an older attempt never applies after it.
 */
export class KubernetesSnapshotSource extends BaseSnapshotSource {
  private readonly watcher: SecretWatcher;
  private readonly namespace: string;
  private readonly name: string;
  private readonly abort = new AbortController();
  /** What the applied snapshot was decoded from: the root's data, or the sha256 of a sharded stream. */
  private lastData: string | undefined;
  /** Bumped by every root event; an assembly started under an older value gives up. */
  private attempt = 0;
  /** Torn sharded reads: tries, and the first delay (doubling) between them. Tests shorten them. */
  readonly shardRetry = { attempts: 6, delayMs: 50 };

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name = SNAPSHOT_SECRET_NAME) {
    super(`secret:${namespace}/${name}`);
    this.namespace = namespace;
    this.name = name;
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
    this.abort.abort();
    return this.watcher.stop();
  }

  private onSecret(secret: SecretObject | undefined): void {
    const attempt = ++this.attempt;
    const where = `${this.namespace}/${this.name}`;
    if (!secret) {
      this.fail(`Secret ${where} does not exist (or was deleted); keeping the last good snapshot`);
      return;
    }
    const data = secret.data?.[SNAPSHOT_DATA_KEY];
    if (!data) {
      this.fail(`Secret ${where} has no ${SNAPSHOT_DATA_KEY}`);
      return;
    }
    let layout: ShardLayout;
    try {
      layout = readShardAnnotations(secret.metadata?.annotations);
    } catch (err) {
      this.fail(`Secret ${where}: ${(err as Error).message}`);
      return;
    }
    const identity = layout.sha256 ? `sha256:${layout.sha256}` : data;
    if (identity === this.lastData && this.snapshot && !this.state.lastError) return;
    if (!layout.sha256) {
      this.apply(where, () => decodeSnapshot(Buffer.from(data, 'base64')), identity);
      return;
    }
    void this.assemble(attempt, where, secret, identity);
  }

  private apply(where: string, decode: () => Snapshot, identity: string): void {
    try {
      const snapshot = decode();
      this.lastData = identity;
      this.accept(snapshot);
    } catch (err) {
      this.fail(`Secret ${where}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async assemble(
    attempt: number,
    where: string,
    root: SecretObject,
    identity: string,
  ): Promise<void> {
    const first = Buffer.from(root.data?.[SNAPSHOT_DATA_KEY] ?? '', 'base64');
    const { attempts, delayMs } = this.shardRetry;
    let problem = '';
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await sleep(delayMs * 2 ** (i - 1), this.abort.signal);
      if (attempt !== this.attempt || this.abort.signal.aborted) return;
      let bytes: Buffer;
      try {
        bytes = await assembleSnapshot(first, root.metadata?.annotations, (n) => this.fetchShard(n));
      } catch (err) {
        // Torn or missing shards, or a network error: all may pass, and the last good snapshot serves meanwhile.
        problem = (err as Error).message;
        continue;
      }
      if (attempt !== this.attempt) return;
      this.apply(where, () => decodeSnapshot(bytes), identity);
      return;
    }
    if (attempt === this.attempt && !this.abort.signal.aborted)
      this.fail(`Secret ${where}: ${problem} (after ${attempts} reads)`);
  }

  private async fetchShard(index: number): Promise<Buffer> {
    const name = shardSecretName(this.name, index);
    let s: SecretObject;
    try {
      s = await this.watcher.client.get<SecretObject>(
        `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/secrets/${encodeURIComponent(name)}`,
        { signal: this.abort.signal },
      );
    } catch (err) {
      if (KubeError.is(err, 404)) throw new SnapshotShardError(`shard Secret ${name} does not exist`);
      throw err;
    }
    return shardChunk(s, name);
  }
}

/** Client keys from a Secret (data key `keys.yaml`), kept current by a watch; a broken Secret keeps the last keys. */
/**
 * Client keys from a Secret (data key `keys.yaml`), watched by name: an edit applies as soon as the watch delivers
 * it; a malformed edit keeps the keys in use; a deleted Secret (or one without `keys.yaml`) revokes them all.
 * Watch failures (API server down) keep the keys in use and are reported.
 */
export class SecretClientKeys extends ClientKeysHolder {
  static readonly DATA_KEY = 'keys.yaml';
  private readonly watcher: SecretWatcher;

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name: string) {
    super();
    const ref = `${namespace}/${name}`;
    this.watcher = new SecretWatcher(
      kc,
      namespace,
      name,
      (s) => {
        if (!s) return this.gone(`the Secret ${ref} does not exist`);
        const data = s.data?.[SecretClientKeys.DATA_KEY];
        if (!data) return this.gone(`the Secret ${ref} has no ${SecretClientKeys.DATA_KEY}`);
        this.accept(
          Buffer.from(data, 'base64').toString('utf8'),
          `Secret ${ref} (${SecretClientKeys.DATA_KEY})`,
        );
      },
      (m) => this.failed(m),
    );
  }

  /** Milliseconds; tests shorten it. */
  get backoff(): { initial: number; max: number } {
    return this.watcher.backoff;
  }

  start(): Promise<void> {
    return this.watcher.start();
  }

  stop(): Promise<void> {
    return this.watcher.stop();
  }
}
