import type { IncomingHttpHeaders } from 'node:http';
import type { SecretScrubber } from '../providers/upstream-errors.ts';

/**
 * Which upstream response headers reach the client: an allowlist, because an upstream (hostile, buggy, or a
 * debugging proxy in front of it) may put anything in a header, the connection's key included
 * (`www-authenticate`, an echoed `x-debug-authorization`, a `set-cookie` for the provider's console). Passed:
 * - the body's description: `content-type`, `content-length` (not on streams), `content-encoding`;
 * - what clients use to pace themselves: `retry-after`, `retry-after-ms`, the rate-limit families
 *   (`x-ratelimit-*` of OpenAI, Azure, Groq and others; `anthropic-ratelimit-*`; the IETF `ratelimit-*`);
 * - OpenAI's `openai-processing-ms` and `openai-version` (not `openai-organization`/`openai-project`, which name
 *   the provider account);
 * - the upstream's request ID as `x-upstream-request-id` (from `x-request-id`, `request-id` or
 *   `apim-request-id`), for a support ticket with the provider; `x-request-id` is always the gateway's own.
 * A passed value that holds the key in any form (SecretScrubber) is dropped with its header.
 */
const PASS = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'retry-after',
  'retry-after-ms',
  'openai-processing-ms',
  'openai-version',
]);
const PASS_PREFIXES = ['x-ratelimit-', 'anthropic-ratelimit-', 'ratelimit-'];
const UPSTREAM_ID = new Set(['x-request-id', 'request-id', 'apim-request-id']);

function passes(name: string): boolean {
  if (PASS.has(name)) return true;
  for (const p of PASS_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

/** The headers to send the client for an upstream response. */
export function responseHeaders(
  h: IncomingHttpHeaders,
  requestId: string,
  sse: boolean,
  scrubber: SecretScrubber | undefined,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in h) {
    const v = h[name];
    if (v === undefined) continue;
    let to = name;
    if (!passes(name)) {
      if (!UPSTREAM_ID.has(name) || out['x-upstream-request-id'] !== undefined) continue;
      to = 'x-upstream-request-id';
    }
    if (sse && name === 'content-length') continue;
    if (scrubber?.finds(Array.isArray(v) ? v.join('\n') : v)) continue;
    out[to] = v;
  }
  out['x-request-id'] = requestId;
  if (sse) {
    out['cache-control'] = 'no-cache';
    out['x-accel-buffering'] = 'no';
  }
  return out;
}
