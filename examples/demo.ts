/**
 * The umem demo: one heap in a SharedArrayBuffer with auditing and the transaction log on, two
 * workers that attach to it and allocate from it at once (and forget a few buffers on purpose),
 * a list kept reachable from a root; then the heap's caches, status and leaks as the `umem`
 * tool prints them, and a snapshot, `demo.ums`, to look at with the `umem` command.
 *
 * Run it with `deno task demo` (or `npx deno task demo`, or `bun examples/demo.ts`).
 *
 * @module
 */
import { Heap, inspect, writeSnapshot } from "../mod.ts";

const WORKER_TIMEOUT = 8_000;
const SNAPSHOT = "demo.ums";

const heap = Heap.create({
  size: 8 << 20,
  maxSize: 256 << 20,
  debug: "audit",
  logging: "transaction",
});
console.log(`heap: ${heap.size} bytes, growable to ${heap.maxSize}`);
console.log("UMEM_DEBUG=audit UMEM_LOGGING=transaction: every buffer remembers its last stacks");

// A list the program keeps: a root table holds its head; one link is an interior pointer.
const nodes = heap.createCache("list_node", 24);
const table = heap.zalloc(16);
heap.addRoot(table, 16);
let head = 0;
for (let i = 0; i < 10; i++) {
  const n = nodes.alloc();
  heap.i32[n >> 2] = i === 5 ? head + 8 : head; // node 5 points into the middle of node 4
  heap.i32[(n >> 2) + 1] = i;
  head = n;
}
heap.i32[table >> 2] = head;

const run = (name: string) =>
  new Promise<{ name: string; slot: number; kept: [number, number][] }>((resolve, reject) => {
    const worker = new Worker(new URL("./demo_worker.ts", import.meta.url).href, {
      type: "module",
    });
    const done = (f: () => void) => {
      clearTimeout(timer);
      worker.terminate();
      f();
    };
    const timer = setTimeout(
      () => done(() => reject(new Error(`${name} did not finish in ${WORKER_TIMEOUT} ms`))),
      WORKER_TIMEOUT,
    );
    worker.onmessage = (e) => done(() => resolve(e.data));
    worker.onerror = (e) => {
      e.preventDefault?.();
      done(() => reject(new Error(`${name} failed: ${e.message}`)));
    };
    worker.postMessage({ buffer: heap.buffer, name, n: 10_000 });
  });

const started = performance.now();
const results = await Promise.all([run("worker A"), run("worker B")]);
for (const r of results) {
  console.log(`${r.name} (slot ${r.slot}) kept ${r.kept.length} spans; the main thread frees them`);
  for (const [addr, size] of r.kept) heap.vmem.free(addr, size);
}
console.log(`the workers took ${Math.round(performance.now() - started)} ms`);

const ins = inspect(heap);
console.log("\n$ umem caches   (the caches that hold or held buffers)");
console.log(ins.formatCaches());
console.log("\n$ umem status   (its cache table is the one above)");
console.log(ins.formatStatus().split("\n\n")[0]);
console.log("\n$ umem findleaks");
const report = ins.findleaks();
console.log(ins.formatFindleaks(report));

const problems = heap.verify();
console.log(`\nheap.verify(): ${problems.length === 0 ? "no problems" : problems.join("\n")}`);

const bytes = writeSnapshot(heap, SNAPSHOT);
const sample = report.classes[0]?.sample;
const at = sample !== undefined ? `0x${sample.toString(16)}` : "0x" + head.toString(16);
console.log(`\nwrote ${SNAPSHOT} (${bytes} bytes). Look at it with the umem command:`);
for (
  const cmd of [
    "findleaks",
    `whatis ${at}`,
    `bufctl ${at}`,
    "log --worker 1 --limit 5",
    "walk list_node",
    "status",
    "arenas",
    "map -o heap.svg",
  ]
) {
  console.log(`  deno task umem --dump ${SNAPSHOT} ${cmd}`);
}
console.log(`(or: bun cli/umem.ts --dump ${SNAPSHOT} findleaks; add -f json for JSON)`);
