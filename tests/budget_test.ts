/**
 * Tests of `budget` (PostgreSQL-style memory contexts with budgets): the tree and the current
 * context, aset.c's chunks, free lists and blocks, reset / resetOnly / delete freeing exactly
 * their subtree (as the heap sees it), pfree and repalloc across contexts, reset callbacks,
 * budgets (the error, the subtree, soft budgets, the "wait" policy in one worker and across
 * workers), stats against the heap's view and PostgreSQL's report, bad input, a shared context
 * hammered by three workers, growth of the heap, and a model test over random operations.
 *
 * Run: `npx deno test --allow-read --allow-write --allow-env --allow-run tests/budget_test.ts`
 * or `npx bun test tests/budget_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mk as quiet, throwsKind } from "./helpers.ts";
import fc from "fast-check";
import { Heap, type HeapOptions, OutOfMemoryError, UmemError } from "../mod.ts";
import {
  ALLOCSET_SMALL_SIZES,
  BudgetExceededError,
  currentContext,
  type MemoryContext,
  type MemoryContextStats,
  memoryContextStats,
  palloc,
  palloc0,
  pfree,
  repalloc,
  switchTo,
  topContext,
} from "../budget/mod.ts";
import { MemoryContext as MemoryContextClass } from "../budget/context.ts";
import { heapViewBytes } from "../budget/arena.ts";
import {
  AB_HEADER,
  AB_NEXT,
  AB_SIZE,
  CH_HEADER,
  CH_REQ,
  CH_SIZE,
  MC_BLOCKS,
  MC_ENDPTR,
  MC_FREEPTR,
  MC_LIMIT,
} from "../budget/layout.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

/** A quiet heap (see tests/helpers.ts) of 8 MiB unless told otherwise. */
function mk(options: HeapOptions = {}): Heap {
  return quiet({ size: 8 << 20, ...options });
}

/** Asserts the heap and its context tree are sound, and the tree's bytes are the heap's. */
function sound(heap: Heap): void {
  assert.deepEqual(heap.verify(), []);
  const top = topContext(heap);
  assert.deepEqual(top.check(), []);
  assert.equal(heapViewBytes(heap), top.memAllocated(true));
}

/** The sizes of a context's blocks, newest first. */
function blockSizes(heap: Heap, ctx: MemoryContext): number[] {
  const out: number[] = [];
  for (
    let b = heap.i32[(ctx.address + MC_BLOCKS) >> 2];
    b !== 0;
    b = heap.i32[(b + AB_NEXT) >> 2]
  ) {
    out.push(heap.i32[(b + AB_SIZE) >> 2]);
    assert.ok(out.length < 100_000, "block list loops");
  }
  return out;
}

/**
 * Bytes of the heap's arena in use, once this worker's magazines are emptied, beyond the
 * allocator's own metadata (vmem's hash tables grow and stay grown).
 */
function heapInUse(heap: Heap): number {
  heap.reap();
  return heap.vmem.stats().inUse - heap.metadataBytes;
}

/** The context's TopMemoryContext. */
function top2(ctx: MemoryContext): MemoryContext {
  let c = ctx;
  while (c.parent !== null) c = c.parent;
  return c;
}

/** The sum of a subtree's totals. */
function grand(s: MemoryContextStats): number {
  return s.totalBytes + s.children.reduce((a, c) => a + grand(c), 0);
}

