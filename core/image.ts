/**
 * The heap image: the layout of the header page and the typed-array views over the buffer.
 *
 * Theory. The whole allocator lives in one SharedArrayBuffer (DESIGN.md, principle 1). The
 * first pages are the *metadata area*: the header (magic, version, sizes, flags and the offsets
 * of every root structure), the worker slot table, the root arena's record, the page map (one
 * word per page, naming the slab that owns the page) and the first chunk of vmem segment
 * records. Everything after the metadata area belongs to the root arena.
 *
 * Invariants.
 * - `HDR_SIZE` is the number of bytes of the buffer the heap uses; it only grows, and it is
 *   written (with `Atomics.store`) after the buffer has grown, so a reader that sees it may
 *   map that many bytes.
 * - Every root offset lies inside the metadata area and is 8-aligned; `Heap.attach` checks them
 *   all before it reads anything else.
 * - A {@linkcode HeapView}'s views cover exactly `mapped` bytes. Views are fixed-length (V8
 *   compiles fixed-length views over a growable buffer several times faster than
 *   length-tracking ones), so every entry point calls `sync()`, one load and one compare, and
 *   a contended lock acquisition re-syncs; but for the alloc and free fast paths (V8's inlining
 *   budget, magazine.ts): a round of the slot's own magazine lies inside its views (the slow
 *   paths that bring buffers in sync), and a free of an address past them fails the checks and
 *   syncs before it reports. A worker that is handed an address by another calls `sync()`
 *   before it reads the bytes there.
 * - Addresses are byte offsets below 2 GiB, so they are non-negative int32 values.
 *
 * @module
 */

import type { HeapHook } from "./hooks.ts";
import type { PendingStacks } from "./stack.ts";
import { CorruptImageError, hex, UmemError } from "./errors.ts";

/** "UMEM" as a little-endian word. */
export const HDR_MAGIC_VALUE = 0x4d454d55;
/**
 * The image format version this code reads and writes. 4: a slot record's `CC_LAST` may hold a
 * popped round (negative), no cache marks itself as never deferring (-1), and a deferred buffer
 * holds no stamp (magazine.ts). 5: a debugged buffer's check word names its cache too
 * (buftag.ts), and a debugged size class's state bytes say `BUF_ALLOC_TAGGED` for every buffer
 * out of its slab (slab.ts's `CF_TAGSTATE`).
 */
export const FORMAT_VERSION = 5;
/** The page size: the quantum of the root arena, the unit of slabs and of the page map. */
export const PAGE_SIZE = 4096;
/** log2 of {@linkcode PAGE_SIZE}. */
export const PAGE_SHIFT = 12;
/** The largest image: addresses stay non-negative int32 values. */
export const MAX_IMAGE = 0x80000000 - PAGE_SIZE;
/** The most worker slots an image can have. */
export const MAX_SLOTS = 64;

// Header fields (byte offsets into page 0). Words unless noted.
/** Magic word, {@linkcode HDR_MAGIC_VALUE}. */
export const HDR_MAGIC = 0;
/** Format version. */
export const HDR_VERSION = 4;
/** Page size in bytes. */
export const HDR_PAGESIZE = 8;
/** Bytes of the buffer in use by the heap (grows). */
export const HDR_SIZE = 12;
/** Largest size the heap may grow to. */
export const HDR_MAXSIZE = 16;
/** Heap flags (`HF_*`). */
export const HDR_FLAGS = 20;
/** Bytes of the metadata area; the root arena's span starts here. */
export const HDR_META = 24;
/** Number of worker slots. */
export const HDR_NSLOTS = 28;
/** Offset of the root arena record. */
export const HDR_ROOT_ARENA = 32;
/** Offset of the page map. */
export const HDR_PAGEMAP = 36;
/** Lock of the vmem segment-record pool. */
export const HDR_SEG_LOCK = 40;
/** Head of the free segment-record list. */
export const HDR_SEG_FREE = 44;
/** Free segment records. */
export const HDR_SEG_NFREE = 48;
/** All segment records ever carved. */
export const HDR_SEG_TOTAL = 52;
/** Lock of the arena list. */
export const HDR_ARENA_LOCK = 56;
/** Head of the arena list (linked through `VM_NEXT`). */
export const HDR_ARENA_LIST = 60;
/** Lock of the cache list. */
export const HDR_CACHE_LOCK = 64;
/** Head of the cache list. */
export const HDR_CACHE_LIST = 68;
/** Lock of the worker slot table. */
export const HDR_SLOT_LOCK = 72;
/** Offset of the worker slot table. */
export const HDR_SLOTS = 76;
/** Lock timeout in milliseconds. */
export const HDR_LOCK_TIMEOUT = 80;
/** Offset of the size-class table (0 until the slab layer lays it). */
export const HDR_SIZE_TABLE = 84;
/** Address of the oversize arena (0 until the slab layer creates it). */
export const HDR_OVERSIZE = 88;
/**
 * `UMEM_OPTIONS=allocator=`: the fit policy of the top arena (`heap.vmem`) for allocations
 * that name none (vmem.ts's `POLICY_DEFAULT`), a vmem `POLICY_*` code (0, instant fit, in
 * images from before it).
 */
