/**
 * Many workers, one heap (Core III): real Workers allocate and free at once, hand buffers to
 * each other, and a worker killed while it holds full magazines loses nothing once its slot is
 * reclaimed.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, type HeapOptions, inspect } from "../mod.ts";
import { withWorkers as withWorkersOf } from "./helpers.ts";
import { HDR_ERRORS } from "../core/image.ts";

const WORKER = new URL("./fixtures/stress_worker.ts", import.meta.url).href;
const TIMEOUT = 120_000;

/** Runs `body` with `n` workers, always terminating them, failing after `TIMEOUT` ms. */
function withWorkers<T>(n: number, body: (ws: Worker[]) => Promise<T>): Promise<T> {
  return withWorkersOf(WORKER, n, TIMEOUT, body);
}

function next(w: Worker, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMessage = (e: MessageEvent) => {
      if (e.data.type !== type) return;
      w.removeEventListener("message", onMessage);
      resolve(e.data);
    };
    w.addEventListener("message", onMessage);
    w.addEventListener("error", (e) => reject(e), { once: true });
  });
}

async function stress(nworkers: number, ops: number, options: HeapOptions = {}) {
  const heap = Heap.create({ size: 16 << 20, maxSize: 512 << 20, ...options });
  const names = ["node", "conn", "blob"];
  heap.createCache("node", 48);
  heap.createCache("conn", 200, { align: 64 });
  heap.createCache("blob", 2000);
  await withWorkers(nworkers, async (ws) => {
    // Gifts go round the ring: worker i's buffers are freed by worker i+1.
    ws.forEach((w, i) => {
      w.addEventListener("message", (e: MessageEvent) => {
        if (e.data.type === "gift") ws[(i + 1) % ws.length].postMessage(e.data);
      });
    });
    const ran = ws.map((w) => next(w, "ran"));
    ws.forEach((w, i) =>
      w.postMessage({ type: "start", buffer: heap.buffer, seed: 1234 + i, ops, caches: names })
    );
    await Promise.all(ran);
    const done = ws.map((w) => next(w, "done"));
    for (const w of ws) w.postMessage({ type: "finish" });
    const results = await Promise.all(done);
    for (const r of results) {
      assert.deepEqual(r.errors, [], `worker ${r.slot}: a buffer was held by two workers`);
      assert.ok((r.received as number) > 0, `worker ${r.slot} freed no buffer from another`);
    }
  });
  heap.reap();
  for (const c of heap.caches()) {
    const s = c.stats();
    assert.equal(s.inUse, 0, `${s.name} has ${s.inUse} buffers in use`);
    assert.equal(s.allocs, s.frees, `${s.name}`);
  }
  assert.deepEqual(heap.verify(), []);
  assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  const total = heap.caches().reduce((n, c) => n + c.stats().allocs, 0);
  assert.ok(total >= nworkers * ops / 2, `only ${total} allocations recorded`);
  return heap;
}