/** Runs a worker of tests/fixtures/budget_worker.ts; always terminates it. */
async function runWorker(
  message: Record<string, unknown>,
  during?: (w: Worker, waiting: Promise<void>) => Promise<void>,
  timeoutMs = 20_000,
): Promise<Record<string, unknown>> {
  const url = new URL("./fixtures/budget_worker.ts", import.meta.url).href;
  const w = new Worker(url, { type: "module" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    let signalWaiting = () => {};
    const waiting = new Promise<void>((r) => (signalWaiting = r));
    const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
      w.addEventListener("message", (e: MessageEvent) => {
        if (e.data?.type === "waiting") signalWaiting();
        else resolve(e.data);
      });
      w.addEventListener("error", (e) => reject(e));
      timer = setTimeout(() => reject(new Error("worker timed out")), timeoutMs);
    });
    w.postMessage(message);
    if (during !== undefined) await during(w, waiting);
    const r = await reply;
    assert.notEqual(r.type, "error", String(r.message));
    return r;
  } finally {
    clearTimeout(timer);
    w.terminate();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe("the tree and the current context", () => {
  it("one tree per heap: TopMemoryContext, found again by another handle", () => {
    const heap = mk();
    const top = topContext(heap);
    assert.equal(top.name, "TopMemoryContext");
    assert.equal(top.parent, null);
    assert.equal(currentContext()?.address, top.address, "the first call makes top current");
    assert.equal(topContext(heap).address, top.address);
    const w = Heap.attach(heap.buffer);
    try {
      assert.equal(topContext(w).address, top.address);
      assert.equal(currentContext()?.heap, w, "the first call for a handle switches to it");
    } finally {
      w.detach();
    }
    switchTo(top);
    const other = mk();
    assert.notEqual(topContext(other).heap, heap);
    assert.equal(heap.arenas().filter((a) => a.name === "umem_mcxt").length, 1);
    sound(heap);
  });

  it("create uses PostgreSQL's defaults, and presets", () => {
    const heap = mk();
    const top = topContext(heap);
    const ctx = top.create("ExecutorState");
    assert.equal(ctx.memAllocated(), 8192, "the keeper block is initBlockSize");
    assert.equal(ctx.parent?.address, top.address);
    assert.equal(heap.i32[(ctx.address + MC_LIMIT) >> 2], 8192, "allocChunkLimit");
    const small = top.create("small", ALLOCSET_SMALL_SIZES);
    assert.equal(small.memAllocated(), 1024);
    assert.equal(heap.i32[(small.address + MC_LIMIT) >> 2], 1024, "1024 + 16 ≤ (8192 - 32) / 4");
    const min = top.create("min", { minContextSize: 4096, initBlockSize: 1024 });
    assert.equal(min.memAllocated(), 4096, "minContextSize sizes the keeper");
    assert.deepEqual(
      top.children().map((c) => c.name),
      ["min", "small", "ExecutorState"],
    );
    assert.equal(top.memAllocated(true), 8192 + 8192 + 1024 + 4096);
    sound(heap);
  });

  it("switchTo returns the previous context; palloc and palloc0 use the current one", () => {
    const heap = mk();
    const top = topContext(heap);
    switchTo(top);
    const a = top.create("a"), b = top.create("b");
    assert.equal(switchTo(a)?.address, top.address);
    const p = palloc(100);
    assert.equal(MemoryContextClass.ofChunk(heap, p).name, "a");
    assert.equal(switchTo(b)?.address, a.address);
    heap.u8.fill(0xff, 0 + p, p + 100);
    const q = palloc0(300);
    assert.equal(MemoryContextClass.ofChunk(heap, q).name, "b");
    assert.ok(heap.u8.subarray(q, q + 300).every((x) => x === 0));
    assert.equal(switchTo(null)?.address, b.address);
    throwsKind(() => palloc(1), "invalid-argument", /palloc: this worker has no current/);
    throwsKind(() => pfree(p), "invalid-argument", /pfree/);
    throwsKind(() => switchTo({} as MemoryContext), "invalid-argument");
    switchTo(top);
    sound(heap);
  });

  it("MemoryContext.at gives another handle on a live record only", () => {
    const heap = mk();
    const ctx = topContext(heap).create("x");
    assert.equal(MemoryContextClass.at(heap, ctx.address).name, "x");
    throwsKind(() => MemoryContextClass.at(heap, ctx.address + 8), "invalid-argument");
    throwsKind(() => MemoryContextClass.at(heap, 12345), "invalid-argument");
    throwsKind(() => MemoryContextClass.at({} as Heap, ctx.address), "invalid-argument");
    ctx.delete();
    throwsKind(() => MemoryContextClass.at(heap, ctx.address), "invalid-argument");
    sound(heap);
  });
});

describe("chunks, free lists and blocks (aset.c)", () => {
  it("chunks are 8-aligned powers of two with a header naming the context", () => {
    const heap = mk();
    const ctx = topContext(heap).create("c");
    for (const [size, cap] of [[0, 8], [1, 8], [8, 8], [9, 16], [100, 128], [8192, 8192]]) {
      const p = ctx.alloc(size);
      assert.equal(p % 8, 0);
      assert.equal(heap.i32[(p - CH_HEADER + CH_SIZE) >> 2], cap, `size ${size}`);
      assert.equal(heap.i32[(p - CH_HEADER + CH_REQ) >> 2], size);
      assert.equal(heap.i32[(p - CH_HEADER) >> 2], ctx.address);
    }
    sound(heap);
  });

  it("a freed chunk goes on the free list of its size and is reused first", () => {
    const heap = mk();
    const ctx = topContext(heap).create("c");
    const a = ctx.alloc(100), b = ctx.alloc(100), c = ctx.alloc(20);
    ctx.free(a);
    ctx.free(b);
    assert.equal(ctx.alloc(65), b, "LIFO within the 128-byte list");
    assert.equal(ctx.alloc(128), a);
    assert.notEqual(ctx.alloc(100), c);
    ctx.free(c);
    assert.equal(ctx.alloc(17), c, "32-byte list");
    const s = ctx.stats();
    assert.equal(s.freeChunks, 0);
    sound(heap);
  });

  it("blocks double from initBlockSize up to maxBlockSize", () => {
    const heap = mk();
    const ctx = topContext(heap).create("grow", { initBlockSize: 1024, maxBlockSize: 8192 });
    for (let i = 0; i < 400; i++) ctx.alloc(100);
    const sizes = blockSizes(heap, ctx).reverse();
    assert.deepEqual(sizes.slice(0, 5), [1024, 1024, 2048, 4096, 8192]);
    assert.ok(sizes.slice(4).every((s) => s === 8192), sizes.join(","));
    assert.equal(ctx.memAllocated(), sizes.reduce((a, b) => a + b, 0));
    ctx.reset();
    assert.deepEqual(blockSizes(heap, ctx), [1024], "reset keeps only the keeper");
    ctx.alloc(500); // in the keeper
    ctx.alloc(500);
    assert.deepEqual(blockSizes(heap, ctx), [1024, 1024], "and starts doubling again");
    ctx.alloc(1000);
    assert.deepEqual(blockSizes(heap, ctx), [2048, 1024, 1024]);
    const big = top2(ctx).create("big", { initBlockSize: 1024, maxBlockSize: 65536 });
    big.alloc(3000); // 4096 + 48 bytes: the first 1024-byte block is doubled to fit
    assert.deepEqual(blockSizes(heap, big), [8192, 1024]);
    sound(heap);
  });

  it("the rest of a retired block is carved into free chunks", () => {
    const heap = mk();
    const ctx = topContext(heap).create("r", { initBlockSize: 1024, maxBlockSize: 65536 });
    ctx.alloc(512); // the keeper has 1024 - 32 - 192 - 8 = 792 bytes for chunks; 528 taken
    ctx.alloc(512); // a new block; the keeper's 264 bytes left: free chunks of 128, 64, 16
    const s = ctx.stats();
    assert.equal(s.blocks, 2);
    assert.equal(s.freeChunks, 3);
    const keeper = ctx.address - AB_HEADER;
    for (const size of [100, 50, 10]) {
      const p = ctx.alloc(size);
      assert.ok(p > keeper && p < keeper + 1024, `${size} bytes reuse the keeper's remainder`);
    }
    assert.equal(ctx.stats().freeChunks, 0);
    sound(heap);
  });

  it("a chunk past allocChunkLimit gets a block of its own, given back by pfree", () => {
    const heap = mk();
    const top = topContext(heap);
    switchTo(top);
    const ctx = top.create("big");
    const before = ctx.memAllocated();
    const p = ctx.alloc(10_000);
    assert.equal(ctx.memAllocated(), before + 10 * 1024, "32 + 16 + 10000 rounded to 1 KiB");
    heap.u8.fill(3, p, p + 10_000);
    pfree(p);
    assert.equal(ctx.memAllocated(), before);
    const small = top.create("small", ALLOCSET_SMALL_SIZES);
    const q = small.alloc(1100); // over the small context's 1024-byte limit
    assert.equal(small.stats().blocks, 2);
    small.free(q);
    assert.equal(small.stats().blocks, 1);
    sound(heap);
  });

  it("isEmpty and memAllocated follow mcxt.c", () => {
    const heap = mk();
    const job = topContext(heap).create("job");
    assert.equal(job.isEmpty(), true);
    const p = job.alloc(10);
    job.free(p);
    assert.equal(job.isEmpty(), false, "allocated since the last reset");
    job.resetOnly();
    assert.equal(job.isEmpty(), true);
    const stage = job.create("stage");
    stage.alloc(50_000);
    assert.equal(job.memAllocated(), 8192);
    assert.equal(job.memAllocated(true), 8192 + stage.memAllocated());
    assert.equal(stage.memAllocated(true), stage.memAllocated());
    sound(heap);
  });
});

describe("callbacks and the current context, from an audit", () => {
  it("a callback that throws: the error comes after current has left the deleted contexts", () => {
    const heap = mk();
    const top = topContext(heap);
    const stage = top.create("stage");
    stage.registerResetCallback(() => {
      throw new Error("callback failed");
    });
    switchTo(stage);
    assert.throws(() => stage.delete(), /callback failed/);
    assert.equal(currentContext()?.address, top.address, "the parent is current");
    const job = top.create("job"), child = job.create("child");
    child.registerResetCallback(() => {
      throw new Error("child callback failed");
    });
    switchTo(child);
    assert.throws(() => job.reset(), /child callback failed/);
    assert.equal(currentContext()?.address, job.address);
    assert.ok(palloc(10) > 0);
    switchTo(top);
    sound(heap);
  });

  it("a callback registered while a reset runs the callbacks runs in that reset, once", () => {
    const heap = mk();
    const ctx = topContext(heap).create("ctx");
    const ran: string[] = [];
    ctx.registerResetCallback(() => {
      ran.push("outer");
      ctx.registerResetCallback(() => ran.push("inner"));
    });
    ctx.reset();
    assert.deepEqual(ran, ["outer", "inner"], "as PostgreSQL pops the list until it is empty");
    ctx.reset();
    assert.deepEqual(ran, ["outer", "inner"]);
    ctx.delete();
    sound(heap);
  });

  it("isEmpty: a large chunk allocated and freed since the reset still counts", () => {
    const heap = mk();
    const ctx = topContext(heap).create("ctx");
    assert.equal(ctx.isEmpty(), true);
    ctx.free(ctx.alloc(100000)); // a block of its own, gone with its free
    assert.equal(ctx.isEmpty(), false);
    ctx.reset();
    assert.equal(ctx.isEmpty(), true);
    ctx.delete();
    sound(heap);
  });
});

describe("reset and delete free exactly their subtree", () => {
  it("reset: every chunk and every child go; siblings and ancestors keep theirs", () => {
    const heap = mk();
    const top = topContext(heap);
    const start = heapViewBytes(heap), startHeap = heapInUse(heap);
    const job = top.create("job");
    const a = job.create("a"), b = job.create("b");
    const a1 = a.create("a1");
    const keep: number[] = [];
    for (let i = 0; i < 300; i++) {
      const p = b.alloc(1 + (i * 37) % 3000);
      heap.u8.fill(i & 0xff, p, p + 1);
      keep.push(p);
    }
    const bBytes = b.memAllocated(true);
    for (let i = 0; i < 2000; i++) {
      a.alloc(1 + (i * 53) % 700);
      a1.alloc(1 + (i * 91) % 20_000);
    }
    const aBytes = a.memAllocated(true), jobBytes = job.memAllocated(true);
    assert.equal(heapViewBytes(heap) - start, jobBytes);
    a.reset();
    assert.equal(a.memAllocated(true), 8192, "only a's keeper is left");
    assert.equal(a1.isLive, false);
    throwsKind(() => a1.alloc(1), "destroyed");
    assert.equal(b.memAllocated(true), bBytes, "the sibling kept its blocks");
    keep.forEach((p, i) => assert.equal(heap.u8[p], i & 0xff, "and its data"));
    assert.equal(job.memAllocated(true), jobBytes - aBytes + 8192);
    assert.equal(heapViewBytes(heap) - start, job.memAllocated(true), "as the heap sees it");
    job.delete();
    assert.equal(heapViewBytes(heap), start);
    assert.equal(heapInUse(heap), startHeap, "every span went back to the heap's arena");
    sound(heap);
  });

  it("resetOnly keeps the children", () => {
    const heap = mk();
    const job = topContext(heap).create("job");
    const child = job.create("child");
    const p = child.alloc(100);
    heap.u8[p] = 42;
    for (let i = 0; i < 1000; i++) job.alloc(100);
    job.resetOnly();
    assert.equal(job.memAllocated(), 8192);
    assert.equal(child.isLive, true);
    assert.equal(heap.u8[p], 42);
    assert.equal(job.memAllocated(true), 8192 + child.memAllocated());
    sound(heap);
  });

  it("delete removes the subtree and moves the current context up", () => {
    const heap = mk();
    const top = topContext(heap);
    const start = heapViewBytes(heap);
    const job = top.create("job");
    const sib = top.create("sibling");
    const q = sib.alloc(64);
    heap.u8[q] = 9;
    const stage = job.create("stage");
    const deep = stage.create("deep");
    switchTo(deep);
    for (let i = 0; i < 100; i++) palloc(5000);
    job.delete();
    for (const c of [job, stage, deep]) {
      assert.equal(c.isLive, false);
      throwsKind(() => c.alloc(1), "destroyed", /was deleted/);
      throwsKind(() => c.memAllocated(), "destroyed");
      throwsKind(() => c.reset(), "destroyed");
      throwsKind(() => c.delete(), "destroyed");
    }
    assert.equal(currentContext()?.address, top.address, "the deleted subtree's parent");
    assert.equal(heap.u8[q], 9);
    assert.equal(heapViewBytes(heap) - start, sib.memAllocated());
    throwsKind(() => top.delete(), "invalid-argument", /cannot be deleted/);
    sound(heap);
  });

  it("reset callbacks run last registered first, children before their parent, once", () => {
    const heap = mk();
    const job = topContext(heap).create("job");
    const child = job.create("child"), grandchild = child.create("grandchild");
    const order: string[] = [];
    job.registerResetCallback(() => order.push("job 1"));
    job.registerResetCallback(() => order.push("job 2"));
    child.registerResetCallback(() => order.push("child"));
    grandchild.registerResetCallback(() => order.push("grandchild"));
    job.resetOnly();
    assert.deepEqual(order, ["job 2", "job 1"], "resetOnly: the context's own");
    job.registerResetCallback(() => order.push("job 3"));
    order.length = 0;
    job.reset();
    assert.deepEqual(order, ["grandchild", "child", "job 3"]);
    order.length = 0;
    job.reset();
    assert.equal(order.length, 0, "callbacks run once");
    const other = job.create("other");
    other.registerResetCallback(() => order.push("other"));
    job.registerResetCallback(() => order.push("job 4"));
    job.delete();
    assert.deepEqual(order, ["other", "job 4"]);
    throwsKind(() => other.registerResetCallback(() => {}), "destroyed");
    throwsKind(
      () => topContext(heap).registerResetCallback(3 as unknown as () => void),
      "invalid-argument",
    );
    sound(heap);
  });

  it("a callback that throws: the reset completes, then the error is rethrown", () => {
    const heap = mk();
    const ctx = topContext(heap).create("ctx");
    const ran: number[] = [];
    ctx.registerResetCallback(() => ran.push(1));
    ctx.registerResetCallback(() => {
      throw new Error("boom");
    });
    for (let i = 0; i < 100; i++) ctx.alloc(1000);
    assert.throws(() => ctx.reset(), /boom/);
    assert.deepEqual(ran, [1]);
    assert.equal(ctx.memAllocated(), 8192);
    sound(heap);
  });

  it("a callback registered before another worker's reset is forgotten there", () => {
    const heap = mk();
    const ctx = topContext(heap).create("shared", { shared: true });
    let ran = 0;
    ctx.registerResetCallback(() => ran++);
    const w = Heap.attach(heap.buffer);
    try {
      MemoryContextClass.at(w, ctx.address).reset(); // another worker's handle
    } finally {
      w.detach();
    }
    ctx.reset();
    assert.equal(ran, 0, "a stale callback never runs");
    sound(heap);
  });
});

describe("pfree and repalloc find the owner from the chunk header", () => {
  it("pfree and repalloc on chunks of another context than the current one", () => {
    const heap = mk();
    const top = topContext(heap);
    const a = top.create("a"), b = top.create("b");
    switchTo(a);
    const p = b.alloc(100);
    heap.u8.fill(5, p, p + 100);
    const q = repalloc(p, 100_000);
    assert.notEqual(q, p);
    assert.equal(MemoryContextClass.ofChunk(heap, q).name, "b", "repalloc keeps the owner");
    assert.ok(heap.u8.subarray(q, q + 100).every((x) => x === 5));
    assert.ok(b.memAllocated() > 100_000);
    assert.equal(a.isEmpty(), true);
    const r = repalloc(q, 50);
    assert.equal(r, q, "shrinking stays in place");
    pfree(r);
    assert.equal(b.memAllocated(), 8192);
    const small = b.alloc(10);
    assert.equal(repalloc(small, 16), small, "fits its 16-byte chunk");
    const moved = repalloc(small, 17);
    assert.notEqual(moved, small);
    throwsKind(() => pfree(small), "duplicate-free", /freed already/);
    switchTo(top);
    sound(heap);
  });

  it("ctx.free and ctx.realloc refuse a chunk of another context", () => {
    const heap = mk();
    const top = topContext(heap);
    const a = top.create("a"), b = top.create("b");
    const p = b.alloc(40);
    throwsKind(() => a.free(p), "bad-free", /belongs to memory context "b".*not to "a"/);
    throwsKind(() => a.realloc(p, 80), "bad-free", /not to "a"/);
    b.free(p); // still live: nothing was done
    sound(heap);
  });
});

describe("budgets", () => {
  it("the soft budget's handler runs first, even when the request would pass the hard one too", () => {
    const heap = mk({ size: 16 << 20 });
    const top = topContext(heap);
    const sort = top.create("sort", { softBudget: 64 << 10, budget: 128 << 10 });
    const run = sort.create("run");
    let calls = 0;
    sort.onSoftBudget(() => {
      calls++;
      run.reset(); // spills: makes room under both budgets
    });
    for (let i = 0; i < 45; i++) run.alloc(1000);
    assert.ok(sort.alloc(90000) > 0, "before the fix: BudgetExceededError, the handler unasked");
    assert.equal(calls, 1);
    sort.delete();
    sound(heap);
  });

  it("repalloc whose new chunk, after the handler's reset, lies where the old one was: refused", () => {
    const heap = mk();
    const top = topContext(heap);
    const SOFT = 256 << 10;
    const sort = top.create("sort", { softBudget: SOFT });
    const run = sort.create("run", { initBlockSize: 64 << 10, maxBlockSize: 64 << 10 });
    let armed = false;
    sort.onSoftBudget(() => {
      if (armed) run.reset();
    });
    const p = run.alloc(100);
    const room = () =>
      heap.i32[(run.address + MC_ENDPTR) >> 2] - heap.i32[(run.address + MC_FREEPTR) >> 2];
    while (sort.memAllocated(true) < SOFT - 8000) run.alloc(1000);
    while (room() >= 1040) run.alloc(1000);
    while (room() >= 4096 + 16) run.alloc(200);
    armed = true;
    // Before the fix: the new chunk, laid at p after the reset, passed for the old one; it was
    // freed and returned, and the next alloc handed it out again.
    throwsKind(() => run.realloc(p, 4000), "bad-free", /was freed while its new chunk/);
    armed = false;
    const q = run.alloc(4000), r = run.alloc(4000);
    assert.notEqual(q, r);
    assert.deepEqual(top.check(), []);
    sort.delete();
    sound(heap);
  });

  it("repalloc whose new chunk's handler reset the context: the error, and the new chunk given back", () => {
    const heap = mk();
    const top = topContext(heap);
    const sort = top.create("sort", { softBudget: 32 << 10 });
    const run = sort.create("run");
    sort.onSoftBudget(() => run.reset());
    const p = run.alloc(100);
    for (let i = 0; i < 3; i++) run.alloc(1000);
    const fresh = top.create("fresh").memAllocated(); // a context's first block alone
    throwsKind(() => run.realloc(p, 60000), "bad-free", /was freed while its new chunk/);
    assert.equal(run.memAllocated(), fresh, "before the fix: the 60000-byte chunk stayed, lost");
    sort.delete();
    sound(heap);
  });

  it("a request past the budget throws PostgreSQL's error and allocates nothing", () => {
    const heap = mk();
    const top = topContext(heap);
    const job = top.create("job", { budget: 256 * 1024 });
    const stage = job.create("stage");
    let caught: unknown;
    let n = 0;
    try {
      for (;;) {
        stage.alloc(3000);
        n++;
      }
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof BudgetExceededError, String(caught));
    assert.ok(caught instanceof UmemError);
    assert.equal(caught.kind, "budget-exceeded");
    const lines = caught.message.split("\n");
    assert.equal(lines[0], "out of memory");
    assert.equal(lines[1], 'Failed on request of size 3000 in memory context "stage".');
    assert.equal(caught.detail, lines[1]);
    assert.equal(caught.request, 3000);
    assert.equal(caught.context, "stage");
    assert.deepEqual(caught.path, ["TopMemoryContext", "job", "stage"]);
    assert.equal(caught.budgetContext, "job");
    assert.equal(caught.budget, 256 * 1024);
    assert.ok(n > 50);
    // Nothing was allocated by the failed request, and nothing more will be.
    const held = job.memAllocated(true), view = heapViewBytes(heap);
    assert.ok(held <= 256 * 1024);
    assert.equal(caught.allocated, held);
    for (let i = 0; i < 5; i++) {
      throwsKind(() => stage.alloc(3000), "budget-exceeded");
      throwsKind(() => stage.alloc(100_000), "budget-exceeded");
      throwsKind(() => job.create("more"), "budget-exceeded", /size 8192 in memory context "job"/);
      assert.equal(job.memAllocated(true), held);
      assert.equal(heapViewBytes(heap), view);
    }
    sound(heap);
    // After a reset the stage can allocate again.
    stage.reset();
    stage.alloc(3000);
    sound(heap);
  });

  it("the last block shrinks to fit under the budget", () => {
    const heap = mk();
    const ctx = topContext(heap).create("fit", { budget: 40 * 1024, initBlockSize: 16 * 1024 });
    try {
      for (;;) ctx.alloc(1000);
    } catch (e) {
      assert.ok(e instanceof BudgetExceededError);
    }
    assert.equal(ctx.memAllocated(), 40 * 1024, "16 + 16 + 8 (not 32) KiB");
    sound(heap);
  });

  it("a budget counts the whole subtree, and the tightest budget on the path refuses", () => {
    const heap = mk();
    const job = topContext(heap).create("job", { budget: 100 * 1024 });
    const loose = job.create("loose", { budget: 1 << 20 });
    const tight = job.create("tight", { budget: 20 * 1024 });
    loose.alloc(60_000);
    const e1 = throwsKind(() => tight.alloc(15_000), "budget-exceeded") as BudgetExceededError;
    assert.equal(e1.budgetContext, "tight");
    const e2 = throwsKind(() => loose.alloc(40_000), "budget-exceeded") as BudgetExceededError;
    assert.equal(e2.budgetContext, "job");
    assert.equal(e2.context, "loose");
    throwsKind(
      () => job.create("x", { budget: 100 }),
      "invalid-argument",
      /less than the context's first block/,
    );
    sound(heap);
  });

  it("repalloc past the budget keeps the old chunk", () => {
    const heap = mk();
    const top = topContext(heap);
    switchTo(top);
    const ctx = top.create("arr", { budget: 64 * 1024 });
    let p = ctx.alloc(1000);
    heap.u8.fill(1, p, p + 1000);
    p = repalloc(p, 30_000);
    throwsKind(() => repalloc(p, 60_000), "budget-exceeded", /size 60000 in memory context "arr"/);
    assert.ok(heap.u8.subarray(p, p + 1000).every((x) => x === 1));
    pfree(p);
    sound(heap);
  });

  it("a soft budget calls this worker's handler first, once per request", () => {
    const heap = mk();
    const sort = topContext(heap).create("sort", { softBudget: 48 * 1024, budget: 1 << 20 });
    const run = sort.create("run");
    const events: number[] = [];
    sort.onSoftBudget((ev) => {
      events.push(ev.allocated);
      assert.equal(ev.name, "sort");
      assert.equal(ev.softBudget, 48 * 1024);
      assert.ok(ev.allocated + ev.needed > ev.softBudget);
      run.reset(); // spill: the run goes to disk
    });
    for (let i = 0; i < 4000; i++) run.alloc(100);
    assert.ok(events.length > 3, `${events.length} spills`);
    assert.ok(sort.stats().peakBytes <= 48 * 1024, `peak ${sort.stats().peakBytes}`);
    // A handler that frees nothing: the request proceeds past the soft budget.
    sort.onSoftBudget(() => {});
    for (let i = 0; i < 2000; i++) run.alloc(100);
    assert.ok(sort.memAllocated(true) > 48 * 1024);
    sort.onSoftBudget(null);
    throwsKind(() => run.onSoftBudget(() => {}), "invalid-argument", /no soft budget/);
    sound(heap);
  });

  it('"wait" in one worker: fails at the timeout with the same error, nothing allocated', () => {
    const heap = mk();
    const ctx = topContext(heap).create("w", {
      budget: 16 * 1024,
      onExceed: "wait",
      waitTimeout: 150,
    });
    ctx.alloc(4000);
    const held = ctx.memAllocated(true);
    const t0 = Date.now();
    const e = throwsKind(() => ctx.alloc(8000), "budget-exceeded") as BudgetExceededError;
    const ms = Date.now() - t0;
    assert.ok(ms >= 140 && ms < 5000, `${ms} ms`);
    assert.equal(e.detail, 'Failed on request of size 8000 in memory context "w".');
    assert.equal(ctx.memAllocated(true), held);
    // A request that can never fit fails at once.
    const t1 = Date.now();
    throwsKind(() => ctx.alloc(20_000), "budget-exceeded");
    assert.ok(Date.now() - t1 < 100);
    sound(heap);
  });

  it('"wait" across workers: the request proceeds when another worker frees', async () => {
    const heap = mk({ slots: 4 });
    const top = topContext(heap);
    const job = top.create("job", { budget: 96 * 1024, onExceed: "wait", waitTimeout: 10_000 });
    const mine = job.create("main stage");
    const theirs = job.create("worker stage");
    while (job.memAllocated(true) + 16 * 1024 <= 96 * 1024) mine.alloc(4000);
    const before = mine.memAllocated();
    let released = 0;
    const r = await runWorker(
      { op: "wait", buffer: heap.buffer, ctx: theirs.address, size: 30_000 },
      async (_w, waiting) => {
        await waiting;
        await sleep(200); // the worker is asleep on the budget by now
        released = Date.now();
        mine.delete(); // frees what the worker waits for
      },
    );
    assert.equal(r.ok, true, String(r.message));
    assert.ok((r.ms as number) >= 150, `waited ${r.ms} ms`);
    assert.ok(before > 30_000);
    assert.ok(theirs.memAllocated() > 30_000);
    assert.ok(Date.now() - released < 5000);
    sound(heap);
  });

  it('"wait" across workers: the timeout fails the request as "error" would', async () => {
    const heap = mk({ slots: 4 });
    const top = topContext(heap);
    const job = top.create("job", { budget: 64 * 1024, onExceed: "wait", waitTimeout: 300 });
    const theirs = job.create("worker stage");
    const view = heapViewBytes(heap);
    const r = await runWorker({
      op: "wait",
      buffer: heap.buffer,
      ctx: theirs.address,
      size: 60_000,
    });
    assert.equal(r.ok, false);
    assert.equal(r.kind, "budget-exceeded");
    assert.match(
      r.message as string,
      /^out of memory\nFailed on request of size 60000 in memory context "worker stage"\./,
    );
    assert.ok((r.ms as number) >= 280, `${r.ms} ms`);
    assert.equal(heapViewBytes(heap), view, "nothing was allocated");
    sound(heap);
  });
});

describe("stats", () => {
  it("the stats totals equal the heap's view", () => {
    const heap = mk();
    const top = topContext(heap);
    const job = top.create("job");
    const kids = [job.create("a"), job.create("b", ALLOCSET_SMALL_SIZES), top.create("c")];
    kids.forEach((k, j) => {
      const live: number[] = [];
      for (let i = 0; i < 500; i++) live.push(k.alloc(1 + (i * 131 * (j + 1)) % 1500));
      live.filter((_, i) => i % 3 === 0).forEach((p) => k.free(p));
      k.alloc(20_000);
    });
    const s = top.stats();
    assert.equal(grand(s), heapViewBytes(heap));
    assert.equal(grand(s), top.memAllocated(true));
    const walk = (n: MemoryContextStats) => {
      const ctx = MemoryContextClass.at(heap, n.address);
      assert.equal(n.totalBytes, ctx.memAllocated());
      assert.equal(n.subtreeBytes, ctx.memAllocated(true));
      assert.equal(grand(n), n.subtreeBytes);
      assert.equal(n.usedBytes, n.totalBytes - n.freeBytes);
      assert.equal(n.blocks, blockSizes(heap, ctx).length);
      n.children.forEach(walk);
    };
    walk(s);
    const b = s.children.find((c) => c.name === "job")!.children.find((c) => c.name === "b")!;
    assert.ok(b.freeChunks > 100);
    // Exact figures, as aset.c counts them: a keeper of 8192 bytes whose chunks start after
    // the block header (32), the record (192) and the name (8): 7960 bytes for chunks.
    const t = top.create("t");
    const chunks = [t.alloc(100), t.alloc(100), t.alloc(100)]; // 3 x (16 + 128) bytes
    t.free(chunks[0]);
    t.free(chunks[2]);
    const ts = t.stats();
    assert.deepEqual(
      [ts.totalBytes, ts.blocks, ts.freeBytes, ts.freeChunks, ts.usedBytes],
      [8192, 1, 7960 - 3 * 144 + 2 * 144, 2, 8192 - 7960 + 144],
    );
    sound(heap);
  });

  it("memoryContextStats prints PostgreSQL's report", () => {
    const heap = mk();
    const top = topContext(heap);
    const job = top.create("job");
    job.create("parse").alloc(100);
    const agg = job.create("aggregate");
    agg.free(agg.alloc(1000));
    for (let i = 0; i < 5; i++) top.create(`tmp ${i}`);
    let written = "";
    const text = memoryContextStats(top, { write: (t) => (written = t) });
    assert.equal(written, text);
    const lines = text.split("\n");
    const line =
      /^( *)([^:]+): (\d+) total in (\d+) blocks; (\d+) free \((\d+) chunks\); (\d+) used$/;
    assert.match(
      lines[0],
      /^TopMemoryContext: 8192 total in 1 blocks; \d+ free \(0 chunks\); \d+ used$/,
    );
    const names = lines.slice(0, -1).map((l) => {
      const m = l.match(line);
      assert.ok(m, l);
      assert.equal(Number(m[3]) - Number(m[5]), Number(m[7]), "used = total - free");
      return `${m[1].length / 2}:${m[2]}`;
    });
    assert.deepEqual(names, [
      "0:TopMemoryContext",
      "1:tmp 4",
      "1:tmp 3",
      "1:tmp 2",
      "1:tmp 1",
      "1:tmp 0",
      "1:job",
      "2:aggregate",
      "2:parse",
    ]);
    // 32 + 192 + 16 (the name) bytes used; the 1024-byte chunk, freed, counts as free.
    assert.equal(lines[7], "    aggregate: 8192 total in 1 blocks; 7952 free (1 chunks); 240 used");
    const g = lines[lines.length - 1].match(
      /^Grand total: (\d+) bytes in (\d+) blocks; (\d+) free \((\d+) chunks\); (\d+) used$/,
    );
    assert.ok(g, lines[lines.length - 1]);
    assert.equal(Number(g[1]), heapViewBytes(heap));
    assert.equal(Number(g[2]), 9);
    // Past maxChildren, the rest are summed on one line.
    const short = memoryContextStats(top, { maxChildren: 2, write: () => {} }).split("\n");
    assert.match(short[3], /^ {2}4 more child contexts containing 49152 total in 6 blocks; /);
    assert.equal(short[short.length - 1], lines[lines.length - 1]);
    throwsKind(() => memoryContextStats(top, { maxChildren: -1 }), "invalid-argument");
    throwsKind(() => memoryContextStats({} as MemoryContext), "invalid-argument");
    sound(heap);
  });
});

describe("bad input gets a typed error and harms nothing", () => {
  it("pfree of a foreign pointer, an interior pointer, NULL, garbage", () => {
    const heap = mk();
    const top = topContext(heap);
    switchTo(top);
    const ctx = top.create("c");
    const p = ctx.alloc(100);
    const foreign = heap.zalloc(64);
    throwsKind(() => pfree(foreign), "bad-free", /is not a chunk allocated in a memory context/);
    const dirty = heap.alloc(64);
    heap.i32.fill(ctx.address, dirty >> 2, (dirty + 64) >> 2); // words that name the context
    throwsKind(() => pfree(dirty + 32), "bad-free", /does not match context "c"/);
    throwsKind(() => pfree(p + 8), "bad-free");
    throwsKind(() => pfree(p + 3), "bad-free", /misaligned/);
    throwsKind(() => pfree(0), "invalid-argument", /NULL/);
    throwsKind(() => pfree(-8), "bad-free");
    throwsKind(() => pfree(heap.size + 64), "bad-free", /outside the heap/);
    throwsKind(() => pfree(1.5), "invalid-argument");
    throwsKind(() => pfree("8" as unknown as number), "invalid-argument");
    throwsKind(() => repalloc(foreign, 10), "bad-free");
    throwsKind(() => MemoryContextClass.ofChunk(heap, foreign), "bad-free");
    heap.free(foreign, 64);
    heap.free(dirty, 64);
    ctx.free(p); // untouched by all that
    sound(heap);
  });

  it("pfree of a pointer freed already, small or large", () => {
    const heap = mk();
    const ctx = topContext(heap).create("c");
    switchTo(ctx);
    const p = palloc(30), big = palloc(50_000);
    pfree(p);
    pfree(big);
    throwsKind(
      () => pfree(p),
      "duplicate-free",
      /duplicate free: chunk 0x[0-9a-f]+ of memory context "c"/,
    );
    throwsKind(() => pfree(big), "duplicate-free");
    throwsKind(() => ctx.free(p), "duplicate-free");
    throwsKind(() => repalloc(p, 10), "duplicate-free");
    assert.equal(palloc(30), p, "the free list is intact");
    switchTo(ctx.parent);
    sound(heap);
  });

  it("pfree of a pointer in a deleted context, or from before a reset", () => {
    const heap = mk();
    const top = topContext(heap);
    switchTo(top);
    const ctx = top.create("gone");
    const p = ctx.alloc(100);
    ctx.delete();
    throwsKind(() => pfree(p), "destroyed", /memory context "gone".*which was deleted/);
    const kept = top.create("kept");
    const q = kept.alloc(100);
    kept.reset();
    throwsKind(() => pfree(q), "bad-free", /before the context's last reset/);
    // A new context whose record reuses the deleted one's memory.
    const again = top.create("again");
    const r = again.alloc(100);
    again.delete();
    const reuse = top.create("reuse");
    if (reuse.address === again.address) {
      throwsKind(() => pfree(r), "destroyed", /was deleted/);
    }
    sound(heap);
  });

  it("bad sizes, names and options", () => {
    const heap = mk();
    const top = topContext(heap);
    switchTo(top);
    const ctx = top.create("c");
    for (const bad of [-1, 1.5, NaN, 2 ** 30, Infinity, "10", null]) {
      throwsKind(
        () => ctx.alloc(bad as number),
        "invalid-argument",
        /MemoryContext\.alloc: invalid memory alloc request size/,
      );
      throwsKind(() => palloc(bad as number), "invalid-argument", /^palloc: invalid memory/);
    }
    const p = ctx.alloc(8);
    throwsKind(() => ctx.realloc(p, -1), "invalid-argument");
    throwsKind(() => top.create(""), "invalid-argument", /non-empty string/);
    throwsKind(() => top.create("x".repeat(128)), "invalid-argument", /at most 127/);
    throwsKind(() => top.create(3 as unknown as string), "invalid-argument");
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ initBlockSize: 100 }, /initBlockSize 100/],
      [{ initBlockSize: 8192, maxBlockSize: 4096 }, /maxBlockSize 4096/],
      [{ minContextSize: 500 }, /minContextSize 500/],
      [{ budget: -1 }, /budget -1/],
      [{ budget: 8192, softBudget: 9000 }, /softBudget 9000/],
      [{ onExceed: "block" }, /onExceed must be/],
      [{ onExceed: "wait" }, /needs a budget/],
      [{ onSoftBudget: () => {} }, /needs a softBudget/],
      [{ softBudget: 9000, onSoftBudget: 3 }, /must be a function/],
      [{ shared: "yes" }, /shared must be a boolean/],
      [{ waitTimeout: -5 }, /waitTimeout/],
      [{ budjet: 10 }, /unknown option 'budjet'/],
    ];
    for (const [o, re] of bad) throwsKind(() => top.create("x", o), "invalid-argument", re);
    throwsKind(() => top.create("x", null as unknown as undefined), "invalid-argument");
    assert.deepEqual(top.children().map((c) => c.name), ["c"], "nothing was created");
    throwsKind(() => topContext({} as Heap), "invalid-argument");
    sound(heap);
  });
});

