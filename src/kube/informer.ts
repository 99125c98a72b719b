import type { Logger } from 'pino';
import { type KubeClient, KubeError, type WatchEvent } from './client.ts';

export interface ObjectWithMeta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions {
  /** Collection path, e.g. /apis/plugboard.dev/v1alpha1/providerconnections or a namespaced one. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Ask for PartialObjectMetadata only (Secrets: react to changes without caching their data). */
  metadataOnly?: boolean;
  /** Watch request lifetime; the server ends it and the informer resumes from the last resourceVersion. */
  watchTimeoutSeconds?: number;
  /** Called with a readable message on every list/watch failure (before the retry). */
  onError?: (message: string) => void;
  /** Called after every successful list (the first, and each relist after a failure or 410). */
  onListed?: () => void;
}

const METADATA_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';
const METADATA_LIST_ACCEPT =
  'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

/** managedFields are often most of an object's bytes and no reconciler reads them; drop them from the cache. */
function slim<T extends ObjectWithMeta>(o: T): T {
  const m = o.metadata as { managedFields?: unknown } | undefined;
  if (m?.managedFields) delete m.managedFields;
  return o;
}

export function objectKey(o: ObjectWithMeta): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : (m.name ?? '');
}

/**
 * List-then-watch cache of one resource collection. Unlike the library informer it never gives up: a 410 Gone
 * relists, any other error (API server restart, network) retries with jittered exponential backoff, and a relist
 * reconciles the cache (emitting deletes for objects that vanished meanwhile), so no event is lost or invented.
 * Handlers receive the cached object: they must not mutate it.
 */
export class Informer<T extends ObjectWithMeta> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: ((event: InformerEvent, obj: T, old?: T) => void)[] = [];
  private readonly abort = new AbortController();
  private resourceVersion = '';
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private running: Promise<void> | undefined;
  private firstAttempt: Promise<void> | undefined;
  private firstAttemptDone: () => void = () => {};
  /** Retry delays in ms (jittered, doubling from `initial`); tests shorten them. */
  backoff = { initial: 200, max: 30_000 };
  /** performance.now() of the last list or watch event, for health checks. */
  lastActivity = 0;
  restarts = 0;

  private readonly client: KubeClient;
  private readonly opts: InformerOptions;
  private readonly log: Logger | undefined;

  constructor(client: KubeClient, opts: InformerOptions, log?: Logger) {
    this.client = client;
    this.opts = opts;
    this.log = log;
  }

  on(handler: (event: InformerEvent, obj: T, old?: T) => void): this {
    this.handlers.push(handler);
    return this;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  /** Starts list+watch; resolves after the first list attempt, whether it succeeded or not. */
  start(): Promise<void> {
    this.firstAttempt ??= new Promise<void>((resolve) => {
      this.firstAttemptDone = resolve;
    });
    this.running ??= this.run();
    return this.firstAttempt;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    this.firstAttemptDone();
  }

  private emit(event: InformerEvent, obj: T, old?: T) {
    for (const h of this.handlers) {
      try {
        h(event, obj, old);
      } catch (err) {
        this.log?.error({ err }, 'informer handler failed');
      }
    }
  }

  private selectors(): Record<string, string> {
    const p: Record<string, string> = {};
    if (this.opts.labelSelector) p.labelSelector = this.opts.labelSelector;
    if (this.opts.fieldSelector) p.fieldSelector = this.opts.fieldSelector;
    return p;
  }

  private async relist(): Promise<void> {
    const query = new URLSearchParams({ ...this.selectors(), limit: '500' });
    const seen = new Map<string, T>();
    let rv = '';
    let cont = '';
    do {
      if (cont) query.set('continue', cont);
      const page = await this.client.get<{
        metadata: { resourceVersion: string; continue?: string };
        items: T[] | null;
      }>(`${this.opts.path}?${query}`, {
        accept: this.opts.metadataOnly ? METADATA_LIST_ACCEPT : undefined,
        signal: this.abort.signal,
      });
      for (const item of page.items ?? []) seen.set(objectKey(item), slim(item)); // null when empty (Go nil slice)
      rv = page.metadata.resourceVersion;
      cont = page.metadata.continue ?? '';
    } while (cont);
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit('delete', old);
      }
    }
    for (const [key, obj] of seen) {
      const old = this.cache.get(key);
      this.cache.set(key, obj);
      if (!old) this.emit('add', obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.emit('update', obj, old);
    }
    this.resourceVersion = rv;
    this.lastActivity = performance.now();
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private onWatchEvent(ev: WatchEvent<T>) {
    this.lastActivity = performance.now();
    if (ev.type === 'ERROR') {
      const status = ev.object as unknown as { code?: number; reason?: string; message?: string };
      throw new KubeError(status.code ?? 0, status.reason ?? 'Unknown', status.message ?? 'watch error');
    }
    slim(ev.object);
    const rv = ev.object.metadata?.resourceVersion;
    if (ev.type === 'BOOKMARK') {
      if (rv) this.resourceVersion = rv;
      return;
    }
    const key = objectKey(ev.object);
    const old = this.cache.get(key);
    if (ev.type === 'DELETED') {
      this.cache.delete(key);
      this.emit('delete', ev.object);
    } else {
      this.cache.set(key, ev.object);
      this.emit(old ? 'update' : 'add', ev.object, old);
    }
    if (rv) this.resourceVersion = rv;
  }

  private async run(): Promise<void> {
    let failures = 0;
    let needList = true;
    while (!this.abort.signal.aborted) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
          this.firstAttemptDone();
          this.opts.onListed?.();
        }
        await this.client.watch<T>(
          this.opts.path,
          {
            ...this.selectors(),
            resourceVersion: this.resourceVersion,
            timeoutSeconds: String(this.opts.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 60)),
          },
          (ev) => this.onWatchEvent(ev),
          this.abort.signal,
          this.opts.metadataOnly ? METADATA_ACCEPT : undefined,
        );
        failures = 0;
      } catch (err) {
        if (this.abort.signal.aborted) break;
        if (KubeError.is(err, 410)) {
          this.log?.info({ path: this.opts.path }, 'watch expired (410 Gone); relisting');
          needList = true;
          continue;
        }
        failures++;
        this.restarts++;
        needList = true;
        this.firstAttemptDone();
        const base = Math.min(this.backoff.max, this.backoff.initial * 2 ** Math.min(failures - 1, 16));
        const delay = base * (0.5 + Math.random() / 2);
        const message = (err as Error).message;
        this.opts.onError?.(message);
        this.log?.warn(
          { path: this.opts.path, err: message, retryInMs: Math.round(delay) },
          'list/watch failed; retrying',
        );
        await sleep(delay, this.abort.signal);
      }
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
