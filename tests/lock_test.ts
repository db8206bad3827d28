/**
 * Tests of the word locks (core/lock.ts): mutual exclusion between two real Workers, and the
 * timeout that names a dead holder. Runs under `deno test --allow-read` and `bun test`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Heap, HeapLockedError } from "../mod.ts";
import { lock, lockHolder, tryLock, unlock } from "../core/lock.ts";
import { HDR_SLOT_LOCK } from "../core/image.ts";

const WORKER_URL = new URL("./fixtures/lock_worker.ts", import.meta.url).href;
const ITERATIONS = 1_000_000;
const TIMEOUT_MS = 60_000;

type Reply = { attached?: number; done?: number; pong?: boolean; error?: string; name?: string };

/** A worker whose replies are awaited one at a time. */
class Peer {
  readonly worker: Worker;
  private queue: Reply[] = [];
  private waiting: ((r: Reply) => void) | undefined;
  private failed: ((e: Error) => void) | undefined;
  private error: Error | undefined;

  constructor() {
    this.worker = new Worker(WORKER_URL, { type: "module" });
    this.worker.onmessage = (e: MessageEvent) => {
      const r = e.data as Reply;
      if (this.waiting !== undefined) {
        const w = this.waiting;
        this.waiting = this.failed = undefined;
        w(r);
      } else this.queue.push(r);
    };
    this.worker.onerror = (e: Event) => {
      e.preventDefault();
      const err = new Error(`worker error: ${(e as ErrorEvent).message ?? e}`);
      this.error = err;
      if (this.failed !== undefined) this.failed(err);
    };
  }

  /** The next reply; rejects on a worker error or an `{ error }` reply. */
  next(): Promise<Reply> {
    const r = this.queue.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.error !== undefined) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failed = reject;
    });
  }

  send(m: unknown): void {
    this.worker.postMessage(m);
  }

  terminate(): void {
    this.worker.terminate();
  }
}

