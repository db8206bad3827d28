/**
 * Regions: Vmalloc's `Vmalloc_t` (Vo 1996). A region is a discipline (where raw memory comes
 * from, region/discipline.ts) and a method (how blocks are managed: best, pool, last, debug,
 * profile), opened with `Region.open(discipline, method, options)`.
 *
 * Theory. The region record and every structure of the method live in the region's memory
 * (region/layout.ts), so a {@linkcode Region} is a handle: any worker that holds the buffer
 * opens the same region, and a buffer saved to a file opens again with its blocks. The handle
 * does what all methods share: it screens arguments, takes the region lock, calls the method,
 * tells the discipline's `except` of events (`open`, `close`, `nomem`, `badaddr`) and obeys its
 * answer, writes the trace line (`old:new:size:region:method:file,line:`), and routes a
 * problem to the caller: thrown as a {@linkcode RegionError}, or, when `onError` is given,
 * handed to it while the bad call is refused and returns 0 (Vmdebug without `VM_DBABORT`).
 *
 * Invariants.
 * - `RG_MAGIC` is {@linkcode RG_MAGIC_VALUE} from the moment the record is complete until
 *   `close`; every call of a checking handle tests it, so a handle to a closed region fails
 *   (`destroyed`) instead of writing into memory that is no longer the region's.
 * - A call either completes or leaves the region as it was (bad input is refused before the
 *   method changes anything).
 * - `onError`, `onAlert`, `trace` and the discipline's `except` run outside the lock, so they
 *   may call the region again.
 *
 * Lock order: region lock (region/lock.ts) → the discipline's locks (a heap's vmem and cache
 * locks). A trusted region (`trust`, `VM_TRUST`) takes no lock and checks no argument.
 *
 * @module
 */
import { checkSize, hex } from "../core/internal.ts";
import { OutOfMemoryError, UmemError } from "../core/mod.ts";
import { best, screen } from "./best.ts";
import { Blocks, Found } from "./blocks.ts";
import { checkRegion, debug, watchAddress } from "./debug.ts";
import type { Discipline, EventDetail, RegionEvent } from "./discipline.ts";
import { RegionError, type Site } from "./errors.ts";
import { last } from "./last.ts";
import {
  BK_CHECK,
  F_BUSY,
  K_BUSY,
  M_DEBUG,
  M_PROFILE,
  RF_CHECK,
  RF_TRUST,
  RG_COPIED,
  RG_EXTENT,
  RG_FLAGS,
  RG_GEN,
  RG_LOCK,
  RG_MAGIC,
  RG_MAGIC_DEAD,
  RG_MAGIC_VALUE,
  RG_MAXBUSY,
  RG_METHOD,
  RG_MOVES,
  RG_NALLOC,
  RG_NEXTID,
  RG_NFREE,
  RG_SEGS,
  RG_SITES,
  RG_SIZE,
  RG_VERSION,
  RG_VERSION_VALUE,
  RG_WILD,
  roundUp,
  SE_BUSY,
  SENTINEL,
  SG_HDR,
  SG_MAGIC,
  SG_MAGIC_VALUE,
  SG_NEXT,
  SG_SIZE,
  ST_BYTES,
  ST_COUNT,
} from "./layout.ts";
import { regionLock, regionUnlock } from "./lock.ts";
import type { Method, MethodContext } from "./method.ts";
import { pool } from "./pool.ts";
import { profile, profileReport } from "./profile.ts";
import { captureSite, initSites, internSite, siteAt, siteEntry } from "./sites.ts";
import { formatTraceLine } from "./trace.ts";

/** The method names `Region.open` takes (Vmalloc's `Vmbest`, `Vmpool`, ... are accepted too). */
export type MethodName = "best" | "pool" | "last" | "debug" | "profile";

/** The methods by name and by code. */
const METHODS: Record<MethodName, Method> = { best, pool, last, debug, profile };
const BY_CODE = new Map<number, MethodName>(
  (Object.keys(METHODS) as MethodName[]).map((n) => [METHODS[n].code, n]),
);

/** The largest size a call accepts. */
export const MAX_REQUEST = 2 ** 30;

/** Options of {@linkcode Region.open}. */
export interface RegionOptions {
  /** Called with a trace line (`old:new:size:region:method:file,line:`) after every call. */
  trace?: (line: string) => void;
  /** `VM_TRUST`: no locking and no argument checks (one user at a time, who is never wrong). */
  trust?: boolean;
  /** `VM_DBCHECK` (debug): check the whole region at every allocation. */
  check?: boolean;
  /**
   * Hears every problem instead of its being thrown: the bad call is refused (returns 0) and
   * the program goes on (Vmdebug without `VM_DBABORT`).
   */
  onError?: (report: UmemError) => void;
  /** Hears the alerts of watched addresses (debug); by default they go to `console.error`. */
  onAlert?: (line: string) => void;
}

