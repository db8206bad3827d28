/**
 * Backends (`HeapOptions.backend`, `UMEM_OPTIONS=backend=`): where a heap's buffer gets its
 * memory. `sbrk` grows a growable SharedArrayBuffer with the heap; `mmap` takes a buffer of the
 * heap's largest size at once and the heap grows inside it. Both must grow, be seen whole by a
 * second handle, snapshot only the heap's bytes, refuse to grow past `maxSize` and stay
 * consistent.
 *
 * Run: `npx deno test --allow-read --allow-env tests/backend_test.ts` or
 * `npx bun test tests/backend_test.ts`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mk, throwsKind } from "./helpers.ts";
import { Heap, type HeapOptions, Snapshot } from "../mod.ts";

const MB = 1 << 20;

for (const backend of ["sbrk", "mmap"] as const) {
  describe(`backend=${backend}`, () => {
    it("starts at its size, grows inside maxSize, and the buffer's length says which backend", () => {
      const heap = mk({ size: MB, maxSize: 16 * MB, backend });
      assert.equal(heap.size, MB);
      assert.equal(heap.maxSize, 16 * MB);
      assert.equal(heap.buffer.byteLength, backend === "mmap" ? 16 * MB : MB);
      const p = heap.alloc(3 * MB); // from the oversize arena: the heap must grow
      assert.ok(heap.size >= 4 * MB, `size ${heap.size}`);
      assert.ok(p > 0 && p + 3 * MB <= heap.size);
      assert.equal(heap.buffer.byteLength, backend === "mmap" ? 16 * MB : heap.size);
      heap.u8[p + 3 * MB - 1] = 0x5a;
      heap.free(p, 3 * MB);
      assert.deepEqual(heap.verify(), []);
    });

    it("a second handle sees the heap grown by the first, and its bytes", () => {
      const heap = mk({ size: MB, maxSize: 16 * MB, backend });
      const other = Heap.attach(heap.buffer);
      try {
        const p = heap.alloc(5 * MB);
        heap.u8[p + 5 * MB - 1] = 0xa5;
        assert.equal(other.size, heap.size, "size syncs");
        assert.equal(other.u8[p + 5 * MB - 1], 0xa5);
        other.free(p, 5 * MB); // a free of memory this handle first saw grown
        assert.deepEqual(other.verify(), []);
      } finally {
        other.detach();
      }
    });

    it("a snapshot holds the heap's bytes, not the buffer's", () => {
      const heap = mk({ size: MB, maxSize: 16 * MB, backend });
      heap.alloc(2 * MB);
      const snap = Snapshot.decode(Snapshot.encode(heap));
      assert.equal(snap.mapped, heap.size);
      assert.ok(snap.mapped < 16 * MB);
    });

    it("refuses to grow past maxSize with an out-of-memory error and stays consistent", () => {
      const heap = mk({ size: MB, maxSize: 4 * MB, backend });
      throwsKind(() => heap.alloc(8 * MB), "out-of-memory", /umem_alloc/);
      assert.ok(heap.size <= 4 * MB);
      assert.deepEqual(heap.verify(), []);
      const p = heap.alloc(MB); // still serves what fits
      assert.ok(p > 0);
      heap.free(p, MB);
    });
  });
}

/** A heap with only `options`: no backend from mk(), nothing from the environment. */
function bare(options: HeapOptions): Heap {
  return Heap.create({ debug: "", logging: "", options: "", ...options });
}

describe("choosing the backend", () => {
  it("UMEM_OPTIONS' backend= picks it; the option given to create wins over it", () => {
    assert.equal(
      bare({ size: MB, maxSize: 8 * MB, options: "backend=mmap" }).buffer.byteLength,
      8 * MB,
    );
    assert.equal(
      bare({ size: MB, maxSize: 8 * MB, options: "backend=sbrk" }).buffer.byteLength,
      MB,
    );
    const h = bare({ size: MB, maxSize: 8 * MB, options: "backend=mmap", backend: "sbrk" });
    assert.equal(h.buffer.byteLength, MB);
  });

  it("the default is mmap under Bun and sbrk elsewhere", () => {
    const bun = (globalThis as { Bun?: unknown }).Bun !== undefined;
    const heap = bare({ size: MB, maxSize: 8 * MB });
    assert.equal(heap.buffer.byteLength, bun ? 8 * MB : MB);
  });

  it("a backend that is neither is refused, naming it", () => {
    throwsKind(
      () => mk({ size: MB, backend: "brk" as "sbrk" }),
      "invalid-argument",
      /backend must be "sbrk" or "mmap", got "brk"/,
    );
    throwsKind(() => mk({ size: MB, options: "backend=anon" }), "invalid-argument", /backend=anon/);
  });
});
