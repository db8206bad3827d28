/**
 * The malloc-compatible interface, as libumem's malloc.c: `malloc`, `calloc`, `realloc`,
 * `memalign`, `free` and `usableSize` on top of sized allocation.
 *
 * Theory. Each block starts with an 8-byte header: the total bytes allocated (header
 * included) and that number XORed with `MALLOC_MAGIC`, so `free` can give `umem_free` its size
 * and tell a malloc'd pointer from anything else. `memalign` over-allocates and puts a second
 * header before the aligned pointer holding the distance back to the block, XORed with
 * `MEMALIGN_MAGIC`. `realloc` stays in place while the new size keeps the same size class.
 *
 * `malloc` and `free` have a fast path each, as `heap.alloc` and `heap.free` do, for a heap that
 * neither debugs nor hooks nor trusts (`checkedFast`): sizes up to 32 KiB less a byte, a plain
 * header, checked inline, then the size class's magazine round (`cacheAlloc`) or checked free
 * (`cacheFreeChecked`) straight, not through the heap's `alloc` and `free`, whose bytecodes would
 * crowd the pair out of V8's inlining budget (magazine.ts). Everything else (memalign blocks,
 * large ones, mistakes, a header past this worker's views) takes the checked way, which finds
 * the block with `block` and frees it through the heap.
 *
 * Invariants. For a pointer p from this interface, the two words before p are a header whose
 * second word is the first XORed with one of the two magics. A second free of a block finds
 * its header intact and is refused by the size class's state byte as a duplicate free.
 *
 * @module
 */

import { FREE_PATTERN } from "./buftag.ts";
import { bigBlockLive, report } from "./debug.ts";
import {
  HOOK_LIBC,
  hooksLive,
  runAllocHooks,
  runFreedHooks,
  runFreeHooks,
  runResizeHooks,
  runResizingHooks,
} from "./hooks.ts";
import { checkSize, hex, UmemError } from "./errors.ts";
import { type HeapView, MAX_IMAGE, PAGE_SIZE } from "./image.ts";
import { cacheAlloc, cacheFreeChecked } from "./magazine.ts";
import { sizeCache, UMEM_MAXBUF } from "./size_class.ts";
import { bufferState, cacheOf } from "./pagemap.ts";
import { BUF_ALLOC, CA_BUFSIZE } from "./slab.ts";

// The magazine layer's fast paths, called through module constants as heap.ts calls them (V8
// folds a constant of this module into the caller, not an imported binding).
const fastAlloc = cacheAlloc, fastFree = cacheFreeChecked;
/**
 * The fast paths' copies of the header's layout, and the largest request they serve, checked by
 * the Libc constructor. A `const enum`, as magazine.ts's `Fp`: written out as numbers at each
 * use, where a module's `const` is a context load in bytecode, and bytecode is what V8's
 * inlining budget counts (the pair of malloc and free must leave room for the magazine layer's
 * two fast paths).
 */
const enum Lc {
  HEADER = 8,
  HEADER_W = 2,
  SIZE_W = 0,
  TAG_W = 1,
  MIN_PTR = 16,
  /**
   * The largest request (the block less its header) either fast path serves: 32 KiB less a
   * byte, a mask for malloc's test and a 16-bit operand for free's.
   */
  FAST_N = 0x7fff,
  /** The bits of FAST_N: a request is FAST_N or less when it has none above them. */
  FAST_BITS = 15,
}

/** Bytes of a malloc header. */
export const MALLOC_HEADER = 8;
/** Header word 0: total bytes of the block, header included. */
export const MH_SIZE = 0;
/** Header word 1: `MH_SIZE ^ MALLOC_MAGIC` (or the memalign offset ^ `MEMALIGN_MAGIC`). */
export const MH_TAG = 4;
/** Tag of a plain malloc header. */
export const MALLOC_MAGIC = 0x3a10c000 | 0;
/** MALLOC_MAGIC for the fast paths: a module-local constant costs a byte less to load. */
const MAGIC = MALLOC_MAGIC;
/** Tag of a memalign back-pointer header. */
export const MEMALIGN_MAGIC = 0x3a10c0de | 0;
/**
 * Tag of a memalign block's base header (its total ^ this): not a plain block's, so that a
 * pointer into the block's padding (`free(p - 8)`) is not read as a plain block there, and a
 * stale back-pointer left in a buffer now another block's does not lead to that block.
 */
