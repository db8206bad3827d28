/**
 * Audit stacks are captured raw and formatted only when something reads them (core/stack.ts):
 * a loop of audited pairs interns nothing; a report, a tool, the ring coming round to a stack
 * still held, a snapshot and a detach each intern what they need; another worker's stack not
 * yet interned reads as whose it is.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { corruption } from "./helpers.ts";
import { Heap, inspect, Snapshot } from "../mod.ts";
import { BT_A_STACK } from "../core/buftag.ts";
import { CA_TAGOFF } from "../core/slab.ts";
import { sizeCache } from "../core/size_class.ts";
import { HDR_STACKS, HDR_TXLOG } from "../core/image.ts";
import { ringRecords, TX_STACK } from "../core/log.ts";
import { captureStackDeferred, notePendingAt, PENDING_STACKS, ST_COUNT } from "../core/stack.ts";

const auditHeap = (logging = "") => Heap.create({ size: 4 << 20, debug: "audit,noabort", logging });

/** The stack word of the alloc half of `p`'s audit record (a 40-byte buffer). */
const allocStackWord = (heap: Heap, p: number): number =>
  heap.i32[(p + heap.i32[(sizeCache(heap, 40) + CA_TAGOFF) >> 2] + BT_A_STACK) >> 2];

/** The stack of `p`'s last transaction, as `heap`'s worker reads it. */
const stackOf = (heap: Parameters<typeof inspect>[0], p: number): string =>
  inspect(heap).bufctl(p)[0].stack;

/** What a stack that worker `slot` captured and has not interned reads as. */
const notInterned = (slot: number): string =>
  `<stack captured by worker ${slot}, not interned yet>`;

/** Stacks interned in the heap's stack table. */
const interned = (heap: Heap): number => heap.i32[(heap.i32[HDR_STACKS >> 2] + ST_COUNT) >> 2];

