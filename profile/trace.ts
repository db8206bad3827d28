/**
 * An allocation trace in memory: compact binary records, a site table and a cache table.
 *
 * Theory. As in the Vmalloc paper (Section 3), a trace is the sequence of a program's
 * allocation events, so that allocators can be compared on the very same workload and a
 * service can start warm. Each record is {@linkcode TR_WORDS} words of one `Uint32Array` (see
 * layout.ts) and a time in a `Float64Array`: no JavaScript object per event. A builder appends
 * records in a doubling array; `link` resolves, for every free and resize, the record that
 * made its block (address mapping by record index), and `mergeTraces` interleaves the traces
 * of several workers by time.
 *
 * Invariants. Times never decrease along a trace made by the builder or by a merge; after
 * `link`, `TR_REF` obeys layout.ts's rule. A `Trace` is never changed after it is built.
 *
 * Lock order: none; traces are this worker's objects, not heap state.
 *
 * @module
 */
import { UmemError } from "../core/mod.ts";
import {
  API_CACHE,
  NO_REF,
  OP_ALLOC,
  OP_FREE,
  OP_RESIZE,
  OPF_API_SHIFT,
  OPF_MASK,
  OPF_WORKER_SHIFT,
  TR_ADDR,
  TR_CACHE,
  TR_OLDADDR,
  TR_OLDSIZE,
  TR_OP,
  TR_REF,
  TR_SITE,
  TR_SIZE,
  TR_WORDS,
} from "./layout.ts";

/** The names of the operations, by code. */
export type TraceOp = "alloc" | "free" | "resize";

/** A cache named in a trace. */
export interface TraceCache {
  /** The cache's name. */
  name: string;
  /** Its buffer size. */
  bufsize: number;
}

/** One record, decoded (for reading and tests; the trace itself keeps words). */
export interface TraceRecord {
  /** Its index in the trace. */
  index: number;
  /** The operation. */
  op: TraceOp;
  /** The worker slot that did it. */
  worker: number;
  /** The interface: 0 heap, 1 cache, 2 libc, 3 region (layout.ts `API_*`). */
  api: number;
  /** The size asked for (the new size of a resize). */
  size: number;
  /** The block's address (the new address of a resize). */
  address: number;
  /** A resize's old address. */
  oldAddress: number;
  /** A resize's old size, or a free's size given back. */
  oldSize: number;
  /** The cache's name, or "" for none. */
  cache: string;
  /** The call site, or "" when not recorded. */
  site: string;
  /** The record that made the block of a free or resize, or -1. */
  ref: number;
  /** Microseconds since the trace began. */
  time: number;
}

const OPS: readonly TraceOp[] = ["alloc", "alloc", "free", "resize"];

/**
 * An allocation trace: what `record` captured, `loadTrace` read, or a generator made.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { record } from "@umem/umem/profile";
 * const heap = Heap.create({ size: 1 << 20 });
 * const rec = record(heap);
 * heap.free(heap.alloc(40), 40);
 * const trace = rec.stop();
 * console.log(trace.count, trace.at(1).op, trace.at(1).ref); // 2 free 0
 * ```
 */
export class Trace {
  /** The number of records. */
  readonly count: number;
  /** The records: `count * TR_WORDS` words (layout.ts). */
  readonly words: Uint32Array;
  /** Microseconds since the start, one per record. */
  readonly times: Float64Array;
  /** The site table: index 0 is the unknown site "". */
  readonly sites: readonly string[];
  /** The cache table (a record's `TR_CACHE` is 1 + an index, or 0). */
  readonly caches: readonly TraceCache[];
  /** When the trace began: milliseconds since the epoch. */
  readonly start: number;