/** Options of {@linkcode Region.resize}: `VM_RSMOVE`, `VM_RSCOPY`, `VM_RSCLEAR`. */
export interface ResizeOptions {
  /** `VM_RSMOVE`: the block may move (default true). */
  move?: boolean;
  /** `VM_RSCOPY`: if it moves, its data is copied (default true). */
  copy?: boolean;
  /** `VM_RSCLEAR`: the bytes past the old size are zeroed (default false). */
  clear?: boolean;
}

/** What {@linkcode Region.stat} reports (Vmalloc's `Vmstat_t`). */
export interface RegionStats {
  /** The method's name. */
  method: MethodName;
  /** Busy blocks. */
  busyCount: number;
  /** Bytes of busy blocks (their data, headers excluded). */
  busyBytes: number;
  /** Free blocks (free, cached, and free pool blocks). */
  freeCount: number;
  /** Bytes of free blocks (their data). */
  freeBytes: number;
  /** Bytes of all segments. */
  extent: number;
  /** The most bytes of busy blocks at once (headers included). */
  maxBusy: number;
  /** Allocations since the region was made. */
  allocs: number;
  /** Frees since the region was made. */
  frees: number;
  /** Blocks that `resize` moved. */
  moves: number;
  /** Bytes `resize` copied when it moved blocks. */
  copied: number;
}

/**
 * The uniform allocator face (DESIGN.md, principle 10) that the profiler replays traces
 * against: every region answers it, whatever its method.
 */
export interface RegionAllocator {
  /** Allocates `size` bytes; returns the address (0 when refused). */
  alloc(size: number): number;
  /** Frees a block. */
  free(ptr: number): void;
  /** Resizes a block; returns its address now (0 when refused). */
  resize(ptr: number, size: number): number;
  /** The region's figures. */
  stat(): RegionStats;
}

/** The context a handle gives its method (not exported). */
class Context implements MethodContext {
  readonly bk: Blocks;
  readonly checking: boolean;
  /** This call's site, once captured. */
  current: Site | null = null;
  /** Reports waiting for `onError`. */
  pending: RegionError[] = [];
  /** Alerts waiting for `onAlert`. */
  alerts: string[] = [];
  /** This handle's memo of the site table. */
  memo = new Map<string, number>();
  /** Whether reports are queued (onError given) or thrown. */
  readonly queue: boolean;

  /**
   * Makes the context.
   *
   * @param bk the store
   * @param checking whether arguments are checked
   * @param queue whether reports are queued for onError
   */
  constructor(bk: Blocks, checking: boolean, queue: boolean) {
    this.bk = bk;
    this.checking = checking;
    this.queue = queue;
  }

  /** The current call's site. */
  site(): Site {
    return this.current ??= captureSite();
  }

  /** The current call's site index. */
  siteIndex(): number {
    return internSite(this.bk, this.memo, this.site());
  }

  /** The site at index `i`. */
  siteAt(i: number): Site {
    return siteAt(this.bk, i);
  }

  /** Queues an alert. */
  alert(line: string): void {
    this.alerts.push(line);
  }

  /** Throws or queues a report. */
  report(e: RegionError): void {
    if (!this.queue) throw e;
    this.pending.push(e);
  }
}

/**
 * A Vmalloc region: blocks from a discipline's memory, managed by a method.
 *
 * @example
 * ```ts
 * import { growableDiscipline, Region } from "@umem/umem/region";
 * const r = Region.open(growableDiscipline({ maxSize: 1 << 24 }), "best");
 * const p = r.alloc(100);
 * new Uint8Array(r.buffer).fill(7, p, p + 100);
 * const q = r.resize(p, 5000); // moves, copying the 100 bytes
 * console.log(new Uint8Array(r.buffer)[q + 99]); // 7
 * r.free(q);
 * console.log(r.stat().busyCount); // 0
 * r.close();
 * ```
 */
export class Region implements RegionAllocator {
  /** The discipline the region's memory comes from. */
  readonly discipline: Discipline;
  /** The region record's address (a region is known by it, as in trace lines). */
  readonly address: number;
  /** The method. */
  private readonly m: Method;
  /** The method context. */
  private readonly c: Context;
  /** The block store. */
  private readonly bk: Blocks;
  /** This handle's lock tag. */
  private readonly me: number;
  /** No locks, no checks. */
  private readonly trusted: boolean;
  /** The user's problem handler. */
  private readonly onError?: (report: UmemError) => void;
  /** The user's alert handler. */
  private readonly onAlert?: (line: string) => void;
  /** The trace sink. */
  private readonly tracer?: (line: string) => void;
  /** The home segment. */
  private readonly home: number;
  /** Set by close. */
  private closed = false;
  /** The region's generation when this handle opened it (`RG_GEN`). */
  private readonly gen: number;

