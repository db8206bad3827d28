/**
 * Tests of `sbo` (bump allocator and scoped arenas): alignment, the last-block rules,
 * mark/rewind, reset, chunk growth and large blocks, the limit, sources, nested scopes, scopes
 * ended by exceptions and rejected promises, the chunk pool, stats read from another worker, a
 * model test over random operation sequences, and the example server's handler run 10,000
 * times directly and over loopback HTTP with the heap's in-use bytes back where they started.
 *
 * Run: `npx deno test --allow-read --allow-write --allow-env --allow-net --allow-run
 * tests/sbo_test.ts` or `npx bun test tests/sbo_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mk as quiet, throwsKind } from "./helpers.ts";
import fc from "fast-check";
import { Heap, type HeapOptions, inspect, OutOfMemoryError, UmemError, Vmem } from "../mod.ts";
import { BumpArena, ChunkPool, scope, withArena } from "../sbo/mod.ts";
import {
  BA_CHUNK,
  BA_HEAD,
  BA_MAGIC,
  BA_MAGIC_VALUE,
  BA_NEXTSIZE,
  BA_SIZE,
} from "../sbo/bump_arena.ts";
import { CH_HEADER, CH_KIND, CH_PREV, CH_SIZE, CK_LARGE } from "../sbo/chunk.ts";
import { SP_SIZE } from "../sbo/chunk_pool.ts";
import {
  heapInUse,
  ordersHandler,
  REQUEST_LIMIT,
  sampleBody,
  serveLoopback,
  summarize,
} from "../examples/request_arena.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** A quiet heap (see tests/helpers.ts) of 4 MiB unless told otherwise. */
function mk(options: HeapOptions = {}): Heap {
  return quiet({ size: 4 << 20, ...options });
}

/** Asserts the heap is sound. */
function sound(heap: Heap): void {
  assert.deepEqual(heap.verify(), []);
}

/** The chunks of an arena, newest first: [address, size, large]. */
function chunksOf(heap: Heap, arena: BumpArena): [number, number, boolean][] {
  const out: [number, number, boolean][] = [];
  for (let c = heap.i32[(arena.address + BA_HEAD) >> 2]; c !== 0; c = heap.i32[c >> 2]) {
    out.push([
      c,
      heap.i32[(c + CH_SIZE) >> 2],
      (heap.i32[(c + CH_KIND) >> 2] & CK_LARGE) !== 0,
    ]);
    assert.ok(out.length < 10_000, "chunk list loops");
  }
  return out;
}

/** Bytes of the heap in use once this worker's magazines are emptied. */
const inUse = heapInUse;

/** Releases this worker's pool (so every chunk is back in the heap) and measures. */
function inUseReleased(heap: Heap): number {
  ChunkPool.of(heap).release();
  return inUse(heap);
}

// ---------------------------------------------------------------------------------------------

describe("BumpArena: alloc and alignment", () => {
  it("aligns every block and keeps blocks apart (property)", () => {
    const heap = mk();
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            size: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 40_000 })),
            alignLog: fc.integer({ min: 0, max: 16 }),
          }),
          { minLength: 1, maxLength: 80, size: "max" },
        ),
        fc.integer({ min: 8, max: 14 }),
        (reqs, chunkLog) => {
          using arena = scope(heap, { chunkSize: 1 << chunkLog });
          const blocks: [number, number][] = [];
          for (const [i, { size, alignLog }] of reqs.entries()) {
            const align = 1 << alignLog;
            const p = arena.alloc(size, align);
            assert.equal(p % align, 0, `block ${i} at ${p} not aligned to ${align}`);
            assert.ok(p > 0 && p + size <= heap.size);
            heap.u8.fill(i & 0xff, p, p + size);
            blocks.push([p, size]);
          }
          // Every block still holds its own byte: no two overlap.
          blocks.forEach(([p, size], i) => {
            assert.equal(heap.u8[p], i & 0xff);
            assert.equal(heap.u8[p + size - 1], i & 0xff);
          });
          const sorted = [...blocks].sort((a, b) => a[0] - b[0]);
          for (let i = 1; i < sorted.length; i++) {
            assert.ok(sorted[i - 1][0] + sorted[i - 1][1] <= sorted[i][0], "blocks overlap");
          }
          // Blocks lie in the arena's chunks, after the headers (and the record).
          const chunks = chunksOf(heap, arena);
          for (const [p, size] of blocks) {
            assert.ok(
              chunks.some(([c, cs]) => p >= c + CH_HEADER && p + size <= c + cs),
              `block ${p}+${size} outside every chunk`,
            );
            assert.ok(p >= arena.address + BA_SIZE || p < arena.address - CH_HEADER);
          }
        },
      ),
      { numRuns: 150 },
    );
    sound(heap);
  });

  it("lays small blocks back to back with the default 8-byte alignment", () => {
    const heap = mk();
    using arena = scope(heap);
    const a = arena.alloc(5), b = arena.alloc(8), c = arena.alloc(1, 1), d = arena.alloc(2, 2);
    assert.equal(b, a + 8);
    assert.equal(c, b + 8);
    assert.equal(d, c + 2);
    assert.equal(arena.alloc(16, 16) % 16, 0);
    assert.equal(arena.alloc(10, 4096) % 4096, 0);
    assert.equal(arena.alloc(10, 65536) % 65536, 0);
  });

  it("refuses bad sizes and alignments with invalid-argument, and changes nothing", () => {
    const heap = mk();
    using arena = scope(heap);
    arena.alloc(8);
    const before = arena.stats();
    const badSizes: unknown[] = [0, -1, 1.5, NaN, Infinity, 2 ** 31, "8", null, undefined];
    for (const s of badSizes) {
      throwsKind(() => arena.alloc(s as number), "invalid-argument", /BumpArena\.alloc: size/);
      throwsKind(() => arena.zalloc(s as number), "invalid-argument");
    }
    const badAligns: unknown[] = [0, 3, 12, -8, 1.5, 131072, 2 ** 31, "8", null];
    for (const a of badAligns) {
      throwsKind(() => arena.alloc(8, a as number), "invalid-argument", /BumpArena\.alloc: align/);
    }
    assert.deepEqual(arena.stats(), before);
    sound(heap);
  });

  it("zalloc clears the block", () => {
    const heap = mk();
    using arena = scope(heap);
    const p = arena.alloc(64);
    heap.u8.fill(0xaa, p, p + 64);
    arena.free(p);
    const q = arena.zalloc(64);
    assert.equal(q, p);
    assert.ok(heap.u8.subarray(q, q + 64).every((b) => b === 0));
  });
});

