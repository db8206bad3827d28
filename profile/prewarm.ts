/**
 * Pre-warming: building, before a service takes traffic, the buffers its caches needed at
 * their peak in a recorded run, so that the first requests take the magazine fast path.
 *
 * Theory. A fresh heap's caches are empty: their first allocations take the slow path into
 * the slab layer (a slab carved from vmem, buffers constructed one by one), which is what
 * makes a service's first requests slow. The trace of an earlier run says how many buffers
 * each cache held at once at its peak; allocating that many through the cache (its
 * constructor runs on each, as on any fresh buffer) and freeing them all again leaves them
 * constructed in this worker's magazines and in the depot, where the next allocations find
 * them without touching a slab. For the heap's sized allocations the count is kept per size
 * class (the `umem_alloc_N` caches), found from the heap's own caches; a `malloc` takes 8 bytes
 * more for its header, and where a trace does not say which interface made an allocation (a
 * VMTRACE, a summary) both classes are counted when they differ. From a trace the peaks are exact per class; from a summary,
 * which counts per size, the peaks of the sizes that share a class are added, an upper bound.
 *
 * Invariants. Prewarming changes nothing a program can see but the caches' contents and
 * statistics: every buffer it allocates it frees. A cache named in the trace that the heap
 * does not have is skipped and reported (`missing`). Allocations past the largest class
 * (vmem's) are not prewarmed.
 *
 * Lock order: the caches' own (it only calls `alloc` and `free`).
 *
 * @module
 */
import { type Cache, Heap, UmemError } from "../core/mod.ts";
import { checkSize } from "../core/internal.ts";
import {
  API_CACHE,
  API_HEAP,
  API_LIBC,
  NO_REF,
  OP_ALLOC,
  OP_FREE,
  OPF_API_SHIFT,
  OPF_MASK,
  TR_CACHE,
  TR_OP,
  TR_REF,
  TR_SIZE,
  TR_WORDS,
} from "./layout.ts";
import type { TraceSummary } from "./summary.ts";
import { Trace } from "./trace.ts";

/** One cache that {@linkcode prewarm} filled. */
export interface PrewarmCache {
  /** The cache's name. */
  cache: string;
  /** Its buffer size. */
  bufsize: number;
  /** Buffers built and left in its magazines. */
  buffers: number;
}

/** What {@linkcode prewarm} did. */
export interface PrewarmReport {
  /** The caches filled. */
  caches: PrewarmCache[];
  /** Buffers in all. */
  buffers: number;
  /** Their bytes. */
  bytes: number;
  /** Caches the trace names that the heap does not have. */
  missing: string[];
}

/** Bytes `heap.libc` puts before each block (core/libc.ts). */
const MALLOC_HEADER = 8;

/** The heap's size classes: `umem_alloc_N` caches, by buffer size. */
function sizeClasses(heap: Heap): Cache[] {
  return heap.caches()
    .filter((c) => /^umem_alloc_\d+$/.test(c.name))
    .sort((a, b) => a.bufsize - b.bufsize);
}

/** The class cache of a sized allocation, or undefined past the largest class. */
function classOf(classes: readonly Cache[], size: number): Cache | undefined {
  let lo = 0, hi = classes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (classes[mid].bufsize < size) lo = mid + 1;
    else hi = mid;
  }
  return classes[lo];
}

/** Peak live buffers per cache name (named caches) and per class (sized), from a trace. */
function peaksOfTrace(trace: Trace, classes: readonly Cache[]): Map<string, number> {
  const w = trace.words, n = trace.count;
  const keyOf = new Array<string | undefined>(n);
  const keyOf2 = new Map<number, string>();
  const live = new Map<string, number>(), peak = new Map<string, number>();
  const up = (k: string) => {
    const v = (live.get(k) ?? 0) + 1;
    live.set(k, v);
    if (v > (peak.get(k) ?? 0)) peak.set(k, v);
  };
  for (let i = 0; i < n; i++) {
    const b = i * TR_WORDS, op = w[b + TR_OP] & OPF_MASK;
    if (op !== OP_ALLOC) {
      const ref = w[b + TR_REF];
      const k = ref === NO_REF ? undefined : keyOf[ref];
      if (k !== undefined) live.set(k, live.get(k)! - 1);
      const k2 = ref === NO_REF ? undefined : keyOf2.get(ref);
      if (k2 !== undefined) live.set(k2, live.get(k2)! - 1);
      if (op === OP_FREE) continue;
    }
    const c = w[b + TR_CACHE], api = (w[b + TR_OP] >>> OPF_API_SHIFT) & OPF_MASK;
    if (c !== 0 && api === API_CACHE) {
      const k = trace.caches[c - 1]?.name;
      keyOf[i] = k;
      if (k !== undefined) up(k);
      continue;
    }
    // A sized allocation takes its size's class; a malloc adds its 8-byte header. A trace
    // without the interface (a VMTRACE, say) counts both classes when they differ.
    const size = w[b + TR_SIZE];
    const k = api === API_LIBC ? undefined : classOf(classes, size)?.name;
    const k2 = api === API_HEAP ? undefined : classOf(classes, size + MALLOC_HEADER)?.name;
    keyOf[i] = k;
    if (k !== undefined) up(k);
    if (k2 !== undefined && k2 !== k) {
      keyOf2.set(i, k2);
      up(k2);
    }
  }
  return peak;
}

