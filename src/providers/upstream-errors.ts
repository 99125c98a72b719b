/** The error object of a JSON body; Google's OpenAI compatibility layer wraps it in a one-element array. */
function errorJson(body: string): Record<string, unknown> {
  const j = JSON.parse(body) as unknown;
  const one = Array.isArray(j) && j.length === 1 ? j[0] : j;
  return one && typeof one === 'object' && !Array.isArray(one) ? (one as Record<string, unknown>) : {};
}

/**
 * What an upstream said in an error body, across the providers' shapes: `{"error":{"message"}}` (OpenAI and
 * most compatible servers, also as `[{"error":...}]` from Google), `{"error":"..."}`, `{"message"}` and
 * `{"detail"}`; plain text as it is. Undefined when there is nothing to quote.
 */
export function upstreamErrorMessage(body: string): string | undefined {
  try {
    const j = errorJson(body);
    const e = j.error as Record<string, unknown> | string | undefined;
    const m = typeof e === 'string' ? e : (e?.message ?? j.message ?? j.detail);
    return typeof m === 'string' ? m : undefined;
  } catch {
    return body.trim() ? body.trim() : undefined;
  }
}

/** Shortest piece of a secret's encoded form that is still matched (shorter ones would mask innocent text). */
const MIN_FORM = 8;

/**
 * The spellings in which an upstream may echo a secret: as it is, in lower and upper case, percent-encoded,
 * hex, and base64/base64url at each of the three alignments it can have inside a longer encoded string (an
 * echoed `Authorization: Bearer <key>` header encoded whole puts the key at offset 7), and in UTF-16 (a NUL
 * between characters, in either byte order, as the bytes read as UTF-8 show it; also with the NULs written as
 * JSON's `\u0000`). JSON `\u` escapes of printable characters are undone before matching (see
 * SecretScrubber.scrub), so they need no forms of their own.
 */
export function secretForms(secret: string): string[] {
  const forms = new Set<string>([secret, secret.toLowerCase(), secret.toUpperCase()]);
  forms.add(encodeURIComponent(secret));
  forms.add([...secret].join('\0'));
  forms.add([...secret].join('\\u0000'));
  const bytes = Buffer.from(secret, 'utf8');
  forms.add(bytes.toString('hex'));
  for (let shift = 0; shift < 3; shift++) {
    const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
    // Characters that depend on the secret's bits only: from the first whole sextet after the shift to the last.
    const start = Math.ceil((shift * 8) / 6);
    const end = Math.floor((padded.length * 8) / 6);
    for (const encoding of ['base64', 'base64url'] as const) {
      const middle = padded.toString(encoding).slice(start, end);
      if (middle.length >= MIN_FORM) forms.add(middle);
    }
  }
  return [...forms].filter((f) => f.length >= MIN_FORM || f === secret).sort((a, b) => b.length - a.length);
}

/**
 * Removes one secret (a provider key) from text before it leaves Plugboard: status messages, error bodies
 * passed to clients, header values. Build one per secret and reuse it.
 */
export class SecretScrubber {
  readonly forms: readonly string[];
  /** The longest form: how much text around a cut may still hide a whole form. */
  readonly longest: number;
  /** The shortest form: shorter text cannot hold the secret (unescaping only shortens). */
  private readonly shortest: number;
  private readonly mask: string;
  /**
   * Every run of GRAM characters of the secret: a piece that long is the secret's even when the rest was cut off
   * or changed (an upstream that echoes the key without its last characters still gives most of it away).
   */
  private readonly grams: ReadonlySet<string>;

  constructor(secret: string, mask = '***') {
    this.forms = secret.length >= 4 ? secretForms(secret) : [];
    const grams = new Set<string>();
    if (secret.length >= 2 * GRAM)
      for (let i = 0; i + GRAM <= secret.length; i++) grams.add(secret.slice(i, i + GRAM));
    this.grams = grams;
    this.longest = this.forms.reduce((n, f) => Math.max(n, f.length), 0);
    this.shortest = Math.min(
      this.forms.reduce((n, f) => Math.min(n, f.length), Number.POSITIVE_INFINITY),
      this.grams.size > 0 ? GRAM : Number.POSITIVE_INFINITY,
    );
    this.mask = mask;
  }

