/**
 * A model-based fuzzer of the heap's sized allocation, object caches and `heap.libc`: random
 * command lists run against a fresh heap and a model of the live blocks. Each block is filled
 * with a pattern derived from its identity and checked before it is freed (and at the end);
 * blocks must never overlap; `verify()` must be empty at the end of each list.
 *
 * Run: `deno task fuzz -- --runs 1000 --seed 7`, or
 * `npx deno run --allow-read --allow-env tests/fuzz/heap_fuzz.ts --runs 1000 --seed 7`.
 *
 * @module
 */

import fc from "fast-check";
import { type Cache, Heap } from "../../mod.ts";
import { UMEM_SIZE_CLASSES } from "../../core/size_class.ts";

/** One fuzz command. */
export type FuzzCmd =
  | { op: "alloc"; size: number }
  | { op: "free"; pick: number }
  | { op: "malloc"; size: number }
  | { op: "realloc"; pick: number; size: number }
  | { op: "cfree"; pick: number }
  | { op: "mkcache"; size: number; align: number }
  | { op: "cachealloc"; pick: number }
  | { op: "cachefree"; pick: number }
  | { op: "reap" }
  | { op: "verify" };

/** What {@linkcode runFuzz} found. */
export interface FuzzResult {
  /** Runs made. */
  runs: number;
  /** Commands run, over all runs. */
  ops: number;
  /** The shrunk counterexample, when a run failed. */
  failure?: { seed: number; path: string; commands: FuzzCmd[]; error: string };
}

const sizeArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 1024 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 150000 }) },
  { weight: 2, arbitrary: fc.constantFrom(...UMEM_SIZE_CLASSES) },
);

