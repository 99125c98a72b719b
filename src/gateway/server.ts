import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { Socket } from 'node:net';
import { GatewayError } from './errors.ts';
import type { GatewayMetrics } from './metrics.ts';

/** Longer than the idle timeout of common load balancers (60 s), so they close first, never mid-request. */
const KEEP_ALIVE_MS = 72_000;

export interface ServerLimits {
  /** Time to receive a request's headers (then 408; slowloris). Default 30 s. */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, body included (then 408). Default 5 min. */
  requestTimeoutMs?: number;
  /** Concurrent client connections; more are closed at once. Default 4096. */
  maxConnections?: number;
  metrics: GatewayMetrics;
}

/**
 * The gateway's HTTP server: node:http with the limits a server facing the network needs (the gateway's
 * Limits table in docs/gateway.md). Every request goes to `handle` (the front door).
 */
export function createGatewayServer(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
  o: ServerLimits,
): Server {
  const headersTimeout = o.headersTimeoutMs ?? 30_000;
  // How often node:http looks for connections past the headers and request timeouts (its default, 30 s, would
  // let a slowloris socket live up to a minute); it also ends connections that never send a byte.
  const connectionsCheckingInterval = Math.max(250, Math.min(5000, Math.floor(headersTimeout / 2)));
  const server = createServer({ connectionsCheckingInterval }, handle);
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.headersTimeout = headersTimeout;
  server.requestTimeout = o.requestTimeoutMs ?? 300_000;
  server.maxConnections = o.maxConnections ?? 4096;
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) =>
    answerClientError(err, socket, o.metrics),
  );
  return server;
}

/**
 * A request node:http could not take (malformed, headers too large, too slow): an OpenAI-shaped answer on the
 * raw socket, then the connection closes.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket, metrics: GatewayMetrics): void {
  const inResponse = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inResponse?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, message, code] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'The request headers are larger than the gateway accepts.', 'headers_too_large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'The request did not arrive in time.', 'request_timeout']
        : [400, 'The request is not valid HTTP/1.1.', 'bad_request'];
  metrics.answered('none', status, code);
  const body = JSON.stringify(new GatewayError(status, message, { code }).toJSON());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
