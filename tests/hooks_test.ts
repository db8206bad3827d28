/**
 * Heap hooks (core/hooks.ts): what `profile` and `own` see of this worker's allocations, at
 * the level the program made each call, and a `free` hook's veto leaving the heap unchanged.
 *
 * Run: `npx deno test --allow-read --allow-env tests/hooks_test.ts` or
 * `npx bun test tests/hooks_test.ts`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mk, throwsKind } from "./helpers.ts";
import { attachHeapHook } from "../core/internal.ts";
import { type Heap, UmemError } from "../mod.ts";

/** A hook that writes each call as a line. */
function recorder(heap: Heap): { lines: string[]; detach: () => void } {
  const lines: string[] = [];
  const detach = attachHeapHook(heap, {
    alloc: (p, n, c) => lines.push(`alloc ${p} ${n} ${c}`),
    free: (p, n, c) => lines.push(`free ${p} ${n} ${c}`),
    freed: (p, n, c) => lines.push(`freed ${p} ${n} ${c}`),
    resize: (p, n, q, m) => lines.push(`resize ${p} ${n} ${q} ${m}`),
  });
  return { lines, detach };
}

for (const debug of ["", "guards,noabort", "default,noabort"]) {
  describe(`heap hooks (debug "${debug}")`, () => {
    it("see sized allocs and frees of every size path once, zalloc as one alloc", () => {
      const heap = mk({ size: 4 << 20, debug });
      const { lines, detach } = recorder(heap);
      for (const n of [24, 1000, 5000, 300_000]) {
        const p = heap.alloc(n);
        heap.free(p, n);
        assert.deepEqual(lines.splice(0), [
          `alloc ${p} ${n} 0`,
          `free ${p} ${n} 0`,
          `freed ${p} ${n} 0`,
        ]);
      }
      const z = heap.zalloc(40);
      assert.deepEqual(lines.splice(0), [`alloc ${z} 40 0`]);
      detach();
      heap.free(z, 40);
      assert.deepEqual(lines, []);
      assert.equal(heap.intercepting, debug !== "");
      assert.deepEqual(heap.verify(), []);
    });

    it("see cache allocs and frees with the cache's address and buffer size", () => {
      const heap = mk({ size: 4 << 20, debug });
      const c = heap.createCache("node", 48);
      const { lines } = recorder(heap);
      const p = c.alloc();
      c.free(p);
      const addr = lines[0].split(" ")[3];
      assert.notEqual(addr, "0");
      assert.deepEqual(lines, [
        `alloc ${p} 48 ${addr}`,
        `free ${p} 48 ${addr}`,
        `freed ${p} 48 ${addr}`,
      ]);
    });

    it("see libc calls as the program's pointers and sizes, not the sized calls beneath", () => {
      const heap = mk({ size: 4 << 20, debug });
      const { lines } = recorder(heap);
      const { libc } = heap;
      const p = libc.malloc(10);
      const q = libc.realloc(p, 3000);
      const r = libc.calloc(4, 8);
      const m = libc.memalign(256, 100);
      libc.free(q);
      libc.free(r);
      libc.free(m);
      assert.deepEqual(lines.slice(0, 4), [
        `alloc ${p} 10 -1`,
        `resize ${p} 10 ${q} 3000`,
        `alloc ${r} 32 -1`,
        `alloc ${m} 100 -1`,
      ]);
      assert.deepEqual(lines.slice(4, 6), [`free ${q} 3000 -1`, `freed ${q} 3000 -1`]);
      assert.equal(lines.length, 10);
      assert.deepEqual(heap.verify(), []);
    });

    it("a free hook that throws refuses the free and leaves the heap as it was", () => {
      const heap = mk({ size: 4 << 20, debug });
      const c = heap.createCache("obj", 64);
      let veto = -1;
      attachHeapHook(heap, {
        free: (p) => {
          if (p === veto) throw new UmemError("borrow-conflict", `vetoed ${p}`, p);
        },
      });
      const a = heap.alloc(100), b = c.alloc(), m = heap.libc.malloc(200);
      for (
        const [p, free] of [[a, () => heap.free(a, 100)], [b, () => c.free(b)], [
          m,
          () => heap.libc.free(m),
        ]] as const
      ) {
        veto = p;
        throwsKind(free, "borrow-conflict", /vetoed/);
        assert.deepEqual(heap.verify(), []);
        veto = -1;
        free(); // still live: the refused free changed nothing
        throwsKind(free, ["duplicate-free", "bad-free"]);
      }
      assert.equal(c.stats().inUse, 0);
      assert.deepEqual(heap.verify(), []);
    });
  });
}
