import { createHash } from 'node:crypto';
import { SNAPSHOT_FORMAT, type Snapshot, type SnapshotConnection } from '../snapshot/index.ts';

/** Where compiled snapshots go: the snapshot Secret(s) in a cluster, the gateway's memory in standalone mode. */
export interface SnapshotSink {
  /** The snapshot there now, so a restart keeps serving it and continues its generation. */
  load?(): Promise<{ generation: number; snapshot?: Snapshot } | undefined>;
  /**
   * Stores a snapshot and says how big it was. Throws SnapshotRefused when this content can never be stored (it
   * is kept until the content changes), anything else to be retried.
   */
  write(snapshot: Snapshot): Promise<{ bytes: number; secrets: number }>;
}

/** A snapshot the sink can never store as it is (too big): not retried until the content changes. */
export class SnapshotRefused extends Error {
  /** Logged with the message (e.g. the size). */
  readonly fields: object;
  constructor(message: string, fields: object = {}) {
    super(message);
    this.fields = fields;
  }
}

export interface SnapshotCompilerOptions {
  sink: SnapshotSink;
  log: {
    info(o: object, m: string): void;
    warn(o: object, m: string): void;
    error(o: object, m: string): void;
  };
  /** Coalesces bursts of changes into one write. */
  debounceMs?: number;
  /**
   * Least time between two writes: during a burst (1,000 connections verified at start-up) the snapshot is
   * rewritten a few times a second rather than after every reconcile, which bounds CPU and heap.
   */
  minIntervalMs?: number;
  /** Writes nothing until sync() (standalone: until every connection has been reconciled once). */
  held?: boolean;
  /** `secrets`: how many Secrets hold it (1 + shards); 0 for a sink without Secrets. */
  onWritten?: (generation: number, bytes: number, secrets: number) => void;
}

/**
 * The routing snapshot compiled from per-connection entries, the same in both modes: a new generation only
 * when the content changed (sha256 over the sorted entries), at most one write in flight, changes that arrive
 * meanwhile coalesced into the next one, and a failed write retried.
 */
export class SnapshotCompiler {
  private readonly o: SnapshotCompilerOptions;
  private readonly entries = new Map<string, SnapshotConnection>();
  private generation = 0;
  private writtenHash = '';
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private held: boolean;
  private lastWriteAt = 0;
  /** How long the last write took; a snapshot of tens of MiB takes seconds to compress and send. */
  private lastWriteMs = 0;
  lastError: string | undefined;

  constructor(o: SnapshotCompilerOptions) {
    this.o = o;
    this.held = o.held ?? false;
  }

  get currentGeneration(): number {
    return this.generation;
  }

  /** Loads what the sink holds: its entries become the current content, and the generation continues from it. */
  async load(): Promise<Snapshot | undefined> {
    const loaded = await this.o.sink.load?.();
    if (!loaded) return undefined;
    this.generation = Math.max(this.generation, loaded.generation, loaded.snapshot?.generation ?? 0);
    if (!loaded.snapshot) return undefined;
    for (const c of loaded.snapshot.connections) this.entries.set(`${c.namespace}/${c.name}`, c);
    this.writtenHash = this.hash();
    return loaded.snapshot;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  values(): SnapshotConnection[] {
    return [...this.entries.values()];
  }

  set(key: string, entry: SnapshotConnection): void {
    this.entries.set(key, entry);
    this.schedule();
  }

  delete(key: string): void {
    if (this.entries.delete(key)) this.schedule();
  }

  /**
   * Writes the snapshot if the sink lacks this content, even with no connections at all (gateways are Ready only
   * once a snapshot exists), and ends the hold. A loaded, unchanged snapshot is not rewritten.
   */
  sync(): void {
    this.held = false;
    this.schedule();
  }

  /** Resolves once everything set so far has been written (or failed). */
  async flush(): Promise<void> {
    // A change that arrives during a write gets a write of its own after it (a new timer): wait for that one too.
    // After a failed write it returns; the compiler retries on its own.
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

  private hash(): string {
    const h = createHash('sha256');
    for (const key of [...this.entries.keys()].sort()) h.update(JSON.stringify(this.entries.get(key)));
    return h.digest('hex');
  }

  private schedule() {
    if (this.stopped || this.held || this.timer) return;
    const sinceLast = performance.now() - this.lastWriteAt;
    // Writes are at least as far apart as they take, so a huge snapshot occupies the process half the time at most.
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
    try {
      const { bytes, secrets } = await this.o.sink.write(snapshot);
      this.generation = generation;
      this.writtenHash = hash;
      this.lastError = undefined;
      this.o.onWritten?.(generation, bytes, secrets);
    } catch (err) {
      this.lastError = (err as Error).message;
      if (err instanceof SnapshotRefused) {
        this.o.log.error(err.fields, this.lastError);
        return;
      }
      this.o.log.warn({ err: this.lastError }, 'snapshot write failed; retrying');
      this.again = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
