/**
 * The collector (issue 10): exactness on a list of a million nodes, cycles, interior pointers,
 * atomic objects, pins, finalizer order, mark-stack overflow, find-leak mode, limits, bad
 * input, a model check with random graphs, and two workers building lists while the main
 * thread collects.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Heap, inspect, UmemError } from "../mod.ts";
import { Collector, type CollectorOptions } from "../gc/mod.ts";
import {
  BUF_MARK,
  GC_BUSY,
  GC_LARGE,
  GC_LARGE_COUNT,
  GC_SINCE,
  LO_MARK,
  LO_SIZE,
} from "../gc/layout.ts";
import { Marker } from "../gc/mark.ts";
import { HDR_SAFEPOINT } from "../core/internal.ts";
import { mk, throwsKind, withWorkers as withWorkersOf } from "./helpers.ts";

function setup(
  options: CollectorOptions = {},
  size = 8 << 20,
): { heap: Heap; gc: Collector } {
  const heap = mk({ size, maxSize: 512 << 20, slots: 4 });
  return { heap, gc: Collector.create(heap, { auto: false, ...options }) };
}

/** Builds a list of `n` nodes [value, next] from a pinned head; returns every node. */
function list(heap: Heap, gc: Collector, n: number): Int32Array {
  const nodes = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const p = gc.malloc(8);
    heap.i32[p >> 2] = i;
    if (i > 0) heap.i32[(nodes[i - 1] >> 2) + 1] = p;
    nodes[i] = p;
  }
  return nodes;
}

describe("gc: reachability", () => {
  it("a list of 1,000,000 nodes: dropping the pointer to its middle frees exactly the back half", () => {
    const { heap, gc } = setup({}, 32 << 20);
    const n = 1_000_000;
    const head = gc.malloc(8);
    using _pin = gc.pin(head);
    let prev = head, mid = 0;
    for (let i = 1; i < n; i++) {
      const p = gc.malloc(8);
      heap.i32[p >> 2] = i;
      heap.i32[(prev >> 2) + 1] = p;
      prev = p;
      if (i === n / 2 - 1) mid = p;
    }
    const first = gc.collect();
    assert.equal(first.objects, 0);
    assert.equal(first.liveObjects, n);
    const back = heap.i32[(mid >> 2) + 1];
    heap.i32[(mid >> 2) + 1] = 0;
    const r = gc.collect();
    assert.equal(r.objects, n / 2);
    assert.equal(r.bytesReclaimed, (n / 2) * 8);
    assert.equal(r.liveObjects, n / 2);
    // Every node of the front half is intact, none of the back half is allocated.
    let k = 0;
    for (let p = head; p !== 0; p = heap.i32[(p >> 2) + 1], k++) {
      assert.equal(heap.i32[p >> 2], k);
    }
    assert.equal(k, n / 2);
    assert.equal(gc.isLive(mid), true);
    assert.equal(gc.isLive(back), false);
    assert.equal(gc.stats().bytesReclaimed, (n / 2) * 8);
    assert.deepEqual(heap.verify(), []);
  });

  it("collects cycles and keeps what a root reaches", () => {
    const { heap, gc } = setup();
    const [a, b, c] = [gc.malloc(16), gc.malloc(16), gc.malloc(16)];
    heap.i32[a >> 2] = b;
    heap.i32[b >> 2] = c;
    heap.i32[c >> 2] = a; // a cycle of three, unreachable
    const self = gc.malloc(32);
    heap.i32[self >> 2] = self;
    const kept = gc.malloc(16);
    const table = heap.zalloc(16);
    gc.addRoots(table, table + 16);
    heap.i32[table >> 2] = kept;
    const r = gc.collect();
    assert.equal(r.objects, 4);
    assert.equal(gc.isLive(kept), true);
    for (const p of [a, b, c, self]) assert.equal(gc.isLive(p), false);
    assert.equal(gc.removeRoots(table, table + 16), true);
    assert.equal(gc.collect().objects, 1);
    assert.deepEqual(heap.verify(), []);
  });

  it("an interior pointer keeps its object; with interior: false it does not", () => {
    for (const interior of [true, false]) {
      const { heap, gc } = setup({ interior });
      const obj = gc.malloc(48); // a class whose objects span three granules
      const obj2 = gc.malloc(48);
      const holder = gc.mallocUncollectable(8);
      heap.i32[holder >> 2] = obj + 36; // into the third granule
      heap.i32[(holder >> 2) + 1] = obj2; // the base pointer counts either way
      gc.collect();
      assert.equal(gc.isLive(obj), interior, `interior ${interior}`);
      assert.equal(gc.isLive(obj2), true);
      assert.deepEqual(heap.verify(), []);
    }
  });

  it("a pointer-looking number in an atomic object keeps nothing; in a scanned one it does", () => {
    const { heap, gc } = setup();
    const target = gc.malloc(16);
    const other = gc.malloc(16);
    const numbers = gc.mallocAtomic(64);
    const words = gc.malloc(64);
    const holder = gc.mallocUncollectable(16);
    heap.i32[holder >> 2] = numbers;
    heap.i32[(holder >> 2) + 1] = words;
    heap.i32[(numbers >> 2) + 3] = target;
    heap.i32[(words >> 2) + 5] = other;
    const r = gc.collect();
    assert.equal(gc.isLive(numbers), true, "the atomic object itself is reachable");
    assert.equal(gc.isLive(target), false);
    assert.equal(gc.isLive(other), true);
    assert.equal(r.objects, 1);
  });

  it("a pinned object survives until its handle is disposed", () => {
    const { heap, gc } = setup();
    const p = gc.malloc(100);
    const child = gc.malloc(8);
    heap.i32[(p >> 2) + 10] = child;
    {
      using pin = gc.pin(p + 20); // a pin may point inside
      assert.equal(gc.collect().objects, 0);
      assert.equal(gc.collect().objects, 0);
      assert.equal(gc.isLive(child), true);
      assert.equal(pin.pinned, true);
    }
    assert.equal(gc.collect().objects, 2);
    const q = gc.malloc(8);
    const pin = gc.pin(q);
    pin.dispose();
    pin.dispose(); // twice: nothing
    assert.equal(gc.collect().objects, 1);
    assert.deepEqual(heap.verify(), []);
  });

  it("agrees with findleaks on the same roots (find-leak mode frees nothing)", () => {
    const { heap, gc } = setup({ findLeaks: true });
    const kept = gc.malloc(32);
    gc.pin(kept);
    const lost = [gc.malloc(32), gc.malloc(32), gc.mallocAtomic(200)];
    heap.i32[lost[0] >> 2] = lost[1];
    const r = gc.collect();
    assert.equal(r.objects, 3);
    assert.equal(r.bytesReclaimed, 32 + 32 + 256);
    assert.ok(r.leaks !== undefined);
    assert.equal(r.leaks.total_buffers, 3);
    const core = inspect(heap).findleaks();
    assert.equal(core.total_buffers, r.leaks.total_buffers);
    assert.equal(core.total_bytes, r.leaks.total_bytes);
    assert.deepEqual(
      r.leaks.classes.map((c) => [c.cache, c.count]).sort(),
      [["gc_32", 2], ["gc_atomic_256", 1]],
    );
    for (const p of lost) assert.equal(gc.isLive(p), true, "reported, not freed");
    gc.setFindLeaks(false);
    assert.equal(gc.collect().objects, 3);
  });
});