describe("BumpArena: the last-block rules", () => {
  it("frees only the last block; anything else is a bad free naming both addresses", () => {
    const heap = mk();
    using arena = scope(heap);
    const a = arena.alloc(16), b = arena.alloc(16);
    const e = throwsKind(() => arena.free(a), "bad-free", /not the last block/);
    assert.match(e.message, new RegExp(`0x${a.toString(16)}.*0x${b.toString(16)}`));
    assert.equal(e.address, a);
    throwsKind(() => arena.free(b + 8), "bad-free");
    throwsKind(() => arena.free(12345), "bad-free");
    arena.free(b);
    // The last block is gone; a is not the last block again (Vmalloc's `last` rule).
    throwsKind(() => arena.free(a), "bad-free", /has none/);
    throwsKind(() => arena.free(b), "bad-free", /has none/);
    throwsKind(() => arena.resize(a, 32), "bad-free");
    assert.equal(arena.alloc(16), b, "the freed space is reused");
    arena.free(0); // NULL: nothing
    throwsKind(() => arena.free(-4), "invalid-argument");
    throwsKind(() => arena.free("x" as unknown as number), "invalid-argument");
    throwsKind(() => arena.free(1.5), "invalid-argument");
    sound(heap);
  });

  it("resizes the last block in place, and moves it with its contents when it must", () => {
    const heap = mk();
    using arena = scope(heap, { chunkSize: 1024 });
    const a = arena.alloc(8);
    const p = arena.alloc(100);
    heap.u8.fill(7, p, p + 100);
    throwsKind(() => arena.resize(a, 8), "bad-free", /not the last block/);
    assert.equal(arena.resize(p, 400), p, "grows in place");
    assert.equal(arena.stats().used, 8 + 400);
    assert.equal(arena.resize(p, 50), p, "shrinks in place");
    assert.equal(arena.stats().used, 8 + 50);
    assert.equal(arena.stats().highWater, 408);
    assert.equal(arena.alloc(8), p + 56, "the shrunk tail is reused");
    const q0 = arena.alloc(64);
    heap.u8.fill(9, q0, q0 + 64);
    const q = arena.resize(q0, 900); // no room in the first chunk: a new normal chunk
    assert.notEqual(q, q0);
    assert.ok(heap.u8.subarray(q, q + 64).every((x) => x === 9), "contents moved");
    assert.equal(arena.stats().chunks, 2);
    // The moved block is the last block now; the old place was given up.
    arena.free(q);
    throwsKind(() => arena.free(q0), "bad-free");
    sound(heap);
  });

  it("frees and resizes a large block through its own chunk", () => {
    const heap = mk();
    using arena = scope(heap, { chunkSize: 4096 });
    const small = arena.alloc(16);
    const big = arena.alloc(20_000);
    heap.u8.fill(3, big, big + 20_000);
    let s = arena.stats();
    assert.equal(s.chunks, 2);
    assert.equal(s.used, 16 + 20_000);
    assert.equal(chunksOf(heap, arena)[0][2], true, "a large chunk");
    // The current chunk stays current: the next small block follows the first.
    const after = arena.alloc(16);
    assert.equal(after, small + 16);
    arena.free(after);
    throwsKind(() => arena.free(big), "bad-free", /has none/);
    const big2 = arena.alloc(20_000);
    assert.equal(arena.resize(big2, 30_000), big2, "grows within its 32 KiB chunk");
    const moved = arena.resize(big2, 100_000);
    assert.notEqual(moved, big2);
    s = arena.stats();
    assert.equal(s.used, 16 + 20_000 + 100_000);
    assert.equal(s.chunks, 3, "the old large chunk went back");
    arena.free(moved);
    s = arena.stats();
    assert.equal(s.chunks, 2);
    assert.equal(s.used, 16 + 20_000);
    assert.equal(s.highWater, 16 + 20_000 + 100_000);
    sound(heap);
  });
});

