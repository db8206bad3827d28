/**
 * The heap: the public handle on one image, in one worker.
 *
 * `Heap.create` makes the SharedArrayBuffer (growable with `backend=sbrk`, of the heap's
 * largest size with `backend=mmap`), lays the header, the page map, the first segment records
 * and the root arena; `Heap.attach` opens an existing image in another worker
 * (or a copy from a file) after checking the header, and takes a worker slot. The creator holds
 * slot 0. A slot is what a CPU is to libumem: each slot has its own magazines in every cache.
 *
 * Lock order: the slot-table lock is taken alone.
 *
 * @module
 */

import {
  type Cache,
  cacheHandle,
  type CacheOptions,
  checkCallbacks,
  createCacheRecord,
  findCache,
} from "./cache.ts";
import { checkSize, hex, OutOfMemoryError, UmemError } from "./errors.ts";
import {
  type CacheCallbacks,
  checkHeader,
  HDR_ALLOCATOR,
  HDR_ARENA_LIST,
  HDR_AUDIT_FRAMES,
  HDR_AUDIT_SAMPLE,
  HDR_CACHE_LIST,
  HDR_CACHE_LOCK,
  HDR_CONTENTS_BYTES,
  HDR_CTLOG,
  HDR_DEBUG,
  HDR_FAILLOG,
  HDR_FIELDS_END,
  HDR_FIREWALL,
  HDR_FLAGS,
  HDR_MAG_CACHES,
  HDR_MAX_CONTENTION,
  HDR_MAXSIZE,
  HDR_MAXVERIFY,
  HDR_META_ARENA,
  HDR_META_BYTES,
  HDR_MTBF,
  HDR_NSLOTS,
  HDR_OVERSIZE,
  HDR_QUARANTINE,
  HDR_REAP_INTERVAL,
  HDR_ROOT_ARENA,
  HDR_SIZE_TABLE,
  HDR_SLOT_LOCK,
  HDR_SLOTS,
  HDR_STACKS,
  HDR_TXLOG,
  HDR_UMEM_OPTIONS,
  HeapView,
  HF_NOFAIL,
  HF_TRUST,
  layHeader,
  MAX_IMAGE,
  MAX_SLOTS,
  PAGE_SIZE,
  roundUp,
  SLOT_DEAD,
  SLOT_FREE,
  SLOT_LIVE,
  UO_NOMAGAZINES,
  WS_AUDIT_LEFT,
  WS_GEN,
  WS_SIZE,
  WS_STATE,
} from "./image.ts";
import {
  DBG_ABORT,
  DBG_AUDIT,
  DBG_CHECKNULL,
  DBG_CONTENTS,
  DBG_CTLOG,
  DBG_FAILLOG,
  DBG_FIREWALL,
  DBG_GUARDS,
  DBG_MTBF,
  DBG_TXLOG,
  DBG_VERBOSE,
} from "./buftag.ts";
import {
  checkEmptySlabs,
  debugAlloc,
  debugFree,
  firewallAlloc,
  firewallFree,
  flushQuarantine,
  oversizeFreeDebug,
  QR_BYTES,
} from "./debug.ts";
import {
  auditsNext,
  checkDebugQuickLayout,
  contentsAllocQuick,
  contentsFreeQuick,
  debugAllocQuick,
  debugFreeQuick,
  guardsAllocQuick,
  guardsFreeQuick,
  sampledAllocQuick,
  sampledFreeQuick,
  servesQuick,
} from "./debug_quick.ts";
import { Libc } from "./libc.ts";
import {
  hooksLive,
  runAllocHooks,
  runFreedHooks,
  runFreeHooks,
  runSlotReclaimers,
  setDispatch,
} from "./hooks.ts";
import { CT_DATA, FL_RECSIZE, layRing, ringBytes, TX_RECSIZE } from "./log.ts";
import {
  type DebugSettings,
  type LoggingSettings,
  parseDebug,
  parseLogging,
  parseOptions,
  readEnv,
  type UmemOptionSettings,
} from "./options.ts";
import { addRoot, layRoots, removeRoot } from "./roots.ts";
import { snapshotImage } from "./snapshot.ts";
import {
  entryCaptureLimit,
  ErrorApi,
  internPending,
  keepPending,
  layStackTable,
  RAW_BY_ERROR,
  stackTableBytes,
} from "./stack.ts";
import { ATTACHING, lock, unlock } from "./lock.ts";
import {
  cacheAlloc,
  cacheFree,
  cacheFreeChecked,
  CC_SIZE,
  checkFastPathLayout,
  flushSlot,
  MAG_ROUNDS,
  nofailOrThrow,
  reapAll,
  reclaimAll,
  trustFree,
} from "./magazine.ts";
import {
  CA_CPU,
  CA_FLAGS,
  CA_MAGIC,
  CA_MAGIC_VALUE,
  CA_NEXT,
  CF_INTERNAL,
  CF_NOMAGAZINE,
  throwDtorError,
} from "./slab.ts";
import {
  classAlign,
  laySizeTable,
  oversizeBytes,
  SIZE_TABLE_BYTES,
  sizeCache,
  UMEM_MAXBUF,
  UMEM_SIZE_CLASSES,
} from "./size_class.ts";
import { verifyHeap } from "./verify.ts";
import {
  arenaName,
  layRootArena,
  POLICY_NAMES,
  segCarve,
  VM_MAGIC,
  VM_MAGIC_VALUE,
  VM_NEXT,
  Vmem,
  vmemAllocAddr,
} from "./vmem.ts";

// UMEM_MAXBUF, the largest size the size table serves, module-local so that V8 folds it into
// alloc and free (see magazine.ts), checked with the rest of the fast path's copies when a
// handle is made.
const FP_MAXBUF = 131072;
/**
 * The fast paths, called through module constants: an imported function is a live binding,
 * which V8 loads and checks (not yet initialised? still the same function?) on every call; a
 * constant of this module it folds into the caller. Functions from other modules, aliased here
 * once they are defined (each is a `function` declaration, or a module this one does not
 * import back).
 */
const fastAlloc = cacheAlloc, fastFree = cacheFreeChecked, fastTrustFree = trustFree;
const quickAlloc = debugAllocQuick, quickFree = debugFreeQuick;
const guardsAlloc = guardsAllocQuick, guardsFree = guardsFreeQuick;
const contentsAlloc = contentsAllocQuick, contentsFree = contentsFreeQuick;
const sampledAlloc = sampledAllocQuick, sampledFree = sampledFreeQuick;

/**
 * A new image's buffer: growable from `size` up to `maxSize` bytes (`sbrk`), or `maxSize` bytes
 * from the start (`mmap`; the heap grows inside it).
 * @throws {OutOfMemoryError} when the runtime refuses the memory
 */
function newBuffer(backend: "sbrk" | "mmap", size: number, maxSize: number): SharedArrayBuffer {
  try {
    return backend === "mmap"
      ? new SharedArrayBuffer(maxSize)
      : new SharedArrayBuffer(size, { maxByteLength: maxSize });
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new OutOfMemoryError(
      `Heap.create: the runtime refused a buffer of ${backend === "mmap" ? maxSize : size} ` +
        `bytes (backend=${backend}, maxSize ${maxSize})`,
    );
  }
}

/** The image's debugging flags word (`HDR_DEBUG`) for the settings `d` and `l`. */
function debugFlags(d: DebugSettings, l: LoggingSettings): number {
  const any = d.guards || d.audit || d.contents || d.firewall > 0;
  return (any ? DBG_GUARDS : 0) | (d.audit ? DBG_AUDIT : 0) |
    (d.contents ? DBG_CONTENTS : 0) | (d.verbose ? DBG_VERBOSE : 0) |
    (d.firewall > 0 ? DBG_FIREWALL : 0) | (l.transaction > 0 ? DBG_TXLOG : 0) |
    (l.contents > 0 ? DBG_CTLOG : 0) | (l.fail > 0 ? DBG_FAILLOG : 0) |
    (d.mtbf > 0 ? DBG_MTBF : 0) | (d.checknull ? DBG_CHECKNULL : 0) |
    ((any || d.checknull) && !d.noabort ? DBG_ABORT : 0);
}