describe("many workers, one heap", () => {
  for (const debug of ["", "contents,noabort"]) {
    it(`a reap while others destroy their own caches${debug && `, ${debug}`}`, async () => {
      // Before the fix the reap walked the cache list without its lock, into a destroyed
      // cache's record (by then a slab record): "bufctl corrupted", a bad free in umem_meta, a
      // lock word of garbage, in two runs of three.
      const heap = Heap.create({ size: 4 << 20, maxSize: 64 << 20, debug, slots: 8 });
      const url = new URL("./fixtures/reap_destroy_worker.ts", import.meta.url).href;
      const results = await withWorkersOf(
        url,
        3,
        60_000,
        (ws) =>
          Promise.all(
            ws.map((w, i) =>
              new Promise<{ role: string; n: number; errors: string[] }>((resolve) => {
                w.onmessage = (e) => resolve(e.data);
                w.postMessage({
                  buffer: heap.buffer,
                  role: i === 2 ? "reaper" : "destroyer",
                  ms: 2000,
                  id: i,
                });
              })
            ),
          ),
      );
      for (const r of results) {
        assert.deepEqual(r.errors, [], `${r.role}: ${r.errors.join("; ")}`);
        assert.ok(r.n > 0);
      }
      assert.deepEqual(heap.verify(), []);
    });
  }

  it("two workers, 200,000 operations each, buffers freed across workers", async () => {
    await stress(2, 200_000);
  });

  it("four workers, 200,000 operations each", async () => {
    await stress(4, 200_000);
  });

  for (const backend of ["sbrk", "mmap"] as const) {
    it(`two workers on a heap with backend=${backend}, which they grow`, async () => {
      const heap = await stress(2, 200_000, { size: 1 << 20, backend });
      assert.ok(heap.size > 1 << 20, `the heap did not grow (${heap.size} bytes)`);
      assert.equal(heap.buffer.byteLength, backend === "mmap" ? 512 << 20 : heap.size);
    });
  }

  it("four workers on a heap they grow: every lock taken syncs the views", async () => {
    // Slabs, magazines and spans handed out under a lock may lie in memory another worker grew
    // the heap by; before lock() synced on its uncontended path too, this lost a slab's free list
    // in about one run of fifteen (core/lock.ts).
    const heap = await stress(4, 150_000, { size: 1 << 20, backend: "sbrk" });
    assert.ok(heap.size > 1 << 20, `the heap did not grow (${heap.size} bytes)`);
  });

  for (const debug of ["audit=8/50,contents,noabort", "guards,noabort"]) {
    it(`two workers on a debugged heap (${debug}): the debug fast path across workers`, async () => {
      // Each worker's handle is a DebuggingHeap (a GuardingHeap for guards alone); buffers freed
      // by the other worker go through the same checks, on their tags alone; a sound program
      // raises no report, and every pattern, tag and tagged state byte is whole after.
      const heap = await stress(2, 100_000, { debug, logging: "", options: "" });
      assert.ok(heap.debugQuick > 0);
      assert.equal(heap.i32[HDR_ERRORS >> 2], 0, "no corruption report was raised");
    });
  }

  it("two workers auditing every transaction into the log: each stack is read back whole", async () => {
    // Each worker keeps its captures raw (core/stack.ts) and interns, when it detaches, those
    // that a record still holds; buffers freed across workers put both workers' pending ids
    // in one audit record. Afterwards the main thread reads every logged stack as text.
    const heap = await stress(2, 20_000, {
      debug: "audit",
      logging: "transaction",
      options: "",
    });
    const log = inspect(heap).log();
    assert.ok(log.length > 1000, `${log.length} log records`);
    const slots = new Set<number>();
    for (const t of log) {
      assert.match(t.stack, /stress_worker\.ts/, `record of ${t.op} by worker ${t.slot}`);
      slots.add(t.slot);
    }
    assert.equal(slots.size, 2, "both workers' transactions are in the log");
    assert.equal(heap.i32[HDR_ERRORS >> 2], 0, "no corruption report was raised");
  });

  it("a worker terminated while it holds full magazines loses nothing after reclaimSlot", async () => {
    const heap = Heap.create({ size: 4 << 20 });
    const cache = heap.createCache("hoard", 64);
    await withWorkers(1, async ([w]) => {
      const hoarding = next(w, "hoarding");
      w.postMessage({ type: "hoard", buffer: heap.buffer, cache: "hoard", n: 500, keep: 7 });
      const { slot, kept } = await hoarding as { slot: number; kept: number[] };
      w.terminate();
      const before = cache.stats();
      assert.equal(before.inUse, 7);
      assert.ok(before.cached > 0, "the worker's magazines should hold buffers");
      heap.reclaimSlot(slot);
      const after = cache.stats();
      // The dead slot's magazines are gone; what is still cached sits in the depot.
      assert.equal(after.inUse, 7);
      assert.equal(after.cached, after.depotFull * after.magazineSize);
      assert.deepEqual(heap.verify(), []);
      // Nothing lost: after a reap every buffer is in use (the 7 kept) or free in a slab.
      heap.reap();
      const reaped = cache.stats();
      assert.equal(reaped.cached, 0);
      assert.equal(reaped.inUse, 7);
      assert.ok(reaped.total >= 7 && reaped.slabs >= 1);
      // The slot can be taken again, and the kept buffers can be freed by anyone.
      const again = Heap.attach(heap.buffer);
      assert.equal(again.slot, slot);
      for (const p of kept) again.cache("hoard").free(p);
      again.detach();
      heap.reap();
      assert.equal(cache.stats().inUse, 0);
      assert.equal(cache.stats().slabs, 0);
      assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
    });
  });
});
