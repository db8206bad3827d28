/**
 * umem side by side with the JavaScript allocators people use, the engine's own allocation and
 * the floor, every workload in one process, contenders in alternating order, several rounds;
 * prints markdown tables of medians and of ratios to umem's `heap.alloc`/`free`.
 *
 *     npx deno task bench:compare       # deno run --allow-read --allow-env --allow-sys=cpus
 *     npx bun bench/compare.ts          # the same under Bun
 *     ... --quick                       # fewer rounds and shorter cells
 *     ... --full-mempool                # MemPool on the whole 100k batch too (minutes)
 *     ... --only=workers                # some of: single, workers, memory
 *
 * Contenders (columns):
 * - `umem`: `heap.alloc`/`heap.free` (the baseline of the ratio table); `umem trust`: the
 *   same on a heap created with `trust` (frees not checked); `umem libc`: `heap.libc.malloc`/
 *   `free`; `umem cache`: an object cache of the workload's size (`heap.createCache`).
 * - `thi.ng MemPool` (`@thi.ng/malloc`) over a SharedArrayBuffer: the one allocator of its kind
 *   on npm (a first-fit free list sorted by address, compacted on every free).
 * - The engine's own allocation (V8 under Deno, JavaScriptCore under Bun): `{}` is a 4-field
 *   object literal whatever the size asked (about 32 bytes on the engine's heap), kept in a
 *   256-slot ring so that it escapes and the collector frees it; `Uint8Array(n)` has n bytes.
 * - The floor: a bump pointer in an `Int32Array`, 8-aligned, that never frees: the least work
 *   any allocator can do.
 * - `umem sbo arena` and `umem budget context` in the rows where everything allocated is dropped
 *   at once (a request: an arena per request, or a context reset; the batch: one rewind or
 *   reset), each on a heap of its own; — in the other rows.
 *
 * Workloads (rows): alloc+free pairs of 16, 64, 256 and 4096 bytes; a batch of 100,000 live
 * blocks of random sizes 8..512 freed in random order; a 256-byte object with a constructor
 * (the cache) against constructing it on every allocation; a request (32 small allocations,
 * then all dropped); one worker against two on one heap; producer/consumer across two workers.
 * Then measurements that are not timings: the memory overhead of the batch (extent / bytes
 * requested) and of the profile module's synthetic traces (`gawk`, `db`, `parser`: peak extent /
 * peak busy, replayed by `profile/replay.ts`), and the Vmalloc paper's fragment pattern (moves,
 * bytes copied, extent against busy).
 *
 * Permissions under Deno: `--allow-read` (to start the workers from compare_worker.ts),
 * `--allow-env` (`@thi.ng/errors` reads NODE_ENV) and `--allow-sys=cpus` (the CPU model, left
 * out without it). The heaps are created with explicit (empty) `debug`, `logging` and
 * `options`, so UMEM_DEBUG and friends in the environment change nothing.
 *
 * @module
 */
import os from "node:os";
import process from "node:process";
import { MemPool } from "@thi.ng/malloc";
import type * as PairLoopsModule from "./pair_loops.ts";
import { type Cache, Heap } from "../core/mod.ts";
import { growableDiscipline, heapDiscipline, Region } from "../region/mod.ts";
import { BumpArena, scope } from "../sbo/mod.ts";
import { type MemoryContext, topContext } from "../budget/mod.ts";
import { FLOOR_BASE, FLOOR_END } from "./pair_loops.ts";
import { dbTrace, gawkTrace, parserTrace, prng } from "../profile/generators.ts";
import { replay, type ReplayAllocator, type Trace } from "../profile/mod.ts";

// ---- settings ----

const args = process.argv.slice(2);
const QUICK = args.includes("--quick");
const FULL_MEMPOOL = args.includes("--full-mempool");
/** `--only=single,workers,memory`: the sections to run (default all). */
const ONLY = (args.find((a) => a.startsWith("--only="))?.slice(7) ?? "single,workers,memory")
  .split(",");
/** Rounds of each timed cell (the median is reported). */
const ROUNDS = QUICK ? 3 : 7;
/** Rounds of the batch workload. */
const BATCH_ROUNDS = QUICK ? 3 : 10;
/** Rounds of each worker cell. */
const WORKER_ROUNDS = QUICK ? 3 : 5;
/** Milliseconds a single-thread cell should last. */
const CELL_MS = QUICK ? 15 : 50;
/** Blocks in the batch. */
const BATCH = 100_000;
/**
 * Blocks in MemPool's batch. Its free walks the list of used blocks and compacts the whole
 * free list, so a batch costs about the square of its size: 10k blocks take 0.35 s, 30k take
 * 5.4 s, 100k would take about two minutes a round. It runs the first POOL_BATCH blocks of the
 * same batch (same sizes, same relative free order), which flatters it: at 100k it is slower.
 */
const POOL_BATCH = FULL_MEMPOOL ? BATCH : 10_000;
/** Allocations in a request. */
const REQUEST = 32;
/** alloc+free pairs a worker does between looks at the clock. */
const WORKER_CHUNK = 100_000;
/** Milliseconds each worker runs in a worker cell. */
const WORKER_MS = QUICK ? 100 : 200;
/** Blocks through the ring per producer/consumer cell. */
const RING_BLOCKS = QUICK ? 1_000_000 : 2_000_000;
/** Idle milliseconds before each timed cell (see `pause`). */
const PAUSE_MS = QUICK ? 10 : 25;
/** How long any wait for a worker may last. */
const WORKER_TIMEOUT_MS = 90_000;

/** Column ids, in table order. */
const COLS = [
  "umem",
  "trust",
  "libc",
  "cache",
  "arena",
  "context",
  "mempool",
  "obj",
  "u8",
  "floor",
] as const;
type Col = typeof COLS[number];

const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const ENGINE = isBun ? "JSC" : "V8";
const LABEL: Record<Col, string> = {
  umem: "umem alloc/free",
  trust: "umem trust",
  libc: "umem libc",
  cache: "umem cache",
  arena: "umem sbo arena",
  context: "umem budget context",
  mempool: "thi.ng MemPool",
  obj: `${ENGINE} {}`,
  u8: `${ENGINE} Uint8Array(n)`,
  floor: "floor (bump)",
};

