/**
 * The per-worker chunk pool: recycled heap chunks, so that a busy server does not go back to
 * the heap on every request.
 *
 * Theory. Each worker slot that uses scoped arenas over the heap gets one small *pool record*
 * (`SP_*`), allocated lazily from the heap on first use and registered as a heap root, so that
 * `findleaks` and an offline snapshot see the pooled chunks as reachable rather than leaked. The
 * record holds one free list per power-of-two chunk class (`CHUNK_MIN` … `CHUNK_POOL_MAX`),
 * linked through each chunk's first word, and the counts. Taking a chunk pops its class's list;
 * giving one back pushes it while the pool holds less than `SP_MAX` bytes, and frees it to the
 * heap otherwise. A miss (empty list) allocates from the heap.
 *
 * Invariants.
 * - Only the worker that owns the slot touches its record: take and give are plain loads and
 *   stores with no lock and no Atomics (as a magazine's rounds are).
 * - `SP_BYTES` is the sum of the sizes of the pooled chunks and never exceeds `SP_MAX`;
 *   `SP_CHUNKS` is their number; `SP_COUNT[k]` is the length of list k.
 * - A pooled chunk is allocated as far as the heap knows (`heap.alloc(2^(k+8))`), so it goes
 *   back with `heap.free(chunk, 2^(k+8))`.
 *
 * - A pool record is a heap root of `SP_SIZE` bytes whose `SP_SLOT` names its worker, so that
 *   `Heap.reclaimSlot` of a worker that died finds it in the root table and frees the chunks
 *   it held (the slot reclaimer below), once the owner can no longer touch it.
 *
 * Lock order: the pool takes no lock. `heap.alloc`, `heap.free`, `heap.addRoot` and
 * `heap.removeRoot` take the core's locks inside, never while the pool holds anything.
 *
 * @module
 */

import { Heap, type HeapView, UmemError } from "../core/mod.ts";
import {
  addSlotReclaimer,
  BUF_ALLOC,
  bufferStateAt,
  CA_BUFSIZE,
  CA_SHIFT,
  checkSize,
  PAGE_SHIFT,
  rootRanges,
  SB_BASE,
  SB_CACHE,
  SB_STATE,
} from "../core/internal.ts";
import { CHUNK_MIN, CHUNK_POOL_MAX, type ChunkSource } from "./chunk.ts";
import { hex, MAX_BYTES } from "./check.ts";

// ---- Pool record (160 bytes) ----
/** {@linkcode SP_MAGIC_VALUE} while the record is live. */
export const SP_MAGIC = 0;
/** The worker slot that owns the pool. */
export const SP_SLOT = 4;
/** Bytes of the pooled chunks. */
export const SP_BYTES = 8;
/** The most bytes the pool keeps; a chunk given back past it goes to the heap. */
export const SP_MAX = 12;
/** Pooled chunks. */
export const SP_CHUNKS = 16;
/** Chunks handed out from the pool (float64). */
export const SP_HITS = 24;
/** Chunks the pool had to allocate from the heap (float64). */
export const SP_MISSES = 32;
/** Chunks given back and kept (float64). */
export const SP_RETURNS = 40;
/** Chunks given back and freed to the heap because the pool was full (float64). */
export const SP_OVERFLOWS = 48;
/** Heads of the free lists, one word per class (`SP_NCLASSES`). */
export const SP_HEADS = 56;
/** Lengths of the free lists, one word per class. */
export const SP_COUNTS = 108;
/** Bytes of a pool record. */
export const SP_SIZE = 160;
/** Chunk classes: 2^8 (256 bytes) … 2^20 (1 MiB). */
export const SP_NCLASSES = 13;
/** "SBOP" as a little-endian word. */
export const SP_MAGIC_VALUE = 0x504f4253;
/**
 * Word 1 of a pooled chunk holds its address xor this key ("POOL"), so that a chunk given back
 * twice is caught before it is linked twice (confirmed on the class's list).
 */