export const HDR_ALLOCATOR = 92;
/** Creation time, milliseconds since the epoch (float64). */
export const HDR_CREATED = 96;
/** Next cache id (a cache handle remembers its id to notice a destroyed cache). */
export const HDR_NEXT_CACHE_ID = 104;
/** Address of the metadata arena (cache records, hash tables). */
export const HDR_META_ARENA = 108;
/** Last arena id handed out. */
export const HDR_NEXT_ARENA_ID = 112;
/** Number of magazine caches. */
export const HDR_NMAGTYPES = 116;
/** Bytes the heap's arena gave to vmem's own records: segment pages, hash tables, arenas. */
export const HDR_META_BYTES = 120;
/**
 * `UMEM_OPTIONS=reap_interval=`: seconds of a cache's update interval, in which more depot
 * contention than `max_contention` grows its magazines (0: the default, 1 s).
 */
export const HDR_REAP_INTERVAL = 124;
/** Addresses of the magazine caches, one per magazine type (8 words). */
export const HDR_MAG_CACHES = 128;
/** `DBG_*` flags of `UMEM_DEBUG` and `UMEM_LOGGING`. */
export const HDR_DEBUG = 160;
/** Audit stack depth. */
export const HDR_AUDIT_FRAMES = 164;
/** Audit sampling: 1 stack in this many transactions. */
export const HDR_AUDIT_SAMPLE = 168;
/** Bytes of each freed buffer saved in the contents log. */
export const HDR_CONTENTS_BYTES = 172;
/** Check at most this many bytes of a freed buffer (0: all). */
export const HDR_MAXVERIFY = 176;
/** Buffers of at least this many bytes are firewalled (0: off). */
export const HDR_FIREWALL = 180;
/** Address of the stack table (0: none). */
export const HDR_STACKS = 184;
/** Transaction log ring (address). */
export const HDR_TXLOG = 188;
/** Contents log ring (address). */
export const HDR_CTLOG = 192;
/** Failure log ring (address). */
export const HDR_FAILLOG = 196;
/** Heap corruption reports raised so far. */
export const HDR_ERRORS = 200;
/**
 * `UMEM_DEBUG=mtbf=n`: the mean number of allocations between injected failures, read only
 * while `DBG_MTBF` is set (images from before it may hold an old shared count of transactions
 * for audit sampling here; see WS_AUDIT_LEFT).
 */
export const HDR_MTBF = 204;
/** Firewall quarantine ring (address). */
export const HDR_QUARANTINE = 208;
/** `UO_*` flags of `UMEM_OPTIONS`. */
export const HDR_UMEM_OPTIONS = 212;
/**
 * `UMEM_OPTIONS=max_contention`: depot contention that grows magazines (0: the default; -1:
 * an explicit 0, so any contention grows them; magazine.ts's `maxContention`).
 */
export const HDR_MAX_CONTENTION = 216;
/** Address of the root table (`RT_*`): root words, ranges and pinned addresses. */
export const HDR_ROOTS = 220;
/** Lock of the root table (here, so that it stays put when the table grows). */
export const HDR_ROOT_LOCK = 224;
/**
 * Module anchors: {@linkcode MOD_COUNT} words, one per module above the core (`MOD_*`), each
 * the address of that module's root record in the heap (0: none yet), set once with
 * compare-and-swap so that every worker finds the same record.
 */
export const HDR_MODULES = 228;
/** Safe-point request word of the collector (0: none); the core's slow paths look at it. */
export const HDR_SAFEPOINT = 252;
/** Number of header bytes that hold fields; the slot table follows. */
export const HDR_FIELDS_END = 256;

