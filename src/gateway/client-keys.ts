import { createHash, timingSafeEqual } from 'node:crypto';
import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { z } from 'zod';
import { errors } from './errors.ts';
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

/** `gpt-*` → /^gpt-.*$/ ; only `*` is special. */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map(escapeRegExp).join('.*')}$`);
}
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export class ClientKeySet {
  private readonly keys: Stored[];

  constructor(entries: z.output<typeof ClientKeyEntry>[]) {
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

export interface ClientKeysSource {
  /** Undefined until loaded: the gateway then refuses every request (fails closed). */
  current(): ClientKeySet | undefined;
  lastError(): string | undefined;
  start?(): Promise<void>;
  stop?(): Promise<void>;
}

export class StaticClientKeys implements ClientKeysSource {
  private readonly set: ClientKeySet;
  /** `source` names the text in errors, e.g. `PLUGBOARD_CLIENT_KEYS`. */
  constructor(set: ClientKeySet | string, source?: string) {
    this.set = typeof set === 'string' ? parseClientKeys(set, source) : set;
  }
  current(): ClientKeySet {
    return this.set;
  }
  lastError(): undefined {
    return undefined;
  }
}

/** A keys file, reloaded when it changes; a broken file keeps the previous keys. */
export class FileClientKeys implements ClientKeysSource {
  private set: ClientKeySet | undefined;
  private error: string | undefined;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private last: string | undefined;
  private readonly path: string;

  constructor(path: string) {
    this.path = path;
  }
  current(): ClientKeySet | undefined {
    return this.set;
  }
  lastError(): string | undefined {
    return this.error;
  }
  async start(): Promise<void> {
    await this.load();
    try {
      const name = basename(this.path);
      this.watcher = fsWatch(dirname(this.path), (_e, f) => {
        if (f === null || f === name || f.startsWith('..')) void this.load();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // polling below
    }
    this.poll = setInterval(() => void this.load(), 2000);
    this.poll.unref();
  }
  async stop(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poll);
  }
  async load(): Promise<void> {
    try {
      const text = await readFile(this.path, 'utf8');
      if (text === this.last && this.set) return;
      this.last = text;
      this.set = parseClientKeys(text, `client keys file ${this.path}`);
      this.error = undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.error = code
        ? `client keys file ${this.path} cannot be read (${code})`
        : err instanceof Error
          ? err.message
          : String(err);
    }
  }
}
