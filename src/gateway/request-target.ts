/**
 * The one reading of a request target. Every decision about a request (routing, client authentication, model
 * scopes, metric labels, log lines) reads the `RequestTarget` made here, and nothing else looks at `req.url`, so
 * no two parts of the gateway can disagree about which path a request names.
 *
 * Accepted: origin-form targets (`/path?query`) only. The path is normalised the way RFC 3986 §6.2.2 describes:
 * percent-encoded unreserved characters are decoded (`%76` → `v`), hex digits of the rest are upper-cased,
 * empty segments (`//`, a trailing `/`) are dropped and dot segments (`.`, `..`, also when encoded) are resolved.
 * Matching is case-sensitive, as OpenAI's API is.
 *
 * Refused with 400 before routing, because a server, a proxy in front of it and a client library may each read
 * them differently: absolute-form (`http://host/v1/...`) and asterisk-form targets; a fragment; `\` (raw or
 * encoded); `;` (path parameters); NUL and control characters (raw or encoded); `%25` (an encoded `%`: double
 * encoding); malformed percent-encoding or invalid UTF-8; characters outside RFC 3986's path characters; a `..`
 * that climbs above the root; over-long targets. An encoded `/` (`%2F`) is kept inside its segment, never read
 * as a separator; the router accepts it only inside a model ID (`/v1/models/vendor%2Fmodel`, which the official
 * OpenAI clients send for `vendor/model`) and refuses it everywhere else.
 */
export interface RequestTarget {
  /** The canonical path: `/` + the segments, each re-encoded canonically. What logs and errors show. */
  readonly path: string;
  /** The decoded segments (an encoded `/` stays inside its segment). */
  readonly segments: readonly string[];
  /** Whether some segment held an encoded `/`. */
  readonly encodedSlash: boolean;
}

export interface TargetRefusal {
  readonly refused: true;
  /** Why, in words a client can act on; never quotes the target itself. */
  readonly reason: string;
}

/** Longest request target accepted (the path and query together); longer ones are refused with 400 (414-like). */
export const MAX_TARGET_LENGTH = 8192;

const refuse = (reason: string): TargetRefusal => ({ refused: true, reason });

// Character classes of RFC 3986 over ASCII codes.
const PATH_CHAR = new Uint8Array(128); // pchar without '%' and ';' (refused), plus '/'
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9\-._~!$&'()*+,=:@/]/.test(ch)) PATH_CHAR[c] = 1;
}
const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** A segment's canonical spelling: unreserved and safe characters as they are, everything else %XX (upper case). */
function encodeSegment(segment: string): string {
  let plain = true;
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (c >= 128 || c === 0x2f || PATH_CHAR[c] !== 1) {
      plain = false;
      break;
    }
  }
  if (plain) return segment;
  let out = '';
  for (const byte of Buffer.from(segment, 'utf8')) {
    out +=
      byte < 128 && byte !== 0x2f && PATH_CHAR[byte] === 1
        ? String.fromCharCode(byte)
        : `%${HEX[byte >> 4]}${HEX[byte & 15]}`;
  }
  return out;
}

/**
 * Decodes one raw segment (percent-encoding, UTF-8), or refuses it. `slash` is set when it held `%2F`.
 * Raw characters were already checked against PATH_CHAR by the caller.
 */
function decodeSegment(raw: string, flags: { slash: boolean }): string | TargetRefusal {
  if (!raw.includes('%')) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c !== 0x25) {
      bytes.push(c);
      continue;
    }
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return refuse('the path has a malformed percent-encoding');
    const b = (hi << 4) | lo;
    i += 2;
    if (b < 0x20 || b === 0x7f) return refuse('the path encodes a control character (such as NUL)');
    if (b === 0x25) return refuse('the path encodes a "%" (double encoding is not accepted)');
    if (b === 0x5c) return refuse('the path encodes a "\\"');
    if (b === 0x2f) flags.slash = true;
    bytes.push(b);
  }
  const buf = Buffer.from(bytes);
  const text = buf.toString('utf8');
  // Invalid UTF-8 decodes to U+FFFD; a real U+FFFD round-trips, an invalid sequence does not.
  if (text.includes('\ufffd') && !Buffer.from(text, 'utf8').equals(buf))
    return refuse('the path encodes bytes that are not UTF-8');
  return text;
}

