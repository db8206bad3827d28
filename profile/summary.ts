/**
 * The summary of a trace, per call site and per cache, in the manner of Vmalloc's Vmprofile.
 *
 * Theory. Vmprofile keeps, for each allocating file and line, the number of allocations and
 * frees and their bytes, and the most bytes that site held at once (`max_busy`); a free is
 * charged to the site that allocated the block. The summary computes the same from a trace in
 * one pass, with the record index as the block's identity (`TR_REF`), plus what pre-warming
 * and tuning want: per cache and per size the most blocks live at once, the *temporary*
 * allocations (freed within a window of records after they were made), and a histogram of
 * sizes in powers of two. A resize counts as a free of the old size and an allocation of the
 * new one in the bytes (not in the counts of allocations and frees).
 *
 * Invariants. `allocs - frees` equals the blocks live at the end, less those whose free had no
 * maker in the trace (`unmatchedFrees`); the sites' figures add up to the totals.
 *
 * Lock order: none.
 *
 * @module
 */
import { checkSize } from "../core/internal.ts";
import {
  API_CACHE,
  NO_REF,
  OP_ALLOC,
  OP_FREE,
  OPF_API_SHIFT,
  OPF_MASK,
  TR_CACHE,
  TR_OP,
  TR_REF,
  TR_SITE,
  TR_SIZE,
  TR_WORDS,
} from "./layout.ts";
import { checkTrace, type Trace } from "./trace.ts";
import { checkObject, checkOptions } from "./arguments.ts";

/** The figures of one call site (or of the whole trace). */
export interface SiteFigures {
  /** Allocations (resizes not included). */
  allocs: number;
  /** Frees (resizes not included). */
  frees: number;
  /** Resizes. */
  resizes: number;
  /** Bytes allocated (resizes count their new size). */
  bytesAllocated: number;
  /** Bytes freed (resizes count their old size). */
  bytesFreed: number;
  /** The most bytes live at once. */
  maxBusy: number;
}

/** One call site's figures. */
export interface SiteSummary extends SiteFigures {
  /** The site ("" when sites were not recorded). */
  site: string;
}

/** One cache's figures, or the sized allocations of one size. */
export interface PoolSummary {
  /** The cache's name, or "" for the heap's sized allocations. */
  cache: string;
  /** The cache's buffer size, or the size asked for. */
  size: number;
  /** Allocations. */
  allocs: number;
  /** The most blocks live at once. */
  peakLive: number;
}

/** One bucket of the size histogram: sizes in [min, max]. */
export interface SizeBucket {
  /** Smallest size of the bucket. */
  min: number;
  /** Largest size of the bucket. */
  max: number;
  /** Allocations (and resizes) in it. */
  count: number;
  /** Their bytes. */
  bytes: number;
}

/** What {@linkcode summary} returns. */
export interface TraceSummary extends SiteFigures {
  /** Records. */
  records: number;
  /** Microseconds from the first record to the last. */
  duration: number;
  /** The worker slots that appear. */
  workers: number[];
  /** Bytes live at the end. */
  busyAtEnd: number;
  /** Frees and resizes whose block was made before the trace began. */
  unmatchedFrees: number;
  /** Per call site, most bytes allocated first. */
  sites: SiteSummary[];
  /** Per cache (`cache` ≠ "") and per size of sized allocations (`cache` = ""). */
  pools: PoolSummary[];
  /** Temporary allocations: freed within `window` records of their allocation. */
  temporary: { window: number; count: number; bytes: number; fraction: number };
  /** Sizes in powers of two. */
  histogram: SizeBucket[];
}

/** Options of {@linkcode summary}. */
export interface SummaryOptions {
  /** Records within which a freed block counts as temporary (default 32). */
  temporaryWindow?: number;
}

const figures = (): SiteFigures => ({
  allocs: 0,
  frees: 0,
  resizes: 0,
  bytesAllocated: 0,
  bytesFreed: 0,
  maxBusy: 0,
});

/**
 * Summarises a trace: per call site, allocations, frees, bytes allocated and freed and the
 * most bytes live (Vmprofile's figures), per cache and size the most blocks live, temporary
 * allocations and a size histogram.
 *
 * @param trace the trace
 * @param options `temporaryWindow`
 * @returns the summary
 * @throws {UmemError} `invalid-argument` for a bad window, options that are not an object or
 *   something that is not a trace
 *
 * @example
 * ```ts
 * import { summary, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x100, 100);
 * b.alloc(0x200, 300);
 * b.free(0x100, 100);
 * const s = summary(b.finish());
 * console.log(s.allocs, s.frees, s.maxBusy, s.busyAtEnd); // 2 1 400 300
 * ```
 */
