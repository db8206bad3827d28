/**
 * Bad input to every public entry point of `sbo`, one table per entry point: sizes of 0, -1,
 * NaN, 1.5, 2**32, Infinity and a string; addresses of 0, -8, odd, past the end, inside the
 * heap's header, inside a free buffer, inside another cache's slab; a second free; an arena
 * that has ended; bad options, parents, marks and chunks. Each row says what must happen: the
 * `UmemError` kind, or "ok" where the API defines the input as valid. Every row runs on a fresh
 * heap; after it, `heap.verify()` is empty and, when the row was refused, the arena's figures
 * are what they were (a refusal changes nothing).
 *
 * Run: `npx deno test --allow-read --allow-env tests/badinput_sbo_test.ts` or
 * `npx bun test tests/badinput_sbo_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { badInputTable, NUMBERS, type TableRow } from "./badinput_table.ts";
import { mk } from "./helpers.ts";
import { type Cache, type Heap, UmemError, Vmem } from "../mod.ts";
import { BumpArena, ChunkPool, scope, withArena } from "../sbo/mod.ts";

/** What a row runs against: a fresh heap and the things the rows point into. */
interface Fixture {
  heap: Heap;
  /** An arena over the heap with two blocks, `a` then `b` (the last). */
  arena: BumpArena;
  a: number;
  b: number;
  /** A mark taken between `a` and `b`. */
  mark: number;
  /** An arena that has ended. */
  dead: BumpArena;
  /** A heap buffer of 256 bytes, freed. */
  freed: number;
  /** A buffer of another cache. */
  foreign: number;
  /** That cache. */
  other: Cache;
  /** A vmem arena and a cache to draw chunks from. */
  pages: Vmem;
  chunks: Cache;
  /** One past the heap's last byte. */
  end: number;
}

function fixture(): Fixture {
  const heap = mk({ size: 1 << 20 });
  const arena = scope(heap);
  const a = arena.alloc(40);
  const mark = arena.mark();
  const b = arena.alloc(24);
  const dead = scope(heap);
  dead.alloc(8);
  dead.dispose();
  const freed = heap.alloc(256);
  heap.free(freed, 256);
  const other = heap.createCache("other", 96);
  const foreign = other.alloc();
  const pages = Vmem.create(heap, "pages", { quantum: 16, source: heap.vmem });
  const chunks = heap.createCache("chunks", 2048);
  return {
    heap,
    arena,
    a,
    b,
    mark,
    dead,
    freed,
    foreign,
    other,
    pages,
    chunks,
    end: heap.size,
  };
}

type Row = TableRow<Fixture>;

/** The arena's figures, or "ended". */
function figures(f: Fixture): string {
  return f.arena.disposed ? "ended" : JSON.stringify(f.arena.stats());
}

const table = badInputTable<Fixture>({
  fixture,
  figures,
  what: "the arena",
  check: (f) => assert.deepEqual(f.heap.verify(), []),
});

/** The addresses of the issue, as a function of the fixture. */
const ADDRESSES: [string, (f: Fixture) => number][] = [
  ["-8", () => -8],
  ["an odd address", (f) => f.b + 1],
  ["past the end", (f) => f.end + 64],
  ["inside the header", () => 16],
  ["inside a free buffer", (f) => f.freed],
  ["inside another cache's slab", (f) => f.foreign],
];

const sized = (
  call: (f: Fixture, n: never) => unknown,
  ok: string[] = [],
): Row[] =>
  NUMBERS.map(([l, n]) => [
    `size ${l}`,
    ok.includes(l) ? "ok" : "invalid-argument",
    (f) => call(f, n as never),
  ]);

