/**
 * The gc fuzzer (tests/fuzz/gc_fuzz.ts) with a fixed seed and a bounded number of runs: random
 * graphs of collector objects, roots, pins, finalizers, frees, reallocs and collections,
 * checked against a model that knows reachability exactly. `deno task fuzz` runs more
 * (`tests/fuzz/main.ts --target gc --runs N --seed S`).
 *
 * Run: `npx deno test --allow-read --allow-env tests/fuzz_gc_test.ts` or
 * `npx bun test tests/fuzz_gc_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { gcTarget, runGc } from "./fuzz/gc_fuzz.ts";
import { runTarget } from "./fuzz/runner.ts";

describe("gc fuzzer", () => {
  it("a fixed seed finds nothing in 300 runs", () => {
    const r = runTarget(gcTarget, { runs: 300, seed: 7 });
    assert.equal(r.failure, undefined, JSON.stringify(r.failure));
    assert.equal(r.runs, 300);
    assert.ok(r.ops > 5000, `${r.ops} operations`);
  });

  for (const interior of [true, false]) {
    it(`a fixed graph (interior ${interior}): a cycle, inner pointers, a finalizer, a large object`, () => {
      runGc([
        { op: "setup", interior, auto: false },
        { op: "malloc", kind: "scanned", words: 4, into: "root", at: 0 }, // a
        { op: "malloc", kind: "scanned", words: 4, into: "parent", at: 0 }, // b, in a
        { op: "link", pick: 1, slot: 1, to: 0, inner: false, clear: false }, // b → a: a cycle
        { op: "malloc", kind: "atomic", words: 3, into: "parent", at: 1 }, // c, in a or b
        { op: "finalizer", pick: 2 },
        { op: "malloc", kind: "scanned", words: 40000, into: "pin", at: 0 }, // large, pinned
        { op: "link", pick: 3, slot: 2, to: 0, inner: true, clear: false }, // large → inside a
        { op: "malloc", kind: "uncoll", words: 2, into: "root", at: 0 },
        { op: "collect" },
        { op: "root", slot: 0, to: 0, clear: true }, // the cycle hangs on the large object only
        { op: "collect" },
        { op: "unpin", pick: 0 }, // everything but the uncollectable object is garbage now
        { op: "collect" }, // the finalizer runs, c survives this one
        { op: "collect" }, // c is freed
        { op: "realloc", pick: 0, words: 100 },
        { op: "free", pick: 0 },
        { op: "collect" },
      ]);
    });
  }
});
