/**
 * The collector's image: its root record, the per-worker slot records, the finalizer table,
 * and the meaning it gives to one bit of the slab layer's state bytes. Every offset is
 * declared here once (DESIGN.md, principle 1).
 *
 * Theory. One record per heap, published under the module anchor `MOD_GC`, holds everything
 * the workers share: the word the stop-the-world protocol turns on (`GC_BUSY`; the request
 * itself is the core's `HDR_SAFEPOINT` word), the allocation counters that trigger a
 * collection, the statistics, the address of the mark stack, the table of the collector's
 * caches (one per kind and size class) and a byte per cache id saying which kind of object a
 * cache holds. Objects larger than the largest class are spans of the core's `umem_oversize`
 * arena (so that `findleaks` sees and scans them too), listed in the large-object table
 * (`LO_*` entries, sorted by address, each with its kind and its mark). After it come one `GS_*` record per worker slot (a cache line each, so that a
 * worker's counters do not share a line with another's) and, elsewhere in the heap, the
 * finalizer table (`FE_*` entries).
 *
 * Mark bits live in the slabs: the high bit ({@linkcode BUF_MARK}) of a buffer's state byte
 * (core/slab.ts keeps states 0..3 in the low bits). It is set only while a collection holds
 * the world stopped, and the sweep clears every one it set before the world resumes, so
 * nothing else in the core ever sees it.
 *
 * Invariants.
 * - `GC_MAGIC` is {@linkcode GC_MAGIC_VALUE} once the record is laid; the anchor is then set.
 * - `GC_BUSY` is 0 or the slot + 1 of the one worker collecting.
 * - A cache address in `GC_CLASSES` never changes once set; its kind byte is set before it.
 * - `GC_INUSE` counts the bytes of live collector objects up to each worker's unfolded
 *   `GS_PENDING`.
 *
 * Lock order: `GC_LOCK` (the cache table and the finalizer table) is taken alone, or after
 * `GC_BUSY` is held; never while a core lock is held.
 *
 * @module
 */

// ---- The collector's root record (GC_*) ----
/** {@linkcode GC_MAGIC_VALUE} once laid. */
export const GC_MAGIC = 0;
/** Word lock (core/lock.ts) of the cache table and the finalizer table. */
export const GC_LOCK = 4;
/** Slot + 1 of the worker collecting, 0 when none (taken with compare-and-swap). */
export const GC_BUSY = 8;
/** The phase, `PH_*`. */
export const GC_PHASE = 12;
/** Collections begun, as an int32 (the value written to `HDR_SAFEPOINT`, never 0). */
export const GC_EPOCH = 16;
/** `GCF_*` flags. */
export const GC_FLAGS = 20;
/** Free-space divisor: collect after heapSize / divisor bytes of allocation. */
export const GC_DIVISOR = 24;
/** How long a collection waits for a worker to reach a safe point, ms. */
export const GC_STOP_TIMEOUT = 28;
/** Largest bytes of collector objects in use (0: no limit). */
export const GC_MAXHEAP = 32;
/** Bytes allocated since the last collection (folded in from the slots). */
export const GC_SINCE = 36;
/** Bytes of collector objects in use (folded in from the slots). */
export const GC_INUSE = 40;
/** Allocation below which no collection is triggered, bytes. */
export const GC_MIN_TRIGGER = 44;
/** Address of the mark stack (pairs of words: start, end). */
export const GC_MSTACK = 48;
/** Entries the mark stack holds. */
export const GC_MSTACK_CAP = 52;
/** Mark-stack overflows so far. */
export const GC_OVERFLOWS = 56;
/** Address of the finalizer table. */
export const GC_FINTAB = 60;
/** Entries the finalizer table holds. */
export const GC_FINCAP = 64;
/** Entries in use (armed or ready). */
export const GC_FINCOUNT = 68;
/** Finalizable objects found in cycles by the last collection. */
export const GC_CYCLES = 72;
/** Worker slots of the heap (the number of `GS_*` records). */
export const GC_NSLOTS = 76;
/** Collections done (float64). */
export const GC_COLLECTIONS = 80;
/** Pause of the last collection, ms (float64). */
export const GC_LAST_PAUSE = 88;
/** Bytes the last collection reclaimed (float64). */
export const GC_RECLAIMED = 96;
/** Bytes reclaimed by every collection (float64). */
export const GC_TOTAL_RECLAIMED = 104;
/** Bytes the last collection found live (float64). */
export const GC_LAST_LIVE = 112;
/** Time the last collection spent marking, ms (float64). */
export const GC_LAST_MARK = 120;
/** How long a parked worker waits for a collection to end before it gives up, ms. */
export const GC_PARK_TIMEOUT = 128;
/** Address of the large-object table (`LO_*` entries sorted by address; 0: none yet). */
export const GC_LARGE = 132;
/** Entries the large-object table holds. */
export const GC_LARGE_CAP = 136;
/** Entries in use. */
export const GC_LARGE_COUNT = 140;
/** Bytes of the spans of the large objects. */
export const GC_LARGE_BYTES = 144;
/** The cache table: `KIND_COUNT * NCLASSES` words, the cache of kind k and class c at k*NCLASSES+c. */
export const GC_CLASSES = 256;
/** The kind table: one byte per cache id (`KIND_*`), {@linkcode KIND_TABLE_BYTES} of them. */
export const GC_KINDS = 1024;
/** Bytes of the kind table: caches with a larger id cannot hold collector objects. */
export const KIND_TABLE_BYTES = 4096;
/** First slot record. */
export const GC_SLOTS = GC_KINDS + KIND_TABLE_BYTES;

