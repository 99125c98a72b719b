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

/** Replaces every occurrence of the connection's key (some providers echo it in errors) before text leaves. */
export function redactKey(text: string, key: string | undefined, mask: string): string {
  return key && key.length >= 4 ? text.split(key).join(mask) : text;
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
