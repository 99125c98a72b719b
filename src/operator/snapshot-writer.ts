import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { type KubeClient, KubeError } from '../kube/client.ts';
import {
  assembleSnapshot,
  decodeSnapshot,
  encodeSnapshotAsync,
  GENERATION_ANNOTATION,
  MAX_SHARDS,
  readShardAnnotations,
  SHA256_ANNOTATION,
  SHARD_LABEL,
  SHARDS_ANNOTATION,
  SNAPSHOT_DATA_KEY,
  SNAPSHOT_FORMAT,
  SNAPSHOT_MAX_BYTES,
  type Snapshot,
  type SnapshotConnection,
  shardChunk,
  shardedCapacity,
  shardSecretName,
  snapshotSha256,
  splitSnapshot,
} from '../snapshot/index.ts';

interface SecretObject {
  metadata: {
    name: string;
    namespace: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
  };
  data?: Record<string, string>;
}

const LABELS = {
  'app.kubernetes.io/managed-by': 'plugboard-operator',
  'app.kubernetes.io/name': 'plugboard',
};
const METADATA_ACCEPT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json';

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
  /**
   * Largest gzip chunk per Secret (default SNAPSHOT_MAX_BYTES). A bigger snapshot is split over the root and up to
   * MAX_SHARDS shard Secrets; tests use a small size to shard small snapshots.
   */
  chunkBytes?: number;
  /** `secrets`: how many Secrets hold it (1 + shards). */
  onWritten?: (generation: number, bytes: number, secrets: number) => void;
}

