/**
 * Accounting and budgets: how many bytes each context's subtree holds, and what happens when a
 * request would take a subtree past its budget.
 *
 * Theory. A context counts the bytes of the blocks it holds from the heap (`MC_SELF`,
 * PostgreSQL's `mem_allocated`) and those of its whole subtree (`MC_TREE`): what
 * `MemoryContextMemAllocated(ctx, recurse)` reports and what a budget limits. Chunks come and go
 * inside blocks without changing either figure, so the allocation fast path never looks at a
 * budget: only taking a block from the heap (`reserve`) or giving one back (`release`) does.
 * `reserve` walks from the context to the top under the tree lock and finds the least room
 * left under any budget on the way. When the block wanted does not fit but the block needed
 * does, the block is made smaller (a budget is never passed to round a block up); when even the
 * needed block does not fit, the request is refused:
 * - `onExceed: "error"` (the default): `BudgetExceededError`, PostgreSQL's `out of memory`.
 * - `onExceed: "wait"`, libumem's backpressure: the request registers as a sleeper on the
 *   refusing context's `MC_SEQ` word (under the tree lock, so no release is missed), drops its
 *   locks and `Atomics.wait`s until memory is released in that subtree, then tries again from
 *   the start (a chunk freed meanwhile in its own context will do), until its timeout.
 * - A soft budget (`softBudget`) is checked first: a request that would pass it calls this
 *   worker's handler, outside every lock, once per request, then proceeds (the handler may have
 *   freed memory: spilled to disk and reset a child).
 * `release` subtracts along the same path and wakes whoever sleeps on a context on the way.
 *
 * Invariants (while no operation is in flight).
 * - `MC_TREE(c) = MC_SELF(c) + Σ MC_TREE(child)`; `MC_SELF(c)` = Σ `AB_SIZE` of c's blocks.
 * - `MC_TREE(c) ≤ MC_BUDGET(c)` for every c; a refused request changed nothing.
 * - `MC_SLEEPERS(c)` counts the workers sleeping on `MC_SEQ(c)`, and `MC_WAITERS(x)` those
 *   sleeping while they allocate in x; both are changed with `Atomics`.
 *
 * Lock order: a context's lock (when shared), then the tree lock (`MC_TREELOCK` of the top
 * record), then the vmem arena's locks (inside `Vmem.alloc`/`free`). The tree lock is held only
 * for the walk to the top, never while waiting or calling a handler.
 *
 * @module
 */

import { lock, unlock } from "../core/internal.ts";
import type { HeapView } from "../core/mod.ts";
import { BudgetExceededError } from "./budget_error.ts";
import {
  ARENA_QUANTUM,
  MC_BUDGET,
  MC_ID,
  MC_MAGIC,
  MC_MAGIC_LIVE,
  MC_NO_BUDGET,
  MC_PARENT,
  MC_PEAK,
  MC_POLICY,
  MC_ROOT,
  MC_SELF,
  MC_SEQ,
  MC_SLEEPERS,
  MC_SOFT,
  MC_TREE,
  MC_TREELOCK,
  MC_WAITERS,
  MC_WAITMS,
  POLICY_WAIT,
  readName,
} from "./layout.ts";
import type { TreeState } from "./worker_state.ts";

/** Refused by a hard budget: throw. */
export const R_HARD = 1;
/** Refused by a soft budget: call the handler, then try again. */
export const R_SOFT = 2;
/** Refused by a budget with the "wait" policy: registered as a sleeper; wait, then try again. */
export const R_WAIT = 3;

/** Why the last `reserve` in this worker returned 0 (read at once by the slow path). */
export interface Refusal {
  /** `R_*`. */
  kind: number;
  /** The context whose budget refused. */
  at: number;
  /** Bytes its subtree held. */
  allocated: number;
  /** Its budget (or soft budget). */
  budget: number;
  /** Bytes the request needed from the heap. */
  needed: number;
  /** `MC_SEQ(at)` when the request registered as a sleeper. */
  seq: number;
}

/** The refusal of the last `reserve` that returned 0. One per worker, reused. */
export const refusal: Refusal = { kind: 0, at: 0, allocated: 0, budget: 0, needed: 0, seq: 0 };

const w = (i32: Int32Array, a: number) => i32[a >> 2];

