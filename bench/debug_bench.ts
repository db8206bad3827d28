/**
 * The cost of each UMEM_DEBUG setting on alloc+free pairs of 64 bytes, against none, in one
 * run. Auditing is measured against the bare cost of capturing one stack per operation (what
 * any JavaScript audit must pay), made where the audited heap makes its own: first thing in a
 * function the loop calls for each alloc and free (pair_loops.ts's `pairsCapturing`), reached
 * through as many frames, since V8's capture costs for every frame it walks. Sampled auditing
 * (1 transaction in 100, and in 10,000) is measured against none.
 *
 * `guards` and `contents` are measured with the floor of their own work beside them: the same
 * pairs plus the tag words libumem's guards read and write, and plus the two passes libumem
 * makes over each buffer, with no check of anything else. Sampled auditing at 1 in 100 is also
 * measured against the pairs plus a bare capture for every hundredth operation.
 *
 * Run: `deno bench --allow-read --allow-env bench/debug_bench.ts`
 *
 * @module
 */
import { Heap } from "../mod.ts";
import {
  BT_ALLOC_MAGIC,
  BT_BXSTAT,
  BT_FREE_MAGIC,
  BT_REDZONE,
  BT_SIZE,
  encodeSize,
  FREE_PATTERN,
  REDZONE_PATTERN,
  UNINIT_PATTERN,
} from "../core/buftag.ts";
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
for (const name of [...Object.keys(heaps), "capture"]) {
  loops.set(name, await (import(`./pair_loops.ts?cell=debug-${name}`) as Promise<PairLoops>));
}
function pairs(name: keyof typeof heaps): void {
  loops.get(name)!.pairsHeap(heaps[name], 64, N);
}

/**
 * What auditing cannot avoid: one raw stack captured (its frames taken, its text not made: the
 * text is what a report or a tool asks for), at the audit depth (16), for every `every`th
 * operation, made one call below the loop as an audited heap's `alloc` and `free` make theirs.
 * Called as `pairs` calls the loops, so the two walk the same frames (0.1–0.3 µs each in Deno).
 */
function bareCapture(every: number): void {
  loops.get("capture")!.pairsCapturing(heaps.none, 64, N, 16, every);
}

/** A 32-bit pattern twice over, as the float64 with those bits (as debug_quick.ts stores it). */
const doubled = (pattern: number) => new Float64Array(new Int32Array([pattern, pattern]).buffer)[0];
/** The free and uninitialised patterns twice over. */
const FREE2 = doubled(FREE_PATTERN), UNINIT2 = doubled(UNINIT_PATTERN);

/**
 * What `contents` cannot avoid: the pairs without debugging plus the two passes libumem makes
 * over each buffer (its `verify_and_copy_pattern` on the way out, checking 0xdeadbeef and
 * writing 0xbaddcafe in one loop, and its `copy_pattern` of 0xdeadbeef on the way back), eight
 * bytes at a time, written out in the loop as debug_quick.ts writes them. Returns the buffers
 * found modified (none), so that nothing is optimised away.
 */
function contentsFloor(heap: Heap): number {
  const f64 = heap.f64;
  let modified = 0;
  for (let i = 0; i < N; i++) {
    const p = heap.alloc(64), b = p >> 3, t = b + 8;
    for (let j = b; j < t; j++) {
      if (f64[j] !== FREE2) {
        modified++;
        break;
      }
      f64[j] = UNINIT2;
    }
    for (let j = b; j < t; j++) f64[j] = FREE2;
    heap.free(p, 64);
  }
  return modified;
}

/** The tag's words (core/buftag.ts), as word offsets from the tag's first. */
const RZ_W = BT_REDZONE >> 2, SIZE_W = BT_SIZE >> 2, BX_W = BT_BXSTAT >> 2;
/** 64 encoded as libumem encodes a requested size. */
const SIZE64 = encodeSize(64);
/** A stand-in for the cache record's address in the floor's check words. */
const FLOOR_CP = 0x1000;

/**
 * What `guards` cannot avoid: the pairs without debugging plus the tag words libumem's guards
 * read and write, and nothing else: on the way out the check word read (free) and written
 * (allocated) and the encoded size written; on the way back the encoded size, the check word
 * and the redzone word read, and the check word written (free). The buffers are of 80 bytes,
 * the last 16 standing for the tag, so the tag lies beside the 64 bytes as a debugged cache's
 * does. Returns the tags found wrong (none), so that nothing is optimised away.
 */
function guardsFloor(heap: Heap): number {
  const i32 = heap.i32;
  let wrong = 0;
  for (let i = 0; i < N; i++) {
    const p = heap.alloc(80), t = (p + 64) >> 2;
    if (i32[t + BX_W] !== (p ^ FLOOR_CP ^ BT_FREE_MAGIC)) wrong++;
    i32[t + SIZE_W] = SIZE64;
    i32[t + BX_W] = p ^ FLOOR_CP ^ BT_ALLOC_MAGIC;
    if (
      i32[t + SIZE_W] !== SIZE64 || i32[t + BX_W] !== (p ^ FLOOR_CP ^ BT_ALLOC_MAGIC) ||
      i32[t + RZ_W] !== REDZONE_PATTERN
    ) {
      wrong++;
    }
    i32[t + BX_W] = p ^ FLOOR_CP ^ BT_FREE_MAGIC;
    heap.free(p, 80);
  }
  return wrong;
}

{
  // The buffer the pairs reuse starts out holding the freed pattern, as a debugged one does.
  const p = heaps.none.alloc(64);
  heaps.none.f64.fill(FREE2, p >> 3, (p >> 3) + 8);
  heaps.none.free(p, 64);
  // And the buffer of guards' floor, a free tag.
  const q = heaps.none.alloc(80), t = (q + 64) >> 2;
  heaps.none.i32[t + RZ_W] = REDZONE_PATTERN;
  heaps.none.i32[t + BX_W] = q ^ FLOOR_CP ^ BT_FREE_MAGIC;
  heaps.none.free(q, 80);
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
  name: `${N} pairs of 64 B + guards' tag words beside each buffer, no other check`,
  group: "debug settings against none",
  fn: () => {
    if (guardsFloor(heaps.none) !== 0) throw new Error("the tag was not kept");
  },
});

Deno.bench({
  name: `${N} pairs of 64 B + contents' two passes over each buffer, no checks`,
  group: "debug settings against none",
  fn: () => {
    if (contentsFloor(heaps.none) !== 0) throw new Error("the pattern was not kept");
  },
});

Deno.bench({
  name: `${N} pairs of 64 B + a bare stack capture per operation`,
  group: "audit against bare stack capture",
  baseline: true,
  fn: () => bareCapture(1),
});
Deno.bench({
  name: `${N} pairs of 64 B, UMEM_DEBUG=audit`,
  group: "audit against bare stack capture",
  fn: () => pairs("audit"),
});

Deno.bench({
  name: `${N} pairs of 64 B + a bare stack capture every 100th operation`,
  group: "sampled audit against bare stack capture at the same rate",
  baseline: true,
  fn: () => bareCapture(100),
});
Deno.bench({
  name: `${N} pairs of 64 B, UMEM_DEBUG=audit=16/100`,
  group: "sampled audit against bare stack capture at the same rate",
  fn: () => pairs("sampled"),
});