  /**
   * Makes a handle over the record at `rec`.
   *
   * @param disc the discipline
   * @param rec the record
   * @param options the handle's options
   */
  private constructor(disc: Discipline, rec: number, options: RegionOptions) {
    this.discipline = disc;
    this.address = rec;
    this.bk = new Blocks(disc, rec);
    this.bk.owner = this;
    this.m = METHODS[BY_CODE.get(this.bk.get(RG_METHOD))!];
    this.trusted = (this.bk.get(RG_FLAGS) & RF_TRUST) !== 0;
    this.c = new Context(this.bk, !this.trusted, options.onError !== undefined);
    this.onError = options.onError;
    this.onAlert = options.onAlert;
    this.tracer = options.trace;
    this.home = rec - SG_HDR;
    this.me = ((Atomics.add(this.bk.i32, (rec + RG_NEXTID) >> 2, 1) >>> 0) % 0x3ffffffe) + 1;
    this.gen = this.bk.i32[(rec + RG_GEN) >> 2];
  }

  /**
   * Opens a region (`vmopen`): a new one in memory from the discipline, or, when the
   * discipline's buffer already holds a region at its home address (a buffer from another
   * worker, or one saved to a file and read back), that region with all its blocks.
   *
   * @param discipline where memory comes from
   * @param method `"best"`, `"pool"`, `"last"`, `"debug"` or `"profile"` (or `"Vmbest"`, ...)
   * @param options trace, trust, check, onError, onAlert
   * @returns the region
   * @throws {UmemError} `invalid-argument` for an unknown method, a bad discipline, a reopened
   *   region of another method or other `trust` or `check` (they are the region's, kept in its
   *   record: a reopen that leaves them out gets them), or an open the discipline refused; `corrupt-image` when the
   *   buffer holds something that is not a region of this format; `out-of-memory` when the
   *   discipline has no memory for the record
   *
   * @example
   * ```ts
   * import { bufferDiscipline, Region } from "@umem/umem/region";
   * const sab = new SharedArrayBuffer(1 << 16);
   * const r = Region.open(bufferDiscipline(sab), "pool");
   * const a = r.alloc(40), b = r.alloc(40);
   * console.log(b - a); // 48
   * ```
   */
  static open(
    discipline: Discipline,
    method: MethodName | `Vm${string}`,
    options: RegionOptions = {},
  ): Region {
    options ??= {}; // null: the defaults
    const name = methodName(method);
    checkDiscipline(discipline);
    const home = discipline.home;
    if (home !== undefined) {
      const u32 = new Uint32Array(discipline.buffer);
      if (u32[(home + SG_SIZE) >> 2] !== 0) {
        const rec = home + SG_HDR;
        checkRecord(discipline, rec);
        if (BY_CODE.get(u32[(rec + RG_METHOD) >> 2]) !== name) {
          throw new UmemError(
            "invalid-argument",
            `vmopen: the region at ${hex(rec)} uses method ${
              METHODS[BY_CODE.get(u32[(rec + RG_METHOD) >> 2])!].name
            }, not ${METHODS[name].name}`,
          );
        }
        // trust and check live in the record, for every user of the region: a reopen that asks
        // for other ones would get the record's, silently, so it is refused, as another method is.
        const flags = u32[(rec + RG_FLAGS) >> 2], debug = name === "debug";
        for (
          const [asked, flag, what] of [
            [options.trust, RF_TRUST, "trust"],
            [debug ? options.check : undefined, RF_CHECK, "check"],
          ] as const
        ) {
          // (Truthiness, as a new region's flags are taken.)
          if (asked !== undefined && Boolean(asked) !== ((flags & flag) !== 0)) {
            throw new UmemError(
              "invalid-argument",
              `vmopen: the region at ${hex(rec)} was opened with ${what} ${
                (flags & flag) !== 0
              }; a reopen cannot make it ${Boolean(asked)}`,
            );
          }
        }
        return Region.reopen(discipline, rec, options);
      }
    }
    if (discipline.except?.(null, "open", { reopen: false }) === false) {
      throw new UmemError("invalid-argument", "vmopen: the discipline refused the open");
    }
    const m = METHODS[name];
    const sites = m.code === M_DEBUG || m.code === M_PROFILE ? ST_BYTES : 0;
    const first = roundUp(SG_HDR + RG_SIZE + sites, 8);
    const size = roundUp(first + 4096 + SENTINEL, discipline.round);
    const seg = discipline.memory(null, 0, 0, size);
    if (seg === 0 || (seg & 7) !== 0) {
      throw new OutOfMemoryError(`vmopen: the discipline has no ${size} bytes for a region`);
    }
    const rec = seg + SG_HDR;
    const bk = new Blocks(discipline, rec);
    const gen = newGeneration(bk.i32, rec);
    bk.u8.fill(0, rec, rec + RG_SIZE);
    bk.set(RG_GEN, gen);
    bk.set(RG_VERSION, RG_VERSION_VALUE);
    bk.set(RG_METHOD, m.code);
    bk.set(
      RG_FLAGS,
      (options.trust ? RF_TRUST : 0) | (options.check && m.code === M_DEBUG ? RF_CHECK : 0),
    );
    if (sites !== 0) {
      bk.set(RG_SITES, rec + RG_SIZE);
      initSites(bk, rec + RG_SIZE);
    }
    const block = bk.initSegment(seg, size, seg + first);
    bk.set(RG_SEGS, seg);
    bk.set(RG_WILD, block);
    bk.set(RG_EXTENT, size);
    Atomics.store(bk.i32, (rec + RG_MAGIC) >> 2, RG_MAGIC_VALUE);
    return new Region(discipline, rec, options);
  }

