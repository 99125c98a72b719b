/** A request being proxied, as drain sees it. */
export interface InFlightRequest {
  /** Ends the request for shutdown: an SSE error event when streaming, else a 503. */
  terminate(): void;
}

/** What add() returns, for remove(). */
export type InFlightHandle = object;

interface Entry {
  request: InFlightRequest | undefined;
  prev: Entry | undefined;
  next: Entry | undefined;
}

/**
 * The requests in progress, so drain can wait for them or end them: an intrusive doubly linked list.
 *
 * Not a Set, on purpose. A Set that adds and deletes on every request rehashes its table every few dozen requests,
 * and V8 links each retired table to its successor (for live iterators). With a Set, requests that had ended stayed
 * alive through minor GCs until the next full GC, as if retired tables in the old generation held them: at
 * concurrency 32 almost all of a request's objects were promoted (about 2 MB per scavenge, a mark-compact every
 * half second) and the gateway used 1.6-1.8x the floor proxy's CPU per request (bench/README.md). A removed entry
 * here points at nothing, so a dead entry in the old generation retains nothing either.
 */
export class InFlightRequests {
  private head: Entry | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Tracks `request` until remove() is called with the returned entry. */
  add(request: InFlightRequest): InFlightHandle {
    const entry: Entry = { request, prev: undefined, next: this.head };
    if (this.head) this.head.prev = entry;
    this.head = entry;
    this.count++;
    return entry;
  }

  remove(handle: InFlightHandle): void {
    const entry = handle as Entry;
    if (!entry.request) return;
    if (entry.prev) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    entry.request = entry.prev = entry.next = undefined;
    this.count--;
  }

  /** Terminates every request in progress, skipping any that ends meanwhile (each removes itself). */
  terminateAll(): void {
    const entries: Entry[] = [];
    for (let e = this.head; e; e = e.next) entries.push(e);
    for (const e of entries) e.request?.terminate();
  }
}