describe("workers", () => {
  it("another worker finds the tree and its contexts", async () => {
    const heap = mk({ slots: 4 });
    const top = topContext(heap);
    top.create("parse");
    top.create("aggregate");
    const r = await runWorker({ op: "top", buffer: heap.buffer });
    assert.equal(r.top, top.address);
    assert.deepEqual(r.names, ["aggregate", "parse"]);
  });

  it("a shared context, hammered by three workers at once, stays sound", async () => {
    const heap = mk({ slots: 8, size: 16 << 20 });
    const top = topContext(heap);
    const shared = top.create("shared", { shared: true, initBlockSize: 1024 });
    assert.equal(shared.shared, true);
    const start = shared.memAllocated();
    const gate = new Int32Array(new SharedArrayBuffer(8));
    const iters = 60_000;
    const runs = [1, 2].map((seed) =>
      runWorker({
        op: "hammer",
        buffer: heap.buffer,
        ctx: shared.address,
        iters,
        seed,
        gate: gate.buffer,
      })
    );
    // Everyone starts at once: the workers wait at the gate until this worker opens it.
    const deadline = Date.now() + 15_000;
    while (Atomics.load(gate, 0) < 2 && Date.now() < deadline) await sleep(5);
    Atomics.store(gate, 1, 1);
    Atomics.notify(gate, 1);
    let bad = 0;
    const live: [number, number][] = [];
    for (let i = 0; i < iters; i++) {
      if (live.length > 0 && i % 4 === 0) {
        const [p, n] = live.splice((i * 7919) % live.length, 1)[0];
        for (let j = 0; j < n; j += 64) if (heap.u8[p + j] !== 0xaa) bad++;
        shared.free(p);
      } else {
        const n = i % 97 === 0 ? 12_000 : 1 + (i * 31) % 400;
        const p = shared.alloc(n);
        heap.u8.fill(0xaa, p, p + n);
        live.push([p, n]);
      }
    }
    const results = await Promise.all(runs);
    for (const r of results) assert.equal(r.bad, 0);
    assert.equal(bad, 0);
    for (const [p] of live) shared.free(p);
    assert.deepEqual(shared.check(), []);
    assert.ok(shared.memAllocated() >= start);
    shared.reset();
    assert.equal(shared.memAllocated(), start);
    sound(heap);
  });
});