/** Runs `body` with a deadline; the timer is always cleared. */
async function withDeadline<T>(ms: number, what: string, body: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([body(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const ok = (r: Reply): Reply => {
  if (r.error !== undefined) throw new Error(`worker: ${r.name}: ${r.error}`);
  return r;
};

describe("lock: two workers", () => {
  it("keep a non-atomic counter exact: 2 x 1,000,000 increments under the lock", async () => {
    const heap = Heap.create({ size: 1 << 20 });
    const page = heap.vmem.alloc(4096);
    const counter = page, lockAddr = page + 64, ready = page + 128;
    const peers: Peer[] = [];
    try {
      peers.push(new Peer(), new Peer());
      const slots = await withDeadline(TIMEOUT_MS, "lock test", async () => {
        // Attach one after the other (see the known bug below about concurrent attaches).
        const slots: number[] = [];
        for (const p of peers) {
          p.send({ cmd: "attach", buffer: heap.buffer });
          slots.push(ok(await p.next()).attached!);
        }
        for (const p of peers) {
          p.send({ cmd: "count", counter, lock: lockAddr, ready, iterations: ITERATIONS });
        }
        for (const p of peers) assert.ok(ok(await p.next()).done !== undefined);
        return slots;
      });
      assert.equal(new Set(slots).size, 2, `distinct worker slots: ${slots}`);
      assert.ok(slots.every((s) => s >= 1), "the creator keeps slot 0");
      assert.equal(Atomics.load(heap.i32, counter >> 2), 2 * ITERATIONS);
      assert.equal(Atomics.load(heap.i32, lockAddr >> 2), 0, "the lock is free at the end");
      assert.equal(lockHolder(heap, lockAddr), -1);
      // Both workers detached: their slots are free again.
      const again = Heap.attach(heap.buffer);
      assert.equal(again.slot, Math.min(...slots));
      again.detach();
    } finally {
      for (const p of peers) p.terminate();
    }
    heap.vmem.free(page, 4096);
  });

  it("a worker attaches while the creator briefly holds the slot-table lock", async () => {
    const heap = Heap.create({ size: 1 << 20, lockTimeout: 5000 });
    const peer = new Peer();
    try {
      await withDeadline(TIMEOUT_MS, "attach test", async () => {
        peer.send({ cmd: "ping" });
        assert.ok(ok(await peer.next()).pong, "the worker is up");
        lock(heap, HDR_SLOT_LOCK);
        let released = false;
        try {
          peer.send({ cmd: "attach-detach", buffer: heap.buffer });
          await new Promise((r) => setTimeout(r, 200));
          unlock(heap, HDR_SLOT_LOCK);
          released = true;
        } finally {
          if (!released) unlock(heap, HDR_SLOT_LOCK);
        }
        const r = ok(await peer.next());
        assert.equal(r.attached, 1);
      });
    } finally {
      peer.terminate();
    }
  });
});

describe("lock: timeouts and misuse", () => {
  it("a lock held by a dead slot times out with HeapLockedError naming the holder", () => {
    const heap = Heap.create({ size: 1 << 20, lockTimeout: 200 });
    const page = heap.vmem.alloc(4096);
    const l = page + 8;
    Atomics.store(heap.i32, l >> 2, 3 + 1); // held by slot 3, which no worker has taken
    assert.equal(lockHolder(heap, l), 3);
    const t0 = Date.now();
    let caught: unknown;
    try {
      lock(heap, l);
    } catch (e) {
      caught = e;
    }
    const took = Date.now() - t0;
    assert.ok(caught instanceof HeapLockedError, `expected HeapLockedError, got ${caught}`);
    assert.equal(caught.kind, "heap-locked");
    assert.equal(caught.holder, 3);
    assert.equal(caught.address, l);
    assert.match(caught.message, /worker 3/);
    assert.match(caught.message, /no longer live|not live/);
    assert.match(caught.message, /200 ms/);
    assert.ok(took >= 190 && took < 5000, `timed out after ${took} ms`);
    // The word is untouched but for the WAITERS bit; once cleared, the lock works again.
    assert.equal(lockHolder(heap, l), 3);
    Atomics.store(heap.i32, l >> 2, 0);
    lock(heap, l);
    assert.equal(lockHolder(heap, l), 0);
    unlock(heap, l);
    heap.vmem.free(page, 4096);
  });

  it("a lock held by a live slot times out saying the holder is live", () => {
    const heap = Heap.create({ size: 1 << 20, lockTimeout: 100 });
    const other = Heap.attach(heap.buffer);
    const page = heap.vmem.alloc(4096);
    try {
      lock(other, page);
      assert.equal(lockHolder(heap, page), other.slot);
      assert.equal(tryLock(heap, page), false);
      assert.throws(
        () => lock(heap, page),
        (e: unknown) =>
          e instanceof HeapLockedError && e.holder === other.slot &&
          /still live/.test(e.message),
      );
      unlock(other, page);
      assert.equal(tryLock(heap, page), true);
      unlock(heap, page);
    } finally {
      other.detach();
    }
    heap.vmem.free(page, 4096);
  });

  it("taking a lock twice from one slot throws instead of deadlocking", () => {
    const heap = Heap.create({ size: 1 << 20, lockTimeout: 10_000 });
    const page = heap.vmem.alloc(4096);
    lock(heap, page);
    const t0 = Date.now();
    assert.throws(
      () => lock(heap, page),
      (e: unknown) => e instanceof HeapLockedError && /already held/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 5000, "it did not wait for the timeout");
    unlock(heap, page);
    heap.vmem.free(page, 4096);
  });
});

describe("lock: views", () => {
  it("taking a lock syncs the views: memory another worker grew the heap by can be written", () => {
    // The heap's structures hand out addresses under locks; a worker whose views stopped short
    // of memory another worker brought in would read it as undefined and drop its writes (a
    // slab laid out there, a magazine's link), which four workers growing one heap did.
    const heap = Heap.create({ size: 1 << 20, backend: "sbrk", debug: "", logging: "" });
    const other = Heap.attach(heap.buffer);
    try {
      const before = heap.u8.length;
      const big = other.alloc(4 << 20); // the heap grows; the first handle's views stay
      const end = big + (4 << 20) - 1;
      assert.equal(heap.u8.length, before);
      assert.ok(other.u8.length > end, "the heap grew");
      lock(heap, HDR_SLOT_LOCK); // (nothing else on this handle has synced it)
      assert.equal(heap.u8.length, other.u8.length, "the views cover the heap once it is held");
      heap.u8[end] = 7; // the grown memory's last byte, through these views
      unlock(heap, HDR_SLOT_LOCK);
      assert.equal(other.u8[end], 7);
      other.free(big, 4 << 20);
    } finally {
      other.detach();
    }
    assert.deepEqual(heap.verify(), []);
  });
});
