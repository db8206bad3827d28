/**
 * Inspection: mdb's view of a heap, read from the image alone, so that it works on a live heap
 * in any worker and on a snapshot with no live program (`::umastat`, `::walk`, `::whatis`,
 * `::bufctl`, `::umem_log`, `::findleaks`, `::umem_status`).
 *
 * Theory of `findleaks` (as mdb's): collect every allocated buffer (size-class and user caches,
 * the oversize arena, firewalled spans); mark, from the roots (registered ranges and pinned
 * addresses), every buffer that a word points into (interior pointers count), and scan each
 * marked buffer's words in turn; what stays unmarked is leaked. Leaks are grouped into classes
 * by cache and allocation stack (with audit) or by cache alone. Buffers sitting in magazines
 * are not allocated and are only counted.
 *
 * Invariants. Nothing here writes to the image or takes a lock; every walk is bounded by what
 * the image can hold, so a damaged image gives wrong answers or a `CorruptImageError`, never a
 * hang or a bare `RangeError`.
 *
 * @module
 */

import { BT_A_STACK, BT_SIZE, decodeSize } from "./buftag.ts";
import {
  auditOf,
  type AuditTransaction,
  firewalledSize,
  formatTransaction,
  quarantined,
} from "./debug.ts";
import { checkSize, CorruptImageError, hex, isoTime, UmemError } from "./errors.ts";
import {
  HDR_ALLOCATOR,
  HDR_ARENA_LIST,
  HDR_AUDIT_FRAMES,
  HDR_AUDIT_SAMPLE,
  HDR_CACHE_LIST,
  HDR_CONTENTS_BYTES,
  HDR_CTLOG,
  HDR_DEBUG,
  HDR_ERRORS,
  HDR_FAILLOG,
  HDR_FIREWALL,
  HDR_MAG_CACHES,
  HDR_MAX_CONTENTION,
  HDR_MAXVERIFY,
  HDR_META,
  HDR_MTBF,
  HDR_NSLOTS,
  HDR_OVERSIZE,
  HDR_REAP_INTERVAL,
  HDR_SIZE_TABLE,
  HDR_SLOTS,
  HDR_TXLOG,
  HDR_UMEM_OPTIONS,
  type HeapView,
  listRecords,
  PAGE_SHIFT,
  SLOT_LIVE,
  UO_NOMAGAZINES,
  WS_SIZE,
  WS_STATE,
} from "./image.ts";
import {
  LG_NREC,
  LG_RECSIZE,
  ringWritten,
  TX_BUF,
  TX_CACHE,
  TX_CACHE_ID,
  TX_OP,
  TX_SIZE,
  TX_STACK,
  TX_TIME,
  TXOP_ALLOC,
} from "./log.ts";
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
import { roots } from "./roots.ts";
import {
  BUF_ALLOC,
  BUF_CACHED,
  CA_BUFSIZE,
  CA_CHUNK,
  CA_DEBUG,
  CA_EMPTY,
  CA_FULL,
  CA_MAGIC,
  CA_MAGIC_VALUE,
  CA_NCHUNKS,
  CA_NEXT,
  CA_PARTIAL,
  CA_SHIFT,
  CA_SLABS,
  CA_SLABSIZE,
  CA_TAGOFF,
  cacheName,
  cacheRecordFault,
  SB_BASE,
  SB_CACHE,
  SB_NEXT,
  SB_STATE,
} from "./slab.ts";
import { bufferStateAt, MAG_ROUNDS, maxContention } from "./magazine.ts";
import { cacheStats } from "./cache.ts";
import { pendingSlot, readStack, resolveStack } from "./stack.ts";
import { verifyHeap } from "./verify.ts";
import { LOG_DEFAULT_BYTES } from "./options.ts";
import { SIZE_TABLE_BYTES, sizeClasses, UMEM_SIZE_CLASSES } from "./size_class.ts";
import {
  cacheNameAt,
  type ContentsEntry,
  type FailEntry,
  formatContentsLog,
  formatFailLog,
  readContentsLog,
  readFailLog,
  ringRecordsIn,
} from "./log_read.ts";
import {
  arenaName,
  arenaStats,
  POLICY_NAMES,
  SEG_ALLOC,
  SEG_SPAN,
  SEG_TYPE_MASK,
  VM_MAGIC,
  VM_MAGIC_VALUE,
  VM_NEXT,
  VM_SENTINEL,
  VS_ANEXT,
  VS_END,
  VS_START,
  VS_TYPE,
} from "./vmem.ts";

/** A cache as `::umastat` shows it. */
export interface CacheRow {
  /** Name. */
  name: string;
  /** Buffer size. */
  bufsize: number;
  /** Buffers allocated. */
  inUse: number;
  /** Buffers in its slabs. */
  total: number;
  /** Bytes of its slabs. */
  memory: number;
  /** Allocations. */
  allocs: number;
  /** Failed allocations. */
  failures: number;
  /** Rounds per magazine (0: none). */
  magazineSize: number;
  /** Contended depot acquisitions. */
  depotContention: number;
}

/** An arena as `::vmem` shows it. */
export interface ArenaRow {
  /** Name. */
  name: string;
  /** Bytes allocated. */
  inUse: number;
  /** Bytes imported from its source. */
  imported: number;
  /** Bytes in its spans. */
  total: number;
  /** Allocations. */
  allocs: number;
  /** Failed allocations. */
  failures: number;
}

/** A buffer's state: allocated, free in a slab, or constructed in a magazine. */
export type BufferState = "allocated" | "free" | "cached";

/** One buffer of a cache, as `::walk` yields it. */
export interface WalkEntry {
  /** The buffer's address. */
  address: number;
  /** Its state. */
  state: BufferState;
}

