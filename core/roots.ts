/**
 * The root registry (DESIGN.md, principle 9): where `findleaks` and the collector start.
 *
 * Theory. A root is a range of the heap whose words may hold pointers (`addRoot(addr, bytes)`),
 * or an address that JavaScript holds in a variable, where no scan can see it
 * (`pin(addr)`, a range of length 0). Both live in one table in the image, so that a snapshot
 * analysed offline starts from the same roots as the live heap.
 *
 * Invariants. Entries `[0, RT_COUNT)` are live; removal moves the last entry into the hole.
 * The table's lock is a header word (a leaf); the table grows by doubling in the metadata arena.
 *
 * @module
 */

import { checkSize, hex, OutOfMemoryError, UmemError } from "./errors.ts";
import { HDR_META_ARENA, HDR_ROOT_LOCK, HDR_ROOTS, type HeapView } from "./image.ts";
import { lock, unlock } from "./lock.ts";
import { vmemAllocAddr, vmemFreeAddr } from "./vmem.ts";

/** Live entries. */
export const RT_COUNT = 4;
/** Entries the table holds. */
export const RT_CAP = 8;
/** First entry: (address, bytes), 8 bytes each; bytes 0 = a pinned address. */
export const RT_ENTRIES = 16;
/** Entries of a new table. */
export const RT_INITIAL = 64;

const w = (h: HeapView, a: number) => h.i32[a >> 2];
const setw = (h: HeapView, a: number, v: number) => {
  h.i32[a >> 2] = v;
};

function tableBytes(cap: number): number {
  return RT_ENTRIES + cap * 8;
}

/** Lays an empty root table in a new heap. */
export function layRoots(h: HeapView): void {
  const t = vmemAllocAddr(h, w(h, HDR_META_ARENA), tableBytes(RT_INITIAL));
  if (t === 0) throw new OutOfMemoryError("Heap.create: no room for the root table");
  h.i32.fill(0, t >> 2, (t + tableBytes(RT_INITIAL)) >> 2);
  setw(h, t + RT_CAP, RT_INITIAL);
  setw(h, HDR_ROOTS, t);
}

/** Adds the root `(addr, bytes)`; bytes 0 pins the address itself. */
export function addRoot(h: HeapView, addr: number, bytes: number, fn: string): void {
  checkSize(fn, "address", addr, 1, h.mapped - 1);
  checkSize(fn, "bytes", bytes, 0, h.mapped - addr);
  if (bytes % 4 !== 0 || (bytes > 0 && addr % 4 !== 0)) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: root ${hex(addr)}+${bytes} is not word-aligned`,
    );
  }
  lock(h, HDR_ROOT_LOCK);
  try {
    let t = w(h, HDR_ROOTS);
    const n = w(h, t + RT_COUNT), cap = w(h, t + RT_CAP);
    if (n === cap) {
      const meta = w(h, HDR_META_ARENA);
      const nt = vmemAllocAddr(h, meta, tableBytes(cap * 2));
      if (nt === 0) throw new OutOfMemoryError(`${fn}: no room to grow the root table`);
      h.i32.copyWithin(nt >> 2, t >> 2, (t + tableBytes(cap)) >> 2);
      setw(h, nt + RT_CAP, cap * 2);
      setw(h, HDR_ROOTS, nt);
      vmemFreeAddr(h, meta, t, tableBytes(cap));
      t = nt;
    }
    setw(h, t + RT_ENTRIES + n * 8, addr);
    setw(h, t + RT_ENTRIES + n * 8 + 4, bytes);
    setw(h, t + RT_COUNT, n + 1);
  } finally {
    unlock(h, HDR_ROOT_LOCK);
  }
}

/** Removes one root `(addr, bytes)`; false when there is none. */
export function removeRoot(h: HeapView, addr: number, bytes: number): boolean {
  lock(h, HDR_ROOT_LOCK);
  try {
    const t = w(h, HDR_ROOTS);
    const n = w(h, t + RT_COUNT);
    for (let i = 0; i < n; i++) {
      const e = t + RT_ENTRIES + i * 8;
      if (w(h, e) === addr && w(h, e + 4) === bytes) {
        const last = t + RT_ENTRIES + (n - 1) * 8;
        setw(h, e, w(h, last));
        setw(h, e + 4, w(h, last + 4));
        setw(h, t + RT_COUNT, n - 1);
        return true;
      }
    }
    return false;
  } finally {
    unlock(h, HDR_ROOT_LOCK);
  }
}

/** Every root: `[addr, bytes]`, bytes 0 for a pinned address. */
export function roots(h: HeapView): [number, number][] {
  const t = w(h, HDR_ROOTS), out: [number, number][] = [];
  if (t <= 0 || t >= h.mapped) return out;
  const n = Math.min(w(h, t + RT_COUNT), w(h, t + RT_CAP), (h.mapped - t) >> 3);
  for (let i = 0; i < n; i++) {
    out.push([w(h, t + RT_ENTRIES + i * 8), w(h, t + RT_ENTRIES + i * 8 + 4)]);
  }
  return out;
}
