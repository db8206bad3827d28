/**
 * The address table: from a buffer address to its ownership record, shared by every worker.
 *
 * Theory. An open-addressing hash table of `[buffer address, record address]` slots with
 * linear probing (Knuth's algorithm L), keyed by a multiplicative hash of the address (buffer
 * addresses are 8-aligned, so the high bits of the product spread them). Deletion shifts the
 * following entries back (Knuth's algorithm R), so the table has no tombstones and a churn of
 * allocations and drops never fills it. It doubles when more than
 * {@linkcode TABLE_LOAD_256}/256 of its slots are used: a new slot array is allocated from the
 * heap, every pair re-inserted, the new array published in the root record, and the old one
 * freed once the lock is released. Records never move, so the handles that hold them are not
 * disturbed by a growth. The root record is created by the first worker that needs it and
 * published through module anchor `MOD_OWN` with compare-and-swap; a worker that loses the
 * race frees its copy.
 *
 * Invariants. The slot array is written only under the table lock (`OT_LOCK`), and read under
 * it, except by the free hook's first look (`tableMayHold`), a seqlock read: every writer makes
 * the sequence word `OT_SEQ` odd while it changes the array, so a reader that saw the same even
 * value before and after its probe saw no change (a freed old array is still readable memory of
 * the buffer, so a racing read is wrong at worst, and then retried). `OT_COUNT` is the number
 * of non-empty slots. Between any slot and the slot its key hashes to, no slot is empty.
 *
 * Lock order: the table lock is taken before any core lock (growth allocates with it held); no
 * heap free happens with it held (a free runs the heap hooks, which take it).
 *
 * @module
 */

import type { Heap } from "../core/mod.ts";
import {
  claimModuleAnchor,
  HDR_STACKS,
  layStackTable,
  lock,
  MOD_OWN,
  moduleAnchor,
  unlock,
} from "../core/internal.ts";
import {
  LEDGER_SLOTS,
  OT_CAP,
  OT_COUNT,
  OT_LEDGERS,
  OT_LOCK,
  OT_MAGIC,
  OT_MAGIC_VALUE,
  OT_PAGES,
  OT_SEQ,
  OT_SIZE,
  OT_STACKS,
  OT_TABLE,
  PC_PAGE_SHIFT,
  TABLE_LOAD_256,
  TABLE_MIN_CAP,
  TS_KEY,
  TS_REC,
  TS_SIZE,
} from "./layout.ts";

/** Bytes of the module's own stack table, laid when a `full` heap has none of the core's. */
export const OWN_STACK_BYTES = 256 << 10;

/**
 * The root record of the module in this heap, created and published if no worker did yet.
 *
 * @param heap the heap
 * @returns the root record's address
 */
export function ownRoot(heap: Heap): number {
  const found = moduleAnchor(heap, MOD_OWN);
  if (found !== 0) return found;
  const pb = pageCountBytes(heap);
  // All four or none: a failure (no memory, or UMEM_DEBUG=mtbf) gives back what was taken.
  const taken: [number, number][] = [];
  const take = (bytes: number) => {
    const p = heap.alloc(bytes);
    taken.push([p, bytes]);
    return p;
  };
  let root: number, table: number, pages: number, ledgers: number;
  try {
    root = take(OT_SIZE);
    table = take(TABLE_MIN_CAP * TS_SIZE);
    pages = take(pb);
    ledgers = take(LEDGER_SLOTS * 4);
  } catch (e) {
    for (const [p, bytes] of taken) heap.free(p, bytes);
    throw e;
  }
  const i32 = heap.i32;
  i32.fill(0, root >> 2, (root + OT_SIZE) >> 2);
  i32.fill(0, ledgers >> 2, (ledgers >> 2) + LEDGER_SLOTS);
  i32[(root + OT_LEDGERS) >> 2] = ledgers;
  i32.fill(0, table >> 2, (table + TABLE_MIN_CAP * TS_SIZE) >> 2);
  i32.fill(0, pages >> 2, (pages + pb) >> 2);
  i32[(root + OT_TABLE) >> 2] = table;
  i32[(root + OT_CAP) >> 2] = TABLE_MIN_CAP;
  i32[(root + OT_PAGES) >> 2] = pages;
  i32[(root + OT_MAGIC) >> 2] = OT_MAGIC_VALUE;
  const won = claimModuleAnchor(heap, MOD_OWN, root);
  if (won !== root) {
    heap.free(ledgers, LEDGER_SLOTS * 4);
    heap.free(pages, pb);
    heap.free(table, TABLE_MIN_CAP * TS_SIZE);
    heap.free(root, OT_SIZE);
  }
  return won;
}

