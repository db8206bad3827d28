/**
 * The magazine layer: the depot trades magazines, sizes grow under contention, and the
 * per-worker caches stay consistent through it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap } from "../mod.ts";
import { CA_CONT_TIME, CA_DEPOT_LOCK } from "../core/slab.ts";
import { lock, unlock } from "../core/lock.ts";
import { MAG_ROUNDS, maxMagType, noteContention } from "../core/magazine.ts";

describe("magazines and the depot", () => {
  it("frees beyond two magazines go to the depot as full magazines, allocs take them back", () => {
    const heap = Heap.create({ size: 4 << 20 });
    const c = heap.createCache("m", 64);
    const rounds = c.stats().magazineSize;
    const n = rounds * 6;
    const ptrs = Array.from({ length: n }, () => c.alloc());
    for (const p of ptrs) c.free(p);
    const s = c.stats();
    // Two magazines stay with the slot; the rest went to the depot full.
    assert.equal(s.depotFull, Math.floor(n / rounds) - 2);
    assert.equal(s.cached, n);
    const again = Array.from({ length: n }, () => c.alloc());
    assert.deepEqual(new Set(again), new Set(ptrs), "the same buffers come back");
    assert.equal(c.stats().constructed, n, "no buffer was constructed twice");
    assert.equal(c.stats().depotFull, 0);
    for (const p of again) c.free(p);
    assert.deepEqual(heap.verify(), []);
  });

  it("contention on the depot lock grows the magazines, up to libumem's limit", () => {
    const heap = Heap.create({ size: 4 << 20 });
    const c = heap.createCache("hot", 64);
    const before = c.stats().magazineSize;
    const held = Array.from({ length: 200 }, () => c.alloc());
    for (const p of held) c.free(p);
    assert.ok(c.stats().depotFull > 0);
    lock(heap, c.addr + CA_DEPOT_LOCK);
    for (let i = 0; i < 5; i++) noteContention(heap, c.addr);
    unlock(heap, c.addr + CA_DEPOT_LOCK);
    const s = c.stats();
    assert.equal(s.magazineResizes, 1);
    assert.equal(s.magazineSize, MAG_ROUNDS[MAG_ROUNDS.indexOf(before) + 1]);
    assert.equal(s.depotFull, 0, "the depot was purged");
    assert.equal(s.depotContention, 5);
    // The slot still has old-size magazines; it drops them at its next depot visit.
    const ptrs = Array.from({ length: 400 }, () => c.alloc());
    for (const p of ptrs) c.free(p);
    assert.ok(c.stats().depotFull > 0);
    assert.deepEqual(heap.verify(), []);
    // Never past the largest magazine for the buffer size.
    for (let k = 0; k < 20; k++) {
      heap.f64[(c.addr + CA_CONT_TIME) >> 3] = Date.now() - 5000; // one resize an interval
      lock(heap, c.addr + CA_DEPOT_LOCK);
      for (let i = 0; i < 5; i++) noteContention(heap, c.addr);
      unlock(heap, c.addr + CA_DEPOT_LOCK);
    }
    assert.equal(c.stats().magazineSize, MAG_ROUNDS[maxMagType(64)]);
    heap.reap();
    assert.deepEqual(heap.verify(), []);
  });

  it("UMEM_OPTIONS max_contention and reap_interval set how much contention, in how long, grows them", () => {
    /** Magazine resizes after `n` contended acquisitions, the last interval begun `ago` ms back. */
    const resizes = (options: string, n: number, ago: number) => {
      const heap = Heap.create({ size: 4 << 20, options });
      const c = heap.createCache("hot", 64);
      lock(heap, c.addr + CA_DEPOT_LOCK);
      noteContention(heap, c.addr); // begins an interval, now
      heap.f64[(c.addr + CA_CONT_TIME) >> 3] = Date.now() - ago; // ... moved back
      for (let i = 1; i < n; i++) noteContention(heap, c.addr);
      unlock(heap, c.addr + CA_DEPOT_LOCK);
      return c.stats().magazineResizes;
    };
    assert.equal(resizes("", 5, 0), 1, "more than 3 in a second: libumem's default grows");
    assert.equal(resizes("max_contention=10", 5, 0), 0);
    assert.equal(resizes("max_contention=10", 12, 0), 1);
    assert.equal(resizes("max_contention=0", 1, 0), 1, "0: any contention grows them");
    // One resize an interval, however much contention (libumem's update looks once an interval).
    for (const options of ["max_contention=0", ""]) {
      const heap = Heap.create({ size: 4 << 20, options });
      const c = heap.createCache("hot", 64);
      lock(heap, c.addr + CA_DEPOT_LOCK);
      for (let i = 0; i < 50; i++) noteContention(heap, c.addr);
      assert.equal(c.stats().magazineResizes, 1, options);
      // The next interval begins when this one would have ended: then it may grow again.
      heap.f64[(c.addr + CA_CONT_TIME) >> 3] -= 1000;
      for (let i = 0; i < 50; i++) noteContention(heap, c.addr);
      unlock(heap, c.addr + CA_DEPOT_LOCK);
      assert.equal(c.stats().magazineResizes, 2, options);
    }
    assert.equal(resizes("", 1, 0), 0);
    // An interval begun 5 s ago is over at the default second: the count starts again.
    assert.equal(resizes("", 5, 5000), 0);
    assert.equal(resizes("reap_interval=10", 5, 5000), 1, "a 10 s interval is still running");
    assert.equal(resizes("reap_interval=2", 5, 5000), 0);
  });

  it("a buffer freed by another worker slot is reused by that slot", () => {
    const heap = Heap.create({ size: 4 << 20 });
    const other = Heap.attach(heap.buffer);
    const p = heap.alloc(128);
    other.free(p, 128);
    assert.equal(other.alloc(128), p, "the freeing slot's magazine serves it next");
    heap.free(p, 128);
    assert.throws(
      () => other.free(p, 128),
      (e: Error & { kind?: string }) => e.kind === "duplicate-free",
    );
    other.detach();
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
    assert.deepEqual(heap.verify(), []);
  });
});
