/**
 * mcxt.c's entry points that work on the current context: `MemoryContextSwitchTo`, `palloc`,
 * `palloc0`, `pfree`, `repalloc`, and the `MemoryContextStats` report.
 *
 * Theory. As in PostgreSQL, each worker has a current memory context (`CurrentMemoryContext`,
 * a variable of this worker: see worker_state.ts); `palloc` allocates in it, so a stage that
 * switches to its own context makes every allocation of the code it calls belong to the stage,
 * and `switchTo` returns the previous context to switch back to. `pfree` and `repalloc` need no
 * context: they read the owner from the chunk's header (in the heap of the current context,
 * since an address is an offset into one heap), and `repalloc` keeps the chunk in its owner.
 *
 * Invariants. The fast paths are those of alloc_set.ts, reached with no JavaScript allocation;
 * the per-worker state of the heap is looked up only on the slow path.
 *
 * Lock order: as alloc_set.ts (the owner's lock when shared, the tree lock, the arena's).
 *
 * @module
 */

import { type Heap, UmemError } from "../core/mod.ts";
import {
  allocChunk,
  allocFast,
  freeChunk,
  freeFast,
  HDR_SIZE_WORD,
  reallocChunk,
} from "./alloc_set.ts";
import { MemoryContext } from "./context.ts";
import { formatStats } from "./stats.ts";
import { treeOf } from "./arena.ts";
import { current, setCurrent } from "./worker_state.ts";

// HDR_SIZE's word index, module-local so that V8 folds it into the fast paths (see
// core/magazine.ts), checked against the declaration.
const SIZE_WORD = 3;
if (SIZE_WORD !== HDR_SIZE_WORD) throw new Error("budget/mcxt.ts: HDR_SIZE_WORD moved");

/** The error for an entry point called with no current context. */
function noCurrent(fn: string): UmemError {
  return new UmemError(
    "invalid-argument",
    `${fn}: this worker has no current memory context ` +
      "(call topContext(heap) or switchTo(ctx) first)",
  );
}

/**
 * This worker's current memory context (`CurrentMemoryContext`), or null before any
 * `topContext` or `switchTo`.
 *
 * @returns the current context
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { currentContext, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * topContext(heap);
 * console.log(currentContext()?.name); // TopMemoryContext
 * ```
 */
export function currentContext(): MemoryContext | null {
  return current;
}

/**
 * Makes `ctx` this worker's current context, as `MemoryContextSwitchTo`.
 *
 * @param ctx the new current context (null: none)
 * @returns the previous current context, to switch back to
 * @throws {UmemError} `invalid-argument` for something not a `MemoryContext`
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { palloc, switchTo, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const stage = topContext(heap).create("stage");
 * const old = switchTo(stage);
 * palloc(100); // in "stage"
 * switchTo(old);
 * console.log(stage.isEmpty(), old?.name); // false TopMemoryContext
 * ```
 */
export function switchTo(ctx: MemoryContext | null): MemoryContext | null {
  if (ctx !== null && !(ctx instanceof MemoryContext)) {
    throw new UmemError(
      "invalid-argument",
      `switchTo: expected a MemoryContext or null, got ${typeof ctx}`,
    );
  }
  return setCurrent(ctx);
}

/**
 * Allocates `size` bytes in the current context, as `palloc`. The memory is not cleared.
 *
 * @param size bytes, a whole number in [0, 2^30 - 1]
 * @returns the chunk's address (8-aligned, never 0)
 * @throws {BudgetExceededError} when a budget refuses: `out of memory` / `Failed on request of
 *   size N in memory context "NAME".`
 * @throws {OutOfMemoryError} when the heap cannot grow
 * @throws {UmemError} `invalid-argument` for a bad size or no current context; `destroyed`
 *   when the current context was deleted
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { palloc, pfree, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * topContext(heap);
 * const p = palloc(16);
 * heap.i32[p >> 2] = 42;
 * pfree(p);
 * ```
 */
export function palloc(size: number): number {
  const c = current;
  if (c === null) throw noCurrent("palloc");
  const h = c.heap as Heap;
  if (h.i32[SIZE_WORD] !== h.mapped) h.remap(); // h.sync(), inlined
  if (c.shared !== true) {
    const p = allocFast(h, c.address, c.id, size);
    if (p !== 0) return p;
  }
  return allocChunk(treeOf(h), c.address, c.id, size, "palloc");
}