/** Writes the debugging and logging settings into a new image and lays the logs. */
function layDebug(
  heap: Heap,
  d: DebugSettings,
  l: LoggingSettings,
  o: UmemOptionSettings,
): void {
  const i32 = heap.i32;
  const flags = debugFlags(d, l);
  i32[HDR_DEBUG >> 2] = flags;
  i32[HDR_AUDIT_FRAMES >> 2] = d.auditFrames;
  i32[HDR_AUDIT_SAMPLE >> 2] = d.auditSample;
  i32[HDR_CONTENTS_BYTES >> 2] = d.contentsBytes;
  i32[HDR_MAXVERIFY >> 2] = d.maxverify;
  i32[HDR_FIREWALL >> 2] = d.firewall;
  i32[HDR_MTBF >> 2] = d.mtbf;
  i32[HDR_UMEM_OPTIONS >> 2] = o.nomagazines ? UO_NOMAGAZINES : 0;
  // (0 is "not given": the default; an explicit 0, that any contention grows magazines, is -1.)
  i32[HDR_MAX_CONTENTION >> 2] = o.maxContention === 0 ? -1 : o.maxContention ?? 0;
  i32[HDR_REAP_INTERVAL >> 2] = o.reapInterval ?? 0;
  i32[HDR_ALLOCATOR >> 2] = POLICY_NAMES.indexOf(o.allocator ?? "instantfit");
  const take = (bytes: number) => {
    const b = roundUp(bytes, PAGE_SIZE);
    const at = vmemAllocAddr(heap, heap.vmem.addr, b);
    if (at === 0) throw new OutOfMemoryError(`Heap.create: no room for ${b} bytes of logs`);
    Atomics.add(i32, HDR_META_BYTES >> 2, b);
    return at;
  };
  if (d.audit || l.transaction > 0 || l.fail > 0) {
    const st = take(stackTableBytes());
    layStackTable(heap, st, stackTableBytes());
    i32[HDR_STACKS >> 2] = st;
  }
  const rings: [number, number, number][] = [
    [HDR_TXLOG, l.transaction, TX_RECSIZE],
    [HDR_CTLOG, l.contents, roundUp(CT_DATA + d.contentsBytes, 8)],
    [HDR_FAILLOG, l.fail, FL_RECSIZE],
  ];
  for (const [field, bytes, rec] of rings) {
    if (bytes === 0) continue;
    const at = take(ringBytes(bytes, rec));
    layRing(heap, at, bytes, rec);
    i32[field >> 2] = at;
  }
  if (d.firewall > 0) {
    const q = take(QR_BYTES);
    i32.fill(0, q >> 2, (q + QR_BYTES) >> 2);
    i32[HDR_QUARANTINE >> 2] = q;
  }
  setDispatch(heap);
}

/**
 * Creates the heap's own arenas and caches in a new image (slot 0, nothing else running), with
 * the size classes `sizes` (ascending, the last `UMEM_MAXBUF`).
 */
function layCaches(heap: Heap, sizes: readonly number[]): void {
  const root = heap.vmem.addr;
  const meta = Vmem.create(heap, "umem_meta", {
    quantum: 64,
    source: heap.vmem,
    importSize: 65536,
  });
  heap.i32[HDR_META_ARENA >> 2] = meta.addr;
  const internal = CF_NOMAGAZINE | CF_INTERNAL;
  MAG_ROUNDS.forEach((rounds, t) => {
    heap.i32[(HDR_MAG_CACHES >> 2) + t] = createCacheRecord(
      heap,
      `umem_magazine_${rounds}`,
      (rounds + 1) * 4,
      { align: 8 },
      internal,
      root,
    );
  });
  const classes = sizes.map((size) =>
    createCacheRecord(
      heap,
      `umem_alloc_${size}`,
      size,
      { align: classAlign(size) },
      CF_INTERNAL,
      root,
    )
  );
  const oversize = Vmem.create(heap, "umem_oversize", { quantum: PAGE_SIZE, source: heap.vmem });
  heap.i32[HDR_OVERSIZE >> 2] = oversize.addr;
  const table = vmemAllocAddr(heap, meta.addr, SIZE_TABLE_BYTES);
  laySizeTable(heap, table, sizes, classes);
}

/** The keys {@linkcode HeapOptions} has. */
const HEAP_OPTION_KEYS = [
  "trust",
  "backend",
  "debug",
  "logging",
  "options",
  "nofail",
  "size",
  "maxSize",
  "slots",
  "lockTimeout",
];

/**
 * Refuses options that are not an object, a key `HeapOptions` does not have (a typo would be
 * ignored silently), a switch string that is not a string and a flag that is not a boolean.
 * Undefined and null values stand for "not given".
 */
function checkHeapOptions(options: unknown): void {
  const bad = (why: string) => new UmemError("invalid-argument", `Heap.create: ${why}`);
  if (typeof options !== "object" || options === null) {
    throw bad(`options must be an object, got ${options === null ? "null" : typeof options}`);
  }
  const o = options as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!HEAP_OPTION_KEYS.includes(k)) throw bad(`unknown option '${k}'`);
  }
  for (const k of ["debug", "logging", "options"]) {
    if (o[k] != null && typeof o[k] !== "string") throw bad(`${k} must be a string`);
  }
  for (const k of ["trust", "nofail"]) {
    if (o[k] != null && typeof o[k] !== "boolean") throw bad(`${k} must be a boolean`);
  }
  if (o.backend != null && o.backend !== "sbrk" && o.backend !== "mmap") {
    throw bad(`backend must be "sbrk" or "mmap", got ${JSON.stringify(o.backend)}`);
  }
}

/**
 * The backend when neither `HeapOptions.backend` nor `UMEM_OPTIONS` names one: `mmap` under
 * Bun, whose engine (JavaScriptCore) compiles an access through a fixed-length view of a
 * growable SharedArrayBuffer about three times slower than one of a fixed buffer; `sbrk`
 * elsewhere (V8 compiles both alike, and the buffer's length then says how big the heap is).
 */
function defaultBackend(): "sbrk" | "mmap" {
  return (globalThis as { Bun?: unknown }).Bun !== undefined ? "mmap" : "sbrk";
}

/** Options of {@linkcode Heap.create}. */
export interface HeapOptions {
  /**
   * Skip the checks on free (live buffer, right cache, right size, not freed twice) for the
   * last bit of speed, as Vmalloc's `VM_TRUST`. A bad free then corrupts the heap silently.
   */
  trust?: boolean;
  /**
   * `UMEM_DEBUG`: `default`, `audit[=frames[/sample]]`, `contents[=bytes]`, `guards`, `lite`,
   * `firewall=size`, `verbose`, `noabort`, `nosignal`, `maxverify=size`, `mtbf=n` (fail about
   * one cache allocation in `n`, at random), `checknull` (report an allocation that finds no
   * memory, and abort). Read from the environment when not given. With any debugging on, a
   * report of a mistake is printed and the process aborted, as libumem's, unless `noabort` or
   * `nosignal` is given: then it is a `HeapCorruptionError`, thrown.
   */
  debug?: string;
  /** `UMEM_LOGGING`: `transaction[=size]`, `contents[=size]`, `fail[=size]`. */
  logging?: string;
  /**
   * `UMEM_OPTIONS`: `nomagazines`, `max_contention=n`, `reap_interval=secs` (the interval in
   * which more contention than that grows magazines), `concurrency=n` (worker slots), `size=`,
   * `maxsize=` (backing size), `allocator=best|first|next|instant` (the fit policy of the top
   * arena, `heap.vmem`, where an allocation names none), `backend=sbrk|mmap`, and the size
   * classes' edits, in order: `size_add=n` (a class of `n` bytes, rounded up to a multiple of 8;
   * at most 73 classes), `size_remove=n`, `size_clear` (all but the largest, 131072).
   */
  options?: string;
  /**
   * Where the buffer's memory comes from, as libumem's `UMEM_OPTIONS=backend=`. `sbrk`: a
   * growable SharedArrayBuffer that grows with the heap. `mmap`: a SharedArrayBuffer of
   * `maxSize` bytes from the start, whose pages the system commits only as the heap first
   * touches them (a growable buffer reserves that much address space too); the heap's size is
   * then {@linkcode Heap.size}, not the buffer's length. Default: `mmap` under Bun, whose
   * engine compiles the fast paths over a growable buffer about twice as slow; `sbrk`
   * elsewhere.
   */
  backend?: "sbrk" | "mmap";
  /**
   * Never fail an allocation, as `UMEM_NOFAIL`: reclaim, reap and grow, then call the nofail
   * callback (`heap.setNofailCallback`), which says "retry" or exits the process. Allocations
   * from caches and size classes (`alloc`, `libc`, `Cache.alloc`) and above them; a vmem
   * arena's own `alloc` fails as `vmem_alloc` does, with an `OutOfMemoryError`.
   */
  nofail?: boolean;
  /**
   * Initial size in bytes (default 4 MiB, or `maxSize` when less). Rounded up to pages, and
   * raised to at least the metadata (the header, the page map: 8 KiB and 1 KiB per MiB of
   * `maxSize`) plus 256 KiB.
   */
  size?: number;
  /**
   * Largest size the buffer may grow to (default 256 MiB, at most 2 GiB - 4 KiB). It must hold
   * at least `size` (`Heap.create` says so when it does not: about 272 KiB and up).
   */
  maxSize?: number;
  /** Worker slots, the creator's included (default 16, at most 64). */
  slots?: number;
  /** How long a lock wait may last before it throws `HeapLockedError` (ms, default 10000). */
  lockTimeout?: number;
}