  /**
   * Opens a region that already exists at a known record address: how another worker opens a
   * region that lives in a heap (a heap discipline places segments anywhere, so the address
   * must be passed along, as {@linkcode Region.address}).
   *
   * @param discipline a discipline over the same buffer
   * @param address the region record's address
   * @param options the handle's trace, onError and onAlert
   * @returns a handle on the region
   * @throws {UmemError} `corrupt-image` when there is no region of this format at `address`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { heapDiscipline, Region } from "@umem/umem/region";
   * const heap = Heap.create({ size: 1 << 20 });
   * const r = Region.open(heapDiscipline(heap), "best");
   * const p = r.alloc(64);
   * const other = Region.attach(heapDiscipline(heap), r.address); // e.g. in another worker
   * other.free(p);
   * console.log(r.stat().busyCount); // 0
   * ```
   */
  static attach(discipline: Discipline, address: number, options: RegionOptions = {}): Region {
    options ??= {}; // null: the defaults
    checkDiscipline(discipline);
    checkRecord(discipline, address);
    return Region.reopen(discipline, address, options);
  }

  /** Makes a handle over an existing, checked record, asking the discipline first. */
  private static reopen(discipline: Discipline, rec: number, options: RegionOptions): Region {
    if (discipline.except?.(null, "open", { reopen: true }) === false) {
      throw new UmemError("invalid-argument", "vmopen: the discipline refused the open");
    }
    return new Region(discipline, rec, options);
  }

  /**
   * The SharedArrayBuffer the region's blocks live in; addresses are byte offsets into it.
   *
   * @returns the buffer
   */
  get buffer(): SharedArrayBuffer {
    return this.discipline.buffer;
  }

  /**
   * The region's method.
   *
   * @returns its name
   */
  get method(): MethodName {
    return BY_CODE.get(this.m.code)!;
  }

  /**
   * Allocates a block of at least `size` bytes (`vmalloc`), 8-aligned, not cleared.
   * `alloc(0)` gives a block of the least size.
   *
   * @param size bytes
   * @returns the block's address; 0 when refused with an `onError` handler
   * @throws {UmemError} `out-of-memory` when the discipline has no more memory (and `except`
   *   did not ask for a retry); `invalid-argument` for a bad size; `wrong-size` for a pool
   *   block of another size
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "best");
   * const p = r.alloc(24);
   * console.log(p % 8, r.size(p) >= 24); // 0 true
   * ```
   */
  alloc(size: number): number {
    const c = this.c;
    c.current = null;
    if (!this.trusted) {
      try {
        this.live("vmalloc");
        checkSize("vmalloc", "size", size, 0, MAX_REQUEST);
      } catch (e) {
        return this.fail(e, 0);
      }
    }
    for (let tries = 0;; tries++) {
      let p = 0;
      try {
        this.lock("vmalloc");
      } catch (e) {
        return this.fail(e, 0);
      }
      try {
        p = this.m.alloc(c, size);
        if (p !== 0) this.bk.set(RG_NALLOC, this.bk.get(RG_NALLOC) + 1);
      } catch (e) {
        this.unlock();
        return this.fail(e, 0);
      }
      this.unlock();
      this.flush();
      if (p !== 0) {
        if (this.tracer) this.trace(0, p, size);
        return p;
      }
      const answer = this.event("nomem", { size });
      if (answer === "retry" && tries < 64) continue;
      return this.fail(
        new OutOfMemoryError(
          `vmalloc: region ${hex(this.address)} has no memory for ${size} bytes ` +
            `(its discipline gave no more)`,
        ),
        0,
      );
    }
  }

  /**
   * Frees a block (`vmfree`). `free(0)` does nothing. Unless the region is trusted, an address
   * that is not a live block of the region is refused and changes nothing.
   *
   * @param ptr the block
   * @throws {UmemError} `bad-free` for an address the region did not hand out (or, under
   *   `last`, a block that is not the last), `duplicate-free` for a block already freed;
   *   `redzone-violation` under `debug` for a block written past its end
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "best");
   * const p = r.alloc(10);
   * r.free(p);
   * try {
   *   r.free(p);
   * } catch (e) {
   *   console.log((e as { kind: string }).kind); // "duplicate-free"
   * }
   * ```
   */
  free(ptr: number): void {
    if (ptr === 0) return;
    const c = this.c;
    c.current = null;
    if (!this.trusted) {
      try {
        this.live("vmfree");
        checkSize("vmfree", "address", ptr, 0, 0xffffffff);
      } catch (e) {
        this.fail(e, 0);
        return;
      }
    }
    let size = 0;
    try {
      this.lock("vmfree");
    } catch (e) {
      this.fail(e, 0);
      return;
    }
    try {
      const before = c.pending.length;
      if (this.tracer && this.bk.classify(ptr) === Found.Busy) size = this.sizeOf(ptr);
      this.m.free(c, ptr);
      if (c.pending.length === before) this.bk.set(RG_NFREE, this.bk.get(RG_NFREE) + 1);
      else size = -1;
    } catch (e) {
      this.unlock();
      this.fail(e, 0);
      return;
    }
    this.unlock();
    this.flush();
    if (this.tracer && size >= 0) this.trace(ptr, 0, size);
  }