export function summary(trace: Trace, options: SummaryOptions = {}): TraceSummary {
  checkTrace("summary", trace);
  checkOptions("summary", options);
  const window = checkSize(
    "summary",
    "temporaryWindow",
    options.temporaryWindow ?? 32,
    0,
    0x7fffffff,
  );
  const w = trace.words, n = trace.count;
  const total = figures();
  const sites = trace.sites.map(figures);
  const siteBusy = new Float64Array(trace.sites.length);
  const pools = new Map<string, PoolSummary & { live: number }>();
  const poolOf = new Array<PoolSummary & { live: number }>(n);
  const hist: SizeBucket[] = [];
  let busy = 0, unmatched = 0, tempCount = 0, tempBytes = 0;
  // The site each record's block is charged to (an alloc's own; a resize's, or the one it took
  // over when it names none).
  const siteOf = new Uint32Array(n);
  const bucket = (size: number) => {
    const k = size <= 1 ? 0 : 32 - Math.clz32(size - 1);
    while (hist.length <= k) {
      const j = hist.length;
      hist.push({ min: j === 0 ? 0 : 2 ** (j - 1) + 1, max: 2 ** j, count: 0, bytes: 0 });
    }
    hist[k].count++;
    hist[k].bytes += size;
  };
  const charge = (site: number, bytes: number) => {
    siteBusy[site] += bytes;
    if (siteBusy[site] > sites[site].maxBusy) sites[site].maxBusy = siteBusy[site];
  };
  const pool = (i: number, b: number) => {
    const c = w[b + TR_CACHE], size = w[b + TR_SIZE];
    const api = (w[b + TR_OP] >>> OPF_API_SHIFT) & OPF_MASK;
    const cache = c !== 0 && api === API_CACHE ? trace.caches[c - 1] : undefined;
    const key = cache !== undefined ? "c" + cache.name : "s" + size;
    let p = pools.get(key);
    if (p === undefined) {
      p = {
        cache: cache?.name ?? "",
        size: cache?.bufsize ?? size,
        allocs: 0,
        peakLive: 0,
        live: 0,
      };
      pools.set(key, p);
    }
    p.allocs++;
    if (++p.live > p.peakLive) p.peakLive = p.live;
    poolOf[i] = p;
  };
  for (let i = 0; i < n; i++) {
    const b = i * TR_WORDS, op = w[b + TR_OP] & OPF_MASK, ref = w[b + TR_REF];
    const size = w[b + TR_SIZE];
    if (op === OP_ALLOC) {
      const site = w[b + TR_SITE];
      siteOf[i] = site;
      total.allocs++;
      total.bytesAllocated += size;
      sites[site].allocs++;
      sites[site].bytesAllocated += size;
      busy += size;
      charge(site, size);
      bucket(size);
      pool(i, b);
    } else if (ref === NO_REF) {
      // The block was made before the trace: a free is only counted (to its own record's site,
      // so that the sites add up to the totals); a resize makes a block.
      unmatched++;
      if (op === OP_FREE) {
        total.frees++;
        sites[w[b + TR_SITE]].frees++;
        continue;
      }
      const site = w[b + TR_SITE];
      siteOf[i] = site;
      total.resizes++;
      sites[site].resizes++;
      total.bytesAllocated += size;
      sites[site].bytesAllocated += size;
      busy += size;
      charge(site, size);
      bucket(size);
      pool(i, b);
    } else {
      // The site the block's bytes were charged to: its maker's, or, for a resize that named
      // none, the site it took over.
      const rb = ref * TR_WORDS, old = w[rb + TR_SIZE], site = siteOf[ref];
      busy -= old;
      charge(site, -old);
      total.bytesFreed += old;
      sites[site].bytesFreed += old;
      const p = poolOf[ref];
      if (p !== undefined) p.live--;
      if (op === OP_FREE) {
        total.frees++;
        sites[site].frees++;
        if (i - ref <= window) {
          tempCount++;
          tempBytes += old;
        }
      } else {
        const nsite = w[b + TR_SITE] !== 0 ? w[b + TR_SITE] : site;
        siteOf[i] = nsite;
        total.resizes++;
        sites[nsite].resizes++;
        total.bytesAllocated += size;
        sites[nsite].bytesAllocated += size;
        busy += size;
        charge(nsite, size);
        bucket(size);
        // The block now counts in the pool of its new size (a realloc may move it to another
        // class: prewarm's bound must hold there).
        if (p !== undefined) pool(i, b);
      }
    }
    if (busy > total.maxBusy) total.maxBusy = busy;
  }
  const siteList = sites
    .map((f, i) => ({ site: trace.sites[i], ...f }))
    .filter((s) => s.allocs + s.frees + s.resizes > 0)
    .sort((a, b) => b.bytesAllocated - a.bytesAllocated || (a.site < b.site ? -1 : 1));
  return {
    records: n,
    duration: n === 0 ? 0 : trace.times[n - 1] - trace.times[0],
    workers: trace.workers(),
    ...total,
    busyAtEnd: busy,
    unmatchedFrees: unmatched,
    sites: siteList,
    pools: [...pools.values()].map(({ cache, size, allocs, peakLive }) => ({
      cache,
      size,
      allocs,
      peakLive,
    })).sort((a, b) => (a.cache < b.cache ? -1 : a.cache > b.cache ? 1 : a.size - b.size)),
    temporary: {
      window,
      count: tempCount,
      bytes: tempBytes,
      fraction: total.allocs === 0 ? 0 : tempCount / total.allocs,
    },
    histogram: hist.filter((h) => h.count > 0),
  };
}

