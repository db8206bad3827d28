/**
 * The bump arena: blocks carved from chunks by moving a pointer, dropped all at once.
 *
 * Theory. An arena owns a list of chunks (sbo/chunk.ts) taken from the heap (through the
 * worker's chunk pool), a vmem arena or an object cache. Its *record* (`BA_*`) sits in the
 * first chunk, right after the chunk header, so an arena costs one chunk and nothing else; the
 * JavaScript {@linkcode BumpArena} is a handle holding the record's address, and another worker
 * given that address reads the same arena ({@linkcode BumpArena.statsAt}). `alloc` rounds the
 * cursor up to the alignment and moves it past the block: when the block ends at or before
 * `BA_STOP` that is the whole of it, three loads and two stores on an `Int32Array` over the
 * record's words in the heap's buffer (the handle makes that view when the arena opens, so the
 * fast path indexes it with constants), no lock, no JavaScript object. `BA_STOP` is the end of
 * the current chunk, or the point where the
 * arena's use would pass its limit if that comes first, so the limit is checked on every
 * allocation at no cost. Past `BA_STOP` the slow path either refuses (the limit) or takes a new
 * chunk: a *normal* chunk, twice as big as the one before up to a cap, becomes current; a
 * request bigger than a quarter of the next normal chunk gets a *large* chunk of its own and
 * the current chunk stays current, so the rest of it is not wasted.
 *
 * As in Vmalloc's `last` method, only the last block can be freed or resized: `BA_LAST` is its
 * address (0 when there is none), and it always ends at the cursor (or at its large chunk's
 * `CH_TOP`). A mark is `depth * 2^31 + cursor`, where depth is the number of chunks the arena
 * had; rewinding gives back every chunk above that depth and puts the cursor back. Nested
 * arenas are linked under their parent (`BA_PARENT`, `BA_CHILD`, `BA_SIBLING`) and end with it.
 *
 * Use: `used = BA_BASE + (cursor - CH_DATA(current chunk)) + BA_LARGE`: bytes of blocks and
 * their alignment padding in normal chunks before the current one, in the current one, and in
 * large chunks. `BA_HIGH` is brought up to date whenever use is about to fall (free, resize,
 * rewind, reset) and when read, so the fast path need not touch it.
 *
 * Invariants.
 * - `CH_DATA(chunk) ≤ BA_CURSOR ≤ BA_STOP ≤ chunk + CH_SIZE` for the current chunk, and
 *   `used ≤ BA_LIMIT`.
 * - `BA_CHUNK` (the current normal chunk) is in the list from `BA_HEAD`; every chunk newer than
 *   it is large; the last chunk of the list is the first chunk, which holds the record.
 * - `BA_NCHUNKS` is the length of the list and `BA_RESERVED` the sum of its `CH_SIZE`s.
 * - `BA_GEN` is nonzero while the arena lives and is cleared when it ends; a handle keeps the
 *   generation it was made with, and every slow path refuses to work when they differ
 *   (`destroyed`). Each record has exactly one handle (the one that made it), and every way an
 *   arena ends goes through it (its own `dispose`, or its parent's ending its nested handles),
 *   so at the end the handle gets own methods that shadow its class's and throw `destroyed`
 *   without reading the record (`endHandle`): the fast path needs no test of its own, even
 *   once the chunk serves another arena. (The handle's record view is made once and never
 *   reassigned, so V8 keeps it as a constant field and the fast path reloads nothing.)
 * - An arena is used by one worker at a time (the one that made it, `BA_OWNER`); another worker
 *   may read its record.
 *
 * Lock order: the arena takes no lock. Chunks come from the pool (no lock) or from the source,
 * whose locks are taken inside its own alloc and free.
 *
 * @module
 */

import { Cache, Heap, type HeapView, OutOfMemoryError, UmemError, Vmem } from "../core/mod.ts";
import {
  CH_ARENA,
  CH_BASE,
  CH_DATA,
  CH_HEADER,
  CH_KIND,
  CH_MAGIC,
  CH_MAGIC_VALUE,
  CH_PREV,
  CH_SIZE,
  CH_TOP,
  CHUNK_MIN,
  chunkBytes,
  type ChunkSource,
  CK_FIRST,
  CK_LARGE,
  CK_NORMAL,
  type CoreSource,
  isCoreSource,
  sourceAddr,
  sourceGive,
  sourceKind,
  sourceTake,
  SRC_CACHE,
  SRC_HEAP,
} from "./chunk.ts";
import { checkSize, imageSize } from "../core/internal.ts";
import { ChunkPool, giveOwn } from "./chunk_pool.ts";
import { checkAlign, hex, MAX_BYTES } from "./check.ts";

// ---- Arena record (96 bytes), in the first chunk after its header ----
/** {@linkcode BA_MAGIC_VALUE} while the arena lives. */
export const BA_MAGIC = 0;
/** Generation of this incarnation of the record (nonzero while live). */
export const BA_GEN = 4;
/** The bump pointer: where the next block may start (before alignment). */
export const BA_CURSOR = 8;
/** Where the fast path stops: the current chunk's end, or the limit if that comes first. */
export const BA_STOP = 12;
/** The last block's address, the only one `free` and `resize` accept (0: none). */
export const BA_LAST = 16;
/** The current normal chunk. */
export const BA_CHUNK = 20;
/** The newest chunk (the list runs through `CH_PREV` down to the first chunk). */
export const BA_HEAD = 24;
/** Chunks in the list. */
export const BA_NCHUNKS = 28;
/** Bytes used in normal chunks before the current one. */
export const BA_BASE = 32;
/** Bytes used in large chunks. */
export const BA_LARGE = 36;
/** The most bytes the arena may use ({@linkcode BA_NO_LIMIT}: none). */
export const BA_LIMIT = 40;
/** Bytes of all chunks, headers included. */
export const BA_RESERVED = 44;
/** The most bytes the arena has used at once (see the module notes). */
export const BA_HIGH = 48;
/** Size of the first chunk. */
export const BA_CHUNKSIZE = 52;
/** Size of the next normal chunk. */
export const BA_NEXTSIZE = 56;
/** The cap on normal chunk sizes. */
export const BA_MAXCHUNK = 60;
/** `SRC_*` kind of the source. */
export const BA_SOURCE = 64;
/** Address of the source's record (vmem arena or cache; 0 for the heap). */
export const BA_SRCADDR = 68;
/** The worker slot that made the arena. */
export const BA_OWNER = 72;
/** The enclosing arena's record (0 for a top-level arena). */
export const BA_PARENT = 76;
/** First nested arena still open. */
export const BA_CHILD = 80;
/** Next nested arena of the same parent. */
export const BA_SIBLING = 84;
/** The chunk pool's record when the arena pools its chunks (0 otherwise). */
export const BA_POOL = 88;
/** Bytes of an arena record. */
export const BA_SIZE = 96;
/** "SBOA" as a little-endian word. */
export const BA_MAGIC_VALUE = 0x414f4253;
/** `BA_LIMIT` of an arena without a limit. */
export const BA_NO_LIMIT = 0x7fffffff;

