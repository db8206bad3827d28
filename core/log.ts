/**
 * The logs of `UMEM_LOGGING`: rings of fixed-size records in the image.
 *
 * Theory. Each ring has a header and `LG_NREC` records; a writer takes the next sequence number
 * with one `Atomics.add` and writes its record at `seq % nrec`, so workers log without a lock.
 * The transaction log records each alloc and free of a debugged cache (op, buffer, cache,
 * size, worker, time, stack); the contents log keeps the first bytes of each freed buffer; the
 * fail log records failed allocations of the caches (their slab layer's, as libumem's, and
 * `UMEM_DEBUG=mtbf`'s) and of the firewall; an oversize allocation's failure is not logged,
 * as libumem's is not.
 *
 * Invariants. `LG_NEXT` only grows; the newest record is at `(LG_NEXT - 1) % LG_NREC`. A record
 * being written while a reader reads it may be read torn: logs are evidence, not state.
 *
 * @module
 */

import type { HeapView } from "./image.ts";

/** Records in the ring. */
export const LG_NREC = 0;
/** Bytes per record. */
export const LG_RECSIZE = 4;
/**
 * The next claim's sequence number: records written, less what {@linkcode ringNext} took back
 * before 2^32 (see `LG_WRAPS`).
 */
export const LG_NEXT = 8;
/**
 * How many times {@linkcode ringNext} brought the claim count back (by
 * {@linkcode ringSeqBack} each time): with `LG_NEXT`, how many records were ever written.
 */
export const LG_WRAPS = 12;
/** First record. */
export const LG_RECORDS = 16;

/** Transaction record: op (`TXOP_*`) | slot << 8. */
export const TX_OP = 0;
/** Transaction record: the buffer. */
export const TX_BUF = 4;
/** Transaction record: the cache. */
export const TX_CACHE = 8;
/** Transaction record: the size asked for. */
export const TX_SIZE = 12;
/** Transaction record: time, ms since the epoch (float64). */
export const TX_TIME = 16;
/** Transaction record: the stack id. */
export const TX_STACK = 24;
/**
 * Transaction record: the cache's id (`CA_ID`) when the record was written, so that a record
 * of a cache since destroyed is not read as one of a cache made later at the same address
 * (0 in an image written before it was kept: the address is trusted).
 */
export const TX_CACHE_ID = 28;
/** Bytes of a transaction record. */
export const TX_RECSIZE = 32;
/** An allocation. */
export const TXOP_ALLOC = 1;
/** A free. */
export const TXOP_FREE = 2;

/** Contents record: the buffer. */
export const CT_BUF = 0;
/** Contents record: the cache. */
export const CT_CACHE = 4;
/** Contents record: time (float64). */
export const CT_TIME = 8;
/** Contents record: the worker slot | the cache's id (`CA_ID`, low 24 bits) << `SLOT_ID_SHIFT`. */
export const CT_SLOT = 16;
/** Contents record: bytes saved. */
export const CT_LEN = 20;
/** Contents record: the saved bytes. */
export const CT_DATA = 24;

/** Fail record: the cache (0 for the oversize arena). */
export const FL_CACHE = 0;
/** Fail record: the size asked for. */
export const FL_SIZE = 4;
/** Fail record: time (float64). */
export const FL_TIME = 8;
/** Fail record: the worker slot | the cache's id (low 24 bits) << `SLOT_ID_SHIFT`. */
export const FL_SLOT = 16;
/** Fail record: the stack id. */
export const FL_STACK = 20;
/** Bytes of a fail record. */
export const FL_RECSIZE = 24;

/**
 * Where the cache's id begins in a contents or fail record's slot word (see `TX_CACHE_ID`);
 * the slot is the word's low byte.
 */
export const SLOT_ID_SHIFT = 8;

/** Bytes of a ring of `bytes` of records of `recsize` bytes, header included. */
export function ringBytes(bytes: number, recsize: number): number {
  return LG_RECORDS + Math.max(1, Math.floor(bytes / recsize)) * recsize;
}

/** Lays an empty ring at `at` holding `bytes / recsize` records. */
export function layRing(h: HeapView, at: number, bytes: number, recsize: number): void {
  h.i32[(at + LG_NREC) >> 2] = Math.max(1, Math.floor(bytes / recsize));
  h.i32[(at + LG_RECSIZE) >> 2] = recsize;
  h.i32[(at + LG_NEXT) >> 2] = 0;
  h.i32[(at + LG_WRAPS) >> 2] = 0;
}

/** Claims the next record of the ring at `ring`; returns its address. */
export function ringNext(h: HeapView, ring: number): number {
  const at = (ring + LG_NEXT) >> 2;
  const seq = Atomics.add(h.i32, at, 1) >>> 0;
  const n = h.i32[(ring + LG_NREC) >> 2];
  if (seq >= RING_SEQ_WRAP) {
    // The count is brought back by a multiple of the ring's size before it wraps at 2^32
    // (past it a full ring read as nearly empty): each record keeps its place, and the ring
    // reads full. A compare-and-swap another worker's claim beat is left for the next claim.
    const cur = Atomics.load(h.i32, at) >>> 0, back = ringSeqBack(n);
    if (
      cur >= RING_SEQ_WRAP &&
      Atomics.compareExchange(h.i32, at, cur | 0, (cur - back) | 0) === (cur | 0)
    ) {
      Atomics.add(h.i32, (ring + LG_WRAPS) >> 2, 1);
    }
  }
  return ring + LG_RECORDS + (seq % n) * h.i32[(ring + LG_RECSIZE) >> 2];
}

/** The claim count at which {@linkcode ringNext} brings a ring's count back (2^30). */
export const RING_SEQ_WRAP = 2 ** 30;

/** How far {@linkcode ringNext} brings back the count of a ring of `n` records: a multiple of n. */
export function ringSeqBack(n: number): number {
  return Math.floor((RING_SEQ_WRAP - n) / n) * n;
}

/** How many records were ever written to the ring at `ring`. */
export function ringWritten(h: HeapView, ring: number): number {
  const n = h.i32[(ring + LG_NREC) >> 2];
  if (n <= 0) return h.i32[(ring + LG_NEXT) >> 2] >>> 0; // (a damaged image's ring)
  return h.i32[(ring + LG_WRAPS) >> 2] * ringSeqBack(n) + (h.i32[(ring + LG_NEXT) >> 2] >>> 0);
}

/** The addresses of the ring's records, newest first. */
export function ringRecords(h: HeapView, ring: number): number[] {
  const n = h.i32[(ring + LG_NREC) >> 2], size = h.i32[(ring + LG_RECSIZE) >> 2];
  const next = h.i32[(ring + LG_NEXT) >> 2] >>> 0;
  const out: number[] = [];
  for (let k = 1; k <= Math.min(n, next); k++) {
    out.push(ring + LG_RECORDS + ((next - k) % n) * size);
  }
  return out;
}

/** When this realm's clock started, in ms since the epoch (a getter that costs, read once). */
const TIME_ORIGIN = performance.timeOrigin;

/** Now, in ms since the epoch, with sub-millisecond precision where the runtime gives it. */
export function now(): number {
  return TIME_ORIGIN + performance.now();
}
