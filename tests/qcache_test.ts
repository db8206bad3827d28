/** vmem quantum caches: small allocations from an arena go through object caches. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, UmemError, Vmem } from "../mod.ts";
import { mk, throwsKind } from "./helpers.ts";

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

describe("quantum caches and arenas: misuse found by an audit", () => {
  it("an alloc that names a policy is served by the quantum caches, and frees", () => {
    const heap = mk({ size: 4 << 20 });
    const qa = Vmem.create(heap, "qa", { source: heap.vmem, quantum: 8, qcacheMax: 64 });
    for (const policy of ["bestfit", "firstfit", "nextfit", "instantfit"] as const) {
      const p = qa.alloc(16, policy);
      qa.free(p, 16); // before the fix: "not in any slab", the segment taken from the arena itself
    }
    assert.equal(qa.destroy().leakedBytes, 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("a cache's slab is not freed through its arena", () => {
    const heap = mk({ size: 4 << 20 });
    const qa = Vmem.create(heap, "qa", { source: heap.vmem, quantum: 8, qcacheMax: 64 });
    const b = qa.alloc(8);
    // Before the fix the slab went back, and heap.vmem handed its memory out again.
    throwsKind(() => qa.free(b, 4096), "bad-free", /is the memory of a slab of cache qa_8/);
    const p = heap.alloc(64);
    const slab = p - (p % 4096);
    throwsKind(() => heap.vmem.free(slab, 4096), "bad-free", /slab of cache umem_alloc_64/);
    qa.free(b, 8);
    heap.free(p, 64);
    qa.destroy();
    assert.deepEqual(heap.verify(), []);
  });

  it("an arena another imports from is not destroyed", () => {
    const heap = mk({ size: 4 << 20 });
    const p = Vmem.create(heap, "P", { source: heap.vmem, quantum: 4096 });
    const k = Vmem.create(heap, "K", { source: p, quantum: 8, importSize: 4096 });
    const x = k.alloc(64);
    throwsKind(() => p.destroy(), "invalid-argument", /arena K imports from it/);
    k.free(x, 64);
    k.destroy();
    assert.equal(p.destroy().leakedBytes, 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("a create whose quantum caches cannot be made leaves nothing; caches need heap memory", () => {
    const heap = mk({ size: 4 << 20 });
    const before = heap.arenas().length;
    throwsKind(
      () => Vmem.create(heap, "n".repeat(31), { source: heap.vmem, qcacheMax: 64 }),
      "invalid-argument",
      /quantum cache's name 'n+_8' is 33 bytes/,
    );
    heap.createCache("R_16", 16);
    throwsKind(
      () => Vmem.create(heap, "R", { source: heap.vmem, qcacheMax: 64 }),
      "invalid-argument",
      /a cache named 'R_16' exists/,
    );
    assert.equal(heap.arenas().length, before, "no arena left behind");
    const ids = Vmem.create(heap, "ids", { base: 4096, size: 1 << 20 });
    throwsKind(
      () => Vmem.create(heap, "q", { source: ids, qcacheMax: 64 }),
      "invalid-argument",
      /quantum caches need heap memory/,
    );
    throwsKind(() => Vmem.create(heap, "n", null as never), "invalid-argument");
    throwsKind(() => Vmem.create(heap, "n", { source: {} as never }), "invalid-argument");
    throwsKind(() => heap.vmem.xalloc(4096, null as never), "invalid-argument");
    assert.deepEqual(heap.verify(), []);
  });
});