describe("audit stacks, formatted when read", () => {
  it("a thousand audited pairs intern nothing; a report interns the stacks it prints", () => {
    const heap = auditHeap();
    function pairsInALoop() {
      for (let i = 0; i < 1000; i++) heap.free(heap.alloc(40), 40);
    }
    pairsInALoop();
    assert.equal(interned(heap), 0, "no stack was formatted");
    function allocatedHere(): number {
      return heap.alloc(40);
    }
    const p = allocatedHere();
    assert.ok(allocStackWord(heap, p) < 0, "the audit record holds a pending id");
    heap.free(p, 40);
    const e = corruption(() => heap.free(p, 40));
    assert.equal(e.kind, "duplicate-free");
    assert.match(e.audit.find((t) => t.op === "alloc")!.stack, /allocatedHere|stack_test\.ts/);
    assert.match(e.message, /allocatedHere|stack_test\.ts/);
    assert.equal(interned(heap), 2, "the report interned its two stacks, and only those");
    assert.ok(allocStackWord(heap, p) > 0, "and the record now holds the interned id");
    assert.deepEqual(heap.verify(), []);
  });

  it("with the transaction log: what the log has dropped is never formatted; what it holds is read", () => {
    // 1024 records: the ring is made larger than that, or a capture would leave it while the
    // log still held it, and be formatted.
    const heap = auditHeap("transaction=32k");
    function pairsLogged(n: number) {
      for (let i = 0; i < n; i++) heap.free(heap.alloc(40), 40);
    }
    pairsLogged(3 * PENDING_STACKS);
    assert.equal(interned(heap), 0, "each stack left the log before it left the ring");
    const log = inspect(heap).log();
    assert.equal(log.length, 1024);
    for (const t of log) assert.match(t.stack, /pairsLogged|stack_test\.ts/);
    assert.equal(interned(heap), 2, "the log's stacks are of two call sites");
  });

  it("the ring coming round interns a stack still held and drops the ones overwritten", () => {
    const heap = auditHeap();
    function allocatedAndKept(): number {
      return heap.alloc(40);
    }
    const kept = allocatedAndKept();
    const id = allocStackWord(heap, kept);
    assert.ok(id < 0);
    for (let i = 0; i < PENDING_STACKS; i++) heap.free(heap.alloc(40), 40);
    assert.ok(allocStackWord(heap, kept) > 0, "interned when its slot was wanted again");
    assert.equal(interned(heap), 1, "the pairs' stacks, overwritten since, were dropped");
    assert.match(stackOf(heap, kept), /allocatedAndKept|stack_test\.ts/);
    heap.free(kept, 40);
    assert.deepEqual(heap.verify(), []);
  });

  it("a noted place that is no longer an audit record is left alone, whatever it holds", () => {
    // As if the buffer's slab had been given back and its memory now held the user's data,
    // which happens to equal the pending id.
    const heap = auditHeap(), p = heap.alloc(40);
    const id = captureStackDeferred(heap, heap.alloc);
    heap.i32[p >> 2] = id;
    notePendingAt(heap, id, p);
    for (let i = 0; i < PENDING_STACKS; i++) heap.free(heap.alloc(40), 40);
    assert.equal(heap.i32[p >> 2], id, "the user's word is as it was");
    assert.equal(interned(heap), 1, "one stack formatted: p's alloc, which p's record holds");
    heap.free(p, 40);
    assert.deepEqual(heap.verify(), []);
  });

  it("a stack written to more places than are noted is interned at once, in all of them", () => {
    const heap = auditHeap("transaction=4k");
    for (let i = 0; i < 3; i++) heap.free(heap.alloc(40), 40); // six log records
    function capturedHere(): number {
      return captureStackDeferred(heap, capturedHere);
    }
    const id = capturedHere();
    const places = ringRecords(heap, heap.i32[HDR_TXLOG >> 2]).slice(0, 3).map((r) => r + TX_STACK);
    for (const at of places) {
      heap.i32[at >> 2] = id;
      notePendingAt(heap, id, at);
    }
    const ids = places.map((at) => heap.i32[at >> 2]);
    assert.ok(ids[0] > 0, "interned when the third place was noted");
    assert.deepEqual(ids, [ids[0], ids[0], ids[0]], "and every place holds the interned id");
    assert.match(inspect(heap).log()[0].stack, /stack_test\.ts/);
  });

  it("another worker's stack reads as whose it is until that worker interns it or detaches", () => {
    const heap = auditHeap(), other = Heap.attach(heap.buffer);
    function allocatedByTheOther(): number {
      return other.alloc(40);
    }
    const p = allocatedByTheOther();
    assert.equal(stackOf(heap, p), notInterned(other.slot));
    other.internStacks();
    assert.match(stackOf(heap, p), /allocatedByTheOther|stack_test\.ts/);
    const q = allocatedByTheOther();
    assert.equal(stackOf(heap, q), notInterned(other.slot));
    assert.match(
      stackOf(other, q),
      /allocatedByTheOther|stack_test\.ts/,
      "its own worker reads it",
    );
    const r = allocatedByTheOther();
    other.detach();
    assert.match(stackOf(heap, r), /allocatedByTheOther|stack_test\.ts/);
    heap.free(p, 40);
    heap.free(q, 40);
    heap.free(r, 40);
    assert.deepEqual(heap.verify(), []);
  });

  it("findleaks groups leaks whose stacks another worker has not interned into one class", () => {
    const heap = auditHeap(), other = Heap.attach(heap.buffer);
    function leak(): number {
      return other.alloc(40);
    }
    for (let i = 0; i < 5; i++) leak();
    const leaks = inspect(heap).findleaks();
    assert.equal(leaks.classes.length, 1, "before the fix: five, one per pending id");
    assert.equal(leaks.classes[0].count, 5);
    assert.equal(leaks.classes[0].stack, notInterned(other.slot));
    other.detach(); // interns them: the class names the call site
    assert.match(inspect(heap).findleaks().classes[0].stack, /leak|stack_test\.ts/);
  });

  it("a worker that takes over a dead worker's slot does not claim its stacks", () => {
    const heap = auditHeap(), dead = Heap.attach(heap.buffer);
    function allocatedByTheDead(): number {
      return dead.alloc(40);
    }
    const p = allocatedByTheDead();
    heap.reclaimSlot(dead.slot); // terminated without detaching
    const heir = Heap.attach(heap.buffer);
    assert.equal(heir.slot, dead.slot);
    function allocatedByTheHeir(): number {
      return heir.alloc(40);
    }
    const q = allocatedByTheHeir(); // its first capture: the same sequence number as p's
    assert.equal(allocStackWord(heir, q), allocStackWord(heap, p), "the same pending id");
    const stackOfP = stackOf(heir, p);
    assert.doesNotMatch(stackOfP, /allocatedByTheHeir/);
    assert.equal(stackOfP, notInterned(dead.slot));
    assert.match(stackOf(heir, q), /allocatedByTheHeir|stack_test\.ts/);
    heir.free(p, 40);
    heir.free(q, 40);
    heir.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("a snapshot carries the stacks of the worker that takes it", () => {
    const heap = auditHeap();
    function allocatedBeforeTheSnapshot(): number {
      return heap.alloc(40);
    }
    const p = allocatedBeforeTheSnapshot();
    const snap = Snapshot.decode(Snapshot.encode(heap));
    assert.match(stackOf(snap, p), /allocatedBeforeTheSnapshot|stack_test\.ts/);
    const leaks = inspect(heap).findleaks();
    assert.equal(leaks.total_buffers, 1);
    assert.match(leaks.classes[0].stack, /allocatedBeforeTheSnapshot|stack_test\.ts/);
    heap.free(p, 40);
  });

  it("leaks from one call site group together though each was captured apart", () => {
    const heap = auditHeap();
    function leakOne(): number {
      return heap.alloc(40);
    }
    for (let i = 0; i < 5; i++) leakOne();
    const leaks = inspect(heap).findleaks();
    assert.equal(leaks.classes.length, 1);
    assert.equal(leaks.classes[0].count, 5);
    assert.match(leaks.classes[0].stack, /leakOne|stack_test\.ts/);
  });

  it("an audited transaction is captured once, by the entry point, for a heap and a cache", () => {
    // A pending id holds the capture's sequence number above the worker's slot (6 bits): ids
    // of consecutive captures are 64 apart. A second capture where the record is written (the
    // entry's capture not handed down) would make them 128 apart.
    const heap = auditHeap(), c = heap.createCache("node", 40);
    const cacheStackWord = (p: number): number =>
      heap.i32[(p + heap.i32[(c.addr + CA_TAGOFF) >> 2] + BT_A_STACK) >> 2];
    const p = heap.alloc(40), q = heap.alloc(40);
    assert.equal(allocStackWord(heap, p) - allocStackWord(heap, q), 64);
    const r = c.alloc(), t = c.alloc();
    assert.equal(cacheStackWord(r) - cacheStackWord(t), 64);
    assert.equal(allocStackWord(heap, q) - cacheStackWord(r), 64);
    for (const x of [p, q]) heap.free(x, 40);
    for (const x of [r, t]) c.free(x);
    assert.deepEqual(heap.verify(), []);
  });

  it("audit=N keeps N of the caller's frames for zalloc and libc's entry points too", () => {
    // Before the fix the capture counted from alloc, below them: their own frames took the
    // depth and were then dropped as umem's (audit=1: no frame at all for malloc).
    for (const depth of [1, 2]) {
      const heap = Heap.create({ size: 4 << 20, debug: `audit=${depth},noabort` });
      const { libc } = heap;
      const made: [string, number][] = [
        ["viaAlloc", ((): number => heap.alloc(40))()],
        [
          "viaZalloc",
          (function viaZalloc() {
            return heap.zalloc(40);
          })(),
        ],
        [
          "viaMalloc",
          (function viaMalloc() {
            return libc.malloc(32) - 8;
          })(),
        ],
        [
          "viaCalloc",
          (function viaCalloc() {
            return libc.calloc(4, 8) - 8;
          })(),
        ],
        [
          "viaRealloc",
          (function viaRealloc() {
            return libc.realloc(libc.malloc(8), 32) - 8;
          })(),
        ],
      ];
      for (const [name, buf] of made.slice(1)) {
        const frames = stackOf(heap, buf).split("\n");
        assert.equal(frames.length, depth, `${name}, audit=${depth}`);
        // (JavaScriptCore may name the frame <anonymous>: its place in this file then.)
        assert.match(frames[0], new RegExp(`${name}|stack_test\\.ts`), `${name}, audit=${depth}`);
      }
    }
  });
});