export const SP_POOLED = 0x4c4f4f50;
/** The heap's header page (the image format's page size): no chunk starts inside it. */
const HEADER_PAGE = 4096;
/** The default {@linkcode SP_MAX}: 1 MiB per worker. */
export const SP_DEFAULT_MAX = 1 << 20;

/**
 * The slot reclaimer of sbo: frees the pooled chunks and the pool record of a dead worker's
 * slot (run by `Heap.reclaimSlot`).
 */
function reclaimPool(h: HeapView, slot: number): void {
  if (!(h instanceof Heap)) return;
  const i32 = h.i32;
  const rec = rootRanges(h).find(([a, n]) =>
    n === SP_SIZE && i32[(a + SP_MAGIC) >> 2] === SP_MAGIC_VALUE &&
    i32[(a + SP_SLOT) >> 2] === slot
  )?.[0];
  if (rec === undefined) return;
  for (let k = 0; k < SP_NCLASSES; k++) {
    for (let c = i32[(rec + SP_HEADS + 4 * k) >> 2]; c !== 0;) {
      const next = i32[c >> 2];
      h.free(c, CHUNK_MIN << k);
      c = next;
    }
  }
  i32[(rec + SP_MAGIC) >> 2] = 0;
  h.removeRoot(rec, SP_SIZE);
  h.free(rec, SP_SIZE);
}
addSlotReclaimer(reclaimPool);

// The fast path's copies of the layout (V8 does not fold constants imported from another
// module, see core/magazine.ts; these are module-local and checked against the named ones).
const FP_BYTES = 2, FP_MAX = 3, FP_CHUNKS = 4, FP_HEADS = 14, FP_COUNTS = 27;
const FP_HITS = 3, FP_MISSES = 4, FP_RETURNS = 5, FP_OVERFLOWS = 6;
if (
  FP_BYTES !== SP_BYTES >> 2 || FP_MAX !== SP_MAX >> 2 || FP_CHUNKS !== SP_CHUNKS >> 2 ||
  FP_HEADS !== SP_HEADS >> 2 || FP_COUNTS !== SP_COUNTS >> 2 || FP_HITS !== SP_HITS >> 3 ||
  FP_MISSES !== SP_MISSES >> 3 || FP_RETURNS !== SP_RETURNS >> 3 ||
  FP_OVERFLOWS !== SP_OVERFLOWS >> 3 || SP_COUNTS + SP_NCLASSES * 4 > SP_SIZE ||
  CHUNK_MIN !== 256 || CHUNK_POOL_MAX !== 1 << (8 + SP_NCLASSES - 1)
) {
  throw new Error("sbo/chunk_pool.ts: fast-path copies of the pool layout are out of date");
}

/** What a {@linkcode ChunkPool} holds and has done. */
export interface ChunkPoolStats {
  /** The pool record's address. */
  address: number;
  /** The worker slot that owns it. */
  slot: number;
  /** Chunks in the pool. */
  chunks: number;
  /** Bytes of those chunks. */
  pooledBytes: number;
  /** The most bytes the pool keeps. */
  maxBytes: number;
  /** Chunks handed out from the pool. */
  hits: number;
  /** Chunks allocated from the heap because the pool had none of the size. */
  misses: number;
  /** Chunks given back and kept. */
  returns: number;
  /** Chunks given back and freed to the heap because the pool was full. */
  overflows: number;
}

/**
 * Gives back a chunk an arena took from the pool, without the page-map check of
 * {@linkcode ChunkPool.give} (a chunk given twice is still caught): sbo's arenas only.
 */
export let giveOwn: (pool: ChunkPool, chunk: number, size: number) => void;

const pools = new WeakMap<Heap, ChunkPool>();
// A one-entry cache in front of the WeakMap: a server asks for the same heap's pool on every
// request.
let lastHeap: Heap | undefined;
let lastPool: ChunkPool | undefined;

