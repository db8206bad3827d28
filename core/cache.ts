/**
 * Object caches: `umem_cache_create`, `umem_cache_alloc`, `umem_cache_free` as a handle class.
 *
 * A cache's state is all in the image (slab.ts, magazine.ts); a {@linkcode Cache} is a handle
 * holding the record's address and id, and the worker's callbacks live in the heap handle.
 * Another worker finds the same cache by name with `heap.cache(name, callbacks)`.
 *
 * @module
 */

import { hooksLive, runAllocHooks, runFreedHooks, runFreeHooks } from "./hooks.ts";
import { DBG_AUDIT, DBG_CONTENTS, DBG_CTLOG, DBG_GUARDS, DBG_TXLOG } from "./buftag.ts";
import { checkSize, OutOfMemoryError, UmemError } from "./errors.ts";
import {
  type CacheCallbacks,
  HDR_CACHE_LIST,
  HDR_DEBUG,
  HDR_META_ARENA,
  HDR_NSLOTS,
  HDR_UMEM_OPTIONS,
  type HeapView,
  PAGE_SIZE,
  UO_NOMAGAZINES,
} from "./image.ts";
import { checkEmptySlabs, debugAlloc, debugFree } from "./debug.ts";
import { auditsNext } from "./debug_quick.ts";
import { entryCaptureLimit, ErrorApi, keepPending, RAW_BY_ERROR, withPreStack } from "./stack.ts";
import { lock, unlock } from "./lock.ts";
import {
  cacheAlloc,
  cacheCounts,
  cachedRounds,
  cacheFree,
  cacheFreeChecked,
  cacheInUse,
  cacheReap,
  checkCacheId,
  cpuFlush,
  depotPurge,
  MAG_INITIAL_TYPE,
  MAG_ROUNDS,
  maxMagType,
} from "./magazine.ts";
import {
  CA_ALIGN,
  CA_BUF_MAX,
  CA_BUF_TOTAL,
  CA_BUFSIZE,
  CA_CHUNK,
  CA_CONTENTION,
  CA_DEBUG,
  CA_DEPOT_LOCK,
  CA_DEPOT_NEMPTY,
  CA_DEPOT_NFULL,
  CA_FAILS,
  CA_FLAGS,
  CA_ID,
  CA_MAGIC,
  CA_MAGIC_VALUE,
  CA_MAGROUNDS,
  CA_NAME_LEN,
  CA_NCHUNKS,
  CA_NEXT,
  CA_RESIZES,
  CA_SLAB_ALLOCS,
  CA_SLABS,
  CA_SLABSIZE,
  cacheName,
  cacheRecordSize,
  CF_HASCTOR,
  CF_HASDTOR,
  CF_INTERNAL,
  CF_NOMAGAZINE,
  CF_QCACHE,
  CF_TAGSTATE,
  layCache,
  slabDestroyAll,
  throwDtorError,
  unlinkCache,
} from "./slab.ts";
import { checkName, vmemAllocAddr, vmemFreeAddr } from "./vmem.ts";

/** Options of `heap.createCache`, as `umem_cache_create`'s arguments. */
export interface CacheOptions extends CacheCallbacks {
  /** Alignment of every buffer: a power of two up to a page (default 8, 16 for sizes ≥ 16). */
  align?: number;
  /** No magazine layer: constructors and destructors run on every alloc and free. */
  nomagazines?: boolean;
}

/** A cache's statistics, as `::umastat` shows them. */
export interface CacheStats {
  /** The cache's name. */
  name: string;
  /** Buffer size asked for. */
  bufsize: number;
  /** Alignment. */
  align: number;
  /** Bytes each buffer takes in its slab. */
  chunk: number;
  /** Bytes of a slab. */
  slabSize: number;
  /** Buffers per slab. */
  buffersPerSlab: number;
  /** Buffers allocated and not freed. */
  inUse: number;
  /** Buffers in all slabs (allocated, cached in magazines, or free). */
  total: number;
  /** The most buffers the cache ever had. */
  max: number;
  /** Slabs. */
  slabs: number;
  /** Successful allocations. */
  allocs: number;
  /** Frees. */
  frees: number;
  /** Failed allocations. */
  failures: number;
  /** Bytes of memory in the cache's slabs. */
  memoryInUse: number;
  /** Buffers constructed (taken from a slab). */
  constructed: number;
  /** Constructed buffers sitting in magazines (the slots' and the depot's). */
  cached: number;
  /** Rounds per magazine (0: no magazine layer). */
  magazineSize: number;
  /** Full and empty magazines in the depot. */
  depotFull: number;
  /** Empty magazines in the depot. */
  depotEmpty: number;
  /** Contended acquisitions of the depot lock. */
  depotContention: number;
  /** Times the magazine size grew. */
  magazineResizes: number;
}