  /**
   * Resizes a block (`vmresize`): in place when it can; else, with `move` (`VM_RSMOVE`,
   * default true), at a new address, with the data copied when `copy` (`VM_RSCOPY`, default
   * true); `clear` (`VM_RSCLEAR`) zeroes the bytes past the old size. `resize(0, n)` allocates
   * and `resize(p, 0)` frees.
   *
   * @param ptr the block
   * @param size the new size
   * @param options move, copy, clear
   * @returns the block's address now, or 0 when it could not be resized in place and may not
   *   move (or the call was refused with an `onError` handler)
   * @throws {UmemError} as {@linkcode Region.free} for a bad address; `out-of-memory` when it
   *   must move and there is no memory; `invalid-argument` under `last` for a block that is
   *   not the last
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "best");
   * const p = r.alloc(16);
   * const q = r.resize(p, 64, { clear: true });
   * console.log(new Uint8Array(r.buffer)[q + 63]); // 0
   * ```
   */
  resize(ptr: number, size: number, options: ResizeOptions = {}): number {
    if (ptr === 0) {
      // A new block: with `clear`, all of it is past the old size (Vmalloc's resize of NULL
      // with VM_RSCLEAR zeroes it).
      const p = this.alloc(size);
      if (p > 0 && options?.clear === true) this.bk.u8.fill(0, p, p + size);
      return p;
    }
    if (size === 0) {
      this.free(ptr);
      return 0;
    }
    options ??= {}; // null: the defaults
    const move = options.move ?? true, copy = options.copy ?? true;
    const c = this.c;
    c.current = null;
    if (!this.trusted) {
      try {
        this.live("vmresize");
        checkSize("vmresize", "address", ptr, 0, 0xffffffff);
        checkSize("vmresize", "size", size, 0, MAX_REQUEST);
      } catch (e) {
        return this.fail(e, 0);
      }
    }
    for (let tries = 0;; tries++) {
      let p = 0, refused = false;
      try {
        this.lock("vmresize");
      } catch (e) {
        return this.fail(e, 0);
      }
      try {
        const before = c.pending.length;
        // A bad address is vmresize's to report (m.size's own check would name vmsize);
        // Vmdebug reports it its own way.
        if (this.m.code !== M_DEBUG) screen(c, "vmresize", ptr);
        const old = this.m.size(c, ptr);
        refused = c.pending.length !== before;
        if (!refused) {
          p = this.m.resize(c, ptr, size, move, copy);
          refused = c.pending.length !== before;
          // Zeroed up to the block's usable size, as Vmalloc clears to the block's end: a block
          // moved to grow has room past `size`, which a later resize in place hands out.
          if (p !== 0 && options.clear) {
            const end = p + Math.max(size, this.m.size(c, p));
            if (end > p + old) this.bk.u8.fill(0, p + old, end);
          }
        }
      } catch (e) {
        this.unlock();
        return this.fail(e, 0);
      }
      this.unlock();
      this.flush();
      if (p !== 0) {
        if (this.tracer) this.trace(ptr, p, size);
        return p;
      }
      if (refused || !move) return 0;
      const answer = this.event("nomem", { size });
      if (answer === "retry" && tries < 64) continue;
      return this.fail(
        new OutOfMemoryError(
          `vmresize: region ${hex(this.address)} has no memory to move ${
            hex(ptr)
          } to ${size} bytes`,
        ),
        0,
      );
    }
  }

  /**
   * Frees every block at once (`vmclear`); the memory stays with the region. A pool's size is
   * fixed again by the next allocation.
   *
   * @throws {UmemError} `destroyed` after `close`
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "pool");
   * r.alloc(32);
   * r.clear();
   * r.alloc(100); // a new pool size
   * console.log(r.stat().busyCount); // 1
   * ```
   */
  clear(): void {
    this.guard("vmclear", () => {
      this.bk.clear();
      const table = this.bk.get(RG_SITES);
      if (table !== 0) {
        const n = this.bk.u32[(table + ST_COUNT) >> 2];
        for (let i = 0; i < n; i++) this.bk.set(siteEntry(this.bk, i) - this.address + SE_BUSY, 0);
      }
    });
  }

  /**
   * Gives unused memory back through the discipline (`vmcompact`): cached blocks are merged,
   * wholly free segments (but the first) are returned, and the free end of the newest segment
   * is cut off as far as the discipline lets it shrink.
   *
   * @returns bytes given back
   * @throws {UmemError} `destroyed` after `close`
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline({ maxSize: 1 << 24 }), "best");
   * r.free(r.alloc(1 << 20));
   * console.log(r.compact() > 0); // true
   * ```
   */
  compact(): number {
    return this.guard("vmcompact", () => this.bk.compact(this.home));
  }