/**
 * One heap image in a SharedArrayBuffer, as seen from one worker.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, maxSize: 64 << 20 });
 * const span = heap.vmem.alloc(8192);
 * heap.u8[span] = 42;
 * const other = Heap.attach(heap.buffer); // as a worker would, with the buffer it was sent
 * console.log(other.u8[span]); // 42
 * other.detach();
 * ```
 */
export class Heap extends HeapView {
  /** The root arena: the whole heap after the metadata area; grows the buffer when it runs out. */
  readonly vmem: Vmem;

  /** The malloc-compatible interface over this heap. */
  readonly libc: Libc;
  /** Word index of the size-class table. */
  protected sizeTab = 0; // (a value here: see HeapView's fields)
  /** The slot's generation when this handle took it: `detach` gives back only that tenure. */
  private readonly gen: number = 0;

  /**
   * A handle on the image in `sab` for worker slot `slot`, which the caller has taken: use
   * {@linkcode Heap.create} or {@linkcode Heap.attach}.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  protected constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
    checkFastPathLayout();
    checkDebugQuickLayout();
    if (FP_MAXBUF !== UMEM_MAXBUF) {
      throw new Error("core/heap.ts: the fast path's copies of the layout are out of date");
    }
    this.ccOff = CA_CPU + slot * CC_SIZE;
    this.auditLeft = (this.u32[HDR_SLOTS >> 2] + slot * WS_SIZE + WS_AUDIT_LEFT) >> 2;
    this.vmem = new Vmem(this, this.u32[HDR_ROOT_ARENA >> 2]);
    this.sizeTab = this.i32[HDR_SIZE_TABLE >> 2] >> 2;
    this.libc = this.makeLibc();
    setDispatch(this);
    this.gen = this.u32[(this.u32[HDR_SLOTS >> 2] + slot * WS_SIZE + WS_GEN) >> 2];
  }

  /**
   * The malloc-compatible interface this handle offers (an audited handle's captures its
   * entry points' stacks itself).
   *
   * @returns the interface
   */
  protected makeLibc(): Libc {
    return new Libc(this);
  }

  /**
   * Creates a heap in a new SharedArrayBuffer (see {@linkcode HeapOptions.backend}). The
   * calling worker takes slot 0.
   *
   * @param options initial and maximum size, worker slots, lock timeout
   * @returns the heap
   * @throws {UmemError} `invalid-argument` for sizes out of range
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(heap.buffer.byteLength); // 1048576
   * ```
   */
  static create(options: HeapOptions = {}): Heap {
    checkHeapOptions(options);
    // The switches: options first, then the environment (silently absent without permission).
    const debug = parseDebug(options.debug ?? readEnv("UMEM_DEBUG") ?? "");
    const logging = parseLogging(options.logging ?? readEnv("UMEM_LOGGING") ?? "");
    const umemOptions = parseOptions(options.options ?? readEnv("UMEM_OPTIONS") ?? "");
    const maxSize = roundUp(
      checkSize(
        "Heap.create",
        "maxSize",
        options.maxSize ?? umemOptions.maxSize ?? 256 << 20,
        1 << 16,
        MAX_IMAGE,
      ),
      PAGE_SIZE,
    );
    const slots = checkSize(
      "Heap.create",
      "slots",
      options.slots ?? umemOptions.concurrency ?? 16,
      1,
      MAX_SLOTS,
    );
    const lockTimeout = checkSize(
      "Heap.create",
      "lockTimeout",
      options.lockTimeout ?? 10000,
      1,
      1 << 30,
    );
    const wanted = checkSize(
      "Heap.create",
      "size",
      // (The default is no more than maxSize: a small maxSize alone is no error.)
      options.size ?? umemOptions.size ?? Math.min(4 << 20, maxSize),
      1,
      maxSize,
    );
    // The metadata area (header, page map, first segment records) plus some room to allocate.
    const metaBytes = 2 * PAGE_SIZE + roundUp((maxSize / PAGE_SIZE) * 4, PAGE_SIZE);
    const size = roundUp(Math.max(wanted, metaBytes + 64 * PAGE_SIZE), PAGE_SIZE);
    if (size > maxSize) {
      throw new UmemError(
        "invalid-argument",
        `Heap.create: maxSize ${maxSize} leaves no room after ${metaBytes} bytes of metadata`,
      );
    }
    const backend = options.backend ?? umemOptions.backend ?? defaultBackend();
    const sab = newBuffer(backend, size, maxSize);
    const flags = (options.trust === true ? HF_TRUST : 0) |
      (options.nofail === true ? HF_NOFAIL : 0);
    const meta = layHeader(sab, { size, maxSize, slots, lockTimeout, flags });
    const u32 = new Uint32Array(sab, 0, PAGE_SIZE >> 2);
    const slotTable = u32[HDR_SLOTS >> 2];
    u32[(slotTable + WS_STATE) >> 2] = SLOT_LIVE;
    u32[(slotTable + WS_GEN) >> 2] = 1;
    const heap = Heap.handle(sab, 0, debugFlags(debug, logging), debug.auditSample);
    segCarve(heap, meta - PAGE_SIZE, PAGE_SIZE);
    layRootArena(heap, meta, size);
    layDebug(heap, debug, logging, umemOptions);
    layCaches(heap, umemOptions.sizes ?? UMEM_SIZE_CLASSES);
    layRoots(heap);
    heap.sizeTab = heap.i32[HDR_SIZE_TABLE >> 2] >> 2;
    setDispatch(heap); // checkedTab: the table is laid now
    return heap;
  }

