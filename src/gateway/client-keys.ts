import { createHash, timingSafeEqual } from 'node:crypto';
import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { z } from 'zod';
import { globToRegExp } from '../api/glob.ts';
import { errors, GatewayError } from './errors.ts';
import { parseJsonOrYaml } from './parse-config.ts';

/**
 * Optional gateway API keys. The file/Secret holds a list `[{name, key | sha256, models?}]`; only SHA-256
 * digests are kept in memory. A presented key is hashed and compared with every digest in constant time (no
 * early exit), so neither timing nor the digests reveal a key. Keys are never logged: only the key's name is.
 */
const ClientKeyEntry = z
  .object({
    name: z.string().min(1).max(128),
    key: z.string().min(8).optional(),
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'sha256 must be 64 hex digits')
      .optional(),
    models: z.array(z.string().min(1)).optional(),
  })
  .refine((e) => (e.key === undefined) !== (e.sha256 === undefined), {
    message: 'each key needs exactly one of key or sha256',
  });
// A list, or {keys: list}; chosen by shape so that errors point into the one the text meant
const KeyList = z.array(ClientKeyEntry);
const KeysObject = z.object({ keys: KeyList });

export interface ClientKey {
  name: string;
  /** Undefined: every model. */
  models?: RegExp[];
}

interface Stored extends ClientKey {
  digest: Buffer;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class ClientKeySet {
  private readonly keys: Stored[];
  /** Set on the empty set that stands for a source that is gone: why every key is refused. */
  readonly revocation: string | undefined;

  /** No key at all, because the keys' source is gone (a deleted Secret or file): every request gets 401. */
  static revoked(why: string): ClientKeySet {
    return new ClientKeySet([], why);
  }

  constructor(entries: z.output<typeof ClientKeyEntry>[], revocation?: string) {
    this.revocation = revocation;
    this.keys = entries.map((e) => ({
      name: e.name,
      digest: e.key !== undefined ? sha256(e.key) : Buffer.from(e.sha256 as string, 'hex'),
      ...(e.models ? { models: e.models.map(globToRegExp) } : {}),
    }));
  }

  get size(): number {
    return this.keys.length;
  }

  /** The key named by an `Authorization: Bearer <key>` header, or undefined. */
  authenticate(authorization: string | undefined): ClientKey | undefined {
    if (!authorization) return undefined;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m?.[1]) return undefined;
    const digest = sha256(m[1]);
    let found: Stored | undefined;
    for (const k of this.keys) if (timingSafeEqual(k.digest, digest) && !found) found = k;
    return found;
  }
}

/**
 * The key an `Authorization` header names, where keys are required: 503 while none are loaded, 401 for a missing
 * or unknown key. Fastify's hook and the hot path both authenticate through it.
 */
export function authenticateClient(source: ClientKeysSource, authorization: string | undefined): ClientKey {
  const keys = source.current();
  if (!keys) throw errors.unavailable('Client API keys are not loaded yet.');
  if (keys.revocation)
    throw new GatewayError(401, `Every client key is revoked: ${keys.revocation}.`, {
      code: 'client_keys_revoked',
    });
  const key = keys.authenticate(authorization);
  if (!key) throw errors.unauthenticated();
  return key;
}

export function allows(key: ClientKey | undefined, model: string): boolean {
  if (!key?.models) return true;
  return key.models.some((re) => re.test(model));
}

/**
 * Parses a keys document; `source` names it in errors (a file, a Secret, an environment variable), which give the
 * line and column or the field, never the text (see parse-config.ts).
 */
export function parseClientKeys(text: string, source = 'client keys'): ClientKeySet {
  const raw = parseJsonOrYaml(text, source);
  const r = Array.isArray(raw) ? KeyList.safeParse(raw) : KeysObject.safeParse(raw);
  if (!r.success) {
    // zod's messages name the expected type or bound, not the value received
    const i = r.error.issues[0];
    throw new Error(`${source}: ${i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid'}`);
  }
  return new ClientKeySet(Array.isArray(r.data) ? r.data : r.data.keys);
}

/** Where the keys stand, for /readyz, metrics and logs. */
export type ClientKeysState =
  /** Not read yet: the gateway answers 503 and is not ready. */
  | 'loading'
  /** In use as read. */
  | 'loaded'
  /** The last edit could not be read (malformed): the keys read before it stay in use. */
  | 'stale'
  /** The source is gone (Secret or file deleted): every key is refused (401), the gateway stays ready. */
  | 'revoked';

