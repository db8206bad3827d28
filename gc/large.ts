/**
 * Large objects: those past the largest size class, one span of pages each.
 *
 * Theory. As in Boehm's collector, an object too large for a size class gets whole pages of
 * its own: a span of the heap's `umem_oversize` arena, where `findleaks` also looks, so that
 * both start from the same objects. The core's page map does not name these pages (they are in
 * no slab), so the collector lists the spans in a table sorted by address; a candidate word
 * that falls in no slab is looked up by binary search, which costs nothing while the table is
 * empty. Each entry holds the object's kind and its mark, so the mark of a large object lives
 * beside its record rather than in a slab.
 *
 * Invariants. Entries `[0, GC_LARGE_COUNT)` are sorted by `LO_START` and their spans do not
 * overlap; `GC_LARGE_BYTES` is the sum of their `LO_BYTES`. The table changes only under
 * `GC_LOCK`; a collection reads it with the world stopped (a worker that left may not
 * allocate), so it needs no lock to read it.
 *
 * Lock order: `GC_LOCK`, then the core's vmem locks.
 *
 * @module
 */
import { lock, PAGE_SIZE, unlock } from "../core/internal.ts";
import type { Heap, HeapView, Vmem } from "../core/mod.ts";
import {
  GC_LARGE,
  GC_LARGE_BYTES,
  GC_LARGE_CAP,
  GC_LARGE_COUNT,
  GC_LOCK,
  LO_BYTES,
  LO_INITIAL,
  LO_KIND,
  LO_MARK,
  LO_SIZE,
  LO_START,
} from "./layout.ts";

const w = (h: HeapView, a: number) => h.i32[a >> 2];
const setw = (h: HeapView, a: number, v: number) => {
  h.i32[a >> 2] = v;
};

/**
 * The bytes of the span a large object of `size` bytes takes.
 *
 * @param size the size asked for
 * @returns whole pages
 */
export function largeBytes(size: number): number {
  return Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * The index of the entry whose object `v` points at (or into, when `interior`), or -1.
 *
 * @param i32 a word view of the heap
 * @param table the table's address
 * @param n its entries in use
 * @param v an address
 * @param interior whether a pointer into the middle counts
 * @returns the entry's index, or -1
 */
export function largeIndex(
  i32: Int32Array,
  table: number,
  n: number,
  v: number,
  interior: boolean,
): number {
  let lo = 0, hi = n - 1;
  const t = table >> 2;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1, e = t + mid * (LO_SIZE >> 2);
    const start = i32[e + (LO_START >> 2)];
    if (v < start) hi = mid - 1;
    else if (v >= start + i32[e + (LO_BYTES >> 2)]) lo = mid + 1;
    else return interior || v === start ? mid : -1;
  }
  return -1;
}

/**
 * Allocates a large object of kind `kind` and lists it.
 *
 * @param heap the heap
 * @param rec the collector record
 * @param arena the heap's `umem_oversize` arena
 * @param bytes the span's bytes (whole pages)
 * @param kind its kind
 * @returns the object's first byte
 * @throws {OutOfMemoryError} when the span or a larger table cannot be had (nothing changes)
 */
