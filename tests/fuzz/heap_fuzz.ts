/**
 * A model-based fuzzer of the heap's sized allocation, object caches and `heap.libc`: random
 * command lists run against a fresh heap and a model of the live blocks. Each block is filled
 * with a pattern derived from its identity and checked before it is freed (and at the end);
 * blocks must never overlap; `verify()` must be empty at the end of each list. The `debugheap`
 * target runs the same lists on a heap with a `UMEM_DEBUG` setting drawn per list (guards,
 * contents, sampled or full audit, firewall), so the debug fast path, its fallbacks and the
 * checked paths are all driven by sound programs, which must raise no report. Sized blocks are
 * allocated and freed through either of two worker slots (a second handle attached in this
 * thread), alone or as alloc+free pairs (the deferred free and the popped round of
 * core/magazine.ts), and a block freed before may be freed again: that must throw a
 * `UmemError` and change nothing.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --target heap --runs 1000
 * --seed 7` (this file alone also runs as a program with the same flags). The runner, the
 * flags and the pattern are tests/fuzz/runner.ts's.
 *
 * @module
 */

import fc from "fast-check";
import { type Cache, Heap, inspect, UmemError } from "../../mod.ts";
import { UMEM_MAXBUF, UMEM_SIZE_CLASSES } from "../../core/size_class.ts";
import {
  checkPattern,
  exit,
  fail,
  fillPattern,
  type FuzzResult as Result,
  parseFlags,
  printResult,
  programArgs,
  runTarget,
  type Target,
} from "./runner.ts";

/** One fuzz command. */
export type FuzzCmd =
  | { op: "debug"; setting: string; options?: string }
  | { op: "alloc"; size: number; via: number }
  | { op: "free"; pick: number; via: number }
  | { op: "pair"; size: number; via: number }
  | { op: "again"; pick: number; via: number }
  | { op: "stray"; pick: number; via: number }
  | { op: "malloc"; size: number }
  | { op: "realloc"; pick: number; size: number }
  | { op: "cfree"; pick: number }
  | { op: "mkcache"; size: number; align: number }
  | { op: "cachealloc"; pick: number }
  | { op: "cachefree"; pick: number }
  | { op: "reap" }
  | { op: "verify" };

/** What {@linkcode runFuzz} found. */
export type FuzzResult = Result<FuzzCmd>;

const sizeArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 1024 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 150000 }) },
  { weight: 2, arbitrary: fc.constantFrom(...UMEM_SIZE_CLASSES) },
);

/** Which worker slot a sized command goes through: the heap's creator (0) or another (1). */
const viaArb = fc.constantFrom(0, 0, 1);

const cmdArb: fc.Arbitrary<FuzzCmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constant("alloc" as const), size: sizeArb, via: viaArb }),
  },
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constant("free" as const), pick: fc.nat(), via: viaArb }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("pair" as const), size: sizeArb, via: viaArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("again" as const), pick: fc.nat(), via: viaArb }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("stray" as const), pick: fc.nat(), via: viaArb }),
  },
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
      // A size class's size too: a cache laid out as the class, whose buffers only their check
      // word (core/buftag.ts) tells from the class's when freed as sized blocks ("stray").
      size: fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.constantFrom(...UMEM_SIZE_CLASSES)),
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

function fill(heap: Heap, b: Block): void {
  fillPattern(heap, b.id, b.addr, b.size);
}

function check(heap: Heap, b: Block, what: string, size = b.size): void {
  checkPattern(heap, b.id, b.addr, size, `${what}: ${b.kind} block`);
}

/**
 * The `UMEM_DEBUG` settings of the `debugheap` target: each fast path's flags, a sampled audit
 * (one transaction in 3: both the fast path and its fallback), everything, the firewall, and
 * words that lay no tag (a plain heap, which once got a debugging handle) or only say how a
 * failure is told.
 */
export const DEBUG_SETTINGS: readonly string[] = [
  "guards",
  "contents",
  "audit=4/3",
  "audit=4/3,contents",
  "default",
  "guards,firewall=2048",
  "verbose",
  "contents,checknull,maxverify=16",
];

/**
 * Runs one command list on a fresh heap; throws on any disagreement with the model. A first
 * `debug` command sets the heap's `UMEM_DEBUG` (none otherwise).
 */
