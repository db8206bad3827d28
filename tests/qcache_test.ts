/** vmem quantum caches: small allocations from an arena go through object caches. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, UmemError, Vmem } from "../mod.ts";

const kind = (k: string) => (e: unknown) => e instanceof UmemError && e.kind === k;

describe("quantum caches", () => {
  it("creates min(qcacheMax / quantum, 16) caches named <arena>_<size>", () => {
    const heap = Heap.create({ size: 4 << 20 });
    Vmem.create(heap, "q", { quantum: 32, source: heap.vmem, qcacheMax: 96 });
    Vmem.create(heap, "r", { quantum: 8, source: heap.vmem, qcacheMax: 1 << 20 });
    const names = heap.caches().map((c) => c.name);
    assert.deepEqual(names.filter((n) => n.startsWith("q_")), ["q_32", "q_64", "q_96"]);
    assert.equal(names.filter((n) => n.startsWith("r_")).length, 16);
  });

  it("serves small sizes from the caches, larger ones from the arena, with no overlap", () => {
    const heap = Heap.create({ size: 8 << 20 });
    const a = Vmem.create(heap, "q", { quantum: 16, source: heap.vmem, qcacheMax: 256 });
    const live: [number, number][] = [];
    for (let i = 0; i < 3000; i++) {
      const size = 1 + ((i * 97) % 600);
      const p = a.alloc(size);
      assert.equal(p % 16, 0);
      live.push([p, Math.ceil(size / 16) * 16]);
    }
    live.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < live.length; i++) {
      assert.ok(live[i - 1][0] + live[i - 1][1] <= live[i][0], "segments overlap");
    }
    const q64 = heap.caches().find((c) => c.name === "q_64")!;
    assert.ok(q64.stats().inUse > 0, "sizes up to qcacheMax come from the caches");
    for (const [p, s] of live) a.free(p, s);
    assert.throws(() => a.free(live[0][0], live[0][1]), kind("duplicate-free"));
    assert.equal(q64.stats().inUse, 0);
    assert.deepEqual(heap.verify(), []);
    heap.reap();
    assert.equal(a.stats().inUse, 0);
    assert.equal(a.stats().imported, 0, "every span went back to the heap's arena");
  });

  it("xalloc and xfree bypass the caches; destroy takes the caches with it", () => {
    const heap = Heap.create({ size: 4 << 20 });
    const a = Vmem.create(heap, "q", { quantum: 16, source: heap.vmem, qcacheMax: 128 });
    const p = a.xalloc(64, { align: 1024 });
    assert.equal(p % 1024, 0);
    a.xfree(p, 64);
    a.alloc(32);
    assert.deepEqual(a.destroy(), {
      leakedBytes: 32,
      leakedSegments: 1,
      message: "vmem_destroy('q'): leaked 32 bytes",
    });
    assert.equal(heap.caches().filter((c) => c.name.startsWith("q_")).length, 0);
    assert.throws(() => a.alloc(16), kind("destroyed"));
    heap.reap();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
    assert.deepEqual(heap.verify(), []);
  });

  it("refuses quantum caches on an arena with no heap memory behind it", () => {
    const heap = Heap.create({ size: 4 << 20 });
    assert.throws(
      () => Vmem.create(heap, "ids", { base: 1, size: 100, quantum: 1, qcacheMax: 8 }),
      kind("invalid-argument"),
    );
  });
});