/**
 * sbo/'s bump arena and budget/'s memory contexts answer the rows where everything allocated
 * is dropped at once (a request, the batch): an arena per request ended with `dispose()` (in a
 * `try`/`finally`), a context reset; their frees are no-ops. The other rows show — for them.
 */

// ---- the machine and the runtime ----

/**
 * The CPU model from `os.cpus()`. Deno asks for `--allow-sys=cpus` (and would prompt on a
 * terminal), so under Deno it is read only when that permission is already granted.
 */
function cpuModel(): string {
  if (
    typeof Deno !== "undefined" &&
    Deno.permissions.querySync({ name: "sys", kind: "cpus" }).state !== "granted"
  ) {
    return "CPU model unknown (needs --allow-sys=cpus)";
  }
  return os.cpus()[0]?.model?.trim() || "unknown CPU";
}

function runtime(): string {
  const v = process.versions as Record<string, string | undefined>;
  if (isBun) return `Bun ${v.bun} (JavaScriptCore ${(v.webkit ?? "?").slice(0, 12)})`;
  return `Deno ${v.deno} (V8 ${v.v8})`;
}

// ---- helpers ----

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Contenders in round r's order: rotated by r, reversed on odd rounds. */
function roundOrder<T>(items: readonly T[], r: number): T[] {
  const k = r % items.length;
  const out = [...items.slice(k), ...items.slice(0, k)];
  return r % 2 === 1 ? out.reverse() : out;
}

