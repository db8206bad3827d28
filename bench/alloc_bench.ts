/**
 * Sized allocation, the malloc interface and object caches (issue "Core II").
 *
 *     npx deno bench bench/alloc_bench.ts
 *
 * - `pair N B`: alloc+free pairs of N bytes through `heap.alloc`/`heap.free` (the baseline),
 *   `heap.libc.malloc`/`free`, and a heap created with `trust`. Each iteration does PAIRS
 *   pairs, so pairs/s = PAIRS / (time per iteration).
 * - `construct 256 B`: a cache whose constructor fills its 256-byte buffers once, against
 *   allocating 256 bytes and filling them on every allocation (the baseline).
 * - `batch 100k`: BATCH random sizes in 8..512 (seeded) allocated, then freed in a random
 *   order; one iteration is one whole batch, so ops/s = 2 × BATCH / (time per iteration).
 *
 * The heaps are created with explicit (empty) `debug`, `logging` and `options`, so that
 * UMEM_DEBUG and friends in the environment do not change what is measured, and no
 * permission is needed.
 *
 * @module
 */
import { Heap, type HeapOptions } from "../mod.ts";
import { prng } from "../profile/generators.ts"; // mulberry32: every run, the same batch

/** alloc+free pairs per iteration of a pair bench. */
const PAIRS = 10_000;
/** Allocations per batch. */
const BATCH = 100_000;

function mk(options: HeapOptions = {}): Heap {
  return Heap.create({ size: 64 << 20, debug: "", logging: "", options: "", ...options });
}

const heap = mk();
const trusting = mk({ trust: true });

/** Keeps the results alive so that no loop is optimized away. */
let sink = 0;

// ---- alloc+free pairs ----

for (const size of [16, 64, 256, 4096]) {
  const group = `pair ${size} B`;
  Deno.bench({
    name: `heap.alloc/free ${size} B ×${PAIRS}`,
    group,
    baseline: true,
    fn() {
      for (let i = 0; i < PAIRS; i++) {
        const p = heap.alloc(size);
        heap.free(p, size);
        sink ^= p;
      }
    },
  });
  Deno.bench({
    name: `libc.malloc/free ${size} B ×${PAIRS}`,
    group,
    fn() {
      const libc = heap.libc;
      for (let i = 0; i < PAIRS; i++) {
        const p = libc.malloc(size);
        libc.free(p);
        sink ^= p;
      }
    },
  });
  Deno.bench({
    name: `trust heap.alloc/free ${size} B ×${PAIRS}`,
    group,
    fn() {
      for (let i = 0; i < PAIRS; i++) {
        const p = trusting.alloc(size);
        trusting.free(p, size);
        sink ^= p;
      }
    },
  });
}

// ---- object caching: construct once, against initialising on every allocation ----

const OBJ = 256;
const built = heap.createCache("bench_obj_256", OBJ, {
  ctor: (h, p) => {
    h.u8.fill(0, p, p + OBJ);
  },
});

Deno.bench({
  name: `heap.alloc ${OBJ} B + fill + free ×${PAIRS}`,
  group: `construct ${OBJ} B`,
  baseline: true,
  fn() {
    for (let i = 0; i < PAIRS; i++) {
      const p = heap.alloc(OBJ);
      heap.u8.fill(0, p, p + OBJ);
      heap.free(p, OBJ);
      sink ^= p;
    }
  },
});

Deno.bench({
  name: `cache with ctor: alloc + free ×${PAIRS}`,
  group: `construct ${OBJ} B`,
  fn() {
    for (let i = 0; i < PAIRS; i++) {
      const p = built.alloc();
      built.free(p);
      sink ^= p;
    }
  },
});

// ---- batches of random sizes, freed in random order ----

const rand = prng(0xa110c);
const sizes = Int32Array.from({ length: BATCH }, () => 8 + Math.floor(rand() * 505));
const order = Int32Array.from({ length: BATCH }, (_, i) => i);
for (let i = BATCH - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1));
  const t = order[i];
  order[i] = order[j];
  order[j] = t;
}
const ptrs = new Int32Array(BATCH);

function sizedBatch(h: Heap): void {
  for (let i = 0; i < BATCH; i++) ptrs[i] = h.alloc(sizes[i]);
  for (let j = 0; j < BATCH; j++) {
    const k = order[j];
    h.free(ptrs[k], sizes[k]);
  }
  sink ^= ptrs[BATCH - 1];
}

function libcBatch(h: Heap): void {
  const libc = h.libc;
  for (let i = 0; i < BATCH; i++) ptrs[i] = libc.malloc(sizes[i]);
  for (let j = 0; j < BATCH; j++) libc.free(ptrs[order[j]]);
  sink ^= ptrs[BATCH - 1];
}

Deno.bench({
  name: `heap.alloc/free, ${BATCH / 1000}k sizes 8..512`,
  group: "batch 100k",
  baseline: true,
  fn: () => sizedBatch(heap),
});
Deno.bench({
  name: `libc.malloc/free, ${BATCH / 1000}k sizes 8..512`,
  group: "batch 100k",
  fn: () => libcBatch(heap),
});
Deno.bench({
  name: `trust heap.alloc/free, ${BATCH / 1000}k sizes 8..512`,
  group: "batch 100k",
  fn: () => sizedBatch(trusting),
});

// One pass of everything that checks the heaps, so that a broken allocator cannot post a
// good time.
{
  sizedBatch(heap);
  libcBatch(heap);
  sizedBatch(trusting);
  built.free(built.alloc());
  for (const h of [heap, trusting]) {
    const bad = h.verify();
    if (bad.length > 0) throw new Error(`bench/alloc_bench.ts: heap is corrupt: ${bad[0]}`);
  }
  if (sink === 0.5) console.log(sink); // never: keeps `sink` observable
}
