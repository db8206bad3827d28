/**
 * The deferred free and the popped round (core/magazine.ts): a free of the buffer a slot
 * allocated last leaves its state byte at "allocated" (flagged), and the slot's next alloc of it
 * leaves its free the shortest way; every check, reader and mover of buffers must still see
 * each buffer for what it is, and every misuse must still be caught.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, inspect, type UmemError } from "../mod.ts";
import { bufferState } from "../core/pagemap.ts";
import {
  BUF_ALLOC,
  BUF_ALLOC_DEFER,
  BUF_CACHED,
  CA_CPU,
  CA_SHIFT,
  SB_BASE,
  SB_CACHE,
  SB_STATE,
} from "../core/slab.ts";
import { CC_LAST, CC_SIZE } from "../core/magazine.ts";
import { PAGE_SHIFT } from "../core/image.ts";
import { sizeCache } from "../core/size_class.ts";
import { Collector } from "../gc/mod.ts";
import { throwsKind } from "./helpers.ts";

/**
 * Allocates a buffer of `size` bytes the way a pair loop does once warm: popped from the
 * slot's magazine (a fresh heap's first buffer comes from a slab, and its free is not deferred).
 */
function popped(heap: Heap, size: number): number {
  const p = heap.alloc(size);
  heap.free(p, size);
  const q = heap.alloc(size);
  assert.equal(q, p);
  return q;
}

/**
 * The raw state byte of buffer `p` and its address, and the word `CC_LAST` of `heap`'s slot
 * record in the buffer's cache.
 */
function raw(heap: Heap, p: number): { state: number; at: number; last: number } {
  const sb = heap.i32[(heap.pagemap >> 2) + (p >>> PAGE_SHIFT)];
  const cp = heap.i32[(sb + SB_CACHE) >> 2];
  const at = sb + SB_STATE +
    ((p - heap.i32[(sb + SB_BASE) >> 2]) >> heap.i32[(cp + CA_SHIFT) >> 2]);
  return {
    state: heap.u8[at],
    at,
    last: heap.i32[(cp + CA_CPU + heap.slot * CC_SIZE + CC_LAST) >> 2],
  };
}

/**
 * Allocates a buffer of `size` bytes that is the slot's popped round: taken from the slot's
 * deferred free, as every alloc of a warm pair loop is.
 */
function poppedRound(heap: Heap, size: number): number {
  const p = popped(heap, size);
  heap.free(p, size); // deferred
  const q = heap.alloc(size);
  assert.equal(q, p);
  return q;
}

/**
 * A heap of 1 MiB and a second handle on it that has grown it by 4 MiB (`big`): the first
 * handle's views still end at `old`.
 */
function grownByOther(): { heap: Heap; other: Heap; old: number; big: number } {
  const heap = Heap.create({ size: 1 << 20, maxSize: 64 << 20 });
  const other = Heap.attach(heap.buffer);
  const old = heap.mapped;
  const big = other.alloc(4 << 20); // the heap grows in the other slot
  return { heap, other, old, big };
}

/** Calls `alloc` until it hands out an address at or past `old` (at most 20,000 times). */
function allocPast(old: number, alloc: () => number): number[] {
  const ps: number[] = [];
  while (ps.length < 20000 && (ps.length === 0 || ps[ps.length - 1] < old)) ps.push(alloc());
  return ps;
}