export interface ClientKeysStatus {
  state: ClientKeysState;
  /** Keys in use. */
  keys: number;
  /** Why the state is `stale` or `revoked`; names the source, never quotes it. */
  message?: string;
}

export interface ClientKeysSource {
  /** Undefined until loaded: the gateway then refuses every request (fails closed). */
  current(): ClientKeySet | undefined;
  lastError(): string | undefined;
  status(): ClientKeysStatus;
  /** Called after every change of keys or state; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

/**
 * What every source of client keys shares: the keys in use and their state. A good read replaces the keys; a
 * malformed one keeps them (`stale`); a source that is gone revokes them all (`revoked`), within the same time a
 * rotation takes, because access that was taken away must go.
 */
export abstract class ClientKeysHolder implements ClientKeysSource {
  private set: ClientKeySet | undefined;
  private error: string | undefined;
  private readonly listeners = new Set<() => void>();

  current(): ClientKeySet | undefined {
    return this.set;
  }

  lastError(): string | undefined {
    return this.error;
  }

  status(): ClientKeysStatus {
    if (!this.set) return { state: 'loading', keys: 0, ...(this.error ? { message: this.error } : {}) };
    if (this.set.revocation) return { state: 'revoked', keys: 0, message: this.set.revocation };
    if (this.error) return { state: 'stale', keys: this.set.size, message: this.error };
    return { state: 'loaded', keys: this.set.size };
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A read of the source: parsed keys replace the old ones; a parse error keeps them. */
  protected accept(text: string, origin: string): void {
    try {
      this.set = parseClientKeys(text, origin);
      this.error = undefined;
    } catch (err) {
      // parseClientKeys names the origin, line and column, never the text
      this.error = err instanceof Error ? err.message : String(err);
    }
    this.emit();
  }

  /** Keys that were not read from text (a ready-made set). */
  protected use(set: ClientKeySet): void {
    this.set = set;
    this.error = undefined;
    this.emit();
  }

  /** The source is gone: every key is refused. */
  protected gone(why: string): void {
    this.set = ClientKeySet.revoked(why);
    this.error = undefined;
    this.emit();
  }

  /** The source could not be read (not a verdict on the keys): the keys in use stay. */
  protected failed(message: string): void {
    this.error = message;
    this.emit();
  }

  private emit(): void {
    for (const fn of this.listeners) {
      try {
        fn();
      } catch {
        // a listener's failure must not stop the others
      }
    }
  }
}

export class StaticClientKeys extends ClientKeysHolder {
  constructor(set: ClientKeySet | string, origin = 'PLUGBOARD_CLIENT_KEYS') {
    super();
    if (typeof set === 'string') {
      this.accept(set, origin);
      const error = this.lastError();
      if (error) throw new Error(error);
    } else this.use(set);
  }
}

/**
 * A keys file, read again when it changes (watched through its directory, as ConfigMap and Secret mounts replace
 * files by rename, with a 2 s poll as a safety net). A malformed file keeps the previous keys; a missing file
 * revokes them.
 */
export class FileClientKeys extends ClientKeysHolder {
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private last: string | undefined;
  private readonly path: string;

  constructor(path: string) {
    super();
    this.path = path;
  }

  /** Idempotent: the gateway starts its sources, and a second watcher would keep the process alive. */
  async start(): Promise<void> {
    if (this.poll) return;
    this.poll = setInterval(() => void this.load(), 2000);
    this.poll.unref();
    await this.load();
    try {
      const name = basename(this.path);
      this.watcher = fsWatch(dirname(this.path), (_e, f) => {
        if (f === null || f === name || f.startsWith('..')) void this.load();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // the poll still picks up changes
    }
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poll);
  }

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        const why = `the client keys file ${this.path} does not exist`;
        this.last = undefined;
        if (this.current()?.revocation !== why) this.gone(why);
        return;
      }
      this.failed(`client keys file ${this.path}: cannot read it (${code ?? 'error'})`);
      return;
    }
    if (text === this.last && this.current()) return;
    this.last = text;
    this.accept(text, `client keys file ${this.path}`);
  }
}
