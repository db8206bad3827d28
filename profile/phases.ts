/**
 * Phases: where a trace's behaviour changes, and what each stretch is like.
 *
 * Theory. Programs run in phases (build a table, then query it; parse, then evaluate), and
 * each phase wants different things of an allocator. The trace is cut into windows of
 * `window` records; each window is described by its balance, the share of allocations among
 * its allocations and frees (a resize counts as one of each), and its size mix, the share of
 * its allocations in each power-of-two size class. Windows are taken in order and compared
 * with the running mean of the current phase: the distance is the difference of the balances
 * plus half the L1 distance of the size mixes (each term between 0 and 1). A window farther
 * than `threshold` opens a new phase. Each phase is then described: its span (records and
 * times), its counts, bytes and busy bytes at both ends, and a character such as "growing:
 * allocations 9:1, sizes 16..64".
 *
 * Invariants. The phases tile the trace: the first starts at 0, each starts where the one
 * before ended, the last ends at `count`.
 *
 * Lock order: none.
 *
 * @module
 */
import { checkSize } from "../core/internal.ts";
import { NO_REF, OP_ALLOC, OP_FREE, OPF_MASK, TR_OP, TR_REF, TR_SIZE, TR_WORDS } from "./layout.ts";
import { checkTrace, type Trace } from "./trace.ts";
import { checkOptions } from "./arguments.ts";

/** One phase of a trace. */
export interface Phase {
  /** First record. */
  start: number;
  /** One past the last record. */
  end: number;
  /** Time of the first record (µs since the trace began). */
  startTime: number;
  /** Time of the last record. */
  endTime: number;
  /** Allocations. */
  allocs: number;
  /** Frees. */
  frees: number;
  /** Resizes. */
  resizes: number;
  /** Bytes allocated (resizes count the new size). */
  bytesAllocated: number;
  /** Busy bytes before the phase. */
  busyBefore: number;
  /** Busy bytes after it. */
  busyAfter: number;
  /** Mean size of its allocations. */
  meanSize: number;
  /** The sizes most of its allocations fall in (the smallest range with 80% of them). */
  sizeRange: [number, number];
  /** `growing`, `shrinking` or `steady`, the balance and the sizes, in words. */
  character: string;
}

/** Options of {@linkcode phases}. */
export interface PhaseOptions {
  /** Records per window (default: a fiftieth of the trace, at least 64). */
  window?: number;
  /** Distance past which a window opens a new phase, in (0, 2] (default 0.5). */
  threshold?: number;
}

const BUCKETS = 33;
const bucketOf = (size: number) => (size <= 1 ? 0 : 32 - Math.clz32(size - 1));

/** Distance of a window from a phase's mean: balance difference + half the size-mix L1. */
function distance(
  bal: number,
  mix: Float64Array,
  pBal: number,
  pMix: Float64Array,
  hasSizes: boolean,
): number {
  let l1 = 0;
  if (hasSizes) { for (let k = 0; k < BUCKETS; k++) l1 += Math.abs(mix[k] - pMix[k]); }
  return Math.abs(bal - pBal) + l1 / 2;
}

/**
 * Cuts a trace where its behaviour changes (the size mix, or the balance of allocations and
 * frees) and describes each phase.
 *
 * @param trace the trace
 * @param options window and threshold
 * @returns the phases, in order; they tile the trace (none for an empty trace)
 * @throws {UmemError} `invalid-argument` for a bad window or threshold, options that are not an
 *   object or something that is not a trace
 *
 * @example
 * ```ts
 * import { phases, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * for (let i = 0; i < 1024; i++) b.alloc(16 * (i + 1), 32); // build
 * for (let i = 0; i < 1024; i++) b.free(16 * (i + 1), 32); // tear down
 * const ps = phases(b.finish());
 * console.log(ps.length, ps[0].end, ps[1].character); // 2 1024 shrinking: allocations to frees 0:1024
 * ```
 */