/**
 * Allocates `size` bytes set to zero in the current context, as `palloc0`.
 *
 * @param size bytes
 * @returns the chunk's address
 * @throws {BudgetExceededError} as {@linkcode palloc}
 * @throws {OutOfMemoryError} as {@linkcode palloc}
 * @throws {UmemError} as {@linkcode palloc}
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { palloc0, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * topContext(heap);
 * const p = palloc0(40);
 * console.log(heap.u8[p + 39]); // 0
 * ```
 */
export function palloc0(size: number): number {
  const p = palloc(size);
  current!.heap.u8.fill(0, p, p + size);
  return p;
}

/**
 * Frees a chunk of any context of the current context's heap, as `pfree`: the owner is read
 * from the chunk's header.
 *
 * @param ptr the chunk
 * @throws {UmemError} `bad-free` (not a chunk of a memory context, an interior pointer, a
 *   chunk from before its context's last reset), `duplicate-free` (freed already), `destroyed`
 *   (its context was deleted), `invalid-argument` (NULL, not a number, no current context)
 *
 * @example
 * ```ts
 * import { Heap, UmemError } from "@umem/umem";
 * import { pfree, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const other = topContext(heap).create("other");
 * const p = other.alloc(10);
 * pfree(p); // current is TopMemoryContext; the chunk is "other"'s
 * try {
 *   pfree(p);
 * } catch (e) {
 *   console.log((e as UmemError).kind); // duplicate-free
 * }
 * ```
 */
export function pfree(ptr: number): void {
  const c = current;
  if (c === null) throw noCurrent("pfree");
  const h = c.heap as Heap;
  if (h.i32[SIZE_WORD] !== h.mapped) h.remap(); // h.sync(), inlined
  if (freeFast(h, ptr, 0)) return;
  freeChunk(treeOf(h), ptr, 0, "pfree");
}

/**
 * Resizes a chunk of any context of the current context's heap, as `repalloc`: the chunk
 * stays in its own context (whose budget applies); in place when it fits, else moved with its
 * contents.
 *
 * @param ptr the chunk
 * @param size the new size
 * @returns the chunk's (possibly new) address
 * @throws {BudgetExceededError} when the owner's budget refuses (the old chunk is kept)
 * @throws {UmemError} as {@linkcode pfree}, and `invalid-argument` for a bad size
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { repalloc, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const rows = topContext(heap).create("rows");
 * let p = rows.alloc(8);
 * heap.u8[p] = 9;
 * p = repalloc(p, 100_000);
 * console.log(heap.u8[p], rows.memAllocated() > 100_000); // 9 true
 * ```
 */
export function repalloc(ptr: number, size: number): number {
  const c = current;
  if (c === null) throw noCurrent("repalloc");
  return reallocChunk(treeOf(c.heap as Heap), ptr, size, 0, "repalloc");
}

/**
 * Prints the statistics of `ctx` and its subtree as PostgreSQL's `MemoryContextStats` does:
 * one line per context, indented two spaces per level, `NAME: T total in B blocks; F free (C
 * chunks); U used`, past `maxChildren` children a summary line, then `Grand total: ...`.
 *
 * @param ctx the root of the report (TopMemoryContext for the whole tree)
 * @param options `maxChildren` (default 100), `maxLevel` (default 100), `write` (where the
 *   report goes; default `console.log`; pass `() => {}` to only get the text)
 * @returns the report
 * @throws {UmemError} `destroyed` when `ctx` was deleted; `invalid-argument` for a bad option
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { memoryContextStats, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const top = topContext(heap);
 * top.create("ExecutorState").alloc(100);
 * const text = memoryContextStats(top, { write: () => {} });
 * const line = text.split("\n")[1];
 * console.log(line); //   ExecutorState: 8192 total in 1 blocks; 7808 free (0 chunks); 384 used
 * ```
 */
export function memoryContextStats(
  ctx: MemoryContext,
  options: { maxChildren?: number; maxLevel?: number; write?: (text: string) => void } = {},
): string {
  const fn = "memoryContextStats";
  if (!(ctx instanceof MemoryContext)) {
    throw new UmemError("invalid-argument", `${fn}: expected a MemoryContext, got ${typeof ctx}`);
  }
  if (typeof options !== "object" || options === null) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
  const maxChildren = options.maxChildren ?? 100, maxLevel = options.maxLevel ?? 100;
  for (const [k, v] of [["maxChildren", maxChildren], ["maxLevel", maxLevel]] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new UmemError("invalid-argument", `${fn}: ${k} ${v} is not a whole number ≥ 0`);
    }
  }
  if (options.write !== undefined && typeof options.write !== "function") {
    throw new UmemError("invalid-argument", `${fn}: write must be a function`);
  }
  const text = formatStats(ctx.stats(), maxChildren, maxLevel);
  (options.write ?? console.log)(text);
  return text;
}