/** What an address is, as `::whatis` says. */
export interface WhatIs {
  /** The address asked about. */
  address: number;
  /** What holds it. */
  kind: "buffer" | "metadata" | "arena" | "none";
  /** The cache or arena's name, when there is one. */
  name?: string;
  /** The buffer's (or segment's) first address. */
  buffer?: number;
  /** Offset of the address into it. */
  offset?: number;
  /** Its size. */
  size?: number;
  /** The buffer's state. */
  state?: BufferState | "segment";
  /** The slab record. */
  slab?: number;
  /** The buffer's tag (libumem's bufctl), with debugging. */
  bufctl?: number;
  /** The buffer's last transactions, with audit. */
  audit?: AuditTransaction[];
  /** The text, as the `umem` tool prints it. */
  text: string;
}

/** A transaction log record. */
export interface LogEntry {
  /** "alloc" or "free". */
  op: "alloc" | "free";
  /** Time, ms since the epoch. */
  time: number;
  /** Worker slot. */
  slot: number;
  /** The buffer. */
  buffer: number;
  /** Size asked for. */
  size: number;
  /** The cache's name. */
  cache: string;
  /** The stack, a frame a line. */
  stack: string;
}

/** A class of leaked buffers: one cache, one allocation stack. */
export interface LeakClass {
  /** Leaked buffers. */
  count: number;
  /** Their bytes. */
  bytes: number;
  /** Size of each (the cache's buffer size, or what was asked, with debugging). */
  size: number;
  /** The cache (or "umem_oversize"). */
  cache: string;
  /** One of them. */
  sample: number;
  /** The allocation stack ("" without audit). */
  stack: string;
}

/** What `findleaks` found, with libumem's JSON keys. */
export interface LeakReport {
  /** Format version. */
  version: 1;
  /** Leaked buffers. */
  total_buffers: number;
  /** Leaked bytes. */
  total_bytes: number;
  /** Buffers in magazines, skipped. */
  cached_skipped: number;
  /** The classes, most bytes first. */
  classes: LeakClass[];
}

/** The heap's settings and health, as `::umem_status`. */
export interface Status {
  /** `UMEM_DEBUG` words in force. */
  debug: string[];
  /** `UMEM_LOGGING` words in force. */
  logging: string[];
  /**
   * `UMEM_OPTIONS` words in force: `concurrency=` (the worker slots) always, and each of
   * `nomagazines`, `max_contention=`, `reap_interval=` and `allocator=` that is not the default.
   */
  options: string[];
  /** Each log: records written and its capacity. */
  logs: { name: string; written: number; capacity: number }[];
  /** Heap corruption reports raised. */
  errors: number;
  /** Worker slots that are attached. */
  workers: number[];
  /** Bytes in use of the heap's buffer. */
  heapSize: number;
}

const NO_STACK = "<no stack; enable UMEM_DEBUG=audit>";

/**
 * Reads a heap's state: from a live `Heap` (any worker) or from a snapshot.
 *
 * @example
 * ```ts
 * import { Heap, inspect } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, debug: "audit" });
 * heap.alloc(40); // never freed, never reachable
 * const report = inspect(heap).findleaks();
 * console.log(report.total_buffers); // 1
 * ```
 */
export class Inspector {
  /** The image read. */
  readonly heap: HeapView;

  /**
   * Reads `heap`.
   *
   * @param heap a live heap, or a view over a snapshot's image
   */
  constructor(heap: HeapView) {
    this.heap = heap;
  }

  /** The word at `a`, or 0 outside the image: a damaged image reads as zeros, never throws. */
  private w(a: number): number {
    return a >= 0 && a + 4 <= this.heap.mapped ? this.heap.i32[a >> 2] : 0;
  }

  /** Live caches' record addresses, in creation order (bounded). */
  private cacheAddrs(): number[] {
    return listRecords(this.heap, HDR_CACHE_LIST, CA_NEXT).filter((cp) =>
      this.w(cp + CA_MAGIC) === CA_MAGIC_VALUE
    );
  }

  /** The arenas, newest first: a sub-arena before its source, the heap's own last. */
  private arenaAddrs(): number[] {
    return listRecords(this.heap, HDR_ARENA_LIST, VM_NEXT).filter((a) =>
      this.w(a + VM_MAGIC) === VM_MAGIC_VALUE
    );
  }

  /**
   * A row per cache, as `::umastat` prints them.
   *
   * @returns the rows
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.alloc(64);
   * console.log(inspect(heap).caches().find((c) => c.name === "umem_alloc_64")?.inUse); // 1
   * ```
   */
  caches(): CacheRow[] {
    return this.cacheAddrs().map((cp) => {
      const s = cacheStats(this.heap, cp);
      return {
        name: s.name,
        bufsize: s.bufsize,
        inUse: s.inUse,
        total: s.total,
        memory: s.memoryInUse,
        allocs: s.allocs,
        failures: s.failures,
        magazineSize: s.magazineSize,
        depotContention: s.depotContention,
      };
    });
  }

  /**
   * A row per vmem arena.
   *
   * @returns the rows
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(inspect(heap).arenas().some((a) => a.name === "heap")); // true
   * ```
   */
  arenas(): ArenaRow[] {
    return this.arenaAddrs().map((a) => {
      const s = arenaStats(this.heap, a);
      return {
        name: s.name,
        inUse: s.inUse,
        imported: s.imported,
        total: s.total,
        allocs: s.allocs,
        failures: s.failures,
      };
    });
  }

