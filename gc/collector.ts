/**
 * The collector: a conservative mark-sweep collector over the core's slab caches, with the
 * interface of the Boehm-Demers-Weiser collector (`GC_MALLOC`, `GC_MALLOC_ATOMIC`,
 * `GC_MALLOC_UNCOLLECTABLE`, `GC_FREE`, `GC_REALLOC`, `GC_add_roots`, `GC_register_finalizer`,
 * `GC_gcollect`, `GC_set_max_heap_size`, `GC_find_leak`, `GC_free_space_divisor`).
 *
 * Theory. Objects come from object caches of the core, one per kind (scanned, atomic,
 * uncollectable) and size class (size_classes.ts), created on first use and listed in the
 * collector's record (layout.ts) so that every worker uses the same ones. A collection stops
 * the world (stop.ts), marks from the roots (mark.ts): the heap's root registry (ranges added
 * with `addRoots`, addresses pinned with `pin`), each worker's root registers, and every
 * uncollectable object; then it finds the finalizable objects that are ready (finalize.ts),
 * sweeps (sweep.ts) and lets the world go; the collecting worker then runs its ready finalizers,
 * and each other worker runs its own at its next safe point.
 *
 * What is a root, honestly. Nothing in a JavaScript variable is seen. A program keeps its
 * objects reachable from a root range or an uncollectable object, or pins the address it holds
 * (`pin`, a `Disposable`). A collection can happen at any `malloc` of any worker (every malloc
 * is a safe point, and one may trigger a collection): an object that a worker holds only in a
 * variable must be linked or pinned before that worker allocates again.
 *
 * Triggering, as Boehm's: each worker adds what it allocates to the shared counters every
 * `FOLD_BYTES` (or a sixteenth of the maximum heap size, if smaller); once the bytes allocated
 * since the last collection reach `max(minTrigger, heapSize / divisor)`, that worker collects.
 *
 * Invariants. Between collections no state byte of a collector cache has `BUF_MARK` set. Every
 * object of a scanned kind is zeroed when allocated, so no stale word from its previous life
 * keeps anything alive. A worker's handle is the only one for its slot.
 *
 * Lock order: `GC_BUSY` (the collection), then `GC_LOCK`, then the core's locks.
 *
 * @module
 */
import {
  addSlotReclaimer,
  BUF_ALLOC,
  BUF_ALLOC_DEFER,
  bufferOf,
  bufferStateAt,
  CA_BUFSIZE,
  CA_ID,
  CA_SLABS,
  CA_SLABSIZE,
  cacheOf,
  claimModuleAnchor,
  HDR_MAGIC,
  HDR_NSLOTS,
  HDR_SAFEPOINT,
  hex,
  lock,
  MOD_GC,
  moduleAnchor,
  PAGE_SIZE,
  roots,
  settleAllDeferred,
  unlock,
} from "../core/internal.ts";
import {
  Cache,
  Heap,
  type HeapView,
  type LeakReport,
  OutOfMemoryError,
  UmemError,
  type Vmem,
} from "../core/mod.ts";
import {
  dropFinalizer,
  dropSlotFinalizers,
  findReady,
  finishBatch,
  setFinalizer,
  takeReady,
} from "./finalize.ts";
import {
  BUF_MARK,
  FOLD_BYTES,
  GC_BUSY,
  GC_CLASSES,
  GC_COLLECTIONS,
  GC_CYCLES,
  GC_DIVISOR,
  GC_FINCOUNT,
  GC_FLAGS,
  GC_INUSE,
  GC_KINDS,
  GC_LARGE_BYTES,
  GC_LAST_LIVE,
  GC_LAST_MARK,
  GC_LAST_PAUSE,
  GC_LOCK,
  GC_MAGIC,
  GC_MAGIC_VALUE,
  GC_MAXHEAP,
  GC_MIN_TRIGGER,
  GC_MSTACK,
  GC_MSTACK_CAP,
  GC_NSLOTS,
  GC_OVERFLOWS,
  GC_PARK_TIMEOUT,
  GC_PHASE,
  GC_RECLAIMED,
  GC_SINCE,
  GC_SLOTS,
  GC_STOP_TIMEOUT,
  GC_TOTAL_RECLAIMED,
  GCF_BASEONLY,
  GCF_FINDLEAKS,
  GCF_MANUAL,
  GS_NREADY,
  GS_NREGS,
  GS_PENDING,
  GS_REGS,
  GS_SIZE,
  GS_STATE,
  KIND_ATOMIC,
  KIND_COUNT,
  KIND_NONE,
  KIND_NORMAL,
  KIND_TABLE_BYTES,
  KIND_UNCOLLECTABLE,
  LARGE_MAX,
  MSTACK_INITIAL,
  PH_IDLE,
  PH_MARK,
  PH_SWEEP,
  recordBytes,
  WS_NONE,
  WS_RUNNING,
} from "./layout.ts";
import { largeAlloc, largeBytes, largeFree, largeInfo, LO_W_MARK } from "./large.ts";
import { Marker } from "./mark.ts";
import { PinHandle } from "./pin.ts";
import { CLASS_OF, GC_MAXSIZE, GC_SIZE_CLASSES, NCLASSES } from "./size_classes.ts";
import {
  endCollection,
  enterWorld,
  leaveWorld,
  park,
  resumeWorld,
  setSlotState,
  stopWorld,
  tryBeginCollection,
} from "./stop.ts";
import { sweep } from "./sweep.ts";

/** Options of {@linkcode Collector.create}. */
export interface CollectorOptions {
  /**
   * Whether a pointer into the middle of an object keeps it (default true, as Boehm's
   * `GC_all_interior_pointers`); false honours only pointers to an object's first byte.
   */
  interior?: boolean;
  /**
   * Find-leak mode (`GC_find_leak`): a collection reports the unreachable objects in the
   * inspection API's leak format and frees nothing (default false).
   */
  findLeaks?: boolean;
  /** Collect after `heapSize / freeSpaceDivisor` bytes of allocation (default 3). */
  freeSpaceDivisor?: number;
  /** Never trigger a collection before this many bytes were allocated (default 1 MiB). */
  minTrigger?: number;
  /** Whether allocation triggers collections (default true); `collect()` always does. */
  auto?: boolean;
  /** Largest bytes of collector objects in use (default 0: no limit). */
  maxHeapSize?: number;
  /** How long a collection waits for each worker to reach a safe point, ms (default 2000). */
  stopTimeout?: number;
  /** How long a parked worker waits for a collection to end, ms (default 60000). */
  parkTimeout?: number;
  /** Entries of the mark stack to begin with; it doubles after an overflow (default 16384). */
  markStack?: number;
}

/** The collector's figures, as Boehm's `GC_get_*` calls give them. */
export interface CollectorStats {
  /** Bytes of the slabs of the collector's caches (`GC_get_heap_size`). */
  heapSize: number;
  /** Bytes of those slabs not held by live objects (`GC_get_free_bytes`). */
  freeBytes: number;
  /** Bytes allocated since the last collection (`GC_get_bytes_since_gc`). */
  bytesSinceGC: number;
  /** Collections done (`GC_get_gc_no`). */
  collections: number;
  /** Pause of the last collection, ms. */
  lastPauseMs: number;
  /** Bytes the last collection reclaimed. */
  bytesReclaimed: number;
  /** Bytes every collection reclaimed. */
  totalReclaimed: number;
  /** Bytes the last collection found live. */
  liveBytes: number;
  /** Time the last collection spent marking, ms. */
  lastMarkMs: number;
  /** Mark-stack overflows (each one a rescan). */
  markStackOverflows: number;
  /** Objects with a finalizer, armed or ready. */
  finalizers: number;
  /** Finalizable objects the last collection found on cycles (never finalized). */
  finalizerCycles: number;
}

