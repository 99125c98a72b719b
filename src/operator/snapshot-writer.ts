import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { type KubeClient, KubeError } from '../kube/client.ts';
import {
  decodeSnapshot,
  encodeSnapshot,
  GENERATION_ANNOTATION,
  SNAPSHOT_DATA_KEY,
  SNAPSHOT_FORMAT,
  SNAPSHOT_MAX_BYTES,
  type Snapshot,
  type SnapshotConnection,
} from '../snapshot/index.ts';

interface SecretObject {
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  data?: Record<string, string>;
}

export interface SnapshotWriterOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  log: Logger;
  /** Coalesces bursts of changes into one write. */
  debounceMs?: number;
  /**
   * Least time between two writes: during a burst (1,000 connections verified at start-up) the snapshot is
   * rewritten a few times a second rather than after every reconcile, which bounds the operator's CPU and heap.
   */
  minIntervalMs?: number;
  onWritten?: (generation: number, bytes: number) => void;
}

/**
 * Compiles the per-connection entries into the snapshot Secret. Writes only when the content changed, at most
 * one write in flight, coalescing changes that arrive meanwhile; the generation continues from the Secret's.
 */
export class SnapshotWriter {
  private readonly o: SnapshotWriterOptions;
  private readonly entries = new Map<string, SnapshotConnection>();
  private generation = 0;
  private writtenHash = '';
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  lastError: string | undefined;
  lastSyncAt = 0;

  constructor(o: SnapshotWriterOptions) {
    this.o = o;
  }

  get currentGeneration(): number {
    return this.generation;
  }

  /** Loads the existing snapshot so a restarted operator keeps serving what was there and continues its generation. */
  async load(): Promise<Snapshot | undefined> {
    try {
      const secret = await this.o.client.get<SecretObject>(this.path(this.o.name));
      const ann = Number(secret.metadata.annotations?.[GENERATION_ANNOTATION] ?? 0);
      this.generation = Number.isFinite(ann) ? ann : 0;
      const data = secret.data?.[SNAPSHOT_DATA_KEY];
      if (!data) return undefined;
      const snapshot = decodeSnapshot(Buffer.from(data, 'base64'));
      this.generation = Math.max(this.generation, snapshot.generation);
      for (const c of snapshot.connections) this.entries.set(`${c.namespace}/${c.name}`, c);
      this.writtenHash = this.hash();
      return snapshot;
    } catch (err) {
      if (KubeError.is(err, 404)) return undefined;
      // A corrupted snapshot is replaced by a fresh one compiled from the API; keep the generation moving up.
      this.o.log.warn({ err: (err as Error).message }, 'existing snapshot unreadable; it will be rebuilt');
      return undefined;
    }
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  set(key: string, entry: SnapshotConnection): void {
    this.entries.set(key, entry);
    this.schedule();
  }

  delete(key: string): void {
    if (this.entries.delete(key)) this.schedule();
  }

  /** Resolves once everything set so far has been written (or failed). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.write();
    }
    while (this.writing) await this.writing;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private path(name?: string) {
    return `/api/v1/namespaces/${this.o.namespace}/secrets${name ? `/${name}` : ''}`;
  }

  private hash(): string {
    const h = createHash('sha256');
    for (const key of [...this.entries.keys()].sort()) h.update(JSON.stringify(this.entries.get(key)));
    return h.digest('hex');
  }

  private lastWriteAt = 0;

  private schedule() {
    if (this.stopped || this.timer) return;
    const sinceLast = performance.now() - this.lastWriteAt;
    const delay = Math.max(this.o.debounceMs ?? 20, (this.o.minIntervalMs ?? 250) - sinceLast);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write();
    }, delay);
  }

  private async write(): Promise<void> {
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = this.doWrite().finally(() => {
      this.writing = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        this.schedule();
      }
    });
    return this.writing;
  }

  private async doWrite(): Promise<void> {
    const hash = this.hash();
    if (hash === this.writtenHash) return;
    this.lastWriteAt = performance.now();
    const generation = this.generation + 1;
    const snapshot: Snapshot = {
      format: SNAPSHOT_FORMAT,
      generation,
      generatedAt: new Date().toISOString(),
      connections: [...this.entries.keys()].sort().map((k) => this.entries.get(k) as SnapshotConnection),
    };
    const bytes = encodeSnapshot(snapshot);
    if (bytes.length > SNAPSHOT_MAX_BYTES) {
      this.lastError = `snapshot is ${bytes.length} bytes compressed, over the ${SNAPSHOT_MAX_BYTES} a Secret can hold; add ModelAllowlists to large connections`;
      this.o.log.error({ bytes: bytes.length }, this.lastError);
      return;
    }
    const body: SecretObject & Record<string, unknown> = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: this.o.name,
        namespace: this.o.namespace,
        annotations: { [GENERATION_ANNOTATION]: String(generation) },
        labels: {
          'app.kubernetes.io/managed-by': 'plugboard-operator',
          'app.kubernetes.io/name': 'plugboard',
        },
      } as SecretObject['metadata'],
      data: { [SNAPSHOT_DATA_KEY]: bytes.toString('base64') },
    };
    try {
      try {
        const existing = await this.o.client.get<SecretObject>(this.path(this.o.name));
        body.metadata.resourceVersion = existing.metadata.resourceVersion;
        await this.o.client.request('PUT', this.path(this.o.name), { body });
      } catch (err) {
        if (!KubeError.is(err, 404)) throw err;
        await this.o.client.request('POST', this.path(), { body });
      }
      this.generation = generation;
      this.writtenHash = hash;
      this.lastError = undefined;
      this.lastSyncAt = Date.now();
      this.o.onWritten?.(generation, bytes.length);
      this.o.log.info(
        { generation, bytes: bytes.length, connections: snapshot.connections.length },
        'snapshot written',
      );
    } catch (err) {
      this.lastError = (err as Error).message;
      this.o.log.warn({ err: this.lastError }, 'snapshot write failed; retrying');
      this.again = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