describe("BumpArena: mark, rewind, reset", () => {
  it("rewinds to a mark, giving back the chunks taken since", () => {
    const heap = mk();
    using arena = scope(heap, { chunkSize: 512 });
    arena.alloc(100);
    const m = arena.mark();
    const s0 = arena.stats();
    const blocks = Array.from({ length: 300 }, (_, i) => arena.alloc(16 + (i % 7) * 8));
    arena.alloc(50_000); // a large chunk
    assert.ok(arena.stats().chunks > 3);
    arena.rewind(m);
    const s1 = arena.stats();
    assert.equal(s1.used, s0.used);
    assert.equal(s1.chunks, 1);
    assert.equal(s1.reserved, 512);
    assert.ok(s1.highWater > 50_000);
    assert.equal(arena.alloc(16 + 0), blocks[0], "allocation resumes at the mark");
    arena.rewind(m);
    arena.rewind(m); // twice to the same mark is fine
    assert.equal(arena.stats().used, 100);
    throwsKind(() => arena.free(blocks[0]), "bad-free", /has none/);
    sound(heap);
  });

  it("keeps what was allocated before the mark, large chunks included", () => {
    const heap = mk();
    using arena = scope(heap);
    const big = arena.alloc(30_000);
    heap.u8.fill(5, big, big + 30_000);
    const m = arena.mark();
    arena.alloc(30_000);
    arena.alloc(10);
    arena.rewind(m);
    assert.equal(arena.stats().chunks, 2);
    assert.equal(arena.stats().used, 30_000);
    assert.ok(heap.u8.subarray(big, big + 30_000).every((x) => x === 5));
    // A mark taken before the large block drops it.
    const m0 = arena.mark();
    arena.alloc(40_000);
    arena.rewind(m0);
    assert.equal(arena.stats().chunks, 2);
    sound(heap);
  });

  it("refuses numbers that are not marks of this arena, and stale marks", () => {
    const heap = mk();
    using arena = scope(heap);
    const m1 = arena.mark();
    arena.alloc(64);
    const m2 = arena.mark();
    for (const bad of [-1, 1.5, NaN, "1", 0, 12345, 5 * 2 ** 31 + 100, 2 ** 60]) {
      throwsKind(() => arena.rewind(bad as number), "invalid-argument", /BumpArena\.rewind/);
    }
    arena.rewind(m1);
    throwsKind(() => arena.rewind(m2), "invalid-argument", /past the arena/);
    // A mark from another arena names addresses outside this one's chunks.
    using other = scope(heap);
    other.alloc(8);
    throwsKind(() => arena.rewind(other.mark()), "invalid-argument");
    sound(heap);
  });

  it("reset keeps one chunk, drops the rest, and grows chunks again from the start", () => {
    const heap = mk();
    using arena = scope(heap, { chunkSize: 256, maxChunkSize: 4096 });
    for (let i = 0; i < 200; i++) arena.alloc(40);
    const sizes = chunksOf(heap, arena).map(([, s]) => s).reverse();
    assert.deepEqual(sizes.slice(0, 6), [256, 512, 1024, 2048, 4096, 4096], "doubling, capped");
    const m = arena.mark();
    arena.reset();
    const s = arena.stats();
    assert.deepEqual([s.used, s.chunks, s.reserved], [0, 1, 256]);
    assert.equal(s.highWater, 200 * 40);
    assert.equal(heap.i32[(arena.address + BA_NEXTSIZE) >> 2], 512);
    throwsKind(() => arena.rewind(m), "invalid-argument");
    assert.equal(
      arena.alloc(8),
      arena.address + BA_SIZE,
      "the first block starts after the record",
    );
    sound(heap);
  });
});

describe("BumpArena: chunk growth", () => {
  it("a big request gets its own chunk and does not waste the current one", () => {
    const heap = mk();
    using arena = scope(heap, { chunkSize: 4096 });
    const a = arena.alloc(1000);
    const big = arena.alloc(3000); // > a quarter of the next 8 KiB chunk: large
    const b = arena.alloc(1000);
    assert.equal(b, a + 1000, "the current chunk carries on");
    const first = arena.address - CH_HEADER;
    assert.ok(big + 3000 <= first || big >= first + 4096, "the large block has its own chunk");
    const chunks = chunksOf(heap, arena);
    assert.deepEqual(chunks.map(([, s, l]) => [s, l]), [[4096, true], [4096, false]]);
    assert.equal(heap.i32[(arena.address + BA_CHUNK) >> 2], chunks[1][0]);
    // A request bigger than the cap is served too.
    const huge = arena.alloc(3 << 20);
    heap.u8[huge + (3 << 20) - 1] = 1;
    assert.equal(arena.stats().chunks, 3);
    sound(heap);
  });

  it("chunk options are checked", () => {
    const heap = mk();
    for (
      const o of [
        { chunkSize: 100 },
        { chunkSize: 1.5 },
        { chunkSize: "4096" },
        { maxChunkSize: 100 },
        { chunkSize: 8192, maxChunkSize: 4096 },
        { limit: -1 },
        { limit: 2 ** 31 },
        { pool: "yes" },
      ]
    ) {
      throwsKind(
        () => scope(heap, o as unknown as { chunkSize: number }),
        "invalid-argument",
        /new BumpArena/,
      );
    }
    throwsKind(() => scope(heap, 5 as unknown as object), "invalid-argument");
    using a = scope(heap, { chunkSize: 3000 });
    assert.equal(a.stats().reserved, 4096, "rounded up to a power of two");
    sound(heap);
  });
});

