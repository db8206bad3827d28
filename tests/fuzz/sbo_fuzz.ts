/**
 * A model-based fuzzer of `sbo`: bump arenas over the heap (pooled or not), a vmem arena and an
 * object cache; alloc and zalloc with any alignment, the last-block rule of free and resize,
 * marks and rewinds, reset, nested arenas and `using` scopes (some left by an exception),
 * dispose, limits that refuse, operations on ended arenas, and the worker's chunk pool taken
 * from and given to directly.
 *
 * The model keeps, per arena, its blocks in allocation order, whether the newest is still "the
 * last block" (free and resize accept it alone), its marks with the block count they were
 * taken at, its limit and its nested arenas. Every block is filled with the pattern of its
 * identity (tests/fuzz/runner.ts) and checked before it is dropped and at the end; a new block
 * must not overlap any live one; a refusal must be one the model can justify (the limit, a
 * block too big for a cache chunk, an ended arena); `heap.verify()` must be empty at the end of
 * each list, and once every arena is disposed and the pool released the heap's in-use bytes
 * are back where they started.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --target sbo --runs 500`.
 *
 * @module
 */

import fc from "fast-check";
import { type Cache, type Heap, Vmem } from "../../mod.ts";
import { BumpArena, ChunkPool, scope } from "../../sbo/mod.ts";
import { CH_HEADER } from "../../sbo/chunk.ts";
import { mk } from "../helpers.ts";
import {
  attempt,
  checkApart,
  checkPattern,
  expectClean,
  expectKind,
  fail,
  fillPattern,
  OtherSlot,
  type Target,
} from "./runner.ts";

/** Where a new arena's chunks come from. */
type Source = "heap" | "nopool" | "vmem" | "cache" | "nest";

/** One command. `arena` and `pick` index the model's lists modulo their length. */
export type SboCmd =
  | { op: "heap"; debug: boolean }
  | { op: "open"; src: Source; arena: number; chunk: number; limit: number; scoped: boolean }
  | { op: "alloc"; arena: number; size: number; align: number; zero: boolean }
  | { op: "free"; arena: number; last: boolean; pick: number }
  | { op: "resize"; arena: number; size: number }
  | { op: "mark"; arena: number }
  | { op: "rewind"; arena: number; pick: number }
  | { op: "reset"; arena: number }
  | { op: "dispose"; arena: number }
  | { op: "scope"; arena: number; n: number; size: number; throws: boolean }
  | { op: "take"; log: number }
  | { op: "give"; pick: number }
  | { op: "trim" }
  | { op: "maxBytes"; bytes: number }
  | { op: "grow"; size: number }
  | { op: "verify" };

/** The cache source's buffer size (every chunk of a cache arena is one buffer). */
const CACHE_BUF = 2048;
/** Arenas a list may open. */
const MAX_ARENAS = 8;

const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 100 }) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 2000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60000, max: 140000 }) },
);
const alignArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant(8) },
  { weight: 3, arbitrary: fc.constantFrom(1, 2, 4, 16) },
  { weight: 1, arbitrary: fc.constantFrom(64, 256, 4096) },
);
const arenaArb = fc.nat({ max: 1000 });