export const MEMALIGN_BASE_MAGIC = 0x3a10c0ba | 0;
/** The largest `malloc`: the largest image less a header. */
const MAX_MALLOC = MAX_IMAGE - MALLOC_HEADER;

/** The allocator underneath: a `Heap`'s sized interface. */
export interface SizedAllocator extends HeapView {
  /** Allocates `size` bytes. */
  alloc(size: number): number;
  /** Frees `size` bytes at `ptr`. */
  free(ptr: number, size: number): void;
}

/** Bytes really available in a block of `total` bytes of heap `h` (its class, or whole pages). */
function blockBytes(h: HeapView, total: number): number {
  return total <= UMEM_MAXBUF
    ? h.i32[(sizeCache(h, total) + CA_BUFSIZE) >> 2]
    : Math.ceil(total / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * `malloc` and friends over a heap: `heap.libc`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * const { libc, u8 } = Heap.create({ size: 1 << 20 });
 * const p = libc.malloc(10);
 * u8.set([1, 2, 3], p);
 * const q = libc.realloc(p, 5000);
 * console.log(u8[q + 2]); // 3
 * libc.free(q);
 * ```
 */
export class Libc {
  /** The heap underneath. */
  readonly heap: SizedAllocator;

  /**
   * Wraps a heap's sized allocation.
   *
   * @param heap the heap whose sized allocation serves the blocks
   */
  constructor(heap: SizedAllocator) {
    this.heap = heap;
    if (
      Lc.HEADER !== MALLOC_HEADER || Lc.HEADER_W !== MALLOC_HEADER >> 2 ||
      Lc.SIZE_W !== MH_SIZE >> 2 || Lc.TAG_W !== MH_TAG >> 2 ||
      Lc.MIN_PTR !== 2 * MALLOC_HEADER || Lc.FAST_N + Lc.HEADER > UMEM_MAXBUF ||
      Lc.FAST_N !== (1 << Lc.FAST_BITS) - 1 // (a block the size table serves; a mask)
    ) {
      throw new Error("core/libc.ts: the fast paths' copies of the layout are out of date");
    }
  }

  /**
   * Allocates `n` bytes, 8-aligned; `malloc(0)` returns a unique minimal block.
   *
   * @param n bytes
   * @returns the address
   * @throws {OutOfMemoryError} when no memory can be had
   * @throws {UmemError} `invalid-argument` for a bad size
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.libc.free(heap.libc.malloc(24));
   * ```
   */
  malloc(n: number): number {
    // The fast path, as heap.alloc's (no debugging, no hooks, not trust: `checkedFast`): the
    // size class's magazine round, then the header. One inline test of the size (checkSize, a
    // call and a message, only on the slow way): the fewer bytecodes here, the more of the
    // magazine layer V8 inlines into the caller.
    const h = this.heap, tab = h.checkedTab; // (0 unless `checkedFast`)
    // (`tab` is tested for truth: one jump, where `!== 0` is a compare and a jump, and V8's
    // inlining budget counts bytecodes; it is always a small integer.)
    if ((n & Lc.FAST_N) === n && tab) { // (a whole number in [0, FAST_N])
      const total = n + Lc.HEADER;
      const base = fastAlloc(h, h.i32[tab + ((total + 7) >> 3)]), w = base >> 2;
      const i32 = h.i32;
      i32[w] = total; // (word Lc.SIZE_W, 0)
      i32[w + Lc.TAG_W] = total ^ MAGIC;
      return base + Lc.HEADER;
    }
    return this.mallocSlow(n);
  }

  /** `malloc` off the fast path: hooks, debugging, `trust`, large or bad sizes. */
  private mallocSlow(n: number): number {
    const h = this.heap;
    if (h.intercepting === true && hooksLive(h)) return this.mallocHooked(n);
    checkSize("malloc", "size", n, 0, MAX_MALLOC);
    const total = n + MALLOC_HEADER;
    const base = h.alloc(total);
    const i32 = h.i32;
    i32[(base + MH_SIZE) >> 2] = total;
    i32[(base + MH_TAG) >> 2] = total ^ MALLOC_MAGIC;
    return base + MALLOC_HEADER;
  }

  /**
   * Allocates `n * size` bytes set to zero.
   *
   * @param n count
   * @param size bytes each
   * @returns the address
   * @throws {UmemError} `invalid-argument` when the product overflows the heap's limit
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.libc.calloc(10, 8);
   * console.log(heap.u8[p + 79]); // 0
   * ```
   */
  calloc(n: number, size: number): number {
    checkSize("calloc", "count", n, 0, MAX_IMAGE);
    checkSize("calloc", "size", size, 0, MAX_IMAGE);
    const bytes = n * size;
    if (bytes > MAX_IMAGE - MALLOC_HEADER) {
      throw new UmemError("invalid-argument", `calloc: ${n} * ${size} bytes overflows the heap`);
    }
    const p = this.malloc(bytes);
    this.heap.u8.fill(0, p, p + bytes);
    return p;
  }

  /**
   * Frees a block from this interface; `free(0)` does nothing.
   *
   * @param ptr the block
   * @throws {UmemError} `bad-free` for a pointer that is not a live malloc block
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.libc.free(0);
   * ```
   */
  free(ptr: number): void {
    // The fast path, as heap.free's: a plain malloc header of a size class within this worker's
    // views, checked inline, then the size class's checked free (which refuses a second free by
    // the buffer's state byte). Anything else is freeSlow's: 0, a memalign block, a large one,
    // one past the views, hooks, debugging, `trust`, a mistake.
    const h = this.heap, i32 = h.i32, tab = h.checkedTab; // (0 unless `checkedFast`)
    // (`ptr & -8` is ptr itself only for a whole multiple of 8 in the int32 range; a header
    // past this worker's views reads as undefined, which is no header.)
    // (`tab` and the size's high bits are tested for truth, as malloc's `tab`.)
    if ((ptr & -8) === ptr && ptr >= Lc.MIN_PTR && tab) {
      const w = (ptr >> 2) - Lc.HEADER_W, total = i32[w]; // (word Lc.SIZE_W, 0)
      if (i32[w + Lc.TAG_W] === (total ^ MAGIC) && !((total - Lc.HEADER) >>> Lc.FAST_BITS)) {
        // The header stays: a second free finds it and the size class's state byte reports the
        // duplicate; once the buffer is reused or back on its slab the header no longer matches.
        return fastFree(h, i32[tab + ((total + 7) >> 3)], ptr - Lc.HEADER, "umem_free");
      }
    }
    this.freeSlow(ptr);
  }

  /** `free` off the fast path (see there). */
  private freeSlow(ptr: number): void {
    if (ptr === 0) return;
    const h = this.heap;
    if (h.intercepting === true && hooksLive(h)) return this.freeHooked(ptr);
    const base = this.block(ptr, "free");
    this.freeBlock(ptr, base, this.total(base));
  }

  /**
   * Frees the block at `base` that `ptr` names; a memalign block's back-pointer header is
   * cleared first (put back if the free is refused), so that a stale `ptr` finds no header.
   */
  private freeBlock(ptr: number, base: number, total: number): void {
    const h = this.heap;
    if (ptr === base + MALLOC_HEADER) return h.free(base, total);
    const at = (ptr - MALLOC_HEADER) >> 2, i32 = h.i32, w0 = i32[at], w1 = i32[at + 1];
    i32[at] = i32[at + 1] = 0;
    try {
      h.free(base, total);
    } catch (e) {
      h.i32[at] = w0;
      h.i32[at + 1] = w1;
      throw e;
    }
  }

  /** `free` with hooks: they see the program's pointer and size, not the sized free beneath. */
  private freeHooked(ptr: number): void {
    const base = this.block(ptr, "free"), total = this.total(base);
    const h = this.heap, size = base + total - ptr;
    runFreeHooks(h, ptr, size, HOOK_LIBC);
    h.hookDepth++;
    try {
      this.freeBlock(ptr, base, total);
    } finally {
      h.hookDepth--;
    }
    runFreedHooks(h, ptr, size, HOOK_LIBC);
  }

  /**
   * Resizes a block, as `realloc`: in place while the new size fits the same size class,
   * otherwise to a new block with the contents copied. `realloc(0, n)` is `malloc(n)`;
   * `realloc(p, 0)` frees p and returns 0.
   *
   * @param ptr the block, or 0
   * @param n the new size
   * @returns the block's (maybe new) address
   * @throws {UmemError} `bad-free` for a pointer that is not a live malloc block
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.libc.malloc(20);
   * console.log(heap.libc.realloc(p, 22) === p); // true
   * ```
   */
  realloc(ptr: number, n: number): number {
    const h = this.heap;
    if (ptr === 0 || n === 0 || !h.intercepting || !hooksLive(h)) return this.reallocBlock(ptr, n);
    const base = this.block(ptr, "realloc"), total = this.total(base);
    const was = base + total - ptr;
    runResizingHooks(h, ptr, was, n);
    h.hookDepth++;
    let q: number;
    try {
      q = this.reallocBlock(ptr, n);
    } finally {
      h.hookDepth--;
    }
    runResizeHooks(h, ptr, was, q, n);
    return q;
  }

  /** `realloc` without hooks (but with them for its `malloc(n)` and `free(p)` cases). */
  private reallocBlock(ptr: number, n: number): number {
    if (ptr === 0) return this.malloc(n);
    checkSize("realloc", "size", n, 0, MAX_MALLOC);
    const base = this.block(ptr, "realloc"), total = this.total(base);
    if (n === 0) {
      this.free(ptr);
      return 0;
    }
    const i32 = this.heap.i32;
    const want = n + MALLOC_HEADER;
    // In place while the class stays the same; on a debugged heap always move, as libumem's
    // realloc does, so the buffer's tag (requested size, redzone) stays true.
    if (
      base + MALLOC_HEADER === ptr &&
      blockBytes(this.heap, want) === blockBytes(this.heap, total) &&
      !this.heap.debugging
    ) {
      i32[(base + MH_SIZE) >> 2] = want;
      i32[(base + MH_TAG) >> 2] = want ^ MALLOC_MAGIC;
      return ptr;
    }
    const q = this.malloc(n);
    const old = base + total - ptr;
    this.heap.u8.copyWithin(q, ptr, ptr + Math.min(old, n));
    try {
      this.free(ptr);
    } catch (e) {
      this.free(q); // the old block was refused (a report, with noabort): the new one goes back
      throw e;
    }
    return q;
  }

  /**
   * Allocates `n` bytes aligned to `align`, as `memalign`.
   *
   * @param align a power of two
   * @param n bytes
   * @returns the address, a multiple of `align`
   * @throws {UmemError} `invalid-argument` for an alignment that is not a power of two
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const p = heap.libc.memalign(256, 100);
   * console.log(p % 256); // 0
   * heap.libc.free(p);
   * ```
   */
  memalign(align: number, n: number): number {
    const h = this.heap;
    if (!h.intercepting || !hooksLive(h)) return this.memalignBlock(align, n);
    h.hookDepth++;
    let p: number;
    try {
      p = this.memalignBlock(align, n);
    } finally {
      h.hookDepth--;
    }
    runAllocHooks(h, p, n, HOOK_LIBC);
    return p;
  }

  /** `memalign` without hooks. */
  private memalignBlock(align: number, n: number): number {
    checkSize("memalign", "align", align, 1, 1 << 24);
    if ((align & (align - 1)) !== 0) {
      throw new UmemError("invalid-argument", `memalign: align ${align} is not a power of two`);
    }
    if (align <= MALLOC_HEADER) return this.malloc(n);
    checkSize("memalign", "size", n, 0, MAX_IMAGE - 2 * MALLOC_HEADER - align);
    const total = n + align + 2 * MALLOC_HEADER;
    const base = this.heap.alloc(total);
    const i32 = this.heap.i32;
    i32[(base + MH_SIZE) >> 2] = total;
    i32[(base + MH_TAG) >> 2] = total ^ MEMALIGN_BASE_MAGIC;
    const p = Math.ceil((base + 2 * MALLOC_HEADER) / align) * align;
    const off = p - base;
    i32[(p - MALLOC_HEADER + MH_SIZE) >> 2] = off;
    i32[(p - MALLOC_HEADER + MH_TAG) >> 2] = off ^ MEMALIGN_MAGIC;
    return p;
  }

  /**
   * The bytes usable at `ptr`: at least what was asked, up to the end of the size class.
   *
   * @param ptr a live block
   * @returns bytes usable from `ptr`
   * @throws {UmemError} `bad-free` for a pointer that is not a live malloc block
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(heap.libc.usableSize(heap.libc.malloc(20))); // 24
   * ```
   */
  usableSize(ptr: number): number {
    const base = this.block(ptr, "usableSize"), total = this.total(base);
    // On a debugged heap the bytes past the request are the redzone.
    return base + (this.heap.debugging ? total : blockBytes(this.heap, total)) - ptr;
  }

  /** `malloc` with hooks: they see the program's size, not the sized allocation beneath. */
  private mallocHooked(n: number): number {
    const h = this.heap;
    h.hookDepth++;
    let p: number;
    try {
      p = this.malloc(n);
    } finally {
      h.hookDepth--;
    }
    runAllocHooks(h, p, n, HOOK_LIBC);
    return p;
  }

  /** The base of the block behind `ptr` (its size is its first word), or a `bad-free` error. */
  private block(ptr: number, fn: string): number {
    const h = this.heap;
    h.sync();
    if ((ptr | 0) !== ptr || ptr < 2 * MALLOC_HEADER || ptr >= h.mapped || (ptr & 7) !== 0) {
      throw this.blockError(fn, ptr, "bad-free", `${fn}: ${hex(ptr)} is not a block from malloc`);
    }
    const i32 = h.i32;
    let at = ptr - MALLOC_HEADER, magic = MALLOC_MAGIC;
    let w0 = i32[(at + MH_SIZE) >> 2], tag = i32[(at + MH_TAG) >> 2];
    if (tag === (w0 ^ MEMALIGN_MAGIC) && w0 >= 2 * MALLOC_HEADER && w0 <= ptr && (w0 & 7) === 0) {
      at = ptr - w0;
      w0 = i32[(at + MH_SIZE) >> 2];
      tag = i32[(at + MH_TAG) >> 2];
      magic = MEMALIGN_BASE_MAGIC;
    }
    if (w0 === FREE_PATTERN && tag === FREE_PATTERN) {
      // On a heap with UMEM_DEBUG=contents a freed block's header holds the freed pattern.
      throw this.blockError(
        fn,
        ptr,
        "duplicate-free",
        `${fn}: duplicate free: buffer freed twice: ${hex(ptr)} (its header holds 0xdeadbeef)`,
      );
    }
    if (tag !== (w0 ^ magic) || w0 < MALLOC_HEADER || at + w0 > h.mapped) {
      throw this.blockError(
        fn,
        ptr,
        "bad-free",
        `${fn}: bad free: ${hex(ptr)} is not a live block from malloc (header ${hex(w0)} ${
          hex(tag)
        } at ${hex(at)})`,
      );
    }
    // A freed block's header may outlive its free: its buffer's state says (a block of the size
    // classes; an oversize one's pages went back, and its header with them, or not: unknown).
    // (free finds it through the heap's own checks.)
    if (fn === "realloc" || fn === "usableSize") {
      const st = bufferState(h, at);
      // Past the size classes the block is a span of umem_oversize, or a firewalled one: live
      // only while the span is allocated (and, firewalled, not in quarantine).
      const live = st === -1 ? bigBlockLive(h, at) : st === BUF_ALLOC;
      if (!live) throw this.blockError(fn, ptr, "bad-free", `${fn}: ${hex(ptr)} is a freed block`);
    }
    return at;
  }

  /**
   * The error for `fn`'s pointer `ptr` that is no live block: on a debugged heap reported as the
   * heap's other mistakes are (libumem's report; the process aborts but with `noabort`), but for
   * `usableSize`, which frees nothing; elsewhere thrown as it is.
   */
  private blockError(
    fn: string,
    ptr: number,
    kind: "bad-free" | "duplicate-free",
    detail: string,
  ): UmemError {
    const h = this.heap;
    if (!h.debugging || fn === "usableSize") return new UmemError(kind, detail, ptr);
    const category = kind === "duplicate-free"
      ? "duplicate free: buffer freed twice"
      : "invalid free: buffer not in cache";
    // A block whose header starts a buffer of a size class is reported as that buffer of that
    // cache, as libumem's malloc reports it (its tag and audit record with it).
    const at = ptr - MALLOC_HEADER;
    const cp = at > 0 && at < h.mapped && bufferState(h, at) !== -1 ? cacheOf(h, at) : 0;
    return report(h, kind, category, [detail], cp !== 0 ? at : ptr, cp);
  }

  /** Bytes of the checked block at `base`, header included (its `MH_SIZE` word). */
  private total(base: number): number {
    return this.heap.i32[(base + MH_SIZE) >> 2];
  }
}
