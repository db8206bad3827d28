/**
 * The collector's figures beside Boehm's: builds a live list of 16 MiB, then 32 MiB, of
 * 32-byte nodes, and prints the allocation rate while building it, the marking rate and the
 * pause of a full collection (the best of five), and the allocation rate of garbage beside
 * the live list with collections triggered by allocation volume.
 *
 *     deno run --allow-read --allow-env examples/gc_pause.ts
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { Collector } from "../gc/mod.ts";

const MB = 1e6;

for (const mib of [16, 32]) {
  const heap = Heap.create({
    size: (mib * 3 + 16) << 20,
    maxSize: 1024 << 20,
    debug: "",
    logging: "",
    options: "",
  });
  const gc = Collector.create(heap, { auto: false });
  const n = (mib << 20) / 32;
  const t0 = performance.now();
  const head = gc.malloc(32);
  using _head = gc.pin(head);
  let prev = head;
  for (let i = 1; i < n; i++) {
    const p = gc.malloc(32);
    heap.i32[(prev >> 2) + 1] = p;
    prev = p;
  }
  const build = performance.now() - t0;
  let pause = Infinity, mark = Infinity;
  for (let k = 0; k < 5; k++) {
    const r = gc.collect();
    if (r.liveBytes !== mib << 20) throw new Error(`live ${r.liveBytes}, expected ${mib << 20}`);
    pause = Math.min(pause, r.pauseMs);
    mark = Math.min(mark, r.markMs);
  }
  // Garbage beside the live list, collections triggered by allocation volume.
  gc.setAutoCollect(true);
  const before = gc.stats().collections;
  const m = 4_000_000;
  const t1 = performance.now();
  for (let i = 0; i < m; i++) gc.malloc(32);
  const churn = performance.now() - t1;
  const live = (mib << 20) / MB;
  console.log(
    `${mib} MiB live (${n} nodes): build ${(n / build / 1000).toFixed(1)} M objects/s; ` +
      `full collection ${pause.toFixed(1)} ms (${(pause / live).toFixed(2)} ms/MB), ` +
      `marking ${mark.toFixed(1)} ms = ${(live / (mark / 1000)).toFixed(0)} MB/s; ` +
      `garbage ${(m / churn / 1000).toFixed(1)} M objects/s with ${
        gc.stats().collections - before
      } collections`,
  );
}
