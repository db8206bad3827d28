/**
 * The alloc+free pair loops of `bench/compare.ts`, one per contender.
 *
 * V8 keeps type feedback and optimized code per function, and every call site of `heap.alloc`
 * inlines what that site has seen. A loop shared by the four sizes would inline the paths of
 * every size (and of the checked and the `trust` heap) and run out of TurboFan's inlining
 * budget; a real program's call site allocates one kind of object. So compare.ts imports this
 * module once per cell, with a query string that makes each import a module of its own (Deno
 * and Bun both key modules by their full URL): every cell runs a fresh copy of its loop, and no
 * contender's loop is shared with another's.
 *
 * @module
 */
import type { MemPool } from "@thi.ng/malloc";
import type { Cache, Heap } from "../core/mod.ts";

/** The floor's bump pointer cycles through `[FLOOR_BASE, FLOOR_END)` of its buffer. */
export const FLOOR_BASE = 64;
/** See {@linkcode FLOOR_BASE}. */
export const FLOOR_END = 32 << 20;

/** `heap.alloc`/`free` of `size` bytes, `n` times. */
export function pairsHeap(h: Heap, size: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = h.alloc(size);
    h.free(p, size);
    s ^= p;
  }
  return s;
}

/** `Error`'s V8 extension, as an audit's capture uses it. */
const ErrorLimit = Error as unknown as { stackTraceLimit: number };
/** The last capture, kept so that none is optimised away. */
let lastCapture: Error | undefined;
/** Operations since the last capture. */
let sinceCapture = 0;

/**
 * `heap.alloc` after one raw capture of the stack, `frames` deep, on every `every`th operation:
 * what an allocator's entry point that audits does first (its text is made only when something
 * reads it). The capture is written out here, not called, so that it walks no frame of its own.
 */
function allocCapturing(h: Heap, size: number, frames: number, every: number): number {
  if (++sinceCapture >= every) {
    sinceCapture = 0;
    const limit = ErrorLimit.stackTraceLimit;
    ErrorLimit.stackTraceLimit = frames;
    lastCapture = new Error();
    ErrorLimit.stackTraceLimit = limit;
  }
  return h.alloc(size);
}

/**
 * `heap.free` after a capture, as {@linkcode allocCapturing}. (Two functions, not one that takes
 * the operation: one calling both `alloc` and `free` measured the pairs 5 ns an operation
 * slower, which would have flattered the audit it is the baseline of.)
 */
function freeCapturing(h: Heap, p: number, size: number, frames: number, every: number): void {
  if (++sinceCapture >= every) {
    sinceCapture = 0;
    const limit = ErrorLimit.stackTraceLimit;
    ErrorLimit.stackTraceLimit = frames;
    lastCapture = new Error();
    ErrorLimit.stackTraceLimit = limit;
  }
  h.free(p, size);
}

/**
 * {@linkcode pairsHeap} with one raw stack capture, `frames` deep, made by every `every`th
 * alloc or free before it runs: the bare cost of the stacks an audit keeps, for
 * `bench/debug_bench.ts` to measure auditing against. The capture is made one call below the
 * loop, as an audited heap's `alloc` and `free` make theirs, so both walk the same frames.
 */
export function pairsCapturing(
  h: Heap,
  size: number,
  n: number,
  frames: number,
  every: number,
): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = allocCapturing(h, size, frames, every);
    freeCapturing(h, p, size, frames, every);
    s ^= p;
  }
  if (n * 2 >= every && lastCapture === undefined) throw new Error("no stack was captured");
  return s;
}

/** `heap.libc` malloc/free of `size` bytes, `n` times. */
export function pairsLibc(h: Heap, size: number, n: number): number {
  const libc = h.libc;
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = libc.malloc(size);
    libc.free(p);
    s ^= p;
  }
  return s;
}

/** An object cache's alloc/free, `n` times. */
export function pairsCache(c: Cache, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = c.alloc();
    c.free(p);
    s ^= p;
  }
  return s;
}

/** MemPool's malloc/free of `size` bytes, `n` times. */
export function pairsPool(m: MemPool, size: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = m.malloc(size);
    m.free(p);
    s ^= p;
  }
  return s;
}

/** Keeps the last 256 objects alive, so that they escape. */
const keepObj: unknown[] = new Array(256).fill(null);
/** V8's `{}`: `n` objects, the last 256 kept. */
export function pairsObj(n: number): number {
  for (let i = 0; i < n; i++) keepObj[i & 255] = { a: i, b: 0, c: 0, d: 0 };
  return keepObj.length;
}

/** Keeps the last 256 arrays alive, so that they escape. */
const keepU8: Uint8Array[] = new Array(256).fill(new Uint8Array(0));
/** `new Uint8Array(size)`, `n` times, the last 256 kept. */
export function pairsU8(size: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const a = new Uint8Array(size);
    keepU8[i & 255] = a;
    s ^= a.length;
  }
  return s;
}

/** The floor: a bump of `size` bytes, `n` times, and no free. */
export function pairsFloor(b: Int32Array, size: number, n: number): number {
  const step = (size + 7) & ~7;
  let s = 0;
  for (let i = 0; i < n; i++) {
    let p = b[0];
    if (p + step > FLOOR_END) p = FLOOR_BASE;
    b[0] = p + step;
    s ^= p; // free: nothing
  }
  return s;
}