/** Anchor index of the `region` module. */
export const MOD_REGION = 0;
/** Anchor index of the `gc` module. */
export const MOD_GC = 1;
/** Anchor index of the `own` module. */
export const MOD_OWN = 2;
/** Anchor index of the `profile` module. */
export const MOD_PROFILE = 3;
/** Anchor index of the `sbo` module. */
export const MOD_SBO = 4;
/** Number of module anchors. */
export const MOD_COUNT = 6;

/** `UMEM_OPTIONS=nomagazines`: user caches have no magazine layer. */
export const UO_NOMAGAZINES = 1;

/** Heap flag: skip the cheap checks on free (Vmalloc's VM_TRUST). */
export const HF_TRUST = 1;
/** Heap flag: never fail an allocation; reclaim, grow, then call the nofail callback. */
export const HF_NOFAIL = 2;

// Worker slot table: one record per slot.
/** Slot state word: `SLOT_FREE`, `SLOT_LIVE`. */
export const WS_STATE = 0;
/** Generation: how many times the slot has been taken. */
export const WS_GEN = 4;
/**
 * Audit sampling (`UMEM_DEBUG=audit=frames/rate`): this worker's transactions left until the
 * next audited one, 1 or less meaning the next. Only the slot's worker touches it, so sampling
 * costs no atomic operation and workers do not contend for one counter.
 */
export const WS_AUDIT_LEFT = 8;
/** Size of a slot record. */
export const WS_SIZE = 16;
/** A free slot. */
export const SLOT_FREE = 0;
/** A slot held by a live worker. */
export const SLOT_LIVE = 1;
/** A slot whose worker died and whose magazines are being (or could not be) given back. */
export const SLOT_DEAD = 2;

/** Offset of the root arena record in page 0. */
export const ROOT_ARENA_OFFSET = 2048;

/** Options of a new image. */
export interface ImageOptions {
  /** Initial bytes (rounded up to pages). */
  size: number;
  /** Largest bytes the buffer may grow to. */
  maxSize: number;
  /** Worker slots. */
  slots: number;
  /** Lock timeout in ms. */
  lockTimeout: number;
  /** Heap flags. */
  flags: number;
}

/** The callbacks a worker registers for a cache: functions cannot live in the buffer. */
export interface CacheCallbacks {
  /**
   * Constructs a buffer; returning `false` refuses it and the allocation fails; throwing fails
   * it too, the error going on (either way the buffer goes back to its slab).
   */
  ctor?: (heap: HeapView, ptr: number) => boolean | void;
  /**
   * Destroys a constructed buffer. One that throws stops nothing: the buffer goes back to its
   * slab and the purge, reap or destroy that ran it completes; the first error is thrown when
   * that call returns (by the next free, reap, destroy or detach when an allocation ran it).
   */
  dtor?: (heap: HeapView, ptr: number) => void;
  /** Asked to give memory back before an allocation fails. */
  reclaim?: () => void;
}

/**
 * The records of the list whose head is the header word at `head`, each linked through its word
 * at offset `next`: up to a link out of the image or not word-aligned, or back to a record listed
 * already (a damaged image's list ends, and none is listed twice). `broken`, when given, hears the
 * link the walk stopped at and whether it looped. The cache and arena lists' one walk, for the
 * readers that must not trust them: verify, the inspector, a snapshot's locks.
 *
 * @param h the heap or image
 * @param head the header word holding the list's first record
 * @param next the offset of each record's link
 * @param broken told of a link out of bounds, or of one that loops
 * @returns the records, in list order
 */
export function listRecords(
  h: HeapView,
  head: number,
  next: number,
  broken?: (at: number, looped: boolean) => void,
): number[] {
  const seen = new Set<number>();
  for (let a = h.i32[head >> 2]; a !== 0; a = h.i32[(a + next) >> 2]) {
    const looped = seen.has(a);
    if (looped || !(a > 0 && (a & 3) === 0 && a + next + 4 <= h.mapped)) {
      broken?.(a, looped);
      break;
    }
    seen.add(a);
  }
  return [...seen];
}

/**
 * Typed-array views over one heap image, and the worker slot this handle acts as.
 * The allocator's layers are functions over a `HeapView`; `Heap` is the public handle, and
 * every `Heap` is one: its `u8`, `i32`, `u32` and `f64` views read and write the heap's bytes.
 *
 * @example
 * ```ts
 * import { Heap, HeapView } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * const p = heap.alloc(8);
 * heap.f64[p >> 3] = 1.5;
 * console.log(heap instanceof HeapView, heap.f64[p >> 3]); // true 1.5
 * ```
 */