  /** The buffers of cache `cp`, with their states. */
  private buffers(cp: number): WalkEntry[] {
    const h = this.heap, out: WalkEntry[] = [];
    // A record no cache could have (a damaged image's) has no buffers to walk: one bad word
    // there would have this list a hundred million.
    if (cacheRecordFault(h, cp) !== undefined) return out;
    const n = this.w(cp + CA_NCHUNKS), chunk = this.w(cp + CA_CHUNK), shift = this.w(cp + CA_SHIFT);
    // No list holds more slabs than the image does.
    const limit = h.mapped / this.w(cp + CA_SLABSIZE);
    for (const list of [CA_FULL, CA_PARTIAL, CA_EMPTY]) {
      let k = 0;
      for (
        let sb = this.w(cp + list);
        sb > 0 && sb < h.mapped && k++ < limit;
        sb = this.w(sb + SB_NEXT)
      ) {
        const base = this.w(sb + SB_BASE);
        for (let i = 0; i < n && i < 65536; i++) {
          const st = bufferStateAt(h, cp, sb + SB_STATE + ((i * chunk) >> shift), base + i * chunk);
          const state: BufferState = st === BUF_ALLOC
            ? "allocated"
            : st === BUF_CACHED
            ? "cached"
            : "free";
          out.push({ address: base + i * chunk, state });
        }
      }
    }
    return out.sort((a, b) => a.address - b.address);
  }

  /**
   * Every buffer of a cache with its state, as `::walk umem_cache` and its kin.
   *
   * @param cache the cache's name
   * @returns the buffers in address order
   * @throws {UmemError} `invalid-argument` when there is no such cache
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const c = heap.createCache("node", 512);
   * c.alloc();
   * console.log(inspect(heap).walk("node").filter((b) => b.state === "allocated").length); // 1
   * ```
   */
  walk(cache: string): WalkEntry[] {
    const cp = this.cacheAddrs().find((c) => cacheName(this.heap, c) === cache);
    if (cp === undefined) {
      throw new UmemError("invalid-argument", `walk: no cache named '${cache}'`);
    }
    return this.buffers(cp);
  }

  /**
   * What an address is: which cache, buffer and offset, and the buffer's state; or which arena
   * segment; or metadata; or nothing. As `::whatis`.
   *
   * @param addr the address (a number; one outside the heap, NaN included, is "none")
   * @returns the answer, with its text
   * @throws {UmemError} `invalid-argument` when `addr` is not a number
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.alloc(100);
   * console.log(inspect(heap).whatis(p + 4).text.split("\n")[0].endsWith("(112 bytes, ALLOCATED)")); // true
   * ```
   */
  whatis(addr: number): WhatIs {
    const h = this.heap;
    if (typeof addr !== "number") {
      throw new UmemError(
        "invalid-argument",
        `whatis: address must be a number, got ${typeof addr}`,
      );
    }
    const a = Math.floor(addr);
    if (!(a > 0 && a < h.mapped)) {
      return {
        address: a,
        kind: "none",
        text: `${wideHex(a)}: not in any umem cache (outside the heap)`,
      };
    }
    const sb = h.i32[(h.pagemap >> 2) + (a >>> PAGE_SHIFT)];
    if (sb > 0 && sb < h.mapped) {
      const cp = this.w(sb + SB_CACHE);
      const base = this.w(sb + SB_BASE), chunk = this.w(cp + CA_CHUNK);
      const idx = chunk > 0 ? Math.floor((a - base) / chunk) : -1;
      if (idx >= 0 && idx < this.w(cp + CA_NCHUNKS)) {
        const buf = base + idx * chunk;
        const at = sb + SB_STATE + ((idx * chunk) >> this.w(cp + CA_SHIFT));
        const st = bufferStateAt(h, cp, at, buf);
        const state: BufferState = st === BUF_ALLOC
          ? "allocated"
          : st === BUF_CACHED
          ? "cached"
          : "free";
        const name = cacheName(h, cp), size = this.w(cp + CA_BUFSIZE);
        const debug = this.w(cp + CA_DEBUG);
        const bufctl = debug !== 0 ? buf + this.w(cp + CA_TAGOFF) : 0;
        const audit = (debug & DBG_AUDIT) !== 0 ? auditOf(h, bufctl) : [];
        // An address past the buffer's bytes lies in its tag (debugged caches) or the chunk's
        // slack: still the buffer's, as libumem's chunk is, but said so.
        const where = a - buf < size
          ? ""
          : bufctl !== 0 && a >= bufctl
          ? ", in its tag"
          : ", past its end";
        const lines = [
          `${hex(a)}: ${name} (${size} bytes, ${
            state === "allocated" ? "ALLOCATED" : state === "cached" ? "CACHED" : "FREE"
          })${where}`,
          `cache=${name} slab=${hex(sb)} buffer=${hex(buf)} offset=${hex(a - buf)} bufctl=${
            hex(bufctl)
          }`,
          ...audit.map((t) => formatTransaction(buf, t)),
        ];
        return {
          address: a,
          kind: "buffer",
          name,
          buffer: buf,
          offset: a - buf,
          size,
          state,
          slab: sb,
          bufctl,
          audit,
          text: lines.join("\n"),
        };
      }
      return {
        address: a,
        kind: "metadata",
        name: cacheName(h, cp),
        slab: sb,
        text: `${hex(a)}: not in any umem cache buffer (slab metadata of ${cacheName(h, cp)})`,
      };
    }
    if (a < this.w(HDR_META)) {
      return {
        address: a,
        kind: "metadata",
        text: `${hex(a)}: not in any umem cache (heap header and metadata)`,
      };
    }
    // An arena segment: the innermost arena that has it allocated (the list is newest first).
    for (const ar of this.arenaAddrs()) {
      const seg = this.segmentAt(ar, a);
      if (seg === undefined) continue;
      const [start, end] = seg;
      const name = arenaName(h, ar);
      // A firewalled buffer (UMEM_DEBUG=firewall) is a span of umem_oversize: live, or freed
      // and waiting in quarantine (its span still allocated).
      const asked = ar === this.w(HDR_OVERSIZE) ? firewalledSize(h, start, end - start) : -1;
      const waiting = asked < 0 && ar === this.w(HDR_OVERSIZE) &&
        quarantined(h).some(([p]) => p === start);
      const state = asked >= 0 ? "allocated" : waiting ? "free" : "segment";
      return {
        address: a,
        kind: "arena",
        name,
        buffer: start,
        offset: a - start,
        size: end - start,
        state,
        text: `${hex(a)}: not in any umem cache (in segment ${hex(start)}+${
          end - start
        } of arena ${name}${
          asked >= 0
            ? `: a firewalled buffer of ${asked} bytes, ALLOCATED`
            : waiting
            ? ": a firewalled buffer, FREE, in quarantine"
            : ""
        })`,
      };
    }
    return { address: a, kind: "none", text: `${hex(a)}: not in any umem cache` };
  }

