import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeAuth } from '../kube/auth.ts';
import { KubeError } from '../kube/client.ts';
import { sleep } from '../kube/informer.ts';
import { decodeSnapshot, SNAPSHOT_DATA_KEY, SNAPSHOT_SECRET_NAME } from '../snapshot/codec.ts';
import { Snapshot } from '../snapshot/schema.ts';
import {
  assembleSnapshot,
  readShardAnnotations,
  SHA256_ANNOTATION,
  SnapshotShardError,
  shardChunk,
  shardSecretName,
} from '../snapshot/shards.ts';
import { bytesIdentity, FileFeed } from './file-feed.ts';
import { parseJsonOrYaml } from './parse-config.ts';
import { SecretFeed, type SecretObject } from './secret-feed.ts';
import { MemoryFeed, WatchedValue, type WatchStatus } from './watched-value.ts';

/**
 * Where the gateway gets its routing snapshot: a watched value (watched-value.ts) that keeps the last good
 * snapshot through broken, unreadable and deleted documents, and reports them (`status().lastError`, shown in
 * /readyz; `plugboard_gateway_snapshot_ok`). The gateway only reads.
 */
export interface SnapshotSource {
  current(): Snapshot | undefined;
  /** Called after every change of snapshot or state; returns an unsubscribe function. */
  subscribe(fn: (snapshot: Snapshot | undefined) => void): () => void;
  status(): WatchStatus;
  /** Starts following the source; resolves after the first reading. Idempotent. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** For standalone mode and tests: the owner sets the snapshot. */
export class MemorySnapshotSource extends WatchedValue<Snapshot, Snapshot> {
  private readonly feed: MemoryFeed<Snapshot>;

  constructor(initial?: Snapshot) {
    const feed = new MemoryFeed<Snapshot>('memory');
    super({ feed, parse: (s) => Snapshot.parse(s) });
    this.feed = feed;
    void this.start();
    if (initial) this.set(initial);
  }

  set(snapshot: Snapshot): void {
    this.feed.set(snapshot);
  }

  /** Records a failure (standalone could not compile) while the last good snapshot keeps serving. */
  reportError(message: string): void {
    this.feed.fail(message);
  }
}

/**
 * Parses a snapshot file: the gzipped wire format the operator writes (detected by the gzip magic bytes), or
 * plain JSON/YAML of the Snapshot schema. Errors name the line and column or the field, never the text: the
 * snapshot holds keys (parse-config.ts).
 */
export function parseSnapshotFile(data: Buffer, source = 'snapshot file'): Snapshot {
  if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) return decodeSnapshot(data);
  const raw = parseJsonOrYaml(data.toString('utf8'), source);
  const result = Snapshot.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(
      `${source} does not match the schema: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}`,
    );
  }
  return result.data;
}

/** `--config-file`: a snapshot file, followed as it changes. */
export class FileSnapshotSource extends WatchedValue<Buffer, Snapshot> {
  constructor(path: string, opts: { pollMs?: number } = {}) {
    super({
      feed: new FileFeed(path, opts),
      parse: (data) => parseSnapshotFile(data, `snapshot file ${path}`),
      identity: bytesIdentity,
    });
  }
}

/**
 * The operator's snapshot Secret (`plugboard-snapshot`, data key `snapshot.json.gz`). Only the root is watched.
 * When it names shard Secrets (src/snapshot/shards.ts) they are fetched by name and checked against the root's
 * sha256; a mismatch or a missing shard means the operator is writing a newer generation (shards before root),
 * so the read is retried briefly; the newer root normally arrives meanwhile and supersedes the attempt, which
 * then never applies (WatchedValue's rule).
 */
export class KubernetesSnapshotSource extends WatchedValue<SecretObject, Snapshot> {
  /** Torn sharded reads: tries, and the first delay (doubling) between them. Tests shorten them. */
  readonly shardRetry: { attempts: number; delayMs: number };
  private readonly feed: SecretFeed;

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name = SNAPSHOT_SECRET_NAME) {
    const feed = new SecretFeed(kc, namespace, name);
    const retry = { attempts: 6, delayMs: 50 };
    super({
      feed,
      parse: (secret, signal) => decodeSecret(feed, retry, secret, signal),
      // a sharded snapshot is the same when its sha256 is; a single one when its data is
      identity: (s) => s.metadata?.annotations?.[SHA256_ANNOTATION] ?? s.data?.[SNAPSHOT_DATA_KEY] ?? s,
    });
    this.feed = feed;
    this.shardRetry = retry;
  }

  get backoff(): { initial: number; max: number } {
    return this.feed.backoff;
  }
}

async function decodeSecret(
  feed: SecretFeed,
  retry: { attempts: number; delayMs: number },
  root: SecretObject,
  signal: AbortSignal,
): Promise<Snapshot> {
  const where = `Secret ${feed.namespace}/${feed.name}`;
  const data = root.data?.[SNAPSHOT_DATA_KEY];
  if (!data) throw new Error(`${where} has no ${SNAPSHOT_DATA_KEY}`);
  const layout = withSource(where, () => readShardAnnotations(root.metadata?.annotations));
  const first = Buffer.from(data, 'base64');
  if (!layout.sha256) return withSource(where, () => decodeSnapshot(first));
  let problem = '';
  for (let i = 0; i < retry.attempts; i++) {
    if (i > 0) await sleep(retry.delayMs * 2 ** (i - 1), signal);
    if (signal.aborted) throw new Error('superseded by a newer reading');
    try {
      const bytes = await assembleSnapshot(first, root.metadata?.annotations, (n) =>
        fetchShard(feed, n, signal),
      );
      return withSource(where, () => decodeSnapshot(bytes));
    } catch (err) {
      // Torn or missing shards, or a network error: all may pass, and the last good snapshot serves meanwhile.
      problem = (err as Error).message;
    }
  }
  throw new Error(`${where}: ${problem} (after ${retry.attempts} reads)`);
}

async function fetchShard(feed: SecretFeed, index: number, signal: AbortSignal): Promise<Buffer> {
  const shard = shardSecretName(feed.name, index);
  let s: SecretObject;
  try {
    s = await feed.client.get<SecretObject>(
      `/api/v1/namespaces/${encodeURIComponent(feed.namespace)}/secrets/${encodeURIComponent(shard)}`,
      { signal },
    );
  } catch (err) {
    if (KubeError.is(err, 404)) throw new SnapshotShardError(`shard Secret ${shard} does not exist`);
    throw err;
  }
  return shardChunk(s, shard);
}

function withSource<T>(where: string, decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    throw new Error(`${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
