/**
 * own benchmarks: what the ownership checks cost, against the heap's plain `alloc`/`free`.
 *
 *     deno bench --allow-read --allow-env bench/own_bench.ts
 *
 * Each iteration runs `N` operations on `N` buffers of 64 bytes and writes one byte through
 * the address it got, so nothing is optimised away.
 *
 * Group "borrow+release": the baseline is one `heap.alloc(64)` + `heap.free(p, 64)` pair on a
 * heap with no hook attached (the allocator's fast path: a magazine pop and push). Against it,
 * the floor of any borrow counted atomically in a shared word (one compare-and-swap and one
 * subtract, each a call of a V8 builtin), a `borrow()` then `release()` of an owned buffer in
 * `light` mode by a solo handle (one that never lent a reference, so the only writer of its
 * state word: a plain load, a plain store, a guard object, a plain store), the same with
 * `borrowMut()`, the same by a handle that lent a reference with `share()` (the word is then
 * written by other workers too: one compare-and-swap and one `Atomics.sub`), with `using`
 * instead of `release()`, a `deref()` alone, and a borrow in `full` mode (which also captures
 * and interns the caller's stack).
 *
 * Group "alloc+drop": the same baseline against `own.alloc(64)` + `drop()` in `light` and
 * `full` mode (a record from the heap, the address table under its lock, the free through the
 * hooked path), and the plain pair on a heap whose worker has own's free hook attached (what
 * every other free of that worker pays once `own` guards frees), next to the same with a hook
 * that does nothing (the core's hooked path alone; own's hook adds one load of its page
 * counts for a buffer it does not track).
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { type Owned, Ownership } from "../own/mod.ts";
import { attachHeapHook } from "../core/internal.ts";

const N = 256;
const SIZE = 64;
const opts = { size: 32 << 20, maxSize: 256 << 20, debug: "", logging: "", options: "" };

const plain = Heap.create(opts);
const hooked = Heap.create(opts);
attachHeapHook(hooked, { free: () => {} }); // a hook that does nothing: the core's hooked path
const lightHeap = Heap.create(opts);
const fullHeap = Heap.create(opts);
const light = Ownership.create(lightHeap, { mode: "light" });
const full = Ownership.create(fullHeap, { mode: "full" });

const lightBufs: Owned[] = Array.from({ length: N }, () => light.alloc(SIZE));
// Handles that lent a reference (given back at once): no longer solo, their borrows are atomic.
const lentBufs: Owned[] = Array.from({ length: N }, () => {
  const a = light.alloc(SIZE);
  light.access(a.share()).release();
  return a;
});
const fullBufs: Owned[] = Array.from({ length: N }, () => full.alloc(SIZE));
const ptrs = new Int32Array(N);

// Warm the magazines so the baseline measures the fast path.
for (let i = 0; i < N; i++) ptrs[i] = plain.alloc(SIZE);
for (let i = 0; i < N; i++) plain.free(ptrs[i], SIZE);

Deno.bench("heap.alloc + heap.free (no hook)", {
  group: "borrow+release",
  baseline: true,
}, () => {
  const h = plain, u8 = h.u8;
  for (let i = 0; i < N; i++) {
    const p = h.alloc(SIZE);
    u8[p] = i;
    h.free(p, SIZE);
  }
});

// The floor of a borrow and its release: a compare-and-swap and a subtract on a word of the
// heap's buffer, nothing else (the words 64 bytes apart, as records are spread).
const floorWords = plain.alloc(N * 64);
Deno.bench("floor: Atomics.compareExchange + Atomics.sub", { group: "borrow+release" }, () => {
  const i32 = plain.i32, u8 = plain.u8;
  for (let i = 0; i < N; i++) {
    const w = (floorWords + i * 64) >> 2, s = i32[w];
    if (Atomics.compareExchange(i32, w, s, s + 1) === s) {
      u8[floorWords + i * 64 + 4] = i;
      Atomics.sub(i32, w, 1);
    }
  }
});

Deno.bench("light: borrow() + release()", { group: "borrow+release" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) {
    const g = lightBufs[i].borrow();
    u8[g.ptr] = i;
    g.release();
  }
});

Deno.bench("light: borrowMut() + release()", { group: "borrow+release" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) {
    const g = lightBufs[i].borrowMut();
    u8[g.ptr] = i;
    g.release();
  }
});

Deno.bench("light, after share(): borrow() + release()", { group: "borrow+release" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) {
    const g = lentBufs[i].borrow();
    u8[g.ptr] = i;
    g.release();
  }
});

Deno.bench("light, after share(): borrowMut() + release()", { group: "borrow+release" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) {
    const g = lentBufs[i].borrowMut();
    u8[g.ptr] = i;
    g.release();
  }
});

Deno.bench("light: using g = borrowMut()", { group: "borrow+release" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) {
    using g = lightBufs[i].borrowMut();
    u8[g.ptr] = i;
  }
});

Deno.bench("light: deref()", { group: "borrow+release" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) u8[lightBufs[i].deref()] = i;
});

Deno.bench("full: borrow() + release()", { group: "borrow+release" }, () => {
  const u8 = fullHeap.u8;
  for (let i = 0; i < N; i++) {
    const g = fullBufs[i].borrow();
    u8[g.ptr] = i;
    g.release();
  }
});

Deno.bench("heap.alloc + heap.free (no hook)", {
  group: "alloc+drop",
  baseline: true,
}, () => {
  const h = plain, u8 = h.u8;
  for (let i = 0; i < N; i++) {
    const p = h.alloc(SIZE);
    u8[p] = i;
    h.free(p, SIZE);
  }
});

Deno.bench("heap.alloc + heap.free (an empty free hook attached)", { group: "alloc+drop" }, () => {
  const h = hooked, u8 = h.u8;
  for (let i = 0; i < N; i++) {
    const p = h.alloc(SIZE);
    u8[p] = i;
    h.free(p, SIZE);
  }
});

Deno.bench("heap.alloc + heap.free (own's free hook attached)", { group: "alloc+drop" }, () => {
  const h = lightHeap, u8 = h.u8;
  for (let i = 0; i < N; i++) {
    const p = h.alloc(SIZE);
    u8[p] = i;
    h.free(p, SIZE);
  }
});

Deno.bench("light: own.alloc + drop", { group: "alloc+drop" }, () => {
  const u8 = lightHeap.u8;
  for (let i = 0; i < N; i++) {
    const a = light.alloc(SIZE);
    u8[a.deref()] = i;
    a.drop();
  }
});

Deno.bench("full: own.alloc + drop", { group: "alloc+drop" }, () => {
  const u8 = fullHeap.u8;
  for (let i = 0; i < N; i++) {
    const a = full.alloc(SIZE);
    u8[a.deref()] = i;
    a.drop();
  }
});
