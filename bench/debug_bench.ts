/**
 * The cost of each UMEM_DEBUG setting on alloc+free pairs of 64 bytes, against none, in one
 * run. Auditing is measured against the bare cost of capturing one stack per operation (what
 * any JavaScript audit must pay), and sampled auditing (1 transaction in 100, and in 10,000)
 * against none.
 *
 * Run: `deno bench --allow-read --allow-env bench/debug_bench.ts`
 *
 * @module
 */
import { Heap } from "../mod.ts";
import type * as PairLoopsModule from "./pair_loops.ts";

const N = 1000;
const heaps = {
  none: Heap.create({ size: 4 << 20, debug: "" }),
  guards: Heap.create({ size: 4 << 20, debug: "guards" }),
  contents: Heap.create({ size: 4 << 20, debug: "contents" }),
  audit: Heap.create({ size: 4 << 20, debug: "audit" }),
  sampled: Heap.create({ size: 4 << 20, debug: "audit=16/100" }),
  sampledRarely: Heap.create({ size: 4 << 20, debug: "audit=16/10000" }),
  default: Heap.create({ size: 4 << 20, debug: "default" }),
};

type PairLoops = typeof PairLoopsModule;
/** Each setting's own copy of the pair loop (see pair_loops.ts): no feedback is shared. */
const loops = new Map<string, PairLoops>();
for (const name of Object.keys(heaps)) {
  loops.set(name, await (import(`./pair_loops.ts?cell=debug-${name}`) as Promise<PairLoops>));
}
function pairs(name: keyof typeof heaps): void {
  loops.get(name)!.pairsHeap(heaps[name], 64, N);
}

/**
 * What auditing cannot avoid: one stack captured per operation, at the audit depth (16), raw
 * (its frames taken, its text not made: the text is what a report or a tool asks for).
 */
function bareCapture(heap: Heap): void {
  const E = Error as unknown as { stackTraceLimit: number };
  const limit = E.stackTraceLimit;
  let last: Error | undefined;
  for (let i = 0; i < N; i++) {
    E.stackTraceLimit = 16;
    last = new Error();
    const p = heap.alloc(64);
    last = new Error();
    heap.free(p, 64);
    E.stackTraceLimit = limit;
  }
  if (last === undefined) throw new Error("no stacks");
}

/** The UMEM_DEBUG string of each bench's heap. */
const settings = {
  none: "",
  guards: "guards",
  contents: "contents",
  sampled: "audit=16/100",
  sampledRarely: "audit=16/10000",
  default: "default",
} as const;
for (const name of ["none", "guards", "contents", "sampled", "sampledRarely", "default"] as const) {
  Deno.bench({
    name: `${N} pairs of 64 B, UMEM_DEBUG=${settings[name]}`,
    group: "debug settings against none",
    baseline: name === "none",
    fn: () => pairs(name),
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
  fn: () => pairs("audit"),
});