/** The default size of the first chunk. */
export const DEFAULT_CHUNK_SIZE = 4096;
/** The default cap on normal chunk sizes. */
export const DEFAULT_MAX_CHUNK_SIZE = 65536;

// The fast path's copies of the record layout as word indices (V8 does not fold constants
// imported from another module, see core/magazine.ts), checked against the named ones.
const W_GEN = 1, W_CURSOR = 2, W_STOP = 3, W_LAST = 4, W_CHUNK = 5, W_NCHUNKS = 7;
const W_BASE = 8, W_LARGE = 9, W_HIGH = 12, FP_CH_DATA = 16;
if (
  W_GEN !== BA_GEN >> 2 || W_CURSOR !== BA_CURSOR >> 2 || W_STOP !== BA_STOP >> 2 ||
  W_LAST !== BA_LAST >> 2 || W_CHUNK !== BA_CHUNK >> 2 || W_NCHUNKS !== BA_NCHUNKS >> 2 ||
  W_BASE !== BA_BASE >> 2 || W_LARGE !== BA_LARGE >> 2 || W_HIGH !== BA_HIGH >> 2 ||
  FP_CH_DATA !== CH_DATA || BA_MAGIC !== 0
) {
  throw new Error("sbo/bump_arena.ts: fast-path copies of the record layout are out of date");
}
const TWO31 = 0x80000000;

/** The keys {@linkcode BumpArenaOptions} has. */
const ARENA_OPTION_KEYS = ["chunkSize", "maxChunkSize", "limit", "pool"];

/** Options of a {@linkcode BumpArena}. */
export interface BumpArenaOptions {
  /**
   * Bytes of the first chunk (the record and the chunk header take 128 of them), rounded up to
   * a power of two; each further normal chunk is twice the one before. Default 4096, or the
   * parent's; fixed to the buffer size for a cache source.
   */
  chunkSize?: number;
  /** The cap on normal chunk sizes (default 64 KiB, or the parent's). */
  maxChunkSize?: number;
  /**
   * The most bytes the arena may use (blocks and their alignment padding), checked on every
   * allocation. Default: none, or what the parent has left when a nested arena opens; a nested
   * arena's is never more than that, taken when it opens (what the parent uses after counts
   * against the parent's limit alone).
   */
  limit?: number;
  /**
   * Recycle heap chunks through this worker's {@linkcode ChunkPool} (default true; heap
   * sources only; a nested arena shares its parent's choice).
   */
  pool?: boolean;
}

/** What a {@linkcode BumpArena} holds. */
export interface BumpArenaStats {
  /** The arena record's address. */
  address: number;
  /** Bytes of blocks (with their alignment padding) now allocated. */
  used: number;
  /** Chunks the arena holds. */
  chunks: number;
  /** Bytes of those chunks, headers and the record included. */
  reserved: number;
  /** The most bytes used at once. */
  highWater: number;
  /** The limit on `used` (`Infinity` when there is none). */
  limit: number;
  /** The worker slot that made the arena. */
  owner: number;
  /** The enclosing arena's address (0 for a top-level arena). */
  parent: number;
}

let generation = 0;
/** A fresh generation for a record made by `slot`: never 0, and distinct between slots. */
function nextGen(slot: number): number {
  generation = (generation + 1) & 0x1ffffff;
  if (generation === 0) generation = 1;
  return ((slot & 63) << 25) | generation;
}

const rd = (i32: Int32Array, a: number) => i32[a >> 2];

/** Bytes in use, from the record. */
function usedOf(i32: Int32Array, rec: number): number {
  const c = rd(i32, rec + BA_CHUNK);
  return rd(i32, rec + BA_BASE) + rd(i32, rec + BA_CURSOR) - rd(i32, c + CH_DATA) +
    rd(i32, rec + BA_LARGE);
}

/** Brings the high-water mark up to the present use (before use falls). */
function noteHigh(i32: Int32Array, rec: number): void {
  const u = usedOf(i32, rec);
  if (u > rd(i32, rec + BA_HIGH)) i32[(rec + BA_HIGH) >> 2] = u;
}

/** Sets `BA_STOP`: the current chunk's end, or where use would reach the limit. */
function restop(i32: Int32Array, rec: number): void {
  const c = rd(i32, rec + BA_CHUNK);
  const room = rd(i32, rec + BA_LIMIT) - rd(i32, rec + BA_BASE) - rd(i32, rec + BA_LARGE);
  i32[(rec + BA_STOP) >> 2] = Math.min(c + rd(i32, c + CH_SIZE), rd(i32, c + CH_DATA) + room);
}

/** The stats of a live record. */
function statsOf(i32: Int32Array, rec: number): BumpArenaStats {
  const used = usedOf(i32, rec), limit = rd(i32, rec + BA_LIMIT);
  return {
    address: rec,
    used,
    chunks: rd(i32, rec + BA_NCHUNKS),
    reserved: rd(i32, rec + BA_RESERVED),
    highWater: Math.max(used, rd(i32, rec + BA_HIGH)),
    limit: limit === BA_NO_LIMIT ? Infinity : limit,
    owner: rd(i32, rec + BA_OWNER),
    parent: rd(i32, rec + BA_PARENT),
  };
}

/** Gives one chunk back to the pool or the source. */
function giveChunk(
  heap: HeapView,
  source: CoreSource,
  pool: ChunkPool | null,
  chunk: number,
): void {
  const i32 = heap.i32, size = rd(i32, chunk + CH_SIZE);
  i32[(chunk + CH_MAGIC) >> 2] = 0;
  if (pool !== null) giveOwn(pool, chunk, size);
  else sourceGive(source, chunk, size);
}

/**
 * Ends the record at `rec` (its nested arenas have ended already): gives back every chunk, the
 * first (which holds the record) last. With `unlink`, takes it off its parent's list of nested
 * arenas.
 */
