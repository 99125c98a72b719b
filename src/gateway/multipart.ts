import type { Readable } from 'node:stream';

/**
 * Just enough multipart/form-data parsing to route an upload: read parts until the `model` field, keeping only
 * the bytes read so far, then hand back that prefix and leave the rest of the body in the stream to be piped
 * upstream. Limitation: when `model` comes after the file (the official SDKs send fields in the caller's object
 * order, often `{file, model}`), the file's bytes before it are buffered, bounded by the multipart body limit.
 */
export interface MultipartHead {
  /** Everything read from the stream so far. */
  prefix: Buffer;
  model: string;
  /** Byte range of the model value within prefix. */
  valueStart: number;
  valueEnd: number;
}

export class MultipartError extends Error {
  readonly kind: 'too_large' | 'no_model' | 'malformed';
  constructor(kind: 'too_large' | 'no_model' | 'malformed', message: string) {
    super(message);
    this.kind = kind;
  }
}

export function boundaryOf(contentType: string | undefined): string | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  return m?.[1] ?? m?.[2];
}

/** A growable byte buffer (doubling), so a file-first upload is copied O(n), not O(n²). */
class Bytes {
  buf = Buffer.allocUnsafe(64 * 1024);
  len = 0;
  push(chunk: Buffer): void {
    if (this.len + chunk.length > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + chunk.length) cap *= 2;
      const next = Buffer.allocUnsafe(cap);
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    chunk.copy(this.buf, this.len);
    this.len += chunk.length;
  }
  view(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/**
 * Reads `stream` until the `model` part is complete. The stream is left paused with the unread rest in it.
 */
export function readMultipartHead(stream: Readable, boundary: string, limit: number): Promise<MultipartHead> {
  const delim = Buffer.from(`--${boundary}`);
  const partEnd = Buffer.from(`\r\n--${boundary}`);
  const bytes = new Bytes();
  // parser state: offset where the current part's headers begin, and how far the value scan got
  let partStart = -1;
  let scanFrom = 0;
  let name: string | undefined;
  let valueStart = -1;

  return new Promise<MultipartHead>((resolve, reject) => {
    const finish = (err: Error | undefined, head?: MultipartHead) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.pause();
      if (err) reject(err);
      else resolve(head as MultipartHead);
    };
    const step = (): boolean => {
      const b = bytes.view();
      for (;;) {
        if (partStart < 0) {
          const i = b.indexOf(delim);
          if (i < 0) return false;
          const lineEnd = b.indexOf('\r\n', i);
          if (lineEnd < 0) return false;
          partStart = lineEnd + 2;
        }
        if (valueStart < 0) {
          const h = b.indexOf('\r\n\r\n', partStart);
          if (h < 0) return false;
          const headers = b.subarray(partStart, h).toString('latin1');
          name = /content-disposition:[^\r\n]*?;\s*name="([^"]*)"/i.exec(headers)?.[1];
          valueStart = h + 4;
          scanFrom = valueStart;
        }
        const end = b.indexOf(partEnd, scanFrom);
        if (end < 0) {
          scanFrom = Math.max(valueStart, b.length - partEnd.length);
          return false;
        }
        if (name === 'model') {
          finish(undefined, {
            prefix: Buffer.from(b),
            model: b.subarray(valueStart, end).toString('utf8').trim(),
            valueStart,
            valueEnd: end,
          });
          return true;
        }
        // next part: after "\r\n--boundary" comes "\r\n" or "--" (the end)
        const after = end + partEnd.length;
        if (b.length < after + 2) return false;
        if (b[after] === 0x2d && b[after + 1] === 0x2d) {
          finish(new MultipartError('no_model', "The form must include a 'model' field."));
          return true;
        }
        partStart = after + 2;
        valueStart = -1;
      }
    };
    const onData = (chunk: Buffer) => {
      bytes.push(chunk);
      if (bytes.len > limit) {
        finish(new MultipartError('too_large', 'body too large'));
        return;
      }
      try {
        step();
      } catch (err) {
        finish(new MultipartError('malformed', `malformed multipart body: ${(err as Error).message}`));
      }
    };
    const onEnd = () => {
      if (!step()) finish(new MultipartError('no_model', "The form must include a 'model' field."));
    };
    const onError = (err: Error) => finish(err);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.resume();
  });
}

/** The prefix with the model value replaced (for prefixed or renamed models). */
export function rewriteModel(head: MultipartHead, model: string): Buffer {
  if (model === head.model) return head.prefix;
  return Buffer.concat([
    head.prefix.subarray(0, head.valueStart),
    Buffer.from(model, 'utf8'),
    head.prefix.subarray(head.valueEnd),
  ]);
}