/** What one collection did. */
export interface CollectResult {
  /** Objects freed (find-leak mode: found unreachable and left allocated). */
  objects: number;
  /** Their bytes. */
  bytesReclaimed: number;
  /** Objects found live. */
  liveObjects: number;
  /** Their bytes. */
  liveBytes: number;
  /** Time from the request to stop until the world went again, ms. */
  pauseMs: number;
  /** Time spent marking, ms. */
  markMs: number;
  /** Finalizable objects found ready. */
  finalizable: number;
  /** Finalizable objects on cycles: not finalized, reported here. */
  cycles: number[];
  /** In find-leak mode: the unreachable objects, as `inspect(heap).findleaks()` reports. */
  leaks?: LeakReport;
}

/** Refuses what is not a heap handle. */
function checkHeap(fn: string, heap: unknown): void {
  if (!(heap instanceof Heap)) {
    throw new UmemError("invalid-argument", `${fn}: expected a Heap, got ${String(heap)}`);
  }
}

/** Refuses a switch that is not a boolean. */
function checkFlag(fn: string, on: unknown): void {
  if (typeof on !== "boolean") {
    throw new UmemError("invalid-argument", `${fn}: expected true or false, got ${String(on)}`);
  }
}

/** The phase of the collector, as `phase()` reports it. */
export type GcPhase = "idle" | "mark" | "sweep" | "finalize";

const PHASES: readonly GcPhase[] = ["idle", "mark", "sweep", "finalize"];
const KIND_NAMES = ["", "gc", "gc_atomic", "gc_uncoll"];
// Local copies for the allocation path (V8 does not fold imported constants).
const SP_WORD = 63;
/** The size of each class, for the allocation path. */
const CLASS_SIZE = Int32Array.from(GC_SIZE_CLASSES);

/**
 * A worker's handle on the heap's collector.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Collector } from "@umem/umem/gc";
 * const heap = Heap.create({ size: 8 << 20 });
 * const gc = Collector.create(heap);
 * const root = gc.mallocUncollectable(8); // a root the program keeps
 * let prev = root;
 * for (let i = 0; i < 1000; i++) {
 *   const node = gc.malloc(8); // [value, next]
 *   heap.i32[node >> 2] = i;
 *   heap.i32[(prev >> 2) + 1] = node;
 *   prev = node;
 * }
 * heap.i32[(root >> 2) + 1] = 0; // drop the list
 * console.log(gc.collect().objects); // 1000
 * ```
 */
export class Collector implements Disposable {
  /** The heap. */
  readonly heap: Heap;
  /** The collector's record in the heap. */
  readonly record: number = 0;
  /** This worker's slot. */
  readonly slot: number = 0;
  /** Word index of this slot's unfolded allocation bytes. */
  private readonly pendingWord: number = 0;
  /** Word index of this slot's state (`WS_*`). */
  private stateWord: number = 0;
  /** Caches by kind (1..3) and class, filled on first use. */
  private readonly caches: (Cache | undefined)[][] = [[], [], [], []];
  /** Cache handles by record address (for free and the sweep). */
  private readonly byAddr = new Map<number, Cache>();
  /** This worker's finalizers by id. */
  private readonly fns = new Map<number, (ptr: number) => void>();
  /** The next finalizer id. */
  private nextFn = 1;
  /** Allocation bytes between folds. */
  private foldAt = FOLD_BYTES;
  /** Nonzero while this handle holds `GC_LOCK`: the slow-path safe point must not park. */
  private holding = 0;
  /** Whether this handle is attached. */
  private attached = true;
  /** The heap's `umem_oversize` arena (found on first use). */
  private oversizeArena: Vmem | undefined = undefined;

  /**
   * Opens the collector record `record` for this worker. Use {@linkcode Collector.create} or
   * {@linkcode Collector.attach}.
   *
   * @param heap the heap
   * @param record the collector record
   */
  private constructor(heap: Heap, record: number) {
    if (SP_WORD !== HDR_SAFEPOINT >> 2) {
      throw new Error("gc/collector.ts: the copy of HDR_SAFEPOINT is out of date");
    }
    this.heap = heap;
    this.record = record;
    this.slot = heap.slot;
    const gs = record + GC_SLOTS + heap.slot * GS_SIZE;
    this.pendingWord = (gs + GS_PENDING) >> 2;
    this.stateWord = (gs + GS_STATE) >> 2;
    if (Atomics.load(heap.i32, (gs + GS_STATE) >> 2) !== WS_NONE) {
      throw new UmemError(
        "invalid-argument",
        `Collector.attach: worker ${heap.slot} already has a collector handle (record ${
          hex(record)
        })`,
      );
    }
    heap.i32.fill(0, gs >> 2, (gs + GS_SIZE) >> 2);
    setSlotState(heap, record, heap.slot, WS_RUNNING);
    heap.safepoint = () => {
      if (this.holding === 0) park(this.heap, this.record, this.slot);
    };
    heap.pressure = () => void this.collectUnderPressure();
    this.updateFold();
  }

  /**
   * An allocation of this worker found no memory (the heap at its largest): collect, as Boehm's
   * allocator collects before it gives up, unless collections are manual, this worker holds the
   * collector's lock or is collecting already, or nothing was allocated since the last one. A
   * collection that cannot be made (a worker missed its safe point) lets the allocation fail as
   * it would have.
   */
  private collectUnderPressure(): boolean {
    const h = this.heap, rec = this.record;
    if (this.pressing || this.holding !== 0 || !this.attached) return false;
    if ((h.i32[(rec + GC_FLAGS) >> 2] & GCF_MANUAL) !== 0) return false;
    if (Atomics.load(h.i32, (rec + GC_BUSY) >> 2) === this.slot + 1) return false;
    if (Atomics.load(h.i32, (rec + GC_SINCE) >> 2) + h.i32[this.pendingWord] === 0) return false;
    this.pressing = true;
    try {
      this.foldPending();
      this.collectOrWait("GC_malloc");
      return true;
    } catch {
      return false; // no collection: the allocation fails as it would have
    } finally {
      this.pressing = false;
    }
  }

  /** Whether {@linkcode Collector.collectUnderPressure} is running (it is not re-entered). */
  private pressing = false;