table("new BumpArena(parent, options) and scope(parent, options)", [
  ["parent null", "invalid-argument", () => new BumpArena(null as never)],
  ["parent a plain object", "invalid-argument", () => scope({ alloc() {}, free() {} } as never)],
  ["parent a number", "invalid-argument", () => scope(42 as never)],
  ["parent an ended arena", "destroyed", (f) => scope(f.dead)],
  ["options a string", "invalid-argument", (f) => scope(f.heap, "big" as never)],
  ["options null", "invalid-argument", (f) => scope(f.heap, null as never)],
  ...NUMBERS.map(([l, n]): Row => [
    `chunkSize ${l}`,
    "invalid-argument",
    (f) => scope(f.heap, { chunkSize: n as number }),
  ]),
  ["chunkSize 100 (under 256)", "invalid-argument", (f) => scope(f.heap, { chunkSize: 100 })],
  // (a typo was ignored: no limit at all)
  ["an unknown option: limt", "invalid-argument", (f) => scope(f.heap, { limt: 5 } as never)],
  ["chunkSize 300 (rounded up)", "ok", (f) => scope(f.heap, { chunkSize: 300 }).dispose()],
  [
    "maxChunkSize below chunkSize",
    "invalid-argument",
    (f) => scope(f.heap, { chunkSize: 8192, maxChunkSize: 4096 }),
  ],
  ...NUMBERS.map(([l, n]): Row => [
    `limit ${l}`,
    l === "0" ? "ok" : "invalid-argument",
    (f) => scope(f.heap, { limit: n as number }).dispose(),
  ]),
  ["pool 'yes'", "invalid-argument", (f) => scope(f.heap, { pool: "yes" as never })],
  ["pool true over a vmem arena", "invalid-argument", (f) => scope(f.pages, { pool: true })],
  [
    "pool false nested in a pooled arena",
    "invalid-argument",
    (f) => scope(f.arena, { pool: false }),
  ],
  [
    "a cache source with another chunkSize",
    "invalid-argument",
    (f) => scope(f.chunks, { chunkSize: 4096 }),
  ],
  ["a cache whose buffers are too small", "invalid-argument", (f) => scope(f.other)],
  [
    "a vmem arena with a quantum of 4",
    "invalid-argument",
    (f) => scope(Vmem.create(f.heap, "q4", { quantum: 4, source: f.heap.vmem })),
  ],
  [
    "a heap with no room for the first chunk",
    "out-of-memory",
    (f) => scope(f.heap, { chunkSize: 1 << 30 }),
  ],
  ["a nested arena, a cache source, a vmem source", "ok", (f) => {
    scope(f.arena).dispose();
    scope(f.chunks).dispose();
    scope(f.pages).dispose();
  }],
]);

table("BumpArena.alloc(size, align) and zalloc(size, align)", [
  ...sized((f, n) => f.arena.alloc(n)),
  ...sized((f, n) => f.arena.zalloc(n)).map(([l, e, r]): Row => [`zalloc ${l}`, e, r]),
  ...sized((f, n) => f.arena.alloc(n, 16)).map(([l, e, r]): Row => [`align 16, ${l}`, e, r]),
  ["size 2**31 (past the image limit)", "invalid-argument", (f) => f.arena.alloc(2 ** 31)],
  ["size 2**30 (no room)", "out-of-memory", (f) => f.arena.alloc(2 ** 30)],
  // The largest size taken: its chunk, header and padding rounded up, is past any heap's size
  // (before the fix: invalid-argument from ChunkPool.take, naming a size never asked for).
  ["size 2**31 - 4096 (the most)", "out-of-memory", (f) => f.arena.alloc(2 ** 31 - 4096)],
  ...NUMBERS.map(([l, n]): Row => [
    `align ${l}`,
    "invalid-argument",
    (f) => f.arena.alloc(8, n as number),
  ]),
  ["align 3", "invalid-argument", (f) => f.arena.alloc(8, 3)],
  ["align 2**17", "invalid-argument", (f) => f.arena.alloc(8, 2 ** 17)],
  ["align 65536", "ok", (f) => assert.equal(f.arena.alloc(8, 65536) % 65536, 0)],
  ["past the limit", "budget-exceeded", (f) => scope(f.heap, { limit: 100 }).alloc(101)],
  ["in a limit of 0", "budget-exceeded", (f) => scope(f.heap, { limit: 0 }).alloc(1)],
  ["too big for a cache chunk", "invalid-argument", (f) => scope(f.chunks).alloc(2048)],
  ["in an ended arena", "destroyed", (f) => f.dead.alloc(8)],
  ["zalloc in an ended arena", "destroyed", (f) => f.dead.zalloc(8)],
]);

