import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { decodeSnapshot } from '../snapshot/codec.ts';
import { Snapshot } from '../snapshot/schema.ts';
import { parseJsonOrYaml } from './parse-config.ts';

/** What /readyz reports about where the routing snapshot comes from. */
export interface SnapshotStatus {
  /** Human-readable origin, e.g. `file:/etc/plugboard/snapshot.yaml` or `secret:plugboard/plugboard-snapshot`. */
  source: string;
  lastGoodGeneration?: number;
  /** When the last good snapshot was applied. */
  lastReloadAt?: Date;
  /** The last load failure; cleared by the next good load. The last good snapshot keeps serving meanwhile. */
  lastError?: string;
  lastErrorAt?: Date;
}

/** Where the gateway gets its routing snapshot. The gateway only reads; sources keep the last good one. */
export interface SnapshotSource {
  current(): Snapshot | undefined;
  /** Called after each new snapshot is applied and after each load error; returns an unsubscribe function. */
  subscribe(fn: (snapshot: Snapshot | undefined) => void): () => void;
  status(): SnapshotStatus;
  /** Starts watching; resolves after the first attempt (good or not). Idempotent. */
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

/** Shared bookkeeping: the last good snapshot, the last error, subscribers. */
export class BaseSnapshotSource implements SnapshotSource {
  protected snapshot: Snapshot | undefined;
  protected readonly state: SnapshotStatus;
  private readonly listeners = new Set<(s: Snapshot | undefined) => void>();

  constructor(source: string) {
    this.state = { source };
  }

  current(): Snapshot | undefined {
    return this.snapshot;
  }

  status(): SnapshotStatus {
    return { ...this.state };
  }

  subscribe(fn: (s: Snapshot | undefined) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Applies a good snapshot (an equal or older generation from the same source is applied too: it is the truth). */
  protected accept(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.state.lastGoodGeneration = snapshot.generation;
    this.state.lastReloadAt = new Date();
    this.state.lastError = undefined;
    this.state.lastErrorAt = undefined;
    this.emit();
  }

  protected fail(message: string): void {
    this.state.lastError = message;
    this.state.lastErrorAt = new Date();
    this.emit();
  }

  private emit(): void {
    for (const fn of this.listeners) {
      try {
        fn(this.snapshot);
      } catch {
        // a listener's failure must not stop the others
      }
    }
  }
}

/** For standalone mode and tests: the owner calls set(). */
export class MemorySnapshotSource extends BaseSnapshotSource {
  constructor(initial?: Snapshot) {
    super('memory');
    if (initial) this.set(initial);
  }

  set(snapshot: Snapshot): void {
    this.accept(Snapshot.parse(snapshot));
  }

  /** Records a failure (e.g. standalone mode could not compile) while the last good snapshot keeps serving. */
  reportError(message: string): void {
    this.fail(message);
  }
}

/**
 * Parses a snapshot file: the gzipped wire format the operator writes (detected by the gzip magic bytes), or
 * plain JSON/YAML of the Snapshot schema.
 */
export function parseSnapshotFile(data: Buffer, source = 'snapshot file'): Snapshot {
  if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) return decodeSnapshot(data);
  // errors name the line and column or the field, never the text: the snapshot holds keys (parse-config.ts)
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

/**
 * `--config-file`: reads the file, then watches its directory (editors and ConfigMap mounts replace files by
 * rename) with a slow poll as a safety net. A broken file keeps the last good snapshot and is reported.
 */
export class FileSnapshotSource extends BaseSnapshotSource {
  private readonly path: string;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private lastData: Buffer | undefined;
  private started = false;
  private readonly pollMs: number;

  constructor(path: string, opts: { pollMs?: number } = {}) {
    super(`file:${path}`);
    this.path = path;
    this.pollMs = opts.pollMs ?? 2000;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.load();
    try {
      const name = basename(this.path);
      this.watcher = fsWatch(dirname(this.path), (_event, file) => {
        if (file === null || file === name || file.startsWith('..')) this.schedule();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // the poll below still picks up changes
    }
    this.poll = setInterval(() => void this.load(), this.pollMs);
    this.poll.unref();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.load(), 25);
  }

  /** Reads and applies the file; unchanged contents are skipped. */
  async load(): Promise<void> {
    let data: Buffer;
    try {
      data = await readFile(this.path);
    } catch (err) {
      const msg = `cannot read ${this.path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
      if (this.state.lastError !== msg) this.fail(msg);
      return;
    }
    if (this.lastData?.equals(data) && this.snapshot && !this.state.lastError) return;
    this.lastData = data;
    try {
      this.accept(parseSnapshotFile(data, `snapshot file ${this.path}`));
    } catch (err) {
      this.fail(err instanceof Error ? err.message : String(err));
    }
  }
}