const cmdArb: fc.Arbitrary<FuzzCmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("alloc" as const), size: sizeArb }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant("free" as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("malloc" as const),
      size: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 20000 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("realloc" as const),
      pick: fc.nat(),
      size: fc.integer({ min: 0, max: 5000 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("cfree" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("mkcache" as const),
      size: fc.integer({ min: 1, max: 5000 }),
      align: fc.constantFrom(8, 16, 64, 256),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("cachealloc" as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("cachefree" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: "reap" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "verify" as const }) },
);

type Kind = "sized" | "libc" | "cache";

interface Block {
  id: number;
  kind: Kind;
  addr: number;
  size: number;
  /** First byte the block owns (the malloc header of a libc block). */
  lo: number;
  cache?: number;
}

/** Block `id` holds byte `(id * 151 + i) & 255` at offset `i`. */
const PATTERN = Uint8Array.from({ length: 512 }, (_, i) => i & 255);

function fill(heap: Heap, b: Block): void {
  heap.sync();
  const off = (b.id * 151) & 255;
  for (let i = 0; i < b.size; i += 256) {
    const n = Math.min(256, b.size - i);
    heap.u8.set(PATTERN.subarray(off, off + n), b.addr + i);
  }
}

function check(heap: Heap, b: Block, what: string, size = b.size): void {
  heap.sync();
  const u8 = heap.u8, off = (b.id * 151) & 255;
  for (let i = 0; i < size; i++) {
    if (u8[b.addr + i] !== ((off + i) & 255)) {
      throw new Error(
        `${what}: ${b.kind} block ${b.id} at ${b.addr} (${b.size} B) changed at +${i}`,
      );
    }
  }
}

function fail(message: string): never {
  throw new Error(message);
}

/** Runs one command list on a fresh heap; throws on any disagreement with the model. */
export function runCommands(cmds: FuzzCmd[]): void {
  const heap = Heap.create({ size: 1 << 20, debug: "", logging: "", options: "" });
  const live: Block[] = [];
  const caches: Cache[] = [];
  let nextId = 1;
  const add = (b: Omit<Block, "id">): void => {
    if (b.addr <= 0) fail(`${b.kind} of ${b.size} returned ${b.addr}`);
    if (b.addr % 8 !== 0) fail(`${b.kind} of ${b.size} at ${b.addr} not 8-aligned`);
    const block = { ...b, id: nextId++ };
    for (const o of live) {
      if (block.lo < o.addr + o.size && o.lo < block.addr + block.size) {
        fail(
          `${block.kind} [${block.addr}, +${block.size}) overlaps ${o.kind} [${o.addr}, +${o.size})`,
        );
      }
    }
    fill(heap, block);
    live.push(block);
  };
  const take = (kind: Kind, pick: number): Block | undefined => {
    const of = live.filter((b) => b.kind === kind);
    if (of.length === 0) return undefined;
    const b = of[pick % of.length];
    live.splice(live.indexOf(b), 1);
    check(heap, b, "before freeing");
    return b;
  };
  cmds.forEach((c, step) => {
    switch (c.op) {
      case "alloc": {
        const p = heap.alloc(c.size);
        add({ kind: "sized", addr: p, size: c.size, lo: p });
        break;
      }
      case "free": {
        const b = take("sized", c.pick);
        if (b !== undefined) heap.free(b.addr, b.size);
        break;
      }
      case "malloc": {
        const p = heap.libc.malloc(c.size);
        if (heap.libc.usableSize(p) < c.size) fail(`usableSize(${p}) < ${c.size}`);
        add({ kind: "libc", addr: p, size: c.size, lo: p - 8 });
        break;
      }
      case "realloc": {
        const b = take("libc", c.pick);
        if (b === undefined) break;
        const p = heap.libc.realloc(b.addr, c.size);
        if (c.size === 0) {
          if (p !== 0) fail(`realloc(p, 0) returned ${p}`);
          break;
        }
        check(heap, { ...b, addr: p }, `realloc ${b.size}→${c.size}`, Math.min(b.size, c.size));
        add({ kind: "libc", addr: p, size: c.size, lo: p - 8 });
        break;
      }
      case "cfree": {
        const b = take("libc", c.pick);
        if (b !== undefined) heap.libc.free(b.addr);
        break;
      }
      case "mkcache":
        if (caches.length < 3) {
          caches.push(heap.createCache(`fuzz_${caches.length}`, c.size, { align: c.align }));
        }
        break;
      case "cachealloc": {
        if (caches.length === 0) break;
        const k = c.pick % caches.length, s = caches[k].stats();
        const p = caches[k].alloc();
        if (p % s.align !== 0) fail(`cache ${k} buffer ${p} not ${s.align}-aligned`);
        add({ kind: "cache", addr: p, size: s.bufsize, lo: p, cache: k });
        break;
      }
      case "cachefree": {
        const b = take("cache", c.pick);
        if (b !== undefined) caches[b.cache!].free(b.addr);
        break;
      }
      case "reap":
        heap.reap();
        break;
      case "verify": {
        const problems = heap.verify();
        if (problems.length > 0) fail(`verify() after command ${step}: ${problems.join("; ")}`);
        break;
      }
    }
  });
  const problems = heap.verify();
  if (problems.length > 0) fail(`verify() at the end: ${problems.join("; ")}`);
  for (const b of live) {
    check(heap, b, "at the end");
    if (b.kind === "sized") heap.free(b.addr, b.size);
    else if (b.kind === "libc") heap.libc.free(b.addr);
    else caches[b.cache!].free(b.addr);
  }
  heap.reap();
  const after = heap.verify();
  if (after.length > 0) fail(`verify() after freeing everything: ${after.join("; ")}`);
  for (const cache of heap.caches()) {
    const s = cache.stats();
    if (s.inUse !== 0) fail(`cache ${cache.name}: ${s.inUse} in use after freeing everything`);
  }
  if (heap.vmem.stats().inUse !== heap.metadataBytes) {
    fail(`vmem in use ${heap.vmem.stats().inUse}, metadata ${heap.metadataBytes}`);
  }
}

/**
 * Runs `runs` random command lists from `seed`.
 *
 * @returns runs and operations made, and the shrunk counterexample when one failed
 */
export function runFuzz({ runs, seed }: { runs: number; seed: number }): FuzzResult {
  let ops = 0;
  const out = fc.check(
    fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 200, size: "max" }), (cmds) => {
      ops += cmds.length;
      runCommands(cmds);
    }),
    { seed, numRuns: runs },
  );
  const result: FuzzResult = { runs: out.numRuns, ops };
  if (out.failed && out.counterexample !== null) {
    const err = out.errorInstance;
    result.failure = {
      seed: out.seed,
      path: out.counterexamplePath ?? "",
      commands: out.counterexample[0],
      error: err instanceof Error ? err.message : String(err),
    };
  }
  return result;
}

/** Reads `--name N` from the arguments. */
function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isInteger(v)) throw new Error(`--${name} wants a whole number`);
  return v;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const args: string[] = g.Deno?.args ?? g.process?.argv.slice(2) ?? [];
  const runs = flag(args, "runs", 200), seed = flag(args, "seed", Date.now() & 0x7fffffff);
  const r = runFuzz({ runs, seed });
  if (r.failure === undefined) {
    console.log(`fuzz: ${r.runs} runs, ${r.ops} operations, seed ${seed}: ok`);
  } else {
    console.log(`fuzz: FAILED after ${r.runs} runs, ${r.ops} operations`);
    console.log(`seed: ${r.failure.seed}`);
    console.log(`path: ${r.failure.path}`);
    console.log(`error: ${r.failure.error}`);
    console.log(`commands (shrunk): ${JSON.stringify(r.failure.commands)}`);
    if (g.Deno !== undefined) g.Deno.exit(1);
    else g.process.exit(1);
  }
}