/**
 * The calling worker's pool of recycled chunks for one heap. Arenas over the heap take their
 * chunks from it and give them back when they are reset, rewound or disposed.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { ChunkPool, scope } from "@umem/umem/sbo";
 * const heap = Heap.create({ size: 1 << 20 });
 * for (let i = 0; i < 3; i++) {
 *   using arena = scope(heap);
 *   arena.alloc(100);
 * }
 * const s = ChunkPool.of(heap).stats();
 * console.log(s.misses, s.hits, s.chunks); // 1 2 1
 * ```
 */
export class ChunkPool {
  /** The heap, as this worker sees it. */
  private readonly heap: Heap;
  /** The pool record's address. */
  readonly address: number;
  /** The record's word index. */
  private readonly rw: number;
  /** False once {@linkcode ChunkPool.release} ran: chunks then go straight to the heap. */
  live = true;

  static {
    giveOwn = (pool, chunk, size) => pool.put(chunk, size, false);
  }

  private constructor(heap: Heap, address: number) {
    this.heap = heap;
    this.address = address;
    this.rw = address >> 2;
  }

  /**
   * The calling worker's pool for `heap`, made on first use: a record of {@linkcode SP_SIZE}
   * bytes from the heap, registered as a root.
   *
   * @param heap the `Heap`, as this worker attached it
   * @returns the pool
   * @throws {UmemError} `invalid-argument` when `heap` is not a `Heap`
   * @throws {OutOfMemoryError} when the heap has no room for the record
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(ChunkPool.of(heap) === ChunkPool.of(heap)); // true
   * ```
   */
  static of(heap: ChunkSource): ChunkPool {
    if (heap === lastHeap && lastPool !== undefined) return lastPool;
    if (!(heap instanceof Heap)) {
      throw new UmemError("invalid-argument", "ChunkPool.of: expected a Heap");
    }
    let pool = pools.get(heap);
    if (pool === undefined) {
      heap.sync();
      const rec = heap.zalloc(SP_SIZE);
      try {
        heap.addRoot(rec, SP_SIZE);
      } catch (e) {
        heap.free(rec, SP_SIZE);
        throw e;
      }
      const i32 = heap.i32;
      i32[(rec + SP_SLOT) >> 2] = heap.slot;
      i32[(rec + SP_MAX) >> 2] = SP_DEFAULT_MAX;
      i32[(rec + SP_MAGIC) >> 2] = SP_MAGIC_VALUE;
      pool = new ChunkPool(heap, rec);
      pools.set(heap, pool);
    }
    lastHeap = heap;
    lastPool = pool;
    return pool;
  }

  /**
   * The most bytes of chunks the pool keeps (1 MiB unless set). Lowering it frees chunks to
   * the heap until the pool fits.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool } from "@umem/umem/sbo";
   * const pool = ChunkPool.of(Heap.create({ size: 1 << 20 }));
   * pool.maxBytes = 64 << 10;
   * console.log(pool.maxBytes); // 65536
   * ```
   */
  get maxBytes(): number {
    this.check("ChunkPool.maxBytes");
    return this.heap.i32[this.rw + FP_MAX];
  }

  /**
   * Sets the most bytes the pool keeps.
   *
   * @param bytes a whole number in [0, 2 GiB - 4 KiB]
   * @throws {UmemError} `invalid-argument` for a bad number; `destroyed` after `release`
   */
  set maxBytes(bytes: number) {
    this.check("ChunkPool.maxBytes");
    checkSize("ChunkPool.maxBytes", "bytes", bytes, 0, MAX_BYTES);
    this.heap.i32[this.rw + FP_MAX] = bytes;
    // Free the largest chunks first until the pool fits.
    for (let k = SP_NCLASSES - 1; k >= 0 && this.heap.i32[this.rw + FP_BYTES] > bytes; k--) {
      while (
        this.heap.i32[this.rw + FP_HEADS + k] !== 0 && this.heap.i32[this.rw + FP_BYTES] > bytes
      ) {
        this.popToHeap(k);
      }
    }
  }

