import { createHash, timingSafeEqual } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { z } from 'zod';
import { type ModelPattern, modelPattern } from '../api/glob.ts';
import type { KubeAuth } from '../kube/auth.ts';
import { errors, GatewayError } from './errors.ts';
import { bytesIdentity, FileFeed } from './file-feed.ts';
import { parseJsonOrYaml } from './parse-config.ts';
import { SecretFeed, type SecretObject, secretData, secretIdentity } from './secret-feed.ts';
import { MemoryFeed, WatchedValue, type WatchedValueOptions } from './watched-value.ts';

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
const KeysObject = z.object({ keys: KeyList.nullable() });

export interface ClientKey {
  name: string;
  /** Undefined: every model. */
  models?: ModelPattern[];
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
      ...(e.models ? { models: e.models.map((p) => modelPattern(p)) } : {}),
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
  return key.models.some((p) => p.matches(model));
}

/**
 * Parses a keys document; `source` names it in errors (a file, a Secret, an environment variable), which give the
 * line and column or the field, never the text (see parse-config.ts).
 */
export function parseClientKeys(text: string, source = 'client keys'): ClientKeySet {
  const raw = parseJsonOrYaml(text, source);
  // An empty document (an emptied file, only comments, `keys:` with nothing under it) lists no keys, and is read
  // as it says: every key refused. Read as an edit that cannot be used, it would keep the old keys working.
  if (raw === null || raw === undefined) return new ClientKeySet([]);
  const r = Array.isArray(raw) ? KeyList.safeParse(raw) : KeysObject.safeParse(raw);
  if (!r.success) {
    // zod's messages name the expected type or bound, not the value received
    const i = r.error.issues[0];
    throw new Error(`${source}: ${i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid'}`);
  }
  return new ClientKeySet(Array.isArray(r.data) ? r.data : (r.data.keys ?? []));
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
  status(): ClientKeysStatus;
  /** Called after every change of keys or state; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Client keys followed as their source changes (a watched value, watched-value.ts): a good read replaces the
 * keys; a malformed one keeps them (`stale`); a source that is gone revokes them all (`revoked`), within the time
 * a rotation takes, because access that was taken away must go.
 */
class WatchedClientKeys<R> implements ClientKeysSource {
  protected readonly watched: WatchedValue<R, ClientKeySet>;

  constructor(opts: WatchedValueOptions<R, ClientKeySet>) {
    this.watched = new WatchedValue(opts);
  }

  current(): ClientKeySet | undefined {
    return this.watched.current();
  }

  status(): ClientKeysStatus {
    const w = this.watched.status();
    const set = this.watched.current();
    if (!set) return { state: 'loading', keys: 0, ...(w.lastError ? { message: w.lastError } : {}) };
    if (set.revocation) return { state: 'revoked', keys: 0, message: set.revocation };
    if (w.state === 'stale')
      return { state: 'stale', keys: set.size, ...(w.lastError ? { message: w.lastError } : {}) };
    return { state: 'loaded', keys: set.size };
  }

  subscribe(fn: () => void): () => void {
    return this.watched.subscribe(() => fn());
  }

  start(): Promise<void> {
    return this.watched.start();
  }

  stop(): Promise<void> {
    return this.watched.stop();
  }
}

/** Keys given once (`PLUGBOARD_CLIENT_KEYS`, tests); an invalid document throws at once. */
export class StaticClientKeys extends WatchedClientKeys<ClientKeySet> {
  constructor(set: ClientKeySet | string, source = 'PLUGBOARD_CLIENT_KEYS') {
    const keys = typeof set === 'string' ? parseClientKeys(set, source) : set;
    const feed = new MemoryFeed<ClientKeySet>(source);
    super({ feed, parse: (k) => k });
    feed.set(keys);
    void this.start();
  }
}

/** A keys file (`--client-keys-file`, a mounted Secret); a deleted file revokes every key. */
export class FileClientKeys extends WatchedClientKeys<Buffer> {
  constructor(path: string, opts: { pollMs?: number } = {}) {
    super({
      feed: new FileFeed(path, opts),
      parse: (data) => parseClientKeys(data.toString('utf8'), `client keys file ${path}`),
      whenGone: () => ClientKeySet.revoked(`the client keys file ${path} does not exist`),
      identity: bytesIdentity,
    });
  }
}

/**
 * Client keys from a Secret (data key `keys.yaml`), watched by name: an edit applies as soon as the watch delivers
 * it; a deleted Secret, or one without `keys.yaml`, revokes every key. Watch failures keep the keys and report.
 */
export class SecretClientKeys extends WatchedClientKeys<SecretObject> {
  static readonly DATA_KEY = 'keys.yaml';
  private readonly feed: SecretFeed;

  constructor(kc: KubeConfig | KubeAuth, namespace: string, name: string) {
    const feed = new SecretFeed(kc, namespace, name);
    const ref = `${namespace}/${name}`;
    super({
      feed,
      parse: (s) => {
        const data = secretData(s, SecretClientKeys.DATA_KEY);
        if (!data) return ClientKeySet.revoked(`the Secret ${ref} has no ${SecretClientKeys.DATA_KEY}`);
        return parseClientKeys(data.toString('utf8'), `Secret ${ref} (${SecretClientKeys.DATA_KEY})`);
      },
      whenGone: () => ClientKeySet.revoked(`the Secret ${ref} does not exist`),
      identity: secretIdentity,
    });
    this.feed = feed;
  }

  /** Milliseconds; tests shorten it. */
  get backoff(): { initial: number; max: number } {
    return this.feed.backoff;
  }
}