describe("the deferred free", () => {
  it("an alloc+free pair writes no state byte after the first, and readers see the truth", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const p = popped(heap, 64);
    heap.free(p, 64);
    // Deferred: the state byte says allocated (flagged), the slot remembers it.
    heap.i32[p >> 2] = 0x5eed; // nothing of the buffer is the allocator's
    assert.equal(raw(heap, p).state, BUF_ALLOC_DEFER);
    assert.equal(raw(heap, p).last, raw(heap, p).at);
    // Every reader sees a cached buffer.
    assert.equal(bufferState(heap, p), BUF_CACHED);
    assert.equal(inspect(heap).whatis(p)?.state, "cached");
    const leaks = inspect(heap).findleaks();
    assert.equal(leaks.total_buffers, 0, "a deferred buffer is no leak");
    assert.ok(leaks.cached_skipped >= 1);
    assert.deepEqual(heap.verify(), []);
    // The next alloc pops that very round: the state byte is left alone, the buffer too, and
    // the slot's record holds it as the popped round.
    assert.equal(heap.alloc(64), p);
    assert.equal(raw(heap, p).last, ~raw(heap, p).at);
    assert.equal(heap.i32[p >> 2], 0x5eed);
    assert.equal(bufferState(heap, p), BUF_ALLOC);
    assert.equal(inspect(heap).whatis(p)?.state, "allocated");
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 64);
    assert.deepEqual(heap.verify(), []);
  });

  it("a second free from the same slot is a duplicate free, whatever the buffer holds", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const p = popped(heap, 64);
    heap.free(p, 64);
    assert.equal(raw(heap, p).state, BUF_ALLOC_DEFER);
    throwsKind(() => heap.free(p, 64), "duplicate-free");
    heap.i32[p >> 2] = 12345; // a write after free: CC_LAST still knows
    throwsKind(() => heap.free(p, 64), "duplicate-free");
    assert.deepEqual(heap.verify(), []);
    assert.equal(heap.alloc(64), p, "the magazine holds p once");
    assert.notEqual(heap.alloc(64), p);
  });

  it("a second free from another worker's slot is a duplicate free", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const other = Heap.attach(heap.buffer); // another worker slot, in this thread
    const mine = other.alloc(64);
    other.free(mine, 64); // the other slot has a loaded magazine with room: its fast path
    other.alloc(64);
    const p = popped(heap, 64);
    heap.free(p, 64);
    assert.equal(raw(heap, p).state, BUF_ALLOC_DEFER);
    const e = throwsKind(() => other.free(p, 64), "duplicate-free");
    assert.match((e as UmemError).message, /duplicate free/);
    assert.deepEqual(heap.verify(), []);
    // Settled (the slot freed another buffer), the state byte says cached: still refused.
    const q = heap.alloc(64);
    assert.equal(q, p);
    const r = heap.alloc(64);
    heap.free(q, 64);
    heap.free(r, 64);
    assert.equal(raw(heap, q).state, BUF_CACHED);
    throwsKind(() => other.free(q, 64), "duplicate-free");
    other.free(mine, 64);
    assert.deepEqual(heap.verify(), []);
    other.detach();
  });

  it("a cache with a constructor defers too, and its objects keep every byte", () => {
    const heap = Heap.create({ size: 1 << 20 });
    let built = 0;
    const c = heap.createCache("node", 32, {
      ctor: (h, b) => {
        h.i32[b >> 2] = 0x600d;
        built++;
      },
    });
    const p = c.alloc();
    c.free(p);
    assert.equal(c.alloc(), p);
    c.free(p); // the round popped last: deferred
    assert.equal(raw(heap, p).state, BUF_ALLOC_DEFER);
    assert.equal(raw(heap, p).last, raw(heap, p).at);
    assert.equal(heap.i32[p >> 2], 0x600d, "nothing written in a constructed object");
    assert.equal(c.alloc(), p);
    assert.equal(raw(heap, p).last, ~raw(heap, p).at, "the popped round");
    c.free(p);
    assert.equal(heap.i32[p >> 2], 0x600d);
    throwsKind(() => c.free(p), "duplicate-free");
    assert.equal(built, 1, "constructed once");
    assert.deepEqual(heap.verify(), []);
  });

  // 64 B and a size above 1 KiB: both take the fast path, which does not sync.
  for (const size of [64, 4096]) {
    it(`a free of ${size} B through views older than the heap syncs and is checked as any other`, () => {
      const { heap, other, old, big } = grownByOther();
      const ps = allocPast(old, () => other.alloc(size));
      const p = ps[ps.length - 1];
      assert.ok(p >= old && heap.mapped === old, "p lies past this handle's views");
      heap.free(p, size);
      assert.ok(heap.mapped > old, "the free synced");
      throwsKind(() => heap.free(p, size), "duplicate-free");
      for (const q of ps.slice(0, -1)) other.free(q, size);
      other.free(big, 4 << 20);
      assert.deepEqual(heap.verify(), []);
      other.detach();
    });
  }

  it("an alloc that brings in a buffer past this handle's views syncs before it returns", () => {
    const { heap, other, old, big } = grownByOther();
    // The alloc fast path does not sync: each new slab comes through the slow path, which does.
    const ps = allocPast(old, () => {
      const p = heap.alloc(96);
      assert.ok(p + 96 <= heap.mapped, `buffer ${p} lies inside this handle's views`);
      heap.u8[p + 95] = 7;
      assert.equal(heap.u8[p + 95], 7);
      return p;
    });
    assert.ok(ps[ps.length - 1] >= old, "a buffer from the grown part was handed out");
    for (const p of ps) heap.free(p, 96);
    other.free(big, 4 << 20);
    assert.deepEqual(heap.verify(), []);
    other.detach();
  });

  it("the collector settles every deferred free before it marks and sweeps", () => {
    const heap = Heap.create({ size: 4 << 20 });
    const gc = Collector.create(heap);
    const root = heap.zalloc(8);
    gc.addRoots(root, root + 8);
    const a = gc.malloc(40);
    gc.free(a);
    const a2 = gc.malloc(40); // from the magazine now
    gc.free(a2); // deferred in this slot
    const b = gc.malloc(40); // the same buffer, popped back
    assert.equal(b, a);
    assert.equal(a2, a);
    assert.ok(gc.isLive(b));
    heap.i32[root >> 2] = b;
    const c = gc.realloc(b, 8); // needs b live, through the flagged state
    heap.i32[root >> 2] = c;
    gc.free(gc.malloc(40));
    const e = gc.malloc(40); // the slot's last popped buffer
    gc.free(e); // deferred while the collection runs: it must not be swept again as garbage
    gc.collect();
    assert.ok(!gc.isLive(e));
    assert.ok(gc.isLive(c), "reachable from the root: kept");
    assert.deepEqual(heap.verify(), []);
    gc.detach();
  });
});