  /**
   * What the pool holds and how often it served.
   *
   * @returns the counts
   * @throws {UmemError} `destroyed` after {@linkcode ChunkPool.release}
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool, withArena } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * await withArena(heap, (a) => a.alloc(10));
   * console.log(ChunkPool.of(heap).stats().pooledBytes); // 4096
   * ```
   */
  stats(): ChunkPoolStats {
    this.check("ChunkPool.stats");
    const i32 = this.heap.i32, f64 = this.heap.f64, rw = this.rw, fw = this.address >> 3;
    return {
      address: this.address,
      slot: i32[(this.address + SP_SLOT) >> 2],
      chunks: i32[rw + FP_CHUNKS],
      pooledBytes: i32[rw + FP_BYTES],
      maxBytes: i32[rw + FP_MAX],
      hits: f64[fw + FP_HITS],
      misses: f64[fw + FP_MISSES],
      returns: f64[fw + FP_RETURNS],
      overflows: f64[fw + FP_OVERFLOWS],
    };
  }

  /**
   * Frees every pooled chunk to the heap (the record stays).
   *
   * @returns the bytes freed
   * @throws {UmemError} `destroyed` after {@linkcode ChunkPool.release}
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool, scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * scope(heap).dispose();
   * console.log(ChunkPool.of(heap).trim()); // 4096
   * ```
   */
  trim(): number {
    this.check("ChunkPool.trim");
    let bytes = 0;
    for (let k = 0; k < SP_NCLASSES; k++) {
      while (this.heap.i32[this.rw + FP_HEADS + k] !== 0) bytes += this.popToHeap(k);
    }
    return bytes;
  }

  /**
   * Frees every pooled chunk and the record itself, and removes its root: call it before
   * `heap.detach()`. Arenas still open give their chunks straight to the heap afterwards; the
   * next {@linkcode ChunkPool.of} makes a new pool.
   *
   * @returns the bytes of chunks freed
   * @throws {UmemError} `destroyed` when the pool was released already
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool, scope } from "@umem/umem/sbo";
   * const heap = Heap.create({ size: 1 << 20 });
   * const before = heap.vmem.stats().inUse;
   * scope(heap).dispose();
   * ChunkPool.of(heap).release();
   * heap.reap();
   * console.log(heap.vmem.stats().inUse === before); // true
   * ```
   */
  release(): number {
    const bytes = this.trim();
    const heap = this.heap;
    heap.i32[this.rw] = 0; // SP_MAGIC
    heap.removeRoot(this.address, SP_SIZE);
    heap.free(this.address, SP_SIZE);
    this.live = false;
    pools.delete(heap);
    if (lastPool === this) lastHeap = lastPool = undefined;
    return bytes;
  }

  /** Throws `destroyed` once the pool was released. */
  private check(fn: string): void {
    if (!this.live) {
      throw new UmemError(
        "destroyed",
        `${fn}: chunk pool at ${hex(this.address)} was released`,
        this.address,
      );
    }
    this.heap.sync();
  }

  /** Pops one chunk of class `k` and frees it to the heap; returns its size. */
  private popToHeap(k: number): number {
    const heap = this.heap, i32 = heap.i32, rw = this.rw, size = CHUNK_MIN << k;
    const c = i32[rw + FP_HEADS + k];
    i32[rw + FP_HEADS + k] = i32[c >> 2];
    i32[(c >> 2) + 1] = 0; // no longer pooled
    i32[rw + FP_COUNTS + k]--;
    i32[rw + FP_CHUNKS]--;
    i32[rw + FP_BYTES] -= size;
    heap.free(c, size);
    return size;
  }

