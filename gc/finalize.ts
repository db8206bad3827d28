/**
 * Finalization in topological order (Boehm's `GC_register_finalizer`).
 *
 * Theory. A worker registers a function for an object; the function is that worker's (code
 * cannot live in the buffer), so the table entry names the worker's slot and the function's id
 * in that worker's handle. After the collector has marked everything reachable from the roots,
 * for each watched object that is still unmarked it marks everything reachable from the
 * object's *contents* (not the object itself). A watched object that this marks was reachable
 * from another unreachable watched object, and must wait: it is finalized in a later
 * collection, after the one that points to it, so a finalizer always finds the objects it
 * refers to intact. A watched object that marks itself this way lies on a cycle of finalizable
 * objects: as in Boehm's collector it is never finalized, and it is reported. Every watched
 * object still unmarked after that is *ready*: it is marked (so it and what it refers to
 * survive this sweep), its entry turns `FS_READY`, and its worker runs the function at its next
 * safe point (the collecting worker right after the collection); until then the ready object is
 * a root of every collection. The entry is then gone, so the
 * object is freed by the next collection that finds it unreachable: each finalizer runs once.
 *
 * Invariants. Entries `[0, GC_FINCOUNT)` are in use, armed or ready; removal moves the last
 * entry into the hole. An object has at most one armed entry.
 *
 * Lock order: `GC_LOCK` guards the table; it is taken alone, or by the collector while it holds
 * the world stopped.
 *
 * @module
 */
import { lock, unlock } from "../core/internal.ts";
import type { Heap, HeapView } from "../core/mod.ts";
import {
  FE_FN,
  FE_INITIAL,
  FE_OBJ,
  FE_SIZE,
  FE_SLOT,
  FE_STATE,
  FS_ARMED,
  FS_READY,
  FS_RUNNING,
  GC_FINCAP,
  GC_FINCOUNT,
  GC_FINTAB,
  GC_LOCK,
  GC_SLOTS,
  GS_NREADY,
  GS_SIZE,
  KIND_ATOMIC,
} from "./layout.ts";
import type { Marker } from "./mark.ts";

const w = (h: HeapView, a: number) => h.i32[a >> 2];
const setw = (h: HeapView, a: number, v: number) => {
  h.i32[a >> 2] = v;
};

/** Removes entry `i` of the table (lock held): the last entry moves into its place. */
function removeEntry(h: HeapView, rec: number, i: number): void {
  const t = w(h, rec + GC_FINTAB), n = w(h, rec + GC_FINCOUNT) - 1;
  const e = t + i * FE_SIZE, last = t + n * FE_SIZE;
  h.i32.copyWithin(e >> 2, last >> 2, (last + FE_SIZE) >> 2);
  h.i32.fill(0, last >> 2, (last + FE_SIZE) >> 2);
  setw(h, rec + GC_FINCOUNT, n);
}

/**
 * Watches `obj` for worker `slot`'s function `fn` (replacing an armed entry of the same
 * object), or with `fn` 0 stops watching it.
 *
 * @param h the heap
 * @param rec the collector record
 * @param obj an object's first byte
 * @param slot the worker's slot
 * @param fn the function's id in that worker's handle, or 0
 * @returns the id of the function that was registered before (0: none)
 * @throws {OutOfMemoryError} when the table cannot grow (nothing changes)
 */
export function setFinalizer(
  h: Heap,
  rec: number,
  obj: number,
  slot: number,
  fn: number,
): { slot: number; fn: number } {
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_FINTAB), n = w(h, rec + GC_FINCOUNT);
    for (let i = 0; i < n; i++) {
      const e = t + i * FE_SIZE;
      if (w(h, e + FE_OBJ) !== obj || w(h, e + FE_STATE) !== FS_ARMED) continue;
      const was = { slot: w(h, e + FE_SLOT), fn: w(h, e + FE_FN) };
      if (fn === 0) removeEntry(h, rec, i);
      else {
        setw(h, e + FE_SLOT, slot);
        setw(h, e + FE_FN, fn);
      }
      return was;
    }
    if (fn === 0) return { slot: -1, fn: 0 };
    let tab = t;
    const cap = w(h, rec + GC_FINCAP);
    if (n === cap) {
      const ncap = cap === 0 ? FE_INITIAL : cap * 2;
      const nt = h.vmem.alloc(ncap * FE_SIZE);
      h.i32.fill(0, nt >> 2, (nt + ncap * FE_SIZE) >> 2);
      if (t !== 0) {
        h.i32.copyWithin(nt >> 2, t >> 2, (t + n * FE_SIZE) >> 2);
        h.vmem.free(t, cap * FE_SIZE);
      }
      setw(h, rec + GC_FINTAB, nt);
      setw(h, rec + GC_FINCAP, ncap);
      tab = nt;
    }
    const e = tab + n * FE_SIZE;
    setw(h, e + FE_OBJ, obj);
    setw(h, e + FE_SLOT, slot);
    setw(h, e + FE_FN, fn);
    setw(h, e + FE_STATE, FS_ARMED);
    setw(h, rec + GC_FINCOUNT, n + 1);
    return { slot: -1, fn: 0 };
  } finally {
    unlock(h, rec + GC_LOCK);
  }
}

/**
 * After marking from the roots: finds the watched objects that are ready (unreachable, and not
 * reachable from another unreachable watched object), marks them, and hands them to their
 * workers. The caller holds the world stopped.
 *
 * @param h the heap
 * @param rec the collector record
 * @param m the marker, done with the roots
 * @returns the objects made ready and the watched objects found on cycles
 */