describe("BumpArena: the limit", () => {
  it("is checked on every allocation, not only when a chunk is added", () => {
    const heap = mk();
    using arena = scope(heap, { limit: 1000 });
    arena.alloc(600);
    const s = arena.stats();
    // The first chunk has room for 600 more bytes, but the limit has not.
    throwsKind(() => arena.alloc(600), "budget-exceeded", /limit of 1000/);
    assert.deepEqual(arena.stats(), s);
    const p = arena.alloc(400);
    assert.equal(arena.stats().used, 1000);
    throwsKind(() => arena.alloc(1, 1), "budget-exceeded");
    throwsKind(() => arena.resize(p, 401), "budget-exceeded");
    assert.equal(arena.resize(p, 100), p);
    throwsKind(() => arena.alloc(5000), "budget-exceeded"); // would need a large chunk
    assert.equal(arena.stats().chunks, 1, "no chunk taken for a refused request");
    arena.alloc(300, 1); // exactly up to the limit (1-byte alignment: no padding)
    throwsKind(() => arena.alloc(1, 1), "budget-exceeded");
    sound(heap);
  });

  it("binds exactly in a later chunk, with the fast path's stop", () => {
    const heap = mk();
    for (const limit of [700, 1000, 5000, 20_000]) {
      using arena = scope(heap, { chunkSize: 256, limit });
      let n = 0;
      for (;;) {
        try {
          arena.alloc(24);
          n++;
        } catch (e) {
          assert.ok(e instanceof UmemError && e.kind === "budget-exceeded", String(e));
          break;
        }
      }
      const s = arena.stats();
      assert.equal(s.used, n * 24);
      assert.ok(s.used <= limit && s.used + 24 > limit, `limit ${limit}: used ${s.used}`);
      assert.ok(s.chunks > 1);
    }
    sound(heap);
  });

  it("bounds the use across chunks and large blocks", () => {
    const heap = mk();
    const limit = 50_000;
    using arena = scope(heap, { chunkSize: 256, limit });
    let used = 0;
    for (let i = 0;; i++) {
      const size = i % 10 === 9 ? 3000 : 24;
      try {
        arena.alloc(size);
        used += size;
      } catch (e) {
        assert.ok(e instanceof UmemError && e.kind === "budget-exceeded");
        break;
      }
    }
    const s = arena.stats();
    assert.ok(s.used <= limit && s.used >= used && s.used > limit - 3000, `used ${s.used}`);
    assert.ok(s.reserved < 2 * limit + 64 * 1024, `reserved ${s.reserved}`);
    sound(heap);
  });

  it("a limit of 0 refuses everything; a nested scope gets what its parent has left", () => {
    const heap = mk();
    using zero = scope(heap, { limit: 0 });
    throwsKind(() => zero.alloc(1), "budget-exceeded");
    using outer = scope(heap, { limit: 10_000 });
    outer.alloc(4000);
    using inner = scope(outer);
    assert.equal(inner.stats().limit, 6000);
    throwsKind(() => inner.alloc(6001), "budget-exceeded");
    // An explicit limit of its own is at most that: the parent's limit holds for what it nests.
    using wide = scope(outer, { limit: 100_000 });
    assert.equal(wide.stats().limit, 6000);
    throwsKind(() => wide.alloc(6001), "budget-exceeded");
    using narrow = scope(outer, { limit: 1000 });
    assert.equal(narrow.stats().limit, 1000);
    using free = scope(heap);
    assert.equal(free.stats().limit, Infinity);
  });
});