/** Takes the tree lock of the tree `rec` belongs to; returns the lock word's address. */
export function lockTree(h: HeapView, rec: number): number {
  const at = w(h.i32, rec + MC_ROOT) + MC_TREELOCK;
  lock(h, at);
  return at;
}

/**
 * Reserves a block for context `rec`: at least `required` bytes, `wanted` if every budget on
 * the path to the top leaves room. Returns the bytes granted (a multiple of 16), counted in
 * `MC_TREE` of `rec` and its ancestors (and `MC_SELF` of `rec` when `addSelf`), or 0 with
 * {@linkcode refusal} filled in. Soft budgets of the contexts in `skip` are ignored. With
 * `mayWait`, a refusal by a "wait" budget registers the caller as a sleeper (`R_WAIT`); the
 * caller must then call {@linkcode afterRefusal}, which unregisters it.
 */
export function reserve(
  h: HeapView,
  rec: number,
  required: number,
  wanted: number,
  addSelf: boolean,
  skip: readonly number[] | null,
  mayWait: boolean,
): number {
  const tl = lockTree(h, rec);
  try {
    const i32 = h.i32;
    let hardRoom = MC_NO_BUDGET, hardAt = 0, softRoom = MC_NO_BUDGET, softAt = 0;
    for (let a = rec; a !== 0; a = w(i32, a + MC_PARENT)) {
      const t = w(i32, a + MC_TREE), b = w(i32, a + MC_BUDGET), s = w(i32, a + MC_SOFT);
      if (b !== MC_NO_BUDGET && b - t < hardRoom) {
        hardRoom = b - t;
        hardAt = a;
      }
      if (s !== MC_NO_BUDGET && s - t < softRoom && (skip === null || !skip.includes(a))) {
        softRoom = s - t;
        softAt = a;
      }
    }
    // The soft budget first: its handler may free enough that the hard budget passes too.
    if (required > softRoom) {
      refusal.kind = R_SOFT;
      refusal.at = softAt;
      refusal.allocated = w(i32, softAt + MC_TREE);
      refusal.budget = w(i32, softAt + MC_SOFT);
      refusal.needed = required;
      return 0;
    }
    if (required > hardRoom) {
      const budget = w(i32, hardAt + MC_BUDGET);
      refusal.at = hardAt;
      refusal.allocated = w(i32, hardAt + MC_TREE);
      refusal.budget = budget;
      refusal.needed = required;
      refusal.kind = R_HARD;
      if (mayWait && w(i32, hardAt + MC_POLICY) === POLICY_WAIT && required <= budget) {
        Atomics.add(i32, (hardAt + MC_SLEEPERS) >> 2, 1);
        Atomics.add(i32, (rec + MC_WAITERS) >> 2, 1);
        refusal.seq = Atomics.load(i32, (hardAt + MC_SEQ) >> 2);
        refusal.kind = R_WAIT;
      }
      return 0;
    }
    let g = Math.min(wanted, hardRoom, softRoom);
    g -= g % ARENA_QUANTUM;
    if (g < required) g = required;
    for (let a = rec; a !== 0; a = w(i32, a + MC_PARENT)) {
      i32[(a + MC_TREE) >> 2] = w(i32, a + MC_TREE) + g;
    }
    if (addSelf) i32[(rec + MC_SELF) >> 2] += g;
    return g;
  } finally {
    unlock(h, tl);
  }
}

/**
 * Brings the peaks of context `rec` and its ancestors up to their present bytes, once a block
 * reserved with {@linkcode reserve} was really taken (a reservation the heap could not serve
 * is given back and never counts as a peak).
 */
export function notePeak(h: HeapView, rec: number): void {
  const tl = lockTree(h, rec);
  try {
    const i32 = h.i32;
    for (let a = rec; a !== 0; a = w(i32, a + MC_PARENT)) {
      const t = w(i32, a + MC_TREE);
      if (t > w(i32, a + MC_PEAK)) i32[(a + MC_PEAK) >> 2] = t;
    }
  } finally {
    unlock(h, tl);
  }
}

/** Wakes the workers sleeping on context `a` (tree lock held). */
function wakeLocked(i32: Int32Array, a: number): void {
  if (Atomics.load(i32, (a + MC_SLEEPERS) >> 2) > 0) {
    Atomics.add(i32, (a + MC_SEQ) >> 2, 1);
    Atomics.notify(i32, (a + MC_SEQ) >> 2);
  }
}

