/**
 * `sbo`: a bump allocator and scoped arenas, for memory that lives as long as one request or
 * one parse.
 *
 * A {@linkcode BumpArena} carves blocks out of chunks by moving a pointer, a few loads and
 * stores on the heap's `Int32Array`, and drops them all at once: at the end of a `using` block
 * ({@linkcode scope}), when a promise settles ({@linkcode withArena}), or with `reset`,
 * `rewind(mark)` or `dispose`. Only the last block can be freed or resized (Vmalloc's `last`
 * method). Chunks come from the heap through each worker's {@linkcode ChunkPool}, so a busy
 * server does not go back to the heap on every request, or from a vmem arena or an object
 * cache. The arena's record lives in its first chunk, in the shared buffer: another worker
 * given its address reads its stats ({@linkcode BumpArena.statsAt}).
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { scope, withArena } from "@umem/umem/sbo";
 * const heap = Heap.create({ size: 1 << 20 });
 *
 * function handle(body: Uint8Array): number {
 *   using arena = scope(heap, { limit: 1 << 16 });
 *   const copy = arena.alloc(body.length, 1);
 *   heap.u8.set(body, copy);
 *   let sum = 0;
 *   for (let i = 0; i < body.length; i++) sum += heap.u8[copy + i];
 *   return sum; // the arena ends here, also if something threw
 * }
 * console.log(handle(new Uint8Array([1, 2, 3]))); // 6
 * console.log(await withArena(heap, (a) => a.stats().chunks)); // 1
 * ```
 *
 * @module
 */
export { BumpArena, type BumpArenaOptions, type BumpArenaStats } from "./bump_arena.ts";
export { ChunkPool, type ChunkPoolStats } from "./chunk_pool.ts";
export { type ChunkSource } from "./chunk.ts";
export { scope, withArena } from "./scope.ts";