  /**
   * Wraps records already laid out; use `record`, `loadTrace`, a generator or `TraceBuilder`.
   *
   * @param words the records
   * @param times their times
   * @param sites the site table
   * @param caches the cache table
   * @param start the start time
   */
  constructor(
    words: Uint32Array,
    times: Float64Array,
    sites: readonly string[],
    caches: readonly TraceCache[],
    start: number,
  ) {
    this.count = times.length;
    if (words.length !== this.count * TR_WORDS) {
      throw new UmemError(
        "invalid-argument",
        `Trace: ${words.length} words do not make ${this.count} records of ${TR_WORDS} words`,
      );
    }
    if (sites[0] !== "") {
      throw new UmemError(
        "invalid-argument",
        'Trace: the site table must begin with the unknown site ""',
      );
    }
    this.words = words;
    this.times = times;
    this.sites = sites;
    this.caches = caches;
    this.start = start;
  }

  /**
   * The operation code of record `i` (layout.ts `OP_*`).
   *
   * @param i the record's index
   * @returns 1 alloc, 2 free, 3 resize
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 8);
   * console.log(b.finish().opOf(0)); // 1
   * ```
   */
  opOf(i: number): number {
    return this.words[i * TR_WORDS + TR_OP] & OPF_MASK;
  }

  /**
   * Record `i`, decoded.
   *
   * @param i the record's index, 0 ≤ i < count
   * @returns the record
   * @throws {UmemError} `invalid-argument` for an index out of range
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 8);
   * console.log(b.finish().at(0).size); // 8
   * ```
   */
  at(i: number): TraceRecord {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      throw new UmemError(
        "invalid-argument",
        `Trace.at: index ${i} is not in [0, ${this.count - 1}]`,
      );
    }
    const w = this.words, b = i * TR_WORDS, op = w[b + TR_OP];
    const c = w[b + TR_CACHE], ref = w[b + TR_REF];
    return {
      index: i,
      op: OPS[op & OPF_MASK] ?? "alloc",
      worker: (op >>> OPF_WORKER_SHIFT) & OPF_MASK,
      api: (op >>> OPF_API_SHIFT) & OPF_MASK,
      size: w[b + TR_SIZE],
      address: w[b + TR_ADDR],
      oldAddress: w[b + TR_OLDADDR],
      oldSize: w[b + TR_OLDSIZE],
      cache: c === 0 ? "" : this.caches[c - 1]?.name ?? "",
      site: this.sites[w[b + TR_SITE]] ?? "",
      ref: ref === NO_REF ? -1 : ref,
      time: this.times[i],
    };
  }

  /**
   * The worker slots that appear in the trace, in increasing order.
   *
   * @returns the slots
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.worker = 3;
   * b.alloc(0x100, 8);
   * console.log(b.finish().workers()); // [ 3 ]
   * ```
   */
  workers(): number[] {
    const seen = new Set<number>();
    for (let i = 0; i < this.count; i++) {
      seen.add((this.words[i * TR_WORDS + TR_OP] >>> OPF_WORKER_SHIFT) & OPF_MASK);
    }
    return [...seen].sort((a, b) => a - b);
  }

  /**
   * The busy bytes (sizes of the blocks live) after each record, as the trace says. A free
   * of a block made before the trace changes nothing; a resize of one adds its new size.
   *
   * @returns one figure per record
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 8);
   * b.alloc(0x200, 24);
   * b.free(0x100, 8);
   * console.log(Array.from(b.finish().busyCurve())); // [ 8, 32, 24 ]
   * ```
   */
  busyCurve(): Float64Array {
    const out = new Float64Array(this.count), w = this.words;
    let busy = 0;
    for (let i = 0; i < this.count; i++) {
      const b = i * TR_WORDS, op = w[b + TR_OP] & OPF_MASK, ref = w[b + TR_REF];
      if (op !== OP_FREE) busy += w[b + TR_SIZE];
      if (op !== OP_ALLOC && ref !== NO_REF) busy -= w[ref * TR_WORDS + TR_SIZE];
      out[i] = busy;
    }
    return out;
  }
}

/**
 * Builds a trace record by record: what the recorder, the generators and the VMTRACE reader
 * use. Records get no `TR_REF` until `finish` links them.
 *
 * @example
 * ```ts
 * import { TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x1000, 24);
 * b.resize(0x1000, 24, 0x2000, 100);
 * b.free(0x2000, 100);
 * const t = b.finish();
 * console.log(t.count, t.at(2).ref); // 3 1
 * ```
 */
