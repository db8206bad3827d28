/**
 * Sized allocation (core/heap.ts, core/size_class.ts), the malloc interface (core/libc.ts) and
 * object caches together: a model test over random command lists, libc unit tests, bad input,
 * trust mode and the oversize arena.
 *
 * Run: `npx deno test --allow-read --allow-env tests/alloc_test.ts` or
 * `npx bun test tests/alloc_test.ts`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mk, throwsKind } from "./helpers.ts";
import { checkPattern, fillPattern } from "./fuzz/runner.ts";
import fc from "fast-check";
import { type Cache, Heap, type HeapOptions, inspect, UmemError } from "../mod.ts";
import { UMEM_MAXBUF, UMEM_SIZE_CLASSES } from "../core/size_class.ts";
import { attachHeapHook } from "../core/internal.ts";

/** The smallest of libumem's size classes that holds `size` bytes. */
function libumemClass(size: number): number {
  return UMEM_SIZE_CLASSES.find((c) => c >= size)!;
}

/** The alignment `heap.alloc(size)` guarantees, as libumem's. */
function sizedAlign(size: number): number {
  if (size > UMEM_MAXBUF) return 4096; // whole pages from the oversize arena
  const c = libumemClass(size);
  return c % 64 === 0 ? 64 : c >= 16 ? 16 : 8;
}

// ---- byte patterns: block `id` holds byte (id * 151 + i) & 255 at offset i (the fuzzers' own,
// tests/fuzz/runner.ts; each syncs first: another handle may have grown the heap since) ----

const fill = fillPattern;

function assertZero(heap: Heap, addr: number, size: number, what: string): void {
  heap.sync();
  const u8 = heap.u8;
  for (let i = 0; i < size; i++) {
    if (u8[addr + i] !== 0) assert.fail(`${what}: byte ${i} of ${addr} is ${u8[addr + i]}`);
  }
}

// ---- the model test ----

type Op =
  | { op: "alloc" | "zalloc"; size: number }
  | { op: "free" | "cfree" | "cachefree"; pick: number }
  | { op: "malloc"; size: number }
  | { op: "calloc"; n: number; size: number }
  | { op: "realloc"; pick: number; size: number }
  | { op: "memalign"; align: number; size: number }
  | { op: "mkcache"; size: number; align: number }
  | { op: "cachealloc"; pick: number }
  | { op: "reap" };

/** A command, run through the creator's handle or (`w`) a second worker handle. */
type Cmd = Op & { w?: boolean };

type Kind = "sized" | "libc" | "cache";

interface Block {
  id: number;
  kind: Kind;
  addr: number;
  size: number;
  /** First byte the block owns: the malloc header for libc blocks. */
  lo: number;
  /** For cache blocks: the index of the cache. */
  cache?: number;
}

const sizeArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 1024 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 200000 }) },
  { weight: 3, arbitrary: fc.constantFrom(...UMEM_SIZE_CLASSES) },
);

const libcSizeArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 5000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 150000 }) },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("alloc" as const), size: sizeArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("zalloc" as const), size: sizeArb }) },
  { weight: 7, arbitrary: fc.record({ op: fc.constant("free" as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("malloc" as const), size: libcSizeArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("calloc" as const),
      n: fc.integer({ min: 0, max: 40 }),
      size: fc.integer({ min: 0, max: 200 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("realloc" as const),
      pick: fc.nat(),
      size: fc.oneof(fc.integer({ min: 1, max: 400 }), libcSizeArb),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("memalign" as const),
      align: fc.constantFrom(16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
      size: fc.integer({ min: 0, max: 3000 }),
    }),
  },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("cfree" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("mkcache" as const),
      size: fc.oneof(fc.integer({ min: 1, max: 256 }), fc.integer({ min: 1, max: 9000 })),
      align: fc.constantFrom(8, 16, 64, 256, 4096),
    }),
  },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("cachealloc" as const), pick: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant("cachefree" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: "reap" as const }) },
);

/** Commands, a quarter of them through the second worker handle. */
const cmdArb: fc.Arbitrary<Cmd> = fc.tuple(opArb, fc.nat(3)).map(([op, k]) =>
  k === 0 ? { ...op, w: true } : op
);