  /** The allocated segment of arena `ar` containing `a`, or undefined (bounded walk). */
  private segmentAt(ar: number, a: number): [number, number] | undefined {
    for (const [start, end] of this.segments(ar)) if (start <= a && a < end) return [start, end];
    return undefined;
  }

  /** Allocated segments of arena `ar` (bounded walk). */
  private segments(ar: number): [number, number][] {
    const out: [number, number][] = [];
    const sentinel = this.w(ar + VM_SENTINEL), limit = this.heap.mapped >> 5;
    let k = 0;
    for (
      let s = this.w(sentinel + VS_ANEXT);
      s !== sentinel && s > 0 && k++ < limit;
      s = this.w(s + VS_ANEXT)
    ) {
      const t = this.w(s + VS_TYPE) & SEG_TYPE_MASK;
      if (t === SEG_ALLOC) out.push([this.w(s + VS_START), this.w(s + VS_END)]);
      else if (t !== SEG_SPAN && t !== 1) break;
    }
    return out;
  }

  /**
   * The audit history of the buffer holding `addr`: its last allocation and free, newest first.
   *
   * @param addr an address in the buffer
   * @returns the transactions (empty without audit)
   * @throws {UmemError} `invalid-argument` when `addr` is not a number
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "audit" });
   * const p = heap.alloc(10);
   * heap.free(p, 10);
   * console.log(inspect(heap).bufctl(p).map((t) => t.op).join(",")); // free,alloc
   * ```
   */
  bufctl(addr: number): AuditTransaction[] {
    return this.whatis(addr).audit ?? [];
  }

  /**
   * The transaction log, newest first, filtered by cache, buffer or worker.
   *
   * @param filter `cache` (name), `buffer` (address), `worker` (slot)
   * @returns the records
   * @throws {UmemError} `invalid-argument` for a filter that is not an object, an unknown key,
   *   a cache that is not a string or a buffer or worker that is not a number
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "audit", logging: "transaction" });
   * heap.free(heap.alloc(10), 10);
   * console.log(inspect(heap).log().map((r) => r.op).join(",")); // free,alloc
   * ```
   */
  log(filter: { cache?: string; buffer?: number; worker?: number } = {}): LogEntry[] {
    checkLogFilter(filter);
    const h = this.heap;
    const out: LogEntry[] = [];
    for (const r of ringRecordsIn(h, HDR_TXLOG)) {
      const op = this.w(r + TX_OP), cp = this.w(r + TX_CACHE);
      const e: LogEntry = {
        op: (op & 0xff) === TXOP_ALLOC ? "alloc" : "free",
        time: h.f64[(r + TX_TIME) >> 3],
        slot: op >> 8,
        buffer: this.w(r + TX_BUF),
        size: this.w(r + TX_SIZE),
        cache: cp > 0 && cp < h.mapped ? cacheNameAt(h, cp, this.w(r + TX_CACHE_ID), 32) : "",
        stack: readStack(h, this.w(r + TX_STACK), r + TX_STACK),
      };
      if (matches(filter, e.cache, e.buffer, e.slot)) out.push(e);
    }
    return out;
  }

  /**
   * The contents log (`UMEM_LOGGING=contents`), newest first, filtered by cache, buffer or
   * worker: the first bytes of each buffer as they were when it was freed.
   *
   * @param filter `cache` (name), `buffer` (address), `worker` (slot)
   * @returns the records
   * @throws {UmemError} `invalid-argument` for a bad filter, as {@linkcode Inspector.log}
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "guards", logging: "contents" });
   * const p = heap.alloc(8);
   * heap.u8.set([104, 105], p);
   * heap.free(p, 8);
   * console.log(inspect(heap).contentsLog({ buffer: p })[0].bytes.slice(0, 2)); // [ 104, 105 ]
   * ```
   */
  contentsLog(filter: { cache?: string; buffer?: number; worker?: number } = {}): ContentsEntry[] {
    checkLogFilter(filter);
    return readContentsLog(this.heap).filter((e) => matches(filter, e.cache, e.buffer, e.slot));
  }

  /**
   * The fail log (`UMEM_LOGGING=fail`), newest first, filtered by cache or worker: each
   * allocation from a cache or the firewall that found no memory, or that `UMEM_DEBUG=mtbf`
   * failed, with its stack (as libumem's, not the oversize allocations above the caches).
   *
   * @param filter `cache` (name), `worker` (slot)
   * @returns the records
   * @throws {UmemError} `invalid-argument` for a bad filter, as {@linkcode Inspector.log}, or a
   *   `buffer` (a failed allocation has none)
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "mtbf=1,noabort", logging: "fail" });
   * try {
   *   heap.alloc(100);
   * } catch {
   *   // failed on purpose: mtbf=1 fails every allocation
   * }
   * const [f] = inspect(heap).failLog();
   * console.log(f.cache, f.size); // umem_alloc_112 100
   * ```
   */
  failLog(filter: { cache?: string; worker?: number } = {}): FailEntry[] {
    checkLogFilter(filter);
    if ((filter as { buffer?: number }).buffer !== undefined) {
      throw new UmemError(
        "invalid-argument",
        "log: a failed allocation has no buffer to filter by",
      );
    }
    return readFailLog(this.heap).filter((e) => matches(filter, e.cache, undefined, e.slot));
  }