const cmdArb: fc.Arbitrary<SboCmd> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("open" as const),
      src: fc.constantFrom<Source>("heap", "heap", "nopool", "vmem", "cache", "nest", "nest"),
      arena: arenaArb,
      chunk: fc.constantFrom(0, 0, 256, 1000, 4096, 16384),
      limit: fc.constantFrom(-1, -1, -1, 0, 100, 3000, 50000),
      scoped: fc.boolean(),
    }),
  },
  {
    weight: 20,
    arbitrary: fc.record({
      op: fc.constant("alloc" as const),
      arena: arenaArb,
      size: sizeArb,
      align: alignArb,
      zero: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("free" as const),
      arena: arenaArb,
      last: fc.boolean(),
      pick: fc.nat(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("resize" as const), arena: arenaArb, size: sizeArb }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("mark" as const), arena: arenaArb }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("rewind" as const), arena: arenaArb, pick: fc.nat() }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("reset" as const), arena: arenaArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("dispose" as const), arena: arenaArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("scope" as const),
      arena: arenaArb,
      n: fc.integer({ min: 0, max: 6 }),
      size: sizeArb,
      throws: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("take" as const),
      log: fc.integer({ min: 8, max: 16 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("give" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: "trim" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("maxBytes" as const),
      bytes: fc.constantFrom(0, 8192, 1 << 20),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("grow" as const),
      size: fc.integer({ min: 1 << 16, max: 1 << 21 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "verify" as const }) },
);

/** A live block. */
interface Block {
  id: number;
  addr: number;
  size: number;
  align: number;
}

/** The model of one arena. */
interface Model {
  name: string;
  h: BumpArena;
  cache: boolean;
  limit: number;
  parent: Model | null;
  kids: Model[];
  blocks: Block[];
  /** Whether the newest block is the arena's last block (free and resize take it). */
  hasLast: boolean;
  /** Marks, oldest first, with the number of blocks there were when each was taken. */
  marks: { mark: number; k: number }[];
  ended: boolean;
}

/** Every block of live arenas, as checkApart wants them. */
function* liveRanges(
  arenas: Model[],
  pooled: Block[],
  other: OtherSlot,
): Iterable<readonly [number, number, string]> {
  for (const a of arenas) {
    if (a.ended) continue;
    for (const b of a.blocks) yield [b.addr, b.addr + b.size, `${a.name} block ${b.id}`];
  }
  for (const b of pooled) yield [b.addr, b.addr + b.size, `pool chunk ${b.id}`];
  yield* other.ranges();
}

/** Runs one command list on a fresh heap; throws on any disagreement with the model. */
export function runSbo(cmds: SboCmd[]): void {
  // The first command may ask for a heap with guards: redzones after every buffer and freed
  // buffers filled, which the heap checks on free and verify() checks everywhere.
  const guarded = cmds[0]?.op === "heap" && cmds[0].debug;
  const heap = mk({ size: 1 << 20, debug: guarded ? "guards,noabort" : "" });
  const pages = Vmem.create(heap, "fuzz_pages", { quantum: 16, source: heap.vmem });
  const cache: Cache = heap.createCache("fuzz_chunks", CACHE_BUF);
  heap.reap();
  const start = heap.vmem.stats().inUse;
  const arenas: Model[] = [];
  const pooled: Block[] = [];
  // A second worker slot whose big blocks grow the heap past this handle's views (runner.ts).
  const other = new OtherSlot(heap, 3);
  const live = () => liveRanges(arenas, pooled, other);
  let nextId = 1, opened = 0;

  const pick = (n: number): Model | undefined =>
    arenas.length === 0 ? undefined : arenas[n % arenas.length];
  const sumOf = (a: Model) => a.blocks.reduce((s, b) => s + b.size, 0);
  const checkBlocks = (a: Model, what: string) => {
    for (const b of a.blocks) checkPattern(heap, b.id, b.addr, b.size, `${what}: ${a.name}`);
  };
  /** Checks the arena's figures against the model after a change. */
  const checkStats = (a: Model, what: string) => {
    const s = a.h.stats();
    const sum = sumOf(a);
    if (s.used < sum) fail(`${what}: ${a.name} uses ${s.used} B, its blocks hold ${sum}`);
    if (s.used > a.limit) fail(`${what}: ${a.name} uses ${s.used} B past its limit ${a.limit}`);
    if (s.highWater < s.used) fail(`${what}: ${a.name} high water ${s.highWater} < ${s.used}`);
    const far = BumpArena.statsAt(heap.buffer, a.h.address);
    if (far.used !== s.used || far.chunks !== s.chunks) {
      fail(`${what}: statsAt disagrees with stats for ${a.name}`);
    }
  };
  /** A new block of `a`: checked apart from every live block, aligned, filled. */
  const addBlock = (a: Model, addr: number, size: number, align: number, what: string) => {
    if (addr <= 0 || addr % align !== 0) fail(`${what}: ${addr} is not ${align}-aligned`);
    checkApart(`${what} ${a.name}`, addr, addr + size, live());
    const b = { id: nextId++, addr, size, align };
    fillPattern(heap, b.id, addr, size);
    a.blocks.push(b);
    a.hasLast = true;
  };
  /** Marks `a` and its nested arenas ended (their handles must say so). */
  const endModel = (a: Model) => {
    for (const k of a.kids) endModel(k);
    a.ended = true;
    a.blocks = [];
    a.marks = [];
    a.kids = [];
  };
  /** The refusal of an allocation of `size` aligned to `align` must be justified. */
  const justify = (a: Model, kind: string, size: number, align: number, used: number) => {
    if (kind === "budget-exceeded") {
      if (used + size + align - 1 <= a.limit) {
        fail(`${a.name}: ${size} B (align ${align}) refused with ${used} B used of ${a.limit}`);
      }
    } else if (!a.cache || CH_HEADER + size + align - 1 <= CACHE_BUF) {
      fail(`${a.name}: ${size} B (align ${align}) refused as ${kind}`);
    }
  };

  for (const c of cmds) {
    switch (c.op) {
      case "heap":
        break;
      case "open": {
        if (opened >= MAX_ARENAS) break;
        const options: { chunkSize?: number; limit?: number; pool?: boolean } = {};
        if (c.chunk > 0 && c.src !== "cache") options.chunkSize = c.chunk;
        if (c.limit >= 0) options.limit = c.limit;
        let parent: Heap | Vmem | Cache | BumpArena = heap;
        let up: Model | null = null;
        if (c.src === "nest") {
          up = pick(c.arena) ?? null;
          if (up === null) break;
          parent = up.h;
          if (up.cache) delete options.chunkSize; // a cache's chunks have its buffer size
        } else if (c.src === "nopool") options.pool = false;
        else if (c.src === "vmem") parent = pages;
        else if (c.src === "cache") parent = cache;
        const make = () => c.scoped ? scope(parent, options) : new BumpArena(parent, options);
        if (up !== null && up.ended) {
          expectKind(`open under ended ${up.name}`, ["destroyed"], make);
          break;
        }
        // A nested arena's limit is at most what its parent has left.
        const left = up === null ? Infinity : Math.max(0, up.limit - up.h.stats().used);
        const h = make();
        opened++;
        const a: Model = {
          name: `arena ${arenas.length} (${c.src})`,
          h,
          cache: c.src === "cache" || (up?.cache ?? false),
          limit: h.stats().limit,
          parent: up,
          kids: [],
          blocks: [],
          hasLast: false,
          marks: [],
          ended: false,
        };
        const want = c.limit >= 0 ? Math.min(c.limit, left) : up === null ? Infinity : left;
        if (a.limit !== want) fail(`${a.name}: limit ${a.limit}, not ${want}`);
        up?.kids.push(a);
        arenas.push(a);
        checkStats(a, "open");
        break;
      }
      case "alloc": {
        const a = pick(c.arena);
        if (a === undefined) break;
        const run = () => c.zero ? a.h.zalloc(c.size, c.align) : a.h.alloc(c.size, c.align);
        if (a.ended) {
          expectKind(`alloc in ended ${a.name}`, ["destroyed"], run);
          break;
        }
        const used = a.h.stats().used;
        const out: { value?: number } = {};
        const refused = attempt(["budget-exceeded", "invalid-argument"], run, out);
        if (refused !== null) {
          justify(a, refused, c.size, c.align, used);
          checkBlocks(a, "after a refused alloc");
          if (a.h.stats().used !== used) fail(`${a.name}: a refused alloc changed its use`);
          break;
        }
        const p = out.value!;
        if (c.zero) {
          heap.sync();
          for (let i = 0; i < c.size; i++) {
            if (heap.u8[p + i] !== 0) fail(`zalloc(${c.size}) at ${p}: byte +${i} not zero`);
          }
        }
        addBlock(a, p, c.size, c.align, "alloc");
        checkStats(a, "alloc");
        break;
      }
      case "free": {
        const a = pick(c.arena);
        if (a === undefined) break;
        if (a.ended) {
          expectKind(`free in ended ${a.name}`, ["destroyed"], () => a.h.free(8));
          break;
        }
        const n = a.blocks.length;
        if (n === 0) {
          a.h.free(0); // a no-op
          break;
        }
        const newest = a.blocks[n - 1];
        if (c.last && a.hasLast) {
          checkPattern(heap, newest.id, newest.addr, newest.size, "before free");
          a.h.free(newest.addr);
          a.blocks.pop();
          a.hasLast = false;
          a.marks = a.marks.filter((m) => m.k <= a.blocks.length);
        } else {
          // Any block but the last one is refused, and nothing changes.
          const b = c.last ? newest : a.blocks[c.pick % n];
          if (b === newest && a.hasLast) break;
          const used = a.h.stats().used;
          expectKind(`free of a block not last in ${a.name}`, ["bad-free"], () => a.h.free(b.addr));
          if (a.h.stats().used !== used) fail(`${a.name}: a refused free changed its use`);
          checkBlocks(a, "after a refused free");
        }
        checkStats(a, "free");
        break;
      }
      case "resize": {
        const a = pick(c.arena);
        if (a === undefined) break;
        if (a.ended) {
          expectKind(`resize in ended ${a.name}`, ["destroyed"], () => a.h.resize(8, c.size));
          break;
        }
        const n = a.blocks.length;
        if (n === 0) break;
        const b = a.blocks[n - 1];
        if (!a.hasLast) {
          expectKind(`resize of no last in ${a.name}`, ["bad-free"], () => a.h.resize(b.addr, 8));
          checkBlocks(a, "after a refused resize");
          break;
        }
        const used = a.h.stats().used;
        const out: { value?: number } = {};
        const refused = attempt(
          ["budget-exceeded", "invalid-argument"],
          () => a.h.resize(b.addr, c.size),
          out,
        );
        if (refused !== null) {
          justify(a, refused, c.size, 8, used - b.size);
          checkBlocks(a, "after a refused resize");
          break;
        }
        const q = out.value!;
        checkPattern(heap, b.id, q, Math.min(b.size, c.size), `resize ${b.size}→${c.size}`);
        a.blocks.pop();
        a.marks = a.marks.filter((m) => m.k < n);
        addBlock(a, q, c.size, q === b.addr ? b.align : 8, "resize");
        checkStats(a, "resize");
        break;
      }
      case "mark": {
        const a = pick(c.arena);
        if (a === undefined) break;
        if (a.ended) {
          expectKind(`mark of ended ${a.name}`, ["destroyed"], () => a.h.mark());
          break;
        }
        if (a.marks.length < 6) a.marks.push({ mark: a.h.mark(), k: a.blocks.length });
        break;
      }
      case "rewind": {
        const a = pick(c.arena);
        if (a === undefined) break;
        if (a.ended) {
          expectKind(`rewind of ended ${a.name}`, ["destroyed"], () => a.h.rewind(2 ** 31));
          break;
        }
        if (a.marks.length === 0) break;
        const i = c.pick % a.marks.length, m = a.marks[i];
        checkBlocks(a, "before rewind");
        a.h.rewind(m.mark);
        a.blocks.length = m.k;
        a.marks.length = i + 1;
        a.hasLast = false;
        checkBlocks(a, "after rewind");
        checkStats(a, "rewind");
        break;
      }
      case "reset": {
        const a = pick(c.arena);
        if (a === undefined) break;
        if (a.ended) {
          expectKind(`reset of ended ${a.name}`, ["destroyed"], () => a.h.reset());
          break;
        }
        a.h.reset();
        a.blocks = [];
        a.marks = [];
        a.hasLast = false;
        const s = a.h.stats();
        if (s.used !== 0 || s.chunks !== 1) {
          fail(`reset ${a.name}: ${s.used} B, ${s.chunks} chunks`);
        }
        for (const k of a.kids) checkBlocks(k, "nested, after the parent's reset");
        break;
      }
      case "dispose": {
        const a = pick(c.arena);
        if (a === undefined) break;
        if (!a.ended) checkBlocks(a, "before dispose");
        a.h.dispose(); // a second dispose does nothing
        if (!a.ended) {
          endModel(a);
          if (a.parent !== null) a.parent.kids.splice(a.parent.kids.indexOf(a), 1);
        }
        const check = (m: Model) => {
          if (!m.h.disposed) fail(`${m.name} not disposed with its parent`);
        };
        check(a);
        break;
      }
      case "scope": {
        const a = pick(c.arena);
        if (a === undefined || a.ended) break;
        let inner: BumpArena | undefined;
        const mine: Block[] = [];
        try {
          using s = scope(a.h);
          inner = s;
          for (let i = 0; i < c.n; i++) {
            const out: { value?: number } = {};
            if (attempt(["budget-exceeded", "invalid-argument"], () => s.alloc(c.size), out)) {
              break;
            }
            const addr = out.value!;
            checkApart("scope block", addr, addr + c.size, live());
            checkApart(
              "scope block",
              addr,
              addr + c.size,
              mine.map((b) => [
                b.addr,
                b.addr + b.size,
                `scope block ${b.id}`,
              ]),
            );
            const b = { id: nextId++, addr, size: c.size, align: 8 };
            fillPattern(heap, b.id, addr, c.size);
            mine.push(b);
          }
          for (const b of mine) checkPattern(heap, b.id, b.addr, b.size, "in the scope");
          if (c.throws) throw new RangeError("leaving the scope by an exception");
        } catch (e) {
          if (!(c.throws && e instanceof RangeError)) throw e;
        }
        if (inner === undefined || !inner.disposed) fail("the scope's arena outlived its block");
        checkBlocks(a, "after a nested scope");
        break;
      }
      case "take": {
        if (pooled.length >= 4) break;
        const size = 1 << c.log, p = ChunkPool.of(heap).take(size);
        if (p <= 0 || p % 8 !== 0) fail(`pool take(${size}) returned ${p}`);
        checkApart("pool chunk", p, p + size, live());
        const b = { id: nextId++, addr: p, size, align: 8 };
        fillPattern(heap, b.id, p, size);
        pooled.push(b);
        break;
      }
      case "give": {
        if (pooled.length === 0) break;
        const [b] = pooled.splice(c.pick % pooled.length, 1);
        checkPattern(heap, b.id, b.addr, b.size, "before giving a chunk back");
        ChunkPool.of(heap).give(b.addr, b.size);
        break;
      }
      case "trim":
        ChunkPool.of(heap).trim();
        if (ChunkPool.of(heap).stats().chunks !== 0) fail("the pool holds chunks after trim");
        break;
      case "maxBytes": {
        const pool = ChunkPool.of(heap);
        pool.maxBytes = c.bytes;
        if (pool.stats().pooledBytes > c.bytes) fail(`pool holds more than ${c.bytes} B`);
        break;
      }
      case "grow":
        other.grow(nextId++, c.size, live);
        break;
      case "verify":
        expectClean("verify()", heap.verify());
        break;
    }
  }
  other.finish();
  expectClean("verify() at the end", heap.verify());
  for (const a of arenas) {
    if (a.ended) {
      if (!a.h.disposed) fail(`${a.name} ended in the model, not in the heap`);
      continue;
    }
    checkBlocks(a, "at the end");
    checkStats(a, "at the end");
  }
  for (const a of arenas) if (a.parent === null) a.h.dispose();
  for (const a of arenas) if (!a.h.disposed) fail(`${a.name} outlived its parent`);
  for (const b of pooled) {
    checkPattern(heap, b.id, b.addr, b.size, "pool chunk at the end");
    ChunkPool.of(heap).give(b.addr, b.size);
  }
  expectClean("verify() after disposing every arena", heap.verify());
  if (pages.stats().inUse !== 0) fail(`vmem source: ${pages.stats().inUse} B in use at the end`);
  if (cache.stats().inUse !== 0) fail(`cache source: ${cache.stats().inUse} in use at the end`);
  ChunkPool.of(heap).release();
  heap.reap();
  const end = heap.vmem.stats().inUse;
  if (end !== start) fail(`heap in use ${end} B at the end, ${start} B at the start`);
}

/** The sbo fuzzer as a target of tests/fuzz/main.ts. */
export const sboTarget: Target<SboCmd> = {
  name: "sbo",
  commands: fc.tuple(
    fc.record({ op: fc.constant("heap" as const), debug: fc.boolean() }),
    fc.array(cmdArb, { minLength: 1, maxLength: 150, size: "max" }),
  ).map(([heap, cmds]): SboCmd[] => [heap, ...cmds]),
  run: runSbo,
};