/** Runs one command list against a fresh heap and checks it against the model. */
function runModel(cmds: Cmd[], options: HeapOptions = {}): void {
  const heap = mk({ size: 1 << 20, ...options });
  const other = Heap.attach(heap.buffer); // another worker slot, in this thread
  const live: Block[] = [];
  const caches: [Cache, Cache][] = []; // each cache through both handles
  let nextId = 1;

  const add = (b: Omit<Block, "id">, align: number, zeroed: boolean): void => {
    assert.ok(b.addr > 0, `${b.kind} returned ${b.addr}`);
    assert.equal(b.addr % align, 0, `${b.kind} of ${b.size} at ${b.addr} not ${align}-aligned`);
    if (zeroed) assertZero(heap, b.addr, b.size, `${b.kind} of ${b.size}`);
    const block = { ...b, id: nextId++ };
    fill(heap, block.id, block.addr, block.size);
    live.push(block);
  };
  const take = (kind: Kind, pick: number): Block | undefined => {
    const of = live.filter((b) => b.kind === kind);
    if (of.length === 0) return undefined;
    const b = of[pick % of.length];
    live.splice(live.indexOf(b), 1);
    checkPattern(heap, b.id, b.addr, b.size, `before freeing`);
    return b;
  };
  const noOverlap = (): void => {
    const sorted = [...live].sort((a, b) => a.lo - b.lo);
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1], b = sorted[i];
      assert.ok(
        a.addr + a.size <= b.lo,
        `${a.kind} [${a.addr}, +${a.size}) overlaps ${b.kind} [${b.lo}, ${b.addr}+${b.size})`,
      );
    }
  };

  cmds.forEach((c, step) => {
    const h = c.w === true ? other : heap, side = c.w === true ? 1 : 0;
    switch (c.op) {
      case "alloc":
      case "zalloc": {
        const addr = c.op === "alloc" ? h.alloc(c.size) : h.zalloc(c.size);
        add(
          { kind: "sized", addr, size: c.size, lo: addr },
          sizedAlign(c.size),
          c.op === "zalloc",
        );
        break;
      }
      case "free": {
        const b = take("sized", c.pick);
        if (b !== undefined) h.free(b.addr, b.size);
        break;
      }
      case "malloc": {
        const addr = h.libc.malloc(c.size);
        assert.ok(h.libc.usableSize(addr) >= c.size);
        add({ kind: "libc", addr, size: c.size, lo: addr - 8 }, 8, false);
        break;
      }
      case "calloc": {
        const addr = h.libc.calloc(c.n, c.size);
        add({ kind: "libc", addr, size: c.n * c.size, lo: addr - 8 }, 8, true);
        break;
      }
      case "memalign": {
        const addr = h.libc.memalign(c.align, c.size);
        assert.ok(h.libc.usableSize(addr) >= c.size);
        add({ kind: "libc", addr, size: c.size, lo: addr - 8 }, c.align, false);
        break;
      }
      case "realloc": {
        const b = take("libc", c.pick);
        if (b === undefined) break;
        const addr = h.libc.realloc(b.addr, c.size);
        if (c.size === 0) {
          assert.equal(addr, 0, "realloc(p, 0) frees p and returns 0");
          break;
        }
        // The old contents stay, up to the smaller size.
        checkPattern(heap, b.id, addr, Math.min(b.size, c.size), `realloc ${b.size}→${c.size}`);
        add({ kind: "libc", addr, size: c.size, lo: addr - 8 }, 8, false);
        break;
      }
      case "cfree": {
        const b = take("libc", c.pick);
        if (b !== undefined) h.libc.free(b.addr);
        break;
      }
      case "mkcache": {
        if (caches.length >= 4) break;
        const name = `model_${caches.length}`;
        const cache = h.createCache(name, c.size, { align: c.align });
        assert.equal(cache.stats().inUse, 0);
        const pair: [Cache, Cache] = side === 0
          ? [cache, other.cache(name)]
          : [heap.cache(name), cache];
        caches.push(pair);
        break;
      }
      case "cachealloc": {
        if (caches.length === 0) break;
        const k = c.pick % caches.length, cache = caches[k][side];
        const addr = cache.alloc();
        const s = cache.stats();
        add({ kind: "cache", addr, size: s.bufsize, lo: addr, cache: k }, s.align, false);
        break;
      }
      case "cachefree": {
        const b = take("cache", c.pick);
        if (b !== undefined) caches[b.cache!][side].free(b.addr);
        break;
      }
      case "reap":
        h.reap();
        break;
    }
    noOverlap();
    if (step % 20 === 19) assert.deepEqual(heap.verify(), [], `after command ${step}`);
  });

  assert.deepEqual(heap.verify(), []);
  // Every block still holds its pattern; free them all.
  for (const b of live) {
    checkPattern(heap, b.id, b.addr, b.size, "at the end");
    if (b.kind === "sized") heap.free(b.addr, b.size);
    else if (b.kind === "libc") heap.libc.free(b.addr);
    else caches[b.cache!][0].free(b.addr);
  }
  other.detach(); // gives its magazines back
  heap.reap();
  assert.deepEqual(heap.verify(), []);
  for (const cache of heap.caches()) {
    const s = cache.stats();
    assert.equal(s.inUse, 0, cache.name);
    assert.equal(s.allocs, s.frees, cache.name);
  }
  assert.equal(heap.arena("umem_oversize").stats().inUse, 0);
  assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
}

