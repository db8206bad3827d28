/**
 * Scopes: an arena whose lifetime is a block of code or a promise.
 *
 * Theory. A scope is a {@linkcode BumpArena} tied to the construct that bounds the work it
 * serves. `using arena = scope(heap)` (explicit resource management) ends the arena when the
 * block is left, by any path, exceptions included; `withArena(heap, fn)` ends it when the
 * promise `fn` returned settles, fulfilled or rejected. A scope opened on an arena nests in it:
 * it ends at the latest when its parent does, so nothing allocated in a scope outlives the
 * scope that encloses it. Each request of a server takes a scope and drops it whole: no free
 * per object, no leak past the request, and the chunks go back to the worker's pool for the
 * next request.
 *
 * Invariants. A scope's arena is ended exactly once, when its scope closes (or its parent's);
 * every later use of the handle throws `destroyed`. The state is the arena record's (see
 * sbo/bump_arena.ts); a scope adds none.
 *
 * Lock order: none (see sbo/bump_arena.ts).
 *
 * @module
 */

import { UmemError } from "../core/mod.ts";
import { BumpArena, type BumpArenaOptions } from "./bump_arena.ts";
import type { ChunkSource } from "./chunk.ts";

/**
 * Opens a scope: an arena to declare with `using`, which ends it when the block is left. On a
 * heap (or a vmem arena or a cache) it is a top-level arena drawing chunks from this worker's
 * pool; on an open arena it nests: it shares the parent's pool and ends when the parent does.
 *
 * @param parent a `Heap`, `Vmem` or `Cache` to draw chunks from, or an open `BumpArena` to nest in
 * @param options `chunkSize`, `maxChunkSize`, `limit` (a nested scope's defaults to what the
 *   parent has left), `pool`
 * @returns the scope's arena
 * @throws {UmemError} `invalid-argument` for a bad parent or option; `destroyed` when the
 *   parent arena has ended
 * @throws {OutOfMemoryError} when there is no room for the first chunk
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { type BumpArena, ChunkPool, scope } from "@umem/umem/sbo";
 * const heap = Heap.create({ size: 1 << 20 });
 * let inner: BumpArena;
 * {
 *   using request = scope(heap);
 *   const header = request.alloc(64);
 *   {
 *     using parse = scope(request); // nested in the request's scope; ends first
 *     parse.alloc(1000);
 *     inner = parse;
 *   }
 *   heap.u8[header] = 1;
 *   console.log(inner.disposed, request.disposed); // true false
 * }
 * console.log(ChunkPool.of(heap).stats().chunks); // 2: both first chunks, kept for reuse
 * ```
 */
export function scope(parent: ChunkSource | BumpArena, options?: BumpArenaOptions): BumpArena {
  return new BumpArena(parent, options);
}

/**
 * Runs `fn` with a fresh arena and ends the arena when the promise `fn` returns settles,
 * fulfilled or rejected (or when `fn` throws). Blocks allocated in it must not be used after.
 *
 * @param parent a `Heap`, `Vmem` or `Cache` to draw chunks from, or an open `BumpArena` to nest in
 * @param fn the work, given the arena; may be async
 * @param options `chunkSize`, `maxChunkSize`, `limit`, `pool`
 * @returns what `fn` returned (awaited)
 * @throws {UmemError} as {@linkcode scope}, and whatever `fn` throws or rejects with
 * @throws {OutOfMemoryError} when there is no room for the first chunk
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { withArena } from "@umem/umem/sbo";
 * const heap = Heap.create({ size: 1 << 20 });
 * const sum = await withArena(heap, async (arena) => {
 *   const xs = arena.alloc(8 * 100);
 *   for (let i = 0; i < 100; i++) heap.f64[(xs >> 3) + i] = i;
 *   await Promise.resolve();
 *   let s = 0;
 *   for (let i = 0; i < 100; i++) s += heap.f64[(xs >> 3) + i];
 *   return s;
 * });
 * console.log(sum); // 4950
 * ```
 */
export async function withArena<T>(
  parent: ChunkSource | BumpArena,
  fn: (arena: BumpArena) => T | Promise<T>,
  options?: BumpArenaOptions,
): Promise<T> {
  if (typeof fn !== "function") {
    throw new UmemError("invalid-argument", "withArena: fn must be a function");
  }
  const arena = new BumpArena(parent, options);
  try {
    return await fn(arena);
  } finally {
    arena.dispose();
  }
}