  /**
   * Creates the heap's collector (one per heap) and this worker's handle on it.
   *
   * @param heap the heap
   * @param options interior pointers, find-leak mode, divisor, trigger, limits, mark stack
   * @returns this worker's handle
   * @throws {UmemError} `invalid-argument` for bad options or when the heap has a collector
   *   already (use {@linkcode Collector.attach})
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }), { interior: false });
   * console.log(gc.phase()); // idle
   * ```
   */
  static create(heap: Heap, options: CollectorOptions = {}): Collector {
    const fn = "Collector.create";
    checkHeap(fn, heap);
    if (typeof options !== "object" || options === null) {
      throw new UmemError("invalid-argument", `${fn}: options must be an object`);
    }
    for (const k of Object.keys(options)) {
      if (!COLLECTOR_OPTION_KEYS.includes(k)) {
        throw new UmemError("invalid-argument", `${fn}: unknown option '${k}'`);
      }
    }
    for (const k of ["interior", "findLeaks", "auto"] as const) {
      if (options[k] !== undefined && typeof options[k] !== "boolean") {
        throw new UmemError("invalid-argument", `${fn}: ${k} must be true or false`);
      }
    }
    heap.sync();
    if (heap.trusted) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: the heap was created with trust: it keeps no buffer states, which the collector ` +
          `marks and sweeps by (create the heap without trust)`,
      );
    }
    if (moduleAnchor(heap, MOD_GC) !== 0) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: the heap has a collector at ${
          hex(moduleAnchor(heap, MOD_GC))
        } already (use Collector.attach)`,
      );
    }
    const int = (name: string, v: number | undefined, dflt: number, lo: number, hi: number) => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < lo || x > hi) {
        throw new UmemError(
          "invalid-argument",
          `${fn}: ${name} ${x} (expected a whole number in ${lo}..${hi})`,
        );
      }
      return x;
    };
    const divisor = int("freeSpaceDivisor", options.freeSpaceDivisor, 3, 1, 1 << 20);
    const minTrigger = int("minTrigger", options.minTrigger, 1 << 20, 0, 0x7fffffff);
    const maxHeap = int("maxHeapSize", options.maxHeapSize, 0, 0, 0x7fffffff);
    const stopTimeout = int("stopTimeout", options.stopTimeout, 2000, 1, 1 << 30);
    const parkTimeout = int("parkTimeout", options.parkTimeout, 60000, 1, 1 << 30);
    const mstack = int("markStack", options.markStack, MSTACK_INITIAL, 1, 1 << 24);
    const nslots = heap.i32[HDR_NSLOTS >> 2];
    const bytes = roundPage(recordBytes(nslots));
    const rec = heap.vmem.alloc(bytes);
    let stack = 0;
    try {
      stack = heap.vmem.alloc(roundPage(mstack * 8));
    } catch (e) {
      heap.vmem.free(rec, bytes);
      throw e;
    }
    const i32 = heap.i32;
    i32.fill(0, rec >> 2, (rec + bytes) >> 2);
    const set = (off: number, v: number) => {
      i32[(rec + off) >> 2] = v;
    };
    set(
      GC_FLAGS,
      (options.findLeaks === true ? GCF_FINDLEAKS : 0) |
        (options.interior === false ? GCF_BASEONLY : 0) | (options.auto === false ? GCF_MANUAL : 0),
    );
    set(GC_DIVISOR, divisor);
    set(GC_MIN_TRIGGER, minTrigger);
    set(GC_MAXHEAP, maxHeap);
    set(GC_STOP_TIMEOUT, stopTimeout);
    set(GC_PARK_TIMEOUT, parkTimeout);
    set(GC_MSTACK, stack);
    set(GC_MSTACK_CAP, mstack);
    set(GC_NSLOTS, nslots);
    Atomics.store(i32, (rec + GC_MAGIC) >> 2, GC_MAGIC_VALUE);
    if (claimModuleAnchor(heap, MOD_GC, rec) !== rec) {
      heap.vmem.free(stack, roundPage(mstack * 8));
      heap.vmem.free(rec, bytes);
      throw new UmemError("invalid-argument", `${fn}: another worker created the collector first`);
    }
    return new Collector(heap, rec);
  }

  /**
   * Opens the heap's collector in this worker, as a worker does with the heap it attached.
   *
   * @param heap this worker's heap handle
   * @returns this worker's handle
   * @throws {UmemError} `invalid-argument` when the heap has no collector, or this worker has
   *   a handle already
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * Collector.create(heap);
   * const other = Heap.attach(heap.buffer); // as a worker would
   * const gc = Collector.attach(other);
   * gc.detach();
   * other.detach();
   * ```
   */
  static attach(heap: Heap): Collector {
    checkHeap("Collector.attach", heap);
    heap.sync();
    const rec = moduleAnchor(heap, MOD_GC);
    if (rec === 0 || heap.i32[(rec + GC_MAGIC) >> 2] !== GC_MAGIC_VALUE) {
      throw new UmemError(
        "invalid-argument",
        "Collector.attach: the heap has no collector (call Collector.create first)",
      );
    }
    return new Collector(heap, rec);
  }

  // ---- allocation ----

  /**
   * Allocates a scanned, collected object of `size` bytes, cleared (`GC_MALLOC`). This is a
   * safe point, and may collect first.
   *
   * @param size bytes, 1..2^30 (past 128 KiB: whole pages of their own)
   * @returns the object's address
   * @throws {UmemError} `invalid-argument` for a size out of range
   * @throws {OutOfMemoryError} when the heap or the maximum heap size is exhausted
   * @throws {UmemError} `safepoint-timeout` when a collection this allocation triggered could
   *   not stop another worker (nothing was allocated); `invalid-argument` after `leave()`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const p = gc.malloc(24);
   * console.log(heap.i32[p >> 2]); // 0
   * ```
   */
  malloc(size: number): number {
    const h = this.heap;
    if (h.i32[SP_WORD] !== 0 || h.i32[this.stateWord] !== WS_RUNNING) this.entry("GC_malloc");
    if (!(size > 0 && size <= GC_MAXSIZE) || (size | 0) !== size) {
      return this.allocLarge(KIND_NORMAL, size, "GC_malloc");
    }
    const cls = CLASS_OF[(size + 7) >> 3];
    const c = this.caches[1][cls] ?? this.cacheFor(KIND_NORMAL, cls);
    const csize = CLASS_SIZE[cls];
    // Pending bytes are counted once the buffer is had (a failed alloc counts nothing); a fold,
    // which may collect first, counts them before, and takes them back if the alloc fails.
    let p: number;
    if (h.i32[this.pendingWord] + csize >= this.foldAt) p = this.allocFolded(c, csize, "GC_malloc");
    else {
      p = c.alloc();
      h.i32[this.pendingWord] += csize;
    }
    const i32 = h.i32;
    for (let i = p >> 2, e = (p + csize) >> 2; i < e; i++) i32[i] = 0;
    return p;
  }

  /**
   * Allocates an object that is collected but never scanned, for numbers and strings
   * (`GC_MALLOC_ATOMIC`): a word in it that looks like a pointer keeps nothing alive. Its
   * contents are not cleared.
   *
   * @param size bytes, 1..2^30 (past 128 KiB: whole pages of their own)
   * @returns the object's address
   * @throws {UmemError} `invalid-argument` for a size out of range
   * @throws {OutOfMemoryError} when the heap or the maximum heap size is exhausted
   * @throws {UmemError} `safepoint-timeout` when a collection this allocation triggered could
   *   not stop another worker (nothing was allocated); `invalid-argument` after `leave()`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const text = gc.mallocAtomic(5);
   * heap.u8.set(new TextEncoder().encode("hello"), text);
   * ```
   */
  mallocAtomic(size: number): number {
    return this.allocKind(KIND_ATOMIC, size, "GC_malloc_atomic");
  }

  /**
   * Allocates a scanned object that is never collected, only freed (`GC_MALLOC_UNCOLLECTABLE`):
   * it is a root, and what it points to stays alive.
   *
   * @param size bytes, 1..2^30 (past 128 KiB: whole pages of their own)
   * @returns the object's address (cleared)
   * @throws {UmemError} `invalid-argument` for a size out of range
   * @throws {OutOfMemoryError} when the heap or the maximum heap size is exhausted
   * @throws {UmemError} `safepoint-timeout` when a collection this allocation triggered could
   *   not stop another worker (nothing was allocated); `invalid-argument` after `leave()`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const table = gc.mallocUncollectable(64);
   * heap.i32[table >> 2] = gc.malloc(16);
   * console.log(gc.collect().objects); // 0
   * gc.free(table);
   * ```
   */
  mallocUncollectable(size: number): number {
    return this.allocKind(KIND_UNCOLLECTABLE, size, "GC_malloc_uncollectable");
  }

  /** Allocates an object of kind `kind` (the path of the less common kinds). */
  private allocKind(kind: number, size: number, fn: string): number {
    const h = this.heap;
    if (h.i32[SP_WORD] !== 0 || h.i32[this.stateWord] !== WS_RUNNING) this.entry(fn);
    if (!(size > 0 && size <= GC_MAXSIZE) || (size | 0) !== size) {
      return this.allocLarge(kind, size, fn);
    }
    const cls = CLASS_OF[(size + 7) >> 3];
    const c = this.caches[kind][cls] ?? this.cacheFor(kind, cls);
    const csize = CLASS_SIZE[cls];
    // Pending bytes are counted once the buffer is had (a failed alloc counts nothing); a fold,
    // which may collect first, counts them before, and takes them back if the alloc fails.
    let p: number;
    if (h.i32[this.pendingWord] + csize >= this.foldAt) p = this.allocFolded(c, csize, fn);
    else {
      p = c.alloc();
      h.i32[this.pendingWord] += csize;
    }
    if (kind !== KIND_ATOMIC) h.i32.fill(0, p >> 2, (p + csize) >> 2);
    return p;
  }

  /**
   * `c.alloc()` when this worker's pending bytes plus `bytes` reach the fold: the fold first
   * (it counts them in the shared counters, and may collect), then the alloc; when that fails
   * the bytes are taken back out, or the collector would count them in use for ever.
   */
  private allocFolded(c: Cache, bytes: number, fn: string): number {
    this.fold(bytes, fn);
    try {
      return c.alloc();
    } catch (e) {
      this.takeBack(bytes);
      throw e;
    }
  }

  /** Allocates a large object (past the largest class): whole pages of `umem_oversize`. */
  private allocLarge(kind: number, size: number, fn: string): number {
    if (!(size > 0 && size <= LARGE_MAX) || !Number.isInteger(size)) throw badSize(fn, size);
    const h = this.heap, bytes = largeBytes(size);
    this.fold(bytes, fn);
    let p: number;
    try {
      p = largeAlloc(h, this.record, this.oversize(), bytes, kind);
    } catch (e) {
      // Its pages come from umem_oversize, whose failure asks no reclaim: collect here, once.
      let again = 0;
      if (e instanceof OutOfMemoryError && this.collectUnderPressure()) {
        try {
          again = largeAlloc(h, this.record, this.oversize(), bytes, kind);
        } catch { /* the first error goes on */ }
      }
      if (again === 0) {
        this.takeBack(bytes);
        throw e;
      }
      p = again;
    }
    if (kind !== KIND_ATOMIC) h.i32.fill(0, p >> 2, (p + bytes) >> 2);
    return p;
  }

  /** The heap's `umem_oversize` arena, where large objects live. */
  private oversize(): Vmem {
    return this.oversizeArena ??= this.heap.arena("umem_oversize");
  }

  /**
   * Frees an object explicitly (`GC_FREE`), of any kind; its finalizer, if any, is forgotten.
   * `free(0)` does nothing.
   *
   * @param ptr an object's address
   * @throws {UmemError} `bad-free` for an address that is not a collector object (a large
   *   object already freed among them: its pages went back to the heap, and nothing says what
   *   they held), `duplicate-free` for a small object already freed; nothing changes
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * const p = gc.malloc(100);
   * gc.free(p);
   * ```
   */
  free(ptr: number): void {
    if (ptr === 0) return;
    const h = this.heap;
    h.sync();
    if (h.i32[this.stateWord] !== WS_RUNNING) this.entry("GC_free");
    let bytes: number;
    if (cacheOf(h, ptr) === 0 && typeof ptr === "number") {
      bytes = largeFree(h, this.record, this.oversize(), ptr);
      if (bytes === 0) throw notObject("GC_free", ptr);
    } else {
      const c = this.handleOf(ptr, "GC_free");
      c.free(ptr);
      bytes = h.i32[(c.addr + CA_BUFSIZE) >> 2];
    }
    Atomics.sub(h.i32, (this.record + GC_INUSE) >> 2, bytes);
    dropFinalizer(h, this.record, ptr);
  }

  /**
   * Resizes an object (`GC_REALLOC`): the same object when the new size fits its class, else a
   * new object of the same kind with the contents copied, the old one freed. `realloc(0, n)` is
   * `malloc(n)`; `realloc(p, 0)` frees `p` and returns 0.
   *
   * @param ptr an object's address, or 0
   * @param size the new size
   * @returns the object's address
   * @throws {UmemError} `bad-free` for an address that is not a collector object,
   *   `invalid-argument` for a bad size
   * @throws {OutOfMemoryError} when no memory can be had (the old object is untouched)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const p = gc.malloc(8);
   * heap.i32[p >> 2] = 42;
   * const q = gc.realloc(p, 1000);
   * console.log(heap.i32[q >> 2]); // 42
   * ```
   */
  realloc(ptr: number, size: number): number {
    if (ptr === 0) return this.malloc(size);
    const h = this.heap;
    h.sync();
    const { bytes: old, kind } = this.objectInfo(ptr, "GC_realloc");
    if (size === 0) {
      this.free(ptr);
      return 0;
    }
    if (!(size > 0 && size <= LARGE_MAX) || !Number.isInteger(size)) {
      throw badSize("GC_realloc", size);
    }
    if (old <= GC_MAXSIZE && size <= GC_MAXSIZE) {
      if (CLASS_OF[(size + 7) >> 3] === CLASS_OF[(old + 7) >> 3]) return ptr;
    } else if (size <= old && size * 2 > old) return ptr; // a large object shrinks in place
    // The old object is held in a free root register while the new one is allocated (which may
    // collect, and run finalizers that realloc too: each takes a register of its own); past the
    // registers, in a pin.
    const regs = (this.record + GC_SLOTS + this.slot * GS_SIZE + GS_REGS) >> 2;
    let reg = regs;
    while (reg < regs + GS_NREGS && h.i32[reg] !== 0) reg++;
    const pin = reg < regs + GS_NREGS ? undefined : new PinHandle(h, ptr);
    if (pin === undefined) h.i32[reg] = ptr;
    try {
      const p = kind === KIND_NORMAL ? this.malloc(size) : this.allocKind(kind, size, "GC_realloc");
      h.u8.copyWithin(p, ptr, ptr + Math.min(old, size));
      this.free(ptr);
      return p;
    } finally {
      if (pin === undefined) this.heap.i32[reg] = 0;
      else pin.dispose();
    }
  }

  // ---- roots ----

  /**
   * Adds the words of `[start, end)` to the roots (`GC_add_roots`), in the heap's root
   * registry, which `findleaks` shares.
   *
   * @param start first byte, word-aligned
   * @param end one past the last byte
   * @throws {UmemError} `invalid-argument` for a range outside the heap or not word-aligned
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const table = heap.zalloc(64); // plain heap memory, registered as a root
   * gc.addRoots(table, table + 64);
   * heap.i32[table >> 2] = gc.malloc(8);
   * console.log(gc.collect().objects); // 0
   * ```
   */
  addRoots(start: number, end: number): void {
    this.checkAttached("GC_add_roots");
    this.heap.addRoot(start, end - start);
  }

  /**
   * Removes roots added with {@linkcode Collector.addRoots} (`GC_remove_roots`).
   *
   * @param start the range's first byte
   * @param end one past its last byte
   * @returns whether there was such a range
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const t = heap.zalloc(16);
   * gc.addRoots(t, t + 16);
   * console.log(gc.removeRoots(t, t + 16)); // true
   * ```
   */
  removeRoots(start: number, end: number): boolean {
    this.checkAttached("GC_remove_roots");
    return this.heap.removeRoot(start, end - start);
  }

  /**
   * Pins an address a JavaScript variable holds: the object it points at (or into, with
   * interior pointers on) survives until the handle is disposed (with `using`, at the end of
   * the block).
   *
   * @param ptr the address
   * @returns the pin, `Disposable`
   * @throws {UmemError} `invalid-argument` for an address outside the heap
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * using p = gc.pin(gc.malloc(32));
   * console.log(gc.collect().objects); // 0
   * ```
   */
  pin(ptr: number): PinHandle {
    this.checkAttached("pin");
    return new PinHandle(this.heap, ptr);
  }

  // ---- finalization ----

  /**
   * Registers `fn` to run once `ptr` is unreachable (`GC_register_finalizer`); `null`
   * unregisters. An object reachable from another finalizable object is finalized after it
   * (in a later collection); finalizable objects on a cycle are never finalized and are
   * reported in `collect().cycles`. The function runs in this worker: right after a collection
   * this worker made, else at its next safe point or {@linkcode Collector.runFinalizers}.
   *
   * @param ptr an object's address
   * @param fn the finalizer, given the object's address (the object is still intact)
   * @throws {UmemError} `bad-free` when `ptr` is not the start of a live collector object
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.registerFinalizer(gc.malloc(16), (p) => console.log("finalized", p > 0));
   * gc.collect(); // finalized true
   * ```
   */
  registerFinalizer(ptr: number, fn: ((ptr: number) => void) | null): void {
    const h = this.heap;
    h.sync();
    if (h.i32[this.stateWord] !== WS_RUNNING) this.entry("GC_register_finalizer");
    if (fn !== null && typeof fn !== "function") {
      throw new UmemError(
        "invalid-argument",
        `GC_register_finalizer: finalizer for ${hex(ptr)} is a ${typeof fn} (expected a function ` +
          `or null)`,
        ptr,
      );
    }
    this.objectInfo(ptr, "GC_register_finalizer");
    const id = fn === null ? 0 : this.nextFn++;
    if (fn !== null) this.fns.set(id, fn);
    this.holding++;
    try {
      const was = setFinalizer(h, this.record, ptr, this.slot, id);
      if (was.slot === this.slot) this.fns.delete(was.fn);
    } catch (e) {
      this.fns.delete(id);
      throw e;
    } finally {
      this.holding--;
    }
  }

  /**
   * Runs this worker's finalizers that collections found ready (`GC_invoke_finalizers`).
   *
   * @returns how many ran
   * @throws the first error a finalizer threw, after running the others
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * console.log(gc.runFinalizers()); // 0
   * ```
   */
  runFinalizers(): number {
    this.checkAttached("GC_invoke_finalizers");
    const h = this.heap;
    h.sync();
    // The batch's objects stay roots until every function of it has run: a finalizer that
    // allocates or collects (or another worker's collection) frees none of them meanwhile.
    const depth = this.finalizing;
    this.holding++;
    let ready: [number, number][];
    try {
      ready = takeReady(h, this.record, this.slot, depth);
    } finally {
      this.holding--;
    }
    if (ready.length === 0) return 0;
    let first: unknown, failed = false;
    this.finalizing++;
    try {
      for (const [obj, id] of ready) {
        const fn = this.fns.get(id);
        this.fns.delete(id);
        try {
          fn?.(obj);
        } catch (e) {
          if (!failed) first = e;
          failed = true;
        }
      }
    } finally {
      this.finalizing--;
      this.holding++;
      try {
        finishBatch(h, this.record, this.slot, depth);
      } finally {
        this.holding--;
      }
    }
    if (failed) throw first;
    return ready.length;
  }

  // ---- collection ----

  /**
   * Collects now (`GC_gcollect`): stops every worker at a safe point, marks, finalizes,
   * sweeps, resumes, then runs this worker's ready finalizers. If another worker is
   * collecting, waits for it (parked) and then collects.
   *
   * @returns what the collection did
   * @throws {UmemError} `safepoint-timeout` when a worker did not reach a safe point in time
   *   (nothing was collected and every worker runs on)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * const a = gc.malloc(16), b = gc.malloc(16);
   * heap.i32[a >> 2] = b; // a cycle, unreachable
   * heap.i32[b >> 2] = a;
   * console.log(gc.collect().objects); // 2
   * ```
   */
  collect(): CollectResult {
    const h = this.heap;
    h.sync();
    this.checkAttached("GC_gcollect");
    this.checkSlot("GC_gcollect");
    const deadline = Date.now() + h.i32[(this.record + GC_PARK_TIMEOUT) >> 2];
    while (!tryBeginCollection(h, this.record, this.slot)) {
      if (!park(h, this.record, this.slot)) {
        if (Date.now() > deadline) {
          throw new UmemError(
            "safepoint-timeout",
            `GC_gcollect: the collection by another worker did not end in time`,
          );
        }
        Atomics.wait(h.i32, HDR_SAFEPOINT >> 2, 0, 1);
      }
    }
    const r = this.collectHolding("GC_gcollect");
    this.runFinalizers();
    return r;
  }

  /** Collects while holding `GC_BUSY`, which it gives back. */
  private collectHolding(fn: string): CollectResult {
    const h = this.heap, rec = this.record;
    const t0 = performance.now();
    this.foldPending();
    try {
      stopWorld(h, rec, this.slot, fn);
      // The world is stopped: every state byte must say what its buffer is (core/magazine.ts).
      settleAllDeferred(h);
    } catch (e) {
      endCollection(h, rec);
      throw e;
    }
    let result: CollectResult;
    try {
      h.sync();
      Atomics.store(h.i32, (rec + GC_PHASE) >> 2, PH_MARK);
      const flags = h.i32[(rec + GC_FLAGS) >> 2];
      const findLeaks = (flags & GCF_FINDLEAKS) !== 0;
      const m = new Marker(
        h,
        rec,
        h.i32[(rec + GC_MSTACK) >> 2],
        h.i32[(rec + GC_MSTACK_CAP) >> 2],
        (flags & GCF_BASEONLY) !== 0,
      );
      for (const [addr, bytes] of roots(h)) {
        m.candidate(addr);
        if (bytes > 0) m.scan(addr, addr + bytes);
        m.drain();
      }
      const n = h.i32[(rec + GC_NSLOTS) >> 2];
      for (let s = 0; s < n; s++) {
        const regs = rec + GC_SLOTS + s * GS_SIZE + GS_REGS;
        m.scan(regs, regs + GS_NREGS * 4);
      }
      m.drain();
      m.scanUncollectable();
      m.finish();
      this.holding++;
      let fin = { ready: 0, cycles: [] as number[] };
      try {
        if (!findLeaks) fin = findReady(h, rec, m);
      } finally {
        this.holding--;
      }
      const tMark = performance.now();
      Atomics.store(h.i32, (rec + GC_PHASE) >> 2, PH_SWEEP);
      const sw = sweep(
        m,
        (cp) => {
          const c = this.handleAt(cp);
          return (p) => c.free(p);
        },
        (cp) => this.handleAt(cp).name,
        findLeaks,
        (p) => largeFree(h, rec, this.oversize(), p),
      );
      const f64 = h.f64;
      if (!findLeaks) Atomics.sub(h.i32, (rec + GC_INUSE) >> 2, sw.bytes);
      Atomics.store(h.i32, (rec + GC_SINCE) >> 2, 0);
      const reclaimed = findLeaks ? 0 : sw.bytes;
      const pause = performance.now() - t0;
      f64[(rec + GC_COLLECTIONS) >> 3]++;
      f64[(rec + GC_LAST_PAUSE) >> 3] = pause;
      f64[(rec + GC_RECLAIMED) >> 3] = reclaimed;
      f64[(rec + GC_TOTAL_RECLAIMED) >> 3] += reclaimed;
      f64[(rec + GC_LAST_LIVE) >> 3] = m.bytes;
      f64[(rec + GC_LAST_MARK) >> 3] = tMark - t0;
      h.i32[(rec + GC_CYCLES) >> 2] = fin.cycles.length;
      if (m.rescans > 0) {
        h.i32[(rec + GC_OVERFLOWS) >> 2] += m.rescans;
        this.growMarkStack();
      }
      result = {
        objects: sw.objects,
        bytesReclaimed: sw.bytes,
        liveObjects: m.objects,
        liveBytes: m.bytes,
        pauseMs: pause,
        markMs: tMark - t0,
        finalizable: fin.ready,
        cycles: fin.cycles,
      };
      if (sw.leaks !== undefined) result.leaks = sw.leaks;
    } finally {
      Atomics.store(h.i32, (rec + GC_PHASE) >> 2, PH_IDLE);
      resumeWorld(h);
      endCollection(h, rec);
    }
    return result;
  }

  /** Doubles the mark stack after an overflow (the caller holds `GC_BUSY`). */
  private growMarkStack(): void {
    const h = this.heap, rec = this.record;
    const cap = h.i32[(rec + GC_MSTACK_CAP) >> 2];
    if (cap >= 1 << 24) return;
    let stack: number;
    try {
      stack = h.vmem.alloc(roundPage(cap * 16));
    } catch {
      return; // keep the small stack: overflows are handled, only slower
    }
    h.vmem.free(h.i32[(rec + GC_MSTACK) >> 2], roundPage(cap * 8));
    h.i32[(rec + GC_MSTACK) >> 2] = stack;
    h.i32[(rec + GC_MSTACK_CAP) >> 2] = cap * 2;
  }

  /**
   * The phase of the collection under way, if any (`idle`, `mark`, `sweep`, `finalize`).
   *
   * @returns the phase
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * let seen = "";
   * gc.registerFinalizer(gc.malloc(8), () => {
   *   seen = gc.phase();
   * });
   * gc.collect();
   * console.log(seen); // finalize
   * ```
   */
  phase(): GcPhase {
    if (this.finalizing > 0) return "finalize";
    return PHASES[Atomics.load(this.heap.i32, (this.record + GC_PHASE) >> 2)] ?? "idle";
  }

  /** Nonzero while this worker runs finalizers. */
  private finalizing = 0;

  // ---- safe points ----

  /**
   * A safe point: parks this worker while another collects, then runs this worker's ready
   * finalizers. Every `malloc` is one; a worker that computes for long without allocating
   * calls it, or {@linkcode Collector.leave}s.
   *
   * @throws {UmemError} `safepoint-timeout` when a collection does not end in time
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.safepoint();
   * ```
   */
  safepoint(): void {
    this.checkAttached("safepoint");
    const h = this.heap;
    park(h, this.record, this.slot);
    const nr = this.record + GC_SLOTS + this.slot * GS_SIZE + GS_NREADY;
    if (this.finalizing === 0 && Atomics.load(h.i32, nr >> 2) !== 0) this.runFinalizers();
  }

  /**
   * The way into an allocation when a stop is requested or this worker is not running: a
   * worker that left (or detached) may not allocate, since collections do not wait for it.
   */
  private entry(fn: string): void {
    this.checkAttached(fn);
    const state = Atomics.load(this.heap.i32, this.stateWord);
    if (state !== WS_RUNNING) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: worker ${this.slot} ${
          state === WS_NONE ? "detached its collector handle" : "left (call enter() first)"
        }`,
      );
    }
    this.safepoint();
  }

  /**
   * Declares that this worker will not touch collector objects until
   * {@linkcode Collector.enter}: collections do not wait for it (use it before waiting for a
   * message, or a long computation on other data).
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.leave();
   * gc.enter();
   * ```
   */
  leave(): void {
    this.checkAttached("GC_leave");
    leaveWorld(this.heap, this.record, this.slot);
  }

  /**
   * Comes back after {@linkcode Collector.leave}, waiting first for a collection under way.
   *
   * @throws {UmemError} `safepoint-timeout` when that collection does not end in time
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.leave();
   * gc.enter();
   * console.log(gc.malloc(8) > 0); // true
   * ```
   */
  enter(): void {
    this.checkAttached("GC_enter");
    this.checkSlot("GC_enter");
    enterWorld(this.heap, this.record, this.slot);
  }

  // ---- settings and figures ----

  /**
   * Limits the bytes of collector objects in use (`GC_set_max_heap_size`); an allocation
   * that would pass it collects first, then fails with `out-of-memory`. 0 removes the limit.
   * The limit is checked every `min(64 KiB, bytes / 16)` of each worker's allocation.
   *
   * @param bytes the limit, or 0
   * @throws {UmemError} `invalid-argument` for a negative or fractional size
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 8 << 20 });
   * const gc = Collector.create(heap);
   * gc.setMaxHeapSize(1 << 20);
   * const keep = gc.mallocUncollectable(8192);
   * try {
   *   for (let i = 0; i < 2048; i++) heap.i32[(keep >> 2) + i] = gc.malloc(1024);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // out-of-memory
   * }
   * ```
   */
  setMaxHeapSize(bytes: number): void {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > 0x7fffffff) {
      throw new UmemError(
        "invalid-argument",
        `GC_set_max_heap_size: ${bytes} (expected a whole number of bytes, 0 for no limit)`,
      );
    }
    Atomics.store(this.heap.i32, (this.record + GC_MAXHEAP) >> 2, bytes);
    this.updateFold();
  }

  /**
   * Sets the free-space divisor (`GC_set_free_space_divisor`): a collection is triggered
   * after `heapSize / divisor` bytes of allocation. Larger: more collections, a smaller heap.
   *
   * @param divisor a whole number from 1
   * @throws {UmemError} `invalid-argument` for anything else
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.setFreeSpaceDivisor(4);
   * ```
   */
  setFreeSpaceDivisor(divisor: number): void {
    if (!Number.isInteger(divisor) || divisor < 1 || divisor > 1 << 20) {
      throw new UmemError(
        "invalid-argument",
        `GC_set_free_space_divisor: ${divisor} (expected a whole number from 1)`,
      );
    }
    Atomics.store(this.heap.i32, (this.record + GC_DIVISOR) >> 2, divisor);
  }

  /**
   * Turns find-leak mode on or off (`GC_set_find_leak`).
   *
   * @param on whether collections report unreachable objects instead of freeing them
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.setFindLeaks(true);
   * gc.malloc(40); // lost
   * console.log(gc.collect().leaks?.total_buffers); // 1
   * ```
   */
  setFindLeaks(on: boolean): void {
    checkFlag("GC_find_leak", on);
    const at = (this.record + GC_FLAGS) >> 2;
    if (on) Atomics.or(this.heap.i32, at, GCF_FINDLEAKS);
    else Atomics.and(this.heap.i32, at, ~GCF_FINDLEAKS);
  }

  /**
   * Turns collections triggered by allocation volume on or off (`GC_enable`, `GC_disable`);
   * `collect()` always collects.
   *
   * @param on whether allocation may trigger a collection
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }), { auto: false });
   * gc.setAutoCollect(true);
   * ```
   */
  setAutoCollect(on: boolean): void {
    checkFlag("GC_enable", on);
    const at = (this.record + GC_FLAGS) >> 2;
    if (on) Atomics.and(this.heap.i32, at, ~GCF_MANUAL);
    else Atomics.or(this.heap.i32, at, GCF_MANUAL);
  }

  /**
   * Whether `ptr` is the start of an allocated collector object (of any kind).
   *
   * @param ptr an address
   * @returns true for a live object
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * const p = gc.malloc(8);
   * console.log(gc.isLive(p)); // true
   * gc.collect();
   * console.log(gc.isLive(p)); // false
   * ```
   */
  isLive(ptr: number): boolean {
    const h = this.heap;
    h.sync();
    const cp = cacheOf(h, ptr);
    if (cp === 0) return largeInfo(h, this.record, ptr) !== undefined;
    if (this.kindOfCache(cp) === KIND_NONE) return false;
    if (bufferOf(h, ptr, false) !== ptr) return false;
    const at = new Marker(h, this.record, 0, 0, true).stateAt(ptr);
    if (at < 0) return false;
    const st = h.u8[at] & ~BUF_MARK;
    // A free deferred by a slot (core/magazine.ts) leaves the state at allocated, flagged.
    return st === BUF_ALLOC ||
      (st === BUF_ALLOC_DEFER && bufferStateAt(h, cp, at, ptr) === BUF_ALLOC);
  }

  /**
   * The collector's figures (`GC_get_heap_size`, `GC_get_free_bytes`,
   * `GC_get_bytes_since_gc`, `GC_get_gc_no`, ...).
   *
   * @returns the figures
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * gc.malloc(32);
   * gc.collect();
   * const s = gc.stats();
   * console.log(s.collections, s.bytesReclaimed); // 1 32
   * ```
   */
  stats(): CollectorStats {
    const h = this.heap, rec = this.record;
    h.sync();
    const f = (off: number) => h.f64[(rec + off) >> 3];
    const heapSize = this.heapSize();
    const inUse = Atomics.load(h.i32, (rec + GC_INUSE) >> 2) + h.i32[this.pendingWord];
    return {
      heapSize,
      freeBytes: Math.max(0, heapSize - inUse),
      bytesSinceGC: Atomics.load(h.i32, (rec + GC_SINCE) >> 2) + h.i32[this.pendingWord],
      collections: f(GC_COLLECTIONS),
      lastPauseMs: f(GC_LAST_PAUSE),
      bytesReclaimed: f(GC_RECLAIMED),
      totalReclaimed: f(GC_TOTAL_RECLAIMED),
      liveBytes: f(GC_LAST_LIVE),
      lastMarkMs: f(GC_LAST_MARK),
      markStackOverflows: h.i32[(rec + GC_OVERFLOWS) >> 2],
      finalizers: Atomics.load(h.i32, (rec + GC_FINCOUNT) >> 2),
      finalizerCycles: h.i32[(rec + GC_CYCLES) >> 2],
    };
  }

  /**
   * Gives this worker's slot back to the collector: collections stop waiting for it, and the
   * finalizers it registered are forgotten (their functions go with the handle; their objects
   * are collected like any other). Call it before `heap.detach()`. A second call does nothing.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const heap = Heap.create({ size: 4 << 20 });
   * const gc = Collector.create(heap);
   * gc.detach();
   * const again = Collector.attach(heap);
   * again.detach();
   * ```
   */
  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.foldPending();
    if (this.heap.safepoint !== undefined) this.heap.safepoint = undefined;
    this.heap.pressure = undefined;
    // Its finalizers die with the handle (a handle attached later in this slot numbers its own
    // from 1 again): their objects are collected like any other, as a dead worker's are.
    dropSlotFinalizers(this.heap, this.record, this.slot);
    this.fns.clear();
    setSlotState(this.heap, this.record, this.slot, WS_NONE);
    // The fast paths test the state word alone: from now on they read the image's magic word,
    // never WS_RUNNING, so every call takes entry(), which refuses it, even after another
    // handle attaches in this slot and makes the slot's word WS_RUNNING again.
    this.stateWord = HDR_MAGIC >> 2;
  }

  /** Detaches at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.detach();
  }

  // ---- internals ----

  /**
   * Refuses a call from a worker whose slot the collector no longer counts (`Heap.reclaimSlot`,
   * or the heap handle detached): a collection from it would not be waited for, nor wait.
   * @throws {UmemError} `invalid-argument` naming `fn`
   */
  private checkSlot(fn: string): void {
    if (Atomics.load(this.heap.i32, this.stateWord) === WS_NONE) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: worker ${this.slot} detached its collector handle (its slot was given back)`,
      );
    }
  }

  /**
   * Refuses a call on a detached handle (its slot may have another handle now).
   * @throws {UmemError} `invalid-argument` naming `fn`
   */
  private checkAttached(fn: string): void {
    if (!this.attached) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: this collector handle of worker ${this.slot} was detached`,
      );
    }
  }

  /** Adds this worker's pending allocation bytes to the shared counters. */
  private foldPending(): void {
    const h = this.heap, pend = h.i32[this.pendingWord];
    if (pend === 0) return;
    h.i32[this.pendingWord] = 0;
    addSince(h, this.record, pend);
    Atomics.add(h.i32, (this.record + GC_INUSE) >> 2, pend);
  }

  /**
   * Takes the `bytes` of an allocation that will not happen back out of the shared counters
   * (the fold counted them before the allocation was tried).
   */
  private takeBack(bytes: number): void {
    Atomics.sub(this.heap.i32, (this.record + GC_INUSE) >> 2, bytes);
    addSince(this.heap, this.record, -bytes);
  }

  /**
   * Folds the pending bytes plus `extra` (the allocation about to be made) into the shared
   * counters; enforces the maximum heap size and triggers a collection when enough was
   * allocated.
   */
  private fold(extra: number, fn: string): void {
    const h = this.heap, rec = this.record;
    h.i32[this.pendingWord] += extra;
    this.foldPending();
    this.updateFold();
    const max = Atomics.load(h.i32, (rec + GC_MAXHEAP) >> 2);
    if (max !== 0 && Atomics.load(h.i32, (rec + GC_INUSE) >> 2) > max) {
      this.collectOrUndo(fn, extra);
      const inUse = Atomics.load(h.i32, (rec + GC_INUSE) >> 2);
      if (inUse > max) {
        this.takeBack(extra);
        throw new OutOfMemoryError(
          `${fn}: ${extra} more bytes would pass the maximum heap size of ${max} bytes (${
            inUse - extra
          } in use after a collection)`,
        );
      }
      return;
    }
    const ready = rec + GC_SLOTS + this.slot * GS_SIZE + GS_NREADY;
    if (this.finalizing === 0 && Atomics.load(h.i32, ready >> 2) !== 0) {
      try {
        this.runFinalizers();
      } catch (e) {
        this.takeBack(extra); // a finalizer threw: the allocation does not happen
        throw e;
      }
    }
    if ((h.i32[(rec + GC_FLAGS) >> 2] & GCF_MANUAL) !== 0) return;
    const since = Atomics.load(h.i32, (rec + GC_SINCE) >> 2);
    const trigger = Math.max(
      h.i32[(rec + GC_MIN_TRIGGER) >> 2],
      this.heapSize() / h.i32[(rec + GC_DIVISOR) >> 2],
    );
    if (since >= trigger) this.collectOrUndo(fn, extra);
  }

  /**
   * Collects (or waits for another worker's collection); if that fails, takes the bytes of the
   * allocation that will not happen back out of the counters before the error goes on.
   */
  private collectOrUndo(fn: string, extra: number): void {
    try {
      this.collectOrWait(fn);
    } catch (e) {
      this.takeBack(extra);
      throw e;
    }
  }

  /** Collects, or parks while another worker does. */
  private collectOrWait(fn: string): void {
    const h = this.heap;
    if (tryBeginCollection(h, this.record, this.slot)) {
      this.collectHolding(fn);
      this.runFinalizers();
    } else park(h, this.record, this.slot);
  }

  /** Sets the fold interval from the maximum heap size. */
  private updateFold(): void {
    const max = Atomics.load(this.heap.i32, (this.record + GC_MAXHEAP) >> 2);
    this.foldAt = max === 0 ? FOLD_BYTES : Math.max(8, Math.min(FOLD_BYTES, max >> 4));
  }

  /** Bytes of the slabs of every collector cache. */
  private heapSize(): number {
    const h = this.heap;
    let bytes = 0;
    for (let i = 0; i < KIND_COUNT * NCLASSES; i++) {
      const cp = h.i32[((this.record + GC_CLASSES) >> 2) + i];
      if (cp !== 0) bytes += h.f64[(cp + CA_SLABS) >> 3] * h.i32[(cp + CA_SLABSIZE) >> 2];
    }
    return bytes + Atomics.load(h.i32, (this.record + GC_LARGE_BYTES) >> 2);
  }

  /** The cache of kind `kind` and class `cls`, created by the first worker that needs it. */
  private cacheFor(kind: number, cls: number): Cache {
    const h = this.heap, rec = this.record;
    const slot = (rec + GC_CLASSES) + ((kind - 1) * NCLASSES + cls) * 4;
    let cp = Atomics.load(h.i32, slot >> 2);
    if (cp === 0) {
      this.holding++;
      lock(h, rec + GC_LOCK);
      try {
        cp = h.i32[slot >> 2];
        if (cp === 0) {
          const size = GC_SIZE_CLASSES[cls];
          const c = h.createCache(`${KIND_NAMES[kind]}_${size}`, size, { align: 8 });
          if (c.id >= KIND_TABLE_BYTES) {
            c.destroy();
            throw new OutOfMemoryError(
              `GC_malloc: cache id ${c.id} is past the collector's kind table (${KIND_TABLE_BYTES})`,
            );
          }
          h.u8[rec + GC_KINDS + c.id] = kind;
          Atomics.store(h.i32, slot >> 2, c.addr);
          cp = c.addr;
        }
      } finally {
        unlock(h, rec + GC_LOCK);
        this.holding--;
      }
    }
    const c = this.handleAt(cp);
    this.caches[kind][cls] = c;
    return c;
  }

  /** A handle on cache record `cp`. */
  private handleAt(cp: number): Cache {
    let c = this.byAddr.get(cp);
    if (c === undefined) {
      c = new Cache(this.heap, cp);
      this.byAddr.set(cp, c);
    }
    return c;
  }

  /** The kind of cache record `cp` (`KIND_*`). */
  private kindOfCache(cp: number): number {
    const id = this.heap.i32[(cp + CA_ID) >> 2];
    return id >= 0 && id < KIND_TABLE_BYTES ? this.heap.u8[this.record + GC_KINDS + id] : 0;
  }

  /**
   * The size and kind of the live collector object starting at `ptr`.
   * @throws {UmemError} `bad-free` when `ptr` is not the start of a live collector object
   */
  private objectInfo(ptr: number, fn: string): { bytes: number; kind: number } {
    const h = this.heap;
    const cp = cacheOf(h, ptr);
    if (cp === 0) {
      const large = typeof ptr === "number" ? largeInfo(h, this.record, ptr) : undefined;
      if (large === undefined) throw notObject(fn, ptr);
      return large;
    }
    const c = this.handleOf(ptr, fn);
    if (!this.isLive(ptr)) throw notLive(fn, ptr);
    return { bytes: h.i32[(c.addr + CA_BUFSIZE) >> 2], kind: this.kindOfCache(c.addr) };
  }

  /** The cache handle of the collector object starting at `ptr`; throws `bad-free` if none. */
  private handleOf(ptr: number, fn: string): Cache {
    const cp = cacheOf(this.heap, ptr);
    if (cp === 0 || this.kindOfCache(cp) === KIND_NONE) throw notObject(fn, ptr);
    return this.handleAt(cp);
  }
}