  /**
   * The region's figures (`vmstat`): busy and free blocks and bytes, the extent, the most
   * busy, the calls, and the moves and copies of `resize`.
   *
   * @returns the figures
   * @throws {UmemError} `destroyed` after `close`
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "last");
   * r.alloc(100);
   * const s = r.stat();
   * console.log(s.busyCount, s.busyBytes); // 1 104
   * ```
   */
  stat(): RegionStats {
    return this.guard("vmstat", () => {
      const bk = this.bk, u32 = bk.u32;
      let busyCount = 0, busyBytes = 0, freeCount = 0, freeBytes = 0;
      bk.walk((b, size) => {
        const key = (u32[(b + BK_CHECK) >> 2] ^ b) >>> 0;
        if ((u32[b >> 2] & F_BUSY) !== 0 && key === K_BUSY) busyCount++, busyBytes += size - 8;
        else freeCount++, freeBytes += size - 8; // free, junk, or a free pool block
      });
      return {
        method: this.method,
        busyCount,
        busyBytes,
        freeCount,
        freeBytes,
        extent: bk.get(RG_EXTENT),
        maxBusy: bk.get(RG_MAXBUSY),
        allocs: bk.get(RG_NALLOC),
        frees: bk.get(RG_NFREE),
        moves: bk.get(RG_MOVES),
        copied: bk.f64[(this.address + RG_COPIED) >> 3],
      };
    });
  }

  /**
   * The busy block that contains address `a` (`vmaddr`), or 0 when `a` is in no busy block
   * (under `debug`, in none of the bytes asked for: the redzone after them is no block's).
   *
   * @param a any address
   * @returns the block's address, or 0
   * @throws {UmemError} `destroyed` after `close`
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "best");
   * const p = r.alloc(100);
   * console.log(r.addr(p + 50) === p, r.addr(1)); // true 0
   * ```
   */
  addr(a: number): number {
    return this.guard("vmaddr", () => {
      const b = Number.isInteger(a) ? this.bk.find(a) : 0;
      // Under debug, only the bytes asked for: not the redzone after them (Vmdebug's dbaddr).
      if (b !== 0 && a !== b && this.m.code === M_DEBUG && a >= b + this.m.size(this.c, b)) {
        return 0;
      }
      return b;
    });
  }

  /**
   * The size of a block (`vmsize`): its usable size, or, under `debug`, `profile` and `pool`,
   * the size asked for.
   *
   * @param ptr the block
   * @returns its size (-1 when refused with an `onError` handler)
   * @throws {UmemError} `bad-free` or `duplicate-free` for an address that is not a live block
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "debug");
   * console.log(r.size(r.alloc(5))); // 5
   * ```
   */
  size(ptr: number): number {
    this.c.current = null;
    let n = -1;
    try {
      n = this.guard(
        "vmsize",
        () => this.m.size(this.c, checkSize("vmsize", "address", ptr, 0, 0xffffffff)),
      );
    } catch (e) {
      return this.fail(e, -1);
    }
    this.flush();
    return n;
  }

  /**
   * Watches an address (`vmdbwatch`, debug only): every call that allocates, frees or
   * resizes the block at that address raises an alert (to `onAlert`, or `console.error`).
   *
   * @param addr the block's address (it need not be allocated yet)
   * @throws {UmemError} `invalid-argument` when the region's method is not `debug`, or the
   *   watch list (8 addresses) is full
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const alerts: string[] = [];
   * const r = Region.open(growableDiscipline(), "debug", { onAlert: (l) => alerts.push(l) });
   * const p = r.alloc(5);
   * r.watch(p);
   * r.free(p);
   * console.log(alerts[0].includes(":being freed:")); // true
   * ```
   */
  watch(addr: number): void {
    this.guard("vmdbwatch", () => {
      if (this.m.code !== M_DEBUG) {
        throw new UmemError(
          "invalid-argument",
          `vmdbwatch: region ${hex(this.address)} is not a debug region`,
        );
      }
      if (!watchAddress(this.bk, checkSize("vmdbwatch", "address", addr, 1, 0xffffffff))) {
        throw new UmemError("invalid-argument", `vmdbwatch: the watch list is full`);
      }
    });
  }

  /**
   * Checks the whole region (`vmdbcheck`): the structure of every segment, and, under
   * `debug`, the redzone of every busy block. Damage is returned, not thrown.
   *
   * @returns one report per problem (empty when sound)
   * @throws {UmemError} `destroyed` after `close`
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "debug");
   * const p = r.alloc(4);
   * new Uint8Array(r.buffer)[p + 4] = 1; // one byte too far
   * console.log(r.check()[0].message.includes("bad byte at=4")); // true
   * ```
   */
  check(): RegionError[] {
    this.c.current = null;
    return this.guard("vmdbcheck", () => {
      if (this.m.code === M_DEBUG) return checkRegion(this.c);
      return this.bk.verify().map((p) =>
        new RegionError(
          "boundary-tag-corrupted",
          `vmdbcheck: region ${hex(this.address)}: ${p}`,
          this.address,
          0,
        )
      );
    });
  }

