/**
 * gc benchmarks: allocation rate and collection pause over a live heap of 32-byte nodes, the
 * figures Boehm's collector is measured by (about 0.46 ms of collection per MB of live list
 * nodes, 17 to 87 M objects/s of allocation, in C on our machines).
 *
 *     deno bench --allow-read --allow-env bench/gc_bench.ts
 *
 * Group "allocate 1000 32-byte objects": `gc.malloc(32)` of garbage beside a live list of
 * 32 MiB, collections triggered by allocation volume as they come (the steady state, GC cost
 * included); the heap's `alloc`/`free` of the same size (the baseline: the allocator below the
 * collector, with the frees done by hand); `gc.mallocAtomic(32)`, which clears nothing; V8's
 * own objects of four fields.
 *
 * Group "full collection": `gc.collect()` over a live list of 16 MiB of 32-byte nodes (the
 * baseline) and of 32 MiB. Divide the live megabytes by the time for the marking rate of the
 * whole collection (stop, mark, sweep); examples/gc_pause.ts prints the marking time alone.
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { Collector } from "../gc/mod.ts";

/** A heap with a collector and a live list of `mib` MiB of 32-byte nodes (pinned). */
function liveList(mib: number, auto: boolean): { heap: Heap; gc: Collector } {
  const heap = Heap.create({
    size: (mib * 3 + 16) << 20,
    maxSize: 1024 << 20,
    debug: "",
    logging: "",
    options: "",
  });
  const gc = Collector.create(heap, { auto });
  const n = (mib << 20) / 32;
  const head = gc.malloc(32);
  gc.pin(head);
  let prev = head;
  for (let i = 1; i < n; i++) {
    const p = gc.malloc(32);
    heap.i32[(prev >> 2) + 1] = p;
    prev = p;
  }
  return { heap, gc };
}

const sink = new Int32Array(1000);
const objs: { a: number; b: number; c: number; d: number }[] = new Array(1000);

const steady = liveList(32, true);
const plain = Heap.create({ size: 16 << 20, debug: "", logging: "", options: "" });

Deno.bench(
  "gc.malloc(32), garbage, 32 MiB live",
  { group: "allocate 1000 32-byte objects" },
  () => {
    const gc = steady.gc;
    for (let i = 0; i < 1000; i++) sink[i] = gc.malloc(32);
  },
);

Deno.bench("gc.mallocAtomic(32), garbage, 32 MiB live", {
  group: "allocate 1000 32-byte objects",
}, () => {
  const gc = steady.gc;
  for (let i = 0; i < 1000; i++) sink[i] = gc.mallocAtomic(32);
});

Deno.bench("heap.alloc(32) then heap.free", {
  group: "allocate 1000 32-byte objects",
  baseline: true,
}, () => {
  for (let i = 0; i < 1000; i++) sink[i] = plain.alloc(32);
  for (let i = 0; i < 1000; i++) plain.free(sink[i], 32);
});

Deno.bench("V8 objects of four fields", { group: "allocate 1000 32-byte objects" }, () => {
  for (let i = 0; i < 1000; i++) objs[i] = { a: i, b: 0, c: 0, d: 0 };
});

const live16 = liveList(16, false);
const live32 = liveList(32, false);

Deno.bench("collect(), 16 MiB live", { group: "full collection", baseline: true }, () => {
  live16.gc.collect();
});

Deno.bench("collect(), 32 MiB live", { group: "full collection" }, () => {
  live32.gc.collect();
});
