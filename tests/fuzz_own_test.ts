/**
 * The own fuzzer (tests/fuzz/own_fuzz.ts) with a fixed seed and a bounded number of runs: two
 * worker slots, borrows, moves, sends, receives, references, clones, drops and refused frees,
 * checked against a model of Rust's rules. `deno task fuzz` runs more
 * (`tests/fuzz/main.ts --target own --runs N --seed S`).
 *
 * Run: `npx deno test --allow-read --allow-env tests/fuzz_own_test.ts` or
 * `npx bun test tests/fuzz_own_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ownTarget, runOwn } from "./fuzz/own_fuzz.ts";
import { runTarget } from "./fuzz/runner.ts";

describe("own fuzzer", () => {
  it("a fixed seed finds nothing in 500 runs", () => {
    const r = runTarget(ownTarget, { runs: 500, seed: 7 });
    assert.equal(r.failure, undefined, JSON.stringify(r.failure));
    assert.equal(r.runs, 500);
    assert.ok(r.ops > 10000, `${r.ops} operations`);
  });

  it("a fixed list of every command passes", () => {
    runOwn([
      { op: "alloc", w: 0, size: 40, src: "alloc" },
      { op: "alloc", w: 1, size: 100, src: "heap" },
      { op: "alloc", w: 0, size: 24, src: "libc" },
      { op: "alloc", w: 0, size: 64, src: "cache" },
      { op: "borrow", pick: 0, mut: true, tryIt: false },
      { op: "write", pick: 0 },
      { op: "borrow", pick: 0, mut: false, tryIt: true },
      { op: "free", pick: 0, w: 0 },
      { op: "free", pick: 0, w: 1 },
      { op: "drop", pick: 0 },
      { op: "release", pick: 0 },
      { op: "share", pick: 0 },
      { op: "access", pick: 0, w: 1 },
      { op: "sborrow", pick: 0, mut: false, tryIt: false },
      { op: "move", pick: 0 },
      { op: "release", pick: 0 },
      { op: "srelease", pick: 0 },
      { op: "send", pick: 0, to: 1 },
      { op: "receive", pick: 0, w: 0 },
      { op: "receive", pick: 0, w: 1 },
      { op: "receive", pick: 0, w: 1 },
      { op: "clone", pick: 1 },
      { op: "deref", pick: 0 },
      { op: "drop", pick: 1 },
      { op: "drop", pick: 1 },
      { op: "free", pick: 1, w: 0 },
    ]);
  });
});
