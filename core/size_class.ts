/**
 * Sized allocation, as `umem_alloc`: a table of size-class caches and an oversize arena.
 *
 * Theory. Sizes up to 131072 bytes map to libumem's 49 size classes (`umem_alloc_8` …
 * `umem_alloc_131072`) through two lookup tables in the image, with no search: sizes up to
 * 1024 by `(size + 7) >> 3`, larger ones by `(size + 255) >> 8` (every class above 1024 is a
 * multiple of 256, so each gets its exact smallest fitting class). Larger sizes go to the
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
/** Entries of the small table (sizes ≤ 1024, step 8). */
export const SIZE_TABLE_SMALL = 129;
/** Entries of the large table (sizes ≤ 131072, step 256). */
export const SIZE_TABLE_LARGE = 513;
/** Offset of the large table inside the size table. */
export const SIZE_TABLE_LARGE_OFF = SIZE_TABLE_SMALL * 4;
/** Bytes of the size table. */
export const SIZE_TABLE_BYTES = (SIZE_TABLE_SMALL + SIZE_TABLE_LARGE) * 4;

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
  for (let i = 0; i < SIZE_TABLE_SMALL; i++) {
    h.i32[(table >> 2) + i] = i === 0 ? 0 : byClass(i * 8);
  }
  for (let i = 0; i < SIZE_TABLE_LARGE; i++) {
    h.i32[((table + SIZE_TABLE_LARGE_OFF) >> 2) + i] = i === 0 ? 0 : byClass(i * 256);
  }
  h.i32[HDR_SIZE_TABLE >> 2] = table;
}

/** The size-class cache for `size` (1 ≤ size ≤ UMEM_MAXBUF, a whole number). */
export function sizeCache(h: HeapView, size: number): number {
  const t = h.i32[HDR_SIZE_TABLE >> 2];
  return size <= 1024
    ? h.i32[(t >> 2) + ((size + 7) >> 3)]
    : h.i32[((t + SIZE_TABLE_LARGE_OFF) >> 2) + ((size + 255) >> 8)];
}

/** The oversize arena's record. */
export function oversizeArena(h: HeapView): number {
  return h.i32[HDR_OVERSIZE >> 2];
}

/** Bytes an oversize allocation of `size` takes. */
export function oversizeBytes(size: number): number {
  return Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
}
