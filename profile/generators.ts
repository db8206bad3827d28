/**
 * Synthetic traces, made deterministically, modelled on the Vmalloc paper's datasets.
 *
 * Theory. The paper's Table 1 describes the programs whose traces it replays; these generators
 * make traces of the same character from a seeded generator (mulberry32), so that a study can
 * be rerun and its figures compared:
 * - `gawk`: 700,000 short-lived small allocations (8 to 128 bytes, most small), a third of
 *   them grown by small steps (string building: many resizes), a live set of tens to hundreds.
 * - `db`: mostly allocations (nine in ten), sizes from 16 bytes to 2 KiB log-uniform, so the
 *   busy set grows large.
 * - `parser`: allocate and never free: syntax nodes of 16 to 64 bytes, with a token buffer of
 *   256 bytes to 1 KiB now and then.
 * - `fragment`: Figure 4, `size = 32; big = malloc(size); 10,000 times { small = malloc(24);
 *   big = realloc(big, size += 32) }`: each small block lands where the big one would grow.
 *
 * Addresses are made up (16 apart, never reused); replay maps blocks by record index anyway.
 * Every record is a libc operation (`API_LIBC`); times count records.
 *
 * Invariants. The same options give the same trace, record for record.
 *
 * Lock order: none.
 *
 * @module
 */
import { checkSize } from "../core/internal.ts";
import { API_LIBC } from "./layout.ts";
import { type Trace, TraceBuilder } from "./trace.ts";
import { checkOptions } from "./arguments.ts";

/** Options of the generators. */
export interface GeneratorOptions {
  /** The seed (default 1). */
  seed?: number;
  /** A factor on the number of operations (default 1; the study uses less by default). */
  scale?: number;
}

/** A seeded generator of numbers in [0, 1) (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Checks the options and returns the seed, the scaled count and the builder. */
function start(
  fn: string,
  o: GeneratorOptions,
  base: number,
): { rand: () => number; n: number; b: TraceBuilder; next: () => number } {
  checkOptions(fn, o);
  const seed = checkSize(fn, "seed", o.seed ?? 1, 0, 0xffffffff);
  const scale = o.scale ?? 1;
  if (typeof scale !== "number" || !(scale > 0) || scale > 100) {
    checkSize(fn, "scale", scale, 1, 100); // throws with the house message
  }
  const n = Math.max(1, Math.round(base * scale));
  const b = new TraceBuilder(0, n * 2 + 16);
  let addr = 0x10000;
  return {
    rand: prng(seed),
    n,
    b,
    next: () => (addr += 16) >>> 0,
  };
}

/** Records the free of a live block chosen at random, and forgets it (the last takes its place). */
function freeOneAtRandom(b: TraceBuilder, rand: () => number, live: number[], sizes: number[]) {
  const i = Math.floor(rand() * live.length);
  b.free(live[i], sizes[i], API_LIBC);
  live[i] = live[live.length - 1];
  sizes[i] = sizes[sizes.length - 1];
  live.pop();
  sizes.pop();
}

/**
 * A `gawk`-like trace: `700000 × scale` short-lived small allocations, a third of them grown
 * by resizes, freed in random order while a live set of a few to tens stays.
 *
 * @param options seed, scale
 * @returns the trace
 * @throws {UmemError} `invalid-argument` for a bad seed or scale, or options not an object
 *
 * @example
 * ```ts
 * import { gawkTrace, summary } from "@umem/umem/profile";
 * const s = summary(gawkTrace({ scale: 0.01 }));
 * console.log(s.allocs, s.resizes > 1000, s.temporary.fraction > 0.3); // 7000 true true
 * ```
 */
export function gawkTrace(options: GeneratorOptions = {}): Trace {
  const { rand, n, b, next } = start("gawkTrace", options, 700_000);
  const live: number[] = [], sizes: number[] = [];
  let target = 30;
  for (let k = 0; k < n; k++) {
    const r = rand();
    let size = 8 + Math.floor(r * r * r * 120);
    let p = next();
    b.alloc(p, size, API_LIBC);
    if (rand() < 0.34) {
      const steps = 1 + Math.floor(rand() * 3);
      for (let j = 0; j < steps; j++) {
        const q = next(), grown = size + 8 + Math.floor(rand() * 56);
        b.resize(p, size, q, grown, API_LIBC);
        p = q;
        size = grown;
      }
    }
    live.push(p);
    sizes.push(size);
    if (k % 5000 === 0) target = 4 + Math.floor(rand() * 60);
    while (live.length > target) {
      freeOneAtRandom(b, rand, live, sizes);
    }
  }
  for (let i = 0; i < live.length; i++) b.free(live[i], sizes[i], API_LIBC);
  return b.finish();
}