export function runCommands(cmds: FuzzCmd[]): void {
  const first = cmds[0];
  const debug = first?.op === "debug" ? first.setting : "";
  const options = first?.op === "debug" ? first.options ?? "" : "";
  // sbrk, as mk() (helpers.ts): under Bun an mmap heap costs ms to create, and a run makes 150.
  const heap = Heap.create({
    size: 1 << 20,
    debug: debug === "" ? "" : `${debug},noabort`, // (a report is thrown, for the model to see)
    logging: "",
    options,
    backend: "sbrk",
  });
  const other = Heap.attach(heap.buffer); // a second worker slot, in this thread
  const via = (v: number): Heap => v === 0 ? heap : other;
  const live: Block[] = [];
  // Sized blocks of the caches freed and not handed out since (so no live block overlaps
  // them): a second free of one must be refused. (Not of the oversize arena: its spans may
  // become another's, as libumem's may.)
  const dead: { addr: number; size: number }[] = [];
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
    for (let i = dead.length - 1; i >= 0; i--) {
      const d = dead[i];
      if (block.lo < d.addr + d.size && d.addr < block.addr + block.size) dead.splice(i, 1);
    }
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
        const p = via(c.via).alloc(c.size);
        add({ kind: "sized", addr: p, size: c.size, lo: p });
        break;
      }
      case "free": {
        const b = take("sized", c.pick);
        if (b === undefined) break;
        via(c.via).free(b.addr, b.size);
        if (b.size <= UMEM_MAXBUF) dead.push({ addr: b.addr, size: b.size });
        break;
      }
      case "pair": {
        const h = via(c.via), p = h.alloc(c.size);
        add({ kind: "sized", addr: p, size: c.size, lo: p });
        const b = live.pop()!; // the block just added
        check(heap, b, "before freeing");
        h.free(b.addr, b.size);
        if (b.size <= UMEM_MAXBUF) dead.push({ addr: b.addr, size: b.size });
        break;
      }
      case "again": {
        if (dead.length === 0) break;
        const d = dead[c.pick % dead.length];
        let threw: unknown;
        try {
          via(c.via).free(d.addr, d.size);
        } catch (e) {
          threw = e;
        }
        if (!(threw instanceof UmemError)) {
          fail(`a second free of ${d.addr} (${d.size} B) was not refused (${threw})`);
        }
        const problems = heap.verify();
        if (problems.length > 0) fail(`verify() after a refused free: ${problems.join("; ")}`);
        break;
      }
      case "stray": {
        // A cache's live buffer freed as a sized block of its size: refused, nothing changed.
        const of = live.filter((b) => b.kind === "cache");
        if (of.length === 0) break;
        const b = of[c.pick % of.length];
        let threw: unknown;
        try {
          via(c.via).free(b.addr, b.size);
        } catch (e) {
          threw = e;
        }
        if (!(threw instanceof UmemError)) {
          fail(`a free of cache buffer ${b.addr} as a ${b.size}-byte block was not refused`);
        }
        const problems = heap.verify();
        if (problems.length > 0) fail(`verify() after a refused free: ${problems.join("; ")}`);
        check(heap, b, "after a refused free");
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
      case "debug":
        break;
    }
  });
  const problems = heap.verify();
  if (problems.length > 0) fail(`verify() at the end: ${problems.join("; ")}`);
  other.detach(); // its magazines go back to the depot and slabs
  // Each audited allocation still live names this file in its stack, read back through its
  // pending id (core/stack.ts): not another capture's, not a placeholder.
  const ins = inspect(heap);
  for (const b of live) {
    if (b.kind === "libc") continue;
    for (const t of ins.bufctl(b.addr)) {
      if (t.op === "alloc" && !t.stack.includes("heap_fuzz")) {
        fail(`the audited alloc of ${b.kind} ${b.addr} has the stack '${t.stack}'`);
      }
    }
  }
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

/** The heap fuzzer as a target of tests/fuzz/main.ts. */
export const heapTarget: Target<FuzzCmd> = {
  name: "heap",
  commands: fc.array(cmdArb, { minLength: 1, maxLength: 200, size: "max" }),
  run: runCommands,
};

/**
 * The `UMEM_OPTIONS` of the `debugheap` target's heaps: libumem's size classes, and classes
 * edited (8-aligned ones among them, and a table of two).
 */
export const SIZE_OPTIONS: readonly string[] = [
  "",
  "size_add=24,size_add=40,size_remove=48,size_add=1000",
  "size_clear,size_add=64",
];

/**
 * The heap fuzzer's lists on a debugged heap: a `debug` command (with the heap's size-class
 * options), then the list.
 */
export const debugHeapTarget: Target<FuzzCmd> = {
  name: "debugheap",
  commands: fc.tuple(
    fc.constantFrom(...DEBUG_SETTINGS),
    fc.constantFrom(...SIZE_OPTIONS),
    heapTarget.commands,
  ).map(([setting, options, cmds]): FuzzCmd[] => [{ op: "debug", setting, options }, ...cmds]),
  run: runCommands,
};

/**
 * Runs `runs` random command lists from `seed`.
 *
 * @returns runs and operations made, and the shrunk counterexample when one failed
 */
export function runFuzz({ runs, seed }: { runs: number; seed: number }): FuzzResult {
  return runTarget(heapTarget, { runs, seed });
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const flags = parseFlags(programArgs());
  if (!printResult("heap", runFuzz(flags), flags.seed)) exit(1);
}