const w = (h: HeapView, a: number) => h.i32[a >> 2];

/** The debugging flags a cache takes from the heap's. */
const CACHE_DEBUG_FLAGS = DBG_AUDIT | DBG_CONTENTS | DBG_GUARDS | DBG_TXLOG | DBG_CTLOG;
/** The fast paths as module constants, which V8 folds into callers (see heap.ts's `fastAlloc`). */
const fastAlloc = cacheAlloc, fastFree = cacheFreeChecked;

/**
 * Creates a cache record and returns its address. Checks everything first.
 * @throws {UmemError} `invalid-argument` for a bad name, size or alignment, or a name in use
 */
export function createCacheRecord(
  h: HeapView,
  name: string,
  size: number,
  options: CacheOptions,
  flags: number,
  source: number,
): number {
  const fn = "umem_cache_create";
  checkName(name, CA_NAME_LEN, fn); // before the record is taken: refused, nothing is
  if (typeof options !== "object" || options === null) {
    throw new UmemError("invalid-argument", `${fn}(${name}): options must be an object`);
  }
  if (options.nomagazines !== undefined && typeof options.nomagazines !== "boolean") {
    throw new UmemError("invalid-argument", `${fn}(${name}): nomagazines must be a boolean`);
  }
  checkSize(`${fn}(${name})`, "size", size, 1, 64 * PAGE_SIZE);
  const align = checkSize(
    `${fn}(${name})`,
    "align",
    options.align ?? (size >= 16 ? 16 : 8),
    1,
    PAGE_SIZE,
  );
  if ((align & (align - 1)) !== 0) {
    throw new UmemError("invalid-argument", `${fn}(${name}): align ${align} is not a power of two`);
  }
  for (const k of ["ctor", "dtor", "reclaim"] as const) {
    if (options[k] !== undefined && typeof options[k] !== "function") {
      throw new UmemError("invalid-argument", `${fn}(${name}): ${k} must be a function`);
    }
  }
  if (findCache(h, name) !== 0) {
    throw new UmemError("invalid-argument", `${fn}: a cache named '${name}' exists already`);
  }
  const bytes = cacheRecordSize(w(h, HDR_NSLOTS));
  const cp = vmemAllocAddr(h, w(h, HDR_META_ARENA), bytes);
  if (cp === 0) throw new OutOfMemoryError(`${fn}(${name}): no memory for the cache record`);
  const a = Math.max(align, 8);
  if (options.ctor !== undefined) flags |= CF_HASCTOR;
  if (options.dtor !== undefined) flags |= CF_HASDTOR;
  if (options.nomagazines === true) flags |= CF_NOMAGAZINE;
  const magtype = Math.min(MAG_INITIAL_TYPE, maxMagType(size));
  // Debugging applies to the caches users allocate from: not to magazines or quantum caches.
  const plain = (flags & CF_QCACHE) !== 0 ||
    ((flags & CF_INTERNAL) !== 0 && (flags & CF_NOMAGAZINE) !== 0);
  const debug = plain ? 0 : w(h, HDR_DEBUG) & CACHE_DEBUG_FLAGS;
  if (debug !== 0 && (flags & CF_INTERNAL) !== 0) flags |= CF_TAGSTATE; // (a size class)
  if (!plain && (w(h, HDR_UMEM_OPTIONS) & UO_NOMAGAZINES) !== 0) flags |= CF_NOMAGAZINE;
  try {
    // (layCache zeroes the record: no slot has a deferred free or a popped round.)
    layCache(h, cp, name, size, a, source, flags, magtype, MAG_ROUNDS[magtype], debug);
  } catch (e) {
    vmemFreeAddr(h, w(h, HDR_META_ARENA), cp, bytes);
    throw e;
  }
  h.callbacks[w(h, cp + CA_ID)] = {
    ctor: options.ctor,
    dtor: options.dtor,
    reclaim: options.reclaim,
  };
  return cp;
}

/**
 * Destroys cache `cp`: empties every slot's magazines and the depot (destructors run), gives
 * every slab back and frees the record. Returns the buffers that were still allocated.
 */
