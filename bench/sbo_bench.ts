/**
 * sbo benchmarks: a request's worth of small objects from a scoped arena, against the floor
 * (a bump pointer over an `Int32Array`), the heap's `alloc`/`free` of the same sizes and V8's
 * own objects.
 *
 *     deno bench --allow-read --allow-env bench/sbo_bench.ts
 *
 * Every variant allocates the same 32 sizes (16 to 64 bytes), writes one word into each object
 * and keeps its address (or the object) in a sink, so nothing is optimised away.
 *
 * Group "32 allocations": allocation alone. Two floors: the tightest loop V8 can run (a bump
 * pointer kept in word 0 of a module-level `Int32Array`, which V8 folds into the code), and the
 * same bump pointer as an allocator object (`floor.alloc(size)` over the `Int32Array` it holds),
 * which is the shape of any allocator's API, the arena's included. The arena allocates from
 * one open arena (its first chunk holds 1000 iterations); both the arena and the floors are
 * rewound once every 1000 iterations.
 * A second arena row reaches its handle through an array, so V8 cannot fold the handle and
 * its record view into the code as it does for the module-level one: what a handle passed
 * around costs.
 *
 * Group "request: 32 objects, then drop": one request's lifetime. The arena opens a scope
 * (`using`, or `try`/`finally` around `dispose`), allocates, and drops the scope (its chunk goes
 * back to the worker's pool); or one long-lived arena is rewound to a mark per request; the
 * heap allocates and frees each object (the baseline); V8 allocates 32 objects and lets them
 * go; the floor bumps and resets.
 *
 * Group "using": what a `using` declaration itself costs in this V8, with a disposable that
 * does nothing, against `try`/`finally`.
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { BumpArena, scope } from "../sbo/mod.ts";

const SIZES = [16, 24, 32, 48, 64, 16, 40, 24];
const N = 32;
const sizes = Int32Array.from({ length: N }, (_, i) => SIZES[i % SIZES.length]);
const sink = new Int32Array(N);
const objs: { id: number; x: number; y: number }[] = new Array(N);

const heap = Heap.create({ size: 64 << 20, maxSize: 256 << 20, debug: "", logging: "" });

// ---- the floors: a bump pointer over an Int32Array ----
const floorWords = new Int32Array(1 << 20); // 4 MiB the floors "allocate" from
const top = new Int32Array(2); // [bump pointer, end], in bytes
top[1] = floorWords.length * 4;
function floorAlloc(size: number): number {
  const p = (top[0] + 7) & -8, e = p + size;
  if (e > top[1]) throw new Error("floor exhausted");
  top[0] = e;
  return p;
}

/** The floor as an allocator object: its bump pointer and end in the Int32Array it holds. */
class FloorAllocator {
  readonly words: Int32Array;
  constructor(bytes: number) {
    this.words = new Int32Array(2);
    this.words[1] = bytes;
  }
  alloc(size: number): number {
    const w = this.words, p = (w[0] + 7) & -8, e = p + size;
    if (e > w[1]) throw new Error("floor exhausted");
    w[0] = e;
    return p;
  }
  reset(): void {
    this.words[0] = 0;
  }
}
const floorObject = new FloorAllocator(floorWords.length * 4);

// ---- group 1: allocation alone ----
const longArena = new BumpArena(heap, { chunkSize: 4 << 20, maxChunkSize: 4 << 20 });
const longMark = longArena.mark();
let n1 = 0, n2 = 0, n3 = 0;

Deno.bench({
  name: "floor: inline bump over a module-level Int32Array",
  group: "32 allocations",
  baseline: true,
  fn() {
    for (let i = 0; i < N; i++) {
      const p = floorAlloc(sizes[i]);
      floorWords[p >> 2] = i;
      sink[i] = p;
    }
    if (++n1 === 1000) {
      top[0] = 0;
      n1 = 0;
    }
  },
});

Deno.bench({
  name: "floor: allocator object over an Int32Array",
  group: "32 allocations",
  fn() {
    for (let i = 0; i < N; i++) {
      const p = floorObject.alloc(sizes[i]);
      floorWords[p >> 2] = i;
      sink[i] = p;
    }
    if (++n2 === 1000) {
      floorObject.reset();
      n2 = 0;
    }
  },
});

Deno.bench({
  name: "sbo: arena.alloc",
  group: "32 allocations",
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = longArena.alloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
    }
    if (++n3 === 1000) {
      longArena.rewind(longMark);
      n3 = 0;
    }
  },
});

const handles = [new BumpArena(heap, { chunkSize: 4 << 20, maxChunkSize: 4 << 20 })];
const handlesMark = handles[0].mark();
let n4 = 0;

Deno.bench({
  name: "sbo: arena.alloc, handle read from an array",
  group: "32 allocations",
  fn() {
    const i32 = heap.i32, arena = handles[n4 & 0];
    for (let i = 0; i < N; i++) {
      const p = arena.alloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
    }
    if (++n4 === 1000) {
      arena.rewind(handlesMark);
      n4 = 0;
    }
  },
});

// ---- group 2: a request ----
const G2 = "request: 32 objects, then drop";

Deno.bench({
  name: "heap: 32 × heap.alloc, then 32 × heap.free",
  group: G2,
  baseline: true,
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = heap.alloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
    }
    for (let i = 0; i < N; i++) heap.free(sink[i], sizes[i]);
  },
});

Deno.bench({
  name: "sbo: using arena = scope(heap); 32 × alloc",
  group: G2,
  fn() {
    using arena = scope(heap);
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = arena.alloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
    }
  },
});

Deno.bench({
  name: "sbo: scope(heap); 32 × alloc; finally dispose()",
  group: G2,
  fn() {
    const arena = scope(heap);
    try {
      const i32 = heap.i32;
      for (let i = 0; i < N; i++) {
        const p = arena.alloc(sizes[i]);
        i32[p >> 2] = i;
        sink[i] = p;
      }
    } finally {
      arena.dispose();
    }
  },
});

const requestArena = new BumpArena(heap);
const requestMark = requestArena.mark();
Deno.bench({
  name: "sbo: one arena, 32 × alloc, rewind(mark)",
  group: G2,
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = requestArena.alloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
    }
    requestArena.rewind(requestMark);
  },
});

Deno.bench({
  name: "V8: 32 object literals",
  group: G2,
  fn() {
    for (let i = 0; i < N; i++) objs[i] = { id: i, x: sizes[i], y: 0 };
  },
});

Deno.bench({
  name: "floor: 32 bumps over an Int32Array, then reset",
  group: G2,
  fn() {
    for (let i = 0; i < N; i++) {
      const p = floorAlloc(sizes[i]);
      floorWords[p >> 2] = i;
      sink[i] = p;
    }
    top[0] = 0;
  },
});

// ---- group 3: the cost of `using` itself ----
const nothing = {
  [Symbol.dispose]() {
    sink[0]++;
  },
};

Deno.bench({
  name: "try { } finally { x[Symbol.dispose]() }",
  group: "using",
  baseline: true,
  fn() {
    const x = nothing;
    try {
      sink[1]++;
    } finally {
      x[Symbol.dispose]();
    }
  },
});

Deno.bench({
  name: "using x = disposable",
  group: "using",
  fn() {
    using _x = nothing;
    sink[1]++;
  },
});
