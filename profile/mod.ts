/**
 * `profile`: allocation traces, recorded, saved, summarised, replayed against any allocator,
 * cut into phases, and used to pre-warm a heap.
 *
 * {@linkcode record} attaches a heap hook that appends every alloc, free and resize of this
 * worker to a compact binary trace (operation, size, address, cache, worker, time and, on
 * request, call site); with no recorder the heap pays one flag test. Traces of several workers
 * merge by time ({@linkcode mergeTraces}), save as `.umt` files ({@linkcode saveTrace},
 * {@linkcode loadTrace}; format in trace_format.ts) and come from Vmalloc's `VMTRACE` files
 * too ({@linkcode readVmtrace}). {@linkcode summary} gives Vmprofile's figures per call site;
 * {@linkcode replay} is the Vmalloc paper's simulator (time, peak extent, peak busy, moves and
 * bytes copied); {@linkcode phases} finds where behaviour changes; {@linkcode prewarm} builds
 * the buffers a recorded run needed so a service starts warm. The generators make the paper's
 * datasets, and `profile/study.ts` replays each against each allocator.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { formatSummary, record, replay, summary } from "@umem/umem/profile";
 * const heap = Heap.create({ size: 1 << 20 });
 * const rec = record(heap);
 * const ps = Array.from({ length: 100 }, (_, i) => heap.alloc(16 + i));
 * ps.forEach((p, i) => heap.free(p, 16 + i));
 * const trace = rec.stop();
 * console.log(formatSummary(summary(trace)).split("\n")[0]);
 * // ALLOCATION USAGE SUMMARY: n_alloc=100:n_free=100:s_alloc=6550:s_free=6550:max_busy=6550:
 * console.log(replay(trace, "cache").peakBusy); // 6550
 * ```
 *
 * @module
 */
export {
  allocatorNames,
  type AllocatorOptions,
  makeAllocator,
  registerAllocator,
  type ReplayAllocator,
} from "./allocators.ts";
export {
  dbTrace,
  type FragmentOptions,
  fragmentTrace,
  gawkTrace,
  type GeneratorOptions,
  parserTrace,
} from "./generators.ts";
export {
  openTrace,
  PROFILE_COMMANDS,
  PROFILE_USAGE,
  profileCommand,
  type ProfileOutput,
} from "./cli.ts";
export { type Phase, type PhaseOptions, phases } from "./phases.ts";
export { prewarm, type PrewarmCache, type PrewarmReport } from "./prewarm.ts";
export { record, Recorder, type RecordOptions } from "./recorder.ts";
export { formatStudy, study, type StudyOptions, type StudyRow } from "./study.ts";
export { formatReplayTable } from "./table.ts";
export { replay, type ReplayOptions, type ReplayResult } from "./replay.ts";
export {
  formatSummary,
  type PoolSummary,
  type SiteFigures,
  type SiteSummary,
  type SizeBucket,
  summary,
  type SummaryOptions,
  type TraceSummary,
} from "./summary.ts";
export {
  mergeTraces,
  Trace,
  TraceBuilder,
  type TraceCache,
  type TraceOp,
  type TraceRecord,
} from "./trace.ts";
export { decodeTrace, encodeTrace, loadTrace, saveTrace } from "./trace_format.ts";
export {
  parseVmtrace,
  parseVmtraceLine,
  readVmtrace,
  type VmtraceLine,
  type VmtraceOptions,
  type VmtraceResult,
} from "./vmtrace.ts";
