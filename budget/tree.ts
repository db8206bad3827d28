/**
 * The context tree: resetting or deleting a subtree, and walking the tree.
 *
 * Theory. Reset and delete follow mcxt.c. `MemoryContextReset` deletes the children, then
 * resets the context itself; `MemoryContextResetOnly` resets the context alone;
 * `MemoryContextDelete` deletes the children, then the context. Each context's reset callbacks
 * run, last registered first, children before their parent, before any lock is taken (they are
 * this worker's functions, and may allocate); then, under the context's lock (when shared) and
 * the tree lock, the doomed records are unlinked and marked deleted, the kept context is
 * emptied, and the bytes are released up the tree (waking any worker waiting on a budget);
 * last, with only the context's lock held, the blocks go back to the tree's block source
 * (arena.ts).
 *
 * Invariants. A context's children are linked through `MC_FIRSTCHILD`/`MC_NEXTSIB`/
 * `MC_PREVSIB` and `MC_NCHILDREN` counts them; the top is never deleted; a deleted record is
 * never linked.
 *
 * Lock order: the context's lock (shared contexts), the tree lock, then the arena's locks. A
 * reset or delete holds no lock while the callbacks run. Deleting a context that another
 * worker is using is a misuse (as in PostgreSQL), not something the locks make safe.
 *
 * @module
 */

import { lock, unlock } from "../core/internal.ts";
import { UmemError } from "../core/mod.ts";
import { releaseLocked } from "./accounting.ts";
import { checkLive, killRecord, nextGen, resetBlocks } from "./alloc_set.ts";
import {
  hex,
  MC_FIRSTCHILD,
  MC_FLAGS,
  MC_GEN,
  MC_LOCK,
  MC_NBLOCKS,
  MC_NCHILDREN,
  MC_NEXTSIB,
  MC_PARENT,
  MC_PREVSIB,
  MC_ROOT,
  MC_SEQ,
  MC_SLEEPERS,
  MC_TREE,
  MC_TREELOCK,
  MC_WAITERS,
  MCF_SHARED,
} from "./layout.ts";
import type { TreeState } from "./worker_state.ts";

const w = (i32: Int32Array, a: number) => i32[a >> 2];

/** The subtree of `rec`, children before their parent (`rec` last). */
export function subtreePostOrder(i32: Int32Array, rec: number): number[] {
  const out: number[] = [], stack = [rec];
  while (stack.length > 0) {
    const c = stack.pop()!;
    out.push(c);
    if (out.length > 1 << 22) throw new Error(`budget: the tree under ${hex(rec)} loops`);
    for (let ch = w(i32, c + MC_FIRSTCHILD); ch !== 0; ch = w(i32, ch + MC_NEXTSIB)) {
      stack.push(ch);
    }
  }
  return out.reverse();
}

/** The direct children of `rec`, newest first. */
export function childrenOf(i32: Int32Array, rec: number): number[] {
  const out: number[] = [];
  for (let ch = w(i32, rec + MC_FIRSTCHILD); ch !== 0; ch = w(i32, ch + MC_NEXTSIB)) {
    out.push(ch);
    if (out.length > 1 << 22) throw new Error(`budget: the children of ${hex(rec)} loop`);
  }
  return out;
}

/**
 * What a reset or delete did: the records of the contexts it deleted, and the first error a
 * callback threw (undefined when none did), which the caller rethrows after it has moved this
 * worker's current context off the deleted ones.
 */
export interface TreeChange {
  /** The contexts deleted. */
  doomed: readonly number[];
  /** The first error a callback threw. */
  error: unknown;
}

/**
 * Runs this worker's reset callbacks of each context in `recs`, in that order, each context's
 * last registered first; forgets them. Returns the first error a callback threw (the others
 * still run).
 */
function runCallbacks(st: TreeState, recs: readonly number[]): unknown {
  let first: unknown = undefined;
  for (const rec of recs) {
    // A callback may register another on the same context: it runs in this reset too, as
    // PostgreSQL's MemoryContextCallResetCallbacks pops the list until it is empty.
    for (;;) {
      const entry = st.callbacks.get(rec);
      if (entry === undefined) break;
      st.callbacks.delete(rec);
      st.heap.sync();
      if (entry.gen !== w(st.heap.i32, rec + MC_GEN)) break; // reset elsewhere, or deleted
      for (let i = entry.fns.length - 1; i >= 0; i--) {
        try {
          entry.fns[i]();
        } catch (e) {
          first ??= e;
        }
      }
    }
  }
  return first;
}

/** Wakes every worker sleeping on a context about to be deleted (tree lock held). */
function wakeDoomed(i32: Int32Array, recs: readonly number[]): void {
  for (const r of recs) {
    if (Atomics.load(i32, (r + MC_SLEEPERS) >> 2) > 0 || Atomics.load(i32, (r + MC_WAITERS) >> 2)) {
      Atomics.add(i32, (r + MC_SEQ) >> 2, 1);
      Atomics.notify(i32, (r + MC_SEQ) >> 2);
    }
  }
}

/** An empty list, shared. */
const NONE: number[] = [];

/** Gives blocks `[address, size, ...]` back to the arena. */
function freeBlocks(st: TreeState, blocks: readonly number[]): void {
  for (let i = 0; i < blocks.length; i += 2) st.blocks.free(blocks[i], blocks[i + 1]);
}