table("BumpArena.free(ptr)", [
  ["0 (NULL)", "ok", (f) => f.arena.free(0)],
  ...NUMBERS.slice(1).map(([l, n]): Row => [
    `address ${l}`,
    "invalid-argument",
    (f) => f.arena.free(n as number),
  ]),
  ...ADDRESSES.map(([l, at]): Row => [
    l,
    l === "-8" ? "invalid-argument" : "bad-free",
    (f) => f.arena.free(at(f)),
  ]),
  ["a block that is not the last", "bad-free", (f) => f.arena.free(f.a)],
  ["the last block", "ok", (f) => f.arena.free(f.b)],
  ["the last block, twice", "bad-free", (f) => {
    f.arena.free(f.b);
    const before = JSON.stringify(f.arena.stats());
    try {
      f.arena.free(f.b);
    } finally {
      assert.equal(JSON.stringify(f.arena.stats()), before);
      f.arena.alloc(24); // the fixture's figures again, for the table's comparison
    }
  }],
  ["the last block after a reset", "bad-free", (f) => {
    const s = scope(f.heap);
    const p = s.alloc(8);
    s.reset();
    s.free(p);
  }],
  ["a block of another arena", "bad-free", (f) => f.arena.free(scope(f.heap).alloc(8))],
  ["in an ended arena", "destroyed", (f) => f.dead.free(8)],
]);

table("BumpArena.resize(ptr, size, align)", [
  ...sized((f, n) => f.arena.resize(f.b, n)),
  ...NUMBERS.slice(1).map(([l, n]): Row => [
    `address ${l}`,
    "invalid-argument",
    (f) => f.arena.resize(n as number, 8),
  ]),
  ...ADDRESSES.map(([l, at]): Row => [
    l,
    l === "-8" ? "invalid-argument" : "bad-free",
    (f) => f.arena.resize(at(f), 8),
  ]),
  ["address 0", "bad-free", (f) => f.arena.resize(0, 8)],
  ["a block that is not the last", "bad-free", (f) => f.arena.resize(f.a, 8)],
  ["align 3", "invalid-argument", (f) => f.arena.resize(f.b, 8, 3)],
  ["align NaN", "invalid-argument", (f) => f.arena.resize(f.b, 8, NaN)],
  ["size 2**31", "invalid-argument", (f) => f.arena.resize(f.b, 2 ** 31)],
  ["size 2**30 (no room)", "out-of-memory", (f) => f.arena.resize(f.b, 2 ** 30)],
  ["past the limit", "budget-exceeded", (f) => {
    const s = scope(f.heap, { limit: 100 });
    s.resize(s.alloc(50), 101);
  }],
  ["the last block, grown and moved", "ok", (f) => {
    f.heap.u8[f.b] = 7;
    assert.equal(f.heap.u8[f.arena.resize(f.b, 10000)], 7);
  }],
  ["in an ended arena", "destroyed", (f) => f.dead.resize(8, 8)],
]);

table("BumpArena.mark() and rewind(mark)", [
  ["mark of an ended arena", "destroyed", (f) => f.dead.mark()],
  ["rewind to the mark", "ok", (f) => {
    f.arena.rewind(f.mark);
    assert.equal(f.arena.stats().used, 40);
  }],
  ...NUMBERS.map(([l, n]): Row => [
    `mark ${l}`,
    "invalid-argument",
    (f) => f.arena.rewind(n as number),
  ]),
  ["mark -8", "invalid-argument", (f) => f.arena.rewind(-8)],
  // A valid mark in another type: the fast path coerced a string or an object, and a bigint
  // threw a TypeError there.
  ["a valid mark as a string", "invalid-argument", (f) => f.arena.rewind(String(f.mark) as never)],
  ["a valid mark as [mark]", "invalid-argument", (f) => f.arena.rewind([f.mark] as never)],
  ["a valid mark as a bigint", "invalid-argument", (f) => f.arena.rewind(BigInt(f.mark) as never)],
  ["a mark naming chunk 5 of 1", "invalid-argument", (f) => f.arena.rewind(5 * 2 ** 31 + 200)],
  ["a mark of another arena", "invalid-argument", (f) => {
    const s = scope(f.heap);
    s.alloc(3000);
    f.arena.rewind(s.mark());
  }],
  ["a mark from before a reset", "invalid-argument", (f) => {
    const s = scope(f.heap);
    s.alloc(100);
    const m = s.mark();
    s.reset();
    s.rewind(m);
  }],
  ["rewind of an ended arena", "destroyed", (f) => f.dead.rewind(f.mark)],
]);

