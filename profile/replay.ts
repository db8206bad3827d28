/**
 * The simulator: a trace's operations run against any allocator, measured in time and space.
 *
 * Theory. The Vmalloc paper (Section 3) compares allocators by replaying recorded traces
 * through each and measuring the time taken and the memory used. Blocks are mapped by record
 * index, not by address: the block made by record `i` lives, in the allocator under test, at
 * `addr[i]`, and a free or resize names its maker's index (`TR_REF`), so a trace recorded at
 * one set of addresses replays anywhere. Space is the *peak extent* (the most memory the
 * allocator held from its source) against the *peak busy* (the most bytes the program had
 * live, a property of the trace); their ratio is the allocator's space overhead. A resize that
 * returns another address is a *move*, and copies the smaller of the two sizes.
 *
 * Time and space are measured on separate runs of fresh allocators when the allocator is given
 * by name, so the extent sampling (after every allocation that sets a new busy peak, and every
 * `sampleEvery` operations) does not weigh on the time; with `rounds` the time is the fastest
 * of that many runs.
 *
 * Invariants. Each operation is run once per run; a free whose block was made before the
 * trace began is skipped and counted (`skipped`), a resize of such a block allocates its new
 * block (and is counted too).
 *
 * Lock order: none beyond the allocators' own.
 *
 * @module
 */
import { checkSize } from "../core/internal.ts";
import { UmemError } from "../core/mod.ts";
import { type AllocatorOptions, makeAllocator, type ReplayAllocator } from "./allocators.ts";
import { NO_REF, OP_ALLOC, OP_FREE, OPF_MASK, TR_OP, TR_REF, TR_SIZE, TR_WORDS } from "./layout.ts";
import { checkTrace, type Trace } from "./trace.ts";
import { checkFlag, checkFunction, checkOptions } from "./arguments.ts";

/** Options of {@linkcode replay}. */
export interface ReplayOptions extends AllocatorOptions {
  /** Measure time (default true). */
  time?: boolean;
  /** Measure space (default true). */
  space?: boolean;
  /** Sample the extent every this many operations as well as at busy peaks (default 8). */
  sampleEvery?: number;
  /** Return the busy bytes after each operation (default false). */
  curve?: boolean;
  /**
   * Timed runs, each on a fresh allocator, the fastest kept (default 1; only when the
   * allocator is given by name or by a function that makes one).
   */
  rounds?: number;
}

/** What a replay measured. */
export interface ReplayResult {
  /** The allocator's name. */
  allocator: string;
  /** Records in the trace. */
  records: number;
  /** Operations run. */
  operations: number;
  /**
   * Frees and resizes whose block was made before the trace began: the frees are skipped,
   * the resizes allocate their new block.
   */
  skipped: number;
  /** Frees the allocator ignored (a bump arena's frees of blocks but the last). */
  ignoredFrees: number;
  /** Milliseconds the operations took (NaN when time was not measured). */
  timeMs: number;
  /** Nanoseconds per operation (NaN when time was not measured). */
  nsPerOp: number;
  /** The most memory the allocator held from its source (NaN when space was not measured). */
  peakExtent: number;
  /** The most bytes live at once. */
  peakBusy: number;
  /** `peakExtent / peakBusy`. */
  ratio: number;
  /** Resizes that moved the block. */
  moves: number;
  /** Bytes those moves copied. */
  bytesCopied: number;
  /** The busy bytes after each record, when `curve` was asked for. */
  busyCurve?: Float64Array;
  /** Set when the allocator threw (ran out of memory, refused a call): what, at which record. */
  failed?: string;
}

/** One pass over the trace: returns the measurements of this pass. */
function run(
  trace: Trace,
  a: ReplayAllocator,
  sample: number,
  curve: Float64Array | undefined,
): {
  ms: number;
  ops: number;
  skipped: number;
  peakExtent: number;
  peakBusy: number;
  moves: number;
  copied: number;
  failed?: string;
} {
  const w = trace.words, n = trace.count, addr = new Float64Array(n);
  let ops = 0, skipped = 0, busy = 0, peakBusy = 0, peakExtent = 0, moves = 0, copied = 0;
  let failed: string | undefined;
  const t0 = performance.now();
  let i = 0;
  try {
    for (; i < n; i++) {
      const b = i * TR_WORDS, op = w[b + TR_OP] & OPF_MASK, size = w[b + TR_SIZE];
      if (op === OP_ALLOC) {
        addr[i] = a.alloc(size);
        busy += size;
      } else {
        const ref = w[b + TR_REF];
        if (ref === NO_REF) {
          // The block was made before the trace began: a free is skipped, a resize makes
          // the new block.
          skipped++;
          if (op !== OP_FREE) {
            addr[i] = a.alloc(size);
            busy += size;
          }
          if (curve !== undefined) curve[i] = busy;
          if (busy > peakBusy) peakBusy = busy;
          continue;
        }
        const old = w[ref * TR_WORDS + TR_SIZE];
        if (op === OP_FREE) a.free(addr[ref], old);
        else {
          const q = a.resize(addr[ref], old, size);
          if (q !== addr[ref]) {
            moves++;
            copied += Math.min(old, size);
          }
          addr[i] = q;
          busy += size;
        }
        busy -= old;
      }
      ops++;
      if (curve !== undefined) curve[i] = busy;
      if (sample > 0 && (busy > peakBusy || i % sample === 0)) {
        const e = a.extent();
        if (e > peakExtent) peakExtent = e;
      }
      if (busy > peakBusy) peakBusy = busy;
    }
  } catch (e) {
    if (!(e instanceof UmemError)) throw e;
    failed = e.kind === "out-of-memory"
      ? `out of memory at record ${i} of ${n}`
      : `${e.kind} at record ${i} of ${n}: ${e.message.split("\n")[0]}`;
  }
  const ms = performance.now() - t0;
  if (sample > 0) peakExtent = Math.max(peakExtent, a.extent());
  return { ms, ops, skipped, peakExtent, peakBusy, moves, copied, ...(failed ? { failed } : {}) };
}