export class HeapView {
  /** The shared buffer. */
  readonly sab: SharedArrayBuffer;
  /** Byte view. */
  u8: Uint8Array;
  /** Signed word view. */
  i32: Int32Array;
  /** Unsigned word view. */
  u32: Uint32Array;
  /** Float64 view (counters). */
  f64: Float64Array;
  // Numbers and booleans get a value where they are declared. A field declared without one is
  // first defined as undefined (class-field semantics), and V8 then keeps it as a tagged field
  // whose every load on a fast path checks a Smi's tag. (Booleans are compared with `true` on
  // the fast paths, whatever their first value: see heap.ts's alloc.)
  /** Bytes covered by the views. */
  mapped = 0;
  /** This handle's worker slot. */
  slot = 0;
  /** Set while the segment pool refills, so that the refill does not recurse. */
  refilling = false;
  /** Offset of this slot's per-worker cache inside a cache record (`CA_CPU + slot * CC_SIZE`). */
  ccOff = 0;
  /** Word index of this slot's `WS_AUDIT_LEFT` (0 in a handle that takes no slot). */
  auditLeft = 0;
  /** Offset of the page map. */
  pagemap = 0;
  /** The heap was opened with `trust`: frees are not checked. */
  trust = false;
  /** This worker's constructors, destructors and reclaim callbacks, by cache id. */
  callbacks: (CacheCallbacks | undefined)[] = [];
  /** This worker's raw stacks already interned, to their ids. */
  stackIds: Map<string, number> = new Map();
  /**
   * This worker's stacks captured and not yet interned (`stack.ts`), made at the first.
   * @ignore
   */
  pending: PendingStacks | undefined = undefined;
  /**
   * The heap debugs or logs transactions (a `DBG_LAYER` flag): sized alloc and free take the
   * debug path.
   */
  debugging = false;
  /**
   * Walks under way that list problems rather than report them (`verify()`): while above 0, a
   * report does not abort the process (debug.ts's `report`).
   */
  collecting = 0;
  /**
   * The largest size whose sized alloc and free take the debug fast path (`debug_quick.ts`):
   * nonzero when the heap's only debugging is what that path serves (guards, contents, sampled
   * audit: debug_quick.ts's servesQuick).
   */
  debugQuick = 0;
  /** `debugging`, or a hook is attached: the sized alloc and free take the slow path. */
  intercepting = false;
  /** Neither `intercepting` nor `trust`: `heap.free` and `Cache.free` take the checked fast path. */
  checkedFast = false;
  /**
   * The size table's word index while `checkedFast` (0 otherwise, and before a new image has
   * its table): `heap.libc`'s fast paths test this one word for both.
   */
  checkedTab = 0;
  /**
   * Sized transactions are audited with a stack (`UMEM_DEBUG=audit`) and no hook is attached:
   * the audited handles' `alloc` and `free` (heap.ts's `AuditingHeap`, cache.ts's
   * `AuditingCache`) and the debug fast path's ways out capture an audited one's stack
   * themselves, at or a few frames below the user's, into `preStack`, rather than the audit
   * record's writer farther down (capturing costs per frame walked).
   */
  auditEntry = false;
  /**
   * Auditing is sampled (`audit=frames/rate`): a transaction is audited when this slot's
   * `WS_AUDIT_LEFT` is at 1 or below.
   */
  auditSampled = false;
  /** The pending stack captured for the transaction under way (`auditEntry`), or 0. */
  preStack = 0;
  /**
   * The pending stack an outer public entry point captured (`zalloc`, libc's `malloc`,
   * `calloc`, `realloc`, `free`, `memalign` on an audited handle), or 0: every transaction it
   * makes is recorded with it (a realloc's alloc and free both), so that the frames of the
   * entry points inside it take none of the audit depth.
   */
  entryStack = 0;
  /** This worker's heap hooks (`core/hooks.ts`). */
  hooks: HeapHook[] = [];
  /**
   * Checks run before `Cache.destroy` gives a cache's memory back (the cache record's address);
   * one that throws refuses the destroy, with nothing changed: `own` keeps a tracked buffer from
   * being lost under its handle. Not hooks: they slow no fast path.
   */
  destroyVetoes: ((cache: number) => void)[] = [];
  /** Nesting of calls whose own hooks stand for the sized calls inside them (libc). */
  hookDepth = 0;
  /**
   * A destructor threw while the allocator ran it in the middle of its own work (a purge, a
   * flush, a destroy): the buffer went back to its slab regardless, the work went on, and the
   * first such error waits here for the public call to complete (slab.ts's `throwDtorError`).
   */
  dtorFailed = false;
  /** The first error a destructor threw (see `dtorFailed`). */
  dtorError: unknown = undefined;
  /** This worker's nofail callback. */
  nofail: (() => "retry" | number) | undefined = undefined;
  /**
   * A module's own reclaim under memory pressure (the collector collects, as Boehm's collects
   * before it gives up): called first by magazine.ts's `reclaimAll`, with no lock held, when an
   * allocation finds no memory.
   */
  pressure: (() => void) | undefined = undefined;
  /**
   * This worker's safe-point handler (set by the collector, `gc/`): the allocation slow path
   * calls it when `HDR_SAFEPOINT` is nonzero, and it parks until the collection ends.
   */
  safepoint: (() => void) | undefined = undefined;