describe("model: sized, libc and cache allocations against a model", () => {
  it("random command lists keep blocks apart, aligned, intact and accounted for", () => {
    fc.assert(
      fc.property(
        fc.array(cmdArb, { minLength: 1, maxLength: 200, size: "max" }),
        (cmds) => runModel(cmds),
      ),
      { seed: 0x5eed, numRuns: 400, interruptAfterTimeLimit: 30000 },
    );
  });

  it("a long command list", () => {
    fc.assert(
      fc.property(
        fc.array(cmdArb, { minLength: 800, maxLength: 1200, size: "max" }),
        (cmds) => runModel(cmds),
      ),
      { seed: 42, numRuns: 20, interruptAfterTimeLimit: 30000 },
    );
  });

  it("a scripted run through every command", () => {
    runModel([
      { op: "alloc", size: 1 },
      { op: "zalloc", size: 64 },
      { op: "alloc", size: 131072 },
      { op: "alloc", size: 131073 },
      { op: "malloc", size: 0 },
      { op: "calloc", n: 3, size: 7 },
      { op: "memalign", align: 4096, size: 10 },
      { op: "realloc", pick: 0, size: 5000 },
      { op: "realloc", pick: 1, size: 3 },
      { op: "mkcache", size: 24, align: 8 },
      { op: "mkcache", size: 5000, align: 4096 },
      { op: "cachealloc", pick: 0 },
      { op: "cachealloc", pick: 1 },
      { op: "reap" },
      { op: "free", pick: 0 },
      { op: "cfree", pick: 0 },
      { op: "cachefree", pick: 1 },
    ]);
  });
});

describe("model: the same under UMEM_DEBUG and UMEM_LOGGING", () => {
  const rows: [string, string, string][] = [
    ["guards,noabort", "", ""],
    ["default,noabort", "transaction,contents", ""],
    ["firewall=8192,noabort", "", ""],
    ["", "", "nomagazines"],
  ];
  for (const [debug, logging, options] of rows) {
    it(`debug '${debug}', logging '${logging}', options '${options}'`, () => {
      fc.assert(
        fc.property(
          fc.array(cmdArb, { minLength: 1, maxLength: 150, size: "max" }),
          (cmds) => runModel(cmds, { debug, logging, options }),
        ),
        { seed: 0xdeb, numRuns: 40, interruptAfterTimeLimit: 30000 },
      );
    });
  }

  it("with debugging on, realloc in place and usableSize respect the buffer tag", () => {
    for (
      const [debug, logging] of [["guards,noabort", ""], ["audit,noabort", ""], ["", "transaction"]]
    ) {
      const heap = mk({ debug, logging });
      const { libc } = heap;
      const p = libc.malloc(20);
      const q = libc.realloc(p, 22);
      fill(heap, 1, q, 22);
      libc.free(q); // throws wrong-size / redzone-violation
      const r = libc.malloc(20);
      fill(heap, 2, r, libc.usableSize(r));
      libc.free(r); // throws redzone-violation
      assert.deepEqual(heap.verify(), []);
    }
  });
});

