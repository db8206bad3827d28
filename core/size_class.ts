/**
 * Sized allocation, as `umem_alloc`: a table of size-class caches and an oversize arena.
 *
 * Theory. Sizes up to 131072 bytes map to libumem's 49 size classes (`umem_alloc_8` …
 * `umem_alloc_131072`) through one lookup table in the image, with no search, indexed by
 * `(size + 7) >> 3` as libumem's `umem_alloc_table` (16,385 words: 64 KiB of metadata, so that
 * the fast path takes any cached size with one load and one call). Larger sizes go to the
 * `umem_oversize` arena, which imports pages from the heap's arena.
 *
 * Invariants. Table entry i names the smallest class whose size is at least the largest size
 * that maps to i. Classes of 16 bytes or more are 16-aligned; classes that are multiples of 64
 * are 64-aligned.
 *
 * @module
 */

import type { HeapView } from "./image.ts";
import { HDR_OVERSIZE, HDR_SIZE_TABLE, PAGE_SIZE } from "./image.ts";

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
 * Entries of the size table: one per 8 bytes up to `UMEM_MAXBUF`, indexed by `(size + 7) >> 3`,
 * as libumem's `umem_alloc_table` (entry 0 unused), so that the fast path finds any cached
 * size's cache with one load.
 */
export const SIZE_TABLE_ENTRIES = (UMEM_MAXBUF >> 3) + 1;
/** Bytes of the size table. */
export const SIZE_TABLE_BYTES = SIZE_TABLE_ENTRIES * 4;

/** The alignment of a size class. */
export function classAlign(size: number): number {
  return size % 64 === 0 ? 64 : size >= 16 ? 16 : 8;
}

/** The class size serving `size` bytes (1 ≤ size ≤ UMEM_MAXBUF). */
export function classSize(size: number): number {
  for (const c of UMEM_SIZE_CLASSES) if (c >= size) return c;
  return 0;
}

/** Fills the size table at `table` given each class's cache address. */
export function laySizeTable(h: HeapView, table: number, caches: readonly number[]): void {
  const byClass = (size: number) => caches[UMEM_SIZE_CLASSES.indexOf(classSize(size))];
  for (let i = 0; i < SIZE_TABLE_ENTRIES; i++) {
    h.i32[(table >> 2) + i] = i === 0 ? 0 : byClass(i * 8);
  }
  h.i32[HDR_SIZE_TABLE >> 2] = table;
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