/**
 * A `db`-like trace: `60000 × scale` operations, nine in ten allocations of 16 bytes to 2 KiB
 * (log-uniform), one in ten a free of a random live block: a large busy set.
 *
 * @param options seed, scale
 * @returns the trace
 * @throws {UmemError} `invalid-argument` for a bad seed or scale, or options not an object
 *
 * @example
 * ```ts
 * import { dbTrace, summary } from "@umem/umem/profile";
 * const s = summary(dbTrace({ scale: 0.1 }));
 * console.log(s.allocs > 8 * s.frees, s.maxBusy > 1_000_000); // true true
 * ```
 */
export function dbTrace(options: GeneratorOptions = {}): Trace {
  const { rand, n, b, next } = start("dbTrace", options, 60_000);
  const live: number[] = [], sizes: number[] = [];
  for (let k = 0; k < n; k++) {
    if (live.length > 0 && rand() < 0.1) {
      freeOneAtRandom(b, rand, live, sizes);
    } else {
      const size = Math.round(16 * Math.pow(128, rand()));
      const p = next();
      b.alloc(p, size, API_LIBC);
      live.push(p);
      sizes.push(size);
    }
  }
  return b.finish();
}

/**
 * A `parser`-like trace: `200000 × scale` allocations never freed: nodes of 16 to 64 bytes and,
 * one in fifty, a token buffer of 256 bytes to 1 KiB.
 *
 * @param options seed, scale
 * @returns the trace
 * @throws {UmemError} `invalid-argument` for a bad seed or scale, or options not an object
 *
 * @example
 * ```ts
 * import { parserTrace, summary } from "@umem/umem/profile";
 * const s = summary(parserTrace({ scale: 0.01 }));
 * console.log(s.allocs, s.frees, s.busyAtEnd === s.maxBusy); // 2000 0 true
 * ```
 */
export function parserTrace(options: GeneratorOptions = {}): Trace {
  const { rand, n, b, next } = start("parserTrace", options, 200_000);
  for (let k = 0; k < n; k++) {
    const size = rand() < 0.02 ? 256 + Math.floor(rand() * 768) : 16 + 8 * Math.floor(rand() * 7);
    b.alloc(next(), size, API_LIBC);
  }
  return b.finish();
}

/** Options of {@linkcode fragmentTrace}. */
export interface FragmentOptions {
  /** Iterations of the loop (default 10,000, as in the paper). */
  iterations?: number;
}

/**
 * The Vmalloc paper's Figure 4: `size = 32; big = malloc(size);` then, `iterations` times,
 * `small = malloc(24); big = realloc(big, size += 32)`. Nothing is freed.
 *
 * @param options iterations
 * @returns the trace
 * @throws {UmemError} `invalid-argument` for a bad count, or options not an object
 *
 * @example
 * ```ts
 * import { fragmentTrace, summary } from "@umem/umem/profile";
 * const s = summary(fragmentTrace());
 * console.log(s.records, s.resizes, s.maxBusy); // 20001 10000 560032
 * ```
 */
export function fragmentTrace(options: FragmentOptions = {}): Trace {
  checkOptions("fragmentTrace", options);
  const iterations = checkSize(
    "fragmentTrace",
    "iterations",
    options.iterations ?? 10_000,
    0,
    1 << 24,
  );
  const b = new TraceBuilder(0, 2 * iterations + 16);
  let addr = 0x10000, size = 32, big = addr;
  b.alloc(big, size, API_LIBC);
  for (let k = 0; k < iterations; k++) {
    b.alloc((addr += 16) >>> 0, 24, API_LIBC);
    const q = (addr += 16) >>> 0;
    b.resize(big, size, q, size + 32, API_LIBC);
    big = q;
    size += 32;
  }
  return b.finish();
}
