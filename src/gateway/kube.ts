import { CoreV1Api, KubeConfig, type V1Secret, Watch } from '@kubernetes/client-node';
import { decodeSnapshot, SNAPSHOT_DATA_KEY, SNAPSHOT_SECRET_NAME } from '../snapshot/codec.ts';
import { type ClientKeySet, type ClientKeysSource, parseClientKeys } from './client-keys.ts';
import { BaseSnapshotSource } from './snapshot-source.ts';

/** In cluster (KUBERNETES_SERVICE_HOST set): the service account; otherwise KUBECONFIG / ~/.kube/config. */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

/** `ns/name` → parts (name defaults to `defaultName` when only a namespace is given). */
export function parseSecretRef(ref: string, defaultName?: string): { namespace: string; name: string } {
  const [namespace, name] = ref.includes('/') ? ref.split('/', 2) : [ref, defaultName];
  if (!namespace || !name) throw new Error(`expected <namespace>/<name>, got ${JSON.stringify(ref)}`);
  return { namespace, name };
}

function errorText(err: unknown): string {
  if (!err) return 'unknown error';
  const e = err as { code?: number; statusCode?: number; body?: unknown; message?: string };
  const code = e.code ?? e.statusCode;
  let msg = e.message ?? String(err);
  if (typeof e.body === 'string') {
    try {
      msg = (JSON.parse(e.body) as { message?: string }).message ?? msg;
    } catch {
      // keep message
    }
  }
  return typeof code === 'number' ? `HTTP ${code}: ${msg}` : msg;
}

const isTimeout = (err: unknown) => (err as { name?: string })?.name === 'TimeoutError';

/**
 * Watches exactly one Secret: list + watch with `fieldSelector=metadata.name=<name>`, so RBAC can restrict the
 * gateway to that Secret by resourceNames (get/list/watch). Watches resume from the last resourceVersion;
 * 410 Gone relists; errors (API server restarts, network) retry with jittered exponential backoff.
 */
export class SecretWatcher {
  private readonly core: CoreV1Api;
  private readonly watch: Watch;
  private stopped = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly namespace: string;
  private readonly name: string;
  private readonly onSecret: (s: V1Secret | undefined) => void;
  private readonly onError: (message: string) => void;
  /** Milliseconds; tests shorten it. */
  backoff = { initial: 200, max: 30_000 };

  constructor(
    kc: KubeConfig,
    namespace: string,
    name: string,
    onSecret: (s: V1Secret | undefined) => void,
    onError: (message: string) => void,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.watch = new Watch(kc);
    this.namespace = namespace;
    this.name = name;
    this.onSecret = onSecret;
    this.onError = onError;
  }

  /** Resolves after the first list (successful or not). */
  start(): Promise<void> {
    return new Promise((resolve) => {
      this.loop = this.run(resolve);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(firstDone: () => void): Promise<void> {
    let delay = this.backoff.initial;
    const fieldSelector = `metadata.name=${this.name}`;
    while (!this.stopped) {
      try {
        const list = await this.core.listNamespacedSecret({ namespace: this.namespace, fieldSelector });
        if (this.stopped) break;
        this.onSecret(list.items[0]);
        firstDone();
        let rv = list.metadata?.resourceVersion;
        // watch until 410 Gone or an error; a clean end (server timeout) resumes from the last version
        for (;;) {
          const result = await this.watchOnce(fieldSelector, rv, (v) => {
            rv = v;
            delay = this.backoff.initial;
          });
          if (this.stopped || result === 'gone') break;
        }
      } catch (err) {
        if (this.stopped) break;
        this.onError(`watching Secret ${this.namespace}/${this.name} failed: ${errorText(err)}`);
        firstDone();
        const jittered = delay / 2 + Math.random() * delay;
        await new Promise<void>((r) => {
          this.wake = r;
          setTimeout(r, jittered).unref();
        });
        delay = Math.min(this.backoff.max, delay * 2);
      }
    }
    firstDone();
  }

  private watchOnce(
    fieldSelector: string,
    resourceVersion: string | undefined,
    progress: (rv: string | undefined) => void,
  ): Promise<'ended' | 'gone'> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (!settled) {
          settled = true;
          fn();
        }
      };
      this.watch
        .watch(
          `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/secrets`,
          { fieldSelector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 240 },
          (phase, obj) => {
            const o = obj as V1Secret & { code?: number; message?: string };
            if (phase === 'ERROR') {
              this.abort?.abort();
              if (o.code === 410) settle(() => resolve('gone'));
              else
                settle(() => reject(Object.assign(new Error(o.message ?? 'watch error'), { code: o.code })));
              return;
            }
            progress(o.metadata?.resourceVersion);
            if (phase === 'ADDED' || phase === 'MODIFIED') this.onSecret(o);
            else if (phase === 'DELETED') this.onSecret(undefined);
          },
          (err) => {
            if (!err || this.stopped || isTimeout(err)) settle(() => resolve('ended'));
            else settle(() => reject(err));
          },
        )
        .then(
          (ac) => {
            this.abort = ac;
            if (this.stopped) ac.abort();
          },
          (err) => settle(() => reject(err)),
        );
    });
  }
}

/**
 * The operator's snapshot Secret (`plugboard-snapshot`, data key `snapshot.json.gz`). A new generation applies
 * as soon as the watch delivers it; a corrupted or deleted Secret keeps the last good snapshot and is reported.
 */
export class KubernetesSnapshotSource extends BaseSnapshotSource {
  private readonly watcher: SecretWatcher;
  private lastData: string | undefined;

  constructor(kc: KubeConfig, namespace: string, name = SNAPSHOT_SECRET_NAME) {
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

  private onSecret(secret: V1Secret | undefined): void {
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

  constructor(kc: KubeConfig, namespace: string, name: string) {
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
