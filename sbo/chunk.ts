/**
 * Chunks: the spans of memory a bump arena carves blocks from, and where they come from.
 *
 * Theory. A chunk is one allocation from a *source*: the heap's sized allocation
 * (`heap.alloc(size)` / `heap.free(ptr, size)`, through the calling worker's chunk pool when the
 * arena pools), a vmem arena (`vmem.alloc(size)` / `vmem.free(addr, size)`), or an object cache
 * (`cache.alloc()` / `cache.free(ptr)`, every chunk one buffer), which are the core's allocators
 * (DESIGN.md, principle 10). A chunk opens with a `CH_*` header; the arena's blocks follow it.
 * The arena links its chunks newest first through `CH_PREV`. A *normal* chunk is the one the
 * bump pointer runs through (one at a time: the arena's current chunk); a *large* chunk holds a
 * single block too big for the normal chunks, so that it does not waste the rest of the current
 * chunk, which stays current.
 *
 * Heap chunks are powers of two (`CHUNK_MIN` … `CHUNK_POOL_MAX`, which the pool recycles by
 * class) or whole pages above that; vmem chunks are any size; cache chunks are the cache's
 * buffer size.
 *
 * Invariants.
 * - `CH_SIZE` is the size given to the source, so the chunk goes back with the same size.
 * - For a normal chunk, `CH_DATA ≤ cursor ≤ CH_TOP ≤ chunk + CH_SIZE` while it is not current,
 *   and `CH_BASE` is the bytes the arena had used in normal chunks before it.
 * - For a large chunk, `[CH_DATA, CH_TOP)` is its one block, alignment padding included.
 *
 * Lock order: sbo takes no lock of its own. The source's locks (a vmem arena's lock, a cache's
 * depot and slab locks) are taken inside its alloc and free, never while sbo holds anything.
 *
 * @module
 */

import { Cache, Heap, Vmem } from "../core/mod.ts";

// ---- Chunk header (32 bytes) ----
/** Next older chunk of the arena (0 for the first); in a pool, the next pooled chunk. */
export const CH_PREV = 0;
/** Bytes of the chunk, header included: the size the source was asked for. */
export const CH_SIZE = 4;
/** `CK_*` kind of the chunk. */
export const CH_KIND = 8;
/** Normal chunk: bytes the arena had used in normal chunks before this one. */
export const CH_BASE = 12;
/** First byte after the header (after the arena record, in the first chunk). */
export const CH_DATA = 16;
/** Normal chunk: the cursor when it stopped being current; large chunk: its block's end. */
export const CH_TOP = 20;
/** The arena record the chunk belongs to (for whatis-style inspection). */
export const CH_ARENA = 24;
/** {@linkcode CH_MAGIC_VALUE} while the chunk belongs to an arena. */
export const CH_MAGIC = 28;
/** Bytes of a chunk header. */
export const CH_HEADER = 32;
/** "SBOC" as a little-endian word. */
export const CH_MAGIC_VALUE = 0x434f4253;

/** A normal chunk: the bump pointer runs through it. */
export const CK_NORMAL = 1;
/** A large chunk: one block too big for the normal chunks. */
export const CK_LARGE = 2;
/** Flag on the first chunk, which holds the arena record after its header. */
export const CK_FIRST = 4;

/** The smallest chunk. */
export const CHUNK_MIN = 256;
/** The largest chunk the pool recycles; larger heap chunks are whole pages. */
export const CHUNK_POOL_MAX = 1 << 20;

/** Source kinds, as the arena record stores them. */
export const SRC_HEAP = 0;
/** A vmem arena; the record stores the arena's address. */
export const SRC_VMEM = 1;
/** An object cache; the record stores the cache's address. */
export const SRC_CACHE = 2;

/**
 * Where an arena's chunks come from, as sbo's signatures name it: one of the core's allocators,
 * a `Heap` (sized allocation), a `Vmem` arena or a `Cache`, told apart at run time (any other
 * object is refused, since the arena's record must name its source in the buffer).
 */
export interface ChunkSource {
  /** Allocates `size` bytes (a cache's buffers have one size and ignore it). */
  alloc(size: number): number;
  /** Frees `size` bytes at `ptr` (a cache ignores the size). */
  free(ptr: number, size: number): void;
}

/** The allocators a chunk source really is. */
export type CoreSource = Heap | Vmem | Cache;

/** Whether `x` is one of the core's allocators that can serve chunks. */
export function isCoreSource(x: unknown): x is CoreSource {
  return x instanceof Heap || x instanceof Vmem || x instanceof Cache;
}

/** The `SRC_*` kind of a source. */
export function sourceKind(source: CoreSource): number {
  return source instanceof Vmem ? SRC_VMEM : source instanceof Cache ? SRC_CACHE : SRC_HEAP;
}

/** The address of a source's record in the image (0 for the heap itself). */
export function sourceAddr(source: CoreSource): number {
  return source instanceof Heap ? 0 : source.addr;
}

/**
 * Bytes of a chunk that holds at least `bytes` (header included) from a heap or vmem source:
 * a power of two up to {@linkcode CHUNK_POOL_MAX}, whole pages above.
 */
export function chunkBytes(bytes: number): number {
  if (bytes <= CHUNK_MIN) return CHUNK_MIN;
  if (bytes <= CHUNK_POOL_MAX) return 2 ** (32 - Math.clz32(bytes - 1));
  return Math.ceil(bytes / 4096) * 4096;
}

/** Takes a chunk of `size` bytes from a vmem or cache source (the heap goes through the pool). */
export function sourceTake(source: CoreSource, size: number): number {
  if (source instanceof Heap) return source.alloc(size);
  if (source instanceof Vmem) return source.alloc(size);
  return source.alloc();
}

/** Gives a chunk of `size` bytes back to a source. */
export function sourceGive(source: CoreSource, chunk: number, size: number): void {
  if (source instanceof Cache) source.free(chunk);
  else source.free(chunk, size);
}
