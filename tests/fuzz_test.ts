/**
 * The heap fuzzer (tests/fuzz/heap_fuzz.ts) with a fixed seed and a bounded number of runs.
 *
 * Run: `npx deno test --allow-read --allow-env tests/fuzz_test.ts` or
 * `npx bun test tests/fuzz_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runFuzz } from "./fuzz/heap_fuzz.ts";

describe("heap fuzzer", () => {
  it("a fixed seed finds nothing in 150 runs", () => {
    const r = runFuzz({ runs: 150, seed: 7 });
    assert.equal(r.failure, undefined, JSON.stringify(r.failure));
    assert.equal(r.runs, 150);
    assert.ok(r.ops > 150);
  });
});
