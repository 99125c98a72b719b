/**
 * Incremental multipart/form-data parser: fields are kept (up to a cap), file contents are only counted, so an
 * upload of any size costs a few kilobytes of memory.
 */
export interface MultipartFile {
  field: string;
  filename: string;
  size: number;
}

export interface MultipartBody {
  fields: Record<string, string>;
  files: MultipartFile[];
}

const MAX_HEADER_BYTES = 16 * 1024;
const MAX_FIELD_BYTES = 1024 * 1024;

export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^multipart\/form-data/i.test(contentType)) return undefined;
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

interface Part {
  name: string;
  filename?: string;
  size: number;
  chunks: Buffer[];
}

export class MultipartParser {
  private readonly delimiter: Buffer;
  private buf: Buffer = Buffer.from('\r\n');
  private state: 'preamble' | 'after-delimiter' | 'headers' | 'body' | 'done' = 'preamble';
  private part: Part | undefined;
  readonly result: MultipartBody = { fields: {}, files: [] };

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  write(chunk: Buffer): void {
    if (this.state === 'done') return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.state === 'preamble') {
        const i = this.buf.indexOf(this.delimiter);
        if (i < 0) {
          this.keepTail();
          return;
        }
        this.buf = this.buf.subarray(i + this.delimiter.length);
        this.state = 'after-delimiter';
      } else if (this.state === 'after-delimiter') {
        if (this.buf.length < 2) return;
        if (this.buf[0] === 0x2d && this.buf[1] === 0x2d) {
          this.state = 'done';
          this.buf = Buffer.alloc(0);
          return;
        }
        const eol = this.buf.indexOf('\r\n');
        if (eol < 0) return;
        this.buf = this.buf.subarray(eol + 2);
        this.state = 'headers';
      } else if (this.state === 'headers') {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (this.buf.length > MAX_HEADER_BYTES) throw new Error('multipart part headers too large');
          return;
        }
        this.part = parsePartHeaders(this.buf.subarray(0, end).toString('utf8'));
        this.buf = this.buf.subarray(end + 4);
        this.state = 'body';
      } else if (this.state === 'body') {
        const i = this.buf.indexOf(this.delimiter);
        if (i < 0) {
          const keep = this.delimiter.length - 1;
          if (this.buf.length > keep) {
            this.consume(this.buf.subarray(0, this.buf.length - keep));
            this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
          }
          return;
        }
        this.consume(this.buf.subarray(0, i));
        this.finishPart();
        this.buf = this.buf.subarray(i + this.delimiter.length);
        this.state = 'after-delimiter';
      } else {
        return;
      }
    }
  }

  /** The parsed body; throws when the stream ended before the closing delimiter. */
  end(): MultipartBody {
    if (this.state !== 'done') throw new Error('multipart body ended before the closing boundary');
    return this.result;
  }

  private keepTail(): void {
    const keep = this.delimiter.length - 1;
    if (this.buf.length > keep) this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
  }

  private consume(data: Buffer): void {
    const part = this.part;
    if (!part || data.length === 0) return;
    part.size += data.length;
    if (part.filename === undefined && part.size <= MAX_FIELD_BYTES) part.chunks.push(Buffer.from(data));
  }

  private finishPart(): void {
    const part = this.part;
    this.part = undefined;
    if (!part) return;
    if (part.filename !== undefined) {
      this.result.files.push({ field: part.name, filename: part.filename, size: part.size });
    } else {
      this.result.fields[part.name] = Buffer.concat(part.chunks).toString('utf8');
    }
  }
}

function parsePartHeaders(text: string): Part {
  let name = '';
  let filename: string | undefined;
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim().toLowerCase() !== 'content-disposition') continue;
    const value = line.slice(colon + 1);
    name = /\bname="([^"]*)"/i.exec(value)?.[1] ?? /\bname=([^;\s]+)/i.exec(value)?.[1] ?? '';
    const fn = /\bfilename="([^"]*)"/i.exec(value)?.[1] ?? /\bfilename=([^;\s]+)/i.exec(value)?.[1];
    if (fn !== undefined) filename = fn;
  }
  return { name, filename, size: 0, chunks: [] };
}