/** Peak live buffers per cache name and per class, from a summary (sizes of a class add). */
function peaksOfSummary(s: TraceSummary, classes: readonly Cache[]): Map<string, number> {
  const peak = new Map<string, number>();
  for (const p of s.pools) {
    if (typeof p !== "object" || p === null || typeof p.cache !== "string") {
      throw new UmemError("invalid-argument", "prewarm: a pool of the summary is not a pool");
    }
    checkSize("prewarm", "pool size", p.size, 0, 0xffffffff);
    checkSize("prewarm", "pool peakLive", p.peakLive, 0, 1 << 24);
    const keys = p.cache !== ""
      ? [p.cache]
      : [classOf(classes, p.size)?.name, classOf(classes, p.size + MALLOC_HEADER)?.name];
    for (const k of new Set(keys)) {
      if (k !== undefined) peak.set(k, (peak.get(k) ?? 0) + p.peakLive);
    }
  }
  return peak;
}

/**
 * Builds ahead of time, through each cache (its constructor runs), the buffers each cache
 * needed at its peak in a recorded run, and leaves them constructed in the magazines and the
 * depot, so that the first allocations after start-up take the fast path.
 *
 * @param heap the heap (its caches must exist: create them first, with their constructors)
 * @param from a trace, or its summary
 * @returns the caches filled, the buffers and bytes, the caches missing
 * @throws {UmemError} `invalid-argument` when `heap` is not a heap, `from` is neither a trace
 *   nor a summary, or a pool of the summary is not one (a peak past 2^24 buffers included);
 *   `out-of-memory` when the heap cannot hold the peak
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { prewarm, record } from "@umem/umem/profile";
 * const old = Heap.create({ size: 1 << 20 });
 * old.createCache("conn", 256);
 * const rec = record(old);
 * const conns = old.cache("conn");
 * const held = Array.from({ length: 100 }, () => conns.alloc());
 * held.forEach((p) => conns.free(p));
 * const trace = rec.stop();
 *
 * const heap = Heap.create({ size: 1 << 20 });
 * const c = heap.createCache("conn", 256);
 * console.log(prewarm(heap, trace).buffers); // 100
 * const before = c.stats().constructed;
 * for (let i = 0; i < 100; i++) c.alloc();
 * console.log(c.stats().constructed === before); // true: no slab was touched
 * ```
 */
export function prewarm(heap: Heap, from: Trace | TraceSummary): PrewarmReport {
  if (!(heap instanceof Heap)) {
    throw new UmemError("invalid-argument", "prewarm: the first argument is not a heap");
  }
  const classes = sizeClasses(heap);
  let peaks: Map<string, number>;
  if (from instanceof Trace) peaks = peaksOfTrace(from, classes);
  else if (typeof from === "object" && from !== null && Array.isArray(from.pools)) {
    peaks = peaksOfSummary(from, classes);
  } else {
    throw new UmemError(
      "invalid-argument",
      "prewarm: the second argument is not a trace or a summary",
    );
  }
  const byName = new Map(heap.caches().map((c) => [c.name, c]));
  const report: PrewarmReport = { caches: [], buffers: 0, bytes: 0, missing: [] };
  // Every cache's buffers are held until all are built, then freed together: built and freed
  // one cache at a time, a later cache's want of memory reaped the earlier ones' magazines, and
  // the heap that could not hold the peak said nothing.
  const held: [Cache, number[]][] = [];
  try {
    for (const [name, count] of peaks) {
      const c = byName.get(name);
      if (c === undefined) {
        report.missing.push(name);
        continue;
      }
      if (count <= 0) continue;
      const bufs: number[] = [];
      held.push([c, bufs]);
      for (let i = 0; i < count; i++) bufs.push(c.alloc());
      report.caches.push({ cache: name, bufsize: c.bufsize, buffers: count });
      report.buffers += count;
      report.bytes += count * c.bufsize;
    }
  } finally {
    for (const [c, bufs] of held) for (const p of bufs) c.free(p);
  }
  return report;
}