export function largeAlloc(
  heap: Heap,
  rec: number,
  arena: Vmem,
  bytes: number,
  kind: number,
): number {
  const p = arena.alloc(bytes);
  lock(heap, rec + GC_LOCK);
  try {
    let t = w(heap, rec + GC_LARGE);
    const n = w(heap, rec + GC_LARGE_COUNT), cap = w(heap, rec + GC_LARGE_CAP);
    if (n === cap) {
      const ncap = cap === 0 ? LO_INITIAL : cap * 2;
      const nt = heap.vmem.alloc(largeBytes(ncap * LO_SIZE));
      heap.i32.fill(0, nt >> 2, (nt + ncap * LO_SIZE) >> 2);
      if (t !== 0) {
        heap.i32.copyWithin(nt >> 2, t >> 2, (t + n * LO_SIZE) >> 2);
        heap.vmem.free(t, largeBytes(cap * LO_SIZE));
      }
      setw(heap, rec + GC_LARGE, nt);
      setw(heap, rec + GC_LARGE_CAP, ncap);
      t = nt;
    }
    let at = 0;
    while (at < n && w(heap, t + at * LO_SIZE + LO_START) < p) at++;
    heap.i32.copyWithin(
      (t + (at + 1) * LO_SIZE) >> 2,
      (t + at * LO_SIZE) >> 2,
      (t + n * LO_SIZE) >> 2,
    );
    const e = t + at * LO_SIZE;
    setw(heap, e + LO_START, p);
    setw(heap, e + LO_BYTES, bytes);
    setw(heap, e + LO_KIND, kind);
    setw(heap, e + LO_MARK, 0);
    setw(heap, rec + GC_LARGE_COUNT, n + 1);
    setw(heap, rec + GC_LARGE_BYTES, w(heap, rec + GC_LARGE_BYTES) + bytes);
  } catch (e) {
    unlock(heap, rec + GC_LOCK);
    arena.free(p, bytes);
    throw e;
  }
  unlock(heap, rec + GC_LOCK);
  return p;
}

/**
 * Unlists the large object starting at `p` and gives its span back.
 *
 * @param heap the heap
 * @param rec the collector record
 * @param arena the heap's `umem_oversize` arena
 * @param p the object's first byte
 * @returns its bytes, or 0 when no large object starts at `p` (nothing changes)
 */
export function largeFree(heap: Heap, rec: number, arena: Vmem, p: number): number {
  let bytes = 0;
  lock(heap, rec + GC_LOCK);
  try {
    const t = w(heap, rec + GC_LARGE), n = w(heap, rec + GC_LARGE_COUNT);
    const i = t === 0 ? -1 : largeIndex(heap.i32, t, n, p, false);
    if (i < 0) return 0;
    const e = t + i * LO_SIZE;
    bytes = w(heap, e + LO_BYTES);
    heap.i32.copyWithin(e >> 2, (e + LO_SIZE) >> 2, (t + n * LO_SIZE) >> 2);
    heap.i32.fill(0, (t + (n - 1) * LO_SIZE) >> 2, (t + n * LO_SIZE) >> 2);
    setw(heap, rec + GC_LARGE_COUNT, n - 1);
    setw(heap, rec + GC_LARGE_BYTES, w(heap, rec + GC_LARGE_BYTES) - bytes);
  } finally {
    unlock(heap, rec + GC_LOCK);
  }
  arena.free(p, bytes);
  return bytes;
}

/**
 * The large object starting at `p`: its bytes and kind, or undefined.
 *
 * @param h the heap
 * @param rec the collector record
 * @param p an address
 * @returns the object's bytes and kind
 */
export function largeInfo(
  h: HeapView,
  rec: number,
  p: number,
): { bytes: number; kind: number } | undefined {
  if (Atomics.load(h.i32, (rec + GC_LARGE_COUNT) >> 2) === 0) return undefined;
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_LARGE), n = w(h, rec + GC_LARGE_COUNT);
    const i = t === 0 ? -1 : largeIndex(h.i32, t, n, p, false);
    if (i < 0) return undefined;
    const e = t + i * LO_SIZE;
    return { bytes: w(h, e + LO_BYTES), kind: w(h, e + LO_KIND) };
  } finally {
    unlock(h, rec + GC_LOCK);
  }
}

/** The word offsets of an entry's fields, for the marker. */
export const LO_W_START = LO_START >> 2, LO_W_BYTES = LO_BYTES >> 2, LO_W_KIND = LO_KIND >> 2;
/** The word offset of an entry's mark, and the words of an entry. */
export const LO_W_MARK = LO_MARK >> 2, LO_WORDS = LO_SIZE >> 2;