export function phases(trace: Trace, options: PhaseOptions = {}): Phase[] {
  checkTrace("phases", trace);
  checkOptions("phases", options);
  const n = trace.count;
  const window = checkSize(
    "phases",
    "window",
    options.window ?? Math.max(64, Math.floor(n / 50)),
    1,
    0x7fffffff,
  );
  const threshold = options.threshold ?? 0.5;
  if (typeof threshold !== "number" || !(threshold > 0 && threshold <= 2)) {
    checkSize("phases", "threshold", threshold, 1, 2);
  }
  if (n === 0) return [];
  const w = trace.words;
  const cuts = [0];
  const pMix = new Float64Array(BUCKETS), mix = new Float64Array(BUCKETS);
  let pBal = 0, pWindows = 0, pSized = 0;
  for (let s = 0; s < n; s += window) {
    const e = Math.min(n, s + window);
    mix.fill(0);
    let a = 0, f = 0, sized = 0;
    for (let i = s; i < e; i++) {
      const b = i * TR_WORDS, op = w[b + TR_OP] & OPF_MASK;
      if (op !== OP_FREE) {
        mix[bucketOf(w[b + TR_SIZE])]++;
        sized++;
      }
      if (op === OP_ALLOC) a++;
      else if (op === OP_FREE) f++;
      else {
        a++;
        f++;
      }
    }
    if (sized > 0) { for (let k = 0; k < BUCKETS; k++) mix[k] /= sized; }
    const bal = a + f === 0 ? 0.5 : a / (a + f);
    // A short last window is judged only if it is at least half a window long.
    const judged = pWindows > 0 && (e - s) * 2 >= window;
    if (
      judged && distance(bal, mix, pBal, pMix, sized > 0 && pSized > 0) > threshold
    ) {
      cuts.push(s);
      pBal = 0;
      pWindows = 0;
      pSized = 0;
      pMix.fill(0);
    }
    // Running means of the phase.
    pWindows++;
    pBal += (bal - pBal) / pWindows;
    if (sized > 0) {
      pSized++;
      for (let k = 0; k < BUCKETS; k++) pMix[k] += (mix[k] - pMix[k]) / pSized;
    }
  }
  cuts.push(n);
  const out: Phase[] = [];
  let busy = 0;
  for (let c = 0; c + 1 < cuts.length; c++) {
    const start = cuts[c], end = cuts[c + 1];
    const p = describe(trace, start, end, busy);
    busy = p.busyAfter;
    out.push(p);
  }
  return out;
}

/** The figures and the character of records [start, end). */
function describe(trace: Trace, start: number, end: number, busyBefore: number): Phase {
  const w = trace.words, hist = new Float64Array(BUCKETS);
  let allocs = 0, frees = 0, resizes = 0, bytes = 0, busy = busyBefore;
  for (let i = start; i < end; i++) {
    const b = i * TR_WORDS, op = w[b + TR_OP] & OPF_MASK, size = w[b + TR_SIZE];
    const ref = w[b + TR_REF];
    const old = ref === NO_REF ? 0 : w[ref * TR_WORDS + TR_SIZE];
    if (op === OP_ALLOC) {
      allocs++;
      bytes += size;
      busy += size;
      hist[bucketOf(size)]++;
    } else if (op === OP_FREE) {
      frees++;
      busy -= old;
    } else {
      resizes++;
      bytes += size;
      busy += size - old;
      hist[bucketOf(size)]++;
    }
  }
  const sized = allocs + resizes;
  // The smallest run of buckets holding 80% of the allocations.
  let lo = 0, hi = BUCKETS - 1;
  if (sized > 0) {
    let best = BUCKETS;
    for (let i = 0; i < BUCKETS; i++) {
      let sum = 0;
      for (let j = i; j < BUCKETS; j++) {
        sum += hist[j];
        if (sum >= 0.8 * sized) {
          if (j - i < best) {
            best = j - i;
            lo = i;
            hi = j;
          }
          break;
        }
      }
    }
  }
  const range: [number, number] = sized === 0
    ? [0, 0]
    : [lo === 0 ? 0 : 2 ** (lo - 1) + 1, 2 ** hi];
  const ratio = (x: number, y: number) => {
    if (y === 0 || x === 0) return `${x}:${y}`;
    const r = x / y;
    return r >= 1 ? `${Math.round(r * 10) / 10}:1` : `1:${Math.round((y / x) * 10) / 10}`;
  };
  const kind = allocs > 2 * frees ? "growing" : frees > 2 * allocs ? "shrinking" : "steady";
  const character = `${kind}: allocations to frees ${ratio(allocs, frees)}` +
    (sized > 0 ? `, sizes ${range[0]}..${range[1]}` : "") +
    (resizes > 0 ? `, ${resizes} resizes` : "");
  return {
    start,
    end,
    startTime: trace.times[start],
    endTime: trace.times[end - 1],
    allocs,
    frees,
    resizes,
    bytesAllocated: bytes,
    busyBefore,
    busyAfter: busy,
    meanSize: sized === 0 ? 0 : bytes / sized,
    sizeRange: range,
    character,
  };
}