export function destroyCacheRecord(h: HeapView, cp: number): number {
  const id = w(h, cp + CA_ID);
  unlinkCache(h, cp);
  h.i32[(cp + CA_MAGIC) >> 2] = 0;
  const n = w(h, HDR_NSLOTS);
  if ((w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) === 0) {
    for (let s = 0; s < n; s++) cpuFlush(h, cp, s);
    lock(h, cp + CA_DEPOT_LOCK);
    try {
      depotPurge(h, cp);
    } finally {
      unlock(h, cp + CA_DEPOT_LOCK);
    }
  }
  const leaked = slabDestroyAll(h, cp);
  h.i32[(cp + CA_ID) >> 2] = 0;
  vmemFreeAddr(h, w(h, HDR_META_ARENA), cp, cacheRecordSize(n));
  h.callbacks[id] = undefined;
  return leaked;
}

/**
 * Checks the callbacks a worker registers for an existing cache (flags `flags`): an object of
 * functions, and no constructor or destructor the cache was created without (it would never
 * run: whether a cache constructs is fixed in its record when it is created).
 * @throws {UmemError} `invalid-argument` naming the callback
 */
export function checkCallbacks(fn: string, callbacks: unknown, flags: number): void {
  if (typeof callbacks !== "object" || callbacks === null) {
    throw new UmemError("invalid-argument", `${fn}: callbacks must be an object`);
  }
  const cb = callbacks as Record<string, unknown>;
  for (const k of ["ctor", "dtor", "reclaim"]) {
    if (cb[k] !== undefined && typeof cb[k] !== "function") {
      throw new UmemError("invalid-argument", `${fn}: ${k} must be a function`);
    }
  }
  if (cb.ctor !== undefined && (flags & CF_HASCTOR) === 0) {
    throw new UmemError("invalid-argument", `${fn}: the cache was created without a constructor`);
  }
  if (cb.dtor !== undefined && (flags & CF_HASDTOR) === 0) {
    throw new UmemError("invalid-argument", `${fn}: the cache was created without a destructor`);
  }
}

/** The address of the live cache named `name`, or 0. */
export function findCache(h: HeapView, name: string): number {
  for (let cp = w(h, HDR_CACHE_LIST); cp !== 0; cp = w(h, cp + CA_NEXT)) {
    if (w(h, cp + CA_MAGIC) === CA_MAGIC_VALUE && cacheName(h, cp) === name) return cp;
  }
  return 0;
}

/** Reads a cache's statistics from the image. */
export function cacheStats(h: HeapView, cp: number): CacheStats {
  const f = (field: number) => h.f64[(cp + field) >> 3];
  const nomag = (w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) !== 0;
  const { allocs, frees } = cacheCounts(h, cp);
  return {
    name: cacheName(h, cp),
    bufsize: w(h, cp + CA_BUFSIZE),
    align: w(h, cp + CA_ALIGN),
    chunk: w(h, cp + CA_CHUNK),
    slabSize: w(h, cp + CA_SLABSIZE),
    buffersPerSlab: w(h, cp + CA_NCHUNKS),
    inUse: cacheInUse(h, cp),
    total: f(CA_BUF_TOTAL),
    max: f(CA_BUF_MAX),
    slabs: f(CA_SLABS),
    allocs,
    frees,
    failures: f(CA_FAILS),
    memoryInUse: f(CA_SLABS) * w(h, cp + CA_SLABSIZE),
    constructed: f(CA_SLAB_ALLOCS),
    cached: nomag ? 0 : cachedRounds(h, cp),
    magazineSize: nomag ? 0 : w(h, cp + CA_MAGROUNDS),
    depotFull: w(h, cp + CA_DEPOT_NFULL),
    depotEmpty: w(h, cp + CA_DEPOT_NEMPTY),
    depotContention: w(h, cp + CA_CONTENTION),
    magazineResizes: f(CA_RESIZES),
  };
}

/**
 * An object cache: buffers of one size, constructed once and reused constructed, as
 * `umem_cache_t`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * let built = 0;
 * const points = heap.createCache("point", 16, {
 *   ctor: (h, p) => {
 *     built++;
 *     h.f64[p >> 3] = 0;
 *   },
 * });
 * const p = points.alloc();
 * points.free(p);
 * const q = points.alloc(); // the same buffer, still constructed
 * console.log(p === q, built); // true 1
 * points.free(q);
 * ```
 */
export class Cache {
  /** The heap. */
  readonly heap: HeapView;
  // (Numbers get a value where they are declared: see HeapView's fields.)
  /** The cache record's address. */
  readonly addr: number = 0;
  /** The cache's id: a handle on a destroyed cache notices it. */
  readonly id: number = 0;
  /** The word index of the record's `CA_ID`, which the fast paths compare with `id`. */
  private readonly idWord: number = 0;