/**
 * Compiles the per-connection entries into the snapshot Secret. Writes only when the content changed, at most
 * one write in flight, coalescing changes that arrive meanwhile; the generation continues from the Secret's.
 *
 * A snapshot over `chunkBytes` compressed is sharded (src/snapshot/shards.ts): shards first, each only when its
 * bytes changed, then the root, which makes the new generation visible; shards the new one no longer needs are
 * deleted last, highest first, so the shards on the server are always `1..n` without gaps.
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
  /** Highest shard Secret that may exist; undefined until probed (after a start or a failed delete). */
  private shardsOnServer: number | undefined;
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
    let shards = 0;
    try {
      const secret = await this.o.client.get<SecretObject>(this.path(this.o.name));
      const ann = Number(secret.metadata.annotations?.[GENERATION_ANNOTATION] ?? 0);
      this.generation = Number.isFinite(ann) ? ann : 0;
      const data = secret.data?.[SNAPSHOT_DATA_KEY];
      if (!data) return undefined;
      shards = readShardAnnotations(secret.metadata.annotations).shards;
      const bytes = await assembleSnapshot(Buffer.from(data, 'base64'), secret.metadata.annotations, (i) =>
        this.readShard(i),
      );
      const snapshot = decodeSnapshot(bytes);
      this.generation = Math.max(this.generation, snapshot.generation);
      for (const c of snapshot.connections) this.entries.set(`${c.namespace}/${c.name}`, c);
      this.writtenHash = this.hash();
      return snapshot;
    } catch (err) {
      if (KubeError.is(err, 404)) return undefined;
      // A corrupted snapshot is replaced by a fresh one compiled from the API; keep the generation moving up.
      this.o.log.warn({ err: (err as Error).message }, 'existing snapshot unreadable; it will be rebuilt');
      return undefined;
    } finally {
      // Shards a crash left behind (beyond what the root names) would keep old keys around: remove them now.
      await this.trimShards(shards);
    }
  }

  private async readShard(index: number): Promise<Buffer> {
    const name = shardSecretName(this.o.name, index);
    return shardChunk(await this.o.client.get<SecretObject>(this.path(name)), name);
  }

  has(key: string): boolean {
    return this.entries.has(key);
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

  /**
   * Writes the snapshot if the server lacks this content, even with no connections at all: gateways are Ready only
   * once a snapshot exists, so a fresh install must get one before its first connection. A loaded, unchanged
   * snapshot is not rewritten.
   */
  sync(): void {
    this.schedule();
  }

  /** Resolves once everything set so far has been written (or failed). */
  async flush(): Promise<void> {
    // A change that arrives during a write gets a write of its own after it (a new timer): wait for that one too.
    // After a failed write it returns; the writer retries on its own.
    for (;;) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
        await this.write();
      } else if (this.writing) {
        await this.writing;
      } else return;
      if (this.lastError || this.stopped) return;
    }
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
  /** How long the last write took; a snapshot of tens of MiB takes seconds to compress and send. */
  private lastWriteMs = 0;

  private schedule() {
    if (this.stopped || this.timer) return;
    const sinceLast = performance.now() - this.lastWriteAt;
    // Writes are at least as far apart as they take, so a huge snapshot occupies the operator half the time at most.
    const interval = Math.max(this.o.minIntervalMs ?? 250, this.lastWriteMs);
    const delay = Math.max(this.o.debounceMs ?? 20, interval - sinceLast);
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
    const started = performance.now();
    this.writing = this.doWrite().finally(() => {
      this.lastWriteMs = performance.now() - started;
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
    const bytes = await encodeSnapshotAsync(snapshot);
    const chunkBytes = this.o.chunkBytes ?? SNAPSHOT_MAX_BYTES;
    if (bytes.length > shardedCapacity(chunkBytes)) {
      this.lastError = `snapshot is ${bytes.length} bytes compressed, over the ${shardedCapacity(chunkBytes)} that ${MAX_SHARDS + 1} Secrets can hold; add ModelAllowlists to large connections`;
      this.o.log.error({ bytes: bytes.length }, this.lastError);
      return;
    }
    const chunks = splitSnapshot(bytes, chunkBytes);
    const shards = chunks.length - 1;
    const annotations: Record<string, string> = { [GENERATION_ANNOTATION]: String(generation) };
    if (shards > 0) {
      annotations[SHARDS_ANNOTATION] = String(shards);
      annotations[SHA256_ANNOTATION] = snapshotSha256(bytes);
    }
    try {
      let rewritten = 0;
      for (let i = 1; i <= shards; i++) {
        const name = shardSecretName(this.o.name, i);
        const labels = { ...LABELS, [SHARD_LABEL]: String(i) };
        if (await this.upsert(name, {}, labels, chunks[i] as Buffer, true)) rewritten++;
      }
      if (this.shardsOnServer !== undefined) this.shardsOnServer = Math.max(this.shardsOnServer, shards);
      await this.upsert(this.o.name, annotations, LABELS, chunks[0] as Buffer, false);
      this.generation = generation;
      this.writtenHash = hash;
      this.lastError = undefined;
      this.lastSyncAt = Date.now();
      this.o.onWritten?.(generation, bytes.length, chunks.length);
      this.o.log.info(
        {
          generation,
          bytes: bytes.length,
          connections: snapshot.connections.length,
          secrets: chunks.length,
          ...(shards > 0 ? { shardsRewritten: rewritten } : {}),
        },
        'snapshot written',
      );
    } catch (err) {
      this.lastError = (err as Error).message;
      this.shardsOnServer = undefined; // a failed create may still have happened: probe before the next trim
      this.o.log.warn({ err: this.lastError }, 'snapshot write failed; retrying');
      this.again = true;
      await new Promise((r) => setTimeout(r, 500));
      return;
    }
    await this.trimShards(shards);
  }

  /**
   * Creates or replaces one Secret of the snapshot. With `skipSame`, leaves it alone when it already holds these
   * bytes (unchanged shards cost no etcd write); returns whether it wrote.
   */
  private async upsert(
    name: string,
    annotations: Record<string, string>,
    labels: Record<string, string>,
    chunk: Buffer,
    skipSame: boolean,
  ): Promise<boolean> {
    const data = chunk.toString('base64');
    const body: SecretObject & Record<string, unknown> = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name, namespace: this.o.namespace, annotations, labels },
      data: { [SNAPSHOT_DATA_KEY]: data },
    };
    try {
      const existing = await this.o.client.get<SecretObject>(this.path(name));
      if (skipSame && existing.data?.[SNAPSHOT_DATA_KEY] === data) return false;
      body.metadata.resourceVersion = existing.metadata.resourceVersion;
      await this.o.client.request('PUT', this.path(name), { body });
    } catch (err) {
      if (!KubeError.is(err, 404)) throw err;
      await this.o.client.request('POST', this.path(), { body });
    }
    return true;
  }

  /**
   * Deletes shard Secrets above `keep`, highest first. When it is not known how many exist (after a start, or a
   * failed delete) it probes upwards with metadata-only GETs: shards are written upwards and deleted downwards,
   * so they are always a gap-free `1..n`. A failure is logged and retried after the next write.
   */
  private async trimShards(keep: number): Promise<void> {
    try {
      let top = this.shardsOnServer;
      if (top === undefined) {
        top = keep;
        while (top < MAX_SHARDS && (await this.shardExists(top + 1))) top++;
      }
      for (; top > keep; top--) {
        try {
          await this.o.client.request('DELETE', this.path(shardSecretName(this.o.name, top)));
        } catch (err) {
          if (!KubeError.is(err, 404)) throw err;
        }
      }
      this.shardsOnServer = keep;
    } catch (err) {
      this.shardsOnServer = undefined;
      this.o.log.warn({ err: (err as Error).message }, 'could not delete unused snapshot shard Secrets');
    }
  }

  private async shardExists(index: number): Promise<boolean> {
    try {
      await this.o.client.get(this.path(shardSecretName(this.o.name, index)), { accept: METADATA_ACCEPT });
      return true;
    } catch (err) {
      if (KubeError.is(err, 404)) return false;
      throw err;
    }
  }
}
