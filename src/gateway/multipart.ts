import { Readable } from 'node:stream';
import { errors, GatewayError } from './errors.ts';

/**
 * multipart/form-data for routing: the gateway authorises and routes on the form's `model` field, so the upstream
 * must read exactly that field and nothing that could stand for another one. Upstream parsers disagree on
 * malformed forms (python-multipart/starlette, Go's mime/multipart, busboy, formidable and undici's fetch parser
 * differ on duplicate headers and parameters, header folding, `name*=`, LF-only line ends, whitespace after a
 * boundary, a boundary right after the part headers, `name=` inside a quoted filename, transfer encodings), so
 * the gateway accepts only forms every one of them reads the same way:
 * - the Content-Type has one `boundary` (and at most `charset=utf-8`); the upstream gets it in canonical form;
 * - the body starts with the boundary line; `--boundary` occurs only as a delimiter (after CRLF, followed by
 *   CRLF or by `--` for the closing one) and never after the closing delimiter;
 * - part headers are `token: value` lines ended by CRLF, at most {@link MULTIPART_LIMITS.headerBytes} per part,
 *   without bare CR/LF, control characters or folding, with exactly one `Content-Disposition: form-data` whose
 *   parameters are tokens or quoted strings without backslashes, none repeated and no `name*`;
 * - a part counts as the `model` field when its `name` parameter, however spelled (quoted or not, any case of
 *   the header or parameter name), is `model`. There must be exactly one: a second one is refused, as is a name
 *   that only differs from `model` in case, spacing or a `[...]` suffix, and any other `name=model` text in the
 *   Content-Disposition (which a regex-based parser would read). The `model` part is a plain text field: no
 *   filename, no Content-Transfer-Encoding, no charset but UTF-8.
 * The value is always replaced by the upstream model ID, so the upstream never reads the client's bytes as the
 * model.
 *
 * The whole body is read and checked before any byte goes upstream. Streaming the file while checking the rest
 * would hold less memory when `model` comes first, but the check can only fail after the upstream has a prefix
 * of the upload (python-multipart even accepts a form without its closing boundary), the failure would surface
 * as an upstream error that counts against the connection's health, and a streamed body cannot be replayed for
 * failover. Uploads that name `model` after the file (the Node SDK's `{file, model}` order) were already held
 * whole, so the worst case per request is unchanged: the body limit (25 MiB by default), allocated once when
 * the client declares a length. Figures: docs/gateway.md.
 *
 * The scan is linear: every delimiter and header-end search resumes where the last one stopped, less the length
 * of a partial match, so a chunk costs its own length plus at most the boundary's length plus 4; a header block
 * (at most 8 KiB) is read a fixed number of times more. `MultipartScanner.scanned` counts the bytes examined, and
 * test/security/multipart.test.ts holds them to a constant per byte at growing sizes.
 */

export const MULTIPART_LIMITS = {
  /** One part's header block, CRLFs included. */
  headerBytes: 8 * 1024,
  parts: 128,
  /** The `model` field's value. */
  modelBytes: 1024,
} as const;

export type MultipartErrorKind = 'too_large' | 'no_model' | 'content_type' | 'malformed';

