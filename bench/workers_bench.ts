/**
 * Many workers on one heap (Core III): one worker against two doing alloc+free pairs of 64
 * bytes, and a producer/consumer pair (one allocates and passes addresses through a ring in the
 * heap, the other frees). Each iteration does PAIRS pairs per worker, so the aggregate
 * throughput of two workers relative to one is 2 × (time of one) / (time of two).
 *
 * Run: `deno bench --allow-read bench/workers_bench.ts`
 *
 * @module
 */
import { Heap } from "../mod.ts";

const PAIRS = 2_000_000;
const BLOCKS = 1_000_000;
const url = new URL("./workers_bench_worker.ts", import.meta.url).href;
const heap = Heap.create({
  size: 32 << 20,
  maxSize: 512 << 20,
  trust: Deno.env.get("TRUST") === "1",
});
const workers = [0, 1].map(() => new Worker(url, { type: "module" }));
const ring = heap.vmem.alloc(64 + 4096 * 4);
heap.i32.fill(0, ring >> 2, (ring + 64) >> 2);

function ask(w: Worker, msg: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    w.onmessage = () => resolve();
    w.onerror = (e) => reject(e);
    w.postMessage(msg);
  });
}
await Promise.all(workers.map((w) => ask(w, { type: "attach", buffer: heap.buffer })));

Deno.bench({
  name: `1 worker: ${PAIRS / 1e6} M alloc+free pairs of 64 B`,
  group: "workers",
  baseline: true,
  async fn() {
    await ask(workers[0], { type: "pairs", n: PAIRS });
  },
});

Deno.bench({
  name: `2 workers: ${PAIRS / 1e6} M pairs each, at once`,
  group: "workers",
  async fn() {
    await Promise.all(workers.map((w) => ask(w, { type: "pairs", n: PAIRS })));
  },
});

Deno.bench({
  name: `producer/consumer: ${BLOCKS / 1e6} M blocks of 64 B through a ring`,
  group: "producer-consumer",
  async fn() {
    await Promise.all([
      ask(workers[0], { type: "produce", ring, n: BLOCKS }),
      ask(workers[1], { type: "consume", ring, n: BLOCKS }),
    ]);
  },
});
