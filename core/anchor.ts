/**
 * Module anchors: how a module above the core finds its shared state in a heap.
 *
 * Theory. A module such as `own` or `gc` keeps a root record in the heap (a side table, a
 * mark stack, a registry). Every worker that attaches must find the same record, so its
 * address sits in a header word of its own, `HDR_MODULES + 4 * MOD_*`. The first worker to
 * need the record allocates one and publishes it with compare-and-swap; a worker that loses
 * the race frees its copy and uses the winner's.
 *
 * Invariants. An anchor word is 0 or the address of a live record that stays live as long as
 * the heap; once set it never changes. No lock: the compare-and-swap is the only writer.
 *
 * @module
 */
import { UmemError } from "./errors.ts";
import { HDR_MODULES, type HeapView, MOD_COUNT } from "./image.ts";

/** Checks a module index. */
function anchorWord(fn: string, mod: number): number {
  if (!Number.isInteger(mod) || mod < 0 || mod >= MOD_COUNT) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: module index ${mod} (expected 0..${MOD_COUNT - 1})`,
    );
  }
  return (HDR_MODULES >> 2) + mod;
}

/**
 * The address of a module's root record, or 0 when no worker has published one.
 *
 * @param h the heap
 * @param mod the module's `MOD_*` index
 * @returns the record's address, or 0
 */
export function moduleAnchor(h: HeapView, mod: number): number {
  return Atomics.load(h.i32, anchorWord("moduleAnchor", mod)) >>> 0;
}

/**
 * Publishes a module's root record unless another worker already did.
 *
 * @param h the heap
 * @param mod the module's `MOD_*` index
 * @param addr the caller's record
 * @returns the record in force: `addr` when the caller won, else the winner's (the caller
 *   then frees its own)
 */
export function claimModuleAnchor(h: HeapView, mod: number, addr: number): number {
  const was = Atomics.compareExchange(h.i32, anchorWord("claimModuleAnchor", mod), 0, addr | 0);
  return was === 0 ? addr : was >>> 0;
}