export class TraceBuilder {
  /** The records so far (grows by doubling). */
  private words: Uint32Array;
  /** Their times. */
  private times: Float64Array;
  /** Records so far. */
  private n = 0;
  /** Site → index. */
  private siteIndex = new Map<string, number>([["", 0]]);
  /** The site table. */
  private siteList: string[] = [""];
  /** Cache key → 1 + index. */
  private cacheIndex = new Map<string | number, number>();
  /** The cache table. */
  private cacheList: TraceCache[] = [];
  /** The start time, ms since the epoch. */
  readonly start: number;
  /** The worker slot written into records. */
  worker = 0;
  /** The clock: µs since the start for the next record (default: a counter). */
  clock: () => number;

  /**
   * Creates an empty builder.
   *
   * @param start the start time (ms since the epoch; default now)
   * @param capacity records to make room for at first
   * @throws {UmemError} `invalid-argument` for a start time that is not a finite number
   */
  constructor(start: number = Date.now(), capacity = 1024) {
    if (typeof start !== "number" || !Number.isFinite(start)) {
      throw new UmemError(
        "invalid-argument",
        `TraceBuilder: start ${String(start)} is not a finite time (ms since the epoch)`,
      );
    }
    const cap = Math.max(16, capacity | 0);
    this.words = new Uint32Array(cap * TR_WORDS);
    this.times = new Float64Array(cap);
    this.start = start;
    let tick = 0;
    this.clock = () => tick++;
  }

  /** Records so far.
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 8);
   * console.log(b.count); // 1
   * ```
   */
  get count(): number {
    return this.n;
  }

  /**
   * The index of a site in the site table, interning it.
   *
   * @param site the site's text ("" for unknown)
   * @returns its index
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 8);
   * b.setSite(b.site("parse t.ts,12"));
   * console.log(b.site("parse t.ts,12"), b.finish().at(0).site); // 1 parse t.ts,12
   * ```
   */
  site(site: string): number {
    let i = this.siteIndex.get(site);
    if (i === undefined) {
      i = this.siteList.length;
      this.siteList.push(site);
      this.siteIndex.set(site, i);
    }
    return i;
  }

  /**
   * The `TR_CACHE` value of a cache, interning it.
   *
   * @param key what identifies the cache in the source (its address, or its name)
   * @param name its name
   * @param bufsize its buffer size
   * @returns 1 + its index in the cache table
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * const c = b.cache(0x4000, "conn", 256);
   * b.alloc(0x100, 256, 0, c);
   * console.log(c, b.finish().at(0).cache); // 1 conn
   * ```
   */
  cache(key: string | number, name: string, bufsize: number): number {
    let c = this.cacheIndex.get(key);
    if (c === undefined) {
      this.cacheList.push({ name, bufsize });
      c = this.cacheList.length;
      this.cacheIndex.set(key, c);
    }
    return c;
  }

  /** Makes room for one more record and returns its first word's index. */
  private slot(): number {
    if (this.n === this.times.length) {
      const words = new Uint32Array(this.words.length * 2);
      words.set(this.words);
      const times = new Float64Array(this.times.length * 2);
      times.set(this.times);
      this.words = words;
      this.times = times;
    }
    this.times[this.n] = this.clock();
    return this.n++ * TR_WORDS;
  }

  /**
   * Appends any record.
   *
   * @param op `OP_ALLOC`, `OP_FREE` or `OP_RESIZE`
   * @param api the interface (`API_*`)
   * @param size the size
   * @param addr the address
   * @param oldAddr a resize's old address
   * @param oldSize a resize's old size, a free's size
   * @param cache `TR_CACHE`
   * @param site `TR_SITE`
   * @returns the record's index
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * console.log(b.push(1, 0, 40, 0x100, 0, 0, 0, 0)); // 0 (an allocation of 40 bytes)
   * ```
   */
  push(
    op: number,
    api: number,
    size: number,
    addr: number,
    oldAddr: number,
    oldSize: number,
    cache: number,
    site: number,
  ): number {
    const b = this.slot(), w = this.words;
    w[b + TR_OP] = op | ((this.worker & OPF_MASK) << OPF_WORKER_SHIFT) | (api << OPF_API_SHIFT);
    w[b + TR_SIZE] = size;
    w[b + TR_ADDR] = addr;
    w[b + TR_OLDADDR] = oldAddr;
    w[b + TR_OLDSIZE] = oldSize;
    w[b + TR_CACHE] = cache;
    w[b + TR_SITE] = site;
    w[b + TR_REF] = NO_REF;
    return this.n - 1;
  }