  /**
   * Maps views over the image for one worker slot.
   *
   * @param sab the image
   * @param slot this handle's worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    this.sab = sab;
    this.slot = slot;
    const probe = new Uint32Array(sab, 0, HDR_FIELDS_END >> 2);
    const size = Atomics.load(probe, HDR_SIZE >> 2);
    this.mapped = size;
    this.u8 = new Uint8Array(sab, 0, size);
    this.i32 = new Int32Array(sab, 0, size >> 2);
    this.u32 = new Uint32Array(sab, 0, size >> 2);
    this.f64 = new Float64Array(sab, 0, size >> 3);
    this.pagemap = probe[HDR_PAGEMAP >> 2];
    this.trust = (probe[HDR_FLAGS >> 2] & HF_TRUST) !== 0;
  }

  /** Maps the whole heap again after it grew. */
  remap(): void {
    const size = Atomics.load(this.u32, HDR_SIZE >> 2);
    if (size === this.mapped) return;
    this.mapped = size;
    this.u8 = new Uint8Array(this.sab, 0, size);
    this.i32 = new Int32Array(this.sab, 0, size >> 2);
    this.u32 = new Uint32Array(this.sab, 0, size >> 2);
    this.f64 = new Float64Array(this.sab, 0, size >> 3);
  }

  /**
   * Re-maps if another worker grew the heap. One load and one compare. Call it before reading
   * an address another worker handed over: the alloc and free fast paths do not.
   */
  sync(): void {
    if (this.u32[HDR_SIZE >> 2] !== this.mapped) this.remap();
  }
}

/**
 * The bytes of `sab` a heap image says it uses (`HDR_SIZE`, at most the buffer's length; with
 * `backend=mmap` the buffer is longer), or 0 for a buffer too short for a header. For readers
 * handed a bare buffer, who must not read past the heap.
 */
export function imageSize(sab: SharedArrayBuffer): number {
  if (sab.byteLength < HDR_FIELDS_END) return 0;
  const size = Atomics.load(new Int32Array(sab, 0, HDR_FIELDS_END >> 2), HDR_SIZE >> 2);
  return size > 0 && size <= sab.byteLength ? size : 0;
}

/** Rounds `n` up to a multiple of the power of two `a`. */
export function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Size of the page map for a heap of at most `maxSize` bytes, rounded to pages. */
export function pageMapBytes(maxSize: number): number {
  return roundUp((maxSize / PAGE_SIZE) * 4, PAGE_SIZE);
}

/**
 * Lays a fresh header into `sab` and returns the end of the metadata area, where the root arena
 * begins. The page before it is the first chunk of segment records. The root arena record
 * itself is laid by vmem.
 */
export function layHeader(sab: SharedArrayBuffer, o: ImageOptions): number {
  const u32 = new Uint32Array(sab, 0, PAGE_SIZE >> 2);
  const f64 = new Float64Array(sab, 0, PAGE_SIZE >> 3);
  const pagemap = PAGE_SIZE;
  // The last page of the metadata area is the first chunk of vmem segment records.
  const meta = pagemap + pageMapBytes(o.maxSize) + PAGE_SIZE;
  u32[HDR_MAGIC >> 2] = HDR_MAGIC_VALUE;
  u32[HDR_VERSION >> 2] = FORMAT_VERSION;
  u32[HDR_PAGESIZE >> 2] = PAGE_SIZE;
  u32[HDR_MAXSIZE >> 2] = o.maxSize;
  u32[HDR_FLAGS >> 2] = o.flags;
  u32[HDR_META >> 2] = meta;
  u32[HDR_NSLOTS >> 2] = o.slots;
  u32[HDR_ROOT_ARENA >> 2] = ROOT_ARENA_OFFSET;
  u32[HDR_PAGEMAP >> 2] = pagemap;
  u32[HDR_SLOTS >> 2] = HDR_FIELDS_END;
  u32[HDR_LOCK_TIMEOUT >> 2] = o.lockTimeout;
  f64[HDR_CREATED >> 3] = Date.now();
  Atomics.store(u32, HDR_SIZE >> 2, o.size);
  return meta;
}