  /**
   * Wraps a cache record. Use `heap.createCache` or `heap.cache` instead.
   * @param heap the heap
   * @param addr the cache record's address
   */
  constructor(heap: HeapView, addr: number) {
    this.heap = heap;
    this.addr = addr;
    this.id = w(heap, addr + CA_ID);
    this.idWord = (addr + CA_ID) >> 2;
  }

  /**
   * The cache's name.
   * @throws {UmemError} `destroyed` when the cache was destroyed
   */
  get name(): string {
    this.heap.sync();
    checkCacheId(this.heap, this.addr, this.id, "umem_cache_name");
    return cacheName(this.heap, this.addr);
  }

  /**
   * The size of its buffers.
   * @throws {UmemError} `destroyed` when the cache was destroyed
   */
  get bufsize(): number {
    this.heap.sync();
    checkCacheId(this.heap, this.addr, this.id, "umem_cache_bufsize");
    return w(this.heap, this.addr + CA_BUFSIZE);
  }

  /**
   * Allocates a constructed buffer, as `umem_cache_alloc`. The constructor runs only when a
   * buffer comes fresh from a slab, not when a freed one is reused.
   *
   * @returns the buffer's address
   * @throws {OutOfMemoryError} when no memory can be had or the constructor refused
   * @throws {UmemError} `destroyed` when the cache was destroyed
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("node", 32);
   * const p = c.alloc();
   * c.free(p);
   * ```
   */
  alloc(): number {
    const h = this.heap;
    // No sync(): see Heap.alloc. One test sends everything but a live cache on a heap that
    // neither debugs nor has hooks to allocOther: the fewer bytecodes here, the surer V8 is to
    // inline this with cacheAlloc into the caller's loop (the budget in magazine.ts).
    if (h.i32[this.idWord] !== this.id || h.intercepting === true) return this.allocOther() | 0;
    return fastAlloc(h, this.addr);
  }

  /** An allocation off the fast path: a stale handle or record, debugging, hooks. */
  private allocOther(): number {
    const h = this.heap;
    checkCacheId(h, this.addr, this.id, "umem_cache_alloc");
    return h.intercepting ? this.allocIntercepted() : cacheAlloc(h, this.addr);
  }

  /** An allocation on a heap that debugs or has hooks. */
  private allocIntercepted(): number {
    const h = this.heap, size = h.i32[(this.addr + CA_BUFSIZE) >> 2];
    const p = h.debugging && h.i32[(this.addr + CA_DEBUG) >> 2] !== 0
      ? debugAlloc(h, this.addr, size, this.alloc)
      : cacheAlloc(h, this.addr);
    if (hooksLive(h)) runAllocHooks(h, p, size, this.addr);
    return p;
  }

  /**
   * Frees a buffer to the cache, as `umem_cache_free`; it stays constructed.
   *
   * @param ptr a buffer this cache returned
   * @throws {UmemError} `bad-free` (not a buffer of any cache, or an interior address),
   *   `duplicate-free`, `wrong-cache`, `destroyed`
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("node", 32);
   * const p = c.alloc();
   * c.free(p);
   * try {
   *   c.free(p);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "duplicate-free"
   * }
   * ```
   */
  free(ptr: number): void {
    const h = this.heap;
    // No sync() here: a free of an address past this worker's views fails cacheFree's checks,
    // and cacheFreeSlow syncs before it reports (the budget of V8's inliner, magazine.ts); a
    // record past them fails the id test, and checkCacheId syncs.
    if (h.i32[this.idWord] !== this.id || h.checkedFast !== true) return this.freeOther(ptr);
    fastFree(h, this.addr, ptr, "umem_cache_free");
  }

  /** A free off the checked fast path: a stale handle or record, debugging, hooks, trust. */
  private freeOther(ptr: number): void {
    checkCacheId(this.heap, this.addr, this.id, "umem_cache_free");
    if (this.heap.intercepting) this.freeIntercepted(ptr);
    else cacheFree(this.heap, this.addr, ptr, "umem_cache_free");
  }

  /** A free on a heap that debugs or has hooks. */
  private freeIntercepted(ptr: number): void {
    this.heap.sync();
    const h = this.heap, size = h.i32[(this.addr + CA_BUFSIZE) >> 2];
    const live = hooksLive(h);
    if (live) runFreeHooks(h, ptr, size, this.addr);
    if (h.debugging && h.i32[(this.addr + CA_DEBUG) >> 2] !== 0) {
      debugFree(h, this.addr, ptr, -1, "umem_cache_free", this.free);
    } else cacheFree(h, this.addr, ptr, "umem_cache_free");
    if (live) runFreedHooks(h, ptr, size, this.addr);
  }