  /**
   * Appends an allocation through the heap's sized interface (or `api`).
   *
   * @param addr the block
   * @param size its size
   * @param api the interface (default the heap's)
   * @param cache `TR_CACHE` (default none)
   * @returns the record's index
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * console.log(b.alloc(0x100, 40), b.alloc(0x200, 40)); // 0 1
   * ```
   */
  alloc(addr: number, size: number, api = 0, cache = 0): number {
    return this.push(OP_ALLOC, cache !== 0 ? API_CACHE : api, size, addr, 0, 0, cache, 0);
  }

  /**
   * Appends a free.
   *
   * @param addr the block
   * @param size the size given back (0 when not known)
   * @param api the interface
   * @param cache `TR_CACHE`
   * @returns the record's index
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 40);
   * b.free(0x100, 40);
   * console.log(b.finish().at(1).ref); // 0
   * ```
   */
  free(addr: number, size = 0, api = 0, cache = 0): number {
    return this.push(OP_FREE, cache !== 0 ? API_CACHE : api, 0, addr, 0, size, cache, 0);
  }

  /**
   * Appends a resize.
   *
   * @param oldAddr the block before
   * @param oldSize its size
   * @param addr the block after
   * @param size the new size
   * @param api the interface (default libc)
   * @returns the record's index
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 40);
   * b.resize(0x100, 40, 0x300, 400);
   * console.log(b.finish().at(1).oldAddress); // 256
   * ```
   */
  resize(oldAddr: number, oldSize: number, addr: number, size: number, api = 2): number {
    return this.push(OP_RESIZE, api, size, addr, oldAddr, oldSize, 0, 0);
  }

  /**
   * Sets the site of the last record.
   *
   * @param site its index in the site table
   * @throws {UmemError} `invalid-argument` for a number that is not an index of the site table
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 40);
   * b.setSite(b.site("main.ts,3"));
   * console.log(b.finish().at(0).site); // main.ts,3
   * ```
   */
  setSite(site: number): void {
    if (!Number.isInteger(site) || site < 0 || site >= this.siteList.length) {
      throw new UmemError(
        "invalid-argument",
        `TraceBuilder.setSite: ${site} is not an index of the site table (0..${
          this.siteList.length - 1
        }; site() gives one)`,
      );
    }
    if (this.n > 0) this.words[(this.n - 1) * TR_WORDS + TR_SITE] = site;
  }

  /**
   * The trace: the records so far, linked (every free and resize names its block's maker).
   *
   * @returns the trace
   *
   * @example
   * ```ts
   * import { TraceBuilder } from "@umem/umem/profile";
   * const b = new TraceBuilder();
   * b.alloc(0x100, 40);
   * console.log(b.finish().count); // 1
   * ```
   */
  finish(): Trace {
    const t = new Trace(
      this.words.slice(0, this.n * TR_WORDS),
      this.times.slice(0, this.n),
      [...this.siteList],
      [...this.cacheList],
      this.start,
    );
    link(t.words, t.count);
    return t;
  }
}

/**
 * Sets `TR_REF` of every free and resize to the record that made its block: the last alloc or
 * resize before it that returned its address and that no later free or resize consumed. A free
 * of an address with no such record gets {@linkcode NO_REF}.
 *
 * @param words the records
 * @param count their number
 */
