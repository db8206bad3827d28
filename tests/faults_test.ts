/**
 * Worker faults: a worker terminated while it holds a lock in the heap. Nobody hangs: a wait
 * past the lock timeout raises HeapLockedError naming the dead worker, and verify() names the
 * structure that may be inconsistent.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, HeapLockedError } from "../mod.ts";
import { CA_LOCK } from "../core/slab.ts";

const WORKER = new URL("./fixtures/fault_worker.ts", import.meta.url).href;

describe("a worker that dies holding a lock", () => {
  it("makes others fail with HeapLockedError after the timeout, not hang", async () => {
    const heap = Heap.create({ size: 1 << 20, lockTimeout: 300 });
    const victim = heap.createCache("victim", 64);
    const w = new Worker(WORKER, { type: "module" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const { slot } = await Promise.race([
        new Promise<{ slot: number }>((resolve, reject) => {
          w.onmessage = (e) => resolve(e.data);
          w.onerror = (e) => reject(e);
          w.postMessage({ buffer: heap.buffer, lock: victim.addr + CA_LOCK });
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("worker did not start in 30 s")), 30_000);
        }),
      ]);
      w.terminate();
      heap.reclaimSlot(slot); // the creator hears of the exit and gives the slot back
      const started = Date.now();
      assert.throws(
        () => victim.alloc(),
        (e) =>
          e instanceof HeapLockedError && e.kind === "heap-locked" && e.holder === slot &&
          /held by worker \d+ \(slot no longer live: the holder died\)/.test(e.message),
      );
      assert.ok(Date.now() - started < 5_000, "the wait was bounded by the lock timeout");
      const problems = heap.verify();
      assert.equal(problems.length, 1);
      assert.match(
        problems[0],
        /cache victim slab lock .* held by worker \d+, which is no longer attached/,
      );
      // The rest of the heap goes on working.
      heap.free(heap.alloc(64), 64);
    } finally {
      clearTimeout(timer);
      w.terminate();
    }
  });
});
