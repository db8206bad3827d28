/**
 * The ledger of one worker slot: what that worker holds, through lent references, of buffers
 * it does not own, so that when it dies `Heap.reclaimSlot` can give it all back.
 *
 * Theory. A reference (`Shared`) counts in its record's lent field, and the borrows taken
 * through it count in the same state word as the owner's; a word says how much is held, not
 * by whom. So each worker keeps, in the heap, a ledger of its own holdings: one entry per
 * record it holds something of, with the references, the shared borrows and the mutable
 * borrow it holds there. Only that worker writes its ledger (plain stores: JavaScript objects
 * of one worker are never used by another), and only after the worker died does another read
 * it: `reclaimLedger` subtracts each entry from its record's state word, as the dead worker's
 * releases would have, and empties the ledger. A worker's holdings are few, so an entry is
 * found by a linear scan; an entry whose counts are all 0 is removed (the last one takes its
 * place).
 *
 * Invariants. An entry never counts more than its worker holds: a count is entered *after* the
 * compare-and-swap that took it, and taken out *before* the atomic that gives it back, so a
 * worker stopped between the two (`worker.terminate()` stops a worker between any two
 * statements) leaves the ledger short by one, never over; `reclaimLedger` therefore never releases
 * what another worker holds, at worst it leaves one count held, as without a ledger. A record
 * an entry names is not freed while the entry is nonzero (its owner cannot drop a buffer that
 * is borrowed or lent). `reserve` makes room before the count is taken, so entering it cannot
 * fail. The directory (`OT_LEDGERS`) has one word per worker slot, laid with the root record.
 *
 * Lock order: `reclaimLedger` runs under the table lock (alone); a worker's own ledger changes
 * take no lock (growing it allocates and frees with no lock of the module held).
 *
 * @module
 */

import type { Heap, HeapView } from "../core/mod.ts";
import {
  LE_LENT,
  LE_MUT,
  LE_REC,
  LE_SHARED,
  LE_SIZE,
  LEDGER_MIN_CAP,
  LG_CAP,
  LG_COUNT,
  LG_HDR,
  OR_STATE,
  OS_LENT_ONE,
  OS_MUT,
  OT_LEDGERS,
} from "./layout.ts";

/** This worker's ledger in one heap (one per `OwnWorker`). */
export class Ledger {
  /** The heap handle of this worker. */
  private readonly heap: Heap;
  /** The index of this slot's word in the ledger directory. */
  private readonly dirWord: number = 0;
  /** Frees memory without the module's free hook looking at it (the worker's `quiet`). */
  private readonly freeQuietly: (ptr: number, size: number) => void;

  /**
   * Finds this worker slot's word in the directory.
   *
   * @param heap the worker's heap handle
   * @param root the root record
   * @param freeQuietly frees a block of the module's own
   */
  constructor(heap: Heap, root: number, freeQuietly: (ptr: number, size: number) => void) {
    this.heap = heap;
    this.dirWord = (heap.i32[(root + OT_LEDGERS) >> 2] >> 2) + heap.slot;
    this.freeQuietly = freeQuietly;
  }

  /** The ledger's address (0: none yet). */
  private get addr(): number {
    return this.heap.i32[this.dirWord];
  }

  /**
   * Makes room for one more entry, so that entering a count after its compare-and-swap cannot
   * fail.
   *
   * @throws {OutOfMemoryError} when the heap has no room (nothing changed)
   */
  reserve(): void {
    const h = this.heap, a = this.addr;
    if (a !== 0 && h.i32[(a + LG_COUNT) >> 2] < h.i32[(a + LG_CAP) >> 2]) return;
    const cap = a === 0 ? LEDGER_MIN_CAP : h.i32[(a + LG_CAP) >> 2] * 2;
    const n = h.alloc(LG_HDR + cap * LE_SIZE), i32 = h.i32;
    const count = a === 0 ? 0 : i32[(a + LG_COUNT) >> 2];
    if (a !== 0) i32.copyWithin(n >> 2, a >> 2, (a + LG_HDR + count * LE_SIZE) >> 2);
    i32[(n + LG_CAP) >> 2] = cap;
    i32[(n + LG_COUNT) >> 2] = count;
    Atomics.store(i32, this.dirWord, n);
    if (a !== 0) this.freeQuietly(a, LG_HDR + (cap / 2) * LE_SIZE);
  }