table("BumpArena.reset(), stats(), dispose(), disposed, statsAt(buffer, address)", [
  ["reset of an ended arena", "destroyed", (f) => f.dead.reset()],
  ["stats of an ended arena", "destroyed", (f) => f.dead.stats()],
  ["dispose of an ended arena (a no-op)", "ok", (f) => {
    f.dead.dispose();
    f.dead[Symbol.dispose]();
    assert.equal(f.dead.disposed, true);
  }],
  [
    "statsAt of an ArrayBuffer",
    "invalid-argument",
    (f) => BumpArena.statsAt(new ArrayBuffer(64) as never, f.arena.address),
  ],
  [
    "statsAt of a small SharedArrayBuffer of zeros",
    "invalid-argument",
    (f) => BumpArena.statsAt(new SharedArrayBuffer(1 << 16), f.arena.address),
  ],
  ...NUMBERS.map(([l, n]): Row => [
    `statsAt address ${l}`,
    "invalid-argument",
    (f) => BumpArena.statsAt(f.heap.buffer, n as number),
  ]),
  ...ADDRESSES.map(([l, at]): Row => [
    `statsAt ${l}`,
    "invalid-argument",
    (f) => BumpArena.statsAt(f.heap.buffer, at(f)),
  ]),
  [
    "statsAt of an ended arena",
    "destroyed",
    (f) => BumpArena.statsAt(f.heap.buffer, f.dead.address),
  ],
  [
    "statsAt of a live arena",
    "ok",
    (f) =>
      assert.equal(BumpArena.statsAt(f.heap.buffer, f.arena.address).used, f.arena.stats().used),
  ],
]);

describe("withArena(parent, fn, options)", () => {
  const rows: [string, string, (f: Fixture) => Promise<unknown>][] = [
    ["fn not a function", "invalid-argument", (f) => withArena(f.heap, 42 as never)],
    ["parent null", "invalid-argument", () => withArena(null as never, () => 1)],
    ["parent an ended arena", "destroyed", (f) => withArena(f.dead, () => 1)],
    ["limit NaN", "invalid-argument", (f) => withArena(f.heap, () => 1, { limit: NaN })],
    [
      "fn throws a UmemError: it passes through, the arena ends",
      "budget-exceeded",
      (f) => withArena(f.heap, (a) => a.alloc(200), { limit: 100 }),
    ],
  ];
  for (const [label, expect, run] of rows) {
    it(`${label} → ${expect}`, async () => {
      const f = fixture();
      let caught: unknown;
      try {
        await run(f);
      } catch (e) {
        caught = e;
      }
      assert.ok(caught instanceof UmemError, `expected a UmemError, got ${String(caught)}`);
      assert.equal(caught.kind, expect);
      assert.deepEqual(f.heap.verify(), []);
    });
  }
});

table("ChunkPool.of(heap), maxBytes, stats(), trim(), release()", [
  ["of null", "invalid-argument", () => ChunkPool.of(null as never)],
  ["of a vmem arena", "invalid-argument", (f) => ChunkPool.of(f.pages)],
  ["of a plain object", "invalid-argument", () => ChunkPool.of({ alloc() {}, free() {} } as never)],
  ...NUMBERS.map(([l, n]): Row => [
    `maxBytes = ${l}`,
    l === "0" ? "ok" : "invalid-argument",
    (f) => {
      ChunkPool.of(f.heap).maxBytes = n as number;
    },
  ]),
  ["maxBytes = 0 empties the pool", "ok", (f) => {
    const pool = ChunkPool.of(f.heap);
    f.dead.dispose();
    pool.maxBytes = 0;
    assert.equal(pool.stats().chunks, 0);
  }],
  ["stats after release", "destroyed", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.release();
    pool.stats();
  }],
  ["trim after release", "destroyed", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.release();
    pool.trim();
  }],
  ["release twice", "destroyed", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.release();
    pool.release();
  }],
]);

