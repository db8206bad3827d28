/**
 * Replay adapters: the allocators a trace can be replayed against, behind one interface.
 *
 * Theory. DESIGN.md's principle 10: the heap, a cache, a region, an arena and a memory context
 * all answer `alloc` and `free` and report their memory, so the simulator can run one trace
 * against each. An adapter adds what the simulator needs: `resize` (native where the allocator
 * has one: `libc.realloc`, `BumpArena.resize`, `MemoryContext.realloc`; else a new block, a
 * copy and a free, as a program without realloc does) and `extent()`, the bytes the allocator
 * has taken from its source at this moment (Vmalloc's *extent*): for every allocator here the
 * bytes in use in its heap's root vmem arena since the adapter was made, which counts slabs,
 * chunks, blocks and the metadata they cost alike. Each named adapter gets a heap of its own.
 *
 * The regions (`best`, `pool`, `last`) draw their segments from the heap through
 * `heapDiscipline` (Vmdcheap).
 *
 * Invariants. An adapter never sees a free of a block it did not hand out (the simulator maps
 * blocks by record index). The bump arena and the last region, which can only free their last
 * block, ignore other frees and count them (`ignoredFrees`); a resize of another block there
 * takes a new block and copies.
 *
 * Lock order: none beyond the allocators' own.
 *
 * @module
 */
import { type Cache, Heap, UmemError } from "../core/mod.ts";
import { BumpArena } from "../sbo/mod.ts";
import { type MemoryContext, topContext } from "../budget/mod.ts";
import { heapDiscipline, Region } from "../region/mod.ts";
import { checkFunction, checkOptions } from "./arguments.ts";

/** An allocator the simulator can drive. */
export interface ReplayAllocator {
  /** Its name in reports. */
  readonly name: string;
  /**
   * Allocates a block.
   *
   * @param size bytes
   * @returns its address
   */
  alloc(size: number): number;
  /**
   * Frees a block.
   *
   * @param ptr the block
   * @param size the size it was allocated with
   */
  free(ptr: number, size: number): void;
  /**
   * Resizes a block, moving it when it must (copying the smaller of the two sizes).
   *
   * @param ptr the block
   * @param oldSize its size
   * @param size the new size
   * @returns its address now
   */
  resize(ptr: number, oldSize: number, size: number): number;
  /** Bytes taken from the source now. */
  extent(): number;
  /** Frees that were ignored (an allocator that cannot free that block). */
  readonly ignoredFrees?: number;
}

/** The names {@linkcode makeAllocator} knows. */
export const ALLOCATOR_NAMES: readonly string[] = [
  "heap",
  "libc",
  "cache",
  "bump",
  "context",
  "best",
  "pool",
  "last",
];

/** Options of {@linkcode makeAllocator}. */
export interface AllocatorOptions {
  /** Initial heap bytes (default 16 MiB). */
  heapSize?: number;
  /** The most the heap may grow to (default 256 MiB). */
  maxHeapSize?: number;
}

/**
 * A fresh quiet heap for an adapter. Its backend is `sbrk` whatever the runtime: a replay makes
 * a heap per allocator and drops it, and under Bun an `mmap` heap's buffer of `maxSize` bytes
 * costs milliseconds to create and collect (see `HeapOptions.backend`).
 */
function freshHeap(o: AllocatorOptions): Heap {
  return Heap.create({
    size: o.heapSize ?? 16 << 20,
    maxSize: o.maxHeapSize ?? 256 << 20,
    debug: "",
    logging: "",
    options: "",
    backend: "sbrk",
  });
}

/** Bytes in use in the root arena, less those in use when the adapter began. */
function extentOf(heap: Heap): () => number {
  const base = heap.vmem.stats().inUse;
  return () => heap.vmem.stats().inUse - base;
}

/** A move by hand: a new block, the copy, the old one freed. */
function moveBlock(
  heap: Heap,
  alloc: (n: number) => number,
  free: () => void,
  ptr: number,
  oldSize: number,
  size: number,
): number {
  const q = alloc(size);
  heap.u8.copyWithin(q, ptr, ptr + Math.min(oldSize, size));
  free();
  return q;
}

/** The heap's sized interface (`umem_alloc`); a resize is alloc, copy, free. */
function heapAllocator(heap: Heap): ReplayAllocator {
  return {
    name: "heap",
    alloc: (n) => heap.alloc(n),
    free: (p, n) => heap.free(p, n),
    resize: (p, old, n) =>
      old === n ? p : moveBlock(heap, (k) => heap.alloc(k), () => heap.free(p, old), p, old, n),
    extent: extentOf(heap),
  };
}

