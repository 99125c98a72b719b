/**
 * Replies name the model the client asked for, not the upstream's ID: a client that sent `mock.gpt-4o-mini` gets
 * `"model":"mock.gpt-4o-mini"` back, in a JSON reply and in every streamed chunk, so it can match replies to
 * requests and show the name it knows. The upstream's `"model":"<id>"` members are rewritten as the bytes pass:
 * the ID the request was sent with becomes the exposed ID, and another ID (an upstream that answers with a dated
 * snapshot, `gpt-4o-mini-2024-07-18`) gets the connection's prefix. Only members named `model` whose value is a
 * plain string are touched; a member split across chunks is held back until it is complete (at most 512 bytes).
 */
const KEY = Buffer.from('"model"');
const MAX_HELD = 512;

export class ModelRewriter {
  private held: Buffer | undefined;
  private readonly map: (upstream: string) => string;

  constructor(map: (upstream: string) => string) {
    this.map = map;
  }

  /** The chunk with its model members rewritten; a member cut at the end waits for the next chunk. */
  push(chunk: Buffer): Buffer {
    const buf = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = undefined;
    let at = buf.indexOf(KEY);
    if (at < 0) return this.keepTail(buf, buf.length);
    const out: Buffer[] = [];
    let from = 0;
    while (at >= 0) {
      const m = readMember(buf, at + KEY.length);
      if (m === 'incomplete') {
        if (buf.length - at > MAX_HELD) break;
        out.push(buf.subarray(from, at));
        this.held = buf.subarray(at);
        return Buffer.concat(out);
      }
      if (m) {
        const value = buf.toString('utf8', m.start, m.end);
        const next = this.map(value);
        if (next !== value) {
          out.push(buf.subarray(from, m.start), Buffer.from(next, 'utf8'));
          from = m.end;
        }
      }
      at = buf.indexOf(KEY, at + KEY.length);
    }
    out.push(this.keepTail(buf.subarray(from), buf.length - from));
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }

  /** What is still held at the end of the body. */
  flush(): Buffer {
    const rest = this.held ?? Buffer.alloc(0);
    this.held = undefined;
    return rest;
  }

  /** Holds back a tail that may be the start of `"model"`, returns the rest. */
  private keepTail(buf: Buffer, length: number): Buffer {
    for (let n = Math.min(KEY.length - 1, length); n > 0; n--) {
      if (buf.subarray(length - n, length).equals(KEY.subarray(0, n))) {
        this.held = Buffer.from(buf.subarray(length - n, length));
        return buf.subarray(0, length - n);
      }
    }
    return buf.subarray(0, length);
  }
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * After `"model"`: optional space, `:`, optional space, a string without escapes. Its byte range; undefined when
 * it is not a member with a plain string value; 'incomplete' when the buffer ends first.
 */
function readMember(buf: Buffer, i: number): { start: number; end: number } | undefined | 'incomplete' {
  while (i < buf.length && isSpace(buf[i] as number)) i++;
  if (i >= buf.length) return 'incomplete';
  if (buf[i] !== 0x3a) return undefined;
  i++;
  while (i < buf.length && isSpace(buf[i] as number)) i++;
  if (i >= buf.length) return 'incomplete';
  if (buf[i] !== 0x22) return undefined;
  const start = i + 1;
  for (let j = start; j < buf.length; j++) {
    const c = buf[j] as number;
    if (c === 0x5c) return undefined;
    if (c === 0x22) return { start, end: j };
  }
  return 'incomplete';
}
