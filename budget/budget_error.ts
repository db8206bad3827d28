/**
 * The errors of memory contexts: {@linkcode BudgetExceededError}, and the reports for bad
 * input (sizes, pointers, names, options).
 *
 * Theory. PostgreSQL reports a failed `palloc` as `ERROR: out of memory` with the detail
 * `Failed on request of size N in memory context "NAME".`; a request that would take a
 * context's subtree past its budget reads the same way, so that a job's logs read as
 * PostgreSQL's, and the error carries what a program needs to react: the size, the context,
 * its path from TopMemoryContext, and which context's budget refused. Every other bad call is a
 * core {@linkcode UmemError} whose `kind` says what was wrong (`invalid-argument`, `bad-free`,
 * `duplicate-free`, `destroyed`) and whose message names the function, the address in hex and
 * what was expected. An error is raised before anything is changed (DESIGN.md, principle 8).
 *
 * Invariants. Nothing here reads or writes the image. Lock order: none.
 *
 * @module
 */

import { UmemError } from "../core/mod.ts";
import { MAX_ALLOC } from "./layout.ts";

/**
 * Raised when a request would take a context's subtree past its budget (or, under the "wait"
 * policy, still would when the wait times out). Nothing was allocated by the request. The
 * message reads as PostgreSQL's: `out of memory`, then `Failed on request of size N in memory
 * context "NAME".`, then a line naming the budget that refused.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { BudgetExceededError, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const stage = topContext(heap).create("stage", { budget: 64 << 10 });
 * try {
 *   for (;;) stage.alloc(4000);
 * } catch (e) {
 *   if (e instanceof BudgetExceededError) {
 *     console.log(e.detail); // Failed on request of size 4000 in memory context "stage".
 *     console.log(e.path.join(" > ")); // TopMemoryContext > stage
 *   }
 * }
 * ```
 */
export class BudgetExceededError extends UmemError {
  /** The size the request asked for. */
  readonly request: number;
  /** The name of the context the request was made in. */
  readonly context: string;
  /** The names of the contexts from TopMemoryContext down to the one the request was made in. */
  readonly path: readonly string[];
  /** The name of the context whose budget refused (the request's context or an ancestor). */
  readonly budgetContext: string;
  /** That context's budget, in bytes. */
  readonly budget: number;
  /** Bytes its subtree held when the request was refused. */
  readonly allocated: number;
  /** PostgreSQL's detail line: `Failed on request of size N in memory context "NAME".` */
  readonly detail: string;

  /**
   * Creates the error.
   *
   * @param request the requested size
   * @param path the context names from the top down to the request's context
   * @param budgetContext the name of the context whose budget refused
   * @param budget its budget
   * @param allocated the bytes its subtree held
   * @param address the address of the request's context record
   */
  constructor(
    request: number,
    path: readonly string[],
    budgetContext: string,
    budget: number,
    allocated: number,
    address = 0,
  ) {
    const context = path[path.length - 1] ?? "?";
    const detail = `Failed on request of size ${request} in memory context "${context}".`;
    super(
      "budget-exceeded",
      `out of memory\n${detail}\nThe budget of memory context "${budgetContext}" is ` +
        `${budget} bytes; its subtree holds ${allocated} (${path.join(" > ")}).`,
      address,
    );
    this.name = "BudgetExceededError";
    this.request = request;
    this.context = context;
    this.path = path;
    this.budgetContext = budgetContext;
    this.budget = budget;
    this.allocated = allocated;
    this.detail = detail;
  }
}

/** Checks a request size as PostgreSQL does (`AllocSizeIsValid`); returns it. */
export function checkRequest(fn: string, size: unknown): number {
  if (typeof size !== "number" || !Number.isInteger(size) || size < 0 || size > MAX_ALLOC) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: invalid memory alloc request size ${
        typeof size === "number" ? String(size) : typeof size
      } (expected a whole number in [0, ${MAX_ALLOC}])`,
    );
  }
  return size;
}
