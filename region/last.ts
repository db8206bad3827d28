/**
 * Vmlast: only the last block allocated may be freed or resized; the fastest and smallest
 * method, for memory that is built up and dropped whole (Vo 1996).
 *
 * Theory. Blocks are carved from the front of the wilderness (the tree only holds what a
 * `clear` left in older segments), so allocation is a split of one block. `RG_LAST` names the
 * last block; freeing it gives it straight back to the wilderness after it (no junk, no tree),
 * and resizing it grows or shrinks it into the wilderness in place. A free or resize of any
 * other block is refused (`bad-free`, `invalid-argument`).
 *
 * Invariants: `RG_LAST` is 0 or a busy block; those of region/blocks.ts.
 *
 * Lock order: runs under the region lock.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import type { Blocks } from "./blocks.ts";
import { blockSize } from "./blocks.ts";
import { resizeBlock, screen } from "./best.ts";
import { RegionError } from "./errors.ts";
import { BK_HDR, K_BUSY, M_LAST, RG_LAST } from "./layout.ts";
import type { Method, MethodContext } from "./method.ts";

/** Allocates a block for `last` and makes it the last one. */
function lastAllocBlock(bk: Blocks, need: number): number {
  const b = bk.allocRaw(need, K_BUSY, true);
  if (b === 0) return 0;
  bk.countBusy(b);
  bk.set(RG_LAST, b);
  return b;
}

/** Frees a block at once, back into the free space around it. */
function lastFreeBlock(bk: Blocks, b: number): void {
  bk.countFree(b);
  bk.release(b);
  if (bk.get(RG_LAST) === b) bk.set(RG_LAST, 0);
}

/** Refuses any block but the last. */
function checkLast(c: MethodContext, fn: string, ptr: number): void {
  screen(c, fn, ptr);
  if (c.checking && c.bk.get(RG_LAST) !== ptr - BK_HDR) {
    const last = c.bk.get(RG_LAST);
    throw new RegionError(
      fn === "vmfree" ? "bad-free" : "invalid-argument",
      `${fn}: block ${hex(ptr)} is not the last block of last region ${hex(c.bk.rec)} (${
        last === 0 ? "there is none" : "the last is " + hex(last + BK_HDR)
      })`,
      c.bk.rec,
      ptr,
    );
  }
}

/** The Vmlast method. */
export const last: Method = {
  code: M_LAST,
  name: "Vmlast",
  alloc(c, size) {
    const b = lastAllocBlock(c.bk, blockSize(size));
    return b === 0 ? 0 : b + BK_HDR;
  },
  free(c, ptr) {
    checkLast(c, "vmfree", ptr);
    lastFreeBlock(c.bk, ptr - BK_HDR);
  },
  resize(c, ptr, size, move, copy) {
    checkLast(c, "vmresize", ptr);
    const bk = c.bk, b = ptr - BK_HDR;
    const keep = Math.min(size, bk.bsize(b) - BK_HDR);
    const nb = resizeBlock(
      bk,
      b,
      blockSize(size),
      move,
      copy ? keep : 0,
      lastAllocBlock,
      lastFreeBlock,
    );
    if (nb !== 0) bk.set(RG_LAST, nb);
    return nb === 0 ? 0 : nb + BK_HDR;
  },
  size(c, ptr) {
    screen(c, "vmsize", ptr);
    return c.bk.bsize(ptr - BK_HDR) - BK_HDR;
  },
};
