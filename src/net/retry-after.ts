/**
 * An HTTP `Retry-After` value (RFC 9110 section 10.2.3: seconds, or an HTTP date) as milliseconds from now;
 * undefined when absent or unreadable, at most a day. A repeated header counts by its first value.
 */
export function retryAfterMs(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = (Array.isArray(v) ? v[0] : v)?.trim();
  if (!s) return undefined;
  if (/^\d+(?:\.\d+)?$/.test(s)) return Math.min(Number(s) * 1000, MAX_MS); // delay-seconds (a fraction tolerated)
  // An HTTP date names its month (IMF-fixdate, RFC 850 and asctime forms all do); Date.parse alone would read
  // "-5" as a year.
  const at = /[A-Za-z]{3}/.test(s) ? Date.parse(s) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.min(MAX_MS, Math.max(0, at - now));
}

/** A day: the longest wait read from a header (callers clamp further); always finite. */
const MAX_MS = 24 * 60 * 60 * 1000;