describe("BumpArena: sources", () => {
  it("takes chunks from a vmem arena and gives them back", () => {
    const heap = mk();
    const pages = Vmem.create(heap, "pages", { quantum: 4096, source: heap.vmem });
    {
      using arena = new BumpArena(pages, { chunkSize: 8192 });
      for (let i = 0; i < 100; i++) arena.alloc(500);
      assert.ok(pages.stats().inUse >= 8192 * 2);
    }
    assert.equal(pages.stats().inUse, 0);
    const odd = Vmem.create(heap, "ids", { base: 1, size: 1000, quantum: 1 });
    throwsKind(() => new BumpArena(odd), "invalid-argument", /quantum/);
    throwsKind(() => new BumpArena(pages, { pool: true }), "invalid-argument", /pool/);
    sound(heap);
  });

  it("takes chunks from an object cache, one buffer each", () => {
    const heap = mk();
    const cache = heap.createCache("request_chunks", 2048);
    {
      using arena = new BumpArena(cache);
      for (let i = 0; i < 20; i++) arena.alloc(300);
      assert.equal(arena.stats().reserved, arena.stats().chunks * 2048);
      assert.equal(cache.stats().inUse, arena.stats().chunks);
      throwsKind(() => arena.alloc(2048), "invalid-argument", /do not fit a chunk of cache/);
    }
    assert.equal(cache.stats().inUse, 0);
    throwsKind(() => new BumpArena(cache, { chunkSize: 4096 }), "invalid-argument");
    const tiny = heap.createCache("tiny", 64);
    throwsKind(() => new BumpArena(tiny), "invalid-argument", /cannot hold/);
    sound(heap);
  });

  it("refuses what is not an allocator of the core", () => {
    for (const bad of [null, undefined, 42, {}, { alloc: () => 8, free: () => {} }]) {
      throwsKind(
        () => new BumpArena(bad as unknown as Heap),
        "invalid-argument",
        /expected a Heap, a Vmem, a Cache or a BumpArena/,
      );
    }
  });

  it("out of memory leaves the arena and the heap as they were", () => {
    const heap = mk({ size: 1 << 20, maxSize: 1 << 20 });
    using arena = scope(heap);
    arena.alloc(100);
    const s = arena.stats();
    assert.throws(() => arena.alloc(4 << 20), OutOfMemoryError);
    assert.deepEqual(arena.stats(), s);
    sound(heap);
    assert.equal(arena.alloc(8) % 8, 0);
  });
});

describe("scopes", () => {
  it("`using` ends the arena when the block is left, also by an exception", () => {
    const heap = mk();
    const start = inUse(heap);
    let kept: BumpArena | undefined;
    assert.throws(() => {
      using arena = scope(heap);
      kept = arena;
      arena.alloc(100_000); // a large chunk too
      throw new Error("handler failed");
    }, /handler failed/);
    assert.ok(kept!.disposed);
    throwsKind(() => kept!.alloc(8), "destroyed", /has ended/);
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });

  it("scopes nest: inner ends first, and ending the outer ends what is still open inside", () => {
    const heap = mk();
    const start = inUse(heap);
    let inner1: BumpArena | undefined;
    const outer = scope(heap);
    {
      using inner = scope(outer);
      inner1 = inner;
      inner.alloc(5000);
      assert.equal(inner.stats().parent, outer.address);
    }
    assert.ok(inner1!.disposed);
    assert.ok(!outer.disposed);
    const a = scope(outer), b = scope(outer), c = scope(b);
    a.alloc(10);
    c.alloc(70_000);
    b.dispose(); // ends c with it; a stays
    assert.ok(b.disposed && c.disposed && !a.disposed);
    const d = scope(outer);
    outer.dispose();
    for (const x of [a, d, outer]) assert.ok(x.disposed);
    throwsKind(() => scope(outer), "destroyed");
    throwsKind(() => scope(a), "destroyed");
    a.dispose(); // already ended: nothing
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });

  it("every use of an ended scope throws destroyed", () => {
    const heap = mk();
    const arena = scope(heap);
    const p = arena.alloc(8);
    const m = arena.mark();
    arena.dispose();
    const uses: [string, () => unknown][] = [
      ["alloc", () => arena.alloc(8)],
      ["alloc", () => arena.alloc(8, 4096 * 4)],
      ["alloc", () => arena.zalloc(8)],
      ["free", () => arena.free(p)],
      ["resize", () => arena.resize(p, 16)],
      ["mark", () => arena.mark()],
      ["rewind", () => arena.rewind(m)],
      ["reset", () => arena.reset()],
      ["stats", () => arena.stats()],
    ];
    for (const [name, use] of uses) {
      const e = throwsKind(use, "destroyed", new RegExp(`BumpArena\\.${name}`));
      assert.equal(e.address, arena.address);
    }
    // Another arena reusing the same chunk does not revive the old handle.
    const again = scope(heap);
    assert.equal(again.address, arena.address, "the pool hands back the same chunk");
    throwsKind(() => arena.alloc(8), "destroyed");
    assert.ok(arena.disposed && !again.disposed);
    again.dispose();
    throwsKind(() => BumpArena.statsAt(heap.buffer, arena.address), "destroyed");
  });

  it("withArena ends the arena when the promise settles, also when it rejects", async () => {
    const heap = mk();
    const start = inUse(heap);
    let seen: BumpArena | undefined;
    const v = await withArena(heap, async (arena) => {
      seen = arena;
      const p = arena.alloc(8);
      await new Promise((r) => setTimeout(r, 1));
      heap.f64[p >> 3] = 2.5;
      return heap.f64[p >> 3];
    });
    assert.equal(v, 2.5);
    assert.ok(seen!.disposed);
    await assert.rejects(
      withArena(heap, async (arena) => {
        seen = arena;
        arena.alloc(200_000);
        await Promise.resolve();
        throw new Error("rejected");
      }),
      /rejected/,
    );
    assert.ok(seen!.disposed);
    await assert.rejects(
      withArena(heap, (arena) => {
        seen = arena;
        arena.alloc(16);
        throw new TypeError("thrown synchronously");
      }),
      TypeError,
    );
    assert.ok(seen!.disposed);
    await assert.rejects(
      withArena(heap, (arena) => {
        seen = arena;
        arena.alloc(1 << 20, 8);
        return arena.alloc(2 << 20); // past the limit
      }, { limit: 2 << 20 }),
      (e: unknown) => e instanceof UmemError && e.kind === "budget-exceeded",
    );
    assert.ok(seen!.disposed);
    await assert.rejects(
      withArena(heap, 5 as unknown as () => void),
      (e: unknown) => e instanceof UmemError && e.kind === "invalid-argument",
    );
    // Nested withArena: the inner ends before the outer.
    await withArena(heap, async (outer) => {
      await withArena(outer, async (inner) => {
        seen = inner;
        inner.alloc(10);
        await Promise.resolve();
      });
      assert.ok(seen!.disposed && !outer.disposed);
    });
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });
});