  /**
   * Opens an existing image, as a worker does with the buffer it was sent, and takes a free
   * worker slot. Checks the header first and refuses anything that is not a sound image.
   *
   * @param sab the image
   * @returns a handle acting as a new worker slot
   * @throws {CorruptImageError} for a bad magic, version, size or root offset
   * @throws {UmemError} `invalid-argument` for something that is not a SharedArrayBuffer;
   *   `out-of-memory` when every worker slot is taken
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const w = Heap.attach(heap.buffer);
   * console.log(w.slot); // 1
   * w.detach();
   * ```
   */
  static attach(sab: SharedArrayBuffer): Heap {
    checkHeader(sab);
    // Not slot 0, the creator's identity: the lock word must name someone who is not us.
    const probe = new HeapView(sab, ATTACHING);
    const n = probe.u32[HDR_NSLOTS >> 2], table = probe.u32[HDR_SLOTS >> 2];
    lock(probe, HDR_SLOT_LOCK);
    let slot = -1;
    try {
      for (let i = 0; i < n; i++) {
        const at = table + i * WS_SIZE;
        if (probe.u32[(at + WS_STATE) >> 2] === SLOT_FREE) {
          probe.u32[(at + WS_STATE) >> 2] = SLOT_LIVE;
          probe.u32[(at + WS_GEN) >> 2]++;
          slot = i;
          break;
        }
      }
    } finally {
      unlock(probe, HDR_SLOT_LOCK);
    }
    if (slot < 0) {
      throw new UmemError("out-of-memory", `Heap.attach: all ${n} worker slots are taken`);
    }
    return Heap.handle(sab, slot);
  }

  /**
   * A handle of the class the image asks for: a heap created with `trust` gets a
   * `TrustingHeap`, whose `free` is a function of its own, and a heap whose debugging the
   * debug fast path serves a `DebuggingHeap`, whose `alloc` and `free` are (see there): a
   * `GuardingHeap` for the guards alone, a `PatterningHeap` for the patterns (and the guards), a
   * `SamplingHeap` for a sampled audit without the patterns, a `DebuggingHeap` itself for a
   * sampled audit with them.
   *
   * @param sab the image
   * @param slot the worker slot, taken
   * @param debug the image's debugging flags (a new image has not laid them yet)
   * @param sample its audit sample rate (likewise)
   */
  private static handle(
    sab: SharedArrayBuffer,
    slot: number,
    debug?: number,
    sample?: number,
  ): Heap {
    const hdr = new Int32Array(sab, 0, HDR_FIELDS_END >> 2);
    if ((hdr[HDR_FLAGS >> 2] & HF_TRUST) !== 0) return new TrustingHeap(sab, slot);
    const flags = debug ?? hdr[HDR_DEBUG >> 2];
    if (servesQuick(flags, sample ?? hdr[HDR_AUDIT_SAMPLE >> 2])) {
      if ((flags & DBG_AUDIT) === 0) {
        return (flags & DBG_CONTENTS) === 0
          ? new GuardingHeap(sab, slot)
          : new PatterningHeap(sab, slot);
      }
      return (flags & DBG_CONTENTS) === 0
        ? new SamplingHeap(sab, slot)
        : new DebuggingHeap(sab, slot);
    }
    return (flags & DBG_AUDIT) !== 0 ? new AuditingHeap(sab, slot) : new Heap(sab, slot);
  }

  /** The SharedArrayBuffer: send it to a worker, which calls `Heap.attach` on it. */
  get buffer(): SharedArrayBuffer {
    return this.sab;
  }

  /**
   * The heap's size in bytes now: the part of the buffer it uses, which grows up to
   * {@linkcode Heap.maxSize}. With `backend=sbrk` the buffer's length too; with `mmap` the
   * buffer is `maxSize` bytes long from the start.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, maxSize: 8 << 20, backend: "mmap" });
   * console.log(heap.size, heap.buffer.byteLength); // 1048576 8388608
   * heap.vmem.alloc(2 << 20); // the heap grows inside the buffer
   * console.log(heap.size > 1 << 20, heap.buffer.byteLength); // true 8388608
   * ```
   */
  get size(): number {
    this.sync();
    return this.mapped;
  }

  /**
   * The largest size the heap may grow to, in bytes (`maxSize`, rounded up to pages).
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, maxSize: 8 << 20 });
   * console.log(heap.maxSize); // 8388608
   * ```
   */
  get maxSize(): number {
    return this.u32[HDR_MAXSIZE >> 2];
  }

  /**
   * Whether this handle still holds its worker slot: false once {@linkcode Heap.detach} gave it
   * back, or another handle's {@linkcode Heap.reclaimSlot} did (a slot attached again since is
   * another handle's: its generation tells them apart).
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const w = Heap.attach(heap.buffer);
   * w.detach();
   * console.log(heap.attached, w.attached); // true false
   * ```
   */
  get attached(): boolean {
    const at = this.u32[HDR_SLOTS >> 2] + this.slot * WS_SIZE;
    return this.u32[(at + WS_GEN) >> 2] === this.gen &&
      this.u32[(at + WS_STATE) >> 2] === SLOT_LIVE;
  }

  /**
   * Leaves the heap: gives this worker's slot back. The handle must not be used after.
   *
   * @throws {UmemError} `invalid-argument` when this handle's slot was given back already
   *   (a second `detach`, or `reclaimSlot` of it), whoever holds the slot now
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * Heap.attach(heap.buffer).detach();
   * ```
   */
  detach(): void {
    this.sync();
    internPending(this); // after this, other workers read the stacks this worker captured
    if (!this.attached) {
      // Given back already; the slot may be another worker's now, which must keep it.
      throw new UmemError(
        "invalid-argument",
        `Heap.detach: this handle's slot ${this.slot} was given back already`,
      );
    }
    this.giveBackSlot(this.slot);
  }

  /**
   * Sets this worker's nofail callback, called on a `nofail` heap when an allocation cannot be
   * satisfied even after reclaiming: return "retry" to try again, or a number to exit the
   * process with that status (`UMEM_CALLBACK_RETRY`, `UMEM_CALLBACK_EXIT(n)`).
   *
   * @param callback the callback
   * @throws {UmemError} `invalid-argument` when `callback` is not a function
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, nofail: true });
   * heap.setNofailCallback(() => 1);
   * ```
   */
  setNofailCallback(callback: () => "retry" | number): void {
    if (typeof callback !== "function") {
      throw new UmemError(
        "invalid-argument",
        "Heap.setNofailCallback: callback must be a function",
      );
    }
    this.nofail = callback;
  }

  /**
   * Gives back the slot of a worker that was terminated without detaching: its magazines in
   * every cache go back to the slabs (their destructors run in this worker), the modules this
   * worker loaded recover what the dead one held (sbo's pooled chunks, say), and the slot is
   * free for the next `attach`. The creator calls it once the worker can no longer run: from
   * its exit (`worker.onerror`, or Node's `exit` event). `worker.terminate()` alone is not that:
   * Deno stops a worker only at its next turn of the event loop, so one busy in a synchronous
   * loop goes on allocating for as long as the loop lasts, and with its slot reclaimed it would
   * share buffers with the next `attach`. A worker that may be busy should be asked to stop and
   * say so (a message), or be waited for to exit, before its slot is reclaimed.
   *
   * @param slot the dead worker's slot
   * @throws {UmemError} `invalid-argument` for a slot out of range, not live, or this handle's
   * own
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const w = Heap.attach(heap.buffer);
   * heap.reclaimSlot(w.slot);
   * ```
   */
  reclaimSlot(slot: number): void {
    this.sync();
    checkSize("Heap.reclaimSlot", "slot", slot, 0, this.u32[HDR_NSLOTS >> 2] - 1);
    if (slot === this.slot) {
      // A live handle's own slot: the next attach would share its magazines with this one.
      throw new UmemError(
        "invalid-argument",
        `Heap.reclaimSlot: slot ${slot} is this handle's own (detach() gives it back)`,
      );
    }
    this.giveBackSlot(slot);
  }

  /** Gives worker slot `slot` back (reclaimSlot's, and detach's of its own), its range checked. */
  private giveBackSlot(slot: number): void {
    const table = this.u32[HDR_SLOTS >> 2];
    const at = table + slot * WS_SIZE;
    // The slot is marked dead first: if the worker died holding a lock, the flush below times
    // out on it with a HeapLockedError, the slot stays dead (never handed out again), and
    // verify() names the lock and the structure it guards.
    lock(this, HDR_SLOT_LOCK);
    try {
      const state = this.u32[(at + WS_STATE) >> 2];
      if (state !== SLOT_LIVE && state !== SLOT_DEAD) {
        throw new UmemError("invalid-argument", `Heap.reclaimSlot: slot ${slot} is not live`);
      }
      this.u32[(at + WS_STATE) >> 2] = SLOT_DEAD;
    } finally {
      unlock(this, HDR_SLOT_LOCK);
    }
    flushSlot(this, slot);
    // Then the modules above the core (sbo's chunk pool, ...) recover what the worker held;
    // if one fails the slot stays dead, as after a lock timeout.
    runSlotReclaimers(this, slot);
    Atomics.store(this.u32, (at + WS_STATE) >> 2, SLOT_FREE);
    throwDtorError(this); // (the slot's magazines were emptied with this worker's destructors)
  }