describe("gc: on a debugging heap", () => {
  it("guards and audit: the same answers, and the debug checks pass", () => {
    const heap = mk({ size: 16 << 20, debug: "guards,audit,noabort" });
    const gc = Collector.create(heap, { auto: false });
    const nodes = list(heap, gc, 1000);
    using _pin = gc.pin(nodes[0]);
    heap.i32[(nodes[499] >> 2) + 1] = 0;
    const spare = gc.malloc(48);
    const holder = gc.mallocUncollectable(8);
    heap.i32[holder >> 2] = spare + 40; // interior
    assert.equal(gc.collect().objects, 500);
    assert.equal(gc.isLive(spare), true);
    assert.equal(gc.isLive(nodes[500]), false);
    assert.equal(gc.isLive(nodes[499]), true);
    const again = list(heap, gc, 600); // reuses the freed buffers: the debug layer checks them
    assert.equal(gc.collect().objects, 600);
    void again;
    heap.reap();
    assert.deepEqual(heap.verify(), []);
  });
});

describe("gc: large objects", () => {
  it("past 128 KiB: whole pages, marked in their table, interior pointers, kinds, free, realloc", () => {
    const { heap, gc } = setup({}, 16 << 20);
    const big = gc.malloc(200_000); // a scanned array of pointers
    const small = gc.malloc(16);
    const lost = gc.malloc(300_000);
    const numbers = gc.mallocAtomic(150_000);
    const target = gc.malloc(16);
    heap.i32[(big >> 2) + 40_000] = small; // deep inside the array
    heap.i32[(big >> 2) + 40_001] = numbers;
    heap.i32[(numbers >> 2) + 30_000] = target; // atomic: keeps nothing
    heap.i32[(lost >> 2) + 5] = small;
    const holder = gc.mallocUncollectable(8);
    heap.i32[holder >> 2] = big + 123_456; // an interior pointer into the big object
    const before = gc.stats().heapSize;
    assert.ok(before >= 200_704 + 303_104 + 151_552, `heapSize ${before} counts the spans`);
    const r = gc.collect();
    assert.equal(r.objects, 2, "lost and target");
    assert.equal(r.bytesReclaimed, 303_104 + 16);
    for (const p of [big, small, numbers]) assert.equal(gc.isLive(p), true);
    for (const p of [lost, target]) assert.equal(gc.isLive(p), false);
    assert.equal(gc.stats().heapSize, before - 303_104);
    // realloc: small to large and back keep the contents
    heap.i32[small >> 2] = 99;
    const grown = gc.realloc(small, 500_000);
    heap.i32[(big >> 2) + 40_000] = grown;
    assert.equal(heap.i32[grown >> 2], 99);
    assert.equal(gc.realloc(grown, 499_000), grown, "the same pages");
    const shrunk = gc.realloc(grown, 8);
    heap.i32[(big >> 2) + 40_000] = shrunk;
    assert.equal(heap.i32[shrunk >> 2], 99);
    assert.equal(gc.collect().objects, 0);
    gc.free(numbers);
    throwsKind(() => gc.free(numbers), "bad-free");
    throwsKind(() => gc.free(big + 8), "bad-free");
    heap.i32[holder >> 2] = 0;
    assert.equal(gc.collect().objects, 2, "big and shrunk");
    assert.equal(gc.stats().heapSize - (gc.stats().heapSize % 4096), gc.stats().heapSize);
    assert.deepEqual(heap.verify(), []);
  });

  it("base pointers only: an interior pointer does not keep a large object", () => {
    const { heap, gc } = setup({ interior: false }, 16 << 20);
    const big = gc.malloc(140_000), big2 = gc.malloc(140_000);
    const holder = gc.mallocUncollectable(8);
    heap.i32[holder >> 2] = big + 4;
    heap.i32[(holder >> 2) + 1] = big2;
    gc.collect();
    assert.equal(gc.isLive(big), false);
    assert.equal(gc.isLive(big2), true);
  });

  it("finalizers and find-leak mode see large objects as findleaks does", () => {
    const { heap, gc } = setup({}, 16 << 20);
    const ran: number[] = [];
    const big = gc.malloc(140_000);
    gc.registerFinalizer(big, (p) => ran.push(p));
    assert.equal(gc.collect().finalizable, 1);
    assert.deepEqual(ran, [big]);
    assert.equal(gc.collect().objects, 1);
    gc.setFindLeaks(true);
    const lost = gc.malloc(140_000);
    const r = gc.collect();
    assert.deepEqual(r.leaks?.classes.map((c) => [c.cache, c.count, c.bytes]), [
      ["umem_oversize", 1, 143_360],
    ]);
    const core = inspect(heap).findleaks();
    assert.equal(core.total_bytes, r.leaks?.total_bytes);
    assert.equal(gc.isLive(lost), true);
  });
});

