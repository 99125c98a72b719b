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
  SNAPSHOT_MAX_BYTES,
  type Snapshot,
  shardChunk,
  shardedCapacity,
  shardSecretName,
  snapshotSha256,
  splitSnapshot,
} from '../snapshot/index.ts';
import {
  SnapshotCompiler,
  type SnapshotCompilerOptions,
  SnapshotRefused,
  type SnapshotSink,
} from './snapshot-compiler.ts';

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

export interface SnapshotWriterOptions extends Omit<SnapshotCompilerOptions, 'sink' | 'log'> {
  client: KubeClient;
  namespace: string;
  name: string;
  log: Logger;
  /**
   * Largest gzip chunk per Secret (default SNAPSHOT_MAX_BYTES). A bigger snapshot is split over the root and up to
   * MAX_SHARDS shard Secrets; tests use a small size to shard small snapshots.
   */
  chunkBytes?: number;
}

/** The snapshot compiler writing to the snapshot Secret(s): what the operator runs. */
export class SnapshotWriter extends SnapshotCompiler {
  constructor(o: SnapshotWriterOptions) {
    super({ ...o, sink: new SecretSnapshotSink(o) });
  }
}

/**
 * Stores snapshots in Secret `name` of `namespace`. A snapshot over `chunkBytes` compressed is sharded
 * (src/snapshot/shards.ts): shards first, each only when its bytes changed, then the root, which makes the new
 * generation visible; shards the new one no longer needs are deleted last, highest first, so the shards on the
 * server are always `1..n` without gaps.
 */
export class SecretSnapshotSink implements SnapshotSink {
  private readonly o: SnapshotWriterOptions;
  /** Highest shard Secret that may exist; undefined until probed (after a start or a failed delete). */
  private shardsOnServer: number | undefined;

  constructor(o: SnapshotWriterOptions) {
    this.o = o;
  }

  /** The root Secret's generation and, when it can be read and verified, its snapshot. */
  async load(): Promise<{ generation: number; snapshot?: Snapshot } | undefined> {
    let shards = 0;
    let generation = 0;
    try {
      const secret = await this.o.client.get<SecretObject>(this.path(this.o.name));
      const ann = Number(secret.metadata.annotations?.[GENERATION_ANNOTATION] ?? 0);
      generation = Number.isFinite(ann) ? ann : 0;
      const data = secret.data?.[SNAPSHOT_DATA_KEY];
      if (!data) return { generation };
      shards = readShardAnnotations(secret.metadata.annotations).shards;
      const bytes = await assembleSnapshot(Buffer.from(data, 'base64'), secret.metadata.annotations, (i) =>
        this.readShard(i),
      );
      return { generation, snapshot: decodeSnapshot(bytes) };
    } catch (err) {
      if (KubeError.is(err, 404)) return undefined;
      // A corrupted snapshot is replaced by a fresh one compiled from the API; keep the generation moving up.
      this.o.log.warn({ err: (err as Error).message }, 'existing snapshot unreadable; it will be rebuilt');
      return { generation };
    } finally {
      // Shards a crash left behind (beyond what the root names) would keep old keys around: remove them now.
      await this.trimShards(shards);
    }
  }

  private async readShard(index: number): Promise<Buffer> {
    const name = shardSecretName(this.o.name, index);
    return shardChunk(await this.o.client.get<SecretObject>(this.path(name)), name);
  }

  private path(name?: string) {
    return `/api/v1/namespaces/${this.o.namespace}/secrets${name ? `/${name}` : ''}`;
  }

  async write(snapshot: Snapshot): Promise<{ bytes: number; secrets: number }> {
    const bytes = await encodeSnapshotAsync(snapshot);
    const chunkBytes = this.o.chunkBytes ?? SNAPSHOT_MAX_BYTES;
    if (bytes.length > shardedCapacity(chunkBytes)) {
      throw new SnapshotRefused(
        `snapshot is ${bytes.length} bytes compressed, over the ${shardedCapacity(chunkBytes)} that ${MAX_SHARDS + 1} Secrets can hold; add ModelAllowlists to large connections`,
        { bytes: bytes.length },
      );
    }
    const chunks = splitSnapshot(bytes, chunkBytes);
    const shards = chunks.length - 1;
    const annotations: Record<string, string> = { [GENERATION_ANNOTATION]: String(snapshot.generation) };
    if (shards > 0) {
      annotations[SHARDS_ANNOTATION] = String(shards);
      annotations[SHA256_ANNOTATION] = snapshotSha256(bytes);
    }
    let rewritten = 0;
    try {
      for (let i = 1; i <= shards; i++) {
        const name = shardSecretName(this.o.name, i);
        const labels = { ...LABELS, [SHARD_LABEL]: String(i) };
        if (await this.upsert(name, {}, labels, chunks[i] as Buffer, true)) rewritten++;
      }
      if (this.shardsOnServer !== undefined) this.shardsOnServer = Math.max(this.shardsOnServer, shards);
      await this.upsert(this.o.name, annotations, LABELS, chunks[0] as Buffer, false);
    } catch (err) {
      this.shardsOnServer = undefined; // a failed create may still have happened: probe before the next trim
      throw err;
    }
    this.o.log.info(
      {
        generation: snapshot.generation,
        bytes: bytes.length,
        connections: snapshot.connections.length,
        secrets: chunks.length,
        ...(shards > 0 ? { shardsRewritten: rewritten } : {}),
      },
      'snapshot written',
    );
    await this.trimShards(shards);
    return { bytes: bytes.length, secrets: chunks.length };
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