function endArena(
  heap: HeapView,
  source: CoreSource,
  pool: ChunkPool | null,
  rec: number,
  unlink: boolean,
): void {
  heap.sync();
  const i32 = heap.i32;
  const parent = rd(i32, rec + BA_PARENT);
  if (unlink && parent !== 0) {
    let link = parent + BA_CHILD;
    while (rd(i32, link) !== 0 && rd(i32, link) !== rec) link = rd(i32, link) + BA_SIBLING;
    if (rd(i32, link) === rec) i32[link >> 2] = rd(i32, rec + BA_SIBLING);
  }
  i32[(rec + BA_MAGIC) >> 2] = 0;
  i32[(rec + BA_GEN) >> 2] = 0;
  i32[(rec + BA_STOP) >> 2] = 0;
  i32[(rec + BA_CHILD) >> 2] = 0;
  let c = rd(i32, rec + BA_HEAD);
  while (c !== 0) {
    const prev = rd(heap.i32, c + CH_PREV);
    giveChunk(heap, source, pool, c);
    c = prev;
  }
}

/** What a new arena is made of, once its parent and options are checked. */
interface Opening {
  heap: HeapView;
  source: CoreSource;
  pool: ChunkPool | null;
  parent: number;
  up?: BumpArena;
  chunkSize?: number;
  maxChunk?: number;
  limit?: number;
  kind?: number;
  srcAddr?: number;
}

/** Checks a new arena's parent and options (all but the common case). */
function opening(parent: unknown, options: BumpArenaOptions | undefined): Opening {
  const fn = "new BumpArena";
  let source: CoreSource, pool: ChunkPool | null = null, parentRec = 0;
  let chunkSize = DEFAULT_CHUNK_SIZE, maxChunk = DEFAULT_MAX_CHUNK_SIZE, limit = BA_NO_LIMIT;
  if (parent instanceof BumpArena) {
    const p = parentOf(parent, fn);
    source = p.source;
    pool = p.pool;
    parentRec = parent.address;
    const i32 = p.heap.i32;
    chunkSize = rd(i32, parentRec + BA_CHUNKSIZE);
    maxChunk = rd(i32, parentRec + BA_MAXCHUNK);
    const pl = rd(i32, parentRec + BA_LIMIT);
    if (pl !== BA_NO_LIMIT) limit = Math.max(0, pl - usedOf(i32, parentRec));
  } else if (isCoreSource(parent)) {
    source = parent;
  } else {
    throw new UmemError(
      "invalid-argument",
      `${fn}: expected a Heap, a Vmem, a Cache or a BumpArena, got ${
        parent === null ? "null" : typeof parent
      }`,
    );
  }
  const heap = source instanceof Heap ? source : source.heap;
  heap.sync();
  if (options !== undefined) {
    if (typeof options !== "object" || options === null) {
      throw new UmemError("invalid-argument", `${fn}: options must be an object`);
    }
    // A typo would otherwise be ignored without a word (`limt: 5`, no limit), as Heap.create
    // and MemoryContext.create refuse it.
    for (const k of Object.keys(options)) {
      if (!ARENA_OPTION_KEYS.includes(k)) {
        throw new UmemError("invalid-argument", `${fn}: unknown option '${k}'`);
      }
    }
    if (options.chunkSize !== undefined) {
      chunkSize = chunkBytes(checkSize(fn, "chunkSize", options.chunkSize, CHUNK_MIN, 1 << 30));
      if (options.maxChunkSize === undefined) maxChunk = Math.max(maxChunk, chunkSize);
    }
    if (options.maxChunkSize !== undefined) {
      const m = checkSize(fn, "maxChunkSize", options.maxChunkSize, CHUNK_MIN, 1 << 30);
      if (m < chunkSize) {
        throw new UmemError(
          "invalid-argument",
          `${fn}: maxChunkSize ${m} is less than the first chunk's ${chunkSize} bytes`,
        );
      }
      maxChunk = chunkBytes(m);
    }
    if (options.limit !== undefined) {
      // (A nested arena's `limit` is already what its parent has left, or none.)
      limit = Math.min(checkSize(fn, "limit", options.limit, 0, MAX_BYTES), limit);
    }
    if (options.pool !== undefined) {
      if (typeof options.pool !== "boolean") {
        throw new UmemError("invalid-argument", `${fn}: pool must be a boolean`);
      }
      if (options.pool && !(source instanceof Heap)) {
        throw new UmemError(
          "invalid-argument",
          `${fn}: only an arena over the heap pools its chunks (pool: true)`,
        );
      }
      if (parentRec !== 0 && options.pool !== (pool !== null)) {
        throw new UmemError(
          "invalid-argument",
          `${fn}: a nested arena shares its parent's pool (pool: ${pool !== null})`,
        );
      }
    }
  }
  if (source instanceof Cache) {
    const b = source.bufsize;
    if (options?.chunkSize !== undefined && options.chunkSize !== b) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: chunkSize ${options.chunkSize} differs from the buffer size ${b} of cache '${source.name}'`,
      );
    }
    if (b < CH_HEADER + BA_SIZE + 64) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: the buffers of cache '${source.name}' (${b} bytes) cannot hold a chunk header, the arena record and 64 bytes (${
          CH_HEADER + BA_SIZE + 64
        })`,
      );
    }
    chunkSize = maxChunk = b;
  } else if (maxChunk < chunkSize) maxChunk = chunkSize;
  if (source instanceof Vmem && source.quantum % 8 !== 0) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: arena '${source.name}' has a quantum of ${source.quantum}; chunks need 8-byte alignment`,
    );
  }
  if (parentRec === 0 && source instanceof Heap && options?.pool !== false) {
    pool = ChunkPool.of(source);
  }
  return {
    heap,
    source,
    pool,
    parent: parentRec,
    up: parentRec !== 0 ? parent as BumpArena : undefined,
    chunkSize,
    maxChunk,
    limit,
    kind: sourceKind(source),
    srcAddr: sourceAddr(source),
  };
}

/** The innards of a parent arena, once checked to be open (for a nested arena). */
let parentOf: (a: BumpArena, fn: string) => {
  heap: HeapView;
  source: CoreSource;
  pool: ChunkPool | null;
};

/**
 * A bump allocator over chunks of the heap (or of a vmem arena or an object cache): blocks are
 * carved by moving a pointer and dropped all at once by {@linkcode BumpArena.reset},
 * {@linkcode BumpArena.rewind} or {@linkcode BumpArena.dispose}. Only the last block can be
 * freed or resized. With `using`, the arena ends with the block that declared it.
 *
 * The arena's state is a record in its first chunk; this object is a handle on it.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { BumpArena } from "@umem/umem/sbo";
 * const heap = Heap.create({ size: 1 << 20 });
 * {
 *   using arena = new BumpArena(heap, { chunkSize: 4096, limit: 1 << 16 });
 *   const point = arena.alloc(16);
 *   heap.f64[point >> 3] = 1.5;
 *   heap.f64[(point >> 3) + 1] = -2;
 *   console.log(arena.stats().used); // 16
 * } // every chunk is given back here
 * ```
 */