describe("gc: mark stack", () => {
  it("a mark stack of one entry overflows, rescans, loses nothing, and then grows", () => {
    const { heap, gc } = setup({ markStack: 1 });
    // A tree of fan-out 8, four levels: 1 + 8 + 64 + 512 + 4096 nodes.
    const root = gc.mallocUncollectable(32);
    let level = [root], count = 0;
    for (let d = 0; d < 4; d++) {
      const next: number[] = [];
      for (const parent of level) {
        for (let k = 0; k < 8; k++) {
          const c = gc.malloc(32);
          heap.i32[(parent >> 2) + k] = c;
          next.push(c);
          count++;
        }
      }
      level = next;
    }
    const garbage = list(heap, gc, 100);
    const before = gc.stats().markStackOverflows;
    const r = gc.collect();
    assert.equal(r.liveObjects, count);
    assert.equal(r.objects, garbage.length);
    assert.ok(gc.stats().markStackOverflows > before, "the stack overflowed");
    for (const p of level) assert.equal(gc.isLive(p), true);
    assert.deepEqual(heap.verify(), []);
  });
});

describe("gc: finalizers", () => {
  it("run exactly once, an object reachable from another after it, in order", () => {
    const { heap, gc } = setup();
    const order: string[] = [];
    const [a, b, c] = [gc.malloc(16), gc.malloc(16), gc.malloc(16)];
    heap.i32[a >> 2] = b; // a -> b -> c
    heap.i32[b >> 2] = c;
    gc.registerFinalizer(c, () => order.push("c"));
    gc.registerFinalizer(a, (p) => {
      assert.equal(heap.i32[p >> 2], b, "a is intact when finalized");
      order.push("a");
    });
    gc.registerFinalizer(b, () => order.push("b"));
    const r1 = gc.collect();
    assert.equal(r1.finalizable, 1);
    assert.equal(r1.objects, 0, "nothing freed while finalizers may look");
    assert.deepEqual(order, ["a"]);
    gc.collect();
    assert.deepEqual(order, ["a", "b"]);
    gc.collect();
    assert.deepEqual(order, ["a", "b", "c"]);
    gc.collect();
    gc.collect();
    assert.deepEqual(order, ["a", "b", "c"], "each ran once");
    for (const p of [a, b, c]) assert.equal(gc.isLive(p), false);
    assert.equal(gc.stats().finalizers, 0);
  });

  it("a cycle of finalizable objects is not finalized and is reported", () => {
    const { heap, gc } = setup();
    const ran: number[] = [];
    const a = gc.malloc(8), b = gc.malloc(8);
    heap.i32[a >> 2] = b;
    heap.i32[b >> 2] = a;
    gc.registerFinalizer(a, (p) => ran.push(p));
    gc.registerFinalizer(b, (p) => ran.push(p));
    const r = gc.collect();
    assert.equal(r.finalizable, 0);
    assert.ok(r.cycles.length >= 1 && r.cycles.every((p) => p === a || p === b));
    assert.equal(gc.stats().finalizerCycles, r.cycles.length);
    gc.collect();
    assert.deepEqual(ran, []);
    assert.equal(gc.isLive(a) && gc.isLive(b), true, "kept, as Boehm keeps them");
    heap.i32[b >> 2] = 0; // break the cycle: a -> b, a first
    gc.collect();
    assert.deepEqual(ran, [a]);
    gc.collect();
    assert.deepEqual(ran, [a, b]);
    gc.collect();
    assert.equal(gc.isLive(a) || gc.isLive(b), false);
  });

  it("a freed object's finalizer is forgotten; a finalizer that throws does not stop the rest", () => {
    const { gc } = setup();
    const ran: string[] = [];
    const p = gc.malloc(8);
    gc.registerFinalizer(p, () => ran.push("freed"));
    gc.free(p);
    const q = gc.malloc(8), r = gc.malloc(8);
    gc.registerFinalizer(q, () => {
      throw new Error("boom");
    });
    gc.registerFinalizer(r, () => ran.push("r"));
    assert.throws(() => gc.collect(), /boom/);
    assert.deepEqual(ran, ["r"]);
    assert.equal(gc.stats().finalizers, 0);
  });

  it("an uncollectable object's finalizer never runs, and it stays a root", () => {
    const { heap, gc } = setup();
    const root = gc.mallocUncollectable(16), child = gc.malloc(16);
    heap.i32[root >> 2] = child;
    let ran = 0;
    gc.registerFinalizer(root, () => ran++);
    for (let i = 0; i < 2; i++) {
      const r = gc.collect();
      assert.equal(r.finalizable, 0);
      assert.equal(r.objects, 0, "the child the root points at is kept");
    }
    assert.equal(ran, 0);
    assert.ok(gc.isLive(child));
    assert.deepEqual(heap.verify(), []);
    gc.free(root); // before the fix: its state byte kept the mark, and this was a duplicate free
    assert.deepEqual(heap.verify(), []);
  });

  it("a finalized object in a buffer reused after a sweep is freed by the next collection", () => {
    const { heap, gc } = setup();
    const p = gc.malloc(32);
    gc.free(p);
    assert.equal(gc.malloc(32), p);
    assert.equal(gc.collect().objects, 1); // garbage: the sweep frees it, a deferred free
    const q = gc.malloc(32);
    assert.equal(q, p, "the same buffer, handed straight back");
    let ran = 0;
    gc.registerFinalizer(q, () => ran++);
    assert.equal(gc.collect().finalizable, 1);
    assert.equal(ran, 1);
    assert.deepEqual(heap.verify(), []); // before the fix: state 0xc1, a mark kept for ever
    assert.equal(gc.collect().objects, 1);
    assert.equal(gc.isLive(q), false);
    assert.deepEqual(heap.verify(), []);
  });

  it("random DAGs: each finalizer runs once, every object after all that reach it", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 25 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { maxLength: 60 }),
        (n, edges) => {
          const { heap, gc } = setup();
          const objs = Array.from({ length: n }, () => gc.malloc(16));
          const reach = objs.map((_, i) => new Set([i]));
          for (const [x, y, slot] of edges) {
            const a = Math.min(x % n, y % n), b = Math.max(x % n, y % n);
            if (a === b) continue; // edges go forward: no cycles
            heap.i32[(objs[a] >> 2) + (slot % 4)] = objs[b];
          }
          // What each object reaches, read back from the heap (later edges overwrite).
          for (let i = n - 1; i >= 0; i--) {
            for (let k = 0; k < 4; k++) {
              const j = objs.indexOf(heap.i32[(objs[i] >> 2) + k]);
              if (j >= 0) { for (const r of reach[j]) reach[i].add(r); }
            }
          }
          const when = new Array<number>(n).fill(-1);
          let round = 0;
          objs.forEach((p, i) =>
            gc.registerFinalizer(p, () => {
              assert.equal(when[i], -1, `object ${i} finalized twice`);
              when[i] = round;
            })
          );
          for (round = 0; round <= n + 1; round++) gc.collect();
          for (let i = 0; i < n; i++) {
            assert.ok(when[i] >= 0, `object ${i} never finalized`);
            for (const j of reach[i]) {
              if (j !== i) assert.ok(when[i] < when[j], `${i} reaches ${j}: finalized first`);
            }
            assert.equal(gc.isLive(objs[i]), false);
          }
          assert.equal(gc.stats().finalizers, 0);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("an object whose finalizer another worker has still to run stays intact", () => {
    const { heap, gc } = setup();
    const other = Heap.attach(heap.buffer);
    const gc2 = Collector.attach(other);
    const ran: number[] = [];
    const p = gc2.malloc(16), child = gc2.malloc(16);
    other.i32[p >> 2] = child;
    other.i32[child >> 2] = 12345;
    gc2.registerFinalizer(p, (q) => ran.push(other.i32[other.i32[q >> 2] >> 2]));
    gc2.leave(); // this worker's collections do not wait for it
    assert.equal(gc.collect().finalizable, 1);
    assert.equal(gc.collect().objects, 0, "still a root: its worker has not run it");
    assert.equal(gc.collect().objects, 0);
    gc2.enter();
    assert.equal(gc2.runFinalizers(), 1);
    assert.deepEqual(ran, [12345]);
    gc2.detach(); // one thread plays both workers: the collections below must not wait for it
    assert.equal(gc.collect().objects, 2);
    other.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker that died collecting: reclaimSlot clears its mark bits and lets the world go", () => {
    const { heap, gc } = setup();
    const other = Heap.attach(heap.buffer);
    const gc2 = Collector.attach(other);
    const kept = gc.malloc(16), child = gc.malloc(16);
    heap.i32[kept >> 2] = child;
    using _pin = gc.pin(kept);
    // What a collection by `other` leaves behind when its worker is killed while marking.
    heap.i32[(gc.record + GC_BUSY) >> 2] = other.slot + 1;
    Atomics.store(heap.i32, HDR_SAFEPOINT >> 2, 1);
    const st = new Marker(heap, gc.record, 0, 0, false).stateAt(kept);
    void gc2;
    heap.u8[st] |= BUF_MARK;
    heap.reclaimSlot(other.slot);
    assert.equal(heap.u8[st] & BUF_MARK, 0);
    assert.equal(heap.i32[HDR_SAFEPOINT >> 2], 0);
    assert.equal(gc.collect().objects, 0, "kept and child are scanned, not taken as marked");
    assert.equal(gc.isLive(child), true);
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker that died collecting: reclaimSlot clears the marks of large objects too", () => {
    const { heap, gc } = setup();
    const other = Heap.attach(heap.buffer);
    Collector.attach(other);
    const big = gc.malloc(300000), child = gc.malloc(16); // big is a large object, scanned
    heap.i32[big >> 2] = child;
    using _pin = gc.pin(big);
    heap.i32[(gc.record + GC_BUSY) >> 2] = other.slot + 1;
    Atomics.store(heap.i32, HDR_SAFEPOINT >> 2, 1);
    const t = heap.i32[(gc.record + GC_LARGE) >> 2];
    const n = heap.i32[(gc.record + GC_LARGE_COUNT) >> 2];
    const marks = () => {
      let set = 0;
      for (let i = 0; i < n; i++) set += heap.i32[(t + i * LO_SIZE + LO_MARK) >> 2];
      return set;
    };
    for (let i = 0; i < n; i++) heap.i32[(t + i * LO_SIZE + LO_MARK) >> 2] = 1;
    heap.reclaimSlot(other.slot);
    assert.equal(marks(), 0);
    assert.equal(gc.collect().objects, 0, "big is scanned, so its child lives");
    assert.equal(gc.isLive(child), true);
    assert.deepEqual(heap.verify(), []);
  });

  it("a finalizer that collects or allocates frees none of the objects still waiting for theirs", () => {
    const { heap, gc } = setup();
    const a = gc.malloc(32), b = gc.malloc(32), child = gc.malloc(64);
    heap.i32[b >> 2] = child;
    heap.i32[(b >> 2) + 1] = 0x0badf00d;
    heap.i32[(child >> 2) + 1] = 0x12345678;
    let seen: number[] = [];
    gc.registerFinalizer(a, (p) => {
      assert.equal(gc.collect().objects, 0, "a itself, b and b's child wait");
      assert.equal(gc.isLive(p), true);
      for (let i = 0; i < 8; i++) heap.i32.fill(0x77777777, gc.malloc(32) >> 2, 8);
    });
    gc.registerFinalizer(b, (p) => {
      seen = [gc.isLive(p) ? 1 : 0, heap.i32[(p >> 2) + 1], heap.i32[(child >> 2) + 1]];
    });
    assert.equal(gc.collect().finalizable, 2);
    assert.deepEqual(seen, [1, 0x0badf00d, 0x12345678], "b and its child intact");
    // Both functions have run: the objects go at the next collection.
    gc.collect();
    assert.equal(gc.isLive(a) || gc.isLive(b) || gc.isLive(child), false);
    assert.deepEqual(heap.verify(), []);
  });

  it("realloc inside a finalizer run by realloc's own allocation keeps both old objects", () => {
    const heap = Heap.create({ size: 64 << 20 });
    const gc = Collector.create(heap, { minTrigger: 0, freeSpaceDivisor: 1 << 20 });
    const keep = gc.mallocUncollectable(16);
    heap.i32[keep >> 2] = gc.malloc(64);
    gc.registerFinalizer(gc.malloc(16), () => {
      heap.i32[keep >> 2] = gc.realloc(heap.i32[keep >> 2], 300000); // collects in here
    });
    const x = gc.malloc(64); // held only as realloc's argument
    heap.u8.fill(0xab, x, x + 64);
    const q = gc.realloc(x, 200000);
    assert.deepEqual([...heap.u8.subarray(q, q + 64)], new Array(64).fill(0xab));
    assert.equal(gc.isLive(heap.i32[keep >> 2]), true);
    assert.deepEqual(heap.verify(), []);
  });

  it("detach forgets the handle's finalizers: its objects are collected, no other's function runs", () => {
    const { heap, gc } = setup();
    const w = Heap.attach(heap.buffer), gcw = Collector.attach(w);
    const keep = gc.mallocUncollectable(16);
    const x = gcw.malloc(32);
    heap.i32[keep >> 2] = x;
    heap.i32[x >> 2] = gcw.malloc(100000);
    gcw.registerFinalizer(x, () => assert.fail("a detached handle's finalizer ran"));
    gcw.detach();
    w.detach();
    heap.i32[keep >> 2] = 0;
    assert.equal(gc.collect().objects, 2, "x and its child, no longer waiting for a finalizer");
    assert.equal(gc.stats().finalizers, 0);
    // A handle attached later in the same slot numbers its functions from 1 again: only its own run.
    const w2 = Heap.attach(heap.buffer), gc2 = Collector.attach(w2);
    const ran: number[] = [];
    const z = gc2.malloc(16);
    gc2.registerFinalizer(z, (p) => ran.push(p));
    gc2.leave(); // one thread plays both workers: this worker's collection must not wait for it
    assert.equal(gc.collect().finalizable, 1);
    gc2.enter();
    assert.equal(gc2.runFinalizers(), 1);
    assert.deepEqual(ran, [z]);
    gc2.detach();
    w2.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("free of an object whose finalizer is ready forgets it: the function never runs on freed memory", () => {
    const { heap, gc } = setup();
    const other = Heap.attach(heap.buffer), gc2 = Collector.attach(other);
    const p = gc.malloc(32), ran: number[] = [];
    gc.registerFinalizer(p, (q) => ran.push(q));
    gc.leave(); // this worker's finalizers wait for it; the other collects
    assert.equal(gc2.collect().finalizable, 1);
    gc.enter(); // (no safe point yet: the ready function has not run)
    gc.free(p); // the program frees it explicitly first
    assert.equal(gc.runFinalizers(), 0, "before the fix: it ran on freed memory");
    assert.deepEqual(ran, []);
    gc2.detach();
    other.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("phase() is idle between collections and finalize inside a finalizer", () => {
    const { gc } = setup();
    let seen = "";
    gc.registerFinalizer(gc.malloc(8), () => {
      seen = gc.phase();
    });
    assert.equal(gc.phase(), "idle");
    gc.collect();
    assert.equal(seen, "finalize");
    assert.equal(gc.phase(), "idle");
  });
});

describe("gc: allocation, free, realloc, limits", () => {
  it("an allocation that fails counts nothing: a large one, and one whose fold runs a finalizer that throws", () => {
    const heap = Heap.create({ size: 8 << 20, maxSize: 8 << 20 });
    const gc = Collector.create(heap, { auto: false });
    for (let i = 0; i < 3; i++) throwsKind(() => gc.malloc(32 << 20), "out-of-memory");
    assert.equal(gc.stats().bytesSinceGC, 0, "large: before the fix 96 MiB counted");
    // A finalizer made ready by another slot's collection runs at this slot's next fold.
    const p = gc.malloc(16);
    gc.registerFinalizer(p, () => {
      throw new Error("boom");
    });
    const other = Heap.attach(heap.buffer), gc2 = Collector.attach(other);
    gc.leave();
    gc2.collect();
    gc.enter();
    let n = 0;
    assert.throws(() => {
      for (; n < 100000; n++) gc.malloc(1024);
    }, /boom/);
    const s = gc.stats();
    assert.equal(s.heapSize - s.freeBytes, n * 1024 + 16, "only what was allocated is in use");
    gc2.detach();
    other.detach();
  });

  it("an allocation that finds the heap full collects first, as Boehm's, small and large", () => {
    for (const [size, live] of [[1024, 1650], [256 << 10, 0]]) {
      const heap = Heap.create({ size: 8 << 20, maxSize: 8 << 20 });
      // A trigger past the heap: only the want of memory can start a collection.
      const gc = Collector.create(heap, { minTrigger: 16 << 20 });
      const root = gc.mallocUncollectable(8192);
      for (let i = 0; i < live; i++) heap.i32[(root >> 2) + i] = gc.malloc(4096);
      for (let n = 0; n < 2000; n++) gc.malloc(size); // garbage, many heaps' worth
      assert.ok(gc.stats().collections > 0, `size ${size}: before the fix out-of-memory`);
      for (let i = 0; i < live; i++) assert.ok(gc.isLive(heap.i32[(root >> 2) + i]));
      assert.deepEqual(heap.verify(), []);
    }
  });

  it("with collections manual (auto: false), the full heap is reported, not collected", () => {
    const heap = Heap.create({ size: 4 << 20, maxSize: 4 << 20 });
    const gc = Collector.create(heap, { auto: false });
    throwsKind(() => {
      for (let n = 0; n < 2000; n++) gc.malloc(4096);
    }, "out-of-memory");
    assert.equal(gc.stats().collections, 0);
    gc.collect();
    assert.ok(gc.malloc(4096) > 0);
  });

  it("bytes since the last collection stop at 2^31 - 1, never wrapping negative", () => {
    const { heap, gc } = setup({}, 16 << 20);
    const since = (gc.record + GC_SINCE) >> 2;
    heap.i32[since] = 0x7fffff00;
    for (let i = 0; i < 100; i++) gc.free(gc.malloc(60000)); // folds
    assert.equal(gc.stats().bytesSinceGC >= 0x7fffff00, true);
    assert.equal(heap.i32[since], 0x7fffffff);
  });

  it("malloc clears, objects are distinct, kinds keep their caches", () => {
    const { heap, gc } = setup();
    const p = gc.malloc(64);
    heap.i32.fill(-1, p >> 2, (p + 64) >> 2);
    gc.collect(); // freed into a magazine, handed out again below
    const q = gc.malloc(64);
    assert.equal(q, p);
    for (let i = 0; i < 16; i++) assert.equal(heap.i32[(q >> 2) + i], 0);
    const u = gc.mallocUncollectable(64);
    assert.equal(gc.collect().objects, 1, "q is garbage, u is not");
    gc.free(u);
    assert.equal(gc.isLive(u), false);
    assert.deepEqual(heap.verify(), []);
  });

  it("realloc keeps the contents and the kind, and frees the old object", () => {
    const { heap, gc } = setup();
    const p = gc.malloc(8);
    heap.i32[p >> 2] = 7;
    heap.i32[(p >> 2) + 1] = 8;
    assert.equal(gc.realloc(p, 7), p, "same class: same object");
    const q = gc.realloc(p, 3000);
    assert.notEqual(q, p);
    assert.equal(gc.isLive(p), false);
    assert.deepEqual([heap.i32[q >> 2], heap.i32[(q >> 2) + 1]], [7, 8]);
    const a = gc.mallocAtomic(16);
    const a2 = gc.realloc(a, 500);
    using _pin = gc.pin(a2);
    heap.i32[a2 >> 2] = q; // atomic: does not keep q
    assert.equal(gc.collect().objects, 1);
    assert.equal(gc.isLive(q), false);
    assert.equal(gc.realloc(a2, 0), 0);
    assert.equal(gc.isLive(a2), false);
    const z = gc.realloc(0, 10);
    assert.equal(gc.isLive(z), true);
  });

  it("bad frees and bad sizes throw and change nothing", () => {
    const { heap, gc } = setup();
    const p = gc.malloc(48);
    const plain = heap.alloc(48);
    throwsKind(() => gc.free(plain), "bad-free", /not an object of the collector/);
    throwsKind(() => gc.free(p + 16), "bad-free");
    throwsKind(() => gc.free(12345), "bad-free");
    throwsKind(() => gc.registerFinalizer(p + 8, () => {}), "bad-free");
    for (const size of [0, -1, 1.5, NaN, 2 ** 30 + 1, Infinity]) {
      throwsKind(() => gc.malloc(size), "invalid-argument", /GC_malloc: size/);
    }
    throwsKind(() => gc.mallocAtomic(0), "invalid-argument");
    throwsKind(() => gc.malloc("8" as unknown as number), "invalid-argument");
    throwsKind(() => gc.free("x" as unknown as number), "bad-free");
    throwsKind(
      () => gc.registerFinalizer(p, 5 as unknown as () => void),
      "invalid-argument",
      /expected a function/,
    );
    throwsKind(() => gc.pin(-4), "invalid-argument");
    throwsKind(() => gc.addRoots(64, 32), "invalid-argument");
    throwsKind(() => gc.realloc(p, -3), "invalid-argument");
    throwsKind(() => gc.setMaxHeapSize(-1), "invalid-argument");
    throwsKind(() => gc.setFreeSpaceDivisor(0), "invalid-argument");
    gc.free(p);
    throwsKind(() => gc.free(p), "duplicate-free");
    gc.free(0);
    gc.leave();
    throwsKind(() => gc.malloc(8), "invalid-argument", /left \(call enter\(\) first\)/);
    throwsKind(() => gc.free(plain), "invalid-argument", /left/);
    gc.enter();
    throwsKind(() => Collector.create(heap), "invalid-argument", /already/);
    throwsKind(() => Collector.attach(mk()), "invalid-argument", /no collector/);
    throwsKind(() => Collector.attach(heap), "invalid-argument", /already has a collector handle/);
    throwsKind(() => Collector.create(mk(), { freeSpaceDivisor: 0 }), "invalid-argument");
    throwsKind(() => Collector.create(mk({ trust: true })), "invalid-argument", /trust/);
    heap.free(plain, 48);
    assert.deepEqual(heap.verify(), []);
  });

  it("setMaxHeapSize: garbage is collected to stay under it, live data past it fails", () => {
    const { heap, gc } = setup({ auto: true });
    gc.setMaxHeapSize(1 << 20);
    for (let i = 0; i < 20_000; i++) gc.malloc(512); // 10 MB of garbage
    assert.ok(gc.stats().collections > 0);
    const keep = gc.mallocUncollectable(16384);
    const e = throwsKind(
      () => {
        for (let i = 0; i < 4096; i++) heap.i32[(keep >> 2) + i] = gc.malloc(1024);
      },
      "out-of-memory",
      /maximum heap size/,
    );
    assert.ok(e.message.includes("1048576"));
    gc.setMaxHeapSize(0);
    gc.malloc(1024); // no limit now
    assert.deepEqual(heap.verify(), []);
  });

  it("an allocation the heap has no memory for counts nothing in use", () => {
    const heap = mk({ size: 1 << 20, maxSize: 1 << 20 });
    const gc = Collector.create(heap, { auto: false });
    let failed = 0;
    for (let i = 0; i < 100_000 && failed < 50; i++) {
      try {
        gc.malloc(1024); // garbage
      } catch (e) {
        if (!(e instanceof UmemError) || e.kind !== "out-of-memory") throw e;
        failed++;
      }
    }
    assert.equal(failed, 50);
    gc.collect();
    const s = gc.stats();
    assert.equal(s.heapSize - s.freeBytes, 0, "nothing is live"); // before the fix: 51200
    gc.setMaxHeapSize(40 * 1024);
    for (let i = 0; i < 100; i++) gc.malloc(1024); // garbage: collected to stay under the limit
    assert.deepEqual(heap.verify(), []);
  });

  it("allocation volume triggers collections (the free-space divisor)", () => {
    const { gc } = setup({ auto: true, minTrigger: 1 << 18, freeSpaceDivisor: 2 });
    for (let i = 0; i < 100_000; i++) gc.malloc(32); // 3.2 MB, all garbage
    const s = gc.stats();
    assert.ok(s.collections >= 5, `${s.collections} collections`);
    assert.ok(s.heapSize < 2 << 20, `heap grew to ${s.heapSize}`);
    assert.ok(s.totalReclaimed > 2 << 20);
    assert.ok(s.bytesSinceGC < 1 << 20);
  });

  it("stats count what collections did", () => {
    const { gc } = setup();
    const s0 = gc.stats();
    assert.equal(s0.collections, 0);
    gc.malloc(32);
    gc.mallocAtomic(64);
    assert.equal(gc.stats().bytesSinceGC, 96);
    const r = gc.collect();
    const s = gc.stats();
    assert.equal(s.collections, 1);
    assert.equal(s.bytesReclaimed, 96);
    assert.equal(s.bytesSinceGC, 0);
    assert.equal(s.lastPauseMs, r.pauseMs);
    assert.ok(s.heapSize >= 2 * 4096);
    assert.equal(s.freeBytes, s.heapSize);
  });
});

describe("gc: model", () => {
  it("frees exactly the objects no root reaches, in random graphs", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            kind: fc.constantFrom("normal", "atomic", "uncollectable"),
            size: fc.oneof(
              { arbitrary: fc.integer({ min: 1, max: 300 }), weight: 9 },
              { arbitrary: fc.integer({ min: 131_073, max: 200_000 }), weight: 1 },
            ),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.boolean()), { maxLength: 120 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        (specs, edges, pins) => {
          const heap = mk({ size: 4 << 20, slots: 2 });
          const gc = Collector.create(heap, { auto: false });
          const objs = specs.map((s) =>
            s.kind === "normal"
              ? gc.malloc(s.size)
              : s.kind === "atomic"
              ? gc.mallocAtomic(s.size)
              : gc.mallocUncollectable(s.size)
          );
          const out = objs.map(() => [] as number[]);
          for (const [f, t, slot, inner] of edges) {
            const from = f % objs.length, to = t % objs.length;
            const words = Math.floor(specs[from].size / 4);
            if (words === 0) continue;
            const target = objs[to] + (inner ? Math.min(3, specs[to].size - 1) : 0);
            heap.i32[(objs[from] >> 2) + (slot % words)] = target;
          }
          // The model: what each object's words point into, read back from the heap.
          objs.forEach((p, i) => {
            if (specs[i].kind === "atomic") return;
            const words = Math.floor(specs[i].size / 4);
            for (let k = 0; k < words; k++) {
              const v = heap.i32[(p >> 2) + k];
              const j = objs.findIndex((q, n) => v >= q && v < q + specs[n].size);
              if (j >= 0) out[i].push(j);
            }
          });
          const live = new Set<number>();
          const stack: number[] = [];
          const reach = (j: number) => {
            if (!live.has(j)) {
              live.add(j);
              stack.push(j);
            }
          };
          specs.forEach((s, i) => s.kind === "uncollectable" && reach(i));
          for (const p of pins) {
            const j = p % objs.length;
            gc.pin(objs[j]);
            reach(j);
          }
          while (stack.length > 0) for (const j of out[stack.pop()!]) reach(j);
          const r = gc.collect();
          objs.forEach((p, i) => assert.equal(gc.isLive(p), live.has(i), `object ${i}`));
          assert.equal(r.objects, objs.length - live.size);
          assert.deepEqual(heap.verify(), []);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("gc: workers", () => {
  const WORKER = new URL("./gc_worker.ts", import.meta.url).href;
  const TIMEOUT = 60_000;

  function next(w: Worker, type: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const onMessage = (e: MessageEvent) => {
        if (e.data.type === "error") reject(new Error(String(e.data.message)));
        if (e.data.type !== type) return;
        w.removeEventListener("message", onMessage);
        resolve(e.data);
      };
      w.addEventListener("message", onMessage);
      w.addEventListener("error", (e) => reject(e), { once: true });
    });
  }

  /** Runs `body` with `n` workers, always terminating them, failing after `TIMEOUT` ms. */
  function withWorkers<T>(n: number, body: (ws: Worker[]) => Promise<T>): Promise<T> {
    return withWorkersOf(WORKER, n, TIMEOUT, body);
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("two workers building linked lists while the main thread collects never lose a node", async () => {
    const heap = mk({ size: 16 << 20, maxSize: 256 << 20, slots: 4 });
    const gc = Collector.create(heap, { minTrigger: 1 << 20 });
    const stop = heap.zalloc(8);
    gc.leave(); // the main thread holds no collector object while it waits
    await withWorkers(2, async (ws) => {
      const done = ws.map((w) => next(w, "done"));
      const running = ws.map((w) => next(w, "running"));
      for (const w of ws) w.postMessage({ op: "build", buffer: heap.buffer, stop, list: 20_000 });
      await Promise.all(running);
      let mine = 0;
      for (let i = 0; i < 25; i++) {
        await sleep(3);
        gc.collect();
        mine++;
      }
      Atomics.store(heap.i32, stop >> 2, 1);
      const results = await Promise.all(done);
      for (const r of results) {
        assert.equal(r.errors, 0, `worker ${r.slot}: ${(r.errorText as string[]).join("; ")}`);
        assert.ok((r.checks as number) >= 10, `worker ${r.slot} checked only ${r.checks} times`);
        assert.ok((r.longest as number) > 1000);
        assert.ok((r.dropped as number) >= 1, `worker ${r.slot} dropped no list`);
        assert.ok(
          (r.finalized as number) >= 1 && (r.finalized as number) <= (r.dropped as number),
          `worker ${r.slot} ran ${r.finalized} finalizers for ${r.dropped} lists`,
        );
      }
      assert.ok(gc.stats().collections >= mine);
    });
    gc.enter();
    gc.collect();
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker that allocates only from the heap stops at the core's slow path", async () => {
    const heap = mk({ size: 8 << 20, slots: 4 });
    const gc = Collector.create(heap, { stopTimeout: 5000, auto: false });
    const stop = heap.zalloc(8);
    await withWorkers(1, async ([w]) => {
      const running = next(w, "running");
      const done = next(w, "done");
      w.postMessage({ op: "plain", buffer: heap.buffer, stop });
      await running;
      for (let i = 0; i < 10; i++) {
        gc.malloc(8); // garbage: each collection frees it
        assert.equal(gc.collect().objects, 1);
      }
      Atomics.store(heap.i32, stop >> 2, 1);
      assert.ok(((await done).rounds as number) > 0);
    });
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker terminated with its handle attached is forgotten once its slot is reclaimed", async () => {
    const heap = mk({ size: 8 << 20, slots: 4 });
    const gc = Collector.create(heap, { stopTimeout: 200, auto: false });
    const w = new Worker(WORKER, { type: "module" });
    let slot = -1;
    try {
      w.postMessage({ op: "idle", buffer: heap.buffer });
      slot = (await Promise.race([
        next(w, "ready"),
        sleep(TIMEOUT).then(() => Promise.reject(new Error("worker did not start"))),
      ]))
        .slot as number;
    } finally {
      w.terminate();
    }
    throwsKind(() => gc.collect(), "safepoint-timeout");
    heap.reclaimSlot(slot);
    gc.malloc(16);
    assert.equal(gc.collect().objects, 1);
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker that neither allocates nor leaves makes collect fail after the timeout", async () => {
    const heap = mk({ size: 8 << 20, slots: 4 });
    const gc = Collector.create(heap, { stopTimeout: 200, auto: false });
    await withWorkers(1, async ([w]) => {
      w.postMessage({ op: "idle", buffer: heap.buffer });
      const { slot } = await next(w, "ready");
      gc.malloc(8);
      throwsKind(() => gc.collect(), "safepoint-timeout", new RegExp(`worker ${slot} did not`));
      assert.equal(gc.phase(), "idle");
      assert.deepEqual(heap.verify(), []);
      w.postMessage({ op: "leave" });
      await next(w, "left");
      assert.equal(gc.collect().objects, 1);
      w.postMessage({ op: "finish" });
      await next(w, "done");
    });
  });
});