/**
 * Refuses an adapter that lacks one of the methods replay calls (a bare `TypeError` halfway
 * through a replay otherwise).
 */
function checkAdapter(a: unknown): ReplayAllocator {
  if (typeof a !== "object" || a === null) {
    throw new UmemError("invalid-argument", "replay: the adapter is not an object");
  }
  const o = a as Record<string, unknown>;
  for (const k of ["alloc", "free", "resize", "extent"]) {
    checkFunction("replay", `adapter.${k}`, o[k]);
  }
  return a as ReplayAllocator;
}

/**
 * Replays a trace against an allocator and measures time and space: peak extent, peak busy,
 * their ratio, resize moves and bytes copied.
 *
 * @param trace the trace
 * @param allocator an adapter's name (`heap`, `libc`, `cache`, `bump`, `context`, or one
 *   registered), an adapter, or a function that makes a fresh adapter
 * @param options what to measure, the extent sampling, the busy curve, the heap's size
 * @returns the measurements
 * @throws {UmemError} `invalid-argument` for something that is not a trace, an unknown
 *   allocator, an adapter without `alloc`, `free`, `resize` and `extent`, or bad options (a
 *   `UmemError` the allocator throws, out of memory or a refusal, ends the replay early with
 *   `failed` set instead)
 *
 * @example
 * ```ts
 * import { fragmentTrace, replay } from "@umem/umem/profile";
 * const t = fragmentTrace({ iterations: 1000 });
 * const r = replay(t, "libc");
 * console.log(r.peakBusy, r.moves > 0, r.ratio >= 1); // 56032 true true
 * ```
 */
export function replay(
  trace: Trace,
  allocator: string | ReplayAllocator | (() => ReplayAllocator),
  options: ReplayOptions = {},
): ReplayResult {
  checkTrace("replay", trace);
  checkOptions("replay", options);
  for (const k of ["time", "space", "curve"] as const) checkFlag("replay", k, options[k]);
  const time = options.time ?? true, space = options.space ?? true;
  const sample = checkSize("replay", "sampleEvery", options.sampleEvery ?? 8, 1, 1 << 30);
  const rounds = checkSize("replay", "rounds", options.rounds ?? 1, 1, 1000);
  const make = typeof allocator === "string"
    ? () => checkAdapter(makeAllocator(allocator, options))
    : typeof allocator === "function"
    ? () => checkAdapter(allocator())
    : undefined;
  if (make === undefined && (typeof allocator !== "object" || allocator === null)) {
    throw new UmemError("invalid-argument", "replay: the allocator is not a name or an adapter");
  }
  const curve = options.curve === true ? new Float64Array(trace.count) : undefined;
  let timed: ReturnType<typeof run> | undefined, spaced: ReturnType<typeof run> | undefined;
  let name: string, ignored = 0;
  if (make === undefined) {
    const a = checkAdapter(allocator);
    name = a.name;
    const r = run(trace, a, space ? sample : 0, curve);
    if (time) timed = r;
    if (space) spaced = r;
    ignored = a.ignoredFrees ?? 0;
    if (!time && !space) spaced = r;
  } else {
    let a = make();
    name = a.name;
    if (time) {
      for (let k = 0; k < rounds; k++) {
        if (k > 0) a = make();
        const r = run(trace, a, 0, space ? undefined : curve);
        if (timed === undefined || r.ms < timed.ms) timed = r;
      }
      ignored = a.ignoredFrees ?? 0;
      if (space) a = make();
    }
    if (space || !time) {
      spaced = run(trace, a, space ? sample : 0, curve);
      ignored = a.ignoredFrees ?? 0;
    }
  }
  const first = (timed ?? spaced)!;
  const peakExtent = space ? spaced!.peakExtent : NaN;
  return {
    allocator: name,
    records: trace.count,
    operations: first.ops,
    skipped: first.skipped,
    ignoredFrees: ignored,
    timeMs: timed !== undefined ? timed.ms : NaN,
    nsPerOp: timed !== undefined && timed.ops > 0 ? (timed.ms * 1e6) / timed.ops : NaN,
    peakExtent,
    peakBusy: first.peakBusy,
    ratio: first.peakBusy > 0 ? peakExtent / first.peakBusy : NaN,
    moves: first.moves,
    bytesCopied: first.copied,
    ...(curve !== undefined ? { busyCurve: curve } : {}),
    ...(first.failed !== undefined || spaced?.failed !== undefined
      ? { failed: (first.failed ?? spaced?.failed)! }
      : {}),
  };
}