  /**
   * Whether `chunk` may be an allocated heap buffer of `size` bytes, as far as the page map
   * tells in a few loads: when a slab covers it, it must be the start of a buffer of a cache of
   * that size, in the allocated state. Chunks no slab covers (past the largest size class, or
   * from a debugging firewall) and the chunks of a heap that trusts its callers are taken on
   * trust.
   */
  private allocated(chunk: number, size: number): boolean {
    const heap = this.heap, i32 = heap.i32;
    const sb = i32[(heap.pagemap >> 2) + (chunk >>> PAGE_SHIFT)];
    if (sb === 0 || heap.trust) return true;
    const cp = i32[(sb + SB_CACHE) >> 2], off = chunk - i32[(sb + SB_BASE) >> 2];
    const shift = i32[(cp + CA_SHIFT) >> 2];
    return i32[(cp + CA_BUFSIZE) >> 2] === size && off >= 0 &&
      (off & ((1 << shift) - 1)) === 0 &&
      bufferStateAt(heap, cp, sb + SB_STATE + (off >> shift), chunk) === BUF_ALLOC;
  }

  /**
   * Throws for a chunk `give` cannot keep: `invalid-argument` for something not an address,
   * `bad-free` outside the heap, in its header page or misaligned, `duplicate-free` when it is
   * in the pool already or free, `wrong-cache` for a buffer of a cache of another size. A
   * pooled key left in a chunk that is no longer pooled (freed by a slot reclaimer) is cleared
   * and the chunk accepted.
   */
  private refuse(chunk: number, size: number, k: number): void {
    const fn = "ChunkPool.give";
    if (typeof chunk !== "number" || !Number.isInteger(chunk)) {
      checkSize(fn, "chunk", chunk, 0, MAX_BYTES);
    }
    const heap = this.heap, i32 = heap.i32;
    if ((chunk & 7) !== 0 || chunk < HEADER_PAGE || chunk + size > heap.mapped) {
      throw new UmemError(
        "bad-free",
        `${fn}: ${hex(chunk)} is not a chunk of ${size} bytes of the heap (${
          chunk < 0 || chunk + size > heap.mapped
            ? "outside the heap"
            : chunk < HEADER_PAGE
            ? "inside the header page"
            : "misaligned"
        }, the heap maps ${hex(heap.mapped)} bytes)`,
        chunk,
      );
    }
    if (!this.allocated(chunk, size)) {
      const sb = i32[(heap.pagemap >> 2) + (chunk >>> PAGE_SHIFT)];
      const cp = i32[(sb + SB_CACHE) >> 2], bufsize = i32[(cp + CA_BUFSIZE) >> 2];
      const off = chunk - i32[(sb + SB_BASE) >> 2], shift = i32[(cp + CA_SHIFT) >> 2];
      const [kind, why] = bufsize !== size
        ? ["wrong-cache", `it is in a slab of a cache of ${bufsize}-byte buffers`] as const
        : off < 0 || (off & ((1 << shift) - 1)) !== 0
        ? ["bad-free", "it points inside a buffer"] as const
        : ["duplicate-free", "the buffer is free"] as const;
      throw new UmemError(
        kind,
        `${fn}: ${hex(chunk)} is not an allocated heap buffer of ${size} bytes (${why})`,
        chunk,
      );
    }
    for (let c = i32[this.rw + FP_HEADS + k], n = 0; c !== 0 && n < 1 << 20; c = i32[c >> 2], n++) {
      if (c === chunk) {
        throw new UmemError(
          "duplicate-free",
          `${fn}: chunk ${hex(chunk)} (${size} bytes) is in the pool already: given back twice`,
          chunk,
        );
      }
    }
    i32[(chunk >> 2) + 1] = 0;
  }