  /**
   * Every arena in the heap, the root arena included.
   *
   * @returns a handle per arena
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * Vmem.create(heap, "ids", { base: 1, size: 100, quantum: 1 });
   * const names = heap.arenas().map((a) => a.name).sort();
   * console.log(names.join(",")); // heap,ids,umem_meta,umem_oversize
   * ```
   */
  arenas(): Vmem[] {
    this.sync();
    const out: Vmem[] = [];
    for (let a = this.u32[HDR_ARENA_LIST >> 2]; a !== 0; a = this.u32[(a + VM_NEXT) >> 2]) {
      out.push(new Vmem(this, a));
    }
    return out;
  }

  /**
   * Finds an arena by name, as another worker does for an arena the creator made.
   *
   * @param name the arena's name
   * @returns its handle
   * @throws {UmemError} `invalid-argument` when there is no arena of that name
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * Vmem.create(heap, "ids", { base: 1, size: 100, quantum: 1 });
   * const w = Heap.attach(heap.buffer);
   * console.log(w.arena("ids").stats().total); // 100
   * w.detach();
   * ```
   */
  arena(name: string): Vmem {
    this.sync();
    for (let a = this.u32[HDR_ARENA_LIST >> 2]; a !== 0; a = this.u32[(a + VM_NEXT) >> 2]) {
      if (this.u32[(a + VM_MAGIC) >> 2] === VM_MAGIC_VALUE && arenaName(this, a) === name) {
        return new Vmem(this, a);
      }
    }
    throw new UmemError("invalid-argument", `Heap.arena: no arena named '${name}'`);
  }

  // ---- sized allocation: umem_alloc ----

  /**
   * Allocates `size` bytes, as `umem_alloc`: from the size-class cache that fits, or from the
   * oversize arena above 128 KiB. The memory is not cleared. `alloc(0)` returns 0 (NULL), as
   * `umem_alloc(0)` does.
   *
   * @param size bytes, a whole number
   * @returns the address, aligned as its class: 64 for classes that are multiples of 64, 16 for
   * other multiples of 16, else 8 (with libumem's classes: 8-aligned, 16-aligned from 16 bytes,
   * 64-aligned for multiples of 64; `UMEM_OPTIONS=size_add` may add others)
   * @throws {OutOfMemoryError} when the heap is at its maximum size (unless `nofail`)
   * @throws {UmemError} `invalid-argument` for a negative, fractional, NaN or huge size
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.alloc(100);
   * heap.u8.fill(7, p, p + 100);
   * heap.free(p, 100);
   * ```
   */
  alloc(size: number): number {
    // No sync() here: a round from this slot's magazine lies inside its views, and the slow
    // paths that bring in buffers from elsewhere sync (the budget of V8's inliner, magazine.ts).
    // The flags are compared with `true`: V8 does not know a field holds a boolean, and `!flag`
    // compiles to a test against every falsy value, `flag !== true` to one compare.
    if (size > 0 && size <= FP_MAXBUF && (size | 0) === size && this.intercepting !== true) {
      return fastAlloc(this, this.i32[(this.sizeTab + ((size + 7) >> 3)) | 0]);
    }
    return this.allocSlow(size) | 0; // an int32, as the fast path's (magazine.ts's cacheAlloc)
  }

  /** A sized allocation on a heap that debugs or has hooks. */
  private allocIntercepted(cp: number, size: number): number {
    // The debug fast path's way out captures an audited transaction's stack itself; an
    // AuditingHeap's alloc has captured it already (preStack); else debug.ts captures it.
    if (size <= this.debugQuick) return quickAlloc(this, cp, size);
    const p = this.debugging ? this.debugAlloc(cp, size) : cacheAlloc(this, cp);
    this.sync(); // the firewall's own pages may lie past the views
    if (hooksLive(this)) runAllocHooks(this, p, size, 0);
    return p;
  }

  /** A debugged sized allocation: the firewall for large sizes, else the checked path. */
  private debugAlloc(cp: number, size: number): number {
    const fw = this.i32[HDR_FIREWALL >> 2];
    return fw !== 0 && size >= fw
      ? firewallAlloc(this, size)
      : debugAlloc(this, cp, size, this.alloc);
  }

  /** A heap that debugs or has hooks, bad sizes and the oversize arena. */
  private allocSlow(size: number): number {
    if (size > 0 && size <= 1024 && (size | 0) === size && this.intercepting) {
      return this.allocIntercepted(this.i32[this.sizeTab + ((size + 7) >> 3)], size);
    }
    return this.allocOther(size);
  }

  /** Bad sizes, the oversize arena and heaps that debug or have hooks; then the hooks. */
  private allocOther(size: number): number {
    const p = this.allocSlowPath(size);
    this.sync(); // the oversize arena's memory may lie past the views
    if (p !== 0 && hooksLive(this)) runAllocHooks(this, p, size, 0);
    return p;
  }

  /** Bad sizes, debugging and the oversize arena. */
  private allocSlowPath(size: number): number {
    checkSize("umem_alloc", "size", size, 0, MAX_IMAGE);
    if (size === 0) return 0;
    if (
      this.debugging && (this.i32[HDR_FIREWALL >> 2] === 0 || size < this.i32[HDR_FIREWALL >> 2])
    ) {
      if (size <= UMEM_MAXBUF) return this.debugAlloc(sizeCache(this, size), size);
    } else if (this.debugging) return firewallAlloc(this, size);
    if (size <= UMEM_MAXBUF) return cacheAlloc(this, sizeCache(this, size));
    const over = this.i32[HDR_OVERSIZE >> 2], bytes = oversizeBytes(size);
    for (;;) {
      let p = vmemAllocAddr(this, over, bytes);
      if (p === 0) {
        reclaimAll(this);
        p = vmemAllocAddr(this, over, bytes);
      }
      if (p !== 0) return p;
      nofailOrThrow(
        this,
        () =>
          new OutOfMemoryError(
            `umem_alloc: no memory for ${size} bytes from umem_oversize (heap at its maximum size)`,
          ),
      );
    }
  }

  /**
   * Allocates `size` bytes set to zero, as `umem_zalloc`.
   *
   * @param size bytes
   * @returns the address
   * @throws {OutOfMemoryError} as {@linkcode Heap.alloc}
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.zalloc(64);
   * console.log(heap.u8[p + 63]); // 0
   * ```
   */
  zalloc(size: number): number {
    const p = this.alloc(size);
    if (p !== 0) this.u8.fill(0, p, p + size);
    return p;
  }

  /**
   * Frees memory from {@linkcode Heap.alloc}, as `umem_free`: the caller gives the size back.
   * Unless the heap was created with `trust`, a free of an address that is not a live
   * allocation, of a size of another class, or a second free throws and changes nothing.
   * `free(0, n)` does nothing.
   *
   * @param ptr the address
   * @param size the size given to `alloc`
   * @throws {UmemError} `bad-free`, `duplicate-free`, `wrong-size`, `wrong-cache` (a buffer of
   * an object cache), `invalid-argument`
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.alloc(50);
   * try {
   *   heap.free(p, 200);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "wrong-size"
   * }
   * heap.free(p, 50);
   * ```
   */
  free(ptr: number, size: number): void {
    // No sync() on the fast path: cacheFreeSlow syncs before it refuses an address past this
    // worker's views (the budget of V8's inliner, magazine.ts); freeSlow syncs first.
    // A heap that debugs or has hooks takes freeSlow for every size: the fast path stays
    // small enough for V8 to inline alloc and free together (see magazine.ts).
    // (free(0, n) does nothing: cacheFreeSlow lets a 0 from umem_free go, off the fast path.)
    if (size > 0 && size <= FP_MAXBUF && (size | 0) === size && this.checkedFast === true) {
      fastFree(this, this.i32[(this.sizeTab + ((size + 7) >> 3)) | 0], ptr, "umem_free");
      return;
    }
    this.freeSlow(ptr, size);
  }