  /** Whether the text holds the secret in any known form. */
  finds(text: string): boolean {
    if (this.forms.length === 0 || text.length < this.shortest) return false;
    const t = unescapeJsonAscii(text);
    if (this.forms.some((f) => t.includes(f))) return true;
    if (this.grams.size === 0 || t.length < GRAM) return false;
    // A short text (a header value) has fewer GRAM-long windows than the secret has pieces: each window is looked
    // up, instead of searching the text once per piece (a 164-character key has 153).
    const windows = t.length - GRAM + 1;
    if (windows < this.grams.size) {
      for (let i = 0; i < windows; i++) if (this.grams.has(t.slice(i, i + GRAM))) return true;
      return false;
    }
    for (const g of this.grams) if (t.includes(g)) return true;
    return false;
  }

  /**
   * The text without the secret. `cut`: the text is the start of a longer one, so a trailing piece of a form
   * (the secret's beginning, cut off by the truncation) is masked too.
   */
  scrub(text: string, cut = false): string {
    if (this.forms.length === 0) return text;
    const unescaped = unescapeJsonAscii(text);
    let out = unescaped;
    for (const f of this.forms) if (out.includes(f)) out = out.split(f).join(this.mask);
    if (cut) {
      for (const f of this.forms) {
        for (let n = Math.min(f.length - 1, out.length); n >= 4; n--) {
          if (out.endsWith(f.slice(0, n))) {
            out = out.slice(0, out.length - n) + this.mask;
            break;
          }
        }
      }
    }
    out = this.maskPieces(out);
    // Nothing found: the text as it came, escapes and all.
    return out === unescaped ? text : out;
  }

  /** Masks every stretch of text made of pieces of the secret GRAM characters long. */
  private maskPieces(text: string): string {
    if (this.grams.size === 0 || text.length < GRAM) return text;
    const ranges: [number, number][] = [];
    for (const g of this.grams) {
      for (let i = text.indexOf(g); i >= 0; i = text.indexOf(g, i + 1)) ranges.push([i, i + GRAM]);
    }
    if (ranges.length === 0) return text;
    ranges.sort((a, b) => a[0] - b[0]);
    let out = '';
    let at = 0;
    for (const [from, to] of ranges) {
      if (to <= at) continue;
      out += text.slice(at, Math.max(at, from));
      if (from >= at) out += this.mask;
      at = to;
    }
    return out + text.slice(at);
  }
}

/** How long a piece of a secret must be to count as the secret (SecretScrubber's `grams`). */
const GRAM = 12;

/**
 * Undoes JSON's optional escapes of printable ASCII (`\u0073k-...`, `\/`), which a JSON writer may use for any
 * character, so that an escaped secret is seen; escapes JSON requires (`\"`, `\\`, controls) stay. Valid JSON
 * stays valid JSON with the same meaning.
 */
function unescapeJsonAscii(text: string): string {
  if (!text.includes('\\')) return text;
  return text.replace(/\\(\\|\/|u00[2-7][0-9a-fA-F])/g, (all, what: string) => {
    if (what === '\\') return all;
    if (what === '/') return '/';
    const c = Number.parseInt(what.slice(3), 16);
    return c === 0x22 || c === 0x5c || c === 0x7f ? all : String.fromCharCode(c);
  });
}

/** Replaces a key in every form an upstream may echo it (see SecretScrubber) before text leaves. */
export function redactKey(text: string, key: string | undefined, mask: string): string {
  return key ? new SecretScrubber(key, mask).scrub(text) : text;
}

/**
 * Whether an error body that is not a 401 says the key was rejected. Google answers a wrong API key with HTTP
 * 400 INVALID_ARGUMENT whose details carry the ErrorInfo reason `API_KEY_INVALID`, on its native API and on its
 * OpenAI compatibility layer alike.
 */
export function keyRejectedIn(body: string): boolean {
  try {
    const e = errorJson(body).error as { details?: unknown } | undefined;
    const details = Array.isArray(e?.details) ? (e.details as { reason?: unknown }[]) : [];
    return details.some((d) => d?.reason === 'API_KEY_INVALID');
  } catch {
    return false;
  }
}