  /**
   * Takes a chunk of `size` bytes: from the pool when it holds one of that size (a power of two
   * from 256 bytes to 1 MiB), else from the heap. Arenas call it; a program may too.
   *
   * @param size bytes
   * @returns the chunk's address; give it back with {@linkcode ChunkPool.give}
   * @throws {OutOfMemoryError} when the pool has none and the heap has no room
   * @throws {UmemError} `invalid-argument` for a bad size (from the heap)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool } from "@umem/umem/sbo";
   * const pool = ChunkPool.of(Heap.create({ size: 1 << 20 }));
   * const c = pool.take(8192);
   * pool.give(c, 8192);
   * console.log(pool.take(8192) === c); // true
   * ```
   */
  take(size: number): number {
    const heap = this.heap;
    if (this.live) {
      const i32 = heap.i32, rw = this.rw;
      const k = 23 - Math.clz32(size); // log2(size) - 8
      if (k >= 0 && k < 13 && (size & (size - 1)) === 0 && (size | 0) === size) {
        const c = i32[rw + FP_HEADS + k];
        if (c !== 0) {
          i32[rw + FP_HEADS + k] = i32[c >> 2];
          i32[(c >> 2) + 1] = 0; // no longer pooled
          i32[rw + FP_COUNTS + k]--;
          i32[rw + FP_CHUNKS]--;
          i32[rw + FP_BYTES] -= size;
          heap.f64[(this.address >> 3) + FP_HITS]++;
          return c;
        }
      }
      checkSize("ChunkPool.take", "size", size, 1, MAX_BYTES);
      const c = heap.alloc(size);
      heap.f64[(this.address >> 3) + FP_MISSES]++;
      return c;
    }
    checkSize("ChunkPool.take", "size", size, 1, MAX_BYTES);
    return heap.alloc(size);
  }

  /**
   * Gives back a chunk from {@linkcode ChunkPool.take}: the pool keeps it while it holds less
   * than {@linkcode ChunkPool.maxBytes}, else frees it to the heap.
   *
   * @param chunk the chunk's address
   * @param size the size it was taken with
   * @throws {UmemError} when the pool keeps the chunk: `invalid-argument` for something not
   *   an address, `bad-free` for an address outside the heap, in its header page or
   *   misaligned, `duplicate-free` for a chunk in the pool already or a free heap buffer,
   *   `wrong-cache` for a buffer of a cache of another size (what the page map tells; a chunk
   *   no slab covers, past 128 KiB, is trusted); when the chunk goes to the heap, whatever the
   *   heap's free reports
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { ChunkPool } from "@umem/umem/sbo";
   * const pool = ChunkPool.of(Heap.create({ size: 1 << 20 }));
   * pool.give(pool.take(4096), 4096);
   * console.log(pool.stats().chunks); // 1
   * ```
   */
  give(chunk: number, size: number): void {
    this.put(chunk, size, true);
  }

  /**
   * Pools a chunk, or frees it to the heap when the pool is full; with `check`, first makes
   * the checks `give` documents (sbo's arenas, which give back only chunks they took, skip the
   * page-map lookup).
   */
  private put(chunk: number, size: number, check: boolean): void {
    const heap = this.heap;
    if (this.live) {
      const i32 = heap.i32, rw = this.rw;
      const k = 23 - Math.clz32(size);
      if (k >= 0 && k < 13 && (size & (size - 1)) === 0 && (size | 0) === size) {
        if (i32[rw + FP_BYTES] + size <= i32[rw + FP_MAX]) {
          // What the heap would check before it kept the chunk: a whole, aligned address in
          // the heap past its header page, and not pooled already (word 1 holds the pooled
          // key, confirmed on the list, while the chunk is in the pool).
          if (
            i32[(chunk >> 2) + 1] === (chunk ^ SP_POOLED) ||
            check && (
                (chunk | 0) !== chunk || (chunk & 7) !== 0 || chunk < HEADER_PAGE ||
                chunk + size > heap.mapped || !this.allocated(chunk, size)
              )
          ) {
            this.refuse(chunk, size, k);
          }
          i32[(chunk >> 2) + 1] = chunk ^ SP_POOLED;
          i32[chunk >> 2] = i32[rw + FP_HEADS + k];
          i32[rw + FP_HEADS + k] = chunk;
          i32[rw + FP_COUNTS + k]++;
          i32[rw + FP_CHUNKS]++;
          i32[rw + FP_BYTES] += size;
          heap.f64[(this.address >> 3) + FP_RETURNS]++;
          return;
        }
        heap.f64[(this.address >> 3) + FP_OVERFLOWS]++;
      }
    }
    heap.free(chunk, size);
  }
}