describe("libc: malloc, calloc, realloc, memalign, free, usableSize", () => {
  it("realloc stays in place within the same size class", () => {
    const heap = mk();
    const { libc } = heap;
    const p = libc.malloc(20);
    fill(heap, 1, p, 20);
    assert.equal(libc.realloc(p, 22), p);
    checkPattern(heap, 1, p, 20, "in place");
    assert.equal(libc.realloc(p, 17), p, "shrinking within the class stays too");
    checkPattern(heap, 1, p, 17, "in place");
    assert.ok(libc.usableSize(p) >= 17);
    libc.free(p);
    assert.deepEqual(heap.verify(), []);
  });

  it("realloc moves to a new block otherwise, with the contents preserved", () => {
    const heap = mk();
    const { libc } = heap;
    let p = libc.malloc(20);
    fill(heap, 2, p, 20);
    const steps = [500, 5000, 140000, 300000, 1000, 10, 1];
    let size = 20;
    for (const n of steps) {
      const q = libc.realloc(p, n);
      checkPattern(heap, 2, q, Math.min(size, n), `realloc ${size}→${n}`);
      assert.ok(libc.usableSize(q) >= n);
      if (q !== p) throwsKind(() => libc.free(p), ["duplicate-free", "bad-free"]);
      fill(heap, 2, q, n);
      p = q;
      size = n;
      assert.deepEqual(heap.verify(), []);
    }
    libc.free(p);
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });

  it("realloc(0, n) is malloc(n); realloc(p, 0) frees p and returns 0; free(0) does nothing", () => {
    const heap = mk();
    const { libc } = heap;
    const p = libc.realloc(0, 100);
    assert.ok(p > 0 && p % 8 === 0);
    assert.ok(libc.usableSize(p) >= 100);
    assert.equal(libc.realloc(p, 0), 0);
    throwsKind(() => libc.free(p), ["duplicate-free", "bad-free"]);
    libc.free(0);
    assert.deepEqual(heap.verify(), []);
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });

  it("usableSize is at least what was asked, and all of it may be written", () => {
    const heap = mk();
    const { libc } = heap;
    const sizes = [0, 1, 7, 8, 9, 24, 100, 1000, 1016, 1017, 2000, 4000, 10000, 131064, 131065];
    const blocks = sizes.map((n, i) => ({ p: libc.malloc(n), n, id: i + 10 }));
    const aligned = [16, 64, 256, 4096].map((a, i) => ({
      p: libc.memalign(a, 100 * (i + 1)),
      n: 100 * (i + 1),
      id: i + 100,
    }));
    const all = [...blocks, ...aligned];
    for (const b of all) {
      const u = libc.usableSize(b.p);
      assert.ok(u >= b.n, `usableSize(${b.n}) = ${u}`);
      fill(heap, b.id, b.p, u);
    }
    for (const b of all) checkPattern(heap, b.id, b.p, libc.usableSize(b.p), "usable bytes");
    assert.deepEqual(heap.verify(), []);
    for (const b of all) libc.free(b.p);
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });

  it("memalign honours every power-of-two alignment", () => {
    const heap = mk();
    const { libc } = heap;
    const ptrs: number[] = [];
    for (let a = 1; a <= 65536; a *= 2) {
      for (const n of [0, 1, 100, 5000]) {
        const p = libc.memalign(a, n);
        assert.equal(p % Math.max(a, 8), 0, `memalign(${a}, ${n}) = ${p}`);
        assert.ok(libc.usableSize(p) >= n);
        heap.u8.fill(0xab, p, p + n);
        ptrs.push(p);
      }
    }
    assert.deepEqual(heap.verify(), []);
    for (const p of ptrs) libc.free(p);
    for (const a of [0, 3, 24, -8, 1.5]) throwsKind(() => libc.memalign(a, 10), "invalid-argument");
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });

  it("calloc zeroes its memory and rejects sizes that overflow", () => {
    const heap = mk();
    const { libc } = heap;
    // Dirty some blocks so that calloc gets used memory back.
    for (const n of [100, 1000, 50000]) {
      const p = libc.malloc(n);
      heap.u8.fill(0xff, p, p + n);
      libc.free(p);
    }
    for (const [n, size] of [[10, 10], [1, 1000], [50, 1000], [0, 5], [5, 0]]) {
      const p = libc.calloc(n, size);
      assertZero(heap, p, n * size, `calloc(${n}, ${size})`);
      assert.ok(libc.usableSize(p) >= n * size);
      libc.free(p);
    }
    throwsKind(() => libc.calloc(2 ** 20, 2 ** 20), "invalid-argument");
    throwsKind(() => libc.calloc(2 ** 16, 2 ** 15), "invalid-argument");
    throwsKind(() => libc.calloc(-1, 8), "invalid-argument");
    throwsKind(() => libc.calloc(8, 1.5), "invalid-argument");
    throwsKind(() => libc.malloc(-1), "invalid-argument");
    throwsKind(() => libc.malloc(0.5), "invalid-argument");
    throwsKind(() => libc.realloc(0, -1), "invalid-argument");
    assert.deepEqual(heap.verify(), []);
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });

  it("malloc(0) returns distinct blocks", () => {
    const heap = mk();
    const ps = Array.from({ length: 10 }, () => heap.libc.malloc(0));
    assert.equal(new Set(ps).size, 10);
    for (const p of ps) heap.libc.free(p);
    assert.deepEqual(heap.verify(), []);
  });

  // malloc and free have a fast path of their own (sizes up to 32 KiB, plain headers, a heap
  // that neither debugs nor hooks nor trusts); every other case takes the checked way. Both
  // must give the same blocks, headers and refusals.
  for (const options of [{}, { trust: true }, { debug: "guards,noabort" }] as HeapOptions[]) {
    it(`the fast and the checked way agree (${JSON.stringify(options)})`, () => {
      const heap = mk({ size: 1 << 20, ...options }), { libc } = heap;
      const sizes = [0, 1, 7, 8, 100, 32759, 32767, 32768, 40000, UMEM_MAXBUF, UMEM_MAXBUF + 1];
      const blocks = sizes.map((n, id) => {
        const p = libc.malloc(n);
        assert.equal(p % 8, 0);
        assert.ok(libc.usableSize(p) >= n);
        fillPattern(heap, id, p, n);
        return p;
      });
      sizes.forEach((n, id) => checkPattern(heap, id, blocks[id], n, `malloc(${n})`));
      for (const p of blocks) libc.free(p);
      assert.deepEqual(heap.verify(), []);
      // A second free, a pointer into a block, an odd one, one past the heap: refused.
      const p = libc.malloc(24);
      libc.free(p);
      if (options.trust !== true) throwsKind(() => libc.free(p), ["duplicate-free", "bad-free"]);
      const q = libc.malloc(24);
      throwsKind(() => libc.free(q + 8), "bad-free");
      throwsKind(() => libc.free(q + 3), "bad-free");
      throwsKind(() => libc.free(q + 0.5), "bad-free");
      throwsKind(() => libc.free(heap.size + 64), "bad-free");
      libc.free(q);
      // A memalign block goes the checked way; so does a bad size.
      const a = libc.memalign(256, 100);
      libc.free(a);
      throwsKind(() => libc.malloc(-1), "invalid-argument");
      throwsKind(() => libc.malloc(1.5), "invalid-argument");
      assert.deepEqual(heap.verify(), []);
    });
  }

  it("free of a block from memory another worker grew the heap by, past this handle's views", () => {
    const heap = mk({ size: 1 << 20 }), other = Heap.attach(heap.buffer);
    const before = heap.u8.length;
    const big = other.alloc(2 << 20); // grows the heap; this handle's views stay as they were
    const ps = Array.from({ length: 2000 }, () => other.libc.malloc(1000));
    const far = ps.filter((p) => p >= before);
    assert.ok(far.length > 0, "some blocks lie past the first handle's views");
    assert.equal(heap.u8.length, before);
    for (const p of ps) heap.libc.free(p); // found after a sync, not refused
    other.free(big, 2 << 20);
    other.detach();
    assert.deepEqual(heap.verify(), []);
  });
});

