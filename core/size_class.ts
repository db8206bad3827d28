/**
 * Sized allocation, as `umem_alloc`: a table of size-class caches and an oversize arena.
 *
 * Theory. Sizes up to 131072 bytes map to libumem's 49 size classes (`umem_alloc_8` …
 * `umem_alloc_131072`) through one lookup table in the image, with no search, indexed by
 * `(size + 7) >> 3` as libumem's `umem_alloc_table` (16,385 words: 64 KiB of metadata, so that
 * the fast path takes any cached size with one load and one call). Larger sizes go to the
 * `umem_oversize` arena, which imports pages from the heap's arena.
 *
 * `UMEM_OPTIONS`'s `size_clear`, `size_add=n` and `size_remove=n` change the classes of a new
 * image, as libumem's (up to `MAX_SIZE_CLASSES`, the largest always 131072); the table is all
 * that records them, so every handle reads them from it.
 *
 * Invariants. Table entry i names the smallest class whose size is at least the largest size
 * that maps to i. Classes are multiples of 8 and 8-aligned, as libumem aligns them: those that
 * are multiples of 16 (all of libumem's but 8) are 16-aligned, and those that are multiples of
 * 64 are 64-aligned.
 *
 * @module
 */

import type { HeapView } from "./image.ts";
import { HDR_OVERSIZE, HDR_SIZE_TABLE, PAGE_SIZE } from "./image.ts";
import { CA_BUFSIZE } from "./slab.ts";

/** libumem's size classes. */
export const UMEM_SIZE_CLASSES: readonly number[] = [
  8,
  16,
  32,
  48,
  64,
  80,
  96,
  112,
  128,
  160,
  192,
  224,
  256,
  320,
  384,
  448,
  512,
  640,
  768,
  896,
  1024,
  1280,
  1536,
  1792,
  2048,
  2560,
  3072,
  3584,
  4096,
  5120,
  6144,
  7168,
  8192,
  10240,
  12288,
  14336,
  16384,
  20480,
  24576,
  32768,
  40960,
  49152,
  57344,
  65536,
  73728,
  81920,
  98304,
  114688,
  131072,
];

/** The largest size served by a size-class cache. */
export const UMEM_MAXBUF = 131072;
/**
 * The most size classes an image may have: libumem's 49 and the 24 its table keeps free for
 * `UMEM_OPTIONS=size_add`.
 */
export const MAX_SIZE_CLASSES = 73;
/**
 * Entries of the size table: one per 8 bytes up to `UMEM_MAXBUF`, indexed by `(size + 7) >> 3`,
 * as libumem's `umem_alloc_table` (entry 0 unused), so that the fast path finds any cached
 * size's cache with one load.
 */
export const SIZE_TABLE_ENTRIES = (UMEM_MAXBUF >> 3) + 1;
/** Bytes of the size table. */
export const SIZE_TABLE_BYTES = SIZE_TABLE_ENTRIES * 4;

/** The alignment of a size class (a multiple of 8), as libumem's: 64, 16 or 8. */
export function classAlign(size: number): number {
  return size % 64 === 0 ? 64 : size % 16 === 0 ? 16 : 8;
}

/**
 * The class size serving `size` bytes (1 ≤ size ≤ UMEM_MAXBUF) among the ascending `classes`
 * (libumem's when not given).
 */
export function classSize(size: number, classes: readonly number[] = UMEM_SIZE_CLASSES): number {
  for (const c of classes) if (c >= size) return c;
  return 0;
}

/**
 * Fills the size table at `table` given the ascending class sizes `classes` (the last
 * `UMEM_MAXBUF`) and each one's cache address in `caches`.
 */
export function laySizeTable(
  h: HeapView,
  table: number,
  classes: readonly number[],
  caches: readonly number[],
): void {
  let c = 0;
  h.i32[table >> 2] = 0;
  for (let i = 1; i < SIZE_TABLE_ENTRIES; i++) {
    while (classes[c] < i * 8) c++;
    h.i32[(table >> 2) + i] = caches[c];
  }
  h.i32[HDR_SIZE_TABLE >> 2] = table;
}

/**
 * The size classes of the image `h`, ascending, read from its size table (they are libumem's
 * unless `UMEM_OPTIONS` changed them).
 */
export function sizeClasses(h: HeapView): number[] {
  const t = h.i32[HDR_SIZE_TABLE >> 2] >> 2, out: number[] = [];
  let last = 0;
  for (let i = 1; i < SIZE_TABLE_ENTRIES; i++) {
    const cp = h.i32[t + i];
    if (cp !== last && cp > 0 && cp < h.mapped) {
      out.push(h.i32[(cp + CA_BUFSIZE) >> 2]);
      last = cp;
    }
  }
  return out;
}

/** The size-class cache for `size` (1 ≤ size ≤ UMEM_MAXBUF, a whole number). */
export function sizeCache(h: HeapView, size: number): number {
  return h.i32[(h.i32[HDR_SIZE_TABLE >> 2] >> 2) + ((size + 7) >> 3)];
}

/** The oversize arena's record. */
export function oversizeArena(h: HeapView): number {
  return h.i32[HDR_OVERSIZE >> 2];
}

/** Bytes an oversize allocation of `size` takes. */
export function oversizeBytes(size: number): number {
  return Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
}