  /** Every free off the fast paths: debugging, hooks, bad sizes, the oversize arena. */
  private freeSlow(ptr: number, size: number): void {
    this.sync();
    return this.intercepting ? this.freeIntercepted(ptr, size) : this.freeOther(ptr, size);
  }

  /** A free on a heap that debugs or has hooks: the debug fast path, else the hooks around. */
  private freeIntercepted(ptr: number, size: number): void {
    if (size <= this.debugQuick && size > 0 && (size | 0) === size) {
      return quickFree(this, this.i32[this.sizeTab + ((size + 7) >> 3)], ptr, size);
    }
    this.freeOther(ptr, size);
  }

  /** Bad sizes, the oversize arena and heaps that debug or have hooks: the hooks around. */
  private freeOther(ptr: number, size: number): void {
    if (ptr === 0 || !hooksLive(this)) return this.freeSlowPath(ptr, size);
    checkSize("umem_free", "size", size, 0, MAX_IMAGE);
    runFreeHooks(this, ptr, size, 0);
    this.freeSlowPath(ptr, size);
    runFreedHooks(this, ptr, size, 0);
  }

  /** Bad sizes, debugging and the oversize arena. */
  private freeSlowPath(ptr: number, size: number): void {
    checkSize("umem_free", "size", size, 0, MAX_IMAGE);
    if (ptr === 0) return;
    if (size === 0) {
      throw new UmemError("bad-free", `umem_free: bad free: size 0 for buffer ${hex(ptr)}`, ptr);
    }
    if (this.debugging) {
      const fw = this.i32[HDR_FIREWALL >> 2];
      if (fw !== 0 && size >= fw) return firewallFree(this, ptr, size);
      if (size <= UMEM_MAXBUF) {
        return debugFree(this, sizeCache(this, size), ptr, size, "umem_free", this.free);
      }
      return oversizeFreeDebug(
        this,
        ptr,
        size,
        () => new Vmem(this, this.i32[HDR_OVERSIZE >> 2]).free(ptr, oversizeBytes(size)),
      );
    }
    if (size <= UMEM_MAXBUF) {
      cacheFree(this, sizeCache(this, size), ptr, "umem_free");
      return;
    }
    new Vmem(this, this.i32[HDR_OVERSIZE >> 2]).free(ptr, oversizeBytes(size));
  }

  // ---- object caches ----

  /**
   * Creates an object cache, as `umem_cache_create`. The callbacks are this worker's; another
   * worker registers its own with {@linkcode Heap.cache}.
   *
   * @param name a unique name of at most 31 bytes
   * @param size the buffer size (at most 256 KiB)
   * @param options `align`, `ctor(heap, ptr)` (return false to refuse), `dtor(heap, ptr)`,
   *   `reclaim()`, `nomagazines`
   * @returns the cache
   * @throws {UmemError} `invalid-argument` for an empty or taken name, a bad size or alignment
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("conn", 256, {
   *   ctor: (h, p) => {
   *     h.u8.fill(0, p, p + 256);
   *   },
   * });
   * c.free(c.alloc());
   * ```
   */
  createCache(name: string, size: number, options: CacheOptions = {}): Cache {
    this.sync();
    return cacheHandle(this, createCacheRecord(this, name, size, options, 0, this.vmem.addr));
  }

  /**
   * Finds a cache by name and registers this worker's callbacks for it, as a worker does for a
   * cache its creator made.
   *
   * @param name the cache's name
   * @param callbacks this worker's `ctor`, `dtor` and `reclaim`
   * @returns the cache
   * @throws {UmemError} `invalid-argument` when no cache has that name, for callbacks that are
   *   not functions, or for a `ctor`/`dtor` the cache was created without (it would never run)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.createCache("conn", 256);
   * const w = Heap.attach(heap.buffer);
   * const c = w.cache("conn");
   * c.free(c.alloc());
   * w.detach();
   * ```
   */
  cache(name: string, callbacks: CacheCallbacks = {}): Cache {
    this.sync();
    const cp = findCache(this, name);
    if (cp === 0) throw new UmemError("invalid-argument", `Heap.cache: no cache named '${name}'`);
    checkCallbacks(`Heap.cache(${name})`, callbacks, this.u32[(cp + CA_FLAGS) >> 2]);
    const c = cacheHandle(this, cp);
    // Merge: a lookup without callbacks keeps the ones this worker registered before.
    const merged: CacheCallbacks = { ...this.callbacks[c.id] };
    for (const k of ["ctor", "dtor", "reclaim"] as const) {
      if (callbacks[k] !== undefined) (merged as Record<string, unknown>)[k] = callbacks[k];
    }
    this.callbacks[c.id] = merged;
    return c;
  }

  /**
   * Every live cache, the heap's own (size classes, magazines, slab records) included.
   *
   * @returns a handle per cache
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(heap.caches().some((c) => c.name === "umem_alloc_64")); // true
   * ```
   */
  caches(): Cache[] {
    this.sync();
    const out: Cache[] = [];
    for (let cp = this.i32[HDR_CACHE_LIST >> 2]; cp !== 0; cp = this.i32[(cp + CA_NEXT) >> 2]) {
      if (this.i32[(cp + CA_MAGIC) >> 2] === CA_MAGIC_VALUE) out.push(cacheHandle(this, cp));
    }
    return out;
  }

  /**
   * Reaps every cache: this worker's magazines are emptied, depots purged, empty slabs given
   * back to vmem. Other workers' magazines stay theirs until they reap or detach.
   *
   * @returns bytes given back to vmem
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.free(heap.alloc(64), 64);
   * console.log(heap.reap() > 0); // true
   * ```
   */
  reap(): number {
    this.sync();
    let bad: unknown;
    if (this.debugging) {
      // (Under the list's lock, as reapAll walks it: a cache destroyed meanwhile is not read.)
      lock(this, HDR_CACHE_LOCK);
      try {
        for (let cp = this.i32[HDR_CACHE_LIST >> 2]; cp !== 0; cp = this.i32[(cp + CA_NEXT) >> 2]) {
          bad ??= checkEmptySlabs(this, cp);
        }
      } finally {
        unlock(this, HDR_CACHE_LOCK);
      }
      try {
        flushQuarantine(this);
      } catch (e) {
        bad ??= e;
      }
    }
    const bytes = reapAll(this);
    if (bad !== undefined) throw bad;
    throwDtorError(this);
    return bytes;
  }

  /**
   * Checks the whole heap, as `umem_verify`: every arena's segments, free lists and hash, every
   * cache's slabs, state bytes and free lists, the page map and the depots.
   *
   * @returns the problems found, one line each; empty when the heap is sound
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.alloc(10);
   * console.log(heap.verify()); // []
   * ```
   */
  verify(): string[] {
    this.sync();
    return verifyHeap(this);
  }

  /**
   * Interns this worker's audit stacks that a record still holds: makes their text and writes it
   * into the image, so that other workers, and snapshots taken by them, read the text rather
   * than `<stack captured by worker N, not interned yet>`. An audited transaction keeps its
   * stack raw until something reads it; reports, tools and snapshots in this worker, and
   * `detach`, intern what they need by themselves. Call it in a worker before another takes a
   * snapshot. It costs a stack's formatting (tens of µs in Deno) for each one still held.
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "audit" });
   * const worker = Heap.attach(heap.buffer); // as if in another worker
   * const p = worker.alloc(40);
   * console.log(inspect(heap).bufctl(p)[0].stack.startsWith("<stack captured by worker"));
   * // true
   * worker.internStacks();
   * console.log(inspect(heap).bufctl(p)[0].stack.startsWith("<stack")); // false
   * ```
   */
  internStacks(): void {
    this.sync();
    internPending(this);
  }