describe("growth and exhaustion", () => {
  it("contexts follow the heap as it grows", () => {
    const heap = mk({ size: 1 << 20, maxSize: 64 << 20 });
    const ctx = topContext(heap).create("big data");
    const start = heap.size;
    const chunks: number[] = [];
    for (let i = 0; i < 400; i++) {
      const p = ctx.alloc(i % 2 === 0 ? 50_000 : 3000);
      heap.i32[p >> 2] = i;
      chunks.push(p);
    }
    assert.ok(heap.size > start, "the heap grew");
    chunks.forEach((p, i) => assert.equal(heap.i32[p >> 2], i));
    sound(heap);
    ctx.delete();
    sound(heap);
  });

  it("an exhausted heap gives PostgreSQL's out of memory and changes nothing", () => {
    const heap = mk({ size: 2 << 20, maxSize: 2 << 20 });
    const ctx = topContext(heap).create("hungry");
    let caught: unknown;
    try {
      for (let i = 0; i < 10_000; i++) ctx.alloc(100_000);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof OutOfMemoryError, String(caught));
    assert.match(
      (caught as Error).message,
      /^out of memory\nFailed on request of size 100000 in memory context "hungry"\./,
    );
    sound(heap);
    ctx.reset();
    sound(heap);
  });
});