/**
 * The targets read lately: a gateway sees a handful of distinct targets over and over, and a RequestTarget is
 * immutable, so a read is a map lookup. Bounded: cleared when full.
 */
const recent = new Map<string, RequestTarget>();
const RECENT_MAX = 256;

/** Reads a raw request target (`req.url`). */
export function parseRequestTarget(raw: string | undefined): RequestTarget | TargetRefusal {
  const known = raw === undefined ? undefined : recent.get(raw);
  if (known) return known;
  const t = read(raw);
  if (!isRefusal(t) && raw !== undefined && raw.length <= 256) {
    if (recent.size >= RECENT_MAX) recent.clear();
    recent.set(raw, t);
  }
  return t;
}

function read(raw: string | undefined): RequestTarget | TargetRefusal {
  if (!raw) return refuse('the request has no target');
  if (raw.length > MAX_TARGET_LENGTH)
    return refuse(`the request target is longer than ${MAX_TARGET_LENGTH} characters`);
  if (raw.charCodeAt(0) !== 0x2f) {
    if (raw === '*') return refuse('asterisk-form request targets are not served');
    return refuse('send the path only (origin-form, e.g. POST /v1/chat/completions), not an absolute URL');
  }
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  // The query is never used for routing or authentication and never logged; it only has to be well-formed.
  for (let i = q < 0 ? raw.length : q; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x23)
      return refuse('the query string has a character that must be encoded');
  }

  // Fast path: only plain path characters, no dot or empty segments. Most requests take it.
  let plain = true;
  let prev = 0x2f;
  for (let i = 1; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c >= 128 || PATH_CHAR[c] !== 1 || (c === 0x2f && prev === 0x2f) || (c === 0x2e && prev === 0x2f)) {
      plain = false;
      break;
    }
    prev = c;
  }
  if (plain) {
    const path = prev === 0x2f && rawPath.length > 1 ? rawPath.slice(0, -1) : rawPath;
    return Object.freeze({
      path,
      segments: Object.freeze(path === '/' ? [] : path.slice(1).split('/')),
      encodedSlash: false,
    });
  }

  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === 0x25) continue;
    if (c === 0x5c) return refuse('the path contains "\\"');
    if (c === 0x3b) return refuse('the path contains ";" (path parameters are not accepted)');
    if (c < 0x20 || c === 0x7f) return refuse('the path contains a control character');
    if (c >= 128 || PATH_CHAR[c] !== 1)
      return refuse('the path has a character that must be percent-encoded');
  }
  const flags = { slash: false };
  const segments: string[] = [];
  for (const rawSegment of rawPath.split('/')) {
    if (rawSegment === '') continue;
    const segment = decodeSegment(rawSegment, flags);
    if (typeof segment !== 'string') return segment;
    if (segment === '.') continue;
    if (segment === '..') {
      if (segments.length === 0) return refuse('the path climbs above the root ("..")');
      segments.pop();
      continue;
    }
    segments.push(segment);
  }
  let encodedSlash = false;
  if (flags.slash) for (const s of segments) if (s.includes('/')) encodedSlash = true;
  return Object.freeze({
    path: `/${segments.map(encodeSegment).join('/')}`,
    segments: Object.freeze(segments),
    encodedSlash,
  });
}

export function isRefusal(t: RequestTarget | TargetRefusal): t is TargetRefusal {
  return (t as TargetRefusal).refused === true;
}

/** Exposed for tests: the canonical spelling of one decoded segment. */
export const canonicalSegment = encodeSegment;
