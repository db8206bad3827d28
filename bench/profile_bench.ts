/**
 * profile benchmarks.
 *
 *     deno bench --allow-read --allow-env bench/profile_bench.ts
 *
 * Group "alloc+free, recorder off": what the recording hook costs a heap when no recorder is
 * attached. The baseline is a heap that never had a recorder; beside it a heap whose recorder
 * was attached and then stopped (the one flag test the fast path makes is false again), and a
 * heap with a recorder attached (every pair appends two records; the recorder is restarted
 * every 100,000 pairs so that its arrays stay small). Each iteration is 100 pairs of 64 bytes.
 *
 * Group "first 10,000 allocations": the latency of the first 10,000 allocations of a recorded
 * workload (connections from a cache with a constructor, and their buffers of 200 and 1,000
 * bytes), on a fresh heap with and without `prewarm` from the recorded trace. The heap's
 * creation and the prewarm are outside the timed part (`b.start()` and `b.end()`).
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { prewarm, record, type Recorder, type Trace } from "../profile/mod.ts";

const quiet = { debug: "", logging: "", options: "" };
const sink = new Int32Array(100);

/** 100 alloc/free pairs of 64 bytes. */
function pairs(h: Heap): void {
  for (let i = 0; i < 100; i++) sink[i] = h.alloc(64);
  for (let i = 0; i < 100; i++) h.free(sink[i], 64);
}

const never = Heap.create({ size: 8 << 20, ...quiet });
const stopped = Heap.create({ size: 8 << 20, ...quiet });
record(stopped).stop();
const recording = Heap.create({ size: 8 << 20, ...quiet });
let rec: Recorder = record(recording, { capacity: 1 << 18 });
let n = 0;

Deno.bench({
  name: "never recorded",
  group: "alloc+free, recorder off",
  baseline: true,
  fn: () => pairs(never),
});
Deno.bench({
  name: "after record().stop()",
  group: "alloc+free, recorder off",
  fn: () => pairs(stopped),
});
Deno.bench({
  name: "recording",
  group: "alloc+free, recorder off",
  fn: () => {
    pairs(recording);
    if (++n % 1000 === 0) {
      rec.stop();
      rec = record(recording, { capacity: 1 << 18 });
    }
  },
});

// ---- pre-warming ----
const FIRST = 10_000;

/** The workload: a connection and two buffers per request, 2,000 requests held at the peak. */
function workload(h: Heap, allocations: number, keep: number[]): void {
  const conn = h.cache("conn");
  for (let i = 0; keep.length < allocations; i++) {
    keep.push(conn.alloc());
    if (keep.length < allocations) keep.push(h.alloc(200));
    if (keep.length < allocations) keep.push(h.alloc(1000));
  }
}

/** A fresh heap with the workload's cache (its constructor clears a connection). */
function freshHeap(): Heap {
  const h = Heap.create({ size: 16 << 20, maxSize: 256 << 20, ...quiet });
  h.createCache("conn", 160, {
    ctor: (hh, p) => {
      hh.u8.fill(0, p, p + 160);
    },
  });
  return h;
}

const recorded: Trace = (() => {
  const h = freshHeap();
  const r = record(h);
  workload(h, FIRST, []);
  return r.stop();
})();

Deno.bench({
  name: "cold heap",
  group: "first 10,000 allocations",
  baseline: true,
  fn: (b) => {
    const h = freshHeap();
    b.start();
    workload(h, FIRST, []);
    b.end();
  },
});
Deno.bench({
  name: "after prewarm(heap, trace)",
  group: "first 10,000 allocations",
  fn: (b) => {
    const h = freshHeap();
    prewarm(h, recorded);
    b.start();
    workload(h, FIRST, []);
    b.end();
  },
});