/**
 * Gives back the collector state of a worker that died or detached its heap without detaching
 * its collector handle (run by `Heap.reclaimSlot`): its pending bytes are folded in, its root
 * registers cleared, its finalizers forgotten, and collections stop waiting for it. If it died
 * in the middle of a collection, the mark bits it set are cleared and the world resumes.
 */
function reclaimCollectorSlot(h: HeapView, slot: number): void {
  const rec = moduleAnchor(h, MOD_GC);
  if (rec === 0 || rec >= h.mapped || h.i32[(rec + GC_MAGIC) >> 2] !== GC_MAGIC_VALUE) return;
  if (slot < 0 || slot >= h.i32[(rec + GC_NSLOTS) >> 2]) return;
  const gs = rec + GC_SLOTS + slot * GS_SIZE;
  if (Atomics.load(h.i32, (rec + GC_BUSY) >> 2) === slot + 1) {
    // The worker died collecting: clear the mark bits it set, and let the world go.
    const m = new Marker(h, rec, 0, 0, false);
    m.eachSlab((sb, cp) => {
      m.eachObject(sb, cp, BUF_ALLOC | BUF_MARK, (_p, _s, at) => {
        h.u8[at] = BUF_ALLOC;
      });
    });
    // ...and those of large objects, in their table entries: one left set is never scanned
    // again, and what it alone points to would be freed.
    m.eachLarge((_p, _size, _kind, e) => {
      h.i32[e + LO_W_MARK] = 0;
    });
    Atomics.store(h.i32, (rec + GC_PHASE) >> 2, PH_IDLE);
    resumeWorld(h);
    endCollection(h, rec);
  }
  if (Atomics.load(h.i32, (gs + GS_STATE) >> 2) === WS_NONE) return;
  const pend = h.i32[(gs + GS_PENDING) >> 2];
  addSince(h, rec, pend);
  Atomics.add(h.i32, (rec + GC_INUSE) >> 2, pend);
  h.i32.fill(0, (gs + GS_PENDING) >> 2, (gs + GS_SIZE) >> 2);
  dropSlotFinalizers(h, rec, slot);
  setSlotState(h, rec, slot, WS_NONE);
}
addSlotReclaimer(reclaimCollectorSlot);