describe("the popped round", () => {
  it("the round popped from the deferred free is remembered, and its free needs no lookup", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const p = poppedRound(heap, 64); // the second alloc popped the first's deferred free
    const { at } = raw(heap, p);
    assert.deepEqual(raw(heap, p), { state: BUF_ALLOC_DEFER, at, last: ~at });
    assert.equal(bufferState(heap, p), BUF_ALLOC, "flagged, popped: allocated to readers");
    assert.equal(inspect(heap).whatis(p)?.state, "allocated");
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 64); // deferred again: the record turns back
    assert.deepEqual(raw(heap, p), { state: BUF_ALLOC_DEFER, at, last: at });
    assert.equal(bufferState(heap, p), BUF_CACHED);
    assert.deepEqual(heap.verify(), []);
    throwsKind(() => heap.free(p, 64), "duplicate-free");
    // The shortest way takes nothing but the popped round itself.
    const q = heap.alloc(64);
    assert.equal(q, p);
    throwsKind(() => heap.free(q + 8, 64), "bad-free");
    throwsKind(() => heap.free(q, 200), "wrong-size");
    assert.equal(raw(heap, q).last, ~at, "a refused free leaves the popped round be");
    assert.deepEqual(heap.verify(), []);
    heap.free(q, 64);
    assert.deepEqual(heap.verify(), []);
  });

  it("another worker's free of the popped round takes it back: the slot's own free is then a duplicate", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const other = Heap.attach(heap.buffer); // another worker slot, in this thread
    const p = poppedRound(heap, 64);
    assert.ok(raw(heap, p).last < 0);
    other.free(p, 64); // a buffer handed to another worker and freed there: sound
    assert.equal(raw(heap, p).last, 0, "no longer this slot's popped round");
    assert.equal(bufferState(heap, p), BUF_CACHED);
    assert.deepEqual(heap.verify(), []);
    const e = throwsKind(() => heap.free(p, 64), "duplicate-free");
    assert.match((e as UmemError).message, /duplicate free: buffer freed twice/);
    assert.deepEqual(heap.verify(), []);
    // p is in the other slot's magazine once, and in none of this slot's.
    assert.equal(other.alloc(64), p);
    assert.notEqual(other.alloc(64), p);
    assert.notEqual(heap.alloc(64), p);
    other.detach();
  });

  it("a popped round below the top is an allocated buffer like any other", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const other = Heap.attach(heap.buffer);
    const warm = [heap.alloc(64), heap.alloc(64), heap.alloc(64)];
    for (const b of warm) heap.free(b, 64); // rounds in the loaded magazine: no slow path below
    const p = poppedRound(heap, 64);
    const q = heap.alloc(64); // p is below the top now
    assert.equal(raw(heap, p).last, 0);
    assert.equal(raw(heap, p).state, BUF_ALLOC_DEFER, "still flagged");
    assert.equal(bufferState(heap, p), BUF_ALLOC);
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 64);
    assert.equal(bufferState(heap, p), BUF_CACHED);
    throwsKind(() => heap.free(p, 64), "duplicate-free");
    throwsKind(() => other.free(p, 64), "duplicate-free");
    heap.free(q, 64);
    assert.deepEqual(heap.verify(), []);
    other.detach();
  });

  it("a free of another buffer takes the popped round's place in the magazine, and its mark", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const x = heap.alloc(64); // live since before the pair
    const p = poppedRound(heap, 64);
    heap.free(x, 64); // pushed where p was
    assert.equal(raw(heap, p).last, 0);
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 64);
    throwsKind(() => heap.free(p, 64), "duplicate-free");
    throwsKind(() => heap.free(x, 64), "duplicate-free");
    assert.deepEqual(heap.verify(), []);
    const got = new Set([heap.alloc(64), heap.alloc(64), heap.alloc(64)]);
    assert.ok(got.has(x) && got.has(p) && got.size === 3, "each in the magazine once");
  });

  it("verify() reports a record that names no round of its own, or a round not flagged", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const p = poppedRound(heap, 64);
    const cp = sizeCache(heap, 64), word = (cp + CA_CPU + heap.slot * CC_SIZE + CC_LAST) >> 2;
    const { at } = raw(heap, p);
    heap.i32[word] = ~(at + 1); // the next buffer's state byte
    assert.match(heap.verify().join("\n"), /popped round .* is not the state of its round/);
    heap.i32[word] = at; // as if deferred: but p is past the top, not the top
    assert.match(heap.verify().join("\n"), /deferred free .* is not the state of its round/);
    heap.i32[word] = ~at;
    heap.u8[at] = BUF_ALLOC;
    assert.match(heap.verify().join("\n"), /popped round .* is not flagged allocated/);
    heap.u8[at] = BUF_ALLOC_DEFER;
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 64);
    assert.deepEqual(heap.verify(), []);
  });

  it("a debugged cache never defers: a refused alloc's buffer goes back without a record", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "contents,noabort" });
    const p = heap.alloc(64);
    heap.free(p, 64);
    heap.u8[p + 3] = 0; // a write after free: the next alloc of p refuses it
    throwsKind(() => heap.alloc(64), "modified-after-free");
    const cp = sizeCache(heap, 64), word = (cp + CA_CPU + heap.slot * CC_SIZE + CC_LAST) >> 2;
    assert.equal(heap.i32[word], 0);
    assert.equal(bufferState(heap, p), BUF_CACHED);
  });

  it("the collector forgets every popped round before it sweeps one as garbage", () => {
    const heap = Heap.create({ size: 4 << 20 });
    const gc = Collector.create(heap);
    gc.free(gc.malloc(40));
    gc.free(gc.malloc(40)); // deferred
    const e = gc.malloc(40); // the slot's popped round, reachable from nothing
    assert.ok(raw(heap, e).last < 0);
    gc.collect();
    assert.ok(!gc.isLive(e), "swept");
    assert.equal(raw(heap, e).last, 0);
    assert.deepEqual(heap.verify(), []);
    gc.detach();
  });
});
