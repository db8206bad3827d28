/**
 * A debugged size class keeps its buffers' state in their tags (core/slab.ts's `CF_TAGSTATE`):
 * its state bytes say only "out of the slab" (`BUF_ALLOC_TAGGED`), so that the debug fast path
 * (core/debug_quick.ts) writes none, and the tag's check word says allocated or cached. Every
 * reader must still see each buffer for what it is, and every misuse must still be caught.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, inspect } from "../mod.ts";
import { bufferState } from "../core/pagemap.ts";
import { stateAddress } from "../core/magazine.ts";
import {
  BUF_ALLOC,
  BUF_ALLOC_TAGGED,
  BUF_CACHED,
  CA_BUFSIZE,
  CA_FLAGS,
  CF_TAGSTATE,
} from "../core/slab.ts";
import { sizeCache } from "../core/size_class.ts";
import { Ownership } from "../own/mod.ts";
import { corruption } from "./helpers.ts";

const SETTINGS = ["guards", "contents", "audit=8/100", "default"].map((s) => `${s},noabort`);

describe("a debugged size class's state is in its tags", () => {
  for (const debug of SETTINGS) {
    it(`${debug}: readers tell allocated from cached through the tag`, () => {
      const heap = Heap.create({ size: 4 << 20, debug });
      const cp = sizeCache(heap, 100);
      assert.notEqual(heap.i32[(cp + CA_FLAGS) >> 2] & CF_TAGSTATE, 0);
      const p = heap.alloc(100), q = heap.alloc(100);
      heap.free(q, 100);
      // The raw bytes: both out of the slab, neither told apart there.
      assert.equal(heap.u8[stateAddress(heap, cp, p)], BUF_ALLOC_TAGGED);
      assert.equal(heap.u8[stateAddress(heap, cp, q)], BUF_ALLOC_TAGGED);
      // Every reader sees through them.
      assert.equal(bufferState(heap, p), BUF_ALLOC);
      assert.equal(bufferState(heap, q), BUF_CACHED);
      const view = inspect(heap);
      assert.equal(view.whatis(p)?.state, "allocated");
      assert.equal(view.whatis(q)?.state, "cached");
      const walked = new Map(
        view.walk(`umem_alloc_${heap.i32[(cp + CA_BUFSIZE) >> 2]}`)
          .map((b) => [b.address, b.state]),
      );
      assert.equal(walked.get(p), "allocated");
      assert.equal(walked.get(q), "cached");
      assert.deepEqual(heap.verify(), []);
      // The cached one comes back allocated (the fast path writes no state byte), and goes back.
      const r = heap.alloc(100);
      assert.equal(r, q);
      assert.equal(bufferState(heap, r), BUF_ALLOC);
      heap.free(r, 100);
      heap.free(p, 100);
      assert.equal(bufferState(heap, p), BUF_CACHED);
      assert.deepEqual(heap.verify(), []);
    });
  }

  it("a cache of the user's keeps exact states; only size classes are tagged", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "guards,noabort" });
    const c = heap.createCache("mine", 100);
    assert.equal(heap.i32[(c.addr + CA_FLAGS) >> 2] & CF_TAGSTATE, 0);
    const p = c.alloc(), q = c.alloc();
    c.free(q);
    assert.equal(heap.u8[stateAddress(heap, c.addr, p)], BUF_ALLOC);
    assert.equal(heap.u8[stateAddress(heap, c.addr, q)], BUF_CACHED);
    c.free(p);
    assert.deepEqual(heap.verify(), []);
    const plain = Heap.create({ size: 4 << 20, debug: "" });
    assert.equal(plain.i32[(sizeCache(plain, 100) + CA_FLAGS) >> 2] & CF_TAGSTATE, 0);
  });

  it("verify() reports a size class's state byte that says allocated or cached", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "guards,noabort" });
    const cp = sizeCache(heap, 100), p = heap.alloc(100), at = stateAddress(heap, cp, p);
    for (const wrong of [BUF_ALLOC, BUF_CACHED]) {
      heap.u8[at] = wrong;
      const found = heap.verify().join("\n");
      assert.match(found, new RegExp(`buffer 0 has state ${wrong}$`, "m"));
    }
    heap.u8[at] = BUF_ALLOC_TAGGED;
    assert.deepEqual(heap.verify(), []);
    heap.free(p, 100);
  });

  it("adopting a cached buffer of a size class is refused", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "guards,noabort" });
    const own = Ownership.create(heap);
    const p = heap.alloc(100);
    heap.free(p, 100);
    assert.throws(() => own.adopt(p, 100), /is a free buffer/);
    const q = heap.alloc(100);
    assert.equal(q, p);
    const a = own.adopt(q, 100);
    assert.notEqual(own.stateOf(q), undefined);
    a.drop();
    assert.deepEqual(heap.verify(), []);
  });

  for (const debug of SETTINGS) {
    it(`${debug}: a buffer of a cache laid out as the size class, freed as a block of it`, () => {
      // Same size, same tag: only the check word, which names the cache, tells them apart.
      const heap = Heap.create({ size: 4 << 20, debug });
      const size = heap.i32[(sizeCache(heap, 100) + CA_BUFSIZE) >> 2];
      const same = heap.createCache("same", size);
      const x = same.alloc();
      // A loaded magazine with room, so that the fast path would push what it accepts.
      for (let i = 0; i < 3; i++) heap.free(heap.alloc(size), size);
      const e = corruption(() => heap.free(x, size));
      assert.equal(e.kind, "wrong-cache");
      assert.equal(e.address, x);
      assert.deepEqual(heap.verify(), []);
      same.free(x);
      assert.deepEqual(heap.verify(), []);
    });
  }
});