/** "GCOL". */
export const GC_MAGIC_VALUE = 0x4c4f4347;

/** Flag: find-leak mode (GC_find_leak): report unreachable objects, do not free them. */
export const GCF_FINDLEAKS = 1;
/** Flag: only a pointer to an object's first byte keeps it (interior pointers ignored). */
export const GCF_BASEONLY = 2;
/** Flag: no collection is triggered by allocation (only `collect()`). */
export const GCF_MANUAL = 4;

/** Phase: no collection. */
export const PH_IDLE = 0;
/** Phase: the world is stopped and the collector marks. */
export const PH_MARK = 1;
/** Phase: the collector frees what it did not mark. */
export const PH_SWEEP = 2;
/** Phase: this worker runs finalizers (`phase()` reports it per worker; never stored). */
export const PH_FINALIZE = 3;

// ---- Per-slot record (GS_*), one cache line per worker slot ----
/** `WS_*` state of this worker towards the collector. */
export const GS_STATE = 0;
/** Bytes this worker allocated and has not yet added to `GC_SINCE` and `GC_INUSE`. */
export const GS_PENDING = 4;
/** Finalizers ready for this worker to run. */
export const GS_NREADY = 8;
/** Root registers: words the collector treats as roots (the handle's own temporaries). */
export const GS_REGS = 16;
/** Root registers per slot. */
export const GS_NREGS = 4;
/** Size of a slot record. */
export const GS_SIZE = 64;

/** Slot state: this slot has no collector handle. */
export const WS_NONE = 0;
/** Slot state: a mutator that may touch collector objects at any moment. */
export const WS_RUNNING = 1;
/** Slot state: stopped at a safe point until the collection ends. */
export const WS_PARKED = 2;
/** Slot state: declared outside (`leave()`): touches no collector object until `enter()`. */
export const WS_OUTSIDE = 3;

// ---- Finalizer table entry (FE_*) ----
/** The object (0: a free entry). */
export const FE_OBJ = 0;
/** Slot of the worker whose function it is. */
export const FE_SLOT = 4;
/** The function's id in that worker's handle. */
export const FE_FN = 8;
/** `FS_*`. */
export const FE_STATE = 12;
/** Size of an entry. */
export const FE_SIZE = 16;
/** Entries of a new finalizer table. */
export const FE_INITIAL = 256;

/** Entry state: free. */
export const FS_FREE = 0;
/** Entry state: the object is watched. */
export const FS_ARMED = 1;
/** Entry state: the object was found unreachable; its worker runs the function next. */
export const FS_READY = 2;
/**
 * Entry states from here on: the worker is running the functions of a batch it took, at
 * nesting depth `state - FS_RUNNING` (a finalizer may call `runFinalizers`); the objects of the
 * batch stay roots, as ready ones are, until the batch is done.
 */
export const FS_RUNNING = 3;

// ---- Large-object table entry (LO_*): objects past the largest size class ----
/** First byte of the object: a span of the heap's `umem_oversize` arena. */
export const LO_START = 0;
/** Bytes of the span (whole pages): the object's size. */
export const LO_BYTES = 4;
/** The object's kind (`KIND_*`). */
export const LO_KIND = 8;
/** The mark: 1 while a collection has found the object reachable. */
export const LO_MARK = 12;
/** Size of an entry. */
export const LO_SIZE = 16;
/** Entries of a new large-object table. */
export const LO_INITIAL = 256;
/** The largest object the collector allocates (large objects included). */
export const LARGE_MAX = 1 << 30;

// ---- Object kinds (the byte of a cache id in GC_KINDS) ----
/** Not a collector cache. */
export const KIND_NONE = 0;
/** Scanned and collected (GC_MALLOC). */
export const KIND_NORMAL = 1;
/** Collected, never scanned (GC_MALLOC_ATOMIC). */
export const KIND_ATOMIC = 2;
/** Scanned, never collected (GC_MALLOC_UNCOLLECTABLE). */
export const KIND_UNCOLLECTABLE = 3;
/** Kinds that have caches (1..3). */
export const KIND_COUNT = 3;

/** The mark bit in a buffer's state byte. */
export const BUF_MARK = 0x80;

/** Entries of the mark stack by default (pairs of words). */
export const MSTACK_INITIAL = 16384;
/** Per-worker allocation folded into the shared counters at least this often, bytes. */
export const FOLD_BYTES = 65536;

/** Bytes of the root record for a heap of `nslots` slots. */
export function recordBytes(nslots: number): number {
  return GC_SLOTS + nslots * GS_SIZE;
}
