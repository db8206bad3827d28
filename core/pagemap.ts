/**
 * From any address to its buffer: the page-map lookup the collector (`gc/`) and other modules
 * above the core use, and a free that needs no size.
 *
 * Theory. The page map names the slab record of every page a slab covers (slab.ts), so an
 * address leads to its slab, its cache and, through the slab's state bytes, to the start of the
 * buffer it points into, in constant time: the granule the address falls in is found with a
 * subtraction and a shift, and if that granule is `BUF_INTERIOR` the buffer starts at most
 * `chunk >> CA_SHIFT` granules before it. No division, no search.
 *
 * Invariants. Nothing here takes a lock or writes, except {@linkcode freeBuffer}, which frees
 * through the buffer's own cache exactly as `umem_cache_free` would (and so refuses anything that
 * is not a live buffer with the cache's error, changing nothing).
 *
 * @module
 */

import { hex, UmemError } from "./errors.ts";
import { HDR_META, type HeapView, PAGE_SHIFT } from "./image.ts";
import { Cache } from "./cache.ts";
import {
  BUF_INTERIOR,
  CA_CHUNK,
  CA_MAGIC,
  CA_MAGIC_VALUE,
  CA_NCHUNKS,
  CA_SHIFT,
  SB_BASE,
  SB_CACHE,
  SB_STATE,
} from "./slab.ts";
import { bufferStateAt } from "./magazine.ts";

/**
 * The start of the slab buffer that `addr` points into (at its start, or inside it when
 * `interior` is true), whatever its state; 0 when `addr` is in no slab buffer.
 *
 * @param h the heap
 * @param addr any address
 * @param interior whether a pointer into the middle of a buffer counts
 * @returns the buffer's first byte, or 0
 */
export function bufferOf(h: HeapView, addr: number, interior = true): number {
  if (!(addr >= h.i32[HDR_META >> 2] && addr < h.mapped) || (addr | 0) !== addr) return 0;
  const sb = h.i32[(h.pagemap >> 2) + (addr >>> PAGE_SHIFT)];
  if (sb === 0) return 0;
  const cp = h.i32[(sb + SB_CACHE) >> 2], base = h.i32[(sb + SB_BASE) >> 2];
  const off = addr - base;
  const chunk = h.i32[(cp + CA_CHUNK) >> 2], shift = h.i32[(cp + CA_SHIFT) >> 2];
  if (off < 0 || off >= h.i32[(cp + CA_NCHUNKS) >> 2] * chunk) return 0;
  let g = off >> shift;
  if (!interior && (off & ((1 << shift) - 1)) !== 0) return 0;
  while (h.u8[sb + SB_STATE + g] === BUF_INTERIOR) {
    if (!interior || g === 0) return 0;
    g--;
  }
  return base + (g << shift);
}

/**
 * The cache record of the slab that holds `addr`, or 0.
 *
 * @param h the heap
 * @param addr any address
 * @returns the cache record's address, or 0
 */
export function cacheOf(h: HeapView, addr: number): number {
  if (!(addr > 0 && addr < h.mapped) || (addr | 0) !== addr) return 0;
  const sb = h.i32[(h.pagemap >> 2) + (addr >>> PAGE_SHIFT)];
  return sb === 0 ? 0 : h.i32[(sb + SB_CACHE) >> 2];
}

/**
 * Frees a slab buffer to the cache it came from, without being told its size or its cache, as
 * `GC_FREE` and `free` do.
 *
 * @param h the heap
 * @param ptr the buffer's first byte
 * @param fn the caller's name, for the error
 * @throws {UmemError} `bad-free` when `ptr` is in no cache's slab; the cache's own errors
 *   (`duplicate-free`, `bad-free` for an interior address) otherwise
 */
export function freeBuffer(h: HeapView, ptr: number, fn: string): void {
  const cp = cacheOf(h, ptr);
  if (cp === 0 || h.i32[(cp + CA_MAGIC) >> 2] !== CA_MAGIC_VALUE) {
    throw new UmemError("bad-free", `${fn}: invalid free: ${hex(ptr)} is not in any slab`, ptr);
  }
  new Cache(h, cp).free(ptr);
}

/**
 * The state (`BUF_FREE`, `BUF_ALLOC`, `BUF_CACHED`) of the slab buffer that starts at `ptr`, or
 * -1 when `ptr` is not the first byte of a slab buffer. A slot's deferred free (magazine.ts)
 * counts as cached.
 *
 * @param h the heap
 * @param ptr an address
 * @returns the buffer's state byte, or -1
 */
export function bufferState(h: HeapView, ptr: number): number {
  if (bufferOf(h, ptr, false) !== ptr) return -1;
  const sb = h.i32[(h.pagemap >> 2) + (ptr >>> PAGE_SHIFT)];
  const cp = h.i32[(sb + SB_CACHE) >> 2];
  const at = sb + SB_STATE + ((ptr - h.i32[(sb + SB_BASE) >> 2]) >> h.i32[(cp + CA_SHIFT) >> 2]);
  return bufferStateAt(h, cp, at, ptr);
}
