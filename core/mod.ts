/**
 * The core of umem: the heap image in a SharedArrayBuffer, word locks and vmem arenas.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem/core";
 * const heap = Heap.create({ size: 1 << 20 });
 * const a = heap.vmem.alloc(4096);
 * heap.vmem.free(a, 4096);
 * ```
 *
 * @module
 */
export { Heap, type HeapOptions } from "./heap.ts";
export { type CacheCallbacks, HeapView } from "./image.ts";
export { type HeapHook } from "./hooks.ts";
export { Cache, type CacheOptions, type CacheStats } from "./cache.ts";
export { Libc, type SizedAllocator } from "./libc.ts";
export { type AuditTransaction, HeapCorruptionError } from "./debug.ts";
export {
  type ArenaRow,
  type BufferState,
  type CacheRow,
  inspect,
  Inspector,
  type LeakClass,
  type LeakReport,
  type LogEntry,
  type Status,
  type WalkEntry,
  type WhatIs,
} from "./inspect.ts";
export { type ContentsEntry, type FailEntry } from "./log_read.ts";
export { readSnapshot, Snapshot, writeSnapshot } from "./snapshot.ts";
export {
  Vmem,
  type VmemLeakReport,
  type VmemPolicy,
  type VmemSegment,
  type VmemStats,
  type XallocConstraints,
} from "./vmem.ts";
export {
  CorruptImageError,
  HeapLockedError,
  OutOfMemoryError,
  UmemError,
  type UmemErrorKind,
} from "./errors.ts";