/** The most cache and size lines {@linkcode formatSummary} prints. */
const MAX_POOL_LINES = 24;

/** `fn file,line` → `file=..:line=..:`, else `site=..:`. */
function siteFields(site: string): string {
  const m = /(?:^|\s)([^\s,]+),(\d+)$/.exec(site);
  if (site === "") return "file=?:line=0:";
  return m !== null ? `file=${m[1]}:line=${m[2]}:` : `site=${site}:`;
}

/**
 * Formats a summary as Vmprofile prints one: the `ALLOCATION USAGE SUMMARY` line, a line per
 * cache and per size (the 24 most allocated; one line sums the rest), a line per call site (`file=..:line=..:n_alloc=..:...:max_busy=..:`),
 * then the temporary allocations and the size histogram.
 *
 * @param s the summary
 * @returns the text, lines separated by newlines
 *
 * @example
 * ```ts
 * import { formatSummary, summary, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x100, 100);
 * b.free(0x100, 100);
 * console.log(formatSummary(summary(b.finish())).split("\n")[0]);
 * // ALLOCATION USAGE SUMMARY: n_alloc=1:n_free=1:s_alloc=100:s_free=100:max_busy=100:
 * ```
 */
export function formatSummary(s: TraceSummary): string {
  checkObject("formatSummary", "the summary", s);
  const line = (f: SiteFigures) =>
    `n_alloc=${f.allocs}:n_free=${f.frees}:s_alloc=${f.bytesAllocated}:s_free=${f.bytesFreed}:`;
  const out = [
    `ALLOCATION USAGE SUMMARY: ${line(s)}max_busy=${s.maxBusy}:`,
    `records=${s.records}:resizes=${s.resizes}:busy_at_end=${s.busyAtEnd}:unmatched_frees=${s.unmatchedFrees}:workers=${
      s.workers.join(",")
    }:duration_us=${Math.round(s.duration)}:`,
  ];
  // Named caches first, then the sizes most allocated; past `MAX_POOL_LINES`, one line for the rest.
  const pools = [...s.pools].sort((a, b) =>
    (a.cache === "" ? 1 : 0) - (b.cache === "" ? 1 : 0) || b.allocs - a.allocs || a.size - b.size
  );
  for (const p of pools.slice(0, MAX_POOL_LINES)) {
    out.push(
      `${
        p.cache === "" ? "size" : `cache=${p.cache}:bufsize`
      }=${p.size}:n_alloc=${p.allocs}:max_live=${p.peakLive}:`,
    );
  }
  if (pools.length > MAX_POOL_LINES) {
    const rest = pools.slice(MAX_POOL_LINES);
    out.push(
      `${rest.length} more sizes:n_alloc=${rest.reduce((n, p) => n + p.allocs, 0)}:`,
    );
  }
  for (const site of s.sites) {
    out.push(`${siteFields(site.site)}${line(site)}max_busy=${site.maxBusy}:`);
  }
  const t = s.temporary;
  out.push(
    `TEMPORARY: freed within ${t.window} records: n=${t.count}:bytes=${t.bytes}:fraction=${
      t.fraction.toFixed(3)
    }:`,
  );
  for (const h of s.histogram) {
    out.push(`SIZE ${h.min}..${h.max}: n=${h.count}:bytes=${h.bytes}:`);
  }
  return out.join("\n");
}