  /**
   * Finds leaks as mdb's `::findleaks`: every allocated buffer that no root reaches, through
   * any chain of pointers (interior pointers count), grouped by cache and allocation stack.
   *
   * @returns the report, with libumem's JSON keys
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const kept = heap.zalloc(16); // (zeroed: a stale word in it would count as a pointer)
   * heap.pin(kept);
   * heap.alloc(16); // lost
   * console.log(inspect(heap).findleaks().total_buffers); // 1
   * ```
   */
  findleaks(): LeakReport {
    const h = this.heap;
    // Every allocated buffer: [start, bytes to scan, cache, stack id, size].
    const starts = new Map<number, [number, number, number, number]>();
    let cached = 0;
    // The magazine caches' buffers are magazines, not the program's: they are named in the
    // header (a flag would not do: with UMEM_OPTIONS=nomagazines the size classes have the
    // magazine caches' flags, and their leaks must be found).
    const magazines = new Set<number>();
    for (let t = 0; t < MAG_ROUNDS.length; t++) {
      magazines.add(this.w(HDR_MAG_CACHES + t * 4));
    }
    for (const cp of this.cacheAddrs()) {
      if (magazines.has(cp)) continue;
      const debug = this.w(cp + CA_DEBUG), tagOff = this.w(cp + CA_TAGOFF);
      const bufsize = this.w(cp + CA_BUFSIZE);
      for (const b of this.buffers(cp)) {
        if (b.state === "cached") cached++;
        if (b.state !== "allocated") continue;
        let size = bufsize, stack = 0;
        if (debug !== 0) {
          const asked = decodeSize(this.w(b.address + tagOff + BT_SIZE));
          if (asked >= 0 && asked <= tagOff) size = asked;
          if ((debug & DBG_AUDIT) !== 0) {
            const at = b.address + tagOff + BT_A_STACK;
            stack = resolveStack(h, this.w(at), at);
          }
        }
        starts.set(b.address, [size, cp, stack, size]);
      }
    }
    const over = this.w(HDR_OVERSIZE);
    // Firewalled buffers in quarantine are freed, though their spans stay allocated.
    const waiting = new Set(quarantined(h).map(([p]) => p));
    const big = over > 0 && over < h.mapped
      ? this.segments(over).filter(([s]) => !waiting.has(s))
      : [];
    // A firewalled buffer is the bytes asked for: its span's redzone, encoded size and check
    // word hold no pointers (a size word could read as one) and are no leaked bytes.
    for (const [s, e] of big) {
      const asked = firewalledSize(h, s, e - s), n = asked >= 0 ? asked : e - s;
      starts.set(s, [n, 0, 0, n]);
    }
    big.sort((x, y) => x[0] - y[0]);
    // The buffer an address points into, or 0.
    const target = (v: number): number => {
      if (!(v > 0 && v < h.mapped)) return 0;
      const sb = h.i32[(h.pagemap >> 2) + (v >>> PAGE_SHIFT)];
      if (sb > 0 && sb < h.mapped) {
        const cp = this.w(sb + SB_CACHE),
          chunk = this.w(cp + CA_CHUNK),
          base = this.w(sb + SB_BASE);
        if (chunk <= 0 || v < base) return 0;
        const start = base + Math.floor((v - base) / chunk) * chunk;
        const e = starts.get(start);
        return e !== undefined && v < start + Math.max(e[0], 1) ? start : 0;
      }
      let lo = 0, hi = big.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (v < big[mid][0]) hi = mid - 1;
        else if (v >= big[mid][1]) lo = mid + 1;
        else return big[mid][0];
      }
      return 0;
    };
    const marked = new Set<number>();
    const stack: number[] = [];
    const mark = (v: number) => {
      const t = target(v);
      if (t !== 0 && !marked.has(t)) {
        marked.add(t);
        stack.push(t);
      }
    };
    const scan = (from: number, bytes: number) => {
      const end = Math.min(from + bytes, h.mapped) >> 2;
      for (let i = (from + 3) >> 2; i < end; i++) mark(h.i32[i]);
    };
    for (const [addr, bytes] of roots(h)) {
      mark(addr); // a pinned address, or the buffer that holds a root range
      if (bytes > 0) scan(addr, bytes);
    }
    while (stack.length > 0) {
      const b = stack.pop()!;
      scan(b, starts.get(b)![0]);
    }
    // Group the unmarked.
    const classes = new Map<string, LeakClass>();
    for (const [addr, [, cp, st, size]] of starts) {
      if (marked.has(addr)) continue;
      const cache = cp !== 0 ? cacheName(h, cp) : "umem_oversize";
      // Stacks another worker has not interned yet cannot be told apart: one class per worker.
      const key = `${cache}\u0000${st >= 0 ? st : `pending ${pendingSlot(st)}`}`;
      const c = classes.get(key);
      if (c !== undefined) {
        c.count++;
        c.bytes += size;
        c.sample = Math.min(c.sample, addr);
      } else {
        classes.set(key, {
          count: 1,
          bytes: size,
          size,
          cache,
          sample: addr,
          stack: readStack(h, st),
        });
      }
    }
    const list = [...classes.values()].sort((a, b) => b.bytes - a.bytes || b.count - a.count);
    return {
      version: 1,
      total_buffers: list.reduce((n, c) => n + c.count, 0),
      total_bytes: list.reduce((n, c) => n + c.bytes, 0),
      cached_skipped: cached,
      classes: list,
    };
  }

  /**
   * The heap's settings and health: debugging and logging in force, log fill, corruption
   * reports raised, workers attached.
   *
   * @returns the status
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "guards" });
   * console.log(inspect(heap).status().debug.join(",")); // guards
   * ```
   */
  status(): Status {
    const h = this.heap, d = this.w(HDR_DEBUG);
    const debug: string[] = [];
    if ((d & DBG_AUDIT) !== 0) {
      const sample = this.w(HDR_AUDIT_SAMPLE);
      debug.push(`audit=${this.w(HDR_AUDIT_FRAMES)}${sample > 1 ? `/${sample}` : ""}`);
    }
    if ((d & DBG_CONTENTS) !== 0) debug.push(`contents=${this.w(HDR_CONTENTS_BYTES)}`);
    if ((d & DBG_GUARDS) !== 0) debug.push("guards");
    if ((d & DBG_FIREWALL) !== 0) debug.push(`firewall=${this.w(HDR_FIREWALL)}`);
    if ((d & DBG_VERBOSE) !== 0) debug.push("verbose");
    if (this.w(HDR_MAXVERIFY) > 0) debug.push(`maxverify=${this.w(HDR_MAXVERIFY)}`);
    if ((d & DBG_MTBF) !== 0) debug.push(`mtbf=${this.w(HDR_MTBF)}`);
    if ((d & DBG_CHECKNULL) !== 0) debug.push("checknull");
    if ((d & (DBG_GUARDS | DBG_CHECKNULL)) !== 0 && (d & DBG_ABORT) === 0) debug.push("noabort");
    const logs: Status["logs"] = [];
    const logging: string[] = [];
    for (
      const [name, flag, field] of [["transaction", DBG_TXLOG, HDR_TXLOG], [
        "contents",
        DBG_CTLOG,
        HDR_CTLOG,
      ], ["fail", DBG_FAILLOG, HDR_FAILLOG]] as const
    ) {
      const ring = this.w(field);
      if ((d & flag) === 0 || ring <= 0 || ring >= h.mapped) continue;
      // The ring's size when it is not the default, so that the words read back as they came
      // (`transaction=8k` made a ring of 8 KiB of records, which reads back as 8k).
      const cap = this.w(ring + LG_NREC), recsize = this.w(ring + LG_RECSIZE);
      const bytes = cap * recsize;
      logging.push(
        cap === Math.max(1, Math.floor(LOG_DEFAULT_BYTES / recsize))
          ? name
          : `${name}=${bytes % 1024 === 0 ? `${bytes / 1024}k` : bytes}`,
      );
      logs.push({ name, written: ringWritten(h, ring), capacity: cap });
    }
    const options = [`concurrency=${this.w(HDR_NSLOTS)}`];
    if ((this.w(HDR_UMEM_OPTIONS) & UO_NOMAGAZINES) !== 0) options.push("nomagazines");
    if (this.w(HDR_MAX_CONTENTION) !== 0) {
      options.push(`max_contention=${maxContention(this.w(HDR_MAX_CONTENTION))}`);
    }
    if (this.w(HDR_REAP_INTERVAL) > 0) options.push(`reap_interval=${this.w(HDR_REAP_INTERVAL)}`);
    const policy = POLICY_NAMES[this.w(HDR_ALLOCATOR)];
    if (policy !== undefined && policy !== "instantfit") {
      options.push(`allocator=${policy.slice(0, -3)}`);
    }
    options.push(...this.sizeWords());
    const workers: number[] = [];
    const n = this.w(HDR_NSLOTS), table = this.w(HDR_SLOTS);
    for (let s = 0; s < n && s < 64; s++) {
      if (this.w(table + s * WS_SIZE + WS_STATE) === SLOT_LIVE) workers.push(s);
    }
    return {
      debug,
      logging,
      options,
      logs,
      errors: this.w(HDR_ERRORS),
      workers,
      heapSize: h.mapped,
    };
  }

  /**
   * The `UMEM_OPTIONS` words that give this image's size classes from libumem's, the shorter of
   * two ways: a `size_remove` for each missing and a `size_add` for each added, or `size_clear`
   * and a `size_add` for each but the largest. None when they are libumem's.
   */
  private sizeWords(): string[] {
    const table = this.w(HDR_SIZE_TABLE);
    if (table <= 0 || table + SIZE_TABLE_BYTES > this.heap.mapped) return [];
    const now = sizeClasses(this.heap), was = new Set(UMEM_SIZE_CLASSES), kept = new Set(now);
    const edits = [
      ...UMEM_SIZE_CLASSES.filter((c) => !kept.has(c)).map((c) => `size_remove=${c}`),
      ...now.filter((c) => !was.has(c)).map((c) => `size_add=${c}`),
    ];
    const cleared = ["size_clear", ...now.slice(0, -1).map((c) => `size_add=${c}`)];
    return cleared.length < edits.length ? cleared : edits;
  }

  // ---- text, as the umem tool prints it ----

  /**
   * `findleaks` as text: the summary, the table, a section per class with its stack.
   *
   * @param report a report from {@linkcode Inspector.findleaks} (computed when absent)
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.alloc(16);
   * console.log(inspect(heap).formatFindleaks().split("\n")[0]);
   * // findleaks: 1 allocated buffers (16 bytes) in 1 distinct leak classes
   * ```
   */
  formatFindleaks(report: LeakReport = this.findleaks()): string {
    if (typeof report !== "object" || report === null || !Array.isArray(report.classes)) {
      throw new UmemError("invalid-argument", "formatFindleaks: expected a findleaks() report");
    }
    const lines = [
      `findleaks: ${report.total_buffers} allocated buffers (${report.total_bytes} bytes) in ${report.classes.length} distinct leak classes`,
      `findleaks: ${report.cached_skipped} buffers skipped: they sit in magazines (cached, not allocated)`,
      "",
      `${"COUNT".padStart(6)} ${"BYTES".padStart(9)} ${"SIZE".padStart(7)} ${
        "CACHE".padEnd(20)
      } STACK (top frame)`,
    ];
    for (const c of report.classes) {
      const top = c.stack === "" ? NO_STACK : c.stack.split("\n")[0];
      lines.push(
        `${String(c.count).padStart(6)} ${String(c.bytes).padStart(9)} ${
          String(c.size).padStart(7)
        } ${c.cache.padEnd(20)} ${top}`,
      );
    }
    report.classes.forEach((c, i) => {
      lines.push(
        "",
        `== class ${i + 1}: ${c.count} allocs, ${c.bytes} bytes, cache=${c.cache} (sample buffer ${
          hex(c.sample)
        }) ==`,
      );
      lines.push(...(c.stack === "" ? [NO_STACK] : c.stack.split("\n")).map((f) => `\t${f}`));
    });
    return lines.join("\n");
  }

  /**
   * The cache table, as the `umem` tool's `status` prints it: `CACHE BUFSIZE INUSE TOTAL MEMORY
   * ALLOCS FAIL`, caches with no slab left out unless `all`.
   *
   * @param all include caches that never allocated
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.alloc(64);
   * console.log(inspect(heap).formatCaches().split("\n")[0].split(/ +/).join(" "));
   * // CACHE BUFSIZE INUSE TOTAL MEMORY ALLOCS FAIL
   * ```
   */
  formatCaches(all = false): string {
    const rows = this.caches().filter((c) => all || c.allocs > 0 || c.total > 0);
    const lines = [
      `${"CACHE".padEnd(24)} ${"BUFSIZE".padStart(8)} ${"INUSE".padStart(8)} ${
        "TOTAL".padStart(8)
      } ${"MEMORY".padStart(10)} ${"ALLOCS".padStart(10)} ${"FAIL".padStart(6)}`,
    ];
    for (const c of rows) {
      lines.push(
        `${c.name.padEnd(24)} ${String(c.bufsize).padStart(8)} ${String(c.inUse).padStart(8)} ${
          String(c.total).padStart(8)
        } ${String(c.memory).padStart(10)} ${String(c.allocs).padStart(10)} ${
          String(c.failures).padStart(6)
        }`,
      );
    }
    return lines.join("\n");
  }

  /**
   * Verifies the image as `heap.verify()` does, as mdb's `::umem_verify` verifies a core file:
   * every arena's segments, every cache's slabs and states, and in a debugged cache every free
   * buffer's pattern and every allocated buffer's redzone. It lists what it finds; it never
   * reports or aborts.
   *
   * @returns the problems, each one line (empty when the image is sound)
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "guards,noabort" });
   * const p = heap.alloc(50);
   * heap.u8[p + 50] = 0; // one byte past the end
   * console.log(inspect(heap).verify().length); // 1
   * ```
   */
  verify(): string[] {
    return verifyHeap(this.heap);
  }

  /**
   * `::umem_verify` as text: a row per cache that holds memory, `clean` or how many of the
   * problems name it, then every problem.
   *
   * @param problems from {@linkcode Inspector.verify} (found when absent)
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.alloc(64);
   * console.log(inspect(heap).formatVerify().split("\n").at(-1)); // umem_verify: no problems
   * ```
   */
  formatVerify(problems: string[] = this.verify()): string {
    checkEntries("formatVerify", problems, 0);
    const lines = [`${"CACHE".padEnd(24)} ${"ADDR".padStart(10)}  INTEGRITY`];
    for (const cp of this.cacheAddrs()) {
      if (this.heap.f64[(cp + CA_SLABS) >> 3] === 0) continue; // a cache that holds no memory
      const name = cacheName(this.heap, cp);
      // A problem names its cache as a report does (`cache: NAME`), as verify's own lines do
      // (`umem_verify(NAME)`), or as a lock's (`cache NAME slab lock`).
      const mine = problems.filter((p) =>
        p.split("; ").some((part) =>
          part.endsWith(`cache: ${name}`)
        ) ||
        p.startsWith(`umem_verify(${name})`) || p.includes(`cache ${name} `)
      ).length;
      lines.push(
        `${name.padEnd(24)} ${hex(cp).padStart(10)}  ${
          mine === 0 ? "clean" : `${mine} problem${mine === 1 ? "" : "s"}`
        }`,
      );
    }
    lines.push(
      problems.length === 0
        ? "umem_verify: no problems"
        : `umem_verify: ${problems.length} problem${problems.length === 1 ? "" : "s"}:`,
    );
    for (const p of problems) lines.push(`  ${p}`); // (a spread of 125,000 overflows the stack)
    return lines.join("\n");
  }

  /**
   * The arena table: `ARENA INUSE IMPORTED TOTAL ALLOCS FAIL`.
   *
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(inspect(heap).formatArenas().split("\n")[0].split(/ +/).join(" "));
   * // ARENA INUSE IMPORTED TOTAL ALLOCS FAIL
   * ```
   */
  formatArenas(): string {
    const lines = [
      `${"ARENA".padEnd(20)} ${"INUSE".padStart(12)} ${"IMPORTED".padStart(12)} ${
        "TOTAL".padStart(12)
      } ${"ALLOCS".padStart(10)} ${"FAIL".padStart(6)}`,
    ];
    for (const a of this.arenas()) {
      lines.push(
        `${a.name.padEnd(20)} ${String(a.inUse).padStart(12)} ${String(a.imported).padStart(12)} ${
          String(a.total).padStart(12)
        } ${String(a.allocs).padStart(10)} ${String(a.failures).padStart(6)}`,
      );
    }
    return lines.join("\n");
  }

  /**
   * The status as text: settings, logs, errors, workers, then the cache table.
   *
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "guards" });
   * console.log(inspect(heap).formatStatus().split("\n")[0]); // umem status: UMEM_DEBUG=guards
   * ```
   */
  formatStatus(): string {
    const s = this.status();
    const lines = [
      `umem status: UMEM_DEBUG=${s.debug.join(",")}`,
      `UMEM_LOGGING=${s.logging.join(",")}`,
      `UMEM_OPTIONS=${s.options.join(",")}`,
      ...s.logs.map((l) =>
        `${l.name} log: ${
          Math.min(l.written, l.capacity)
        } of ${l.capacity} records used (${l.written} written)`
      ),
      `heap corruption reports: ${s.errors}`,
      `workers attached: ${s.workers.length} (slots ${s.workers.join(", ")})`,
      `heap size: ${s.heapSize} bytes`,
      "",
      this.formatCaches(),
    ];
    return lines.join("\n");
  }

  /**
   * The transaction log as text: `transaction log: N records (showing M)`, then a line and
   * the stack per record.
   *
   * @param entries records from {@linkcode Inspector.log}
   * @param limit most records shown
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, logging: "transaction" });
   * heap.alloc(8);
   * console.log(inspect(heap).formatLog().split("\n")[0]); // transaction log: 1 records (showing 1)
   * ```
   */
  formatLog(entries: LogEntry[] = this.log(), limit = 100): string {
    checkEntries("formatLog", entries, limit);
    const lines = [
      `transaction log: ${entries.length} records (showing ${Math.min(limit, entries.length)})`,
    ];
    for (const e of entries.slice(0, limit)) {
      lines.push(
        `t=${isoTime(e.time)} thr=${e.slot} ${e.op} ${
          hex(e.buffer)
        } size=${e.size} cache=${e.cache}`,
      );
      lines.push(...(e.stack === "" ? [NO_STACK] : e.stack.split("\n")).map((f) => `\t${f}`));
    }
    return lines.join("\n");
  }

  /**
   * The contents log as text: a line per freed buffer, then its saved bytes, sixteen a line.
   *
   * @param entries records from {@linkcode Inspector.contentsLog} (all when absent)
   * @param limit at most this many records
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, debug: "guards", logging: "contents" });
   * heap.free(heap.alloc(8), 8);
   * console.log(inspect(heap).formatContentsLog().split("\n")[0]);
   * // contents log: 1 records (showing 1)
   * ```
   */
  formatContentsLog(entries: ContentsEntry[] = this.contentsLog(), limit = 100): string {
    checkEntries("formatContentsLog", entries, limit);
    return formatContentsLog(entries, limit);
  }

  /**
   * The fail log as text: a line per failed allocation, then its stack.
   *
   * @param entries records from {@linkcode Inspector.failLog} (all when absent)
   * @param limit at most this many records
   * @returns the text
   *
   * @example
   * ```ts
   * import { Heap, inspect } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20, logging: "fail" });
   * console.log(inspect(heap).formatFailLog()); // fail log: 0 records (showing 0)
   * ```
   */
  formatFailLog(entries: FailEntry[] = this.failLog(), limit = 100): string {
    checkEntries("formatFailLog", entries, limit);
    return formatFailLog(entries, limit, NO_STACK);
  }
}

