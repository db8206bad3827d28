/**
 * The umem demo: one heap in a SharedArrayBuffer, two workers that attach to it and allocate
 * from it at once, then the heap's arenas and busiest caches.
 *
 * Run it with `deno task demo` (or `npx deno task demo`).
 *
 * @module
 */
import { Heap } from "../mod.ts";

const heap = Heap.create({ size: 8 << 20, maxSize: 256 << 20 });
console.log(`heap: ${heap.buffer.byteLength} bytes, growable to ${heap.buffer.maxByteLength}`);

const run = (name: string) =>
  new Promise<{ name: string; slot: number; kept: [number, number][] }>((resolve, reject) => {
    const worker = new Worker(new URL("./demo_worker.ts", import.meta.url).href, {
      type: "module",
    });
    const timer = setTimeout(() => {
      worker.terminate();
      reject(new Error(`${name} did not finish in 30 s`));
    }, 30_000);
    worker.onmessage = (e) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(e.data);
    };
    worker.onerror = (e) => {
      clearTimeout(timer);
      worker.terminate();
      reject(e);
    };
    worker.postMessage({ buffer: heap.buffer, name, n: 200_000 });
  });

const results = await Promise.all([run("worker A"), run("worker B")]);
for (const r of results) {
  console.log(`${r.name} (slot ${r.slot}) kept ${r.kept.length} spans; the main thread frees them`);
  for (const [addr, size] of r.kept) heap.vmem.free(addr, size);
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log("\nARENA            INUSE   IMPORTED      TOTAL   ALLOCS  FAILS");
for (const a of heap.arenas()) {
  const s = a.stats();
  console.log(
    `${s.name.padEnd(14)} ${pad(s.inUse, 8)} ${pad(s.imported, 10)} ${pad(s.total, 10)} ${
      pad(s.allocs, 8)
    } ${pad(s.failures, 6)}`,
  );
}
console.log("\nCACHE               BUFSIZE  INUSE  TOTAL   MEMORY    ALLOCS  MAG");
const busy = heap.caches().map((c) => c.stats()).filter((s) => s.allocs > 0)
  .sort((a, b) => b.allocs - a.allocs).slice(0, 8);
for (const s of busy) {
  console.log(
    `${s.name.padEnd(18)} ${pad(s.bufsize, 8)} ${pad(s.inUse, 6)} ${pad(s.total, 6)} ${
      pad(s.memoryInUse, 8)
    } ${pad(s.allocs, 9)} ${pad(s.magazineSize, 4)}`,
  );
}
const problems = heap.verify();
console.log(`\nheap.verify(): ${problems.length === 0 ? "no problems" : problems.join("\n")}`);