describe("the chunk pool", () => {
  it("recycles chunks so that steady requests do not go back to the heap", () => {
    const heap = mk();
    for (let i = 0; i < 1000; i++) {
      using arena = scope(heap);
      for (let j = 0; j < 100; j++) arena.alloc(48); // two chunks per request
    }
    const s = ChunkPool.of(heap).stats();
    assert.equal(s.misses, 2);
    assert.equal(s.hits, 1998);
    assert.equal(s.chunks, 2);
    assert.equal(s.pooledBytes, 4096 + 8192);
    assert.equal(s.slot, heap.slot);
    // findleaks sees the pooled chunks through the pool's root: no leak.
    assert.equal(inspect(heap).findleaks().total_buffers, 0);
    sound(heap);
  });

  it("keeps at most maxBytes, trims, and after release gives chunks straight to the heap", () => {
    const heap = mk();
    const start = inUse(heap);
    const pool = ChunkPool.of(heap);
    assert.equal(ChunkPool.of(heap), pool);
    pool.maxBytes = 8192;
    const arenas = Array.from({ length: 4 }, () => scope(heap));
    for (const a of arenas) a.dispose();
    let s = pool.stats();
    assert.deepEqual([s.chunks, s.pooledBytes, s.returns, s.overflows], [2, 8192, 2, 2]);
    pool.maxBytes = 4096;
    assert.equal(pool.stats().chunks, 1);
    assert.equal(pool.trim(), 4096);
    assert.equal(pool.stats().pooledBytes, 0);
    const open = scope(heap);
    open.alloc(10);
    pool.release();
    throwsKind(() => pool.stats(), "destroyed", /released/);
    open.dispose(); // its chunk goes to the heap, not to the released pool
    s = ChunkPool.of(heap).stats();
    assert.notEqual(ChunkPool.of(heap), pool);
    assert.equal(s.chunks, 0);
    throwsKind(() => (pool.maxBytes = -1), "destroyed");
    throwsKind(() => (ChunkPool.of(heap).maxBytes = -1), "invalid-argument");
    throwsKind(() => ChunkPool.of({} as Heap), "invalid-argument");
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });
});