/** Unlinks every child of `rec` and kills their subtrees (tree lock held); returns blocks. */
function dropChildren(st: TreeState, rec: number, doomed: number[]): number[] {
  const h = st.heap, blocks: number[] = [];
  for (const child of childrenOf(h.i32, rec)) doomed.push(...subtreePostOrder(h.i32, child));
  wakeDoomed(h.i32, doomed);
  for (const d of doomed) blocks.push(...killRecord(h, d));
  h.i32[(rec + MC_FIRSTCHILD) >> 2] = 0;
  h.i32[(rec + MC_NCHILDREN) >> 2] = 0;
  return blocks;
}

/**
 * `MemoryContextReset` (with `deleteChildren`) or `MemoryContextResetOnly`: runs the
 * callbacks, deletes the children if asked, and empties the context. Returns the records of
 * the contexts deleted and the first error a callback threw, for the caller to rethrow once
 * it has moved this worker's current context off the deleted ones.
 * @throws {UmemError} `destroyed` for a deleted context
 */
export function resetContext(
  st: TreeState,
  rec: number,
  id: number,
  deleteChildren: boolean,
  fn: string,
): TreeChange {
  const h = st.heap;
  h.sync();
  checkLive(h, rec, id, fn);
  let err: unknown = undefined;
  if (st.callbacks.size !== 0) {
    err = runCallbacks(st, deleteChildren ? subtreePostOrder(h.i32, rec) : [rec]);
    h.sync();
    checkLive(h, rec, id, fn);
  }
  const shared = (w(h.i32, rec + MC_FLAGS) & MCF_SHARED) !== 0;
  let doomed: number[] = NONE;
  if (shared) lock(h, rec + MC_LOCK);
  try {
    if (shared) checkLive(h, rec, id, fn);
    const i32 = h.i32, root = w(i32, rec + MC_ROOT);
    const gen = nextGen(h, root);
    if (
      !shared && w(i32, rec + MC_NBLOCKS) === 1 &&
      (!deleteChildren || w(i32, rec + MC_FIRSTCHILD) === 0) &&
      Atomics.load(i32, (rec + MC_WAITERS) >> 2) === 0
    ) {
      // Only the keeper: no block leaves, no byte changes hands; no tree lock.
      resetBlocks(h, rec, gen);
    } else {
      let blocks: number[];
      lock(h, root + MC_TREELOCK);
      try {
        let childBytes = 0;
        if (deleteChildren && w(h.i32, rec + MC_FIRSTCHILD) !== 0) {
          for (const c of childrenOf(h.i32, rec)) childBytes += w(h.i32, c + MC_TREE);
          doomed = [];
          blocks = dropChildren(st, rec, doomed);
        } else blocks = NONE;
        const own = resetBlocks(h, rec, gen);
        let ownBytes = 0;
        for (let i = 1; i < own.length; i += 2) ownBytes += own[i];
        releaseLocked(h, rec, ownBytes + childBytes, ownBytes);
        if (blocks.length > 0) blocks = own.concat(blocks);
        else blocks = own;
      } finally {
        unlock(h, root + MC_TREELOCK);
      }
      freeBlocks(st, blocks);
    }
  } finally {
    if (shared) unlock(h, rec + MC_LOCK);
  }
  for (const d of doomed) {
    st.callbacks.delete(d);
    st.soft.delete(d);
  }
  return { doomed, error: err };
}

/**
 * `MemoryContextDelete`: runs the callbacks of the subtree, unlinks it, marks every record
 * deleted, releases its bytes up the tree and gives every block back. Returns the records of
 * the contexts deleted (`rec` last) and the first error a callback threw (see resetContext).
 * @throws {UmemError} `destroyed` for a deleted context; `invalid-argument` for the top
 */
export function deleteContext(st: TreeState, rec: number, id: number, fn: string): TreeChange {
  const h = st.heap;
  h.sync();
  checkLive(h, rec, id, fn);
  if (w(h.i32, rec + MC_PARENT) === 0) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: TopMemoryContext (${hex(rec)}) cannot be deleted; reset it instead`,
      rec,
    );
  }
  const err = runCallbacks(st, subtreePostOrder(h.i32, rec));
  h.sync();
  checkLive(h, rec, id, fn);
  const shared = (w(h.i32, rec + MC_FLAGS) & MCF_SHARED) !== 0;
  let doomed: number[] = [];
  const blocks: number[] = [];
  if (shared) lock(h, rec + MC_LOCK);
  try {
    checkLive(h, rec, id, fn);
    const root = w(h.i32, rec + MC_ROOT);
    lock(h, root + MC_TREELOCK);
    try {
      const i32 = h.i32;
      doomed = subtreePostOrder(i32, rec);
      const parent = w(i32, rec + MC_PARENT), bytes = w(i32, rec + MC_TREE);
      const prev = w(i32, rec + MC_PREVSIB), next = w(i32, rec + MC_NEXTSIB);
      if (prev === 0) i32[(parent + MC_FIRSTCHILD) >> 2] = next;
      else i32[(prev + MC_NEXTSIB) >> 2] = next;
      if (next !== 0) i32[(next + MC_PREVSIB) >> 2] = prev;
      i32[(parent + MC_NCHILDREN) >> 2]--;
      wakeDoomed(i32, doomed);
      for (const d of doomed) blocks.push(...killRecord(h, d));
      releaseLocked(h, parent, bytes, 0);
    } finally {
      unlock(h, root + MC_TREELOCK);
    }
  } finally {
    // The record is still in memory (its block goes back below), so the lock word is too.
    if (shared) unlock(h, rec + MC_LOCK);
  }
  freeBlocks(st, blocks);
  for (const d of doomed) {
    st.callbacks.delete(d);
    st.soft.delete(d);
  }
  return { doomed, error: err };
}