/** Bytes of the page counts: one `Int16` per page of the heap's largest size, whole words. */
function pageCountBytes(heap: Heap): number {
  return Math.ceil((heap.maxSize >>> PC_PAGE_SHIFT) / 2) * 4;
}

/**
 * A view of the page counts.
 *
 * @param heap the heap
 * @param root the root record
 * @returns one `Int16` per page
 */
export function pageCounts(heap: Heap, root: number): Int16Array {
  return new Int16Array(
    heap.buffer,
    heap.i32[(root + OT_PAGES) >> 2],
    pageCountBytes(heap) >> 1,
  );
}

/**
 * The stack table `full` mode interns into: the core's when the heap audits, else the module's
 * own, laid and published by the first worker that needs it.
 *
 * @param heap the heap
 * @param root the root record
 * @returns the stack table's address
 */
export function ownStackTable(heap: Heap, root: number): number {
  const core = Atomics.load(heap.i32, HDR_STACKS >> 2);
  if (core !== 0) return core;
  const mine = Atomics.load(heap.i32, (root + OT_STACKS) >> 2);
  if (mine !== 0) return mine;
  const st = heap.alloc(OWN_STACK_BYTES);
  layStackTable(heap, st, OWN_STACK_BYTES);
  const was = Atomics.compareExchange(heap.i32, (root + OT_STACKS) >> 2, 0, st);
  if (was === 0) return st;
  heap.free(st, OWN_STACK_BYTES);
  return was;
}

/** The slot a key hashes to in a table of `cap` slots. */
function home(ptr: number, cap: number): number {
  return Math.imul(ptr, 0x9e3779b1) >>> (Math.clz32(cap) + 1);
}

/**
 * Takes the table lock.
 *
 * @param heap the heap
 * @param root the root record
 */
export function lockTable(heap: Heap, root: number): void {
  lock(heap, root + OT_LOCK);
  heap.sync(); // another worker may have grown the table into memory this view lacks
}

/**
 * Releases the table lock.
 *
 * @param heap the heap
 * @param root the root record
 */
export function unlockTable(heap: Heap, root: number): void {
  unlock(heap, root + OT_LOCK);
}

/**
 * The record of a buffer (the caller holds the table lock).
 *
 * @param heap the heap
 * @param root the root record
 * @param ptr the buffer
 * @returns the record's address, or 0 when the buffer is not tracked
 */
export function tableFind(heap: Heap, root: number, ptr: number): number {
  const i32 = heap.i32;
  const table = i32[(root + OT_TABLE) >> 2], cap = i32[(root + OT_CAP) >> 2];
  for (let i = home(ptr, cap);; i = (i + 1) & (cap - 1)) {
    const k = i32[(table + i * TS_SIZE + TS_KEY) >> 2];
    if (k === ptr) return i32[(table + i * TS_SIZE + TS_REC) >> 2];
    if (k === 0) return 0;
  }
}

/** Puts a pair into a slot array that has room and does not hold the key. */
function place(i32: Int32Array, table: number, cap: number, ptr: number, rec: number): void {
  let i = home(ptr, cap);
  while (i32[(table + i * TS_SIZE + TS_KEY) >> 2] !== 0) i = (i + 1) & (cap - 1);
  i32[(table + i * TS_SIZE + TS_REC) >> 2] = rec;
  i32[(table + i * TS_SIZE + TS_KEY) >> 2] = ptr;
}

/**
 * Adds a buffer that is not in the table (the caller holds the table lock and checked), growing
 * the slot array first when it is loaded.
 *
 * @param heap the heap
 * @param root the root record
 * @param ptr the buffer
 * @param rec its record
 * @returns the slot array the growth replaced, for the caller to free once it released the
 *   lock (`heap.free(old, oldCap * TS_SIZE)`), as `[address, bytes]`, or undefined
 * @throws {OutOfMemoryError} when the table must grow and the heap is full (nothing changed)
 */