/**
 * Adds `delta` to collector `rec`'s bytes allocated since the last collection (`GC_SINCE`),
 * kept in [0, 2^31 - 1]: past 2 GiB of allocation with no collection (`auto: false`, objects
 * freed explicitly) it stays at its most rather than wrapping negative, which stopped automatic
 * collection; a bytes' take-back after a collection reset it stops at 0.
 */
function addSince(h: HeapView, rec: number, delta: number): void {
  const at = (rec + GC_SINCE) >> 2;
  for (;;) {
    const v = Atomics.load(h.i32, at);
    const n = Math.min(0x7fffffff, Math.max(0, v + delta));
    if (Atomics.compareExchange(h.i32, at, v, n) === v) return;
  }
}

/** The keys of {@linkcode CollectorOptions}. */
const COLLECTOR_OPTION_KEYS = [
  "interior",
  "findLeaks",
  "freeSpaceDivisor",
  "minTrigger",
  "auto",
  "maxHeapSize",
  "stopTimeout",
  "parkTimeout",
  "markStack",
];

/** The error for an address that is no collector object at all. */
function notObject(fn: string, ptr: unknown): UmemError {
  return new UmemError(
    "bad-free",
    `${fn}: ${
      typeof ptr === "number" ? hex(ptr) : String(ptr)
    } is not an object of the collector (expected an address from GC_malloc)`,
    typeof ptr === "number" ? ptr : 0,
  );
}

/** The error for an address that is not the start of a live collector object. */
function notLive(fn: string, ptr: number): UmemError {
  return new UmemError(
    "bad-free",
    `${fn}: ${hex(ptr)} is not the start of a live collector object`,
    ptr,
  );
}

/** Rounds up to whole pages. */
function roundPage(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

/** The error for a bad allocation size. */
function badSize(fn: string, size: number): UmemError {
  return new UmemError(
    "invalid-argument",
    `${fn}: size ${size} (expected a whole number of bytes in 1..${LARGE_MAX})`,
  );
}