/** `heap.libc`: malloc, free, realloc. */
function libcAllocator(heap: Heap): ReplayAllocator {
  const libc = heap.libc;
  return {
    name: "libc",
    alloc: (n) => libc.malloc(n),
    free: (p) => libc.free(p),
    resize: (p, _old, n) => libc.realloc(p, n),
    extent: extentOf(heap),
  };
}

/**
 * `n` rounded up to a multiple of 8, at least 8, in float arithmetic: a 32-bit `(n + 7) & ~7`
 * made any size from 2^31 - 7 on negative, and so 8, and a replay of it wrote past an 8-byte
 * block.
 */
const roundSize = (n: number): number => Math.max(8, Math.ceil(n / 8) * 8);

/** The largest size that gets an object cache of its own; larger ones go to the heap. */
const MAX_CACHE_BUF = 4096;

/**
 * An object cache per size (rounded up to 8) up to 4 KiB, as a program makes a cache per kind
 * of object; larger sizes (buffers, not objects) go to the heap's sized interface.
 */
function cacheAllocator(heap: Heap): ReplayAllocator {
  const caches = new Map<number, Cache>();
  const cacheFor = (n: number): Cache | undefined => {
    const size = roundSize(n);
    if (size > MAX_CACHE_BUF) return undefined;
    let c = caches.get(size);
    if (c === undefined) {
      c = heap.createCache(`replay_${size}`, size);
      caches.set(size, c);
    }
    return c;
  };
  const alloc = (n: number) => cacheFor(n)?.alloc() ?? heap.alloc(n);
  const free = (p: number, n: number) => {
    const c = cacheFor(n);
    if (c !== undefined) c.free(p);
    else heap.free(p, n);
  };
  return {
    name: "cache",
    alloc,
    free,
    resize: (p, old, n) =>
      cacheFor(old) !== undefined && cacheFor(old) === cacheFor(n)
        ? p
        : moveBlock(heap, alloc, () => free(p, old), p, old, n),
    extent: extentOf(heap),
  };
}

/** What {@linkcode lastOnly} allocates from: a bump arena or a Vmlast region. */
interface LastOnlySource {
  alloc(n: number): number;
  free(p: number): void;
  resize(p: number, n: number): number;
}

/**
 * An allocator that frees or resizes in place only its last block (a bump arena, a Vmlast
 * region): other frees are ignored and counted, and another block's resize allocates anew and
 * copies (also counted).
 */
function lastOnly(heap: Heap, name: string, open: () => LastOnlySource): ReplayAllocator {
  const extent = extentOf(heap); // before the source takes its first memory
  const src = open();
  let last = 0;
  const a: ReplayAllocator & { ignoredFrees: number } = {
    name,
    alloc: (n) => (last = src.alloc(n)),
    free: (p) => {
      if (p === last) {
        src.free(p);
        last = 0;
      } else a.ignoredFrees++;
    },
    resize: (p, old, n) => {
      if (p === last) return (last = src.resize(p, n));
      a.ignoredFrees++;
      const q = src.alloc(n);
      heap.u8.copyWithin(q, p, p + Math.min(old, n));
      return (last = q);
    },
    extent,
    ignoredFrees: 0,
  };
  return a;
}

/** A bump arena (sbo): only the last block frees or resizes in place. */
function bumpAllocator(heap: Heap): ReplayAllocator {
  return lastOnly(heap, "bump", () => new BumpArena(heap, { pool: false }));
}

/** A memory context (budget): aset.c's blocks and free lists, with realloc. */
function contextAllocator(heap: Heap): ReplayAllocator {
  const extent = extentOf(heap);
  const ctx: MemoryContext = topContext(heap).create("replay");
  return {
    name: "context",
    alloc: (n) => ctx.alloc(n),
    free: (p) => ctx.free(p),
    resize: (p, _old, n) => ctx.realloc(p, n),
    extent,
  };
}

/** A Vmbest region over the heap (Vmdcheap): best fit, resize in place when it can. */
function bestAllocator(heap: Heap): ReplayAllocator {
  const extent = extentOf(heap);
  const r = Region.open(heapDiscipline(heap), "best");
  return {
    name: "best",
    alloc: (n) => r.alloc(n),
    free: (p) => r.free(p),
    resize: (p, _old, n) => r.resize(p, n),
    extent,
  };
}

/** The largest size that gets a pool region of its own; larger ones go to one best region. */
const MAX_POOL_SIZE = 4096;

/**
 * Vmpool regions, one per size (rounded up to 8) up to 4 KiB, as a Vmalloc program opens a
 * pool per kind of object (a pool holds blocks of one size); larger sizes share a best region.
 */
