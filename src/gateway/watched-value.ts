/**
 * One shape for everything the gateway reads from outside and follows as it changes: the routing snapshot and
 * the client keys, from a file, a Secret, the environment or memory. A feed reports what it sees of the document;
 * a parse function turns that into a value; the watched value keeps the last good value, says what state it is
 * in, and tells its subscribers. Rules shared by every source:
 * - a reading that cannot be parsed keeps the last good value (`stale`), with a message that names the source
 *   and never quotes it (parse functions are written to that rule);
 * - a document that is gone either keeps the last good value (the snapshot: serving stale routes beats serving
 *   nothing) or becomes the value `whenGone` says (client keys: every key revoked);
 * - a reading that could not be made at all (permissions, the API server down) keeps the value and reports;
 * - a newer reading supersedes a parse still running for an older one, which never applies after it;
 * - a reading equal to the last one processed is skipped (polls and relists repeat themselves), so a broken
 *   document is reported once; after a failed read, a gone document or an asynchronous parse that failed (its
 *   I/O may pass), the same document is processed again.
 */

/** What a feed reports about the document it follows. */
export type Reading<R> =
  | { kind: 'value'; value: R }
  /** The document does not exist (never did, or was deleted). */
  | { kind: 'gone'; why: string }
  /** The document could not be read (permissions, network): this says nothing about the document itself. */
  | { kind: 'failed'; why: string };

export interface Feed<R> {
  /** Where the value comes from, for /readyz and messages, e.g. `file:/etc/keys.yaml`, `secret:ns/name`. */
  readonly source: string;
  /** Starts following the document; resolves after the first reading (good or not). */
  start(report: (reading: Reading<R>) => void): Promise<void>;
  stop(): Promise<void>;
}

export type WatchState =
  /** Nothing read yet. */
  | 'loading'
  /** The value is the document as last read. */
  | 'loaded'
  /** The last reading could not be used (or the document is gone and the last good value is kept). */
  | 'stale'
  /** The document is gone and the value is what `whenGone` made of that. */
  | 'gone';

export interface WatchStatus {
  source: string;
  state: WatchState;
  /** Why the state is `stale` or `gone`: names the source, never quotes it. */
  lastError?: string;
  lastErrorAt?: Date;
  /** When the value last changed to a good one. */
  lastReloadAt?: Date;
}

export interface WatchedValueOptions<R, T> {
  feed: Feed<R>;
  /** The value of a reading; throws with a message that names the source, line and column, never the text. */
  parse: (raw: R, signal: AbortSignal) => T | Promise<T>;
  /** What a gone document becomes; undefined (the default) keeps the last good value. */
  whenGone?: (why: string) => T | undefined;
  /** Two readings with the same identity are the same document (default: the raw value itself). */
  identity?: (raw: R) => unknown;
}

export class WatchedValue<R, T> {
  private value: T | undefined;
  private readonly state: WatchStatus;
  private readonly listeners = new Set<(value: T | undefined) => void>();
  private readonly opts: WatchedValueOptions<R, T>;
  /** The identity of the last reading processed; undefined after a failed or gone reading. */
  private last: unknown;
  /** Bumped by every reading; a parse started under an older one gives up. */
  private attempt = 0;
  private parsing: AbortController | undefined;
  private started: Promise<void> | undefined;

  constructor(opts: WatchedValueOptions<R, T>) {
    this.opts = opts;
    this.state = { source: opts.feed.source, state: 'loading' };
  }

  current(): T | undefined {
    return this.value;
  }

  status(): WatchStatus {
    return { ...this.state };
  }

  /** Called after every change of value or state; returns an unsubscribe function. */
  subscribe(fn: (value: T | undefined) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Starts the feed; resolves after the first reading. Idempotent. */
  start(): Promise<void> {
    this.started ??= this.opts.feed.start((r) => this.read(r));
    return this.started;
  }

  async stop(): Promise<void> {
    this.parsing?.abort();
    await this.opts.feed.stop();
  }

  private read(r: Reading<R>): void {
    const attempt = ++this.attempt;
    this.parsing?.abort();
    this.parsing = undefined;
    if (r.kind === 'failed') {
      this.last = undefined;
      this.fail(r.why);
    } else if (r.kind === 'gone') {
      this.last = undefined;
      const replacement = this.opts.whenGone?.(r.why);
      if (replacement === undefined) this.fail(r.why);
      else this.goneAs(replacement, r.why);
    } else {
      const identity = this.opts.identity ? this.opts.identity(r.value) : r.value;
      if (this.last !== undefined && identity === this.last) return;
      this.last = identity;
      this.parse(r.value, attempt);
    }
  }

  private parse(raw: R, attempt: number): void {
    const abort = new AbortController();
    this.parsing = abort;
    let parsed: T | Promise<T>;
    try {
      parsed = this.opts.parse(raw, abort.signal);
    } catch (err) {
      this.fail(messageOf(err));
      return;
    }
    if (!(parsed instanceof Promise)) {
      this.accept(parsed);
      return;
    }
    // A newer reading (or stop) aborts this one: its result never applies after the newer one's.
    const current = () => attempt === this.attempt && !abort.signal.aborted;
    parsed.then(
      (value) => {
        if (current()) this.accept(value);
      },
      (err: unknown) => {
        if (!current()) return;
        // An asynchronous parse does I/O (a snapshot's shards): the same reading may succeed next time.
        this.last = undefined;
        this.fail(messageOf(err));
      },
    );
  }

  private goneAs(value: T, why: string): void {
    this.value = value;
    this.state.state = 'gone';
    this.state.lastError = why;
    this.state.lastErrorAt = new Date();
    this.emit();
  }

  private accept(value: T): void {
    this.value = value;
    this.state.state = 'loaded';
    this.state.lastReloadAt = new Date();
    this.state.lastError = undefined;
    this.state.lastErrorAt = undefined;
    this.emit();
  }

  private fail(why: string): void {
    this.state.state = this.value === undefined ? 'loading' : 'stale';
    this.state.lastError = why;
    this.state.lastErrorAt = new Date();
    this.emit();
  }

  private emit(): void {
    for (const fn of this.listeners) {
      try {
        fn(this.value);
      } catch {
        // a listener's failure must not stop the others
      }
    }
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A document its owner sets in memory (standalone's compiled snapshot, tests). */
export class MemoryFeed<R> implements Feed<R> {
  readonly source: string;
  private report: ((r: Reading<R>) => void) | undefined;
  private pending: Reading<R>[] = [];

  constructor(source = 'memory') {
    this.source = source;
  }

  async start(report: (r: Reading<R>) => void): Promise<void> {
    this.report = report;
    for (const r of this.pending.splice(0)) report(r);
  }

  async stop(): Promise<void> {
    this.report = undefined;
  }

  set(value: R): void {
    this.push({ kind: 'value', value });
  }

  fail(why: string): void {
    this.push({ kind: 'failed', why });
  }

  private push(r: Reading<R>): void {
    if (this.report) this.report(r);
    else this.pending.push(r);
  }
}