export function tableInsert(
  heap: Heap,
  root: number,
  ptr: number,
  rec: number,
): [number, number] | undefined {
  let old: [number, number] | undefined;
  const r = root >> 2;
  const count = heap.i32[r + (OT_COUNT >> 2)], cap = heap.i32[r + (OT_CAP >> 2)];
  if ((count + 1) * 256 > cap * TABLE_LOAD_256) {
    const ncap = cap * 2;
    const nt = heap.alloc(ncap * TS_SIZE);
    const i32 = heap.i32, table = i32[r + (OT_TABLE >> 2)];
    Atomics.add(i32, r + (OT_SEQ >> 2), 1);
    i32.fill(0, nt >> 2, (nt + ncap * TS_SIZE) >> 2);
    for (let i = 0; i < cap; i++) {
      const k = i32[(table + i * TS_SIZE + TS_KEY) >> 2];
      if (k !== 0) place(i32, nt, ncap, k, i32[(table + i * TS_SIZE + TS_REC) >> 2]);
    }
    i32[r + (OT_TABLE >> 2)] = nt;
    i32[r + (OT_CAP >> 2)] = ncap;
    Atomics.add(i32, r + (OT_SEQ >> 2), 1);
    old = [table, cap * TS_SIZE];
  }
  const i32 = heap.i32;
  Atomics.add(i32, r + (OT_SEQ >> 2), 1);
  place(i32, i32[r + (OT_TABLE >> 2)], i32[r + (OT_CAP >> 2)], ptr, rec);
  i32[r + (OT_COUNT >> 2)]++;
  Atomics.add(i32, r + (OT_SEQ >> 2), 1);
  return old;
}

/**
 * Removes a buffer from the table (the caller holds the table lock), shifting back the entries
 * that follow so that no probe sequence is broken.
 *
 * @param heap the heap
 * @param root the root record
 * @param ptr the buffer
 * @returns whether the buffer was in the table
 */
export function tableRemove(heap: Heap, root: number, ptr: number): boolean {
  const i32 = heap.i32;
  const table = i32[(root + OT_TABLE) >> 2], cap = i32[(root + OT_CAP) >> 2], mask = cap - 1;
  let i = home(ptr, cap);
  for (;; i = (i + 1) & mask) {
    const k = i32[(table + i * TS_SIZE + TS_KEY) >> 2];
    if (k === ptr) break;
    if (k === 0) return false;
  }
  Atomics.add(i32, (root + OT_SEQ) >> 2, 1);
  // Algorithm R: move back every later entry whose home does not lie cyclically in (i, j].
  for (let j = (i + 1) & mask;; j = (j + 1) & mask) {
    const k = i32[(table + j * TS_SIZE + TS_KEY) >> 2];
    if (k === 0) break;
    const h = home(k, cap);
    const stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    i32[(table + i * TS_SIZE + TS_KEY) >> 2] = k;
    i32[(table + i * TS_SIZE + TS_REC) >> 2] = i32[(table + j * TS_SIZE + TS_REC) >> 2];
    i = j;
  }
  i32[(table + i * TS_SIZE + TS_KEY) >> 2] = 0;
  i32[(table + i * TS_SIZE + TS_REC) >> 2] = 0;
  i32[(root + OT_COUNT) >> 2]--;
  Atomics.add(i32, (root + OT_SEQ) >> 2, 1);
  return true;
}

/**
 * Whether a buffer may be in the table, read without the lock (a seqlock read: the sequence
 * word before and after the probe must be the same even number). False is exact; true means
 * "found, or could not read quietly": the caller then looks it up under the lock.
 *
 * @param heap the heap
 * @param root the root record
 * @param ptr the buffer
 * @returns false when the buffer is certainly not tracked
 */
export function tableMayHold(heap: Heap, root: number, ptr: number): boolean {
  const seq = (root + OT_SEQ) >> 2;
  for (let tries = 0; tries < 16; tries++) {
    const i32 = heap.i32, v = Atomics.load(i32, seq);
    if ((v & 1) !== 0) continue;
    // Plain reads: the sequence word checked after the probe vouches for them.
    const table = i32[(root + OT_TABLE) >> 2], cap = i32[(root + OT_CAP) >> 2];
    if (table + cap * TS_SIZE > heap.mapped) {
      heap.sync(); // grown by another worker into memory this view lacks
      continue;
    }
    let found = false;
    for (let i = home(ptr, cap), n = 0; n < cap; i = (i + 1) & (cap - 1), n++) {
      const k = i32[(table + i * TS_SIZE + TS_KEY) >> 2];
      if (k === ptr) {
        found = true;
        break;
      }
      if (k === 0) break;
    }
    if (Atomics.load(i32, seq) === v) return found;
  }
  return true;
}

/**
 * Every record in the table (the caller holds the table lock).
 *
 * @param heap the heap
 * @param root the root record
 * @returns the records' addresses, in slot order
 */
export function tableRecords(heap: Heap, root: number): number[] {
  const i32 = heap.i32, out: number[] = [];
  const table = i32[(root + OT_TABLE) >> 2], cap = i32[(root + OT_CAP) >> 2];
  for (let i = 0; i < cap; i++) {
    if (i32[(table + i * TS_SIZE + TS_KEY) >> 2] !== 0) {
      out.push(i32[(table + i * TS_SIZE + TS_REC) >> 2]);
    }
  }
  return out;
}