export class BumpArena {
  /** The heap the arena lives in. */
  private readonly heap: HeapView;
  /** The arena record's address: give it to another worker to read the arena's stats. */
  readonly address: number;
  /** A view over the heap that covers every chunk of the arena (refreshed on each new one). */
  private i32: Int32Array;
  /**
   * A view over the record alone, for the fast path's constant indices. Set once in the
   * constructor and never again (`declare`: no class-field definition, whose `undefined` would
   * count as a first store), so V8 treats it as a constant field; an ended handle never reads
   * it (see `endHandle`).
   */
  declare private readonly r: Int32Array;
  /** The record's word index. */
  private readonly rw: number;
  /** The generation the record had when this handle made it. */
  private readonly gen: number;
  /** Where chunks come from. */
  private readonly source: CoreSource;
  /** This worker's chunk pool, when the arena pools. */
  private readonly pool: ChunkPool | null;
  /** The enclosing arena's handle (null for a top-level arena). */
  private readonly up: BumpArena | null;
  /** Handles of the nested arenas still open (null: none yet), ended with this one. */
  private kids: BumpArena[] | null = null;

  static {
    parentOf = (a, fn) => {
      a.live(fn);
      return { heap: a.heap, source: a.source, pool: a.pool };
    };
  }

  /**
   * Opens an arena: takes its first chunk and lays the record in it.
   *
   * @param parent where chunks come from: a `Heap` (through this worker's chunk pool), a
   *   `Vmem` arena, a `Cache` (every chunk one buffer), or an open `BumpArena`, under which
   *   the new arena nests: it shares the parent's source and pool and ends when it does
   * @param options `chunkSize`, `maxChunkSize`, `limit`, `pool`
   * @throws {UmemError} `invalid-argument` for a bad parent or option; `destroyed` when the
   *   parent arena has ended
   * @throws {OutOfMemoryError} when the source has no room for the first chunk
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * import { BumpArena } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * const pages = Vmem.create(heap, "pages", { quantum: 4096, source: heap.vmem });
   * const arena = new BumpArena(pages, { chunkSize: 8192 });
   * arena.alloc(1000);
   * console.log(arena.stats().reserved); // 8192
   * arena.dispose();
   * ```
   */
  constructor(parent: ChunkSource | BumpArena, options?: BumpArenaOptions) {
    // The common case, a top-level arena over the heap with the defaults, goes straight on.
    const o = parent instanceof Heap && options === undefined
      ? { heap: parent, source: parent, pool: ChunkPool.of(parent), parent: 0 }
      : opening(parent, options);
    const heap = o.heap, pool = o.pool, parentRec = o.parent;
    const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const maxChunk = o.maxChunk ?? DEFAULT_MAX_CHUNK_SIZE;
    const limit = o.limit ?? BA_NO_LIMIT;
    // Take the first chunk; nothing has been written yet if this throws.
    const ch = pool !== null ? pool.take(chunkSize) : sourceTake(o.source, chunkSize);
    const i32 = heap.i32;
    const rec = ch + CH_HEADER, data = rec + BA_SIZE, c = ch >> 2, r = rec >> 2;
    const gen = nextGen(heap.slot);
    i32[c + (CH_PREV >> 2)] = 0;
    i32[c + (CH_SIZE >> 2)] = chunkSize;
    i32[c + (CH_KIND >> 2)] = CK_NORMAL | CK_FIRST;
    i32[c + (CH_BASE >> 2)] = 0;
    i32[c + (CH_DATA >> 2)] = data;
    i32[c + (CH_TOP >> 2)] = data;
    i32[c + (CH_ARENA >> 2)] = rec;
    i32[c + (CH_MAGIC >> 2)] = CH_MAGIC_VALUE;
    i32[r + (BA_MAGIC >> 2)] = BA_MAGIC_VALUE;
    i32[r + (BA_GEN >> 2)] = gen;
    i32[r + (BA_CURSOR >> 2)] = data;
    i32[r + (BA_STOP >> 2)] = Math.min(ch + chunkSize, data + limit);
    i32[r + (BA_LAST >> 2)] = 0;
    i32[r + (BA_CHUNK >> 2)] = ch;
    i32[r + (BA_HEAD >> 2)] = ch;
    i32[r + (BA_NCHUNKS >> 2)] = 1;
    i32[r + (BA_BASE >> 2)] = 0;
    i32[r + (BA_LARGE >> 2)] = 0;
    i32[r + (BA_LIMIT >> 2)] = limit;
    i32[r + (BA_RESERVED >> 2)] = chunkSize;
    i32[r + (BA_HIGH >> 2)] = 0;
    i32[r + (BA_CHUNKSIZE >> 2)] = chunkSize;
    i32[r + (BA_NEXTSIZE >> 2)] = o.kind === SRC_CACHE
      ? chunkSize
      : Math.min(2 * chunkSize, maxChunk);
    i32[r + (BA_MAXCHUNK >> 2)] = maxChunk;
    i32[r + (BA_SOURCE >> 2)] = o.kind ?? SRC_HEAP;
    i32[r + (BA_SRCADDR >> 2)] = o.srcAddr ?? 0;
    i32[r + (BA_OWNER >> 2)] = heap.slot;
    i32[r + (BA_PARENT >> 2)] = parentRec;
    i32[r + (BA_CHILD >> 2)] = 0;
    i32[r + (BA_SIBLING >> 2)] = parentRec === 0 ? 0 : rd(i32, parentRec + BA_CHILD);
    i32[r + (BA_POOL >> 2)] = pool === null ? 0 : pool.address;
    if (parentRec !== 0) i32[(parentRec + BA_CHILD) >> 2] = rec;
    this.heap = heap;
    this.address = rec;
    this.i32 = i32;
    this.rw = r;
    this.r = new Int32Array(heap.sab, rec, BA_SIZE >> 2);
    this.gen = gen;
    this.source = o.source;
    this.pool = pool;
    this.up = o.up ?? null;
    if (this.up !== null) (this.up.kids ??= []).push(this);
  }