/** A refused upload; {@link multipartError} makes the response. */
export class MultipartError extends Error {
  readonly kind: MultipartErrorKind;
  constructor(kind: MultipartErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

/**
 * The response for a refused upload: 413 `request_too_large`, 400 `missing_model`, 400 `invalid_content_type`
 * or 400 `invalid_multipart` with the message naming the problem. The rest of the body is unread, so the
 * connection should be closed after the response.
 */
export function multipartError(err: MultipartError, limit: number): GatewayError {
  switch (err.kind) {
    case 'too_large':
      return errors.tooLarge(limit);
    case 'no_model':
      return errors.missingModel();
    case 'content_type':
      return new GatewayError(400, err.message, { code: 'invalid_content_type' });
    default:
      return new GatewayError(400, err.message, { code: 'invalid_multipart' });
  }
}

const malformed = (message: string) => new MultipartError('malformed', message);

// RFC 9110 token characters, and RFC 2046 boundary characters (bchars less the space, which clients never use).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=?]{1,70}$/;

export interface MultipartContentType {
  boundary: string;
  /** What to send upstream: `multipart/form-data; boundary=...`, nothing else. */
  contentType: string;
}

/** Parses a request's Content-Type strictly; throws a `content_type` MultipartError naming the problem. */
export function parseMultipartContentType(header: string | undefined): MultipartContentType {
  const fail = (why: string) =>
    new MultipartError(
      'content_type',
      `The Content-Type must be multipart/form-data with one boundary parameter: ${why}.`,
    );
  const parsed = parseParams(header ?? '');
  if (!parsed) throw fail('it is not a well-formed media type');
  if (parsed.value.toLowerCase() !== 'multipart/form-data') throw fail('it is not multipart/form-data');
  let boundary: string | undefined;
  for (const [name, value] of parsed.params) {
    if (name === 'boundary') boundary = value;
    else if (name === 'charset') {
      if (!/^(utf-8|us-ascii)$/i.test(value)) throw fail('the only charset accepted is utf-8');
    } else throw fail(`the parameter '${name}' is not accepted`);
  }
  if (!boundary) throw fail('the boundary is missing');
  if (!BOUNDARY.test(boundary)) throw fail('the boundary has characters outside RFC 2046 or is too long');
  return {
    boundary,
    contentType: `multipart/form-data; boundary=${TOKEN.test(boundary) ? boundary : `"${boundary}"`}`,
  };
}

/** The boundary of a Content-Type that {@link parseMultipartContentType} accepts, else undefined. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  try {
    return parseMultipartContentType(contentType).boundary;
  } catch {
    return undefined;
  }
}

interface Params {
  value: string;
  /** Lower-cased names in order; a repeated name fails the parse. */
  params: Map<string, string>;
}

/**
 * `value *(OWS ";" OWS name OWS "=" OWS (token / quoted-string)) [OWS ";"] OWS` over a latin1 string. Quoted
 * strings may not hold backslashes (parsers unescape them differently) or control characters; bytes above 0x7f
 * only inside quotes. undefined when anything else is found, or a parameter name repeats.
 */
function parseParams(s: string): Params | undefined {
  let i = 0;
  const n = s.length;
  const ows = () => {
    while (i < n && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && TCHAR[s.charCodeAt(i)]) i++;
    return s.slice(start, i);
  };
  ows();
  let value = token();
  if (s[i] === '/') {
    i++;
    const sub = token();
    if (!sub) return undefined;
    value = `${value}/${sub}`;
  }
  if (!value) return undefined;
  const params = new Map<string, string>();
  for (;;) {
    ows();
    if (i === n) return { value, params };
    if (s[i] !== ';') return undefined;
    i++;
    ows();
    if (i === n) return { value, params }; // one trailing ";" is harmless everywhere
    const name = token().toLowerCase();
    if (!name) return undefined;
    ows();
    if (s[i] !== '=') return undefined;
    i++;
    ows();
    let v: string;
    if (s[i] === '"') {
      const start = ++i;
      while (i < n && s[i] !== '"') {
        const c = s.charCodeAt(i);
        if (c === 0x5c || c === 0x7f || (c < 0x20 && c !== 0x09)) return undefined;
        i++;
      }
      if (i === n) return undefined;
      v = s.slice(start, i);
      i++;
    } else {
      v = token();
      if (!v) return undefined;
    }
    if (params.has(name)) return undefined;
    params.set(name, v);
  }
}

const TCHAR = (() => {
  const t = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    t[c.charCodeAt(0)] = 1;
  return t;
})();

/** Without leading and trailing spaces and tabs; a loop, because `/[ \t]+$/` is quadratic over a run of spaces. */
function trimSpaceTab(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && (s[start] === ' ' || s[start] === '\t')) start++;
  while (end > start && (s[end - 1] === ' ' || s[end - 1] === '\t')) end--;
  return s.slice(start, end);
}