table("ChunkPool.take(size)", [
  ...sized((f, n) => ChunkPool.of(f.heap).take(n)),
  ["size 2**31", "invalid-argument", (f) => ChunkPool.of(f.heap).take(2 ** 31)],
  ['"4096" with a 4096-byte chunk pooled', "invalid-argument", (f) => {
    const pool = ChunkPool.of(f.heap);
    assert.ok(pool.stats().chunks > 0);
    pool.take("4096" as never);
  }],
  ["size 2**30 (no room)", "out-of-memory", (f) => ChunkPool.of(f.heap).take(2 ** 30)],
  ["size 300 (not a class: from the heap)", "ok", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.give(pool.take(300), 300);
  }],
]);

table("ChunkPool.give(chunk, size)", [
  ["a chunk from take", "ok", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.give(pool.take(8192), 8192);
  }],
  ["address 0", "bad-free", (f) => ChunkPool.of(f.heap).give(0, 4096)],
  ...NUMBERS.slice(1).map(([l, n]): Row => [
    `address ${l}`,
    l === "2**32" || l === "-1" ? "bad-free" : "invalid-argument",
    (f) => ChunkPool.of(f.heap).give(n as number, 4096),
  ]),
  ["address -8", "bad-free", (f) => ChunkPool.of(f.heap).give(-8, 4096)],
  ["an odd address", "bad-free", (f) => ChunkPool.of(f.heap).give(f.b + 1, 4096)],
  ["past the end", "bad-free", (f) => ChunkPool.of(f.heap).give(f.end - 1024, 4096)],
  ["inside the header", "bad-free", (f) => ChunkPool.of(f.heap).give(16, 4096)],
  ["a chunk given back twice", "duplicate-free", (f) => {
    const pool = ChunkPool.of(f.heap);
    const c = pool.take(8192);
    pool.give(c, 8192);
    const before = JSON.stringify(pool.stats());
    try {
      pool.give(c, 8192);
    } finally {
      assert.equal(JSON.stringify(pool.stats()), before);
    }
  }],
  ["a chunk given back twice, others between", "duplicate-free", (f) => {
    const pool = ChunkPool.of(f.heap);
    const c = pool.take(8192), d = pool.take(8192);
    pool.give(c, 8192);
    pool.give(d, 8192);
    pool.give(c, 8192);
  }],
  ...NUMBERS.map(([l, n]): Row => [
    `size ${l}`,
    l === "0" ? "bad-free" : "invalid-argument",
    (f) => ChunkPool.of(f.heap).give(f.heap.alloc(4096), n as number),
  ]),
  ["a free buffer", "duplicate-free", (f) => ChunkPool.of(f.heap).give(f.freed, 256)],
  ["another cache's buffer", "wrong-cache", (f) => ChunkPool.of(f.heap).give(f.foreign, 256)],
  ["inside a live buffer", "bad-free", (f) => {
    const p = f.heap.alloc(8192);
    ChunkPool.of(f.heap).give(p + 4096, 8192);
  }],
  [
    "a live buffer given with another size",
    "wrong-cache",
    (f) => ChunkPool.of(f.heap).give(f.heap.alloc(4096), 8192),
  ],
  [
    "a live heap buffer of that size",
    "ok",
    (f) => ChunkPool.of(f.heap).give(f.heap.alloc(4096), 4096),
  ],
  ["a free buffer, the pool full (the heap checks)", "duplicate-free", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.maxBytes = 0;
    pool.give(f.freed, 256);
  }],
  ["another cache's buffer, the pool full (the heap checks)", "wrong-cache", (f) => {
    const pool = ChunkPool.of(f.heap);
    pool.maxBytes = 0;
    pool.give(f.foreign, 256);
  }],
  ["a pooled chunk freed to the heap, taken again from the heap and given", "ok", (f) => {
    const pool = ChunkPool.of(f.heap);
    const c = pool.take(16384);
    pool.give(c, 16384);
    pool.trim();
    const again = f.heap.alloc(16384);
    pool.give(again, 16384);
  }],
]);
