/**
 * region benchmarks: alloc+free pairs in a region of each method, against the heap's
 * `alloc`/`free` of the same sizes (the baseline).
 *
 *     deno bench --allow-read --allow-env bench/region_bench.ts
 *
 * Group "32 allocs then 32 frees": every variant allocates 32 blocks of the sizes 16 to 64
 * bytes (the pool variant 48 bytes, its one size), writes a word into each, and frees them,
 * in reverse order (`last`, which frees only the last block, drops them with one `clear`
 * instead). Regions live in growable
 * buffers of their own (growableDiscipline); `best (trust)` takes no lock and checks nothing.
 * `debug` and `profile` read the call site from the stack at each allocation, which is what
 * they cost.
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { growableDiscipline, Region } from "../region/mod.ts";

const SIZES = [16, 24, 32, 48, 64, 16, 40, 24];
const N = 32;
const sizes = Int32Array.from({ length: N }, (_, i) => SIZES[i % SIZES.length]);
const held = new Int32Array(N);

const heap = Heap.create({ size: 16 << 20, debug: "", logging: "", options: "" });
const hi32 = heap.i32;

/** A region of a method over a buffer of its own. */
function open(method: "best" | "pool" | "last" | "debug" | "profile", trust = false): Region {
  return Region.open(growableDiscipline({ maxSize: 64 << 20 }), method, { trust });
}

/** 32 allocations then 32 frees in reverse order (or one clear), one word written per block. */
function pairs(r: Region, fixed: number, clear = false): void {
  const i32 = new Int32Array(r.buffer);
  for (let i = 0; i < N; i++) {
    const p = r.alloc(fixed || sizes[i]);
    i32[p >> 2] = i;
    held[i] = p;
  }
  if (clear) r.clear();
  else for (let i = N - 1; i >= 0; i--) r.free(held[i]);
}

const group = "32 allocs then 32 frees";

Deno.bench({
  name: "heap.alloc/free",
  group,
  baseline: true,
  fn() {
    for (let i = 0; i < N; i++) {
      const p = heap.alloc(sizes[i]);
      hi32[p >> 2] = i;
      held[i] = p;
    }
    for (let i = N - 1; i >= 0; i--) heap.free(held[i], sizes[i]);
  },
});

const best = open("best");
Deno.bench({ name: "region best", group, fn: () => pairs(best, 0) });
const trusted = open("best", true);
Deno.bench({ name: "region best (trust)", group, fn: () => pairs(trusted, 0) });
const pool = open("pool");
Deno.bench({ name: "region pool (48 bytes)", group, fn: () => pairs(pool, 48) });
const last = open("last");
Deno.bench({ name: "region last (then clear)", group, fn: () => pairs(last, 0, true) });
const debug = open("debug");
Deno.bench({ name: "region debug", group, fn: () => pairs(debug, 0) });
const profile = open("profile");
Deno.bench({ name: "region profile", group, fn: () => pairs(profile, 0) });