  /**
   * The profile (`vmprofile`, profile only), in the format of the paper's Figure 10.
   *
   * @returns the report
   * @throws {UmemError} `invalid-argument` when the region's method is not `profile`
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "profile");
   * r.free(r.alloc(100));
   * console.log(r.report().split("\n")[0]);
   * // ALLOCATION USAGE SUMMARY: n_alloc=1:n_free=1:s_alloc=100:s_free=100:
   * ```
   */
  report(): string {
    return this.guard("vmprofile", () => {
      if (this.m.code !== M_PROFILE) {
        throw new UmemError(
          "invalid-argument",
          `vmprofile: region ${hex(this.address)} is not a profile region`,
        );
      }
      return profileReport(this.bk, this.m.name);
    });
  }

  /**
   * Checks the region's invariants (tiling, boundary tags, the free tree, the wilderness, the
   * busy counts), as `heap.verify()` does for the heap.
   *
   * @returns the problems found (empty when sound)
   *
   * @example
   * ```ts
   * import { growableDiscipline, Region } from "@umem/umem/region";
   * const r = Region.open(growableDiscipline(), "best");
   * r.free(r.alloc(10));
   * console.log(r.verify()); // []
   * ```
   */
  verify(): string[] {
    return this.guard("vmverify", () => this.bk.verify());
  }

  /**
   * Closes the region (`vmclose`): every segment goes back to the discipline and every handle
   * on the region fails from then on. The discipline's `except` may refuse (answer `false`).
   *
   * @returns false when the discipline refused
   * @throws {UmemError} `destroyed` when already closed
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { heapDiscipline, Region } from "@umem/umem/region";
   * const heap = Heap.create({ size: 1 << 20 });
   * const r = Region.open(heapDiscipline(heap), "best");
   * r.alloc(1000);
   * console.log(r.close(), heap.verify()); // true []
   * ```
   */
  close(): boolean {
    this.live("vmclose");
    if (this.event("close", {}) === false) return false;
    this.lock("vmclose"); // two closes racing: the second finds the region gone, frees nothing
    const bk = this.bk, u32 = bk.u32, segs: number[] = [];
    for (let s = bk.get(RG_SEGS); s !== 0; s = u32[(s + SG_NEXT) >> 2]) segs.push(s);
    Atomics.store(bk.i32, (this.address + RG_MAGIC) >> 2, RG_MAGIC_DEAD);
    if (!this.trusted) regionUnlock(bk.i32, this.address + RG_LOCK);
    for (const s of segs) {
      const size = u32[(s + SG_SIZE) >> 2];
      u32[(s + SG_MAGIC) >> 2] = 0;
      u32[(s + SG_SIZE) >> 2] = 0;
      this.discipline.memory(this, s, size, 0);
    }
    this.closed = true;
    return true;
  }

  /** Runs `f` under the lock after the liveness check. */
  private guard<T>(fn: string, f: () => T): T {
    if (this.trusted) this.live(fn); // (lock checks it in a region that is not trusted)
    this.lock(fn);
    try {
      return f();
    } finally {
      this.unlock();
    }
  }

  /**
   * Throws `destroyed` when the region was closed (by any handle), even when another has opened
   * at its address since (its generation differs).
   */
  private live(fn: string): void {
    const i32 = this.bk.i32;
    if (
      this.closed || Atomics.load(i32, (this.address + RG_MAGIC) >> 2) !== RG_MAGIC_VALUE ||
      i32[(this.address + RG_GEN) >> 2] !== this.gen
    ) {
      throw new UmemError(
        "destroyed",
        `${fn}: region ${hex(this.address)} was closed`,
        this.address,
      );
    }
  }

  /**
   * Takes the region lock (not in a trusted region), then catches up with the buffer's growth.
   * The region is checked live before (a retry after a handler closed it: its lock word may be
   * another owner's memory by now) and again once the lock is held (another handle's close may
   * have run in between: nothing may be done in a region that is gone).
   * @throws {UmemError} `destroyed` naming `fn` when the region was closed
   */
  private lock(fn: string): void {
    if (this.trusted) {
      this.bk.refresh();
      return;
    }
    this.live(fn);
    regionLock(this.bk.i32, this.address + RG_LOCK, this.me);
    this.bk.refresh();
    try {
      this.live(fn);
    } catch (e) {
      regionUnlock(this.bk.i32, this.address + RG_LOCK);
      throw e;
    }
  }

  /** Releases the region lock. */
  private unlock(): void {
    if (!this.trusted) regionUnlock(this.bk.i32, this.address + RG_LOCK);
  }

  /** The usable size of a busy block, for the trace. */
  private sizeOf(ptr: number): number {
    return this.m.size(this.c, ptr);
  }