describe("libc: memalign blocks and the pointers that are not theirs (from an audit)", () => {
  for (const debug of ["", "guards,noabort", "contents,noabort"]) {
    it(`a stale memalign pointer does not free the block now in its buffer (${debug || "none"})`, () => {
      const heap = Heap.create({ size: 4 << 20, debug });
      const { libc } = heap;
      const m = libc.memalign(4096, 100);
      libc.free(m);
      const q = libc.malloc(5000); // the same size class: the buffer again
      heap.u8.fill(1, q, q + 100);
      throwsKind(() => libc.free(m), ["bad-free", "duplicate-free"]);
      libc.free(q); // still the new owner's, and live
      assert.deepEqual(heap.verify(), []);
    });

    it(`free(p - 8) of a memalign(16) block is no free of it (${debug || "none"})`, () => {
      const heap = Heap.create({ size: 4 << 20, debug });
      const { libc } = heap;
      let tried = 0;
      for (let i = 0; i < 8; i++) {
        const p = libc.memalign(16, 40);
        if (heap.i32[(p - 8) >> 2] !== 16) continue; // aligned past one header only
        tried++;
        throwsKind(() => libc.free(p - 8), "bad-free");
        libc.free(p);
      }
      assert.ok(tried > 0);
      assert.deepEqual(heap.verify(), []);
    });
  }
});