/**
 * Checks that `sab` holds a umem image this code can read: magic, version, page size, sizes and
 * every root offset. Throws {@linkcode CorruptImageError} naming the first thing wrong.
 */
export function checkHeader(sab: unknown): void {
  if (!(sab instanceof SharedArrayBuffer)) {
    throw new UmemError(
      "invalid-argument",
      `Heap.attach: expected a SharedArrayBuffer, got ${
        sab === null ? "null" : typeof sab === "object" ? sab.constructor?.name : typeof sab
      }`,
    );
  }
  const len = sab.byteLength;
  if (len < 2 * PAGE_SIZE) {
    throw new CorruptImageError(`Heap.attach: image of ${len} bytes is smaller than two pages`);
  }
  const u32 = new Uint32Array(sab, 0, HDR_FIELDS_END >> 2);
  const word = (off: number) => Atomics.load(u32, off >> 2);
  if (word(HDR_MAGIC) !== HDR_MAGIC_VALUE) {
    throw new CorruptImageError(
      `Heap.attach: bad magic ${hex(word(HDR_MAGIC))} at 0x0 (expected ${hex(HDR_MAGIC_VALUE)})`,
    );
  }
  if (word(HDR_VERSION) !== FORMAT_VERSION) {
    throw new CorruptImageError(
      `Heap.attach: image format version ${word(HDR_VERSION)} (this code reads ${FORMAT_VERSION})`,
    );
  }
  if (word(HDR_PAGESIZE) !== PAGE_SIZE) {
    throw new CorruptImageError(
      `Heap.attach: page size ${word(HDR_PAGESIZE)} (expected ${PAGE_SIZE})`,
    );
  }
  const size = word(HDR_SIZE), max = word(HDR_MAXSIZE), meta = word(HDR_META);
  if (size % PAGE_SIZE !== 0 || size > len || size > max || max > MAX_IMAGE) {
    throw new CorruptImageError(
      `Heap.attach: heap size ${size} / max ${max} do not fit a buffer of ${len} bytes`,
    );
  }
  if (meta % PAGE_SIZE !== 0 || meta < 2 * PAGE_SIZE || meta >= size) {
    throw new CorruptImageError(
      `Heap.attach: metadata area of ${meta} bytes does not fit a heap of ${size} bytes`,
    );
  }
  const nslots = word(HDR_NSLOTS);
  if (nslots < 1 || nslots > MAX_SLOTS) {
    throw new CorruptImageError(`Heap.attach: ${nslots} worker slots (expected 1..${MAX_SLOTS})`);
  }
  const roots: [string, number, number][] = [
    ["root arena", HDR_ROOT_ARENA, meta],
    ["page map", HDR_PAGEMAP, meta],
    ["slot table", HDR_SLOTS, PAGE_SIZE],
    ["segment free list", HDR_SEG_FREE, size],
    ["arena list", HDR_ARENA_LIST, size],
    ["cache list", HDR_CACHE_LIST, size],
    ["size-class table", HDR_SIZE_TABLE, size],
    ["oversize arena", HDR_OVERSIZE, size],
    ["root table", HDR_ROOTS, size],
    ["stack table", HDR_STACKS, size],
    ["transaction log", HDR_TXLOG, size],
  ];
  for (const [what, off, limit] of roots) {
    const v = word(off);
    if (v % 4 !== 0 || v >= limit || (v !== 0 && v < HDR_FIELDS_END)) {
      throw new CorruptImageError(
        `Heap.attach: ${what} offset ${hex(v)} (header field ${hex(off)}) is out of bounds`,
      );
    }
  }
  if (word(HDR_ROOT_ARENA) === 0 || word(HDR_PAGEMAP) === 0) {
    throw new CorruptImageError("Heap.attach: root arena or page map offset is missing");
  }
}