  /**
   * Reads the stats of the arena whose record is at `address` in the heap image `buffer`, as
   * another worker does with an address it was sent (or a tool with a copy of the image). Reads
   * race with the owner's allocations: each figure is a word the owner wrote, but they may come
   * from different moments.
   *
   * @param buffer the heap's buffer (`heap.buffer`)
   * @param address the arena record's address ({@linkcode BumpArena.address})
   * @returns the arena's stats
   * @throws {UmemError} `destroyed` when the arena there has ended; `invalid-argument` when
   *   there is no arena record at that address
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { BumpArena, scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * arena.alloc(40);
   * // In another worker, given heap.buffer and arena.address:
   * console.log(BumpArena.statsAt(heap.buffer, arena.address).used); // 40
   * ```
   */
  static statsAt(buffer: SharedArrayBuffer, address: number): BumpArenaStats {
    const fn = "BumpArena.statsAt";
    if (!(buffer instanceof SharedArrayBuffer)) {
      throw new UmemError("invalid-argument", `${fn}: expected the heap's SharedArrayBuffer`);
    }
    const size = imageSize(buffer); // not the buffer's length: backend=mmap's is longer
    checkSize(fn, "address", address, CH_HEADER, size - BA_SIZE);
    const i32 = new Int32Array(buffer, 0, size >> 2);
    const magic = address % 8 === 0 ? rd(i32, address + BA_MAGIC) : -1;
    if (magic !== BA_MAGIC_VALUE) {
      throw new UmemError(
        magic === 0 ? "destroyed" : "invalid-argument",
        `${fn}: no live arena record at ${hex(address)} (magic ${hex(magic)}, expected ${
          hex(BA_MAGIC_VALUE)
        })${magic === 0 ? ": the arena has ended" : ""}`,
        address,
      );
    }
    return statsOf(i32, address);
  }

  /**
   * Allocates `size` bytes aligned to `align`, by moving the bump pointer. The memory is not
   * cleared. Fast path: three loads and two stores on an `Int32Array` over the arena's record
   * in the heap's buffer; no lock, no JavaScript object.
   *
   * @param size bytes, a whole number ≥ 1
   * @param align a power of two up to 65536 (default 8)
   * @returns the block's address
   * @throws {UmemError} `invalid-argument` for a bad size or alignment (or a block that
   *   cannot fit a cache source's chunk); `budget-exceeded` when the arena's use would pass
   *   its limit; `destroyed` after the arena ended
   * @throws {OutOfMemoryError} when the source has no room for a new chunk
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * arena.alloc(3, 1);
   * const p = arena.alloc(64, 64);
   * console.log(p % 64); // 0
   * ```
   */
  alloc(size: number, align?: number): number {
    const r = this.r;
    // Two copies of the fast path: with the default alignment the mask is a constant (and
    // JavaScriptCore compiles a missing argument poorly when it flows into arithmetic).
    if (align === undefined) {
      if ((size | 0) === size && size > 0) {
        const p = (r[W_CURSOR] + 7) & -8, e = p + size;
        if (e <= r[W_STOP]) {
          r[W_CURSOR] = e;
          r[W_LAST] = p;
          return p;
        }
      }
      return this.allocSlow(size, 8);
    }
    if (
      (size | 0) === size && size > 0 && (align | 0) === align && align > 0 && align <= 4096 &&
      (align & (align - 1)) === 0
    ) {
      const p = (r[W_CURSOR] + align - 1) & -align, e = p + size;
      if (e <= r[W_STOP]) {
        r[W_CURSOR] = e;
        r[W_LAST] = p;
        return p;
      }
    }
    return this.allocSlow(size, align);
  }

  /**
   * Allocates `size` bytes set to zero.
   *
   * @param size bytes, a whole number ≥ 1
   * @param align a power of two up to 65536 (default 8)
   * @returns the block's address
   * @throws {UmemError} as {@linkcode BumpArena.alloc}
   * @throws {OutOfMemoryError} as {@linkcode BumpArena.alloc}
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * const p = arena.zalloc(32);
   * console.log(heap.u8[p + 31]); // 0
   * ```
   */
  zalloc(size: number, align?: number): number {
    const p = this.alloc(size, align);
    this.heap.u8.fill(0, p, p + size);
    return p;
  }

  /** Checks the arguments and the arena, then bumps (taking a chunk if need be). */
  private allocSlow(size: number, align: number): number {
    const fn = "BumpArena.alloc";
    this.live(fn);
    checkSize(fn, "size", size, 1, MAX_BYTES);
    checkAlign(fn, align);
    return this.bump(size, align, fn);
  }

