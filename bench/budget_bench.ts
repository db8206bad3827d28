/**
 * budget benchmarks: memory contexts against the heap's own sized allocation, same sizes.
 *
 *     deno bench --allow-read --allow-env bench/budget_bench.ts
 *
 * Group "alloc+free": 32 allocations, each freed at once: `heap.alloc`/`heap.free` (the
 * baseline: a magazine round of a size-class cache) against `palloc`/`pfree` (the current
 * context's free lists) and `ctx.alloc`/`ctx.free`.
 *
 * Group "alloc 32, then drop all": a batch's lifetime: the heap allocates 32 objects and frees
 * each; a context allocates them and is reset once (aset.c's bump of the keeper block, and a
 * fresh generation).
 *
 * Group "alloc 32 of 16..1024 bytes, then drop all": the same with sizes spread over the
 * free lists.
 *
 * Every variant writes one word into each object and keeps its address in a sink, so nothing
 * is optimised away.
 */
import { Heap } from "../mod.ts";
import { palloc, pfree, switchTo, topContext } from "../budget/mod.ts";

const SIZES = [16, 24, 32, 48, 64, 16, 40, 24];
const WIDE = [16, 100, 24, 300, 64, 1000, 40, 200];
const N = 32;
const sizes = Int32Array.from({ length: N }, (_, i) => SIZES[i % SIZES.length]);
const wide = Int32Array.from({ length: N }, (_, i) => WIDE[i % WIDE.length]);
const sink = new Int32Array(N);

const heap = Heap.create({ size: 64 << 20, maxSize: 256 << 20, debug: "", logging: "" });
const top = topContext(heap);
const ctx = top.create("bench");
const batch = top.create("batch");
const wideBatch = top.create("wide batch");
switchTo(ctx);

// ---- group 1: alloc+free ----

Deno.bench({
  name: "heap.alloc + heap.free",
  group: "alloc+free",
  baseline: true,
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const s = sizes[i], p = heap.alloc(s);
      i32[p >> 2] = i;
      sink[i] = p;
      heap.free(p, s);
    }
  },
});

Deno.bench({
  name: "palloc + pfree",
  group: "alloc+free",
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = palloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
      pfree(p);
    }
  },
});

Deno.bench({
  name: "ctx.alloc + ctx.free",
  group: "alloc+free",
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = ctx.alloc(sizes[i]);
      i32[p >> 2] = i;
      sink[i] = p;
      ctx.free(p);
    }
  },
});

// ---- group 2: a batch, then drop it ----

const held = new Int32Array(N);

Deno.bench({
  name: "heap.alloc x32, heap.free x32",
  group: "alloc 32, then drop all",
  baseline: true,
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = heap.alloc(sizes[i]);
      i32[p >> 2] = i;
      held[i] = p;
    }
    for (let i = 0; i < N; i++) heap.free(held[i], sizes[i]);
  },
});

Deno.bench({
  name: "palloc x32, ctx.reset()",
  group: "alloc 32, then drop all",
  fn() {
    const old = switchTo(batch);
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = palloc(sizes[i]);
      i32[p >> 2] = i;
      held[i] = p;
    }
    switchTo(old);
    batch.reset();
  },
});

Deno.bench({
  name: "palloc x32, pfree x32",
  group: "alloc 32, then drop all",
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = palloc(sizes[i]);
      i32[p >> 2] = i;
      held[i] = p;
    }
    for (let i = 0; i < N; i++) pfree(held[i]);
  },
});

// ---- group 3: wider sizes ----

Deno.bench({
  name: "heap.alloc x32, heap.free x32 (16..1000 B)",
  group: "alloc 32 of 16..1000 bytes, then drop all",
  baseline: true,
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = heap.alloc(wide[i]);
      i32[p >> 2] = i;
      held[i] = p;
    }
    for (let i = 0; i < N; i++) heap.free(held[i], wide[i]);
  },
});

Deno.bench({
  name: "ctx.alloc x32, ctx.reset() (16..1000 B)",
  group: "alloc 32 of 16..1000 bytes, then drop all",
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = wideBatch.alloc(wide[i]);
      i32[p >> 2] = i;
      held[i] = p;
    }
    wideBatch.reset();
  },
});

Deno.bench({
  name: "ctx.alloc x32, ctx.free x32 (16..1000 B)",
  group: "alloc 32 of 16..1000 bytes, then drop all",
  fn() {
    const i32 = heap.i32;
    for (let i = 0; i < N; i++) {
      const p = ctx.alloc(wide[i]);
      i32[p >> 2] = i;
      held[i] = p;
    }
    for (let i = 0; i < N; i++) ctx.free(held[i]);
  },
});