export function findReady(
  h: HeapView,
  rec: number,
  m: Marker,
): { ready: number; cycles: number[] } {
  const cycles: number[] = [];
  let ready = 0;
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_FINTAB), n = w(h, rec + GC_FINCOUNT);
    if (n === 0) return { ready, cycles };
    // Objects found ready before whose worker has not run the function yet are roots: the
    // function must find them, and what they point to, intact.
    for (let i = 0; i < n; i++) {
      const e = t + i * FE_SIZE;
      if (w(h, e + FE_STATE) >= FS_READY) m.candidate(w(h, e + FE_OBJ));
    }
    m.finish();
    for (let i = 0; i < n; i++) {
      const e = t + i * FE_SIZE, obj = w(h, e + FE_OBJ);
      if (w(h, e + FE_STATE) !== FS_ARMED || m.isMarked(obj)) continue;
      if (m.kindOf(obj) !== KIND_ATOMIC) m.scan(obj, obj + m.sizeOf(obj));
      m.finish();
      if (m.isMarked(obj)) cycles.push(obj);
    }
    for (let i = 0; i < n; i++) {
      const e = t + i * FE_SIZE, obj = w(h, e + FE_OBJ);
      if (w(h, e + FE_STATE) !== FS_ARMED || m.isMarked(obj)) continue;
      m.setMark(obj);
      setw(h, e + FE_STATE, FS_READY);
      const s = w(h, e + FE_SLOT);
      Atomics.add(h.i32, (rec + GC_SLOTS + s * GS_SIZE + GS_NREADY) >> 2, 1);
      ready++;
    }
    return { ready, cycles };
  } finally {
    unlock(h, rec + GC_LOCK);
  }
}

/**
 * Takes the ready entries of worker `slot` as a batch to run at nesting depth `depth`: they
 * turn `FS_RUNNING + depth` and stay in the table, their objects roots of every collection
 * (one that a finalizer makes, or another worker's) until {@linkcode finishBatch} removes them
 * once every function of the batch has run.
 *
 * @param h the heap
 * @param rec the collector record
 * @param slot the worker's slot
 * @param depth how many batches of this worker are running already
 * @returns pairs of object and function id, in table order
 */
export function takeReady(
  h: HeapView,
  rec: number,
  slot: number,
  depth: number,
): [number, number][] {
  const out: [number, number][] = [];
  const nr = (rec + GC_SLOTS + slot * GS_SIZE + GS_NREADY) >> 2;
  if (Atomics.load(h.i32, nr) === 0) return out;
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_FINTAB);
    for (let i = 0; i < w(h, rec + GC_FINCOUNT); i++) {
      const e = t + i * FE_SIZE;
      if (w(h, e + FE_STATE) === FS_READY && w(h, e + FE_SLOT) === slot) {
        out.push([w(h, e + FE_OBJ), w(h, e + FE_FN)]);
        setw(h, e + FE_STATE, FS_RUNNING + depth);
      }
    }
    Atomics.sub(h.i32, nr, out.length);
  } finally {
    unlock(h, rec + GC_LOCK);
  }
  return out;
}

/**
 * Removes the entries of the batch worker `slot` ran at nesting depth `depth` (see
 * {@linkcode takeReady}): their objects are freed by the next collection that finds them
 * unreachable.
 *
 * @param h the heap
 * @param rec the collector record
 * @param slot the worker's slot
 * @param depth the batch's nesting depth
 */
export function finishBatch(h: HeapView, rec: number, slot: number, depth: number): void {
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_FINTAB);
    for (let i = 0; i < w(h, rec + GC_FINCOUNT);) {
      const e = t + i * FE_SIZE;
      if (w(h, e + FE_STATE) === FS_RUNNING + depth && w(h, e + FE_SLOT) === slot) {
        removeEntry(h, rec, i);
      } else i++;
    }
  } finally {
    unlock(h, rec + GC_LOCK);
  }
}

/**
 * Forgets the entries of `obj`, armed or ready, if any (the object was freed explicitly): a
 * ready one's function must not run later on memory that is no longer the object's.
 *
 * @param h the heap
 * @param rec the collector record
 * @param obj the object
 */
export function dropFinalizer(h: Heap, rec: number, obj: number): void {
  if (Atomics.load(h.i32, (rec + GC_FINCOUNT) >> 2) === 0) return;
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_FINTAB);
    for (let i = 0; i < w(h, rec + GC_FINCOUNT);) {
      const e = t + i * FE_SIZE, state = w(h, e + FE_STATE);
      if (w(h, e + FE_OBJ) !== obj || (state !== FS_ARMED && state !== FS_READY)) {
        i++;
        continue;
      }
      if (state === FS_READY) {
        const nr = rec + GC_SLOTS + w(h, e + FE_SLOT) * GS_SIZE + GS_NREADY;
        Atomics.sub(h.i32, nr >> 2, 1);
      }
      removeEntry(h, rec, i);
    }
  } finally {
    unlock(h, rec + GC_LOCK);
  }
}

/**
 * Forgets every entry of worker `slot` (its functions died with it): a dead worker's watched
 * objects are collected like any other.
 *
 * @param h the heap
 * @param rec the collector record
 * @param slot the dead worker's slot
 */
export function dropSlotFinalizers(h: HeapView, rec: number, slot: number): void {
  if (Atomics.load(h.i32, (rec + GC_FINCOUNT) >> 2) === 0) return;
  lock(h, rec + GC_LOCK);
  try {
    const t = w(h, rec + GC_FINTAB);
    for (let i = 0; i < w(h, rec + GC_FINCOUNT);) {
      if (w(h, t + i * FE_SIZE + FE_SLOT) === slot) removeEntry(h, rec, i);
      else i++;
    }
    Atomics.store(h.i32, (rec + GC_SLOTS + slot * GS_SIZE + GS_NREADY) >> 2, 0);
  } finally {
    unlock(h, rec + GC_LOCK);
  }
}