  /**
   * The heap's image as bytes, copied with every lock held so that it is consistent while
   * workers allocate. `writeSnapshot` wraps it in a `.ums` file.
   *
   * @returns the image
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(heap.snapshot().length); // 1048576
   * ```
   */
  snapshot(): Uint8Array {
    return snapshotImage(this);
  }

  /**
   * Registers a root for `findleaks` and the collector: the words of `[addr, addr + bytes)` may
   * hold pointers into the heap (a global table, a structure the program keeps).
   *
   * @param addr first byte, word-aligned
   * @param bytes length, a multiple of 4
   * @throws {UmemError} `invalid-argument` for a range outside the heap or not word-aligned
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const table = heap.zalloc(64);
   * heap.addRoot(table, 64);
   * heap.i32[table >> 2] = heap.alloc(16); // reachable from the root: not a leak
   * ```
   */
  addRoot(addr: number, bytes: number): void {
    this.sync();
    addRoot(this, addr, bytes, "Heap.addRoot");
  }

  /**
   * Removes a root added with {@linkcode Heap.addRoot}.
   *
   * @param addr the root's first byte
   * @param bytes its length
   * @returns whether there was such a root
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const t = heap.zalloc(8);
   * heap.addRoot(t, 8);
   * console.log(heap.removeRoot(t, 8)); // true
   * ```
   */
  removeRoot(addr: number, bytes: number): boolean {
    this.sync();
    return removeRoot(this, addr, bytes);
  }

  /**
   * Pins an address that JavaScript holds: the buffer it points into is reachable, though no
   * word in the heap points to it.
   *
   * @param addr an address the program keeps in a JavaScript variable
   * @throws {UmemError} `invalid-argument` for an address outside the heap
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.alloc(100);
   * heap.pin(p);
   * heap.unpin(p);
   * heap.free(p, 100);
   * ```
   */
  pin(addr: number): void {
    this.sync();
    addRoot(this, addr, 0, "Heap.pin");
  }

  /**
   * Unpins an address pinned with {@linkcode Heap.pin}.
   *
   * @param addr the address
   * @returns whether it was pinned
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.alloc(8);
   * heap.pin(p);
   * console.log(heap.unpin(p)); // true
   * ```
   */
  unpin(addr: number): boolean {
    this.sync();
    return removeRoot(this, addr, 0);
  }

  /**
   * Bytes of the heap's arena that hold the allocator's own metadata: vmem's segment pages,
   * hash tables and arena records, and the metadata arena (cache records, size table). After
   * everything is freed and every worker has reaped, the heap's arena holds exactly this much.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.free(heap.alloc(3000), 3000);
   * heap.reap();
   * console.log(heap.vmem.stats().inUse === heap.metadataBytes); // true
   * ```
   */
  get metadataBytes(): number {
    this.sync();
    const meta = new Vmem(this, this.i32[HDR_META_ARENA >> 2]);
    return this.i32[HDR_META_BYTES >> 2] + meta.stats().total;
  }

  /** Whether the heap skips the checks on free. */
  get trusted(): boolean {
    return (this.i32[HDR_FLAGS >> 2] & HF_TRUST) !== 0;
  }

  /** Whether the heap never fails an allocation. */
  get nofailing(): boolean {
    return (this.i32[HDR_FLAGS >> 2] & HF_NOFAIL) !== 0;
  }
}

/**
 * The handle of a heap created with `trust`. Its `free` is a function of its own, not a branch
 * of {@linkcode Heap.free}: V8 keeps type feedback and optimized code per function, and a
 * checked heap's free must not carry the trusting one's path in its optimized body, where it
 * would count against the inlining budget of every alloc+free loop (see magazine.ts). A
 * program that uses both kinds of heap then pays for neither in the other's loops.
 */
class TrustingHeap extends Heap {
  /**
   * See {@linkcode Heap.create} and {@linkcode Heap.attach}, which make it.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
  }

  /**
   * `umem_free` believing its caller (Vmalloc's `VM_TRUST`): the push, nothing checked but the
   * size; a heap that debugs or has hooks, and a bad size, go to {@linkcode Heap.free}.
   */
  override free(ptr: number, size: number): void {
    if (size > 0 && size <= FP_MAXBUF && (size | 0) === size && this.intercepting !== true) {
      return fastTrustFree(this, this.i32[this.sizeTab + ((size + 7) >> 3)], ptr);
    }
    // Through Heap.free, whose frame the debug layer's stack capture starts from.
    super.free(ptr, size);
  }
}

/**
 * The handle of a heap whose only debugging is what the debug fast path serves (`guards`,
 * `contents`, `verbose`, `firewall`, sampled `audit`; debug_quick.ts). Its `alloc` and `free`
 * are functions of their own that go straight to that path for the sizes it serves, as libumem's
 * `umem_cache_alloc` goes to `umem_cache_alloc_debug` on a cache with `UMF_BUFTAG`: a loop of
 * pairs then inlines the checks themselves rather than calling through the three levels of
 * {@linkcode Heap.alloc}'s intercepting paths, and a checked heap's own `alloc` and `free`
 * carry none of it (see {@linkcode TrustingHeap}). With a hook attached, `debugQuick` is 0
 * and every call goes through {@linkcode Heap.alloc} and {@linkcode Heap.free}, hooks and all.
 */
class DebuggingHeap extends Heap {
  /**
   * See {@linkcode Heap.create} and {@linkcode Heap.attach}, which make it.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
  }

  /** `umem_alloc` with the buffer's tag checked and laid; other sizes as {@linkcode Heap.alloc}. */
  override alloc(size: number): number {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size) {
      return quickAlloc(this, this.i32[this.sizeTab + ((size + 7) >> 3)], size);
    }
    return super.alloc(size) | 0;
  }

  /**
   * `umem_free` with the buffer's tag checked; an address past this worker's views (another
   * worker grew the heap), other sizes and any doubt go to {@linkcode Heap.free}, which syncs
   * first.
   */
  override free(ptr: number, size: number): void {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size && ptr < this.mapped) {
      return quickFree(this, this.i32[this.sizeTab + ((size + 7) >> 3)], ptr, size);
    }
    super.free(ptr, size);
  }
}

/**
 * The handle of a heap whose only checks are the guards' (`guards`, with `verbose` or
 * `firewall` or not): a {@linkcode DebuggingHeap} whose `alloc` and `free` go to the guards'
 * own fast path (debug_quick.ts's `guardsAllocQuick`), which tests no flag and lays no pattern.
 * The two are small enough that a loop of pairs inlines both whole, as it does a plain heap's.
 * ({@linkcode PatterningHeap} and {@linkcode SamplingHeap} are written the same way, each a
 * class of its own rather than one class with the pair in a field: V8 keeps a call's feedback
 * per method, and one `alloc` shared by the three would see three targets and inline none.)
 */
class GuardingHeap extends DebuggingHeap {
  /**
   * See {@linkcode Heap.create} and {@linkcode Heap.attach}, which make it.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
  }

  /** `umem_alloc` with the buffer's tag checked and laid; other sizes as {@linkcode Heap.alloc}. */
  override alloc(size: number): number {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size) {
      return guardsAlloc(this, this.i32[this.sizeTab + ((size + 7) >> 3)], size);
    }
    return super.alloc(size) | 0;
  }

  /** `umem_free` with the buffer's tag checked; as {@linkcode DebuggingHeap.free} otherwise. */
  override free(ptr: number, size: number): void {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size && ptr < this.mapped) {
      return guardsFree(this, this.i32[this.sizeTab + ((size + 7) >> 3)], ptr, size);
    }
    super.free(ptr, size);
  }
}

/**
 * The handle of a heap whose debugging is the patterns' and perhaps the guards' (`contents`,
 * with `guards`, `verbose` or `firewall` or not): a {@linkcode DebuggingHeap} whose `alloc` and
 * `free` go to the patterns' own pair, debug_quick.ts's `contentsAllocQuick` and
 * `contentsFreeQuick`, as {@linkcode GuardingHeap}'s go to the guards'.
 */