  /** Allocates a checked block: in the current chunk, a new normal chunk or a large one. */
  private bump(size: number, align: number, fn: string): number {
    let i32 = this.i32;
    const rec = this.address, rw = this.rw;
    const cur = i32[rw + W_CURSOR], c = rd(i32, rec + BA_CHUNK);
    const data = rd(i32, c + CH_DATA), end = c + rd(i32, c + CH_SIZE);
    const p = Math.ceil(cur / align) * align, e = p + size;
    if (e <= i32[rw + W_STOP]) {
      i32[rw + W_CURSOR] = e;
      i32[rw + W_LAST] = p;
      return p;
    }
    const normalUsed = rd(i32, rec + BA_BASE) + cur - data;
    const used = normalUsed + rd(i32, rec + BA_LARGE), limit = rd(i32, rec + BA_LIMIT);
    if (e <= end) throw this.overLimit(fn, size, used + e - cur, limit);
    if (used + size > limit) throw this.overLimit(fn, size, used + size, limit);
    // A new chunk: `need` bytes hold the header, the block and the worst alignment padding.
    const need = CH_HEADER + size + align - 1;
    const next = rd(i32, rec + BA_NEXTSIZE);
    const cacheSource = rd(i32, rec + BA_SOURCE) === SRC_CACHE;
    if (cacheSource && need > next) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: ${size} bytes aligned to ${align} do not fit a chunk of cache '${
          (this.source as Cache).name
        }' (${next} bytes, a ${CH_HEADER}-byte header included)`,
      );
    }
    const large = need > next >> 2;
    let csize: number;
    if (cacheSource) csize = next;
    else if (large) csize = chunkBytes(need);
    else {
      csize = next;
      if (limit !== BA_NO_LIMIT) {
        csize = Math.max(chunkBytes(need), Math.min(csize, chunkBytes(CH_HEADER + limit - used)));
      }
    }
    if (csize > MAX_BYTES) {
      // A request near the largest the arena takes, with its header and padding rounded up to
      // a chunk: more than any heap can hold.
      throw new OutOfMemoryError(
        `${fn}: ${size} bytes aligned to ${align} need a chunk of ${csize} bytes, more than a heap holds`,
      );
    }
    const ch = this.pool !== null ? this.pool.take(csize) : sourceTake(this.source, csize);
    i32 = this.i32 = this.heap.i32;
    const d = ch + CH_HEADER, q = Math.ceil(d / align) * align, qe = q + size;
    if (used + qe - d > limit) {
      if (this.pool !== null) giveOwn(this.pool, ch, csize);
      else sourceGive(this.source, ch, csize);
      throw this.overLimit(fn, size, used + qe - d, limit);
    }
    i32[(ch + CH_PREV) >> 2] = rd(i32, rec + BA_HEAD);
    i32[(ch + CH_SIZE) >> 2] = csize;
    i32[(ch + CH_DATA) >> 2] = d;
    i32[(ch + CH_ARENA) >> 2] = rec;
    i32[(ch + CH_MAGIC) >> 2] = CH_MAGIC_VALUE;
    i32[(rec + BA_HEAD) >> 2] = ch;
    i32[(rec + BA_NCHUNKS) >> 2]++;
    i32[(rec + BA_RESERVED) >> 2] += csize;
    i32[rw + W_LAST] = q;
    if (large) {
      i32[(ch + CH_KIND) >> 2] = CK_LARGE;
      i32[(ch + CH_BASE) >> 2] = 0;
      i32[(ch + CH_TOP) >> 2] = qe;
      i32[(rec + BA_LARGE) >> 2] += qe - d;
    } else {
      i32[(c + CH_TOP) >> 2] = cur;
      i32[(ch + CH_KIND) >> 2] = CK_NORMAL;
      i32[(ch + CH_BASE) >> 2] = normalUsed;
      i32[(ch + CH_TOP) >> 2] = d;
      i32[(rec + BA_CHUNK) >> 2] = ch;
      i32[(rec + BA_BASE) >> 2] = normalUsed;
      i32[rw + W_CURSOR] = qe;
      if (!cacheSource) {
        i32[(rec + BA_NEXTSIZE) >> 2] = Math.min(2 * next, rd(i32, rec + BA_MAXCHUNK));
      }
    }
    restop(i32, rec);
    return q;
  }

  /** The error for an allocation past the limit. */
  private overLimit(fn: string, size: number, would: number, limit: number): UmemError {
    return new UmemError(
      "budget-exceeded",
      `${fn}: ${size} bytes would bring the use of the arena at ${
        hex(this.address)
      } to ${would} bytes, past its limit of ${limit}`,
      this.address,
    );
  }

  /** Whether `ptr` is the block of the newest chunk, a large one. */
  private inLargeHead(ptr: number): boolean {
    const i32 = this.i32, rec = this.address, head = rd(i32, rec + BA_HEAD);
    return head !== rd(i32, rec + BA_CHUNK) && ptr >= rd(i32, head + CH_DATA) &&
      ptr < rd(i32, head + CH_TOP);
  }

  /** Checks that `ptr` is the last block; returns it. */
  private checkLast(fn: string, ptr: number): number {
    const last = this.i32[this.rw + W_LAST];
    if (last === 0 || ptr !== last) {
      throw new UmemError(
        "bad-free",
        `${fn}: ${hex(ptr)} is not the last block of the arena at ${hex(this.address)} (${
          last === 0
            ? "it has none: the last was freed, or the arena was rewound or reset"
            : `the last block is ${hex(last)}`
        }); a bump arena frees and resizes only its last block`,
        ptr,
      );
    }
    return last;
  }

  /**
   * Frees the last block allocated, as Vmalloc's `last` method allows: the cursor goes back to
   * its start (a large block's chunk goes back to the pool or the source). Any other address
   * is refused. `free(0)` does nothing.
   *
   * @param ptr the last block's address
   * @throws {UmemError} `bad-free` when `ptr` is not the last block; `invalid-argument` when it
   *   is not an address; `destroyed` after the arena ended
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * const a = arena.alloc(16);
   * const b = arena.alloc(16);
   * try {
   *   arena.free(a);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "bad-free"
   * }
   * arena.free(b);
   * console.log(arena.alloc(16) === b); // true
   * ```
   */
  free(ptr: number): void {
    const fn = "BumpArena.free";
    this.live(fn);
    checkSize(fn, "address", ptr, 0, MAX_BYTES);
    if (ptr === 0) return;
    this.checkLast(fn, ptr);
    const i32 = this.i32, rec = this.address;
    noteHigh(i32, rec);
    if (this.inLargeHead(ptr)) this.dropLargeHead();
    else i32[this.rw + W_CURSOR] = ptr;
    i32[this.rw + W_LAST] = 0;
  }

  /** Gives back the newest chunk, a large one, and its block. */
  private dropLargeHead(): void {
    const i32 = this.i32, rec = this.address, head = rd(i32, rec + BA_HEAD);
    i32[(rec + BA_HEAD) >> 2] = rd(i32, head + CH_PREV);
    i32[(rec + BA_NCHUNKS) >> 2]--;
    i32[(rec + BA_RESERVED) >> 2] -= rd(i32, head + CH_SIZE);
    i32[(rec + BA_LARGE) >> 2] -= rd(i32, head + CH_TOP) - rd(i32, head + CH_DATA);
    restop(i32, rec);
    giveChunk(this.heap, this.source, this.pool, head);
  }

  /**
   * Resizes the last block: in place when it fits, else by moving it (the contents up to the
   * smaller size are copied) and freeing the old place. Any block but the last is refused.
   *
   * @param ptr the last block's address
   * @param size the new size, a whole number ≥ 1
   * @param align the alignment for a block that moves (default 8)
   * @returns the block's address, `ptr` or a new one
   * @throws {UmemError} `bad-free` when `ptr` is not the last block; `invalid-argument` for a
   *   bad size or alignment; `budget-exceeded` past the limit; `destroyed` after the end
   * @throws {OutOfMemoryError} when the source has no room for a new chunk
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap, { chunkSize: 256 });
   * const p = arena.alloc(8);
   * heap.u8[p] = 42;
   * console.log(arena.resize(p, 64) === p); // true: grown in place
   * const q = arena.resize(p, 5000); // too big for this chunk: moved
   * console.log(q !== p, heap.u8[q]); // true 42
   * ```
   */
  resize(ptr: number, size: number, align = 8): number {
    const fn = "BumpArena.resize";
    this.live(fn);
    checkSize(fn, "address", ptr, 0, MAX_BYTES);
    checkSize(fn, "size", size, 1, MAX_BYTES);
    checkAlign(fn, align);
    this.checkLast(fn, ptr);
    const i32 = this.i32, rec = this.address, rw = this.rw;
    const used = usedOf(i32, rec), limit = rd(i32, rec + BA_LIMIT);
    if (this.inLargeHead(ptr)) {
      const head = rd(i32, rec + BA_HEAD), top = rd(i32, head + CH_TOP), old = top - ptr;
      if (used - old + size > limit) throw this.overLimit(fn, size, used - old + size, limit);
      if (ptr + size <= head + rd(i32, head + CH_SIZE)) {
        if (size < old) noteHigh(i32, rec);
        i32[(head + CH_TOP) >> 2] = ptr + size;
        i32[(rec + BA_LARGE) >> 2] += size - old;
        restop(i32, rec);
        return ptr;
      }
      // Move: allocate the new block with the old chunk's bytes (its block and the alignment
      // padding before it) not counted, copy, drop the old chunk.
      noteHigh(i32, rec);
      const held = top - rd(i32, head + CH_DATA);
      i32[(rec + BA_LARGE) >> 2] -= held;
      restop(i32, rec);
      let q: number;
      try {
        q = this.bump(size, align, fn);
      } catch (e) {
        this.i32[(rec + BA_LARGE) >> 2] += held;
        this.i32[rw + W_LAST] = ptr;
        restop(this.i32, rec);
        throw e;
      }
      const j32 = this.i32;
      this.heap.u8.copyWithin(q, ptr, ptr + Math.min(old, size));
      // Unlink the old large chunk (it is the head, or just below a new head) and give it back.
      let link = rec + BA_HEAD;
      while (rd(j32, link) !== head) link = rd(j32, link) + CH_PREV;
      j32[link >> 2] = rd(j32, head + CH_PREV);
      j32[(rec + BA_NCHUNKS) >> 2]--;
      j32[(rec + BA_RESERVED) >> 2] -= rd(j32, head + CH_SIZE);
      giveChunk(this.heap, this.source, this.pool, head);
      return q;
    }
    const cur = i32[rw + W_CURSOR], old = cur - ptr;
    if (ptr + size <= i32[rw + W_STOP]) {
      if (size < old) noteHigh(i32, rec);
      i32[rw + W_CURSOR] = ptr + size;
      return ptr;
    }
    const c = rd(i32, rec + BA_CHUNK);
    if (ptr + size <= c + rd(i32, c + CH_SIZE) || used - old + size > limit) {
      throw this.overLimit(fn, size, used - old + size, limit);
    }
    // Move: put the cursor back to the block's start (its bytes stay where they are, in this
    // chunk, until copied), allocate in another chunk, copy.
    noteHigh(i32, rec);
    i32[rw + W_CURSOR] = ptr;
    i32[rw + W_LAST] = 0;
    restop(i32, rec);
    let q: number;
    try {
      q = this.bump(size, align, fn);
    } catch (e) {
      this.i32[rw + W_CURSOR] = cur;
      this.i32[rw + W_LAST] = ptr;
      restop(this.i32, rec);
      throw e;
    }
    this.heap.u8.copyWithin(q, ptr, ptr + Math.min(old, size));
    return q;
  }

  /**
   * Marks the arena's present state: {@linkcode BumpArena.rewind} to the mark drops every block
   * allocated since. A mark is a number (the chunk count and the cursor), valid until the
   * arena is rewound or reset to before it, or the block before it is freed or resized.
   *
   * @returns the mark
   * @throws {UmemError} `destroyed` after the arena ended
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * arena.alloc(100);
   * const m = arena.mark();
   * for (let i = 0; i < 1000; i++) arena.alloc(64); // takes more chunks
   * arena.rewind(m);
   * console.log(arena.stats().used, arena.stats().chunks); // 100 1
   * ```
   */
  mark(): number {
    this.live("BumpArena.mark");
    const i32 = this.i32, rec = this.address;
    return rd(i32, rec + BA_NCHUNKS) * TWO31 + i32[this.rw + W_CURSOR];
  }

  /**
   * Rewinds the arena to a mark: every block allocated since is dropped, and every chunk taken
   * since goes back to the pool or the source. There is no last block afterwards.
   *
   * @param mark a mark from {@linkcode BumpArena.mark} of this arena
   * @throws {UmemError} `invalid-argument` for a number that is not a mark of this arena, or a
   *   mark past the present state (taken before a rewind, a reset or a free behind it);
   *   `destroyed` after the arena ended
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * const m = arena.mark();
   * const p = arena.alloc(24);
   * arena.rewind(m);
   * console.log(arena.alloc(24) === p); // true
   * ```
   */
  rewind(mark: number): void {
    // Fast path: a mark in the current chunk, no chunk taken since.
    // (Only a number: a string or an object would be coerced here, a bigint would throw a
    // TypeError; checkSize below refuses them.)
    const r = this.r, at = typeof mark === "number" ? mark - r[W_NCHUNKS] * TWO31 : -1;
    if ((at | 0) === at && at >= 0 && at <= r[W_CURSOR] && r[W_GEN] === this.gen) {
      const data = this.i32[(r[W_CHUNK] + FP_CH_DATA) >> 2];
      if (at >= data) {
        const used = r[W_BASE] + r[W_CURSOR] - data + r[W_LARGE];
        if (used > r[W_HIGH]) r[W_HIGH] = used;
        r[W_CURSOR] = at;
        r[W_LAST] = 0;
        return;
      }
    }
    const fn = "BumpArena.rewind";
    this.live(fn);
    checkSize(fn, "mark", mark, 0, Number.MAX_SAFE_INTEGER);
    const i32 = this.i32, rec = this.address, n = rd(i32, rec + BA_NCHUNKS);
    const depth = Math.floor(mark / TWO31), x = mark % TWO31;
    if (depth < 1 || depth > n) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: ${mark} is not a mark of the arena at ${
          hex(rec)
        }: it names chunk ${depth}, and the arena has ${n}`,
      );
    }
    let c = rd(i32, rec + BA_HEAD);
    for (let i = n; i > depth; i--) c = rd(i32, c + CH_PREV);
    while ((rd(i32, c + CH_KIND) & CK_NORMAL) === 0) c = rd(i32, c + CH_PREV);
    const current = c === rd(i32, rec + BA_CHUNK);
    const data = rd(i32, c + CH_DATA),
      top = current ? i32[this.rw + W_CURSOR] : rd(i32, c + CH_TOP);
    if (x < data || x > top) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: mark ${mark} (cursor ${hex(x)} in chunk ${depth}) is past the arena at ${
          hex(rec)
        }: its chunk ${hex(c)} is used over [${hex(data)}, ${
          hex(top)
        }]; the mark was taken before a rewind, a reset or a free behind it`,
      );
    }
    this.cut(depth, c, x);
  }

  /** Gives back every chunk above `depth`, makes `chunk` current with the cursor at `x`. */
  private cut(depth: number, chunk: number, x: number): void {
    const rec = this.address, rw = this.rw;
    noteHigh(this.i32, rec);
    let h = rd(this.i32, rec + BA_HEAD);
    for (let i = rd(this.i32, rec + BA_NCHUNKS); i > depth; i--) {
      const i32 = this.i32, prev = rd(i32, h + CH_PREV);
      i32[(rec + BA_RESERVED) >> 2] -= rd(i32, h + CH_SIZE);
      if ((rd(i32, h + CH_KIND) & CK_LARGE) !== 0) {
        i32[(rec + BA_LARGE) >> 2] -= rd(i32, h + CH_TOP) - rd(i32, h + CH_DATA);
      }
      i32[(rec + BA_HEAD) >> 2] = prev;
      i32[(rec + BA_NCHUNKS) >> 2]--;
      giveChunk(this.heap, this.source, this.pool, h);
      h = prev;
    }
    const i32 = this.i32;
    i32[(rec + BA_CHUNK) >> 2] = chunk;
    i32[(rec + BA_BASE) >> 2] = rd(i32, chunk + CH_BASE);
    i32[rw + W_CURSOR] = x;
    i32[rw + W_LAST] = 0;
    restop(i32, rec);
  }

  /**
   * Drops every block and gives back every chunk but the first (which holds the arena's
   * record), so the arena can serve again without going to the pool or the source. Chunk sizes
   * start growing again from the first chunk's. Nested arenas stay open.
   *
   * @throws {UmemError} `destroyed` after the arena ended
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap);
   * for (let i = 0; i < 500; i++) arena.alloc(64);
   * arena.reset();
   * const s = arena.stats();
   * console.log(s.used, s.chunks, s.reserved, s.highWater); // 0 1 4096 32000
   * ```
   */
  reset(): void {
    this.live("BumpArena.reset");
    const i32 = this.i32, rec = this.address, first = rec - CH_HEADER;
    this.cut(1, first, rd(i32, first + CH_DATA));
    const size = rd(i32, rec + BA_CHUNKSIZE);
    if (rd(i32, rec + BA_SOURCE) !== SRC_CACHE) {
      i32[(rec + BA_NEXTSIZE) >> 2] = Math.min(2 * size, rd(i32, rec + BA_MAXCHUNK));
    }
  }

  /**
   * The arena's figures: bytes used, chunks, bytes reserved, the high-water mark, the limit.
   *
   * @returns the stats
   * @throws {UmemError} `destroyed` after the arena ended
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * using arena = scope(heap, { limit: 1000 });
   * arena.alloc(10);
   * const { used, chunks, reserved, limit } = arena.stats();
   * console.log(used, chunks, reserved, limit); // 10 1 4096 1000
   * ```
   */
  stats(): BumpArenaStats {
    this.live("BumpArena.stats");
    return statsOf(this.i32, this.address);
  }

  /**
   * Whether the arena has ended (by {@linkcode BumpArena.dispose}, the end of its scope, or
   * the end of the arena it nests in).
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * const outer = scope(heap);
   * const inner = scope(outer);
   * outer.dispose();
   * console.log(inner.disposed); // true
   * ```
   */
  get disposed(): boolean {
    return this.ended();
  }

  /** Whether the arena has ended: false for a live handle (an ended one shadows this). */
  private ended(): boolean {
    return this.r[W_GEN] !== this.gen;
  }

  /**
   * Ends the arena: ends the arenas nested in it, then gives every chunk back to the pool or
   * the source. Later use of the handle throws `destroyed`; a second `dispose` does nothing.
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * const arena = scope(heap);
   * arena.dispose();
   * try {
   *   arena.alloc(8);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "destroyed"
   * }
   * ```
   */
  dispose(): void {
    const r = this.r, pool = this.pool;
    if (r[W_GEN] !== this.gen) return;
    if (pool !== null && this.up === null && this.kids === null && r[W_NCHUNKS] === 1) {
      // The common case: one chunk, nothing nested, nothing to unlink.
      const ch = this.address - CH_HEADER, i32 = this.i32;
      r[0] = 0; // BA_MAGIC
      r[W_GEN] = 0;
      r[W_STOP] = 0;
      i32[(ch + CH_MAGIC) >> 2] = 0;
      endHandle(this);
      giveOwn(pool, ch, i32[(ch + CH_SIZE) >> 2]);
      return;
    }
    this.end(true);
  }

  /** Ends the nested arenas, then this one; with `unlink`, leaves the parent's lists. */
  private end(unlink: boolean): void {
    const kids = this.kids;
    this.kids = null;
    if (kids !== null) {
      for (const k of kids) k.end(false);
    }
    const up = this.up;
    if (unlink && up !== null && up.kids !== null) {
      const at = up.kids.indexOf(this);
      if (at >= 0) up.kids.splice(at, 1);
      if (up.kids.length === 0) up.kids = null;
    }
    endHandle(this);
    endArena(this.heap, this.source, this.pool, this.address, unlink);
  }

  /**
   * Ends the arena, as {@linkcode BumpArena.dispose}: what `using` calls at the end of the
   * block.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { BumpArena } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * let arena: BumpArena;
   * {
   *   using a = new BumpArena(heap);
   *   arena = a;
   * }
   * console.log(arena.disposed); // true
   * ```
   */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Throws `destroyed` when the arena has ended. */
  private live(fn: string): void {
    if (this.r[W_GEN] !== this.gen) throw endedError(fn, this.address);
  }
}