export function link(words: Uint32Array, count: number): void {
  const live = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const b = i * TR_WORDS, op = words[b + TR_OP] & OPF_MASK;
    if (op === OP_ALLOC) {
      live.set(words[b + TR_ADDR], i);
      continue;
    }
    const from = op === OP_FREE ? words[b + TR_ADDR] : words[b + TR_OLDADDR];
    const ref = live.get(from);
    words[b + TR_REF] = ref ?? NO_REF;
    if (ref !== undefined) live.delete(from);
    if (op === OP_RESIZE) live.set(words[b + TR_ADDR], i);
  }
}

/**
 * Refuses anything that is not a {@linkcode Trace} (a profile function's `trace` argument).
 * @throws {UmemError} `invalid-argument` naming the function
 */
export function checkTrace(fn: string, trace: unknown): void {
  if (!(trace instanceof Trace)) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: expected a Trace, got ${
        trace === null ? "null" : typeof trace === "object" ? trace.constructor?.name : typeof trace
      }`,
    );
  }
}

/**
 * Merges the traces of several workers into one, ordered by wall-clock time (records of equal
 * times keep their worker's order), with one site table and one cache table, and links it.
 * Each record keeps its worker slot.
 *
 * @param traces the traces (each worker's `stop()`)
 * @returns the merged trace
 * @throws {UmemError} `invalid-argument` for something that is not an array of traces
 *
 * @example
 * ```ts
 * import { mergeTraces, TraceBuilder } from "@umem/umem/profile";
 * const a = new TraceBuilder(1000);
 * a.worker = 1;
 * a.clock = () => 10;
 * a.alloc(0x100, 8);
 * const b = new TraceBuilder(1000);
 * b.worker = 2;
 * b.clock = () => 20;
 * b.free(0x100, 8);
 * const t = mergeTraces([b.finish(), a.finish()]);
 * console.log(t.at(0).worker, t.at(1).worker, t.at(1).ref); // 1 2 0
 * ```
 */
export function mergeTraces(traces: readonly Trace[]): Trace {
  if (!Array.isArray(traces as unknown)) {
    throw new UmemError("invalid-argument", "mergeTraces: expected an array of traces");
  }
  traces.forEach((t) => checkTrace("mergeTraces", t));
  if (traces.length === 0) return new TraceBuilder(Date.now(), 16).finish();
  const start = Math.min(...traces.map((t) => t.start));
  const total = traces.reduce((n, t) => n + t.count, 0);
  const words = new Uint32Array(total * TR_WORDS), times = new Float64Array(total);
  const sites = new Map<string, number>([["", 0]]), siteList = [""];
  const caches = new Map<string, number>(), cacheList: TraceCache[] = [];
  const siteMaps = traces.map((t) =>
    t.sites.map((s) => {
      let i = sites.get(s);
      if (i === undefined) {
        i = siteList.length;
        siteList.push(s);
        sites.set(s, i);
      }
      return i;
    })
  );
  const cacheMaps = traces.map((t) =>
    t.caches.map((c) => {
      let i = caches.get(c.name);
      if (i === undefined) {
        cacheList.push(c);
        i = cacheList.length;
        caches.set(c.name, i);
      }
      return i;
    })
  );
  const pos = traces.map(() => 0);
  const shift = traces.map((t) => (t.start - start) * 1000);
  for (let k = 0; k < total; k++) {
    let best = -1, bestTime = Infinity;
    for (let j = 0; j < traces.length; j++) {
      if (pos[j] < traces[j].count) {
        const tm = traces[j].times[pos[j]] + shift[j];
        if (tm < bestTime) {
          best = j;
          bestTime = tm;
        }
      }
    }
    const t = traces[best], i = pos[best]++;
    const from = i * TR_WORDS, to = k * TR_WORDS;
    words.set(t.words.subarray(from, from + TR_WORDS), to);
    words[to + TR_SITE] = siteMaps[best][t.words[from + TR_SITE]] ?? 0;
    const c = t.words[from + TR_CACHE];
    words[to + TR_CACHE] = c === 0 ? 0 : cacheMaps[best][c - 1] ?? 0;
    times[k] = bestTime;
  }
  link(words, total);
  return new Trace(words, times, siteList, cacheList, start);
}
