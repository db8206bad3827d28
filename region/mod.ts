/**
 * `region`: Vmalloc's regions (Vo 1996) in a SharedArrayBuffer. A {@linkcode Region} is a
 * discipline, where raw memory comes from ({@linkcode heapDiscipline} (Vmdcheap),
 * {@linkcode growableDiscipline} (Vmdcsbrk), {@linkcode bufferDiscipline} over a buffer that
 * may come from another worker or a file), and a method, how blocks are managed: `best`
 * (Vmbest), `pool` (Vmpool), `last` (Vmlast), `debug` (Vmdebug) and `profile` (Vmprofile).
 * Every structure lives in the region's memory, so a region reopens from its bytes. The
 * malloc-compatible interface ({@linkcode malloc}, {@linkcode free}, {@linkcode realloc}) uses
 * a default region whose method the environment picks (`VMETHOD`, `VMDEBUG`, `VMTRACE`,
 * `VMPROFILE`), and trace lines in Vmalloc's format are written by {@linkcode formatTraceLine}
 * and read back by {@linkcode parseTraceLine}.
 *
 * @example
 * ```ts
 * import { growableDiscipline, Region } from "@umem/umem/region";
 * const reports: string[] = [];
 * const r = Region.open(growableDiscipline(), "debug", { onError: (e) => reports.push(e.message) });
 * const p = r.alloc(4);
 * new Uint8Array(r.buffer)[p + 4] = 0; // overwrite past the block
 * r.free(p); // refused and reported
 * r.free(p + 1000); // refused and reported
 * console.log(reports.map((l) => l.split(":")[0])); // [ "corrupted data", "free error" ]
 * ```
 *
 * @module
 */
export {
  type MethodName,
  Region,
  type RegionAllocator,
  type RegionOptions,
  type RegionStats,
  type ResizeOptions,
} from "./region.ts";
export {
  bufferDiscipline,
  type Discipline,
  type EventDetail,
  growableDiscipline,
  type GrowableOptions,
  heapDiscipline,
  type RegionEvent,
  type SegmentHeap,
} from "./discipline.ts";
export { RegionError, type Site } from "./errors.ts";
export { formatTraceLine, parseTraceLine, type TraceRecord } from "./trace.ts";
export {
  calloc,
  defaultMalloc,
  free,
  Malloc,
  malloc,
  type MallocConfig,
  mallocConfig,
  mallocFromEnv,
  realloc,
} from "./malloc.ts";
export { UmemError, type UmemErrorKind } from "../core/mod.ts";
