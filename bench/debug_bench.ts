/**
 * The cost of each UMEM_DEBUG setting on alloc+free pairs of 64 bytes, against none, in one
 * run. Auditing is measured against the bare cost of capturing one stack per operation (what
 * any JavaScript audit must pay), and sampled auditing against none.
 *
 * Run: `deno bench --allow-read --allow-env bench/debug_bench.ts`
 *
 * @module
 */
import { Heap } from "../mod.ts";

const N = 1000;
const heaps = {
  none: Heap.create({ size: 4 << 20, debug: "" }),
  guards: Heap.create({ size: 4 << 20, debug: "guards" }),
  contents: Heap.create({ size: 4 << 20, debug: "contents" }),
  audit: Heap.create({ size: 4 << 20, debug: "audit" }),
  sampled: Heap.create({ size: 4 << 20, debug: "audit=16/100" }),
  default: Heap.create({ size: 4 << 20, debug: "default" }),
};

function pairs(heap: Heap): void {
  for (let i = 0; i < N; i++) heap.free(heap.alloc(64), 64);
}

/** What auditing cannot avoid: one stack captured per operation, at the audit depth (16). */
function bareCapture(heap: Heap): void {
  const E = Error as unknown as { stackTraceLimit: number };
  const limit = E.stackTraceLimit;
  let n = 0;
  for (let i = 0; i < N; i++) {
    E.stackTraceLimit = 16;
    n += (new Error().stack ?? "").length;
    const p = heap.alloc(64);
    n += (new Error().stack ?? "").length;
    heap.free(p, 64);
    E.stackTraceLimit = limit;
  }
  if (n === 0) throw new Error("no stacks");
}

for (const name of ["none", "guards", "contents", "sampled", "default"] as const) {
  Deno.bench({
    name: `${N} pairs of 64 B, UMEM_DEBUG=${
      name === "sampled" ? "audit=16/100" : name === "none" ? "" : name
    }`,
    group: "debug settings against none",
    baseline: name === "none",
    fn: () => pairs(heaps[name]),
  });
}

Deno.bench({
  name: `${N} pairs of 64 B + a bare stack capture per operation`,
  group: "audit against bare stack capture",
  baseline: true,
  fn: () => bareCapture(heaps.none),
});
Deno.bench({
  name: `${N} pairs of 64 B, UMEM_DEBUG=audit`,
  group: "audit against bare stack capture",
  fn: () => pairs(heaps.audit),
});
