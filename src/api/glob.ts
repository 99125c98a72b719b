/**
 * Model patterns, as ModelAllowlists and client-key scopes write them: an exact model ID, or a glob where `*`
 * matches any run of characters (`gpt-4o*`, `*-mini`). No other character is special. One matcher for both.
 *
 * Matching is linear in the ID's length, whatever the pattern: the pattern is cut at its stars, the first piece
 * must start the ID, the last must end it, and each piece between is found left to right with indexOf (for
 * star-only globs the leftmost place of each piece is always a right one). A regular expression would
 * backtrack: `*a*b*` against a long ID an upstream or a client chose could stall the event loop.
 */
export const isGlob = (pattern: string): boolean => pattern.includes('*');

export interface ModelPattern {
  readonly pattern: string;
  matches(id: string): boolean;
}

const compiled = new Map<string, ModelPattern>();

/** The matcher of one pattern (cached; patterns come from configuration, so the cache is bounded in practice). */
export function modelPattern(pattern: string): ModelPattern {
  let m = compiled.get(pattern);
  if (!m) {
    m = compile(pattern);
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(pattern, m);
  }
  return m;
}

function compile(pattern: string): ModelPattern {
  if (!isGlob(pattern)) return { pattern, matches: (id) => id === pattern };
  const pieces = pattern.split('*');
  const first = pieces[0] as string;
  const last = pieces[pieces.length - 1] as string;
  const middle = pieces.slice(1, -1).filter((p) => p !== '');
  const fixed = first.length + last.length;
  return {
    pattern,
    matches(id) {
      if (id.length < fixed || !id.startsWith(first) || !id.endsWith(last)) return false;
      let at = first.length;
      const end = id.length - last.length;
      for (const piece of middle) {
        const i = id.indexOf(piece, at);
        if (i < 0 || i + piece.length > end) return false;
        at = i + piece.length;
      }
      return true;
    },
  };
}
