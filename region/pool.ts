/**
 * Vmpool: blocks of one size, fixed by the first allocation after the region opens or is
 * cleared (Vo 1996).
 *
 * Theory. The pool's size is kept in the record (`RG_POOLSIZE`, the size asked for plus one,
 * so that 0 means "not yet fixed"). A freed block goes on the pool's free list (`RG_POOLFREE`,
 * check key `K_POOLFREE`) and keeps its busy flag, so blocks never coalesce: an allocation
 * pops the list, or carves a new block from the wilderness first (then the tree, then the
 * discipline). An allocation of another size is refused with `wrong-size`.
 *
 * Invariants: every busy or pool-free block of the region has the pool's block size.
 *
 * Lock order: runs under the region lock.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import { blockSize } from "./blocks.ts";
import { screen } from "./best.ts";
import { RegionError } from "./errors.ts";
import {
  BK_CHECK,
  BK_HDR,
  JB_NEXT,
  K_BUSY,
  K_POOLFREE,
  M_POOL,
  RG_POOLFREE,
  RG_POOLSIZE,
} from "./layout.ts";
import type { Method, MethodContext } from "./method.ts";

/** Refuses a size other than the pool's. */
function checkPoolSize(c: MethodContext, fn: string, size: number): void {
  const ps = c.bk.get(RG_POOLSIZE);
  if (ps !== 0 && ps - 1 !== size) {
    throw new RegionError(
      "wrong-size",
      `${fn}: size ${size} in pool region ${hex(c.bk.rec)} whose blocks are ${ps - 1} bytes`,
      c.bk.rec,
      0,
    );
  }
}

/** The Vmpool method. */
export const pool: Method = {
  code: M_POOL,
  name: "Vmpool",
  alloc(c, size) {
    checkPoolSize(c, "vmalloc", size);
    const bk = c.bk, u32 = bk.u32;
    let b = bk.get(RG_POOLFREE);
    if (b !== 0) {
      bk.set(RG_POOLFREE, u32[(b + JB_NEXT) >> 2]);
      u32[(b + BK_CHECK) >> 2] = (b ^ K_BUSY) >>> 0;
    } else {
      b = bk.allocRaw(blockSize(size), K_BUSY, true);
      if (b === 0) return 0;
      if (bk.get(RG_POOLSIZE) === 0) bk.set(RG_POOLSIZE, size + 1);
    }
    bk.countBusy(b);
    return b + BK_HDR;
  },
  free(c, ptr) {
    screen(c, "vmfree", ptr);
    const bk = c.bk, b = ptr - BK_HDR;
    bk.countFree(b);
    bk.u32[(b + BK_CHECK) >> 2] = (b ^ K_POOLFREE) >>> 0;
    bk.u32[(b + JB_NEXT) >> 2] = bk.get(RG_POOLFREE);
    bk.set(RG_POOLFREE, b);
  },
  resize(c, ptr, size) {
    screen(c, "vmresize", ptr);
    checkPoolSize(c, "vmresize", size);
    return ptr;
  },
  size(c, ptr) {
    screen(c, "vmsize", ptr);
    return c.bk.get(RG_POOLSIZE) - 1;
  },
};