describe("state in the buffer", () => {
  it("the record is in the first chunk and another worker reads its stats", async () => {
    const heap = mk({ slots: 4 });
    const start = inUse(heap);
    using arena = scope(heap);
    arena.alloc(40);
    arena.alloc(100_000);
    assert.equal(heap.i32[(arena.address + BA_MAGIC) >> 2], BA_MAGIC_VALUE);
    assert.equal(heap.i32[(arena.address - CH_HEADER + CH_PREV) >> 2], 0, "the first chunk");
    const url = new URL("./fixtures/sbo_worker.ts", import.meta.url).href;
    const w = new Worker(url, { type: "module" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
        w.addEventListener("message", (e: MessageEvent) => resolve(e.data));
        w.addEventListener("error", (e) => reject(e));
        timer = setTimeout(() => reject(new Error("worker timed out")), 30_000);
      });
      w.postMessage({ buffer: heap.buffer, arena: arena.address, scopes: 2000 });
      // Meanwhile, this worker runs scopes of its own.
      for (let i = 0; i < 2000; i++) {
        using a = scope(heap);
        for (let j = 0; j < 40; j++) a.alloc(8 + (j % 5) * 24);
      }
      const r = await reply;
      assert.equal(r.type, "done", String(r.message));
      assert.deepEqual(r.seen, arena.stats());
      assert.equal(r.bad, 0);
      assert.notEqual(r.slot, heap.slot);
      assert.equal((r.pool as { hits: number }).hits, 1999);
    } finally {
      clearTimeout(timer);
      w.terminate();
    }
    arena.dispose();
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });

  it("reclaimSlot of a worker that died with a full pool gives its chunks back", async () => {
    const heap = mk({ slots: 4 });
    const start = inUse(heap);
    const url = new URL("./fixtures/sbo_worker.ts", import.meta.url).href;
    const w = new Worker(url, { type: "module" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let r: Record<string, unknown>;
    try {
      r = await new Promise<Record<string, unknown>>((resolve, reject) => {
        w.addEventListener("message", (e: MessageEvent) => resolve(e.data));
        w.addEventListener("error", (e) => reject(e));
        timer = setTimeout(() => reject(new Error("worker timed out")), 30_000);
        w.postMessage({ buffer: heap.buffer, arena: 0, scopes: 10, keep: true });
      });
    } finally {
      clearTimeout(timer);
      w.terminate();
    }
    assert.equal(r.type, "held", String(r.message));
    const pool = r.pool as { chunks: number; pooledBytes: number };
    assert.ok(pool.chunks >= 3, `the dead worker pooled ${pool.chunks} chunks`);
    assert.ok(inUse(heap) - start >= pool.pooledBytes);
    heap.reclaimSlot(r.slot as number);
    heap.reap();
    assert.equal(inUse(heap), start, "every pooled chunk and the pool record went back");
    sound(heap);
    // The slot is handed out again, and the new worker there gets a pool of its own.
    const again = Heap.attach(heap.buffer);
    assert.equal(again.slot, r.slot);
    assert.equal(ChunkPool.of(again).stats().chunks, 0);
    ChunkPool.of(again).release();
    again.detach();
    sound(heap);
  });

  it("statsAt refuses what is not an arena record", () => {
    const heap = mk();
    using arena = scope(heap);
    throwsKind(() => BumpArena.statsAt(heap.buffer, arena.address + 8), "invalid-argument");
    throwsKind(() => BumpArena.statsAt(heap.buffer, 3), "invalid-argument");
    throwsKind(() => BumpArena.statsAt(heap.buffer, 1 << 30), "invalid-argument");
    throwsKind(
      () => BumpArena.statsAt(new ArrayBuffer(8) as unknown as SharedArrayBuffer, 64),
      "invalid-argument",
    );
    assert.equal(BumpArena.statsAt(heap.buffer, arena.address).used, 0);
  });

  it("the pool record is registered as a root of SP_SIZE bytes", () => {
    const heap = mk();
    const pool = ChunkPool.of(heap);
    assert.equal(heap.removeRoot(pool.address, SP_SIZE), true);
    heap.addRoot(pool.address, SP_SIZE);
  });
});

// ---------------------------------------------------------------------------------------------
// A model test: random operations against a model of the block stack.

type Op =
  | { t: "alloc"; size: number; alignLog: number }
  | { t: "freeLast" }
  | { t: "freeOther"; k: number }
  | { t: "resize"; size: number }
  | { t: "mark" }
  | { t: "rewind"; k: number }
  | { t: "reset" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant("alloc" as const),
      size: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 20_000 })),
      alignLog: fc.integer({ min: 0, max: 7 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ t: "freeLast" as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("freeOther" as const), k: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("resize" as const),
      size: fc.integer({ min: 1, max: 30_000 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ t: "mark" as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("rewind" as const), k: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ t: "reset" as const }) },
);

describe("model", () => {
  it("random sequences keep blocks intact and obey the last-block and mark rules", () => {
    const heap = mk({ size: 16 << 20 });
    const start = inUse(heap);
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 10, maxLength: 300, size: "max" }),
        fc.integer({ min: 8, max: 13 }),
        (ops, chunkLog) => {
          using arena = scope(heap, { chunkSize: 1 << chunkLog, maxChunkSize: 16384 });
          type Block = { p: number; size: number; tag: number; id: number };
          const stack: Block[] = [];
          let lastLive = false; // whether stack's top may be freed (it is the last block)
          let nextId = 1;
          // A mark with the identities of the blocks below it; stale once any of them changed
          // (freed or resized), or once the arena was rewound to an earlier mark.
          const marks: { m: number; ids: number[] }[] = [];
          let maxUsed = 0;
          const fill = (b: Block) => heap.u8.fill(b.tag, b.p, b.p + Math.min(b.size, 64));
          for (const op of ops) {
            switch (op.t) {
              case "alloc": {
                const align = 1 << op.alignLog;
                const p = arena.alloc(op.size, align);
                assert.equal(p % align, 0);
                const b = { p, size: op.size, tag: nextId & 0xff, id: nextId++ };
                fill(b);
                stack.push(b);
                lastLive = true;
                break;
              }
              case "freeLast": {
                if (lastLive) {
                  arena.free(stack.pop()!.p);
                  lastLive = false;
                } else if (stack.length > 0) {
                  throwsKind(() => arena.free(stack[stack.length - 1].p), "bad-free");
                }
                break;
              }
              case "freeOther": {
                if (stack.length > 1) {
                  const b = stack[op.k % (stack.length - 1)];
                  throwsKind(() => arena.free(b.p), "bad-free");
                }
                break;
              }
              case "resize": {
                if (!lastLive) {
                  if (stack.length > 0) {
                    throwsKind(() => arena.resize(stack[0].p, op.size), "bad-free");
                  }
                  break;
                }
                const b = stack[stack.length - 1];
                const q = arena.resize(b.p, op.size);
                const keep = Math.min(b.size, op.size, 64);
                for (let i = 0; i < keep; i++) assert.equal(heap.u8[q + i], b.tag);
                stack[stack.length - 1] = { p: q, size: op.size, tag: b.tag, id: nextId++ };
                fill(stack[stack.length - 1]);
                break;
              }
              case "mark":
                marks.push({ m: arena.mark(), ids: stack.map((b) => b.id) });
                break;
              case "rewind": {
                if (marks.length === 0) break;
                const j = op.k % marks.length, { m, ids } = marks[j];
                const valid = ids.length <= stack.length &&
                  ids.every((id, i) => stack[i].id === id);
                if (valid) {
                  arena.rewind(m);
                  stack.length = ids.length;
                  lastLive = false;
                  marks.length = j + 1; // the marks taken after it are past the cursor now
                }
                break;
              }
              case "reset":
                arena.reset();
                stack.length = 0;
                lastLive = false;
                marks.length = 0; // a mark may name a chunk the reset gave back
                break;
            }
            // Every live block keeps its bytes; stats agree with the model.
            for (const b of stack) {
              const n = Math.min(b.size, 64);
              for (let i = 0; i < n; i += 7) assert.equal(heap.u8[b.p + i], b.tag, `block ${b.id}`);
            }
            const s = arena.stats();
            const live = stack.reduce((a, b) => a + b.size, 0);
            assert.ok(s.used >= live, `used ${s.used} < live ${live}`);
            assert.equal(s.chunks, chunksOf(heap, arena).length);
            assert.equal(s.reserved, chunksOf(heap, arena).reduce((a, [, z]) => a + z, 0));
            maxUsed = Math.max(maxUsed, s.used);
            assert.ok(s.highWater >= maxUsed);
          }
        },
      ),
      { numRuns: 200 },
    );
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });
});

