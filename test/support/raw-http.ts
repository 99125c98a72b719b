/**
 * HTTP/1.1 on a raw socket, for attacks a client library would normalise away (absolute-form targets, encoded
 * paths, duplicated headers, malformed framing): the bytes go out exactly as written.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string[]>;
  body: string;
  /** Everything the server sent. */
  raw: string;
}

/** Writes `text` (a whole request, CRLFs included) and reads until the server closes or `timeoutMs` passes. */
export function rawExchange(url: string, text: string | Buffer, timeoutMs = 20_000): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no complete answer within ${timeoutMs} ms to ${JSON.stringify(String(text).slice(0, 120))}`,
        ),
      );
    }, timeoutMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      try {
        resolve(parseResponse(raw));
      } catch (err) {
        reject(err);
      }
    });
    socket.write(text);
  });
}

/** A request in raw form; `Connection: close` is added so the server ends the exchange. */
export function rawRequest(
  method: string,
  target: string,
  headers: Record<string, string | string[]> = {},
  body?: string | Buffer,
): Buffer {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  const all: Record<string, string | string[]> = { host: 'localhost', connection: 'close', ...headers };
  if (body !== undefined && all['content-length'] === undefined)
    all['content-length'] = String(Buffer.byteLength(body));
  for (const [k, v] of Object.entries(all))
    for (const one of Array.isArray(v) ? v : [v]) head += `${k}: ${one}\r\n`;
  head += '\r\n';
  return body === undefined
    ? Buffer.from(head, 'latin1')
    : Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]);
}

export function parseResponse(raw: string): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP response: ${JSON.stringify(raw.slice(0, 200))}`);
  const [statusLine = '', ...lines] = raw.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string[]> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    const k = line.slice(0, i).trim().toLowerCase();
    const list = headers[k] ?? [];
    list.push(line.slice(i + 1).trim());
    headers[k] = list;
  }
  let body = raw.slice(end + 4);
  if (headers['transfer-encoding']?.[0] === 'chunked') {
    let out = '';
    for (;;) {
      const nl = body.indexOf('\r\n');
      const size = Number.parseInt(body.slice(0, nl), 16);
      if (!size) break;
      out += body.slice(nl + 2, nl + 2 + size);
      body = body.slice(nl + 2 + size + 2);
    }
    body = out;
  }
  return { status: Number(m[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8'), raw };
}

/** Opens a socket and resolves when it is connected; for slow-client attacks. */
export function openSocket(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), hostname, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when the socket is closed (by either side), with what the server had sent. */
export function closed(socket: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (d) => chunks.push(d));
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    if (socket.destroyed) resolve('');
    socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}