  /**
   * Enters a change of what this worker holds of a record: after the count was taken (`delta`
   * 1), before it is given back (`delta` -1).
   *
   * @param rec the record
   * @param field `LE_LENT`, `LE_SHARED` or `LE_MUT`
   * @param delta 1 or -1
   * @returns for a give-back, whether the caller still holds the count to give back: false once
   * this worker's slot was given back (`detach`, `reclaimSlot`), whose `reclaimLedger` gave back
   * everything the ledger listed, so that a reference or guard released after it must not
   * subtract from the record's state word a second time
   */
  enter(rec: number, field: number, delta: number): boolean {
    if (delta < 0 && !this.heap.attached) return false;
    const i32 = this.heap.i32, a = this.addr;
    if (a === 0) return true; // nothing was reserved: only a give-back can get here
    const count = i32[(a + LG_COUNT) >> 2];
    let e = a + LG_HDR;
    const end = e + count * LE_SIZE;
    while (e < end && i32[(e + LE_REC) >> 2] !== rec) e += LE_SIZE;
    if (e === end) {
      if (delta < 0) return true; // stopped short earlier: never entered
      i32[(e + LE_REC) >> 2] = rec;
      i32[(e + LE_LENT) >> 2] = 0;
      i32[(e + LE_SHARED) >> 2] = 0;
      i32[(e + LE_MUT) >> 2] = 0;
      i32[(a + LG_COUNT) >> 2] = count + 1;
    }
    const v = i32[(e + field) >> 2] + delta;
    i32[(e + field) >> 2] = v < 0 ? 0 : v;
    if (
      i32[(e + LE_LENT) >> 2] === 0 && i32[(e + LE_SHARED) >> 2] === 0 &&
      i32[(e + LE_MUT) >> 2] === 0
    ) {
      const last = a + LG_HDR + (i32[(a + LG_COUNT) >> 2] - 1) * LE_SIZE;
      if (last !== e) i32.copyWithin(e >> 2, last >> 2, (last + LE_SIZE) >> 2);
      i32[(a + LG_COUNT) >> 2]--;
    }
    return true;
  }

  /**
   * What this worker holds now, for tests and reports: `[record, lent, shared, mut]` per entry.
   *
   * @returns the entries
   */
  entries(): number[][] {
    const i32 = this.heap.i32, a = this.addr, out: number[][] = [];
    if (a === 0) return out;
    for (let k = 0, e = a + LG_HDR; k < i32[(a + LG_COUNT) >> 2]; k++, e += LE_SIZE) {
      out.push([0, 1, 2, 3].map((f) => i32[(e >> 2) + f]));
    }
    return out;
  }
}

/**
 * Gives back everything a dead worker slot held through references: each entry of its ledger
 * is subtracted from its record's state word, and the ledger is emptied (it stays in the
 * directory, for the next worker of that slot). The caller holds the table lock.
 *
 * @param h the heap
 * @param root the root record
 * @param slot the dead worker's slot
 * @returns the entries given back
 */
export function reclaimLedger(h: HeapView, root: number, slot: number): number {
  const i32 = h.i32, a = i32[(i32[(root + OT_LEDGERS) >> 2] >> 2) + slot];
  if (a === 0) return 0;
  const count = i32[(a + LG_COUNT) >> 2];
  for (let k = 0, e = a + LG_HDR; k < count; k++, e += LE_SIZE) {
    const w = (i32[(e + LE_REC) >> 2] + OR_STATE) >> 2;
    const sub = i32[(e + LE_LENT) >> 2] * OS_LENT_ONE + i32[(e + LE_SHARED) >> 2];
    if (sub !== 0) Atomics.sub(i32, w, sub);
    if (i32[(e + LE_MUT) >> 2] !== 0) Atomics.and(i32, w, ~OS_MUT);
  }
  Atomics.store(i32, (a + LG_COUNT) >> 2, 0);
  return count;
}
