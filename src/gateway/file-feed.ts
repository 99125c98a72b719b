import { createHash } from 'node:crypto';
import { type FSWatcher, watch as fsWatch, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Feed, Reading } from './watched-value.ts';

/**
 * The one file watcher: calls `onChange` (debounced) when any of `paths` may have changed. A file is watched
 * through its directory, because editors and ConfigMap/Secret mounts replace files by rename (the watch on the
 * old inode would go quiet); a directory is watched itself. A poll every `pollMs` is the safety net for
 * filesystems without change events and for paths that do not exist yet. Returns the function that stops it.
 */
export function watchFiles(paths: readonly string[], onChange: () => void, pollMs: number): () => void {
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, 25);
  };
  const watchers: FSWatcher[] = [];
  for (const p of paths) {
    const abs = resolve(p);
    let isDir = false;
    try {
      isDir = statSync(abs).isDirectory();
    } catch {
      // missing now: the poll notices when it appears
    }
    try {
      const name = basename(abs);
      const w = isDir
        ? fsWatch(abs, schedule)
        : fsWatch(dirname(abs), (_e, f) => {
            // `..data` and friends: a Kubernetes volume swapping its files
            if (f === null || f === name || f.startsWith('..')) schedule();
          });
      w.on('error', () => undefined);
      watchers.push(w);
    } catch {
      // the poll still picks up changes
    }
  }
  const poll = setInterval(onChange, pollMs);
  poll.unref();
  return () => {
    clearTimeout(timer);
    clearInterval(poll);
    for (const w of watchers) w.close();
  };
}

/** A file's bytes, reported on every change; a missing file is `gone`, an unreadable one `failed`. */
export class FileFeed implements Feed<Buffer> {
  readonly source: string;
  private readonly path: string;
  private readonly pollMs: number;
  private stopWatching: (() => void) | undefined;

  constructor(path: string, opts: { pollMs?: number } = {}) {
    this.path = path;
    this.source = `file:${path}`;
    this.pollMs = opts.pollMs ?? 2000;
  }

  async start(report: (r: Reading<Buffer>) => void): Promise<void> {
    // Reads may finish out of order (each is several steps on libuv's thread pool): one that started before a
    // reading already reported is older than it, and dropped, or a deleted file's keys would come back.
    let started = 0;
    let reported = 0;
    const read = async () => {
      const n = ++started;
      const reading = await this.read();
      if (n < reported) return;
      reported = n;
      report(reading);
    };
    await read();
    this.stopWatching = watchFiles([this.path], () => void read(), this.pollMs);
  }

  async stop(): Promise<void> {
    this.stopWatching?.();
  }

  private async read(): Promise<Reading<Buffer>> {
    try {
      return { kind: 'value', value: await readFile(this.path) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { kind: 'gone', why: `${this.path} does not exist` };
      return { kind: 'failed', why: `cannot read ${this.path} (${code ?? 'error'})` };
    }
  }
}

/** Two buffers are the same document when their bytes are; for WatchedValue's `identity`. */
export const bytesIdentity = (b: Buffer): string => createHash('sha256').update(b).digest('base64');