describe("bad input: a clear error, and the heap unharmed", () => {
  it("every row throws its kind; verify() stays clean and allocation still works", () => {
    const heap = mk({ size: 2 << 20 });
    const { libc } = heap;
    const A = heap.createCache("bad_a", 64), B = heap.createCache("bad_b", 64);
    // Live blocks the rows aim at; they must come through every row unchanged.
    const p = heap.alloc(50), p48 = heap.alloc(48), big = heap.alloc(200000);
    const a = A.alloc(), m = libc.malloc(40);
    const keep: [number, number, number][] = [[p, 50, 1], [p48, 48, 2], [big, 200000, 3]];
    keep.push([a, 64, 4], [m, 40, 5]);
    for (const [at, size, id] of keep) fill(heap, id, at, size);
    // Pages taken straight from vmem: in the heap, but never a buffer of any cache.
    const span = heap.vmem.alloc(8192);
    const never = span + 4096;
    const end = heap.size;
    const freed = (size: number) => {
      const q = heap.alloc(size);
      heap.free(q, size);
      return q;
    };
    const mfreed = () => {
      const q = libc.malloc(24);
      libc.free(q);
      return q;
    };

    // deno-lint-ignore no-explicit-any
    const any = (x: unknown) => x as any;
    const rows: [string, string, () => unknown][] = [
      ["free of an address never allocated", "bad-free", () => heap.free(never, 64)],
      ["free of a never-allocated address, large size", "bad-free", () => heap.free(never, 3000)],
      ["free inside the header", "bad-free", () => heap.free(64, 8)],
      ["free of the page map", "bad-free", () => heap.free(4096, 64)],
      ["free past the end", "bad-free", () => heap.free(end + 4096, 64)],
      ["free far past the end", "bad-free", () => heap.free(2 ** 31 - 8, 64)],
      ["free of an odd address", "bad-free", () => heap.free(p + 1, 50)],
      // (Just allocated: no deferred free of the slot's sends it off the fast path first.)
      ["free of a live buffer's address plus a half", "invalid-argument", () => {
        const q = heap.alloc(50);
        try {
          heap.free(q + 0.5, 50);
        } finally {
          heap.free(q, 50);
        }
      }],
      ["free of an interior pointer", "bad-free", () => heap.free(p + 8, 50)],
      ["free of an interior pointer on a granule", "bad-free", () => heap.free(p48 + 16, 48)],
      ["free of a slab's last bytes", "bad-free", () => heap.free((p | 4095) - 7, 50)],
      ["second free", "duplicate-free", () => heap.free(freed(50), 50)],
      ["second free after a reap", "duplicate-free", () => {
        const q = heap.alloc(100);
        const keepSlab = heap.alloc(100); // the slab stays
        heap.free(q, 100);
        heap.reap();
        try {
          heap.free(q, 100);
        } finally {
          heap.free(keepSlab, 100);
        }
      }],
      ["free with the size of another class", "wrong-size", () => heap.free(p, 200)],
      ["free with a smaller class's size", "wrong-size", () => heap.free(p, 8)],
      ["cache buffer freed to another user cache", "wrong-cache", () => B.free(a)],
      ["cache buffer freed with heap.free", "wrong-cache", () => heap.free(a, 64)],
      ["sized buffer freed to a user cache", "wrong-cache", () => A.free(p)],
      ["cache free of an address never allocated", "bad-free", () => A.free(never)],
      ["cache second free", "duplicate-free", () => {
        const q = A.alloc();
        A.free(q);
        A.free(q);
      }],
      ["alloc(-1)", "invalid-argument", () => heap.alloc(-1)],
      ["alloc(NaN)", "invalid-argument", () => heap.alloc(NaN)],
      ["alloc(1.5)", "invalid-argument", () => heap.alloc(1.5)],
      ["alloc(2**32)", "invalid-argument", () => heap.alloc(2 ** 32)],
      ["alloc(Infinity)", "invalid-argument", () => heap.alloc(Infinity)],
      ['alloc("8")', "invalid-argument", () => heap.alloc(any("8"))],
      ["alloc(undefined)", "invalid-argument", () => heap.alloc(any(undefined))],
      ["zalloc(-1)", "invalid-argument", () => heap.zalloc(-1)],
      ["free with size -1", "invalid-argument", () => heap.free(p, -1)],
      ["free with size 1.5", "invalid-argument", () => heap.free(p, 1.5)],
      ["free with size NaN", "invalid-argument", () => heap.free(p, NaN)],
      ["free with size 0", "bad-free", () => heap.free(p, 0)],
      ['free of "123"', "invalid-argument", () => heap.free(any(String(p)), 50)],
      ["free of 1.5", "invalid-argument", () => heap.free(1.5, 50)],
      ["libc.free of a non-malloc pointer", "bad-free", () => libc.free(p)],
      ["libc.free of a cache buffer", "bad-free", () => libc.free(a)],
      ["libc.free of a never-allocated address", "bad-free", () => libc.free(never)],
      ["libc.free of an odd address", "bad-free", () => libc.free(m + 1)],
      ["libc.free of an interior pointer", "bad-free", () => libc.free(m + 8)],
      ["libc.free past the end", "bad-free", () => libc.free(end + 64)],
      ["libc.realloc of a non-malloc pointer", "bad-free", () => libc.realloc(p, 10)],
      ["libc.usableSize of a non-malloc pointer", "bad-free", () => libc.usableSize(p)],
      ["libc double free", "duplicate-free|bad-free", () => libc.free(mfreed())],
      // (its header outlives the free: before the fix realloc resized the freed block, which
      // the next malloc handed out again)
      ["libc.realloc of a freed block", "bad-free", () => libc.realloc(mfreed(), 5)],
      ["libc.usableSize of a freed block", "bad-free", () => libc.usableSize(mfreed())],
      ["libc.realloc of a freed block past 128 KiB", "bad-free", () => {
        const q = libc.malloc(200_000);
        libc.free(q);
        libc.realloc(q, 200_001); // before the fix: returned as live, its pages another's
      }],
      ["oversize free with a smaller size", "bad-free|wrong-size", () => heap.free(big, 150000)],
      ["oversize free with a larger size", "wrong-size", () => heap.free(big, 300000)],
      ["oversize free of an interior page", "bad-free", () => heap.free(big + 4096, 200000)],
      ["oversize free with a small size", "bad-free", () => heap.free(big, 64)],
    ];
    for (const [what, kinds, act] of rows) {
      assert.throws(act, (e: unknown) => {
        assert.ok(e instanceof UmemError, `${what}: ${String(e)}`);
        assert.ok(kinds.split("|").includes(e.kind), `${what}: ${e.kind}: ${e.message}`);
        assert.ok(e.message.length > 0);
        return true;
      }, what);
      assert.deepEqual(heap.verify(), [], what);
      for (const [at, size, id] of keep) checkPattern(heap, id, at, size, what);
      const q = heap.alloc(50);
      heap.free(q, 50);
      A.free(A.alloc());
      libc.free(libc.malloc(10));
    }
    // The blocks the rows aimed at free normally: nothing about them changed.
    heap.free(p, 50);
    heap.free(p48, 48);
    heap.free(big, 200000);
    A.free(a);
    libc.free(m);
    A.destroy();
    B.destroy();
    heap.vmem.free(span, 8192);
    heap.reap();
    assert.deepEqual(heap.verify(), []);
    for (const c of heap.caches()) assert.equal(c.stats().inUse, 0, c.name);
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });

  it("alloc(0) returns 0 and free(0, 0) does nothing", () => {
    const heap = mk();
    const before = heap.vmem.stats();
    assert.equal(heap.alloc(0), 0);
    assert.equal(heap.zalloc(0), 0);
    heap.free(0, 0);
    heap.free(0, 2000);
    heap.free(0, 200000);
    assert.deepEqual(heap.vmem.stats(), before);
    assert.deepEqual(heap.verify(), []);
  });

  it("a free above 1 KiB takes the same checks as a small one (the fast path serves both)", () => {
    const heap = mk();
    const p = heap.alloc(3000), q = heap.alloc(20000);
    throwsKind(() => heap.free(p, 5000), "wrong-size"); // the 5120 class, not p's 3072
    throwsKind(() => heap.free(p + 256, 3000), "bad-free"); // inside the buffer
    throwsKind(() => heap.free(q, 3000), "wrong-size");
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 3000);
    throwsKind(() => heap.free(p, 3000), "duplicate-free");
    heap.free(q, 20000);
    throwsKind(() => heap.free(q, 20000), "duplicate-free");
    assert.deepEqual(heap.verify(), []);
  });

  it("free(0, n) does nothing for every size", () => {
    const heap = mk();
    for (const n of [1, 8, 64, 1024]) heap.free(0, n);
    assert.deepEqual(heap.verify(), []);
    const trusting = mk({ trust: true });
    trusting.free(0, 8);
    assert.notEqual(trusting.alloc(8), 0, "NULL went into a magazine");
  });
});