  /** Tells the discipline of an event; returns its answer. */
  private event(event: RegionEvent, detail: EventDetail): unknown {
    return this.discipline.except?.(this, event, detail);
  }

  /** Delivers queued reports and alerts, outside the lock. */
  private flush(): void {
    const c = this.c;
    if (c.pending.length > 0) {
      const p = c.pending;
      c.pending = [];
      for (const e of p) this.deliver(e);
    }
    if (c.alerts.length > 0) {
      const a = c.alerts;
      c.alerts = [];
      for (const line of a) {
        if (this.onAlert) this.onAlert(line);
        else console.error(line);
      }
    }
  }

  /** Routes a problem: `badaddr` to the discipline, then onError or a throw. */
  private deliver(e: UmemError): void {
    if (
      e.kind === "bad-free" &&
      this.event("badaddr", { address: e.address, message: e.message }) === "ignore"
    ) {
      return;
    }
    if (this.onError) this.onError(e);
    else throw e;
  }

  /** Routes a caught error and returns `ret` (rethrows what is not a UmemError). */
  private fail<T>(e: unknown, ret: T): T {
    this.flush();
    if (!(e instanceof UmemError)) throw e;
    this.deliver(e);
    return ret;
  }

  /** Writes a trace line. */
  private trace(oldp: number, newp: number, size: number): void {
    const s = this.c.site();
    this.tracer!(formatTraceLine({
      old: oldp,
      new: newp,
      size,
      region: this.address,
      method: this.m.name,
      file: s.file,
      line: s.line,
    }));
  }
}

/** Maps a method name (ours or Vmalloc's) to ours. */
function methodName(method: string): MethodName {
  const n = typeof method === "string" && method.startsWith("Vm") ? method.slice(2) : method;
  if (typeof n === "string" && Object.hasOwn(METHODS, n)) return n as MethodName;
  throw new UmemError(
    "invalid-argument",
    `vmopen: unknown method ${
      JSON.stringify(method)
    } (expected best, pool, last, debug or profile)`,
  );
}

/** Checks that a discipline has what a region needs. */
function checkDiscipline(d: Discipline): void {
  if (
    d === null || typeof d !== "object" || !(d.buffer instanceof SharedArrayBuffer) ||
    typeof d.memory !== "function" || !Number.isInteger(d.round) || d.round < 8 ||
    (d.round & (d.round - 1)) !== 0
  ) {
    throw new UmemError(
      "invalid-argument",
      "vmopen: a discipline needs a SharedArrayBuffer `buffer`, a `memory` function and a " +
        "power-of-two `round` of at least 8",
    );
  }
}

/**
 * The generation of a region about to open at record `rec`: one more than that of a region
 * closed there (its record still says so), else a random one.
 */
function newGeneration(i32: Int32Array, rec: number): number {
  if (rec + RG_SIZE <= i32.length * 4 && i32[(rec + RG_MAGIC) >> 2] === RG_MAGIC_DEAD) {
    return (i32[(rec + RG_GEN) >> 2] + 1) | 0;
  }
  return (Math.random() * 0x100000000) | 0;
}

/** Checks that a region record of this format is at `rec`. */
function checkRecord(d: Discipline, rec: number): void {
  const sab = d.buffer;
  const bad = (why: string) =>
    new UmemError("corrupt-image", `vmopen: no region at ${hex(rec)}: ${why}`, rec);
  if (!Number.isInteger(rec) || rec < SG_HDR || (rec & 7) !== 0 || rec + RG_SIZE > sab.byteLength) {
    throw bad("the address is out of bounds");
  }
  const u32 = new Uint32Array(sab);
  const magic = Atomics.load(new Int32Array(sab), (rec + RG_MAGIC) >> 2) >>> 0;
  if (magic === RG_MAGIC_DEAD) throw bad("the region was closed");
  if (magic !== RG_MAGIC_VALUE) throw bad(`bad magic ${hex(magic)}`);
  const v = u32[(rec + RG_VERSION) >> 2];
  if (v !== RG_VERSION_VALUE) throw bad(`format version ${v}, expected ${RG_VERSION_VALUE}`);
  if (!BY_CODE.has(u32[(rec + RG_METHOD) >> 2])) throw bad("unknown method code");
  const home = rec - SG_HDR;
  if (u32[(home + SG_MAGIC) >> 2] !== SG_MAGIC_VALUE) throw bad("bad segment magic");
  // every segment must lie inside the buffer
  let n = 0;
  for (let s = u32[(rec + RG_SEGS) >> 2]; s !== 0; s = u32[(s + SG_NEXT) >> 2]) {
    const size = u32[(s + SG_SIZE) >> 2];
    if ((s & 7) !== 0 || s + size > sab.byteLength || size < SG_HDR + SENTINEL || ++n > 1 << 20) {
      throw bad(`segment ${hex(s)} is out of bounds`);
    }
    if (u32[(s + SG_MAGIC) >> 2] !== SG_MAGIC_VALUE) throw bad(`segment ${hex(s)}: bad magic`);
  }
  if (n === 0) throw bad("no segments");
}
