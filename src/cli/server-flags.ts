import type { GatewayOptions } from '../gateway/app.ts';
import { parseBytes, parseDurationMs } from './args.ts';

/** The HTTP server's limits, shared by `gateway`, `standalone` and `start`. */
export const SERVER_FLAGS = {
  'headers-timeout': { type: 'string', default: '30s' },
  'request-timeout': { type: 'string', default: '5m' },
  'body-idle-timeout': { type: 'string', default: '30s' },
  'max-connections': { type: 'string', default: '4096' },
  'max-buffered-bodies': { type: 'string' },
  'allowed-hosts': { type: 'string' },
} as const;

export const SERVER_USAGE = `  --headers-timeout 30s        Time a client has to send a request's headers (then 408)
  --request-timeout 5m         Time a client has to send a whole request, body included (then 408)
  --body-idle-timeout 30s      Longest pause while a request body arrives (then 408)
  --max-connections 4096       Concurrent client connections; more are closed at once
  --max-buffered-bodies SIZE   Request bodies held at once, all requests together (then 503);
                               default half the V8 heap limit, between 32MiB and 1GiB
  --allowed-hosts a,b          Host header names served (IP addresses always are); others get 403`;

type Values = { [K in keyof typeof SERVER_FLAGS]?: string };

/** The gateway options the flags set; `defaultHosts` are allowed on top of --allowed-hosts (standalone). */
export function serverOptions(
  v: Values,
  defaultHosts?: readonly string[],
): Pick<
  GatewayOptions,
  | 'headersTimeoutMs'
  | 'requestTimeoutMs'
  | 'bodyIdleTimeoutMs'
  | 'maxConnections'
  | 'bodyBudget'
  | 'allowedHosts'
> {
  const max = Number(v['max-connections'] ?? '4096');
  if (!Number.isInteger(max) || max < 1) throw new Error('--max-connections must be a positive whole number');
  const listed = (v['allowed-hosts'] ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  const hosts = defaultHosts || listed.length ? [...(defaultHosts ?? []), ...listed] : undefined;
  return {
    headersTimeoutMs: parseDurationMs(v['headers-timeout'] ?? '30s'),
    requestTimeoutMs: parseDurationMs(v['request-timeout'] ?? '5m'),
    bodyIdleTimeoutMs: parseDurationMs(v['body-idle-timeout'] ?? '30s'),
    maxConnections: max,
    ...(v['max-buffered-bodies'] ? { bodyBudget: parseBytes(v['max-buffered-bodies']) } : {}),
    ...(hosts ? { allowedHosts: hosts } : {}),
  };
}

/**
 * The names a standalone server answers to by default: loopback's, and the listen address's own when it is a
 * name. A web page elsewhere cannot make a browser send them (DNS rebinding needs a name the attacker owns).
 */
export function localHosts(listenHost: string): string[] {
  const hosts = ['localhost'];
  if (listenHost && !['0.0.0.0', '::', '127.0.0.1', '::1'].includes(listenHost)) hosts.push(listenHost);
  return hosts;
}
