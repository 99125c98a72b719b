/**
 * An HTTP `Retry-After` value (RFC 9110 section 10.2.3: seconds, or an HTTP date) as milliseconds from now;
 * undefined when absent or unreadable. A repeated header counts by its first value.
 */
export function retryAfterMs(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = (Array.isArray(v) ? v[0] : v)?.trim();
  if (!s) return undefined;
  const secs = Number(s);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
