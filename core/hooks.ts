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
 * anything, so a hook that throws refuses the free and leaves the heap as it was; a `freed`
 * hook runs after the free succeeded; a `resize` hook runs after a successful `realloc`. The
 * hooks see each call at the level the program made it: the heap's sized interface
 * (`Heap.alloc`, `zalloc`, `free`), `heap.libc` (whose blocks the hooks see as the program's
 * pointers and sizes, not the sized allocations underneath: `hookDepth` hides those) and every
 * `Cache`. A hook must not allocate from the heap it watches.
 *
 * @module
 */
import { debugQuickMax } from "./debug_quick.ts";
import { DBG_AUDIT, DBG_LAYER } from "./buftag.ts";
import { HDR_AUDIT_SAMPLE, HDR_DEBUG, HDR_SIZE_TABLE, HDR_STACKS, type HeapView } from "./image.ts";

/** The `cache` argument of a hook for a call through `heap.libc` (0 is the sized interface). */
export const HOOK_LIBC = -1;

/** Calls a module wants at this worker's allocations and frees. */
export interface HeapHook {
  /**
   * After an allocation.
   *
   * @param ptr the new buffer
   * @param size the size asked for (a cache's buffer size for `Cache.alloc`)
   * @param cache the cache record's address for `Cache.alloc`, {@linkcode HOOK_LIBC} for
   *   `heap.libc`, 0 for the sized interface
   */
  alloc?(ptr: number, size: number, cache: number): void;
  /**
   * Before a free; throwing refuses it.
   *
   * @param ptr the buffer
   * @param size the size given back (the cache's buffer size for `Cache.free`, the size the
   *   block was asked with for `libc.free`)
   * @param cache the cache record's address for `Cache.free`, {@linkcode HOOK_LIBC} for
   *   `heap.libc`, 0 for the sized interface
   */
  free?(ptr: number, size: number, cache: number): void;
  /**
   * After a free succeeded.
   *
   * @param ptr the buffer
   * @param size as for `free`
   * @param cache as for `free`
   */
  freed?(ptr: number, size: number, cache: number): void;
  /**
   * Before `libc.realloc` resizes or moves a block (not for `realloc(0, n)`, a malloc, nor for
   * `realloc(p, 0)`, a free, which run those hooks); throwing refuses it, with nothing changed.
   *
   * @param ptr the block
   * @param size the size it was asked with
   * @param newSize the size asked for now
   */
  resizing?(ptr: number, size: number, newSize: number): void;
  /**
   * After `libc.realloc` moved or resized a block.
   *
   * @param oldPtr the block before
   * @param oldSize the size it was asked with
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
  setDispatch(h);
  return () => {
    const i = h.hooks.indexOf(hook);
    if (i < 0) return;
    h.hooks = h.hooks.filter((x) => x !== hook);
    setDispatch(h);
  };
}

/**
 * Derives the handle's dispatch flags, which the fast paths test, from the image's debugging
 * flags and this worker's hooks: `debugging`, `debugQuick` (0 while a hook is attached: the
 * debug fast path calls none), `intercepting`, `checkedFast`, `checkedTab`, `auditEntry` (not
 * with a hook either: a hook's own transactions would take the stack meant for the one it is
 * called in) and `auditSampled`. Called when a handle is made, when a new image has laid its
 * debugging and its size table, and when a hook comes or goes.
 *
 * @param h the heap handle
 */
export function setDispatch(h: HeapView): void {
  const flags = h.i32[HDR_DEBUG >> 2];
  h.debugging = (flags & DBG_LAYER) !== 0;
  h.debugQuick = h.hooks.length > 0 ? 0 : debugQuickMax(h, flags);
  h.intercepting = h.debugging || h.hooks.length > 0;
  h.checkedFast = !h.intercepting && !h.trust;
  h.checkedTab = h.checkedFast ? h.i32[HDR_SIZE_TABLE >> 2] >> 2 : 0;
  h.auditEntry = (flags & DBG_AUDIT) !== 0 && h.i32[HDR_STACKS >> 2] !== 0 &&
    h.hooks.length === 0;
  h.auditSampled = h.i32[HDR_AUDIT_SAMPLE >> 2] > 1 && h.auditLeft !== 0;
}

/** Runs the `alloc` hooks (the caller checked `hooks.length !== 0 && hookDepth === 0`). */
export function runAllocHooks(h: HeapView, ptr: number, size: number, cache: number): void {
  const hooks = h.hooks;
  for (let i = 0; i < hooks.length; i++) hooks[i].alloc?.(ptr, size, cache);
}

/** Runs the `free` hooks, before a free; one that throws refuses it. */
export function runFreeHooks(h: HeapView, ptr: number, size: number, cache: number): void {
  const hooks = h.hooks;
  for (let i = 0; i < hooks.length; i++) hooks[i].free?.(ptr, size, cache);
}

/** Runs the `freed` hooks, after a free. */
export function runFreedHooks(h: HeapView, ptr: number, size: number, cache: number): void {
  const hooks = h.hooks;
  for (let i = 0; i < hooks.length; i++) hooks[i].freed?.(ptr, size, cache);
}

/** Runs the `resizing` hooks, before a realloc; one that throws refuses it. */
export function runResizingHooks(h: HeapView, ptr: number, size: number, newSize: number): void {
  const hooks = h.hooks;
  for (let i = 0; i < hooks.length; i++) hooks[i].resizing?.(ptr, size, newSize);
}

/** Runs the `resize` hooks, after a realloc. */
export function runResizeHooks(
  h: HeapView,
  oldPtr: number,
  oldSize: number,
  newPtr: number,
  newSize: number,
): void {
  const hooks = h.hooks;
  for (let i = 0; i < hooks.length; i++) hooks[i].resize?.(oldPtr, oldSize, newPtr, newSize);
}

/** True when hooks should see a call now: some are attached and no outer call hides it. */
export function hooksLive(h: HeapView): boolean {
  return h.hooks.length !== 0 && h.hookDepth === 0;
}

/** A module's cleanup of a dead worker's state: `(heap, slot) => void`. */
export type SlotReclaimer = (h: HeapView, slot: number) => void;

/** Every module's slot reclaimer, in the order they registered (once per module load). */
const reclaimers: SlotReclaimer[] = [];

/**
 * Registers a module's cleanup of a dead worker's state, run by `Heap.reclaimSlot` after the
 * core flushed the slot's magazines and before the slot is handed out again. A module calls it
 * once, when it loads; the function must work from any worker, on any heap (it finds its
 * records through the module anchors).
 *
 * @param fn the cleanup
 */
export function addSlotReclaimer(fn: SlotReclaimer): void {
  if (!reclaimers.includes(fn)) reclaimers.push(fn);
}

/** Runs every module's slot reclaimer for `slot`. */
export function runSlotReclaimers(h: HeapView, slot: number): void {
  for (const fn of reclaimers) fn(h, slot);
}
