/**
 * `budget`: PostgreSQL-style memory contexts with budgets, for data-processing jobs.
 *
 * A job gives each stage its own {@linkcode MemoryContext}: a tree rooted at
 * {@linkcode topContext} (TopMemoryContext), where a context is reset or deleted whole, its
 * children with it, and a budget on a context caps the bytes its whole subtree holds, so that
 * a runaway stage stops with PostgreSQL's `out of memory` / `Failed on request of size N in
 * memory context "NAME".` ({@linkcode BudgetExceededError}) instead of exhausting the heap; or
 * calls a soft-budget handler first (spill to disk), or waits for another worker to free
 * memory (`onExceed: "wait"`). The semantics are mcxt.c's and aset.c's: `palloc` allocates in
 * the current context ({@linkcode switchTo}), `pfree` and `repalloc` find the owner from the
 * chunk's header, blocks double up to `maxBlockSize`, small chunks are recycled through
 * power-of-two free lists, and {@linkcode memoryContextStats} prints PostgreSQL's report.
 * Every context, block and chunk header lives in the heap's buffer, so any worker attached to
 * the heap can allocate in a context another worker made (`shared: true` for concurrent use).
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import {
 *   BudgetExceededError,
 *   memoryContextStats,
 *   palloc,
 *   switchTo,
 *   topContext,
 * } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 8 << 20 });
 * const job = topContext(heap).create("job", { budget: 1 << 20 });
 * const parse = job.create("parse");
 * const old = switchTo(parse);
 * for (let i = 0; i < 1000; i++) palloc(64); // rows, in "parse"
 * parse.reset(); // all of them at once
 * try {
 *   for (;;) palloc(4096); // a runaway stage
 * } catch (e) {
 *   if (e instanceof BudgetExceededError) console.log(e.detail);
 *   // Failed on request of size 4096 in memory context "parse".
 * }
 * switchTo(old);
 * memoryContextStats(job);
 * job.delete();
 * ```
 *
 * @module
 */
export { BudgetExceededError } from "./budget_error.ts";
export {
  ALLOCSET_DEFAULT_SIZES,
  ALLOCSET_SMALL_SIZES,
  ALLOCSET_START_SMALL_SIZES,
  MemoryContext,
  type MemoryContextOptions,
  topContext,
} from "./context.ts";
export {
  currentContext,
  memoryContextStats,
  palloc,
  palloc0,
  pfree,
  repalloc,
  switchTo,
} from "./mcxt.ts";
export { type MemoryContextCounters, type MemoryContextStats } from "./stats.ts";
export { type ContextHeap, type SoftBudgetEvent, type SoftBudgetHandler } from "./worker_state.ts";
export { UmemError, type UmemErrorKind } from "../core/mod.ts";