function poolAllocator(heap: Heap): ReplayAllocator {
  const extent = extentOf(heap);
  const pools = new Map<number, Region>();
  let big: Region | undefined;
  const regionFor = (n: number): Region => {
    const size = roundSize(n);
    if (size > MAX_POOL_SIZE) return big ??= Region.open(heapDiscipline(heap), "best");
    let r = pools.get(size);
    if (r === undefined) {
      r = Region.open(heapDiscipline(heap, 8192), "pool");
      pools.set(size, r);
    }
    return r;
  };
  const alloc = (n: number) => regionFor(n).alloc(roundSize(n));
  return {
    name: "pool",
    alloc,
    free: (p, n) => regionFor(n).free(p),
    resize: (p, old, n) => {
      const from = regionFor(old), to = regionFor(n);
      if (from === to) return from === big ? from.resize(p, n) : p;
      return moveBlock(heap, alloc, () => from.free(p), p, old, n);
    },
    extent,
  };
}

/** A Vmlast region: only the last block frees or resizes; other frees are ignored. */
function lastAllocator(heap: Heap): ReplayAllocator {
  return lastOnly(heap, "last", () => Region.open(heapDiscipline(heap), "last"));
}

/** The adapters by name. */
const MAKERS: Record<string, (heap: Heap) => ReplayAllocator> = {
  heap: heapAllocator,
  libc: libcAllocator,
  cache: cacheAllocator,
  bump: bumpAllocator,
  context: contextAllocator,
  best: bestAllocator,
  pool: poolAllocator,
  last: lastAllocator,
};

/** Adapters other modules add (a region per method, once `region` provides it). */
const extra = new Map<string, (heap: Heap) => ReplayAllocator>();

/**
 * Registers an adapter under a name, for `replay`, the study and `umem replay --alloc`.
 *
 * @param name the name
 * @param make builds the adapter on a fresh heap
 * @throws {UmemError} `invalid-argument` for a name already taken, or a `make` that is not a
 *   function
 *
 * @example
 * ```ts
 * import { registerAllocator, replay, TraceBuilder } from "@umem/umem/profile";
 * registerAllocator("zeroing", (heap) => ({
 *   name: "zeroing",
 *   alloc: (n) => heap.zalloc(n),
 *   free: (p, n) => heap.free(p, n),
 *   resize: (p, _o, _n) => p,
 *   extent: () => heap.vmem.stats().inUse,
 * }));
 * const b = new TraceBuilder();
 * b.alloc(0x10, 8);
 * console.log(replay(b.finish(), "zeroing").allocator); // zeroing
 * ```
 */
export function registerAllocator(name: string, make: (heap: Heap) => ReplayAllocator): void {
  if (typeof name !== "string" || name === "" || Object.hasOwn(MAKERS, name) || extra.has(name)) {
    throw new UmemError(
      "invalid-argument",
      `registerAllocator: name '${String(name)}' is empty or taken`,
    );
  }
  checkFunction("registerAllocator", "make", make);
  extra.set(name, make);
}

/**
 * The names of every adapter: the built-in ones, then those registered.
 *
 * @returns the names
 *
 * @example
 * ```ts
 * import { allocatorNames } from "@umem/umem/profile";
 * console.log(allocatorNames().slice(0, 3)); // ["heap", "libc", "cache"]
 * ```
 */
export function allocatorNames(): string[] {
  return [...ALLOCATOR_NAMES, ...extra.keys()];
}

/**
 * Makes a named adapter over a fresh heap of its own: `heap` (the sized interface), `libc`,
 * `cache` (an object cache per size up to 4 KiB), `bump` (an sbo arena), `context` (a budget
 * memory context), `best`, `pool` (a pool region per size up to 4 KiB) and `last` (Vmalloc
 * regions over the heap), or one registered with {@linkcode registerAllocator}.
 *
 * @param name the adapter's name
 * @param options the heap's size
 * @returns the adapter
 * @throws {UmemError} `invalid-argument` for an unknown name (the message lists the known ones),
 *   options that are not an object or heap sizes `Heap.create` refuses
 *
 * @example
 * ```ts
 * import { makeAllocator } from "@umem/umem/profile";
 * const a = makeAllocator("libc");
 * const p = a.alloc(10);
 * const q = a.resize(p, 10, 5000);
 * a.free(q, 5000);
 * console.log(a.extent() >= 0); // true
 * ```
 */
export function makeAllocator(name: string, options: AllocatorOptions = {}): ReplayAllocator {
  checkOptions("makeAllocator", options);
  const make = Object.hasOwn(MAKERS, name) ? MAKERS[name] : extra.get(name);
  if (make === undefined) {
    throw new UmemError(
      "invalid-argument",
      `makeAllocator: unknown allocator '${name}' (expected one of ${allocatorNames().join(", ")})`,
    );
  }
  return make(freshHeap(options));
}