/**
 * Checks a formatter's arguments: `entries` an array (what the matching reader returned), and
 * `limit` a whole number of them to show.
 * @throws {UmemError} `invalid-argument` naming `fn`
 */
function checkEntries(fn: string, entries: unknown, limit: number): void {
  if (!Array.isArray(entries)) {
    throw new UmemError("invalid-argument", `${fn}: expected an array of records`);
  }
  checkSize(fn, "limit", limit, 0, 0x7fffffff);
}

/** True when a log record of `cache`, `buffer` and `slot` passes `filter` (checkLogFilter's). */
function matches(
  filter: { cache?: string; buffer?: number; worker?: number },
  cache: string,
  buffer: number | undefined,
  slot: number,
): boolean {
  return (filter.cache === undefined || cache === filter.cache) &&
    (filter.buffer === undefined || buffer === filter.buffer) &&
    (filter.worker === undefined || slot === filter.worker);
}

/** Refuses a log filter that would silently match nothing, or everything, by mistake. */
function checkLogFilter(filter: unknown): void {
  const bad = (why: string) => new UmemError("invalid-argument", `log: ${why}`);
  if (typeof filter !== "object" || filter === null) throw bad("filter must be an object");
  const f = filter as Record<string, unknown>;
  for (const k of Object.keys(f)) {
    if (k !== "cache" && k !== "buffer" && k !== "worker") throw bad(`unknown filter '${k}'`);
  }
  if (f.cache !== undefined && typeof f.cache !== "string") throw bad("cache must be a name");
  for (const k of ["buffer", "worker"]) {
    if (f[k] !== undefined && (typeof f[k] !== "number" || !Number.isInteger(f[k]))) {
      throw bad(`${k} must be a whole number`);
    }
  }
}

/**
 * Inspects a heap: a live `Heap` in any worker, or a view over a snapshot's image.
 *
 * @param target the heap
 * @returns an inspector over its image
 * @throws {CorruptImageError} when the image's header is not sound
 *
 * @example
 * ```ts
 * import { Heap, inspect } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * console.log(inspect(heap).caches().length > 0); // true
 * ```
 */
export function inspect(target: HeapView): Inspector {
  if (
    !(target instanceof Object) || !(target.i32 instanceof Int32Array) ||
    typeof target.sync !== "function"
  ) {
    throw new CorruptImageError("inspect: not a heap or a snapshot");
  }
  target.sync();
  return new Inspector(target);
}

/**
 * An address outside the heap as `whatis` prints it: lower-case hex as {@linkcode hex}, but of
 * the whole number asked about (a negative one with its sign, one past 2^32 in full, NaN as
 * itself), where `hex` keeps the low 32 bits of a heap word.
 */
function wideHex(a: number): string {
  if (!Number.isFinite(a)) return String(a);
  return (a < 0 ? "-0x" : "0x") + Math.abs(a).toString(16);
}