/** A field name a lenient application could take for `model`: case, surrounding space, backslashes, `[...]`. */
const nearModel = (name: string) =>
  name.replace(/\\/g, '').replace(/\[.*$/s, '').trim().toLowerCase() === 'model';

/**
 * `name=` anywhere in a Content-Disposition, as a regex-based parser (formidable) finds it, with its value. No
 * two quantifiers may take the same spaces (`\s*\*?\s*` backtracks quadratically over a run of spaces).
 */
const NAME_MENTION = /(?<![A-Za-z0-9_])name\s*(?:\*\s*)?=\s*(?:"([^"]*)|([^\s;"]*))/gi;

interface PartInfo {
  isModel: boolean;
}

/** Checks one part's header block (CRLF-terminated lines, without the blank line). */
function checkPartHeaders(block: Buffer, part: number, seenModel: boolean): PartInfo {
  const fail = (why: string) => malformed(`Part ${part} of the form: ${why}.`);
  for (let i = 0; i < block.length; i++) {
    const c = block[i] as number;
    if (c === 0x0d) {
      if (block[i + 1] !== 0x0a) throw fail('its headers have a CR without LF');
    } else if (c === 0x0a) {
      if (block[i - 1] !== 0x0d) throw fail('its headers have a LF without CR');
    } else if ((c < 0x20 && c !== 0x09) || c === 0x7f) {
      throw fail('its headers have control characters');
    }
  }
  const lines = block.toString('latin1').split('\r\n');
  lines.pop(); // the block ends with CRLF
  let disposition: string | undefined;
  const others: [string, string][] = [];
  for (const line of lines) {
    if (line[0] === ' ' || line[0] === '\t') throw fail('its headers are folded over several lines');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw fail('it has a header line that is not "Name: value"');
    const value = trimSpaceTab(line.slice(colon + 1));
    if (name.toLowerCase() === 'content-disposition') {
      if (disposition !== undefined) throw fail('it has more than one Content-Disposition header');
      disposition = value;
    } else {
      others.push([name.toLowerCase(), value]);
    }
  }
  if (disposition === undefined) throw fail('it has no Content-Disposition header');
  const cd = parseParams(disposition);
  if (!cd)
    throw fail(
      'its Content-Disposition is not `form-data` with unrepeated token or quoted parameters (no backslashes)',
    );
  if (cd.value.toLowerCase() !== 'form-data') throw fail('its Content-Disposition is not form-data');
  for (const key of cd.params.keys())
    if (key.startsWith('name*')) throw fail('it names its field with name*=, which is not accepted');
  const name = cd.params.get('name');
  if (name === undefined) throw fail('its Content-Disposition has no name');
  let mentions = 0;
  for (const m of disposition.matchAll(NAME_MENTION)) if (nearModel(m[1] ?? m[2] ?? '')) mentions++;
  const isModel = name === 'model';
  if ((!isModel && (nearModel(name) || mentions > 0)) || (isModel && mentions !== 1))
    throw fail("its field name is ambiguous: it could be read as 'model'");
  if (isModel && seenModel) throw malformed("The form has more than one 'model' field.");
  if (isModel) {
    if (cd.params.has('filename') || cd.params.has('filename*'))
      throw fail("the 'model' field has a filename; it must be a plain text field");
    for (const [h, v] of others) {
      const plain =
        h === 'content-type' && /^text\/plain[ \t]*(;[ \t]*charset="?(utf-8|us-ascii)"?)?$/i.test(v);
      if (!plain)
        throw fail(
          "the 'model' field may only have a Content-Disposition and a text/plain; charset=utf-8 Content-Type",
        );
    }
  }
  return { isModel };
}

/** The checked form: where the model's value lies in the body. */
export interface ScannedForm {
  body: Buffer;
  /** The model as the client named it (trimmed). */
  model: string;
  /** Byte range of the model part's value in body. */
  valueStart: number;
  valueEnd: number;
}

/**
 * Incremental multipart checker: push() the chunks as they arrive (it throws a MultipartError as soon as the
 * form is refused), then end(). Holds the whole body, in one buffer grown by doubling.
 */
export class MultipartScanner {
  /** Bytes examined by the searches and header checks; linear in the body (see the file's comment). */
  scanned = 0;
  /** Bytes copied while growing the buffer. */
  copied = 0;
  private buf: Buffer;
  private len = 0;
  private readonly dash: Buffer;
  private readonly limit: number;
  private state: 'start' | 'headers' | 'data' | 'epilogue' = 'start';
  private from = 0; // where the current search resumes
  private partStart = 0;
  private dataStart = 0;
  private parts = 0;
  private inModel = false;
  private modelRange: [number, number] | undefined;

  constructor(boundary: string, opts: { limit: number; sizeHint?: number }) {
    this.dash = Buffer.from(`--${boundary}`, 'latin1');
    this.limit = opts.limit;
    this.buf = Buffer.allocUnsafe(Math.max(1024, Math.min(opts.sizeHint ?? 64 * 1024, opts.limit)));
  }

  get size(): number {
    return this.len;
  }

  push(chunk: Buffer): void {
    if (this.len + chunk.length > this.limit) throw new MultipartError('too_large', 'body too large');
    if (this.len + chunk.length > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + chunk.length) cap *= 2;
      const next = Buffer.allocUnsafe(Math.min(cap, this.limit));
      this.buf.copy(next, 0, 0, this.len);
      this.copied += this.len;
      this.buf = next;
    }
    chunk.copy(this.buf, this.len);
    this.len += chunk.length;
    this.advance(false);
  }

  end(): ScannedForm {
    this.advance(true);
    if (this.state !== 'epilogue')
      throw malformed('The form ends before its closing boundary (--boundary--).');
    const range = this.modelRange;
    const body = this.buf.subarray(0, this.len);
    const model = range ? body.toString('utf8', range[0], range[1]).trim() : '';
    if (!range || !model) throw new MultipartError('no_model', "The form must include a 'model' field.");
    return { body, model, valueStart: range[0], valueEnd: range[1] };
  }

  private indexOf(needle: Buffer | string, from: number): number {
    const i = this.buf.subarray(0, this.len).indexOf(needle, from);
    this.scanned += (i < 0 ? this.len : i + needle.length) - from;
    return i;
  }

  private advance(final: boolean): void {
    const dash = this.dash;
    const b = this.buf;
    for (;;) {
      if (this.state === 'start') {
        if (this.len < dash.length + 2) {
          if (final) throw malformed('The form does not start with its boundary.');
          return;
        }
        this.scanned += dash.length + 2;
        if (b.compare(dash, 0, dash.length, 0, dash.length) !== 0)
          throw malformed('The form must start with its boundary line (no preamble).');
        if (b[dash.length] === 0x2d && b[dash.length + 1] === 0x2d) {
          this.state = 'epilogue';
          this.from = dash.length + 2;
          continue;
        }
        if (b[dash.length] !== 0x0d || b[dash.length + 1] !== 0x0a)
          throw malformed('The boundary line must end with CRLF.');
        this.startPart(dash.length + 2);
        continue;
      }
      if (this.state === 'headers') {
        // From two bytes back, so that a part without headers (the delimiter's CRLF, then CRLF) is found too.
        const k = this.indexOf('\r\n\r\n', this.from);
        if (k < 0) {
          if (this.len - this.partStart > MULTIPART_LIMITS.headerBytes + 2)
            throw malformed(
              `Part ${this.parts} of the form: its headers are larger than ${MULTIPART_LIMITS.headerBytes / 1024} KiB.`,
            );
          if (final) throw malformed(`The form ends inside the headers of part ${this.parts}.`);
          this.from = Math.max(this.partStart - 2, this.len - 3);
          return;
        }
        const blockEnd = Math.max(this.partStart, k + 2);
        if (blockEnd - this.partStart > MULTIPART_LIMITS.headerBytes)
          throw malformed(
            `Part ${this.parts} of the form: its headers are larger than ${MULTIPART_LIMITS.headerBytes / 1024} KiB.`,
          );
        const block = b.subarray(this.partStart, blockEnd);
        this.scanned += block.length * 2;
        if (block.indexOf(dash) >= 0)
          throw malformed(`Part ${this.parts} of the form: the boundary appears inside its headers.`);
        const info = checkPartHeaders(block, this.parts, this.modelRange !== undefined);
        this.inModel = info.isModel;
        this.dataStart = k + 4;
        this.from = this.dataStart;
        this.state = 'data';
        continue;
      }
      // data or epilogue: the next "--boundary" must be a delimiter in data, and there must be none after the end
      const i = this.indexOf(dash, this.from);
      if (i < 0) {
        const pending = this.len - this.dataStart - dash.length - 2; // the value, less a partial delimiter
        if (this.state === 'data' && this.inModel && pending > MULTIPART_LIMITS.modelBytes)
          throw malformed(`The 'model' field is longer than ${MULTIPART_LIMITS.modelBytes} bytes.`);
        if (final) return;
        this.from = Math.max(this.from, this.len - dash.length + 1);
        return;
      }
      if (this.state === 'epilogue')
        throw malformed('The form has data with its boundary after the closing boundary.');
      const after = i + dash.length;
      if (this.len < after + 2) {
        if (final) throw malformed('The form ends inside a boundary line.');
        this.from = i;
        return;
      }
      this.scanned += 4;
      const crlfBefore = i >= this.dataStart + 2 && b[i - 2] === 0x0d && b[i - 1] === 0x0a;
      const next = b.readUInt16BE(after);
      const isPart = next === 0x0d0a;
      const isEnd = next === 0x2d2d;
      if (!crlfBefore || !(isPart || isEnd))
        throw malformed(
          `Part ${this.parts} of the form: its boundary appears other than as a delimiter line (CRLF --boundary CRLF).`,
        );
      if (this.inModel) {
        if (i - 2 - this.dataStart > MULTIPART_LIMITS.modelBytes)
          throw malformed(`The 'model' field is longer than ${MULTIPART_LIMITS.modelBytes} bytes.`);
        this.modelRange = [this.dataStart, i - 2];
        this.inModel = false;
      }
      if (isEnd) {
        this.state = 'epilogue';
        this.from = after + 2;
        continue;
      }
      this.startPart(after + 2);
    }
  }

  private startPart(at: number): void {
    if (++this.parts > MULTIPART_LIMITS.parts)
      throw malformed(`The form has more than ${MULTIPART_LIMITS.parts} parts.`);
    this.partStart = at;
    this.from = at - 2;
    this.state = 'headers';
  }
}

/** How a caller watches an upload as it arrives: each chunk (throw to refuse it), and a signal to stop it. */
export interface UploadWatch {
  /** Called with each chunk before it is scanned; an exception refuses the upload with it. */
  onChunk?: (chunk: Buffer) => void;
  /** Aborting stops the read; readMultipart rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Feeds a stream into a scanner to its end; on a refusal the stream is left paused and unread. */
function scan(stream: Readable, scanner: MultipartScanner, watch: UploadWatch = {}): Promise<ScannedForm> {
  return new Promise<ScannedForm>((resolve, reject) => {
    let done = false;
    const finish = (err: Error | undefined, form?: ScannedForm) => {
      if (done) return;
      done = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      watch.signal?.removeEventListener('abort', onAbort);
      stream.pause();
      if (err) reject(err);
      else resolve(form as ScannedForm);
    };
    const onAbort = () => finish(watch.signal?.reason as Error);
    if (watch.signal?.aborted) return onAbort();
    watch.signal?.addEventListener('abort', onAbort, { once: true });
    const onData = (chunk: Buffer) => {
      try {
        watch.onChunk?.(chunk);
        scanner.push(chunk);
      } catch (err) {
        finish(err as Error);
      }
    };
    const onEnd = () => {
      try {
        finish(undefined, scanner.end());
      } catch (err) {
        finish(err as Error);
      }
    };
    const onError = (err: Error) => finish(err);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.resume();
  });
}

/** A checked upload, ready to be sent to any number of upstreams. */
export interface MultipartUpload {
  /** The model as the client named it (its one `model` field, trimmed). */
  model: string;
  /** The Content-Type to send upstream (canonical, with the client's boundary). */
  contentType: string;
  /** Bytes received. */
  size: number;
  /** The body with the `model` value replaced by `upstreamModel`: a fresh stream on each call (failover). */
  body(upstreamModel: string): { data: Readable; length: number };
}

/**
 * Reads and checks a whole multipart upload (see the file's comment). Throws a MultipartError: `too_large` (also
 * at once when `declaredLength` is over the limit), `no_model`, or `malformed` with a message for the client.
 */
export async function readMultipart(
  stream: Readable,
  opts: { contentType: string | undefined; limit: number; declaredLength?: number } & UploadWatch,
): Promise<MultipartUpload> {
  const ct = parseMultipartContentType(opts.contentType);
  const declared = Number.isFinite(opts.declaredLength) ? opts.declaredLength : undefined;
  if (declared !== undefined && declared > opts.limit)
    throw new MultipartError('too_large', 'body too large');
  const scanner = new MultipartScanner(ct.boundary, { limit: opts.limit, sizeHint: declared });
  const form = await scan(stream, scanner, opts);
  const before = form.body.subarray(0, form.valueStart);
  const after = form.body.subarray(form.valueEnd);
  return {
    model: form.model,
    contentType: ct.contentType,
    size: form.body.length,
    body(upstreamModel) {
      const value = Buffer.from(upstreamModel, 'utf8');
      return {
        data: Readable.from([before, value, after], { objectMode: false }),
        length: before.length + value.length + after.length,
      };
    },
  };
}