function rate(x: number): string {
  if (!Number.isFinite(x)) return "—";
  const [d, u] = x >= 1e9 ? [1e9, "G"] : x >= 1e6 ? [1e6, "M"] : x >= 1e3 ? [1e3, "K"] : [1, ""];
  const v = x / d;
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${u}`.trim();
}

function times(x: number): string {
  if (!Number.isFinite(x)) return "—";
  return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}x`;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(0)}K`;
}

/** Keeps every loop's result observable, so that no loop is optimized away. */
let sink = 0;

// ---- the contenders' state ----

function mk(trust: boolean): Heap {
  return Heap.create({
    size: 64 << 20,
    maxSize: 1 << 30,
    trust,
    debug: "",
    logging: "",
    options: "",
  });
}

const heap = mk(false);
const trusting = mk(true);
/** The arenas' and contexts' own heaps, so that their chunks do not mix with the others. */
const arenaHeap = mk(false);
const contextHeap = mk(false);
const batchBump = new BumpArena(arenaHeap, { chunkSize: 1 << 20, maxChunkSize: 32 << 20 });
const requestCtx = topContext(contextHeap).create("request");
const batchCtx = topContext(contextHeap).create("batch");

/** A MemPool over its own SharedArrayBuffer; `top` reads its state word 2 (the bump top). */
function pool(bytes: number): { m: MemPool; u8: Uint8Array; i32: Int32Array; top(): number } {
  const buf = new SharedArrayBuffer(bytes);
  const m = new MemPool({ buf });
  const state = new Uint32Array(buf, 0, 7);
  return { m, u8: new Uint8Array(buf), i32: new Int32Array(buf), top: () => state[2] };
}

const mp = pool(16 << 20);

/** The floor: word 0 of `fl` is the bump pointer; addresses cycle through [64, FLOOR_END). */
const flBuf = new SharedArrayBuffer(FLOOR_END);
const fl = new Int32Array(flBuf);
const flU8 = new Uint8Array(flBuf);
fl[0] = FLOOR_BASE;

// ---- pairs: a fresh copy of the loops for every cell (see pair_loops.ts) ----

type PairLoops = typeof PairLoopsModule;

/** The pair loops, loaded anew for cell `key`: its own functions, its own type feedback. */
function pairLoops(key: string): Promise<PairLoops> {
  return import(`./pair_loops.ts?cell=${key}`) as Promise<PairLoops>;
}

/** The last 256 objects and arrays of the construct loops, kept so that they escape. */
const keepObj: unknown[] = new Array(256).fill(null);
const keepU8: Uint8Array[] = new Array(256).fill(new Uint8Array(0));

// ---- a 256-byte object: constructed once (the cache) or on every allocation ----

const OBJ = 256;
const OBJ_MAGIC = 0x0b1ec7;

/** The constructor: zero the object, then a magic and an empty list head (two self-links). */
function construct(u8: Uint8Array, i32: Int32Array, p: number): void {
  u8.fill(0, p, p + OBJ);
  i32[p >> 2] = OBJ_MAGIC;
  i32[(p + 4) >> 2] = p + 4;
  i32[(p + 8) >> 2] = p + 4;
}

const objCache = heap.createCache("cmp_obj_256", OBJ, {
  ctor: (h, p) => {
    construct(h.u8, h.i32, p);
  },
});

function constructHeap(h: Heap, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = h.alloc(OBJ);
    construct(h.u8, h.i32, p);
    h.free(p, OBJ);
    s ^= p;
  }
  return s;
}

function constructLibc(h: Heap, n: number): number {
  const libc = h.libc;
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = libc.malloc(OBJ);
    construct(h.u8, h.i32, p);
    libc.free(p);
    s ^= p;
  }
  return s;
}

function constructPool(m: MemPool, u8: Uint8Array, i32: Int32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const p = m.malloc(OBJ);
    construct(u8, i32, p);
    m.free(p);
    s ^= p;
  }
  return s;
}

function constructObj(n: number): number {
  for (let i = 0; i < n; i++) keepObj[i & 255] = { magic: OBJ_MAGIC, next: null, prev: null, i };
  return keepObj.length;
}

/** The engine zeroes a new Uint8Array: construction is the allocation plus the header. */
function constructU8(n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    const a = new Uint8Array(OBJ);
    a[0] = 0xc7;
    a[4] = 4;
    a[8] = 4;
    keepU8[i & 255] = a;
    s ^= a.length;
  }
  return s;
}

function constructFloor(b: Int32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    let p = b[0];
    if (p + OBJ > FLOOR_END) p = FLOOR_BASE;
    b[0] = p + OBJ;
    construct(flU8, b, p);
    s ^= p;
  }
  return s;
}

// ---- a request: 32 small allocations, then all dropped ----

const reqRand = prng(0x5e9);
/** The request's sizes: 8..256, seeded. */
const REQ_SIZES = Int32Array.from({ length: REQUEST }, () => 8 + Math.floor(reqRand() * 249));
const reqPtrs = new Int32Array(REQUEST);

function requestHeap(h: Heap, n: number): number {
  let s = 0;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < REQUEST; k++) reqPtrs[k] = h.alloc(REQ_SIZES[k]);
    for (let k = 0; k < REQUEST; k++) h.free(reqPtrs[k], REQ_SIZES[k]);
    s ^= reqPtrs[r & (REQUEST - 1)];
  }
  return s;
}

function requestLibc(h: Heap, n: number): number {
  const libc = h.libc;
  let s = 0;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < REQUEST; k++) reqPtrs[k] = libc.malloc(REQ_SIZES[k]);
    for (let k = 0; k < REQUEST; k++) libc.free(reqPtrs[k]);
    s ^= reqPtrs[r & (REQUEST - 1)];
  }
  return s;
}

function requestPool(m: MemPool, n: number): number {
  let s = 0;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < REQUEST; k++) reqPtrs[k] = m.malloc(REQ_SIZES[k]);
    for (let k = 0; k < REQUEST; k++) m.free(reqPtrs[k]);
    s ^= reqPtrs[r & (REQUEST - 1)];
  }
  return s;
}

const keepReq: unknown[][] = new Array(8).fill([]);
function requestObj(n: number): number {
  for (let r = 0; r < n; r++) {
    const live: unknown[] = [];
    for (let k = 0; k < REQUEST; k++) live.push({ a: k, b: 0, c: 0, d: 0 });
    keepReq[r & 7] = live; // dropped when the slot is reused
  }
  return keepReq.length;
}

function requestU8(n: number): number {
  for (let r = 0; r < n; r++) {
    const live: Uint8Array[] = [];
    for (let k = 0; k < REQUEST; k++) live.push(new Uint8Array(REQ_SIZES[k]));
    keepReq[r & 7] = live;
  }
  return keepReq.length;
}

/** The floor of a request: bump 32 times, then drop all by resetting the pointer. */
function requestFloor(b: Int32Array, n: number): number {
  let s = 0;
  for (let r = 0; r < n; r++) {
    const mark = b[0];
    for (let k = 0; k < REQUEST; k++) {
      const p = b[0];
      b[0] = p + ((REQ_SIZES[k] + 7) & ~7);
      reqPtrs[k] = p;
    }
    s ^= reqPtrs[r & (REQUEST - 1)];
    b[0] = mark;
  }
  return s;
}

/** A request in a scoped arena: 32 allocations, then the scope ends (`try`/`finally`). */
function requestArena(h: Heap, n: number): number {
  let s = 0;
  for (let r = 0; r < n; r++) {
    const a = scope(h);
    try {
      for (let k = 0; k < REQUEST; k++) reqPtrs[k] = a.alloc(REQ_SIZES[k]);
    } finally {
      a.dispose();
    }
    s ^= reqPtrs[r & (REQUEST - 1)];
  }
  return s;
}

/** A request in a memory context: 32 allocations, then the context is reset. */
function requestContext(c: MemoryContext, n: number): number {
  let s = 0;
  for (let r = 0; r < n; r++) {
    for (let k = 0; k < REQUEST; k++) reqPtrs[k] = c.alloc(REQ_SIZES[k]);
    c.reset();
    s ^= reqPtrs[r & (REQUEST - 1)];
  }
  return s;
}

// ---- a batch: 100,000 live blocks of random sizes 8..512, freed in random order ----

const rand = prng(0xa110c);
const SIZES = Int32Array.from({ length: BATCH }, () => 8 + Math.floor(rand() * 505));
const ORDER = Int32Array.from({ length: BATCH }, (_, i) => i);
for (let i = BATCH - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1));
  const t = ORDER[i];
  ORDER[i] = ORDER[j];
  ORDER[j] = t;
}
/** The first POOL_BATCH blocks in the same relative free order. */
const POOL_ORDER = ORDER.filter((k) => k < POOL_BATCH);
const ptrs = new Int32Array(BATCH);

function batchHeap(h: Heap): number {
  for (let i = 0; i < BATCH; i++) ptrs[i] = h.alloc(SIZES[i]);
  for (let j = 0; j < BATCH; j++) {
    const k = ORDER[j];
    h.free(ptrs[k], SIZES[k]);
  }
  return ptrs[BATCH - 1];
}

function batchLibc(h: Heap): number {
  const libc = h.libc;
  for (let i = 0; i < BATCH; i++) ptrs[i] = libc.malloc(SIZES[i]);
  for (let j = 0; j < BATCH; j++) libc.free(ptrs[ORDER[j]]);
  return ptrs[BATCH - 1];
}

/** The batch in one arena: the allocations, then the arena is rewound (its frees are no-ops). */
function batchArena(a: BumpArena): number {
  const mark = a.mark();
  for (let i = 0; i < BATCH; i++) ptrs[i] = a.alloc(SIZES[i]);
  a.rewind(mark);
  return ptrs[BATCH - 1];
}

/** The batch in a memory context: the allocations, then the context is reset. */
function batchContext(c: MemoryContext): number {
  for (let i = 0; i < BATCH; i++) ptrs[i] = c.alloc(SIZES[i]);
  c.reset();
  return ptrs[BATCH - 1];
}

function batchPool(m: MemPool, order: Int32Array): number {
  const n = order.length;
  for (let i = 0; i < n; i++) ptrs[i] = m.malloc(SIZES[i]);
  for (let j = 0; j < n; j++) m.free(ptrs[order[j]]);
  return ptrs[n - 1];
}

const objs: unknown[] = new Array(BATCH).fill(null);
function batchObj(): number {
  for (let i = 0; i < BATCH; i++) objs[i] = { a: i, b: SIZES[i], c: 0, d: 0 };
  for (let j = 0; j < BATCH; j++) objs[ORDER[j]] = null;
  return objs.length;
}

const arrs: (Uint8Array | null)[] = new Array(BATCH).fill(null);
function batchU8(): number {
  for (let i = 0; i < BATCH; i++) arrs[i] = new Uint8Array(SIZES[i]);
  for (let j = 0; j < BATCH; j++) arrs[ORDER[j]] = null;
  return arrs.length;
}

function batchFloor(b: Int32Array): number {
  b[0] = FLOOR_BASE;
  for (let i = 0; i < BATCH; i++) {
    const p = b[0];
    b[0] = p + ((SIZES[i] + 7) & ~7);
    ptrs[i] = p;
  }
  let s = 0;
  for (let j = 0; j < BATCH; j++) s ^= ptrs[ORDER[j]]; // free: nothing
  b[0] = FLOOR_BASE;
  return s;
}

// ---- the single-thread workloads ----

/** A cell: runs `n` units of work; `ops` is what one unit counts for; `fixed` skips calibration. */
interface Cell {
  fn: (n: number) => number;
  ops: number;
  fixed?: number;
  note?: string;
}

interface Row {
  label: string;
  unit: string;
  rounds: number;
  cells: Partial<Record<Col, Cell>>;
}

const caches = new Map<number, [Cache, Cache]>();
for (const size of [16, 64, 256, 4096]) {
  caches.set(size, [
    heap.createCache(`cmp_${size}`, size),
    trusting.createCache(`cmp_${size}`, size),
  ]);
}

const rows: Row[] = [];
/** The rows the targets read. */
const ROW_PAIR64 = "alloc+free 64 B";
const ROW_BATCH = `${BATCH / 1000}k blocks 8..512 B, random free order`;
const ROW_OBJ = `${OBJ} B object with a constructor`;
for (const size of [16, 64, 256, 4096]) {
  const [c] = caches.get(size)!;
  const l = async (col: Col) => await pairLoops(`${size}-${col}`);
  const [umem, trust, libc, cache, mempool, obj, u8, floor] = await Promise.all(
    (["umem", "trust", "libc", "cache", "mempool", "obj", "u8", "floor"] as const).map(l),
  );
  rows.push({
    label: `alloc+free ${size} B`,
    unit: "pairs/s",
    rounds: ROUNDS,
    cells: {
      umem: { fn: (n) => umem.pairsHeap(heap, size, n), ops: 1 },
      trust: { fn: (n) => trust.pairsHeap(trusting, size, n), ops: 1 },
      libc: { fn: (n) => libc.pairsLibc(heap, size, n), ops: 1 },
      cache: { fn: (n) => cache.pairsCache(c, n), ops: 1 },
      mempool: { fn: (n) => mempool.pairsPool(mp.m, size, n), ops: 1 },
      obj: { fn: (n) => obj.pairsObj(n), ops: 1 },
      u8: { fn: (n) => u8.pairsU8(size, n), ops: 1 },
      floor: { fn: (n) => floor.pairsFloor(fl, size, n), ops: 1 },
    },
  });
}
const objLoops = await pairLoops("object-cache");
rows.push({
  label: ROW_BATCH,
  unit: "ops/s",
  rounds: BATCH_ROUNDS,
  cells: {
    umem: { fn: () => batchHeap(heap), ops: 2 * BATCH, fixed: 1 },
    trust: { fn: () => batchHeap(trusting), ops: 2 * BATCH, fixed: 1 },
    libc: { fn: () => batchLibc(heap), ops: 2 * BATCH, fixed: 1 },
    arena: { fn: () => batchArena(batchBump), ops: 2 * BATCH, fixed: 1 },
    context: { fn: () => batchContext(batchCtx), ops: 2 * BATCH, fixed: 1 },
    mempool: {
      fn: () => batchPool(mp.m, POOL_ORDER),
      ops: 2 * POOL_BATCH,
      fixed: 1,
      note: POOL_BATCH < BATCH ? `${POOL_BATCH / 1000}k blocks` : undefined,
    },
    obj: { fn: () => batchObj(), ops: 2 * BATCH, fixed: 1 },
    u8: { fn: () => batchU8(), ops: 2 * BATCH, fixed: 1 },
    floor: { fn: () => batchFloor(fl), ops: 2 * BATCH, fixed: 1 },
  },
});
rows.push({
  label: ROW_OBJ,
  unit: "objects/s",
  rounds: ROUNDS,
  cells: {
    umem: { fn: (n) => constructHeap(heap, n), ops: 1, note: "construct each time" },
    trust: { fn: (n) => constructHeap(trusting, n), ops: 1, note: "construct each time" },
    libc: { fn: (n) => constructLibc(heap, n), ops: 1, note: "construct each time" },
    cache: { fn: (n) => objLoops.pairsCache(objCache, n), ops: 1, note: "constructed once" },
    mempool: { fn: (n) => constructPool(mp.m, mp.u8, mp.i32, n), ops: 1 },
    obj: { fn: (n) => constructObj(n), ops: 1 },
    u8: { fn: (n) => constructU8(n), ops: 1 },
    floor: { fn: (n) => constructFloor(fl, n), ops: 1 },
  },
});
rows.push({
  label: `request: ${REQUEST} allocations 8..256 B, then drop all`,
  unit: "requests/s",
  rounds: ROUNDS,
  cells: {
    umem: { fn: (n) => requestHeap(heap, n), ops: 1 },
    trust: { fn: (n) => requestHeap(trusting, n), ops: 1 },
    libc: { fn: (n) => requestLibc(heap, n), ops: 1 },
    arena: { fn: (n) => requestArena(arenaHeap, n), ops: 1 },
    context: { fn: (n) => requestContext(requestCtx, n), ops: 1 },
    mempool: { fn: (n) => requestPool(mp.m, n), ops: 1 },
    obj: { fn: (n) => requestObj(n), ops: 1 },
    u8: { fn: (n) => requestU8(n), ops: 1 },
    floor: { fn: (n) => requestFloor(fl, n), ops: 1 },
  },
});

/** One timed run of a cell: units of work per second times ops per unit. */
function timeCell(cell: Cell, n: number): number {
  const t0 = performance.now();
  sink ^= cell.fn(n);
  const ms = performance.now() - t0;
  return (n * cell.ops) / (Math.max(ms, 1e-3) / 1000);
}

/** Finds how many units make a cell last about CELL_MS (and warms it up). */
function calibrate(cell: Cell): number {
  if (cell.fixed !== undefined) {
    cell.fn(cell.fixed);
    return cell.fixed;
  }
  let n = 256;
  for (;;) {
    const t0 = performance.now();
    sink ^= cell.fn(n);
    const ms = performance.now() - t0;
    if (ms >= CELL_MS / 4) return Math.max(1, Math.round((n * CELL_MS) / ms));
    n *= 4;
  }
}

/** results[row label][col] = median rate. */
const results = new Map<string, Partial<Record<Col, number>>>();

/** Lets the event loop run: the collector's tasks for the engine's garbage finish there. */
function pause(): Promise<void> {
  return new Promise((r) => setTimeout(r, PAUSE_MS));
}

/**
 * Times every cell of a row: each cell calibrated (and warmed up), then `rounds` rounds with
 * the contenders in alternating order, a pause before each cell so that the engine's garbage
 * from the cell before is collected in the pause and not during the next one.
 */
async function runRow(row: Row): Promise<void> {
  const cols = COLS.filter((c) => row.cells[c] !== undefined);
  const n: Partial<Record<Col, number>> = {};
  for (const c of cols) n[c] = calibrate(row.cells[c]!);
  const got: Partial<Record<Col, number[]>> = {};
  for (let r = 0; r < row.rounds; r++) {
    for (const c of roundOrder(cols, r)) {
      await pause();
      (got[c] ??= []).push(timeCell(row.cells[c]!, n[c]!));
    }
  }
  const med: Partial<Record<Col, number>> = {};
  for (const c of cols) med[c] = median(got[c]!);
  results.set(row.label, med);
}

// ---- workers: one against two on one heap, and producer/consumer ----

interface Reply {
  ok: boolean;
  ms: number;
  ops: number;
  sink: number;
  error?: string;
}

class Crew {
  readonly workers: Worker[];
  readonly go = new Int32Array(new SharedArrayBuffer(8));
  private gen = 0;

  constructor(k: number) {
    const url = new URL("./compare_worker.ts", import.meta.url).href;
    this.workers = Array.from({ length: k }, () => new Worker(url, { type: "module" }));
  }

  /** One message to one worker and its answer, within WORKER_TIMEOUT_MS. */
  ask(w: Worker, msg: Record<string, unknown>): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`bench/compare.ts: no answer from a worker to ${msg.type}`));
      }, WORKER_TIMEOUT_MS);
      w.onmessage = (e: MessageEvent) => {
        clearTimeout(timer);
        const reply = e.data as Reply;
        if (reply.ok) resolve(reply);
        else reject(new Error(`worker: ${reply.error}`));
      };
      w.onerror = (e: Event) => {
        clearTimeout(timer);
        e.preventDefault();
        reject(new Error(`worker: ${(e as ErrorEvent).message ?? e}`));
      };
      w.postMessage(msg);
    });
  }

  /**
   * Sends each worker its message, lets them start together, and waits for all answers. A
   * pause first lets the collectors' background threads finish the garbage of the engine's
   * contenders: on a machine with few cores they would take a CPU from the next cell.
   */
  async run(jobs: [Worker, Record<string, unknown>][]): Promise<Reply[]> {
    await pause();
    const gen = ++this.gen;
    Atomics.store(this.go, 1, 0);
    let failed: unknown;
    const all = Promise.all(jobs.map(([w, m]) => this.ask(w, { ...m, gen })));
    all.catch((e) => failed ??= e);
    const until = performance.now() + WORKER_TIMEOUT_MS;
    while (Atomics.load(this.go, 1) < jobs.length) {
      if (failed !== undefined) throw failed;
      if (performance.now() > until) throw new Error("bench/compare.ts: workers never got ready");
      await new Promise((r) => setTimeout(r, 1));
    }
    Atomics.store(this.go, 0, gen);
    Atomics.notify(this.go, 0);
    return await all;
  }

  terminate(): void {
    for (const w of this.workers) w.terminate();
  }
}

const WORKER_COLS: Col[] = ["umem", "trust", "libc", "cache", "obj", "u8", "floor"];
const RING_COLS: Col[] = ["umem", "trust", "libc", "cache", "floor"];
const ROW_1W = "alloc+free 64 B, 1 worker";
const ROW_2W = "alloc+free 64 B, 2 workers on one heap (sum)";
const ROW_SPEEDUP = "2 workers ÷ 1 worker";
const ROW_PC = "producer/consumer 64 B, 2 workers, ring in the heap";

async function runWorkers(): Promise<void> {
  const crew = new Crew(2);
  const [a, b] = crew.workers;
  const ring = heap.vmem.alloc(64 + 4096 * 4);
  heap.i32.fill(0, ring >> 2, (ring + 64) >> 2);
  try {
    const attach = {
      type: "attach",
      buffers: [heap.buffer, trusting.buffer],
      names: ["cmp_64", "cmp_64"],
      go: crew.go.buffer,
    };
    await Promise.all([crew.ask(a, attach), crew.ask(b, attach)]);
    const one: Partial<Record<Col, number[]>> = {};
    const two: Partial<Record<Col, number[]>> = {};
    const pc: Partial<Record<Col, number[]>> = {};
    const pairs = (contender: Col) => ({
      type: "pairs",
      contender,
      n: WORKER_CHUNK,
      minMs: WORKER_MS,
    });
    const perSecond = (x: Reply) => x.ops / (x.ms / 1000);
    // Warm-up: every contender once in each worker.
    for (const c of WORKER_COLS) await crew.run([[a, pairs(c)], [b, pairs(c)]]);
    for (let r = 0; r < WORKER_ROUNDS; r++) {
      for (const c of roundOrder(WORKER_COLS, r)) {
        const [x] = await crew.run([[r % 2 === 0 ? a : b, pairs(c)]]);
        (one[c] ??= []).push(perSecond(x));
        // Both run for the same time, started together: the sum of their rates.
        const both = await crew.run([[a, pairs(c)], [b, pairs(c)]]);
        (two[c] ??= []).push(perSecond(both[0]) + perSecond(both[1]));
        for (const y of [x, ...both]) sink ^= y.sink;
      }
      for (const c of roundOrder(RING_COLS, r)) {
        const got = await crew.run([
          [a, { type: "produce", contender: c, ring, n: RING_BLOCKS }],
          [b, { type: "consume", contender: c, ring, n: RING_BLOCKS }],
        ]);
        (pc[c] ??= []).push(RING_BLOCKS / (Math.max(got[0].ms, got[1].ms) / 1000));
      }
    }
    const med = (m: Partial<Record<Col, number[]>>) => {
      const out: Partial<Record<Col, number>> = {};
      for (const c of COLS) if (m[c] !== undefined) out[c] = median(m[c]!);
      return out;
    };
    const m1 = med(one), m2 = med(two);
    results.set(ROW_1W, m1);
    results.set(ROW_2W, m2);
    const sp: Partial<Record<Col, number>> = {};
    for (const c of WORKER_COLS) sp[c] = m2[c]! / m1[c]!;
    results.set(ROW_SPEEDUP, sp);
    results.set(ROW_PC, med(pc));
    await Promise.all([crew.ask(a, { type: "detach" }), crew.ask(b, { type: "detach" })]);
  } finally {
    crew.terminate();
    heap.vmem.free(ring, 64 + 4096 * 4);
  }
}

// ---- memory overhead of the batch: extent / peak busy ----

interface Overhead {
  who: string;
  busy: number;
  extent: number;
}

function overheads(): Overhead[] {
  const busy = SIZES.reduce((a, s) => a + s, 0);
  const out: Overhead[] = [];
  for (
    const [who, trust, libc] of [
      ["umem alloc/free", false, false],
      ["umem trust", true, false],
      ["umem libc", false, true],
    ] as const
  ) {
    const h = mk(trust);
    const base = h.vmem.stats().inUse;
    if (libc) { for (let i = 0; i < BATCH; i++) ptrs[i] = h.libc.malloc(SIZES[i]); }
    else for (let i = 0; i < BATCH; i++) ptrs[i] = h.alloc(SIZES[i]);
    out.push({ who, busy, extent: h.vmem.stats().inUse - base });
  }
  const p = pool(64 << 20);
  const top0 = p.top();
  for (let i = 0; i < BATCH; i++) ptrs[i] = p.m.malloc(SIZES[i]);
  out.push({ who: "thi.ng MemPool", busy, extent: p.top() - top0 });
  out.push({
    who: "floor (bump, 8-aligned)",
    busy,
    extent: SIZES.reduce((a, s) => a + ((s + 7) & ~7), 0),
  });
  return out;
}

// ---- memory overhead on the profile module's synthetic traces: peak extent / peak busy ----

/**
 * The traces (the fragment pattern has a table of its own below): `gawk` at a tenth of its
 * 700,000 allocations, since MemPool's first fit walks a free list that its leaking `realloc`
 * keeps long (the whole trace would take it minutes; a twentieth took 0.55 s).
 */
const TRACES: readonly (readonly [string, () => Trace])[] = [
  ["gawk", () => gawkTrace({ scale: 0.1 })],
  ["db", () => dbTrace()],
  ["parser", () => parserTrace()],
];
/** The profile module's adapters that run them, by column. */
const TRACE_ADAPTERS: readonly (readonly [string, string])[] = [
  ["umem alloc/free", "heap"],
  ["umem libc", "libc"],
  ["umem cache", "cache"],
  ["umem sbo arena", "bump"],
  ["umem budget context", "context"],
];
/** Bytes of MemPool's buffer for a trace: its `realloc` leaks (see the fragment pattern). */
const TRACE_POOL = 256 << 20;

/** MemPool behind the replay interface; its extent is the growth of its top. */
function poolAdapter(): ReplayAllocator {
  const p = pool(TRACE_POOL), top0 = p.top();
  return {
    name: "thi.ng MemPool",
    alloc: (n) => p.m.malloc(n),
    free: (q) => {
      p.m.free(q);
    },
    resize: (q, _old, n) => p.m.realloc(q, n),
    extent: () => p.top() - top0,
  };
}

/**
 * The floor of space: the live bytes, each block rounded to 8, with no fragmentation and no
 * metadata at all (no allocator can do with less); addresses are made up and never reused.
 */
function floorAdapter(): ReplayAllocator {
  let live = 0, next = 8;
  const take = (n: number) => {
    live += (n + 7) & ~7;
    next += (n + 7) & ~7 || 8;
    return next;
  };
  return {
    name: "floor (live bytes, 8-aligned)",
    alloc: take,
    free: (_q, n) => {
      live -= (n + 7) & ~7;
    },
    resize: (_q, old, n) => {
      live -= (old + 7) & ~7;
      return take(n);
    },
    extent: () => live,
  };
}

/** Each trace replayed against each allocator, space only: extent ÷ busy, or the failure. */
function traceOverheads(): { head: string[]; body: string[][]; notes: string[] } {
  const head = [
    "trace",
    "peak busy",
    ...TRACE_ADAPTERS.map(([who]) => who),
    "thi.ng MemPool",
    "floor (live bytes, 8-aligned)",
  ];
  const body: string[][] = [], notes: string[] = [];
  for (const [name, make] of TRACES) {
    const trace = make();
    const results = [
      ...TRACE_ADAPTERS.map(([, a]) => replay(trace, a, { time: false })),
      replay(trace, poolAdapter(), { time: false }),
      replay(trace, floorAdapter(), { time: false }),
    ];
    body.push([
      `${name} (${trace.count} records)`,
      kib(results[0].peakBusy),
      ...results.map((r) => times(r.ratio) + (r.failed !== undefined ? " (failed)" : "")),
    ]);
    for (const r of results) {
      if (r.failed !== undefined) notes.push(`${name}, ${r.allocator}: ${r.failed}`);
    }
  }
  return { head, body, notes };
}

// ---- the Vmalloc paper's fragment pattern ----

interface Fragment {
  who: string;
  moves: number;
  copied: number;
  extent: number;
  busy: number;
  /** The round at which an allocation failed (the pattern stops there). */
  failedAt?: number;
}

const FRAG_N = 10_000;
/** Bytes of MemPool's buffer for the fragment pattern: 100 times the peak busy. */
const FRAG_POOL = 64 << 20;

/**
 * `size=32; big=malloc(size); for 10000 times { small[n]=malloc(24); big=realloc(big,
 * size+=32) }`, counting the moves (realloc returned another address), the bytes copied (the
 * old size at each move), the extent (the most the heap's arena or the pool's top grew) and
 * the peak busy bytes (the sum of live sizes). Stops at the first failed allocation.
 */
function fragment(
  who: string,
  malloc: (n: number) => number,
  realloc: (p: number, n: number) => number,
  extentNow: () => number,
): Fragment {
  let size = 32, moves = 0, copied = 0, extent = 0, busy = 0;
  let big = malloc(size);
  const small = new Int32Array(FRAG_N);
  for (let n = 0; n < FRAG_N; n++) {
    small[n] = malloc(24);
    const old = size;
    size += 32;
    const q = realloc(big, size);
    if (q === 0 || small[n] === 0) return { who, moves, copied, extent, busy, failedAt: n };
    if (q !== big) {
      moves++;
      copied += old;
    }
    big = q;
    busy = Math.max(busy, 24 * (n + 1) + size);
    extent = Math.max(extent, extentNow());
  }
  return { who, moves, copied, extent, busy };
}

function fragments(): Fragment[] {
  const h = mk(false);
  const base = h.vmem.stats().inUse;
  const out = [fragment(
    "umem libc",
    (n) => h.libc.malloc(n),
    (p, n) => h.libc.realloc(p, n),
    () => h.vmem.stats().inUse - base,
  )];
  // Vmalloc's own answer in umem: a best-fit region, over a growable buffer of its own (the
  // paper's Vmdcsbrk, as in its Table 2) and over the heap (segments from the heap's arenas);
  // its extent is what it took from its discipline, as in the paper.
  for (
    const [who, disc] of [
      ["umem region best (growable)", growableDiscipline({ maxSize: 64 << 20 })],
      ["umem region best (heap)", heapDiscipline(mk(false))],
    ] as const
  ) {
    const r = Region.open(disc, "best");
    out.push(fragment(
      who,
      (n) => r.alloc(n),
      (q, n) => r.resize(q, n, { move: true, copy: true }),
      () => r.stat().extent,
    ));
  }
  const p = pool(FRAG_POOL);
  const top0 = p.top();
  out.push(fragment(
    "thi.ng MemPool",
    (n) => p.m.malloc(n),
    (q, n) => p.m.realloc(q, n),
    () => p.top() - top0,
  ));
  return out;
}

// ---- the report ----

function table(head: string[], body: string[][]): string {
  const lines = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const r of body) lines.push(`| ${r.join(" | ")} |`);
  return lines.join("\n");
}

const ROW_UNITS = new Map<string, string>();

function report(): string {
  const order = [...rows.map((r) => r.label), ROW_1W, ROW_2W, ROW_SPEEDUP, ROW_PC];
  for (const r of rows) ROW_UNITS.set(r.label, r.unit);
  ROW_UNITS.set(ROW_1W, "pairs/s");
  ROW_UNITS.set(ROW_2W, "pairs/s");
  ROW_UNITS.set(ROW_SPEEDUP, "speedup");
  ROW_UNITS.set(ROW_PC, "blocks/s");
  const noteOf = (label: string, c: Col) => {
    const cell = rows.find((r) => r.label === label)?.cells[c];
    return cell?.note ? ` (${cell.note})` : "";
  };
  const head = ["workload", "unit", ...COLS.map((c) => LABEL[c])];
  const medians = table(
    head,
    order.filter((l) => results.has(l)).map((l) => [
      l,
      ROW_UNITS.get(l)!,
      ...COLS.map((c) => {
        const v = results.get(l)![c];
        if (v === undefined) return "—";
        return (l === ROW_SPEEDUP ? times(v) : rate(v)) + noteOf(l, c);
      }),
    ]),
  );
  const ratios = table(
    ["workload", ...COLS.map((c) => LABEL[c])],
    order.filter((l) => results.has(l) && l !== ROW_SPEEDUP).map((l) => {
      const m = results.get(l)!;
      return [l, ...COLS.map((c) => (m[c] === undefined || !m.umem ? "—" : times(m.umem / m[c]!)))];
    }),
  );
  return `${medians}\n\numem alloc/free ÷ each contender (above 1: umem is faster):\n\n${ratios}`;
}

function verdict(ok: boolean, got: string, want: string, short: string): string {
  return ok ? `met (${got}; target ${want})` : `NOT met (${got}; target ${want}; ${short})`;
}

function targets(frag: Fragment[] | undefined): string[] {
  const r = (l: string) => results.get(l) ?? {};
  const p64 = r(ROW_PAIR64), batch = r(ROW_BATCH), obj = r(ROW_OBJ);
  const sp = r(ROW_SPEEDUP), pc = r(ROW_PC);
  const out: string[] = [];
  const pct = (got: number, want: number) => `${((1 - got / want) * 100).toFixed(0)}% short`;
  const over = (got: number, want: number) => `${((got / want - 1) * 100).toFixed(0)}% over`;
  const t = (name: string, got: number | undefined, want: number, fmt: (x: number) => string) => {
    if (got === undefined || Number.isNaN(got)) return;
    out.push(`- ${name}: ${verdict(got >= want, fmt(got), fmt(want), pct(got, want))}`);
  };
  const div = (a?: number, b?: number) => (a === undefined || b === undefined ? undefined : a / b);
  t("64 B pair", p64.umem, 100e6, (x) => `${rate(x)} pairs/s`);
  t("64 B pair against thi.ng MemPool", div(p64.umem, p64.mempool), 1.2, times);
  t("random batch", batch.umem, 20e6, (x) => `${rate(x)} ops/s`);
  t(
    `random batch against thi.ng MemPool${
      POOL_BATCH < BATCH ? ` (MemPool at ${POOL_BATCH / 1000}k)` : ""
    }`,
    div(batch.umem, batch.mempool),
    100,
    times,
  );
  t("two workers against one", sp.umem, 1.7, times);
  t("producer/consumer", pc.umem, 10e6, (x) => `${rate(x)} blocks/s`);
  t("cache with constructor against constructing each time", div(obj.cache, obj.umem), 5, times);
  if (frag === undefined) return out;
  const f = frag.find((x) => x.who === "umem region best (growable)") ?? frag[0];
  const le = (name: string, got: number, want: number, fmt: (x: number) => string) =>
    out.push(`- ${name}: ${verdict(got <= want, fmt(got), fmt(want), over(got, want))}`);
  le(`fragment pattern, moves (${f.who})`, f.moves, 12, String);
  le(`fragment pattern, bytes copied (${f.who})`, f.copied, 335 * 1024, kib);
  le(`fragment pattern, extent ÷ busy (${f.who})`, f.extent / f.busy, 1.2, times);
  return out;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const cores = navigator.hardwareConcurrency;
  console.log(`# umem compared (bench/compare.ts${QUICK ? " --quick" : ""})\n`);
  console.log(`- runtime: ${runtime()}`);
  console.log(`- os: ${process.platform} ${process.arch}, ${cores} CPUs, ${cpuModel()}`);
  console.log(
    `- medians of ${ROUNDS} rounds (batch: ${BATCH_ROUNDS}, workers: ${WORKER_ROUNDS}), ` +
      `contenders in alternating order; cells of about ${CELL_MS} ms`,
  );
  console.log("");
  if (ONLY.includes("single")) { for (const row of rows) await runRow(row); }
  if (ONLY.includes("workers")) await runWorkers();
  console.log(report());
  if (POOL_BATCH < BATCH && ONLY.includes("single")) {
    console.log(
      `\nMemPool's batch is its first ${POOL_BATCH / 1000}k blocks (same sizes, same free order):` +
        ` its free is quadratic in live blocks (the used list is walked, the free list compacted` +
        ` on every free), so 100k would take about two minutes a round and be slower still.` +
        ` --full-mempool runs it on all 100k.`,
    );
  }
  console.log(
    `\n${ENGINE} {} is a 4-field object literal whatever the size; the cache column of the` +
      ` 256 B row is a cache whose constructor ran once per buffer, the others construct the` +
      ` object (zero 256 bytes, a magic, a list head) on every allocation. Worker rows: each` +
      ` worker runs ${WORKER_MS} ms, the two started together at a barrier; the rounds` +
      ` alternate with producer/consumer, which moves buffers between the workers'` +
      ` magazines. MemPool is not thread-safe and the engine's objects cannot be shared` +
      ` between workers: — where not applicable.`,
  );

  const floorSpeedup = results.get(ROW_SPEEDUP)?.floor;
  if (floorSpeedup !== undefined && floorSpeedup < 1.8) {
    console.log(
      `\nWARNING: the floor (two bump pointers, nothing shared) scaled only` +
        ` ${times(floorSpeedup)} on two workers: this machine did not give the workers two` +
        ` free CPUs (${cores} CPUs; other load?), so the worker rows understate scaling.`,
    );
  }

  let frag: Fragment[] | undefined;
  if (ONLY.includes("memory")) frag = memory();
  console.log(`\nTargets (single worker unless said, ${runtime()}, this run):\n`);
  console.log(targets(frag).join("\n"));

  for (const h of [heap, trusting, arenaHeap, contextHeap]) {
    const bad = h.verify();
    if (bad.length > 0) throw new Error(`bench/compare.ts: heap is corrupt: ${bad[0]}`);
  }
  console.log(`\nheaps verified; ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (sink === 0.5) console.log(sink); // never: keeps `sink` observable
}

/** The two measurements that are not timings; returns the fragment pattern's rows. */
function memory(): Fragment[] {
  const ov = overheads();
  console.log(
    `\nMemory overhead of the ${BATCH / 1000}k batch (extent at peak ÷ bytes requested):\n`,
  );
  console.log(table(
    ["allocator", "requested", "extent", "extent ÷ requested"],
    ov.map((o) => [o.who, kib(o.busy), kib(o.extent), times(o.extent / o.busy)]),
  ));
  console.log(
    "\numem: growth of heap.vmem.stats().inUse over the empty heap (slabs, magazines and" +
      " metadata included); MemPool: growth of its top.",
  );

  const tr = traceOverheads();
  console.log(
    "\nMemory overhead on the profile module's synthetic traces (peak extent ÷ peak busy," +
      " replayed by profile/replay.ts):\n",
  );
  console.log(table(tr.head, tr.body));
  console.log(
    "\numem: what the adapter's heap took from its root arena (profile/allocators.ts); the sbo" +
      " arena frees only its last block, so it keeps the rest; MemPool: growth of its top (its" +
      " realloc leaks the old block on every move, see the fragment pattern); floor: the live" +
      " bytes rounded to 8." + tr.notes.map((n) => `\n- ${n}`).join(""),
  );

  const frag = fragments();
  console.log(
    `\nThe Vmalloc fragment pattern (${FRAG_N} rounds of malloc(24) + realloc(big, +32)):\n`,
  );
  console.log(table(
    ["allocator", "moves", "copied", "extent", "peak busy", "extent ÷ busy"],
    [
      ...frag.map((f) => [
        f.who,
        String(f.moves),
        kib(f.copied),
        kib(f.extent),
        kib(f.busy),
        times(f.extent / f.busy),
      ]),
      ["Vmalloc Vmbest (the paper)", "12", "335K", "—", "547K", "—"],
    ],
  ));
  for (const f of frag) {
    if (f.failedAt === undefined) continue;
    console.log(
      `\n${f.who}: out of memory in round ${f.failedAt + 1} of ${FRAG_N}, its ` +
        `${kib(FRAG_POOL)} buffer full (the figures are up to there).` +
        (f.who === "thi.ng MemPool"
          ? " Its realloc leaks the old block on every move: reallocBlock passes the block's" +
            " header address to free(), which takes a data address, finds no such block and" +
            " frees nothing."
          : ""),
    );
  }
  console.log(
    "\nextent: the most the heap's arena in use (umem libc), the region's segments (umem region) or the pool's top (MemPool) grew;" +
      " peak busy: 24 bytes per small block plus the big block's size.",
  );
  return frag;
}

await main();