describe("trust mode", () => {
  it("allocates and frees correctly (a small model run)", () => {
    fc.assert(
      fc.property(
        fc.array(cmdArb, { minLength: 1, maxLength: 100, size: "max" }),
        (cmds) => runModel(cmds, { trust: true }),
      ),
      { seed: 7, numRuns: 100, interruptAfterTimeLimit: 30000 },
    );
  });

  it("skips the checks on free: bad frees do not throw", () => {
    // `trust` is Vmalloc's VM_TRUST: heap.free and cache.free believe their caller and skip
    // every check (live buffer, right cache, right size, not freed twice). Each free below
    // corrupts the heap silently, so this heap is thrown away after it and never verified.
    // Sizes are still checked (a bad size is refused before anything is touched), and the
    // libc interface still reads its block header.
    const heap = mk({ trust: true });
    assert.ok(heap.trusted);
    const A = heap.createCache("trust_a", 64), B = heap.createCache("trust_b", 64);
    const p = heap.alloc(50), q = heap.alloc(50), r = heap.alloc(50), a = A.alloc();
    heap.free(q, 50);
    const frees: [string, () => void][] = [
      ["never allocated", () => heap.free(12345, 8)],
      ["inside the header", () => heap.free(64, 8)],
      ["interior pointer", () => heap.free(p + 8, 50)],
      ["second free", () => heap.free(q, 50)],
      ["wrong size", () => heap.free(r, 200)],
      ["wrong cache", () => B.free(a)],
    ];
    for (const [what, act] of frees) assert.doesNotThrow(act, what);
    throwsKind(() => heap.free(p, -1), "invalid-argument");
    throwsKind(() => heap.alloc(1.5), "invalid-argument");
  });

  it("a handle attached to a trusting heap trusts too; with a hook, its frees go by the hook", () => {
    const heap = mk({ trust: true });
    const w = Heap.attach(heap.buffer);
    assert.ok(w.trusted);
    const q = w.alloc(50);
    w.free(q, 50);
    assert.doesNotThrow(() => w.free(q, 50), "second free"); // corrupts: heap thrown away

    const h2 = mk({ trust: true }), lines: string[] = [];
    const detach = attachHeapHook(h2, {
      free: (a, n) => lines.push(`free ${a} ${n}`),
      freed: (a, n) => lines.push(`freed ${a} ${n}`),
    });
    for (const n of [24, 5000, 300_000]) {
      const a = h2.alloc(n);
      h2.free(a, n);
      assert.deepEqual(lines.splice(0), [`free ${a} ${n}`, `freed ${a} ${n}`], `size ${n}`);
    }
    detach();
    assert.deepEqual(h2.verify(), []);
  });
});

describe("oversize allocations", () => {
  it("sizes past 128 KiB come from the umem_oversize arena and go back to it", () => {
    const heap = mk();
    const over = heap.arena("umem_oversize");
    assert.equal(over.stats().inUse, 0);
    const a = heap.alloc(200000);
    assert.equal(a % 4096, 0);
    assert.equal(over.stats().inUse, 49 * 4096);
    const b = heap.alloc(5 << 20); // grows the heap
    assert.equal(b % 4096, 0);
    assert.equal(over.stats().inUse, 49 * 4096 + (5 << 20));
    heap.u8.fill(1, a, a + 200000);
    heap.u8.fill(2, b, b + (5 << 20));
    assert.ok(a + 200000 <= b || b + (5 << 20) <= a);
    const c = heap.alloc(UMEM_MAXBUF);
    assert.equal(over.stats().inUse, 49 * 4096 + (5 << 20), "131072 is still a size class");
    heap.free(c, UMEM_MAXBUF);
    const z = heap.zalloc(UMEM_MAXBUF + 1);
    assertZero(heap, z, UMEM_MAXBUF + 1, "zalloc(131073)");
    heap.free(z, UMEM_MAXBUF + 1);
    heap.free(a, 200000);
    assert.equal(over.stats().inUse, 5 << 20);
    throwsKind(() => heap.free(b, 1 << 20), ["wrong-size", "bad-free"]);
    throwsKind(() => heap.free(b, 200000), ["wrong-size", "bad-free"]);
    throwsKind(() => heap.free(a, 200000), ["bad-free", "duplicate-free"]);
    assert.deepEqual(heap.verify(), []);
    heap.free(b, 5 << 20);
    assert.equal(over.stats().inUse, 0);
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });
});

