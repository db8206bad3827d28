/**
 * Vmbest: approximate best fit over a top-down splay tree, with freed blocks cached until the
 * next allocation, small frequent sizes served from exact-size lists, slack for blocks that
 * move to grow, and the wilderness kept for last (Vo 1996, section 3).
 *
 * Theory. `alloc` first looks at the junk list of the exact block size (a block freed since
 * the last reclaim): a hit costs a few loads and stores, which is what makes small, frequent
 * sizes fast. On a miss the junk is reclaimed (coalesced and filed), then the tree gives the
 * smallest block that fits, then the wilderness, then the discipline (region/blocks.ts).
 * `resize` grows a block in place into a free block after it, or into the wilderness (which
 * the discipline may extend); when it must move, the new block gets room for 2.5 times the size
 * asked for ({@linkcode SLACK}), and a later shrink gives the tail back only when it is more
 * than three quarters of the block, so that a block that keeps growing moves a logarithmic
 * number of times (the paper's Figure 4 and Table 2).
 *
 * Invariants: those of region/blocks.ts; `RG_MOVES` and `RG_COPIED` count the moves of
 * `resize` and the bytes they copied.
 *
 * Lock order: runs under the region lock.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import { type Blocks, blockSize, Found } from "./blocks.ts";
import { RegionError } from "./errors.ts";
import {
  BK_HDR,
  F_BUSY,
  K_BUSY,
  M_BEST,
  MIN_BLOCK,
  RG_COPIED,
  RG_MOVES,
  RG_SEGS,
  RG_WILD,
} from "./layout.ts";
import type { Method, MethodContext } from "./method.ts";

/**
 * A block that moves to grow gets room for `SLACK` times the size asked for, so that a block
 * that keeps growing moves O(log n) times and is copied O(n) bytes in all (amortized growth).
 */
export const SLACK = 2.5;

/**
 * Allocates a block of `need` bytes the Vmbest way (junk list, reclaim, tree, wilderness,
 * discipline) and counts it busy.
 *
 * @param bk the store
 * @param need the block size
 * @returns the block, or 0 when there is no memory
 */
export function bestAllocBlock(bk: Blocks, need: number): number {
  let b = bk.popJunk(need, K_BUSY);
  if (b === 0) {
    if (bk.hasJunk()) bk.reclaim();
    b = bk.allocRaw(need, K_BUSY, false);
    if (b === 0) return 0;
  }
  bk.countBusy(b);
  return b;
}

/**
 * Frees a busy block the Vmbest way: it waits on a junk list until the next allocation.
 *
 * @param bk the store
 * @param b the block
 */
export function bestFreeBlock(bk: Blocks, b: number): void {
  bk.countFree(b);
  bk.pushJunk(b);
}

/**
 * Resizes block `b` to `need` bytes: in place when it shrinks, or grows into a free block
 * after it or the wilderness (extended through the discipline when `b` ends the newest
 * segment); else, when `move`, through `allocate` (with slack) and `release`, copying
 * `copyBytes` of data.
 *
 * @param bk the store
 * @param b the block
 * @param need the block size wanted
 * @param move whether the block may move
 * @param copyBytes data bytes to copy if it moves (0: none)
 * @param allocate how the method allocates a block
 * @param release how the method frees a block
 * @returns the block (the same, or the new one), or 0 when it could not
 */
export function resizeBlock(
  bk: Blocks,
  b: number,
  need: number,
  move: boolean,
  copyBytes: number,
  allocate: (bk: Blocks, need: number) => number,
  release: (bk: Blocks, b: number) => void,
): number {
  const u32 = bk.u32;
  const old = bk.bsize(b);
  if (need <= old) {
    // Give the tail back only when it is more than three quarters of the block: a block that
    // moved to grow keeps its slack while it grows into it.
    if (old - need >= MIN_BLOCK && old - need > old - (old >> 2)) {
      bk.countFree(b);
      bk.makeBusy(b, need, K_BUSY);
      bk.u32[(b + need) >> 2] = (old - need) | F_BUSY; // the tail, a busy block for a moment
      bk.release(b + need);
      bk.countBusy(b);
    }
    return b;
  }
  if (bk.hasJunk()) bk.reclaim();
  for (let tries = 0; tries < 2; tries++) {
    const n = b + old;
    const nfree = (u32[n >> 2] & F_BUSY) === 0;
    const avail = old + (nfree ? bk.bsize(n) : 0);
    if (nfree && avail >= need) {
      bk.takeFree(n);
      bk.countFree(b);
      bk.carve(b, avail, need, K_BUSY);
      bk.countBusy(b);
      return b;
    }
    // Grow the segment in place when b or the wilderness after it ends the newest segment.
    const atTop = nfree ? n === bk.get(RG_WILD) : n === bk.segEnd(bk.get(RG_SEGS));
    if (!atTop || !bk.growTop(need - avail)) break;
  }
  if (!move) return 0;
  let nb = allocate(bk, blockSize(Math.min(Math.floor((need - BK_HDR) * SLACK), 2 ** 30)));
  if (nb === 0) nb = allocate(bk, need);
  if (nb === 0) return 0;
  if (copyBytes > 0) {
    bk.u8.copyWithin(nb + BK_HDR, b + BK_HDR, b + BK_HDR + copyBytes);
    bk.set(RG_MOVES, bk.get(RG_MOVES) + 1);
    bk.f64[(bk.rec + RG_COPIED) >> 3] += copyBytes;
  } else bk.set(RG_MOVES, bk.get(RG_MOVES) + 1);
  release(bk, b);
  return nb;
}

/**
 * Screens an address given to `free` or `resize` (unless the region trusts its caller):
 * throws `duplicate-free` for a block already freed and `bad-free` for anything that is not
 * a block of the region.
 *
 * @param c the method context
 * @param fn the Vmalloc call, for the message
 * @param ptr the address
 * @throws {RegionError} as above
 */
export function screen(c: MethodContext, fn: string, ptr: number): void {
  if (!c.checking) return;
  const found = c.bk.classify(ptr);
  if (found === Found.Busy) return;
  const rec = c.bk.rec;
  if (found === Found.Freed) {
    throw new RegionError(
      "duplicate-free",
      `${fn}: block ${hex(ptr)} of region ${hex(rec)} was already freed`,
      rec,
      ptr,
    );
  }
  throw new RegionError(
    "bad-free",
    `${fn}: ${hex(ptr)} is not a block of region ${hex(rec)} (expected an address it allocated)`,
    rec,
    ptr,
  );
}

/** The Vmbest method. */
export const best: Method = {
  code: M_BEST,
  name: "Vmbest",
  alloc(c, size) {
    const b = bestAllocBlock(c.bk, blockSize(size));
    return b === 0 ? 0 : b + BK_HDR;
  },
  free(c, ptr) {
    screen(c, "vmfree", ptr);
    bestFreeBlock(c.bk, ptr - BK_HDR);
  },
  resize(c, ptr, size, move, copy) {
    screen(c, "vmresize", ptr);
    const bk = c.bk, b = ptr - BK_HDR;
    const keep = Math.min(size, bk.bsize(b) - BK_HDR);
    const nb = resizeBlock(
      bk,
      b,
      blockSize(size),
      move,
      copy ? keep : 0,
      bestAllocBlock,
      bestFreeBlock,
    );
    return nb === 0 ? 0 : nb + BK_HDR;
  },
  size(c, ptr) {
    screen(c, "vmsize", ptr);
    return c.bk.bsize(ptr - BK_HDR) - BK_HDR;
  },
};
