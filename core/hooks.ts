/**
 * Heap hooks: how a module above the core watches or vets this worker's allocations.
 *
 * Theory. `profile` records every alloc, free and resize; `own` refuses the free of a buffer
 * that is borrowed or moved. Both need one call at each of those points, and neither may cost
 * the fast path more than it already pays: the sized `alloc` and `free` test one boolean of
 * the handle (`HeapView.intercepting`) that is true when the heap debugs or a hook is attached,
 * and only then take the slow path that calls the hooks.
 *
 * Invariants. Hooks are this worker's (functions cannot live in the buffer): each worker that
 * wants them attaches its own. `intercepting === debugging || hooks.length > 0`. An `alloc`
 * hook runs after the allocation succeeded; a `free` hook runs before the allocator changes
 * anything, so a hook that throws refuses the free and leaves the heap as it was; a `resize`
 * hook runs after a successful `realloc`. The hooks see the heap's sized interface
 * (`Heap.alloc`, `zalloc`, `free`), `heap.libc` and every `Cache`.
 *
 * @module
 */
import type { HeapView } from "./image.ts";

/** Calls a module wants at this worker's allocations and frees. */
export interface HeapHook {
  /**
   * After an allocation.
   *
   * @param ptr the new buffer
   * @param size the size asked for (a cache's buffer size for `Cache.alloc`)
   * @param cache the cache record's address for `Cache.alloc`, else 0
   */
  alloc?(ptr: number, size: number, cache: number): void;
  /**
   * Before a free; throwing refuses it.
   *
   * @param ptr the buffer
   * @param size the size given back (the cache's buffer size for `Cache.free`, the usable size
   *   for `libc.free`)
   * @param cache the cache record's address for `Cache.free`, else 0
   */
  free?(ptr: number, size: number, cache: number): void;
  /**
   * After `libc.realloc` moved or resized a block.
   *
   * @param oldPtr the block before
   * @param oldSize its usable size before
   * @param newPtr the block now (may equal `oldPtr`)
   * @param newSize the size asked for
   */
  resize?(oldPtr: number, oldSize: number, newPtr: number, newSize: number): void;
}

/**
 * Attaches a hook to this worker's handle.
 *
 * @param h the heap handle
 * @param hook the calls
 * @returns a function that detaches the hook (calling it twice does nothing)
 */
export function attachHeapHook(h: HeapView, hook: HeapHook): () => void {
  h.hooks = [...h.hooks, hook];
  h.intercepting = true;
  return () => {
    const i = h.hooks.indexOf(hook);
    if (i < 0) return;
    h.hooks = h.hooks.filter((x) => x !== hook);
    h.intercepting = h.debugging || h.hooks.length > 0;
  };
}