describe("size classes", () => {
  it("every size up to 1024 is served by the smallest class that holds it", () => {
    const heap = mk();
    const byName = new Map(heap.caches().map((c) => [c.name, c]));
    for (let size = 1; size <= 1024; size++) {
      const p = heap.alloc(size);
      const cls = byName.get(`umem_alloc_${libumemClass(size)}`)!;
      assert.equal(cls.stats().inUse, 1, `alloc(${size}) from ${cls.name}`);
      assert.equal(p % sizedAlign(size), 0);
      heap.free(p, size);
    }
    assert.deepEqual(heap.verify(), []);
  });

  it("every size up to 128 KiB is served by a class at least as large, aligned", () => {
    const heap = mk();
    const classes = heap.caches().filter((c) => c.name.startsWith("umem_alloc_"));
    assert.equal(classes.length, UMEM_SIZE_CLASSES.length);
    for (let size = 1025; size <= UMEM_MAXBUF; size += 509) {
      const p = heap.alloc(size);
      const from = classes.filter((c) => c.stats().inUse === 1);
      assert.equal(from.length, 1);
      assert.ok(from[0].bufsize >= size, `alloc(${size}) from ${from[0].name}`);
      assert.equal(p % sizedAlign(size), 0);
      heap.free(p, size);
    }
  });

  it("UMEM_OPTIONS size_add and size_remove change the classes, as libumem's", () => {
    const heap = mk({ size: 1 << 20, options: "size_add=24,size_remove=48,size_add=100" });
    // The classes the test expects: libumem's less 48, plus 24 and 100 rounded up to 104.
    const want = [...UMEM_SIZE_CLASSES.filter((c) => c !== 48), 24, 104].sort((a, b) => a - b);
    const names = heap.caches().filter((c) => c.name.startsWith("umem_alloc_"));
    assert.deepEqual(names.map((c) => c.bufsize).sort((a, b) => a - b), want);
    const byName = new Map(names.map((c) => [c.name, c]));
    const other = Heap.attach(heap.buffer); // a second handle reads the classes from the image
    for (const h of [heap, other]) {
      for (let size = 1; size <= 1100; size++) {
        const cls = want.find((c) => c >= size)!;
        const p = h.alloc(size);
        assert.equal(byName.get(`umem_alloc_${cls}`)!.stats().inUse, 1, `alloc(${size})`);
        // libumem's alignment: 64 for multiples of 64, 16 for multiples of 16, else 8.
        assert.equal(p % (cls % 64 === 0 ? 64 : cls % 16 === 0 ? 16 : 8), 0);
        h.free(p, size);
      }
    }
    assert.equal(heap.libc.usableSize(heap.libc.malloc(10)), 16); // 10 + the 8-byte header: 24
    assert.deepEqual(inspect(heap).status().options.slice(1), [
      "size_remove=48",
      "size_add=24",
      "size_add=104",
    ]);
    other.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("UMEM_OPTIONS size_clear leaves only the largest class, and bad edits are refused", () => {
    const heap = mk({ size: 1 << 20, options: "size_clear,size_add=64" });
    const classes = heap.caches().filter((c) => c.name.startsWith("umem_alloc_"));
    assert.deepEqual(classes.map((c) => c.bufsize), [64, UMEM_MAXBUF]);
    const p = heap.alloc(65);
    assert.equal(classes[1].stats().inUse, 1);
    heap.free(p, 65);
    assert.deepEqual(inspect(heap).status().options.slice(1), ["size_clear", "size_add=64"]);
    // 24 classes may be added to libumem's 49, as libumem's table keeps room for; not 25.
    const adds = (n: number) =>
      Array.from({ length: n }, (_, i) => `size_add=${8 * (2 * i + 1) + 1024}`).join(",");
    assert.equal(
      mk({ size: 1 << 20, options: adds(24) }).caches().filter((c) =>
        c.name.startsWith("umem_alloc_")
      ).length,
      UMEM_SIZE_CLASSES.length + 24,
    );
    for (
      const [options, re] of [
        [adds(25), /no room in the size table \(at most 73 classes\)/],
        ["size_add", /size_add: required value missing/],
        ["size_add=0", /size_add=0: a size class is 1\.\.131072 bytes/],
        ["size_add=131073", /a size class is 1\.\.131072 bytes/],
        ["size_remove=131072", /the largest class \(131072\) cannot be removed/],
        ["size_remove=24", /size_remove=24: 24 is not a size class/],
        ["size_clear=1", /size_clear does not take a value/],
        ["size_add=lots", /size_add=lots: not a size/],
      ] as const
    ) {
      throwsKind(() => mk({ size: 1 << 20, options }), "invalid-argument", re);
    }
  });

  it("sizes above 1024 get libumem's smallest fitting class", () => {
    const heap = mk();
    const byName = new Map(heap.caches().map((c) => [c.name, c]));
    for (const size of [1025, 1100, 1280, 1281, 1600, 2049, 2600, 3100, 3584]) {
      const p = heap.alloc(size);
      const cls = byName.get(`umem_alloc_${libumemClass(size)}`)!;
      assert.equal(cls.stats().inUse, 1, `alloc(${size}) should come from ${cls.name}`);
      heap.free(p, size);
    }
  });
});
