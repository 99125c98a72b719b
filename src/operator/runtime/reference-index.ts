/**
 * Which objects refer to which: owner key → the keys it references, and the reverse. Kept up to date from an
 * informer's add/update/delete events, it answers "who refers to this?" in time proportional to the answer, so
 * an event on a referenced object enqueues exactly its referrers instead of scanning every owner (controller-runtime's
 * field indexes, as Flux and external-secrets use them for Secrets).
 */
export class ReferenceIndex {
  private readonly forward = new Map<string, Set<string>>();
  private readonly reverse = new Map<string, Set<string>>();

  /** Records the owner's references now, replacing what it referred to before. */
  set(owner: string, refs: Iterable<string>): void {
    const next = new Set(refs);
    const before = this.forward.get(owner);
    for (const r of before ?? []) if (!next.has(r)) this.unlink(owner, r);
    for (const r of next) {
      if (before?.has(r)) continue;
      const owners = this.reverse.get(r);
      if (owners) owners.add(owner);
      else this.reverse.set(r, new Set([owner]));
    }
    if (next.size) this.forward.set(owner, next);
    else this.forward.delete(owner);
  }

  delete(owner: string): void {
    for (const r of this.forward.get(owner) ?? []) this.unlink(owner, r);
    this.forward.delete(owner);
  }

  /** The owners that reference `ref`. */
  referrers(ref: string): string[] {
    return [...(this.reverse.get(ref) ?? [])];
  }

  /** Number of owners with at least one reference. */
  get size(): number {
    return this.forward.size;
  }

  private unlink(owner: string, ref: string): void {
    const owners = this.reverse.get(ref);
    owners?.delete(owner);
    if (owners?.size === 0) this.reverse.delete(ref);
  }
}