/**
 * Gives back `bytes` of blocks counted from context `rec` up (the tree lock held by the
 * caller): `selfBytes` of them were `rec`'s own. Wakes sleepers on the way.
 */
export function releaseLocked(h: HeapView, rec: number, bytes: number, selfBytes: number): void {
  const i32 = h.i32;
  if (selfBytes !== 0) i32[(rec + MC_SELF) >> 2] -= selfBytes;
  for (let a = rec; a !== 0; a = w(i32, a + MC_PARENT)) {
    i32[(a + MC_TREE) >> 2] -= bytes;
    wakeLocked(i32, a);
  }
}

/** {@linkcode releaseLocked} under the tree lock. */
export function release(h: HeapView, rec: number, bytes: number, selfBytes: number): void {
  const tl = lockTree(h, rec);
  try {
    releaseLocked(h, rec, bytes, selfBytes);
  } finally {
    unlock(h, tl);
  }
}

/**
 * A chunk was freed in context `rec` while workers wait to allocate there: wakes the sleepers
 * of `rec` and its ancestors (one of them is the budget the waiters sleep on).
 */
export function wakeChunkWaiters(h: HeapView, rec: number): void {
  const tl = lockTree(h, rec);
  try {
    const i32 = h.i32;
    for (let a = rec; a !== 0; a = w(i32, a + MC_PARENT)) wakeLocked(i32, a);
  } finally {
    unlock(h, tl);
  }
}

/** The names of the contexts from the top down to `rec`. */
export function pathOf(h: HeapView, rec: number): string[] {
  const out: string[] = [];
  for (let a = rec, n = 0; a !== 0 && n < 10_000; a = w(h.i32, a + MC_PARENT), n++) {
    out.push(readName(h.u8, h.i32, a));
  }
  return out.reverse();
}

/** The error for a request of `request` bytes in `rec` refused by the budget of `at`. */
export function budgetError(
  h: HeapView,
  rec: number,
  request: number,
  at: number,
  budget: number,
  allocated: number,
): BudgetExceededError {
  return new BudgetExceededError(
    request,
    pathOf(h, rec),
    readName(h.u8, h.i32, at),
    budget,
    allocated,
    rec,
  );
}

/**
 * Acts on the refusal a `reserve` for context `rec` just returned, with no lock held: throws
 * `BudgetExceededError` for a hard refusal (or a wait that timed out); waits for a release for
 * a "wait" refusal; calls this worker's soft-budget handler for a soft one and adds the context
 * to `skip`. Returns the deadline of the wait (-1 when none began), to pass back on the next
 * refusal of the same request.
 */
export function afterRefusal(
  st: TreeState,
  rec: number,
  request: number,
  skip: number[],
  deadline: number,
): number {
  const h = st.heap;
  const { kind, at, allocated, budget, needed, seq } = refusal;
  if (kind === R_SOFT) {
    skip.push(at);
    const entry = st.soft.get(at);
    h.sync();
    if (entry !== undefined && entry.id === h.i32[(at + MC_ID) >> 2] && !st.inSoft.has(at)) {
      st.inSoft.add(at);
      try {
        entry.fn({
          address: at,
          name: readName(h.u8, h.i32, at),
          request,
          allocated,
          softBudget: budget,
          needed,
        });
      } finally {
        st.inSoft.delete(at);
      }
    }
    return deadline;
  }
  if (kind === R_WAIT) {
    h.sync();
    const now = Date.now();
    if (deadline < 0) deadline = now + h.i32[(at + MC_WAITMS) >> 2];
    const left = deadline - now;
    try {
      if (left > 0) Atomics.wait(h.i32, (at + MC_SEQ) >> 2, seq, left);
    } finally {
      h.sync();
      // The context may have been deleted meanwhile (a misuse); do not write into freed memory.
      if (h.i32[(at + MC_MAGIC) >> 2] === MC_MAGIC_LIVE) {
        Atomics.sub(h.i32, (at + MC_SLEEPERS) >> 2, 1);
      }
      if (h.i32[(rec + MC_MAGIC) >> 2] === MC_MAGIC_LIVE) {
        Atomics.sub(h.i32, (rec + MC_WAITERS) >> 2, 1);
      }
    }
    if (left > 0) return deadline;
    const i32 = h.i32;
    throw budgetError(h, rec, request, at, w(i32, at + MC_BUDGET), w(i32, at + MC_TREE));
  }
  throw budgetError(h, rec, request, at, budget, allocated);
}