// ---------------------------------------------------------------------------------------------
// A model test: random operations on a small tree against a model of the live chunks.

type Op =
  | { t: "alloc"; ctx: number; size: number }
  | { t: "free"; k: number }
  | { t: "realloc"; k: number; size: number }
  | { t: "reset"; ctx: number }
  | { t: "resetOnly"; ctx: number }
  | { t: "recreate"; ctx: number };

const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 2, arbitrary: fc.integer({ min: 301, max: 9000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 9001, max: 40_000 }) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      t: fc.constant("alloc" as const),
      ctx: fc.nat(3),
      size: sizeArb,
    }),
  },
  { weight: 6, arbitrary: fc.record({ t: fc.constant("free" as const), k: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant("realloc" as const), k: fc.nat(), size: sizeArb }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("reset" as const), ctx: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("resetOnly" as const), ctx: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("recreate" as const), ctx: fc.nat(3) }) },
);

describe("model test", () => {
  it("random operations keep every live chunk intact and the accounts exact", () => {
    const heap = mk({ size: 4 << 20, maxSize: 128 << 20 });
    const top = topContext(heap);
    switchTo(top);
    const base = heapViewBytes(heap);
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        // ctx 0 = job (budget), 1 = job/a, 2 = job/a/b (small sizes), 3 = job/c (shared)
        const job = top.create("job", { budget: 4 << 20 });
        const mkCtx = (i: number): MemoryContext =>
          i === 1
            ? job.create("a")
            : i === 2
            ? ctxs[1].create("b", ALLOCSET_SMALL_SIZES)
            : job.create("c", { shared: true });
        const ctxs: MemoryContext[] = [job];
        ctxs.push(mkCtx(1));
        ctxs.push(mkCtx(2));
        ctxs.push(mkCtx(3));
        // live chunks: [ptr, size, tag, ctx index]
        let live: [number, number, number, number][] = [];
        let tag = 1;
        const parentOf = [-1, 0, 1, 0];
        const under = (c: number, anc: number): boolean =>
          c === anc || (parentOf[c] >= 0 && under(parentOf[c], anc));
        const fill = (p: number, n: number, t: number) => heap.u8.fill(t, p, p + Math.min(n, 64));
        for (const op of ops) {
          if (op.t === "alloc") {
            const c = ctxs[op.ctx];
            if (!c.isLive) continue;
            let p: number;
            try {
              p = c.alloc(op.size);
            } catch (e) {
              assert.ok(e instanceof BudgetExceededError, String(e));
              continue;
            }
            const t = tag++ & 0xff;
            fill(p, op.size, t);
            live.push([p, op.size, t, op.ctx]);
          } else if (op.t === "free" && live.length > 0) {
            const [p] = live.splice(op.k % live.length, 1)[0];
            pfree(p);
            throwsKind(() => pfree(p), "duplicate-free");
          } else if (op.t === "realloc" && live.length > 0) {
            const i = op.k % live.length, [p, n, t, c] = live[i];
            let q: number;
            try {
              q = repalloc(p, op.size);
            } catch (e) {
              assert.ok(e instanceof BudgetExceededError, String(e));
              continue;
            }
            for (let j = 0; j < Math.min(n, op.size, 64); j++) assert.equal(heap.u8[q + j], t);
            fill(q, op.size, t);
            live[i] = [q, op.size, t, c];
          } else if (op.t === "reset" || op.t === "resetOnly") {
            const c = ctxs[op.ctx];
            if (!c.isLive) continue;
            if (op.t === "reset") {
              c.reset();
              live = live.filter(([, , , k]) => !under(k, op.ctx));
            } else {
              c.resetOnly();
              live = live.filter(([, , , k]) => k !== op.ctx);
            }
          } else if (op.t === "recreate" && op.ctx > 0) {
            if (ctxs[op.ctx].isLive) {
              ctxs[op.ctx].delete();
              live = live.filter(([, , , k]) => !under(k, op.ctx));
            }
            if (!ctxs[parentOf[op.ctx]].isLive) continue;
            ctxs[op.ctx] = mkCtx(op.ctx);
          }
          for (const [p, n, t] of live) {
            for (let j = 0; j < Math.min(n, 64); j++) {
              if (heap.u8[p + j] !== t) assert.fail(`chunk ${p} was overwritten`);
            }
          }
        }
        assert.deepEqual(top.check(), []);
        assert.equal(heapViewBytes(heap), top.memAllocated(true));
        assert.ok(job.memAllocated(true) <= 4 << 20);
        job.delete();
        assert.equal(heapViewBytes(heap), base);
        assert.deepEqual(heap.verify(), []);
      }),
      { numRuns: 150 },
    );
  });
});
