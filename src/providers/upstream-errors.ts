/**
 * What an upstream said in an error body, across the providers' shapes: `{"error":{"message"}}` (OpenAI and
 * most compatible servers), `{"error":"..."}`, `{"message"}` and `{"detail"}`; plain text as it is. Undefined
 * when there is nothing to quote.
 */
export function upstreamErrorMessage(body: string): string | undefined {
  try {
    const j = JSON.parse(body) as Record<string, unknown>;
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
