/**
 * Incremental SSE handling for streamed completions: finds the usage chunk (which the gateway asks for with
 * `stream_options.include_usage` to count tokens) and hides it from clients that did not ask for it. Events may
 * be split across network chunks at any byte; only complete events are examined, and only those that mention
 * "usage" are parsed, so ordinary content chunks cost one indexOf.
 */
export interface Usage {
  promptTokens?: number;
  completionTokens?: number;
}

const LF2 = Buffer.from('\n\n');
const CRLF2 = Buffer.from('\n\r\n');
const USAGE = Buffer.from('"usage"');
/** An event that never completes must not grow the buffer without bound. */
const MAX_PENDING = 4 * 1024 * 1024;

export class SseUsageTap {
  private pending: Buffer | undefined;
  private readonly hideUsage: boolean;
  usage: Usage | undefined;

  constructor(opts: { hideUsage: boolean }) {
    this.hideUsage = opts.hideUsage;
  }

  /** Returns the bytes to send to the client now (maybe empty). */
  push(chunk: Buffer): Buffer {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    const end = lastEventEnd(buf);
    if (end === 0) {
      if (buf.length > MAX_PENDING) {
        this.pending = undefined;
        return this.hideUsage ? buf : chunk;
      }
      this.pending = buf;
      return this.hideUsage ? EMPTY : chunk;
    }
    const complete = end === buf.length ? buf : buf.subarray(0, end);
    this.pending = end === buf.length ? undefined : Buffer.from(buf.subarray(end));
    let out = complete;
    if (complete.indexOf(USAGE) !== -1) out = this.examine(complete);
    return this.hideUsage ? out : chunk;
  }

  /** At the end of the stream: whatever is left (an unterminated last event). */
  flush(): Buffer {
    const rest = this.pending;
    this.pending = undefined;
    if (!rest) return EMPTY;
    const out = rest.indexOf(USAGE) !== -1 ? this.examine(rest) : rest;
    return this.hideUsage ? out : EMPTY;
  }

  /** Records usage from complete events; returns them without the usage-only events when hiding. */
  private examine(block: Buffer): Buffer {
    const text = block.toString('utf8');
    const events = text.split(/(?<=\r?\n\r?\n)/);
    let dropped = false;
    const kept: string[] = [];
    for (const ev of events) {
      if (!ev.includes('"usage"')) {
        kept.push(ev);
        continue;
      }
      const data = ev
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
        .join('\n');
      let obj: Record<string, unknown> | undefined;
      try {
        obj = JSON.parse(data);
      } catch {
        obj = undefined;
      }
      const usage = obj ? extractUsage(obj) : undefined;
      if (usage) this.usage = usage;
      if (
        this.hideUsage &&
        obj &&
        Array.isArray(obj.choices) &&
        obj.choices.length === 0 &&
        obj.usage &&
        typeof obj.usage === 'object'
      ) {
        dropped = true;
        continue;
      }
      kept.push(ev);
    }
    return dropped ? Buffer.from(kept.join(''), 'utf8') : block;
  }
}

const EMPTY = Buffer.alloc(0);

function lastEventEnd(buf: Buffer): number {
  const a = buf.lastIndexOf(LF2);
  const b = buf.lastIndexOf(CRLF2);
  return Math.max(a === -1 ? 0 : a + 2, b === -1 ? 0 : b + 3);
}

/** Chat/Completions usage (`prompt_tokens`), Responses usage (`input_tokens`, also under `response`). */
export function extractUsage(obj: Record<string, unknown>): Usage | undefined {
  let u = obj.usage as Record<string, unknown> | null | undefined;
  if (!u || typeof u !== 'object') {
    const r = obj.response as Record<string, unknown> | undefined;
    u = r && typeof r === 'object' ? (r.usage as Record<string, unknown> | undefined) : undefined;
  }
  if (!u || typeof u !== 'object') return undefined;
  // Token counts: whole and not negative (a negative one would make a counter go down, which Prometheus refuses).
  const num = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);
  const promptTokens = num(u.prompt_tokens) ?? num(u.input_tokens);
  const completionTokens = num(u.completion_tokens) ?? num(u.output_tokens);
  if (promptTokens === undefined && completionTokens === undefined) return undefined;
  return { promptTokens, completionTokens };
}

/** Usage from the tail of a non-streamed JSON reply (usage is the last field OpenAI-compatible servers write). */
export function usageFromJsonTail(tail: string): Usage | undefined {
  const key = tail.indexOf('"usage"');
  if (key < 0) return undefined;
  const start = tail.indexOf('{', key);
  if (start < 0 || tail.slice(key + 7, start).trim() !== ':') return undefined;
  // The matching brace, skipping strings: a plain scan, the regex it replaces backtracked on every reply.
  let depth = 0;
  for (let i = start; i < tail.length; i++) {
    const ch = tail.charCodeAt(i);
    if (ch === 0x22) {
      for (i++; i < tail.length && tail.charCodeAt(i) !== 0x22; i++) if (tail.charCodeAt(i) === 0x5c) i++;
    } else if (ch === 0x7b) depth++;
    else if (ch === 0x7d && --depth === 0) {
      try {
        return extractUsage({ usage: JSON.parse(tail.slice(start, i + 1)) });
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** An in-band error event for failures after the first byte. */
export function sseErrorEvent(message: string, type: string, code: string | null): Buffer {
  return Buffer.from(`data: ${JSON.stringify({ error: { message, type, param: null, code } })}\n\n`);
}