/** The error every method of an ended handle throws. */
function endedError(fn: string, address: number): UmemError {
  return new UmemError(
    "destroyed",
    `${fn}: the arena at ${hex(address)} has ended (its scope closed or it was disposed)`,
    address,
  );
}

/** What an ended handle gets as its own properties (see {@linkcode endHandle}). */
interface EndedHandle {
  address: number;
  alloc: (size: number, align?: number) => number;
  rewind: (mark: number) => void;
  dispose: () => void;
  live: (fn: string) => void;
  ended: () => boolean;
}

/** `alloc` of an ended handle (also what its `zalloc` calls). */
function endedAlloc(this: EndedHandle): number {
  throw endedError("BumpArena.alloc", this.address);
}
/** `rewind` of an ended handle. */
function endedRewind(this: EndedHandle): void {
  throw endedError("BumpArena.rewind", this.address);
}
/** `live` of an ended handle, the first step of every other method that reads the record. */
function endedLive(this: EndedHandle, fn: string): void {
  throw endedError(fn, this.address);
}
/** `dispose` of an ended handle: nothing more to do. */
function endedDispose(): void {}
/** `ended` of an ended handle. */
function endedYes(): boolean {
  return true;
}

/**
 * Ends a handle: own properties shadow every method that would read the record (`alloc`,
 * `rewind`, `dispose`, and `live`, which every other method calls first) with ones that throw
 * `destroyed` (or do nothing, for `dispose`) without reading it, since its chunk may serve
 * another arena by then. The handle's shape changes, so the live fast paths need no test of
 * their own: V8 and JavaScriptCore already check the shape to find the method. (Adding
 * properties in a fixed order follows cached shape transitions; `Object.setPrototypeOf` would
 * cost hundreds of nanoseconds per `dispose` in V8.)
 */
function endHandle(a: BumpArena): void {
  const h = a as unknown as EndedHandle;
  h.alloc = endedAlloc;
  h.rewind = endedRewind;
  h.dispose = endedDispose;
  h.live = endedLive;
  h.ended = endedYes;
}