// ---------------------------------------------------------------------------------------------
// The example server.

describe("examples/request_arena.ts", () => {
  const body = "apple,3,0.5\nbread,1,2.25\r\napple,2,0.5\n\ncoffee,10,3\n";
  const expected = {
    lines: 4,
    items: [
      { item: "coffee", quantity: 10, amount: 30 },
      { item: "apple", quantity: 5, amount: 2.5 },
      { item: "bread", quantity: 1, amount: 2.25 },
    ],
  };

  it("summarize builds its answer in the arena", () => {
    const heap = mk();
    using arena = scope(heap);
    const r = summarize(heap, arena, new TextEncoder().encode(body));
    assert.deepEqual({ lines: r.lines, items: r.items }, expected);
    assert.equal(r.arena.used, arena.stats().used);
    // A thousand lines grow the order array (the last block) with resize.
    const many = summarize(heap, arena, new TextEncoder().encode(sampleBody(1000)));
    assert.equal(many.lines, 1000);
    assert.equal(many.items.reduce((a, x) => a + x.quantity, 0) > 1000, true);
  });

  it("10,000 requests through the handler leave the heap's in-use bytes where they started", async () => {
    const heap = mk();
    const start = inUse(heap);
    const handler = ordersHandler(heap);
    const bodies = [body, sampleBody(40, 7), sampleBody(300, 9), "apple,1,x\n", "nonsense\n"];
    const request = (b: string) =>
      new Request("http://127.0.0.1/orders", { method: "POST", body: b });
    let warm = 0;
    const statuses = new Map<number, number>();
    for (let i = 0; i < 10_000; i++) {
      const res = await handler(request(bodies[i % bodies.length]));
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (i % bodies.length === 0) assert.deepEqual(expected.items, (await res.json()).items);
      else await res.arrayBuffer();
      if (i === 99) warm = inUse(heap);
    }
    assert.deepEqual([...statuses].sort(), [[200, 6000], [400, 4000]]);
    // Steady state: the pool holds what the busiest request needed, and no more.
    assert.equal(inUse(heap), warm);
    // Too big for the arena's limit: 413, and nothing kept.
    const big = await handler(request(sampleBody(Math.ceil(REQUEST_LIMIT / 10))));
    assert.equal(big.status, 413);
    await big.arrayBuffer();
    const wrong = await handler(new Request("http://127.0.0.1/other"));
    assert.equal(wrong.status, 404);
    await wrong.arrayBuffer();
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });

  it("a bounded loopback run: real HTTP requests, the server always closed", async () => {
    const heap = mk();
    const start = inUse(heap);
    const server = await serveLoopback(ordersHandler(heap));
    const deadline = Date.now() + 20_000;
    const total = 2000, concurrency = 8;
    let done = 0, ok = 0;
    try {
      const url = `http://127.0.0.1:${server.port}/orders`;
      await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
        for (let i = w; i < total && Date.now() < deadline; i += concurrency) {
          const b = i % 10 === 0 ? "apple,x,1\n" : body;
          const res = await fetch(url, { method: "POST", body: b });
          const text = await res.text();
          if (res.status === 200 && JSON.parse(text).items[0].item === "coffee") ok++;
          else assert.equal(res.status, 400, text);
          done++;
        }
      }));
    } finally {
      await server.close();
    }
    assert.equal(done, total, `only ${done} requests in the time allowed`);
    assert.equal(ok, total - total / 10);
    assert.equal(inUseReleased(heap), start);
    sound(heap);
  });
});
