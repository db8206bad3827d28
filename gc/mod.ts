/**
 * `gc`: a conservative mark-sweep collector over the slab caches, with the interface of the
 * Boehm-Demers-Weiser collector, for structures in the shared heap that point at each other
 * (graphs, trees, caches shared by workers) and are hard to free by hand.
 *
 * {@linkcode Collector.create} makes the heap's collector; each other worker opens it with
 * {@linkcode Collector.attach}. `malloc` (scanned), `mallocAtomic` (never scanned),
 * `mallocUncollectable` and `free`, `realloc`, `addRoots` and `pin` (a `Disposable`: a
 * JavaScript variable's way of being a root), `registerFinalizer`, `collect`, `stats`, and a
 * find-leak mode that reports unreachable objects in the inspection API's leak format.
 *
 * Roots are the heap's root registry (shared with `findleaks`), uncollectable objects and
 * pins: the collector cannot see JavaScript variables, so pin what you hold only in one.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Collector } from "@umem/umem/gc";
 * const heap = Heap.create({ size: 8 << 20 });
 * const gc = Collector.create(heap);
 * using head = gc.pin(gc.malloc(8)); // [value, next]
 * let prev = head.ptr;
 * for (let i = 1; i < 100; i++) {
 *   const node = gc.malloc(8);
 *   heap.i32[node >> 2] = i;
 *   heap.i32[(prev >> 2) + 1] = node;
 *   prev = node;
 * }
 * const a = gc.malloc(16), b = gc.malloc(16); // an unreachable cycle
 * heap.i32[a >> 2] = b;
 * heap.i32[b >> 2] = a;
 * console.log(gc.collect().objects); // 2
 * ```
 *
 * @module
 */
export {
  Collector,
  type CollectorOptions,
  type CollectorStats,
  type CollectResult,
  type GcPhase,
} from "./collector.ts";
export { PinHandle } from "./pin.ts";
