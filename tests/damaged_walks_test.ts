/**
 * One bad word in the image, where a wild write or a damaged snapshot puts it, and every walk of
 * the inspector and of `verify()` still ends, with a report or a typed error: a count of two
 * billion, a list that loops, a hash chain out of the image, a log ring too large, a time no
 * Date holds, and a hundred thousand problems to print. (Each of these hung, ran out of memory or
 * threw a bare RangeError before its fix.)
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, inspect, Vmem } from "../mod.ts";
import { CA_CPU, CA_NCHUNKS, CA_NEXT, CA_NSTATE } from "../core/slab.ts";
import { CC_ROUNDS, CC_SIZE } from "../core/magazine.ts";
import { VM_HASH0, VM_HASH0_N, VM_NEXT } from "../core/vmem.ts";
import { HDR_ARENA_LIST, HDR_TXLOG } from "../core/image.ts";
import { LG_NEXT, LG_NREC, ringRecords, TX_TIME } from "../core/log.ts";
import { BT_A_TIME } from "../core/buftag.ts";
import { mk } from "./helpers.ts";

/** A heap with a cache `conn` holding a live buffer, the buffer and the cache record. */
function withConn(): { heap: Heap; cp: number; p: number } {
  const heap = mk({ size: 2 << 20, maxSize: 2 << 20 });
  const c = heap.createCache("conn", 200);
  const p = c.alloc();
  c.free(c.alloc()); // a round in this slot's magazine
  return { heap, cp: c.addr, p };
}

describe("damaged images: every walk ends", () => {
  for (const [field, what] of [[CA_NSTATE, "state bytes"], [CA_NCHUNKS, "chunks"]] as const) {
    it(`a cache record's count of ${what} of 2^31 - 1: reported, its slabs left alone`, () => {
      const { heap, cp } = withConn();
      heap.i32[(cp + field) >> 2] = 0x7fffffff;
      const found = heap.verify();
      assert.equal(found.length, 1, found.join("\n"));
      assert.match(found[0], /umem_verify\(conn\): record 0x[0-9a-f]+ has a slab layout no cache/);
      assert.deepEqual(inspect(heap).walk("conn"), []);
      // The damaged cache's live buffer is not walked: no leak is read out of its slabs.
      assert.equal(inspect(heap).findleaks().total_buffers, 0);
    });
  }

  it("a slot's magazine of 2^31 - 1 rounds: reported", () => {
    const { heap, cp } = withConn();
    heap.i32[(cp + CA_CPU + heap.slot * CC_SIZE + CC_ROUNDS) >> 2] = 0x7fffffff;
    assert.ok(heap.verify().some((l) => /magazine 0x[0-9a-f]+ with 2147483647 rounds/.test(l)));
  });

  it("a cache list and an arena list that loop back: reported; the snapshot is taken", () => {
    const { heap, cp } = withConn();
    const next = heap.i32[(cp + CA_NEXT) >> 2];
    heap.i32[(cp + CA_NEXT) >> 2] = cp;
    assert.ok(
      heap.verify().some((l) => l === `umem_verify: cache list loops back to 0x${cp.toString(16)}`),
    );
    assert.equal(inspect(heap).caches().filter((c) => c.name === "conn").length, 1);
    assert.ok(heap.snapshot().byteLength > 0); // before: the same lock taken twice, refused
    heap.i32[(cp + CA_NEXT) >> 2] = next;
    const a = heap.i32[HDR_ARENA_LIST >> 2];
    heap.i32[(a + VM_NEXT) >> 2] = a;
    assert.ok(heap.verify().some((l) => /arena list loops back/.test(l)));
    assert.ok(heap.snapshot().byteLength > 0);
  });

  it("a cache list pointing at the image's last word: reported, no RangeError", () => {
    const { heap, cp } = withConn();
    heap.i32[(cp + CA_NEXT) >> 2] = heap.size - 4;
    assert.ok(heap.verify().some((l) => /cache list points out of bounds/.test(l)));
  });

  it("an arena's hash chains out of the image: the search ends", () => {
    const heap = mk({ size: 2 << 20, maxSize: 2 << 20 });
    const ar = Vmem.create(heap, "mine", { source: heap.vmem, quantum: 8, importSize: 65536 });
    ar.alloc(64);
    for (let i = 0; i < VM_HASH0_N; i++) heap.i32[(ar.addr + VM_HASH0 + i * 4) >> 2] = 0x7fffffff;
    assert.ok(
      heap.verify().some((l) =>
        /vmem_verify\(mine\): allocated segment .* not in the hash/.test(l)
      ),
    );
  });

  it("a log ring of 2^31 - 1 records: none read", () => {
    const heap = Heap.create({ size: 2 << 20, debug: "audit,noabort", logging: "transaction" });
    heap.free(heap.alloc(100), 100);
    const ring = heap.i32[HDR_TXLOG >> 2];
    heap.i32[(ring + LG_NREC) >> 2] = 0x7fffffff;
    heap.i32[(ring + LG_NEXT) >> 2] = -1;
    assert.deepEqual(inspect(heap).log(), []);
  });

  it("an audit time no Date holds prints as a bad time", () => {
    const heap = Heap.create({ size: 2 << 20, debug: "audit,noabort", logging: "transaction" });
    const p = heap.alloc(100);
    heap.f64[(p + 112 + BT_A_TIME) >> 3] = 1e300; // 100 bytes: the 112-byte class, its tag after
    assert.match(inspect(heap).whatis(p).text, /time=\(bad time 1e\+300\)/);
    const ring = heap.i32[HDR_TXLOG >> 2], [newest] = ringRecords(heap, ring);
    heap.f64[(newest + TX_TIME) >> 3] = NaN;
    assert.match(inspect(heap).formatLog(), /^t=\(bad time NaN\) thr=/m);
  });

  it("130,000 problems print", () => {
    const heap = Heap.create({ size: 16 << 20, debug: "guards,noabort" });
    for (let i = 0; i < 130_000; i++) heap.u8[heap.alloc(8) + 8] = 0;
    const text = inspect(heap).formatVerify(); // before: the stack overflowed on the spread
    assert.match(text, /^umem_verify: 130000 problems:/m);
  });

  it("whatis names the innermost arena: umem_oversize, a sub-arena", () => {
    const heap = mk({ size: 4 << 20 });
    const big = heap.alloc(300_000);
    assert.match(inspect(heap).whatis(big).text, /of arena umem_oversize\)$/);
    const ar = Vmem.create(heap, "mine", { source: heap.vmem, quantum: 8, importSize: 65536 });
    const p = ar.alloc(64);
    assert.match(
      inspect(heap).whatis(p).text,
      new RegExp(`segment 0x${p.toString(16)}\\+64 of arena mine`),
    );
  });
});
