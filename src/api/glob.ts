/**
 * Model patterns, as ModelAllowlists and client-key scopes write them: an exact model ID, or a glob where `*`
 * matches any run of characters (`gpt-4o*`, `*-mini`). No other character is special. One matcher for both.
 */
export const isGlob = (pattern: string): boolean => pattern.includes('*');

const compiled = new Map<string, RegExp>();

/** `gpt-*` → /^gpt-.*$/ (cached; patterns come from configuration, so the cache is bounded in practice). */
export function globToRegExp(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.split('*').map(escapeRegExp).join('.*')}$`);
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(pattern, re);
  }
  return re;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