  /**
   * The cache's statistics.
   *
   * @returns buffer size, buffers in use, total and max, slabs, allocs, frees, failures, memory
   *   and magazine figures
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("node", 32);
   * c.alloc();
   * console.log(c.stats().inUse); // 1
   * ```
   */
  stats(): CacheStats {
    this.heap.sync();
    checkCacheId(this.heap, this.addr, this.id, "umem_cache_stats");
    return cacheStats(this.heap, this.addr);
  }

  /**
   * Gives memory back, as a reap does: this worker's magazines are emptied, the depot purged
   * (destructors run) and slabs with no buffer in use returned to vmem.
   *
   * @returns the bytes returned to vmem
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("node", 32);
   * c.free(c.alloc());
   * console.log(c.reap()); // 4096
   * ```
   */
  reap(): number {
    const h = this.heap;
    h.sync();
    checkCacheId(h, this.addr, this.id, "umem_cache_reap");
    const bad = checkEmptySlabs(h, this.addr);
    const bytes = cacheReap(h, this.addr);
    if (bad !== undefined) throw bad;
    throwDtorError(h);
    return bytes;
  }

  /**
   * Destroys the cache, as `umem_cache_destroy`: every slot's magazines and the depot are
   * emptied (destructors run), every slab goes back to vmem. Buffers still allocated are lost;
   * their number is returned. Other workers must have stopped using the cache.
   *
   * @returns the number of buffers that were still allocated
   * @throws {UmemError} `invalid-argument` for one of the heap's own caches, or when a buffer
   *   of the cache is held by an `Owned` handle (`own`: drop it first)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("tmp", 64);
   * c.alloc();
   * console.log(c.destroy()); // 1
   * ```
   */
  destroy(): number {
    const h = this.heap, cp = this.addr;
    h.sync();
    checkCacheId(h, cp, this.id, "umem_cache_destroy");
    if ((w(h, cp + CA_FLAGS) & (CF_INTERNAL | CF_QCACHE)) !== 0) {
      throw new UmemError(
        "invalid-argument",
        `umem_cache_destroy(${this.name}): the heap's own caches and quantum caches cannot be destroyed`,
      );
    }
    for (const veto of h.destroyVetoes) veto(cp);
    const leaked = destroyCacheRecord(h, cp);
    throwDtorError(h); // after the destroy is complete: a destructor's error stops none of it
    return leaked;
  }
}

/**
 * The handle of a cache of a heap that audits (`UMEM_DEBUG=audit`): its `alloc` and `free`
 * capture an audited transaction's stack themselves, first thing, as heap.ts's `AuditingHeap`
 * does, so that V8 walks none of umem's frames; everything else is {@linkcode Cache}'s.
 */
class AuditingCache extends Cache {
  /**
   * See {@linkcode cacheHandle}, which makes it.
   * @param heap the heap
   * @param addr the cache record's address
   */
  constructor(heap: HeapView, addr: number) {
    super(heap, addr);
  }

  /** `umem_cache_alloc`, its stack captured here when it is audited. */
  override alloc(): number {
    const h = this.heap;
    if (!auditsNext(h)) return super.alloc() | 0;
    const limit = ErrorApi.stackTraceLimit;
    ErrorApi.stackTraceLimit = entryCaptureLimit(h);
    const holder = RAW_BY_ERROR ? new Error() : {};
    if (!RAW_BY_ERROR) ErrorApi.captureStackTrace(holder, AuditingCache.prototype.alloc);
    ErrorApi.stackTraceLimit = limit;
    return withPreStack(h, keepPending(h, holder), () => super.alloc()) | 0;
  }

  /** `umem_cache_free`, its stack captured here when it is audited. */
  override free(ptr: number): void {
    const h = this.heap;
    if (!auditsNext(h)) return super.free(ptr);
    const limit = ErrorApi.stackTraceLimit;
    ErrorApi.stackTraceLimit = entryCaptureLimit(h);
    const holder = RAW_BY_ERROR ? new Error() : {};
    if (!RAW_BY_ERROR) ErrorApi.captureStackTrace(holder, AuditingCache.prototype.free);
    ErrorApi.stackTraceLimit = limit;
    withPreStack(h, keepPending(h, holder), () => super.free(ptr));
  }
}

/**
 * A handle on cache record `cp` of the class it calls for: an {@linkcode AuditingCache} when the
 * cache audits (its debugging is the heap's, fixed when the record was laid; umem's own caches
 * have none), else a {@linkcode Cache}.
 */
export function cacheHandle(h: HeapView, cp: number): Cache {
  return (h.i32[(cp + CA_DEBUG) >> 2] & DBG_AUDIT) !== 0
    ? new AuditingCache(h, cp)
    : new Cache(h, cp);
}