class PatterningHeap extends DebuggingHeap {
  /**
   * See {@linkcode Heap.create} and {@linkcode Heap.attach}, which make it.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
  }

  /** `umem_alloc` with the tag and the pattern checked and laid; else {@linkcode Heap.alloc}. */
  override alloc(size: number): number {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size) {
      return contentsAlloc(this, this.i32[this.sizeTab + ((size + 7) >> 3)], size);
    }
    return super.alloc(size) | 0;
  }

  /** `umem_free` with the tag checked and the pattern laid; else {@linkcode DebuggingHeap.free}. */
  override free(ptr: number, size: number): void {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size && ptr < this.mapped) {
      return contentsFree(this, this.i32[this.sizeTab + ((size + 7) >> 3)], ptr, size);
    }
    super.free(ptr, size);
  }
}

/**
 * The handle of a heap that samples its audit, with the guards and without the patterns
 * (`audit=frames/rate`, with `verbose` or `firewall` or not): a {@linkcode DebuggingHeap} whose
 * `alloc` and `free` go to the sampled audit's own pair, debug_quick.ts's `sampledAllocQuick`
 * and `sampledFreeQuick`, as {@linkcode GuardingHeap}'s go to the guards'.
 */
class SamplingHeap extends DebuggingHeap {
  /**
   * See {@linkcode Heap.create} and {@linkcode Heap.attach}, which make it.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
  }

  /** `umem_alloc` with the tag checked and laid, the audit counted; else {@linkcode Heap.alloc}. */
  override alloc(size: number): number {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size) {
      return sampledAlloc(this, this.i32[this.sizeTab + ((size + 7) >> 3)], size);
    }
    return super.alloc(size) | 0;
  }

  /** `umem_free` with the tag checked, the audit counted; else {@linkcode DebuggingHeap.free}. */
  override free(ptr: number, size: number): void {
    if (size > 0 && size <= this.debugQuick && (size | 0) === size && ptr < this.mapped) {
      return sampledFree(this, this.i32[this.sizeTab + ((size + 7) >> 3)], ptr, size);
    }
    super.free(ptr, size);
  }
}

/**
 * The handle of a heap that audits and whose debugging the debug fast path does not serve
 * (`audit` on every transaction, `default`, or with the transaction log). Its `alloc` and
 * `free` capture an audited transaction's stack themselves, first thing, and hand the raw
 * capture down as a pending id (stack.ts): V8's capture costs about 0.15 µs for each frame it
 * walks, and from here it walks none of umem's (from the audit record's writer it walked eight,
 * from the intercepting path four). Every other transaction, and a heap with a hook (the hooks
 * run first; `auditEntry` is false), takes {@linkcode Heap.alloc} and {@linkcode Heap.free}.
 *
 * A heap that samples its audit and has no log stays a {@linkcode DebuggingHeap}: the debug
 * fast path serves the transactions a sample leaves out, and its ways out capture the sampled
 * one. Sampling here instead, at the entry, gained a tenth at 1 in 100 and lost a fifth at 1 in
 * 10,000: V8 inlined the sampled path's calls into the pair loop at the fast path's expense.
 * (The capture is written out in `alloc` and `free`: a shared helper walked one frame more,
 * 1.38-1.50x the bare capture against 1.30-1.42x.)
 */
class AuditingHeap extends Heap {
  /**
   * See {@linkcode Heap.create} and {@linkcode Heap.attach}, which make it.
   *
   * @param sab the image
   * @param slot the worker slot
   */
  constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
  }

  /** See {@linkcode AuditingLibc}. */
  protected override makeLibc(): Libc {
    return new AuditingLibc(this);
  }

  /** `umem_zalloc`, its stack captured here when it is audited. */
  override zalloc(size: number): number {
    return withEntryStack(this, AuditingHeap.prototype.zalloc, () => super.zalloc(size));
  }

  /** `umem_alloc`, its stack captured here when it is audited. */
  override alloc(size: number): number {
    // (An outer entry point that captured its own, zalloc or libc's, stands for this one.)
    if (!auditsNext(this) || this.entryStack !== 0) return super.alloc(size) | 0;
    const limit = ErrorApi.stackTraceLimit;
    ErrorApi.stackTraceLimit = entryCaptureLimit(this);
    const holder = RAW_BY_ERROR ? new Error() : {};
    if (!RAW_BY_ERROR) ErrorApi.captureStackTrace(holder, AuditingHeap.prototype.alloc);
    ErrorApi.stackTraceLimit = limit;
    // withPreStack written out: no closure to make on every audited transaction.
    const pre = this.preStack;
    this.preStack = keepPending(this, holder);
    try {
      return super.alloc(size) | 0;
    } finally {
      this.preStack = pre;
    }
  }

  /** `umem_free`, its stack captured here when it is audited. */
  override free(ptr: number, size: number): void {
    if (!auditsNext(this) || this.entryStack !== 0) return super.free(ptr, size);
    const limit = ErrorApi.stackTraceLimit;
    ErrorApi.stackTraceLimit = entryCaptureLimit(this);
    const holder = RAW_BY_ERROR ? new Error() : {};
    if (!RAW_BY_ERROR) ErrorApi.captureStackTrace(holder, AuditingHeap.prototype.free);
    ErrorApi.stackTraceLimit = limit;
    const pre = this.preStack; // (withPreStack written out, as alloc's)
    this.preStack = keepPending(this, holder);
    try {
      super.free(ptr, size);
    } finally {
      this.preStack = pre;
    }
  }
}

/**
 * Runs `f`, the body of public entry point `above` of audited handle `h` (one that calls
 * others: `zalloc`, libc's), with the stack captured here standing for every transaction it
 * makes (`HeapView.entryStack`): the frames of the entry points inside take none of the audit
 * depth. A capture made by an outer entry point stands for an inner one's.
 */
function withEntryStack<T>(h: Heap, above: unknown, f: () => T): T {
  if (!auditsNext(h) || h.entryStack !== 0) return f();
  const limit = ErrorApi.stackTraceLimit;
  ErrorApi.stackTraceLimit = entryCaptureLimit(h);
  const holder = RAW_BY_ERROR ? new Error() : {};
  if (!RAW_BY_ERROR) ErrorApi.captureStackTrace(holder, above);
  ErrorApi.stackTraceLimit = limit;
  h.entryStack = keepPending(h, holder);
  try {
    return f();
  } finally {
    h.entryStack = 0;
  }
}

/**
 * The malloc-compatible interface of an audited handle ({@linkcode AuditingHeap}): each entry
 * point captures its caller's stack itself, as the handle's `alloc` and `free` do, so that a
 * block's audit record names the user's frames to the audit depth, not `malloc`'s own.
 */
class AuditingLibc extends Libc {
  /**
   * See {@linkcode AuditingHeap}, which makes it.
   *
   * @param heap the audited handle
   */
  constructor(private readonly audited: Heap) {
    super(audited);
  }

  /** `malloc`, its stack captured here when it is audited. */
  override malloc(n: number): number {
    return withEntryStack(this.audited, AuditingLibc.prototype.malloc, () => super.malloc(n));
  }

  /** `calloc`, its stack captured here when it is audited. */
  override calloc(n: number, size: number): number {
    return withEntryStack(
      this.audited,
      AuditingLibc.prototype.calloc,
      () => super.calloc(n, size),
    );
  }

  /** `free`, its stack captured here when it is audited. */
  override free(ptr: number): void {
    withEntryStack(this.audited, AuditingLibc.prototype.free, () => super.free(ptr));
  }

  /** `realloc`, its stack captured here when it is audited. */
  override realloc(ptr: number, n: number): number {
    return withEntryStack(
      this.audited,
      AuditingLibc.prototype.realloc,
      () => super.realloc(ptr, n),
    );
  }

  /** `memalign`, its stack captured here when it is audited. */
  override memalign(align: number, n: number): number {
    return withEntryStack(
      this.audited,
      AuditingLibc.prototype.memalign,
      () => super.memalign(align, n),
    );
  }
}
