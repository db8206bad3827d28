/**
 * The `own` module: every ownership rule in one worker (borrows, moves, drops, send and
 * receive, the free hook, errors in light and full mode, the error handler, leaks), a model
 * test against a few lines of Rust semantics, and the rules across two real workers: a buffer
 * handed over and back, and a mutable borrow raced from two workers with exactly one winner per
 * round.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Heap, inspect, OutOfMemoryError } from "../mod.ts";
import {
  BorrowError,
  BorrowMutError,
  type Owned,
  type OwnedInfo,
  type OwnedToken,
  Ownership,
  OwnershipError,
  Ref,
  RefMut,
  type Shared,
  type ShareToken,
} from "../own/mod.ts";
import {
  OR_PTR,
  OR_STATE,
  OS_COUNT,
  OS_MUT,
  OS_PHASE,
  OS_PHASE_SHIFT,
  OT_COUNT,
  PC_PAGE_SHIFT,
  PH_LIVE,
  PH_TRANSIT,
} from "../own/layout.ts";
import {
  lockTable,
  ownRoot,
  pageCounts,
  tableFind,
  tableInsert,
  tableMayHold,
  tableRecords,
  tableRemove,
  unlockTable,
} from "../own/table.ts";
import { mk, throwsKind, withWorkers as withWorkersOf } from "./helpers.ts";

function setup(mode: "light" | "full" = "light") {
  const heap = mk({ size: 2 << 20 });
  const own = Ownership.create(heap, { mode });
  return { heap, own };
}

describe("own: borrows", () => {
  it("many shared borrows at once, counted in the state word, released by their guards", () => {
    const { heap, own } = setup();
    const a = own.alloc(32);
    const r1 = a.borrow(), r2 = a.borrow(), r3 = a.borrow();
    assert.equal(own.stateOf(a.deref())?.borrows, 3);
    assert.equal(r1.ptr, a.deref());
    r2.release();
    r2.release(); // a second release does nothing
    assert.equal(own.stateOf(a.deref())?.borrows, 2);
    r1.release();
    r3.release();
    assert.equal(own.stateOf(a.deref())?.borrows, 0);
    throwsKind(() => r1.ptr, "use-after-drop", /borrow of buffer 0x[0-9a-f]+ has ended/);
    a.drop();
    assert.deepEqual(heap.verify(), []);
  });

  it("borrow while mutably borrowed is a BorrowError, and changes nothing", () => {
    const { own } = setup();
    const a = own.alloc(16);
    const w = a.borrowMut();
    const e = throwsKind(() => a.borrow(), "borrow-conflict", /already mutably borrowed/);
    assert.ok(e instanceof BorrowError && e.name === "BorrowError");
    assert.equal((e as BorrowError).mutablyBorrowed, true);
    assert.equal((e as BorrowError).owner, own.heap.slot);
    assert.deepEqual(
      [own.stateOf(a.deref())?.borrows, own.stateOf(a.deref())?.mutablyBorrowed],
      [0, true],
    );
    w.release();
    a.borrow().release();
  });

  it("borrowMut while borrowed (shared or mutably) is a BorrowMutError", () => {
    const { own } = setup();
    const a = own.alloc(16);
    const r = a.borrow();
    const e1 = throwsKind(() => a.borrowMut(), "borrow-conflict", /already borrowed/);
    assert.ok(e1 instanceof BorrowMutError && e1.borrows === 1);
    r.release();
    const w = a.borrowMut();
    const e2 = throwsKind(() => a.borrowMut(), "borrow-conflict", /already borrowed/);
    assert.ok(e2 instanceof BorrowMutError && e2.mutablyBorrowed);
    w.release();
    assert.equal(own.stateOf(a.deref())?.mutablyBorrowed, false);
  });

  it("tryBorrow and tryBorrowMut return undefined on a conflict and leave the state alone", () => {
    const { own } = setup();
    const a = own.alloc(16);
    const w = a.borrowMut();
    assert.equal(a.tryBorrow(), undefined);
    assert.equal(a.tryBorrowMut(), undefined);
    w.release();
    const r = a.tryBorrow();
    assert.ok(r !== undefined && r.held);
    assert.equal(a.tryBorrowMut(), undefined);
    assert.equal(own.stateOf(a.deref())?.borrows, 1);
    r.release();
    const w2 = a.tryBorrowMut();
    assert.ok(w2 !== undefined);
    w2.release();
    // A dead handle is not a borrow conflict: try* throws.
    a.drop();
    throwsKind(() => a.tryBorrow(), "use-after-drop");
    throwsKind(() => a.tryBorrowMut(), "use-after-drop");
  });

  it("a guard's end (using) releases the borrow even when the block throws", () => {
    const { own } = setup();
    const a = own.alloc(16);
    assert.throws(() => {
      using _w = a.borrowMut();
      throw new Error("boom");
    }, /boom/);
    assert.equal(own.stateOf(a.deref())?.mutablyBorrowed, false);
    assert.throws(() => {
      using _r1 = a.borrow();
      using _r2 = a.borrow();
      assert.equal(own.stateOf(a.deref())?.borrows, 2);
      throw new Error("boom");
    }, /boom/);
    assert.equal(own.stateOf(a.deref())?.borrows, 0);
    a.borrowMut().release();
    a.drop();
  });
});

describe("own: moves and drops", () => {
  it("move gives a new handle and kills the old one for every use", () => {
    const { heap, own } = setup();
    const a = own.alloc(16);
    heap.u8[a.deref()] = 7;
    const b = a.move();
    assert.equal(a.alive, false);
    assert.equal(b.alive, true);
    assert.equal(heap.u8[b.deref()], 7);
    for (
      const use of [
        () => a.borrow(),
        () => a.borrowMut(),
        () => a.deref(),
        () => a.move(),
        () => a.send(),
        () => a.clone(),
        () => a.share(),
        () => a.drop(),
      ]
    ) throwsKind(use, "use-after-move", /used after move/);
    b.drop();
    assert.deepEqual(heap.verify(), []);
  });

  it("move while borrowed is refused and the handle lives on", () => {
    const { own } = setup();
    const a = own.alloc(16);
    const r = a.borrow();
    throwsKind(() => a.move(), "borrow-conflict", /cannot move out of buffer .* borrowed/);
    assert.equal(a.alive, true);
    r.release();
    a.move().drop();
  });

  it("use after drop, double drop, drop while borrowed", () => {
    const { heap, own } = setup();
    const before = heap.caches().find((c) => c.name === "umem_alloc_48")!.stats().inUse;
    const a = own.alloc(48);
    const w = a.borrowMut();
    throwsKind(
      () => a.drop(),
      "drop-while-borrowed",
      /dropped while borrowed \(0 shared, 1 mutable/,
    );
    assert.equal(own.stateOf(a.deref())?.state, "owned"); // nothing was freed
    w.release();
    const p = a.deref();
    a.drop();
    assert.equal(own.stateOf(p), undefined);
    throwsKind(() => a.deref(), "use-after-drop", /used after drop/);
    throwsKind(() => a.borrow(), "use-after-drop");
    throwsKind(() => a.drop(), "double-drop", /dropped twice/);
    assert.equal(heap.caches().find((c) => c.name === "umem_alloc_48")!.stats().inUse, before);
    assert.equal(own.stats().tracked, 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("at the most shared borrows a word counts, borrow throws and tryBorrow returns undefined", () => {
    const { heap, own } = setup();
    const a = own.alloc(16);
    const other = Heap.attach(heap.buffer), ref = Ownership.create(other).access(a.share());
    const held = [];
    while (held.length < 16383) held.push(a.borrow());
    throwsKind(() => a.borrow(), "borrow-conflict", /the most it can count/);
    assert.equal(a.tryBorrow(), undefined, "as Rust's try_borrow: an error value, no panic");
    assert.equal(ref.tryBorrow(), undefined);
    for (const r of held) r.release();
    ref.release();
    a.drop();
    other.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("clone copies the bytes into a new owner, under a shared borrow", () => {
    const { heap, own } = setup();
    const a = own.alloc(100);
    heap.u8.fill(3, a.deref(), a.deref() + 100);
    const b = a.clone();
    assert.notEqual(b.deref(), a.deref());
    assert.equal(heap.u8.subarray(b.deref(), b.deref() + 100).every((x) => x === 3), true);
    const w = a.borrowMut();
    const e = throwsKind(() => a.clone(), "borrow-conflict");
    assert.ok(e instanceof BorrowError);
    w.release();
    assert.equal(own.stateOf(a.deref())?.borrows, 0, "clone gave its borrow back");
    a.drop();
    b.drop();
  });
});

describe("own: send, receive, references", () => {
  it("send kills the sender's handle; a token is received once", () => {
    const { heap, own } = setup();
    const a = own.alloc(8);
    const token = a.send();
    assert.equal(own.stateOf(token.ptr)?.state, "in-transit");
    throwsKind(() => a.borrow(), "use-after-move", /sent to another worker/);
    const b = own.receive(structuredClone(token));
    assert.equal(b.alive, true);
    throwsKind(() => own.receive(token), "use-after-move", /received already/);
    throwsKind(() => own.receive({} as OwnedToken), "invalid-argument");
    b.drop();
    throwsKind(() => own.receive(token), "use-after-drop");
    assert.deepEqual(heap.verify(), []);
  });

  it("a token sent to one worker is refused by another; a foreign worker cannot free or adopt", () => {
    const { heap, own } = setup();
    const other = Heap.attach(heap.buffer); // a second worker slot, in this thread
    const own2 = Ownership.create(other);
    const a = own.alloc(8);
    const token = a.send(5);
    throwsKind(() => own2.receive(token), "not-owner", /sent to worker 5, not to worker 1/);
    // The destination is kept in the record: a token edited on its way is refused too.
    throwsKind(() => own2.receive({ ...token, to: -1 }), "not-owner", /sent to worker 5/);
    throwsKind(() => own2.receive({ ...token, to: other.slot }), "not-owner", /sent to worker 5/);
    assert.equal(own.stateOf(token.ptr)?.lent, 0, "nothing is lent while in transit");
    const c = own.alloc(24);
    const e = throwsKind(() => other.free(c.deref(), 24), "not-owner", /owned by worker 0/);
    assert.equal(e.address, c.deref());
    throwsKind(() => own2.adopt(c.deref(), 24), "not-owner");
    // An error handler does not let a foreign free through: it sees the error, the free throws.
    const seen: string[] = [];
    own2.onError((err) => seen.push(err.kind));
    throwsKind(() => other.free(c.deref(), 24), "not-owner");
    assert.deepEqual(seen, ["not-owner"]);
    assert.equal(own.stateOf(c.deref())?.owner, 0);
    c.drop();
    assert.deepEqual(heap.verify(), []);
    own2.close();
    other.detach();
  });

  it("a worker that attached before the heap grew receives a buffer from the grown part", () => {
    const heap = mk({ size: 1 << 20, maxSize: 64 << 20 });
    const own = Ownership.create(heap);
    const other = Heap.attach(heap.buffer);
    const own2 = Ownership.create(other); // its views cover the heap as it was
    const before = other.u8.length;
    const filler = heap.alloc(8 << 20); // the heap grows
    const hs = Array.from({ length: 400 }, () => own.alloc(16)); // records and table grow too
    const t = hs[399].send();
    assert.ok(t.record > before, "the record lies past the other handle's views");
    const b = own2.receive(t);
    {
      using w = b.borrowMut();
      other.u8[w.ptr] = 9;
    }
    throwsKind(() => other.free(hs[0].deref(), 16), "not-owner");
    b.drop();
    for (const h of hs.slice(0, 399)) h.drop();
    heap.free(filler, 8 << 20);
    assert.deepEqual(heap.verify(), []);
    own2.close();
    other.detach();
  });

  it("a shared reference borrows in the same word and pins the owner", () => {
    const { own } = setup();
    const a = own.alloc(8);
    const ref = own.access(a.share());
    const w = ref.borrowMut();
    assert.ok(a.tryBorrow() === undefined && a.tryBorrowMut() === undefined);
    throwsKind(() => ref.borrow(), "borrow-conflict", /already mutably borrowed/);
    w.release();
    throwsKind(() => a.drop(), "drop-while-borrowed", /1 lent/);
    throwsKind(() => a.move(), "borrow-conflict");
    throwsKind(() => a.send(), "borrow-conflict");
    ref.release();
    throwsKind(() => ref.borrow(), "use-after-drop", /released/);
    const tok = a.share();
    const b = a.move();
    throwsKind(() => own.access(tok), "use-after-move");
    const tok2 = b.share();
    b.drop();
    throwsKind(() => own.access(tok2), "use-after-drop");
    throwsKind(() => own.access({ ptr: 1 } as ShareToken), "invalid-argument");
  });
});

describe("own: references and reclaimSlot", () => {
  it("model: reclaimSlot gives back exactly what a slot held through references", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            op: fc.constantFrom("access", "borrow", "borrowMut", "end", "unref", "own"),
            k: fc.nat(7),
          }),
          { minLength: 10, maxLength: 50 },
        ),
        (ops) => {
          const { heap, own } = setup();
          const other = Heap.attach(heap.buffer), own2 = Ownership.create(other);
          const bufs = [own.alloc(16), own.alloc(16)];
          const toks = bufs.map((b) => b.share());
          // What the owner holds itself (it stays), and what the other slot holds (it goes).
          const mine: (Ref | RefMut)[] = [];
          const refs: { s: Shared; b: number }[] = [];
          const guards: { g: Ref | RefMut; b: number }[] = [];
          for (const { op, k } of ops) {
            const b = k % 2;
            if (op === "access") refs.push({ s: own2.access(toks[b]), b });
            else if (op === "borrow" || op === "borrowMut") {
              const r = refs[k % Math.max(1, refs.length)];
              if (r === undefined) continue;
              const g = op === "borrow" ? r.s.tryBorrow() : r.s.tryBorrowMut();
              if (g !== undefined) guards.push({ g, b: r.b });
            } else if (op === "end") {
              guards.splice(k % Math.max(1, guards.length), 1)[0]?.g.release();
            } else if (op === "unref") refs.splice(k % Math.max(1, refs.length), 1)[0]?.s.release();
            else {
              const g = bufs[b].tryBorrow();
              if (g !== undefined) mine.push(g);
            }
          }
          const expect = (b: number, withOther: boolean) => [
            mine.filter((g) => g.ptr === bufs[b].deref()).length +
            (withOther ? guards.filter((x) => x.b === b && x.g instanceof Ref).length : 0),
            withOther && guards.some((x) => x.b === b && x.g instanceof RefMut),
            withOther ? refs.filter((r) => r.b === b).length : 0,
          ];
          for (const b of [0, 1]) {
            assert.deepEqual(pick(own.stateOf(bufs[b].deref())!), expect(b, true));
          }
          heap.reclaimSlot(other.slot);
          for (const b of [0, 1]) {
            assert.deepEqual(pick(own.stateOf(bufs[b].deref())!), expect(b, false));
          }
          // What the slot held, released after the reclaim (a `using` block ending late), gives
          // nothing back a second time.
          for (const { g } of guards) g.release();
          for (const { s } of refs) s.release();
          for (const b of [0, 1]) {
            assert.deepEqual(pick(own.stateOf(bufs[b].deref())!), expect(b, false));
          }
          for (const g of mine) g.release();
          for (const o of bufs) o.move().drop();
          assert.deepEqual(tableProblems(heap), []);
          assert.deepEqual(heap.verify(), []);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("own: references released after their worker detached", () => {
  it("give nothing back twice: the owner's counts and its mutable borrow stay its own", () => {
    const { heap, own } = setup();
    const x = own.alloc(64), y = own.alloc(64);
    const other = Heap.attach(heap.buffer), own2 = Ownership.create(other);
    const rx = own2.access(x.share()), gx = rx.borrow();
    const ry = own2.access(y.share()), gy = ry.borrowMut();
    other.detach(); // gives back the reference, the borrow and the mutable borrow
    assert.equal(other.attached, false);
    assert.deepEqual(pick(own.stateOf(x.deref())!), [0, false, 0]);
    const mine = y.borrowMut(); // the owner's, now that the other's is given back
    gx.release();
    rx.release();
    gy.release(); // before the fix: cleared the owner's mutable bit, or underflowed the count
    ry.release();
    assert.deepEqual(pick(own.stateOf(x.deref())!), [0, false, 0]);
    assert.deepEqual(pick(own.stateOf(y.deref())!), [0, true, 0]);
    assert.equal(y.tryBorrow(), undefined, "the owner's mutable borrow still excludes");
    mine.release();
    x.drop();
    y.drop();
    assert.deepEqual(tableProblems(heap), []);
    assert.deepEqual(heap.verify(), []);
  });
});

describe("own: the free hook", () => {
  it("heap.free of a tracked buffer is refused with the rule it breaks", () => {
    const { heap, own } = setup();
    const a = own.alloc(40), p = a.deref();
    throwsKind(() => heap.free(p, 40), "bad-free", /held by a live Owned handle/);
    const r = a.borrow();
    throwsKind(() => heap.free(p, 40), "drop-while-borrowed");
    r.release();
    const t = a.send();
    throwsKind(() => heap.free(p, 40), "use-after-move", /not received yet/);
    const b = own.receive(t);
    assert.deepEqual(heap.verify(), []);
    b.drop();
    // Untracked buffers free as before.
    heap.free(heap.alloc(40), 40);
    const q = heap.alloc(40);
    own.adopt(q, 40).drop();
    assert.deepEqual(heap.verify(), []);
  });

  it("libc.free and Cache.free of an adopted buffer are refused; drop gives it back there", () => {
    const { heap, own } = setup();
    const cache = heap.createCache("own_nodes", 48);
    const c = own.adopt(cache.alloc(), 48, cache);
    throwsKind(() => cache.free(c.deref()), "bad-free", /umem_cache_free: .* drop it/);
    const r = c.borrow();
    throwsKind(() => cache.free(c.deref()), "drop-while-borrowed");
    r.release();
    c.drop();
    assert.equal(cache.stats().inUse, 0);
    const m = own.adopt(heap.libc.malloc(100), 100, "libc");
    const t = m.send();
    throwsKind(
      () => heap.libc.free(t.ptr),
      "use-after-move",
      /^free: buffer 0x[0-9a-f]+ was sent .* not received yet/,
    );
    own.receive(t).drop();
    throwsKind(() => own.adopt(8, 8, "elsewhere" as "heap"), "invalid-argument");
    assert.deepEqual(heap.verify(), []);
    assert.equal(own.stats().tracked, 0);
  });

  it("Cache.destroy is refused while a buffer of the cache is tracked, frees guarded or not", () => {
    for (const guardFrees of [true, false]) {
      const heap = Heap.create({ size: 4 << 20 }), own = Ownership.create(heap, { guardFrees });
      const cache = heap.createCache("conn", 64);
      const a = own.adopt(cache.alloc(), 64, cache);
      throwsKind(() => cache.destroy(), "invalid-argument", /held by Owned/);
      a.drop();
      assert.equal(cache.destroy(), 0);
      own.close();
      assert.deepEqual(heap.verify(), []);
    }
  });

  it("Cache.destroy is refused while a buffer of the cache is tracked; allowed once dropped", () => {
    const { heap, own } = setup();
    const cache = heap.createCache("conn", 64);
    const a = own.adopt(cache.alloc(), 64, cache);
    const unrelated = cache.alloc(); // an untracked buffer: destroy may lose it, as libumem's
    throwsKind(
      () => cache.destroy(),
      "invalid-argument",
      /1 of the cache's buffers .* held by Owned/,
    );
    // Before the fix the destroy went on; a new cache took the record's address, and a.drop()
    // freed that cache's live buffer, which it then handed out twice.
    assert.equal(a.alive, true);
    a.drop();
    assert.equal(cache.destroy(), 1);
    assert.ok(unrelated > 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("libc.realloc of an adopted block is refused, in place or moving, with nothing changed", () => {
    const { heap, own } = setup();
    const p = heap.libc.malloc(40);
    heap.u8.fill(7, p, p + 40);
    const a = own.adopt(p, 40, "libc");
    const w = a.borrowMut();
    // Before the fix the move went through: the block freed behind its handle, the handle's
    // drop then a duplicate free (or a free of whatever block took its place).
    throwsKind(() => heap.libc.realloc(p, 4000), "drop-while-borrowed", /^realloc: buffer/);
    w.release();
    throwsKind(() => heap.libc.realloc(p, 4000), "bad-free", /^realloc: .* drop it/);
    throwsKind(() => heap.libc.realloc(p, 42), "bad-free"); // in place: still behind its handle
    throwsKind(() => heap.libc.realloc(p, 0), "bad-free"); // a free
    assert.equal(heap.libc.usableSize(p) >= 40, true);
    assert.ok(heap.u8.subarray(p, p + 40).every((b) => b === 7), "the block is as it was");
    a.drop();
    const q = heap.libc.malloc(40); // an untracked block resizes as ever
    assert.notEqual(heap.libc.realloc(q, 4000), 0);
    assert.deepEqual(heap.verify(), []);
    assert.equal(own.stats().tracked, 0);
  });

  it("adopt takes a firewalled allocation (UMEM_DEBUG=firewall=), in no cache", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "firewall=64,noabort" });
    const own = Ownership.create(heap);
    for (const size of [100, 5000]) {
      const a = own.adopt(heap.alloc(size), size); // before the fix: "not in a buffer of the size class"
      a.drop();
    }
    assert.equal(own.stats().tracked, 0);
    assert.deepEqual(heap.verify(), []);
    own.close();
  });

  it("adopt refuses a wrong size, a free buffer and an interior address; nothing is tracked", () => {
    const { heap, own } = setup();
    const p = heap.alloc(40), q = heap.alloc(40);
    heap.free(q, 40);
    throwsKind(() => own.adopt(p, 400), "invalid-argument", /size class of 400 bytes/);
    throwsKind(() => own.adopt(q, 40), "invalid-argument", /free buffer/);
    throwsKind(() => own.adopt(p + 8, 40), "invalid-argument", /not the start of a buffer/);
    const m = heap.libc.malloc(30);
    throwsKind(() => own.adopt(m, 300, "libc"), "invalid-argument", /fewer than 300/);
    assert.equal(own.stateOf(p), undefined);
    const a = own.adopt(p, 40);
    a.drop();
    own.adopt(m, 30, "libc").drop();
    assert.deepEqual(heap.verify(), []);
  });

  it("the hook tells tracked from untracked buffers of the same pages exactly", () => {
    const { heap, own } = setup();
    const owned: Owned[] = [], plain: number[] = [];
    for (let i = 0; i < 600; i++) {
      if (i % 2 === 0) owned.push(own.alloc(24));
      else plain.push(heap.alloc(24));
    }
    for (const o of owned) throwsKind(() => heap.free(o.deref(), 24), "bad-free");
    for (const p of plain) heap.free(p, 24);
    for (const o of owned) o.drop();
    assert.deepEqual(heap.verify(), []);
  });

  it("guardFrees: false lets frees of its own buffers through, beside an Ownership that vets", () => {
    const heap = mk({ size: 1 << 20 });
    const open = Ownership.create(heap, { guardFrees: false });
    assert.equal(heap.hooks.length, 0, "alone, it attaches no hook");
    const guarded = Ownership.create(heap);
    assert.equal(heap.hooks.length, 1);
    const mine = open.alloc(40), theirs = guarded.alloc(40);
    const cache = heap.createCache("own_open", 24);
    const adopted = open.adopt(cache.alloc(), 24, cache);
    heap.free(mine.deref(), 40); // not vetted: the caller's word
    cache.free(adopted.deref());
    throwsKind(() => heap.free(theirs.deref(), 40), "bad-free", /held by a live Owned handle/);
    guarded.close();
    const later = open.alloc(16);
    heap.free(later.deref(), 16); // the hook, kept for `open`, still lets its buffers through
    // Its handles still drop where their buffers came from.
    open.alloc(8).drop();
    const other = heap.createCache("own_open2", 24); // (a freed buffer's record stays: above)
    open.adopt(other.alloc(), 24, other).drop();
    open.adopt(heap.libc.malloc(30), 30, "libc").drop();
    assert.equal(other.stats().inUse, 0);
    open.close();
    assert.equal(heap.hooks.length, 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("guardFrees: false spares only its own worker's frees of its live buffers", () => {
    const heap = mk({ size: 1 << 20 });
    const other = Heap.attach(heap.buffer); // another worker slot, in this thread
    const open = Ownership.create(heap, { guardFrees: false });
    const strict = Ownership.create(other);
    // Another worker's free of it is vetted: only its owner may drop it.
    const a = open.alloc(16);
    throwsKind(() => other.free(a.deref(), 16), "not-owner");
    // Sent to a worker whose Ownership vets: the receiver's choice holds for it now.
    const b = open.alloc(16), t = b.send(other.slot);
    const got = strict.receive(t);
    throwsKind(() => other.free(got.deref(), 16), "bad-free", /held by a live Owned handle/);
    got.drop();
    // And the other way: a vetting Ownership's buffer received by one that does not.
    const strictHere = Ownership.create(heap);
    const c = strict.alloc(16), u = c.send(heap.slot);
    const mine = open.receive(u);
    heap.free(mine.deref(), 16); // this worker's, live, in an Ownership that vets nothing
    a.drop();
    strictHere.close();
    strict.close();
    open.close();
    other.detach();
    assert.deepEqual(heap.verify(), []);
  });

  it("a failed Ownership.create leaves nothing allocated (UMEM_DEBUG=mtbf)", () => {
    let failed = 0;
    for (let k = 0; k < 40 && failed < 5; k++) {
      const heap = mk({ size: 1 << 20, debug: "mtbf=3,noabort" });
      try {
        Ownership.create(heap).close();
      } catch (e) {
        if (!(e instanceof OutOfMemoryError)) throw e;
        failed++;
        assert.equal(inspect(heap).findleaks().total_buffers, 0, "nothing leaked");
        assert.deepEqual(heap.verify(), []);
      }
    }
    assert.ok(failed > 0, "mtbf=3 failed some creations");
  });

  it("close detaches the hook with the last Ownership on the heap handle", () => {
    const heap = mk({ size: 1 << 20 });
    const o1 = Ownership.create(heap), o2 = Ownership.create(heap);
    const a = o1.alloc(8);
    o1.close();
    throwsKind(() => heap.free(a.deref(), 8), "bad-free"); // o2 still guards
    o2.close();
    assert.equal(heap.hooks.length, 0);
  });
});

describe("own: light and full mode", () => {
  it("full mode: errors carry the stack of the conflicting borrow, the move, the drop", () => {
    const { own } = setup("full");
    const a = own.alloc(8);
    const w = a.borrowMut(); // the conflicting borrow, on this line
    const e = throwsKind(() => a.borrow(), "borrow-conflict") as BorrowError;
    assert.match(e.conflictStack, /own_test\.ts/);
    assert.match(e.allocStack, /own_test\.ts/);
    assert.match(e.message, /mutable borrow at:\n {4}/);
    w.release();
    const b = a.move();
    const m = throwsKind(() => a.deref(), "use-after-move") as OwnershipError;
    assert.match(m.conflictStack, /own_test\.ts/);
    b.drop();
    const d = throwsKind(() => b.drop(), "double-drop") as OwnershipError;
    assert.match(d.conflictStack, /own_test\.ts/);
  });

  it("light mode keeps counts and owner ids only", () => {
    const { own } = setup("light");
    const a = own.alloc(8);
    const r1 = a.borrow(), r2 = a.borrow();
    const e = throwsKind(() => a.borrowMut(), "borrow-conflict") as BorrowMutError;
    assert.deepEqual(
      [e.borrows, e.mutablyBorrowed, e.owner, e.conflictStack, e.allocStack],
      [2, false, 0, "", ""],
    );
    assert.doesNotMatch(e.message, / at:/);
    r1.release();
    r2.release();
  });

  it("leaks: handles never dropped, in every worker, with the allocation site in full mode", () => {
    const { heap, own } = setup("full");
    const kept = own.alloc(24);
    const sent = own.alloc(32).send();
    own.alloc(8).drop();
    const leaks = own.leaks();
    assert.deepEqual(
      leaks.map((l) => [l.ptr, l.size, l.state, l.owner]),
      [[kept.deref(), 24, "owned", 0], [sent.ptr, 32, "in-transit", 0]].sort((x, y) =>
        (x[0] as number) - (y[0] as number)
      ),
    );
    assert.ok(leaks.every((l) => /own_test\.ts/.test(l.allocStack)));
    assert.deepEqual(own.leaks(3), []);
    kept.drop();
    own.receive(sent).drop();
    assert.deepEqual(own.leaks(), []);
    assert.deepEqual(heap.verify(), []);
  });
});

describe("own: the error handler", () => {
  it("takes the errors instead of throwing, and the program goes on", () => {
    const { heap, own } = setup();
    const seen: OwnershipError[] = [];
    own.onError((e) => seen.push(e));
    const a = own.alloc(16);
    const w = a.borrowMut();
    const r = a.borrow();
    assert.equal(r.held, false);
    assert.equal(r.ptr, a.deref());
    r.release();
    a.drop(); // drop while borrowed: reported, nothing freed
    assert.equal(own.stateOf(a.deref())?.mutablyBorrowed, true);
    const v = a.move(); // refused: a handle that holds nothing, and a stays the owner
    assert.equal(v.alive, false);
    assert.equal(a.alive, true);
    w.release();
    // A refused free goes ahead: the record is orphaned, and the handle finds out.
    const p = a.deref();
    heap.free(p, 16);
    assert.equal(own.stateOf(p), undefined);
    assert.equal(own.stats().orphaned, 1);
    assert.equal(a.deref(), p);
    assert.deepEqual(
      seen.map((e) => e.kind),
      [
        "borrow-conflict",
        "drop-while-borrowed",
        "borrow-conflict",
        "bad-free",
        "use-after-drop",
      ],
    );
    own.onError(undefined);
    throwsKind(() => a.borrow(), "use-after-drop", /freed behind its handle's back/);
    assert.deepEqual(heap.verify(), []);
  });

  // Every operation that can break a rule, with a handler installed: it does not throw, the
  // handler sees one error of the right kind, the operation changes nothing it should not (a
  // refused move, send or clone leaves the owner alive and the buffer where it was), what it
  // gives back holds nothing and reports the same kind at every use, and afterwards the heap
  // and the address table are sound and nothing leaked.
  type Case = {
    op: string;
    kind: string;
    run: (
      c: { heap: Heap; own: Ownership; other: Ownership; a: Owned; p: number },
    ) => (() => void) | void;
  };
  const cases: Case[] = [
    {
      op: "borrow while mutably borrowed",
      kind: "borrow-conflict",
      run: ({ a }) => {
        const w = a.borrowMut(), r = a.borrow();
        assert.equal(r.held, false);
        r.release(); // an inert guard's end changes nothing
        return () => w.release();
      },
    },
    {
      op: "borrowMut while borrowed",
      kind: "borrow-conflict",
      run: ({ a, own, p }) => {
        const r = a.borrow(), w = a.borrowMut();
        assert.equal(w.held, false);
        w.release();
        assert.equal(own.stateOf(p)?.borrows, 1);
        assert.equal(own.stateOf(p)?.mutablyBorrowed, false);
        return () => r.release();
      },
    },
    {
      op: "tryBorrow of a moved handle",
      kind: "use-after-move",
      run: ({ a }) => {
        const b = a.move(); // not an error
        assert.equal(a.tryBorrow()?.held, false);
        return () => b.drop();
      },
    },
    {
      op: "tryBorrowMut of a dropped handle",
      kind: "use-after-drop",
      run: ({ a }) => {
        a.drop();
        assert.equal(a.tryBorrowMut()?.held, false);
      },
    },
    {
      op: "deref of a dropped handle",
      kind: "use-after-drop",
      run: ({ a, p }) => {
        a.drop();
        assert.equal(a.deref(), p);
      },
    },
    {
      op: "move while borrowed",
      kind: "borrow-conflict",
      run: ({ a, p, own }) => {
        const r = a.borrow(), v = a.move();
        assert.equal(v.alive, false);
        assert.equal(a.alive, true);
        assert.equal(own.stateOf(p)?.borrows, 1);
        return () => r.release();
      },
    },
    {
      op: "move of a moved handle",
      kind: "use-after-move",
      run: ({ a }) => {
        const b = a.move(), v = a.move();
        assert.equal(v.alive, false);
        return () => b.drop();
      },
    },
    {
      op: "send while lent",
      kind: "borrow-conflict",
      run: ({ a, own, p }) => {
        const ref = own.access(a.share()), t = a.send();
        assert.equal(t.record, 0);
        assert.equal(t.refused, "borrow-conflict");
        assert.equal(own.stateOf(p)?.state, "owned");
        assert.equal(a.alive, true);
        return () => ref.release();
      },
    },
    {
      op: "send of a dropped handle",
      kind: "use-after-drop",
      run: ({ a }) => {
        a.drop();
        assert.equal(a.send().refused, "use-after-drop");
      },
    },
    {
      op: "share of a moved handle",
      kind: "use-after-move",
      run: ({ a }) => {
        const b = a.move(), t = a.share();
        assert.equal(t.refused, "use-after-move");
        return () => b.drop();
      },
    },
    {
      op: "clone while mutably borrowed",
      kind: "borrow-conflict",
      run: ({ a, own }) => {
        const w = a.borrowMut(), v = a.clone();
        assert.equal(v.alive, false);
        assert.equal(own.stats().tracked, 1);
        return () => w.release();
      },
    },
    {
      op: "clone of a sent handle",
      kind: "use-after-move",
      run: ({ a, own }) => {
        const t = a.send(), v = a.clone();
        assert.equal(v.alive, false);
        return () => own.receive(t).drop();
      },
    },
    {
      op: "receive of a token received already",
      kind: "use-after-move",
      run: ({ a, own }) => {
        const t = a.send(), b = own.receive(t), v = own.receive(t);
        assert.equal(v.alive, false);
        assert.equal(b.alive, true);
        return () => b.drop();
      },
    },
    {
      op: "receive of a token sent to another worker",
      kind: "not-owner",
      run: ({ a, own, other, heap }) => {
        const t = a.send(heap.slot), v = other.receive(t);
        assert.equal(v.alive, false);
        assert.equal(own.stateOf(t.ptr)?.state, "in-transit");
        return () => own.receive(t).drop();
      },
    },
    {
      op: "access after the owner moved",
      kind: "use-after-move",
      run: ({ a, own }) => {
        const t = a.share(), b = a.move(), ref = own.access(t);
        assert.equal(ref.held, false);
        ref.release();
        return () => b.drop();
      },
    },
    {
      op: "access after the owner dropped",
      kind: "use-after-drop",
      run: ({ a, other }) => {
        const t = a.share();
        a.drop();
        assert.equal(other.access(t).held, false);
      },
    },
    {
      op: "drop while borrowed",
      kind: "drop-while-borrowed",
      run: ({ a, own, p }) => {
        const r = a.borrow();
        a.drop(); // nothing freed
        assert.equal(own.stateOf(p)?.borrows, 1);
        return () => r.release();
      },
    },
    {
      op: "double drop",
      kind: "double-drop",
      run: ({ a }) => {
        a.drop();
        a.drop();
      },
    },
  ];
  for (const c of cases) {
    it(`with a handler, ${c.op}: no throw, one ${c.kind}, nothing changed`, () => {
      const { heap, own } = setup();
      const other = Ownership.create(Heap.attach(heap.buffer));
      const a = own.alloc(24), p = a.deref();
      const seen: OwnershipError[] = [], seen2: OwnershipError[] = [];
      own.onError((e) => seen.push(e));
      other.onError((e) => seen2.push(e));
      const after = c.run({ heap, own, other, a, p });
      const all = [...seen, ...seen2];
      assert.deepEqual(all.map((e) => e.kind), [c.kind], all.map((e) => e.message).join("\n"));
      assert.ok(all[0] instanceof OwnershipError);
      own.onError(undefined);
      other.onError(undefined);
      after?.();
      if (a.alive) a.drop();
      assert.deepEqual(own.leaks(), []);
      assert.deepEqual(tableProblems(heap), []);
      assert.deepEqual(heap.verify(), []);
      other.close();
      other.heap.detach();
    });
  }

  it("with a handler, what a refused call gave back reports the same rule at every use", () => {
    const { heap, own } = setup();
    const seen: string[] = [];
    own.onError((e) => seen.push(e.kind));
    const a = own.alloc(16);
    const r = a.borrow();
    const v = a.move(); // borrow-conflict
    const guards = [v.borrow(), v.borrowMut(), v.tryBorrow(), v.tryBorrowMut()];
    assert.ok(guards.every((g) => g !== undefined && !g.held));
    v.deref();
    const v2 = v.move(), v3 = v.clone();
    assert.ok(!v2.alive && !v3.alive);
    const t = v.send(), s = v.share();
    v.drop();
    const v4 = own.receive(t), ref = own.access(s);
    assert.ok(!v4.alive && !ref.held);
    ref.borrowMut();
    assert.equal(seen.length, 14);
    assert.ok(seen.every((k) => k === "borrow-conflict"), seen.join());
    own.onError(undefined);
    throwsKind(() => v.borrow(), "borrow-conflict", /holds nothing/);
    throwsKind(() => v4.drop(), "borrow-conflict", /holds nothing/);
    throwsKind(() => ref.borrow(), "borrow-conflict", /holds nothing/);
    throwsKind(() => own.receive(t), "borrow-conflict", /token is void/);
    r.release();
    a.drop();
    assert.deepEqual(own.leaks(), []);
    assert.deepEqual(tableProblems(heap), []);
    assert.deepEqual(heap.verify(), []);
  });
});

/** Shared borrows, mutable bit and references lent, from `stateOf`. */
function pick(i: OwnedInfo): [number, boolean, number] {
  return [i.borrows, i.mutablyBorrowed, i.lent];
}

/**
 * What is wrong with the address table and the records it names (empty when sound): every key
 * names a record of that buffer, live or in transit, with no mutable borrow next to shared
 * ones, every record once, as many as the table counts, and page counts that cover them.
 */
function tableProblems(heap: Heap): string[] {
  const root = ownRoot(heap), out: string[] = [];
  const i32 = heap.i32, recs = new Set<number>();
  lockTable(heap, root);
  try {
    const list = tableRecords(heap, root);
    for (const rec of list) {
      const ptr = i32[(rec + OR_PTR) >> 2], s = Atomics.load(i32, (rec + OR_STATE) >> 2);
      const phase = (s & OS_PHASE) >>> OS_PHASE_SHIFT;
      if (recs.has(rec)) out.push(`record ${rec} twice`);
      recs.add(rec);
      if (tableFind(heap, root, ptr) !== rec) out.push(`record ${rec}: key ${ptr} not found`);
      if (phase !== PH_LIVE && phase !== PH_TRANSIT) out.push(`record ${rec}: phase ${phase}`);
      if ((s & OS_MUT) !== 0 && (s & OS_COUNT) !== 0) out.push(`record ${rec}: mut and shared`);
      const pages = pageCounts(heap, root);
      if (pages[ptr >>> PC_PAGE_SHIFT] < 1) out.push(`record ${rec}: page count 0`);
    }
    if (list.length !== i32[(root + OT_COUNT) >> 2]) out.push(`count ${list.length}`);
  } finally {
    unlockTable(heap, root);
  }
  return out;
}

/** 701 distinct 8-aligned addresses spread like real ones (a linear congruential sequence). */
const POOL = (() => {
  const out = new Set<number>();
  for (let x = 12345; out.size < 701;) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.add(8 + ((x >>> 3) & 0x7fffff) * 8);
  }
  return [...out];
})();

describe("own: bad input and growth", () => {
  it("bad arguments throw invalid-argument and leave the heap sound", () => {
    const { heap, own } = setup();
    throwsKind(() => Ownership.create(null as never), "invalid-argument", /expected a Heap/);
    throwsKind(() => Ownership.create({} as never), "invalid-argument", /expected a Heap/);
    throwsKind(() => Ownership.create(heap, null as never), "invalid-argument", /options null/);
    throwsKind(() => own.onError("x" as never), "invalid-argument", /expected a function/);
    const p = heap.alloc(64);
    throwsKind(() => own.adopt(p + 1, 8), "invalid-argument", /not 8-byte aligned/);
    heap.free(p, 64);
    throwsKind(() => own.alloc(0), "invalid-argument");
    throwsKind(() => own.alloc(-1), "invalid-argument");
    throwsKind(() => own.alloc(1.5), "invalid-argument");
    throwsKind(() => own.adopt(0, 8), "invalid-argument");
    throwsKind(() => own.adopt(heap.size + 8, 8), "invalid-argument");
    throwsKind(() => own.alloc(8).send(99), "invalid-argument");
    throwsKind(() => Ownership.create(heap, { mode: "fast" as "full" }), "invalid-argument");
    const a = own.alloc(8);
    throwsKind(() => own.adopt(a.deref(), 8), "invalid-argument", /has an owner already/);
    assert.deepEqual(heap.verify(), []);
  });

  it("the table grows past its first size and shrinks back by drops, in any order", () => {
    const { heap, own } = setup();
    const hs: Owned[] = [];
    for (let i = 0; i < 3000; i++) hs.push(own.alloc(8 + (i % 7) * 8));
    assert.ok(own.stats().capacity >= 4096);
    assert.equal(own.stats().tracked, 3000);
    for (let i = hs.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1);
      [hs[i], hs[j]] = [hs[j], hs[i]];
    }
    for (const [i, h] of hs.entries()) {
      assert.equal(own.stateOf(h.deref())?.size, h.size);
      if (i % 2 === 0) h.drop();
    }
    for (const [i, h] of hs.entries()) {
      if (i % 2 === 1) {
        assert.equal(own.stateOf(h.deref())?.owner, 0);
        h.drop();
      }
    }
    assert.equal(own.stats().tracked, 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("model: the address table (probing, backward-shift removal, growth) agrees with a Map", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ add: fc.boolean(), k: fc.nat(700) }), {
          minLength: 100,
          maxLength: 600,
        }),
        (ops) => {
          const heap = mk({ size: 2 << 20 });
          const root = ownRoot(heap);
          const model = new Map<number, number>();
          for (const [n, { add, k }] of ops.entries()) {
            const ptr = POOL[k]; // scattered keys: they collide, and clusters wrap around
            lockTable(heap, root);
            try {
              if (add && !model.has(ptr)) {
                const old = tableInsert(heap, root, ptr, n + 1);
                if (old !== undefined) heap.free(old[0], old[1]);
                model.set(ptr, n + 1);
              } else if (!add) {
                assert.equal(tableRemove(heap, root, ptr), model.delete(ptr));
              }
              assert.equal(tableFind(heap, root, ptr), model.get(ptr) ?? 0);
              assert.equal(tableMayHold(heap, root, ptr), model.has(ptr));
            } finally {
              unlockTable(heap, root);
            }
          }
          lockTable(heap, root);
          try {
            for (const ptr of POOL) assert.equal(tableFind(heap, root, ptr), model.get(ptr) ?? 0);
            assert.deepEqual(
              tableRecords(heap, root).sort((a, b) => a - b),
              [...model.values()].sort((a, b) => a - b),
            );
          } finally {
            unlockTable(heap, root);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it("model: random borrows, releases, moves and drops agree with Rust's rules", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            op: fc.constantFrom("borrow", "borrowMut", "release", "move", "drop", "deref"),
            h: fc.nat(9),
          }),
          { minLength: 20, maxLength: 60 },
        ),
        (ops) => {
          const { heap, own } = setup();
          // Model: per buffer, shared count and mutable flag; per handle, alive or how it died.
          type M = {
            ptr: number;
            shared: number;
            mut: boolean;
            guards: (Ref | RefMut)[];
            dropped: boolean;
          };
          const bufs: M[] = [];
          const handles: { o: Owned; b: number; dead: "" | "moved" | "dropped" }[] = [];
          for (let i = 0; i < 4; i++) {
            const o = own.alloc(16);
            bufs.push({ ptr: o.deref(), shared: 0, mut: false, guards: [], dropped: false });
            handles.push({ o, b: i, dead: "" });
          }
          for (const { op, h: pick } of ops) {
            const hi = pick % handles.length, h = handles[hi], m = bufs[h.b];
            const deadKind = h.dead === "moved"
              ? "use-after-move"
              : h.dead === "dropped"
              ? (op === "drop" ? "double-drop" : "use-after-drop")
              : "";
            if (op === "release") {
              m.guards.pop()?.release();
              if (m.mut) m.mut = false;
              else if (m.shared > 0) m.shared--;
              continue;
            }
            if (deadKind !== "") {
              throwsKind(() => (h.o as unknown as Record<string, () => unknown>)[op](), deadKind);
              continue;
            }
            if (op === "borrow") {
              if (m.mut) throwsKind(() => h.o.borrow(), "borrow-conflict");
              else (m.shared++, m.guards.push(h.o.borrow()));
            } else if (op === "borrowMut") {
              if (m.mut || m.shared > 0) throwsKind(() => h.o.borrowMut(), "borrow-conflict");
              else (m.mut = true, m.guards.push(h.o.borrowMut()));
            } else if (op === "move") {
              if (m.mut || m.shared > 0) throwsKind(() => h.o.move(), "borrow-conflict");
              else {
                handles.push({ o: h.o.move(), b: h.b, dead: "" });
                h.dead = "moved";
              }
            } else if (op === "drop") {
              if (m.mut || m.shared > 0) throwsKind(() => h.o.drop(), "drop-while-borrowed");
              else (h.o.drop(), h.dead = "dropped", m.dropped = true);
            } else {
              assert.equal(typeof h.o.deref(), "number");
            }
            const st = own.stateOf(m.ptr);
            if (m.dropped) assert.equal(st, undefined);
            else assert.deepEqual([st?.borrows, st?.mutablyBorrowed], [m.shared, m.mut]);
          }
          for (const m of bufs) for (const g of m.guards) g.release();
          for (const h of handles) if (h.dead === "") h.o.drop();
          assert.equal(own.stats().tracked, 0);
          assert.deepEqual(heap.verify(), []);
        },
      ),
      { numRuns: 60 },
    );
  });
});

// ---- Two real workers ----

const WORKER = new URL("./own_worker.ts", import.meta.url).href;
const TIMEOUT = 30_000;

/** Runs `body` with `n` workers, always terminating them, failing after `TIMEOUT` ms. */
function withWorkers<T>(n: number, body: (ws: Worker[]) => Promise<T>): Promise<T> {
  return withWorkersOf(WORKER, n, TIMEOUT, body);
}

/** Posts `msg` to `w` and waits for its answer (an "error" answer fails the test). */
function ask(w: Worker, msg: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const onMessage = (e: MessageEvent) => {
      w.removeEventListener("message", onMessage);
      if (e.data.type === "error") reject(new Error(`worker: ${e.data.message}\n${e.data.stack}`));
      else resolve(e.data);
    };
    w.addEventListener("message", onMessage);
    w.addEventListener("error", (e) => reject(e), { once: true });
    w.postMessage(msg);
  });
}

describe("own: across two real workers", () => {
  it("a buffer sent to a worker is its own; the sender cannot touch it; it comes back", async () => {
    const heap = mk({ size: 4 << 20 });
    const own = Ownership.create(heap, { mode: "full" });
    const a = own.alloc(64);
    heap.u8.fill(1, a.deref(), a.deref() + 64);
    const kept = own.alloc(32);
    await withWorkers(1, async ([w]) => {
      const token = a.send();
      throwsKind(() => a.borrowMut(), "use-after-move");
      const r = await ask(w, {
        type: "receive",
        buffer: heap.buffer,
        token,
        other: { ptr: kept.deref(), size: 32 },
      });
      assert.equal(r.sum, 64, "the worker saw the bytes written before the send");
      assert.equal(r.freeKind, "not-owner", "a foreign worker freed a buffer it does not own");
      assert.equal(r.adoptKind, "not-owner");
      assert.equal(r.secondKind, "use-after-move");
      assert.equal(r.afterSend, "use-after-move");
      const back = own.receive(r.back as OwnedToken);
      assert.equal(heap.u8[back.deref()], 0x5a);
      assert.equal(own.stateOf(back.deref())?.owner, 0);
      back.drop();
    });
    kept.drop();
    assert.deepEqual(own.leaks(), []);
    assert.deepEqual(heap.verify(), []);
  });

  it("a mutable borrow held in another worker blocks the owner's borrows, move and drop", async () => {
    const heap = mk({ size: 4 << 20 });
    const own = Ownership.create(heap, { mode: "full" });
    const a = own.alloc(32);
    await withWorkers(1, async ([w]) => {
      const r = await ask(w, { type: "hold", buffer: heap.buffer, share: a.share() });
      const st = own.stateOf(a.deref())!;
      assert.deepEqual([st.mutablyBorrowed, st.lent, st.owner], [true, 1, 0]);
      const e = throwsKind(() => a.borrow(), "borrow-conflict", /already mutably borrowed/);
      assert.ok(e instanceof BorrowError);
      assert.match(e.conflictStack, /own_worker\.ts/, "the stack of the worker's borrow");
      throwsKind(() => a.borrowMut(), "borrow-conflict");
      throwsKind(() => a.drop(), "drop-while-borrowed", /1 mutable, 1 lent/);
      throwsKind(() => a.move(), "borrow-conflict");
      throwsKind(() => a.send(), "borrow-conflict");
      throwsKind(() => heap.free(a.deref(), 32), "drop-while-borrowed");
      assert.equal(r.slot, 1);
      await ask(w, { type: "letgo" });
      a.borrowMut().release();
      a.drop();
    });
    assert.deepEqual(own.leaks(), []);
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker terminated while it owns a buffer: reclaimSlot gives the buffer up", async () => {
    const heap = mk({ size: 4 << 20 });
    const own = Ownership.create(heap);
    const a = own.alloc(40);
    const p = a.deref();
    await withWorkers(1, async ([w]) => {
      const r = await ask(w, { type: "keep", buffer: heap.buffer, token: a.send() });
      w.terminate();
      assert.equal(own.stateOf(p)?.owner, r.slot);
      throwsKind(() => heap.free(p, 40), "not-owner");
      heap.reclaimSlot(r.slot as number);
    });
    assert.equal(own.stateOf(p), undefined);
    assert.equal(own.stats().orphaned, 1);
    heap.free(p, 40); // a plain heap buffer now
    assert.deepEqual(heap.verify(), []);
  });

  it("a borrow taken before share() (counted with plain stores) holds off the other worker", async () => {
    const heap = mk({ size: 4 << 20 });
    const own = Ownership.create(heap);
    const a = own.alloc(16);
    await withWorkers(1, async ([w]) => {
      const r = a.borrow(); // a solo handle: counted with a plain store
      await ask(w, { type: "access", buffer: heap.buffer, share: a.share() });
      assert.equal((await ask(w, { type: "trymut" })).won, false, "the worker saw the borrow");
      r.release(); // atomic now: the worker's reference writes the same word
      assert.equal((await ask(w, { type: "trymut" })).won, true);
      const g = a.borrowMut(); // through the compare-and-swap path
      assert.equal((await ask(w, { type: "trymut" })).won, false);
      g.release();
      await ask(w, { type: "letgo" });
      assert.deepEqual(pick(own.stateOf(a.deref())!), [0, false, 0]);
      a.drop();
    });
    assert.deepEqual(heap.verify(), []);
  });

  it("a worker terminated while it holds references and borrows: reclaimSlot gives them back", async () => {
    const heap = mk({ size: 4 << 20 });
    const own = Ownership.create(heap);
    const a = own.alloc(32), b = own.alloc(32), c = own.alloc(32);
    await withWorkers(2, async ([w1, w2]) => {
      const r1 = await ask(w1, { type: "hold", buffer: heap.buffer, share: a.share() });
      const r2 = await ask(w2, { type: "holdmany", buffer: heap.buffer, share: b.share() });
      await ask(w2, { type: "access", share: c.share() }); // w2 holds a reference to c too
      assert.deepEqual(pick(own.stateOf(a.deref())!), [0, true, 1]);
      assert.deepEqual(pick(own.stateOf(b.deref())!), [2, false, 2]);
      assert.deepEqual(pick(own.stateOf(c.deref())!), [0, false, 1]);
      const keepC = own.access(c.share()); // this worker's own reference must survive
      w1.terminate();
      w2.terminate();
      throwsKind(() => a.drop(), "drop-while-borrowed");
      throwsKind(() => b.move(), "borrow-conflict");
      heap.reclaimSlot(r1.slot as number);
      assert.deepEqual(pick(own.stateOf(a.deref())!), [0, false, 0]);
      assert.deepEqual(pick(own.stateOf(b.deref())!), [2, false, 2], "another slot's stay");
      heap.reclaimSlot(r2.slot as number);
      assert.deepEqual(pick(own.stateOf(b.deref())!), [0, false, 0]);
      assert.deepEqual(pick(own.stateOf(c.deref())!), [0, false, 1]);
      keepC.release();
    });
    a.borrowMut().release();
    a.drop();
    b.move().drop();
    c.drop();
    assert.deepEqual(own.leaks(), []);
    assert.deepEqual(tableProblems(heap), []);
    assert.deepEqual(heap.verify(), []);
  });

  it("two workers race for borrowMut, round after round: exactly one winner each time", async () => {
    const heap = mk({ size: 4 << 20 });
    const own = Ownership.create(heap);
    const rounds = 1000;
    const a = own.alloc(16);
    await withWorkers(2, async ([w1, w2]) => {
      const owning = await ask(w1, { type: "own", buffer: heap.buffer, token: a.send() });
      await ask(w2, { type: "access", buffer: heap.buffer, share: owning.share });
      assert.equal(own.stateOf((owning.share as ShareToken).ptr)?.lent, 1);
      const ctrl = new SharedArrayBuffer(8);
      const msg = { type: "race", ctrl, rounds, ms: TIMEOUT - 5000 };
      const [r1, r2] = await Promise.all([ask(w1, msg), ask(w2, msg)]);
      const w1s = r1.wins as number[], w2s = r2.wins as number[];
      let both = 0, none = 0;
      for (let r = 0; r < rounds; r++) {
        if (w1s[r] + w2s[r] === 2) both++;
        if (w1s[r] + w2s[r] === 0) none++;
      }
      assert.equal(both, 0, `${both} rounds had two winners`);
      assert.equal(none, 0, `${none} rounds had no winner`);
      const back = own.receive(r1.back as OwnedToken);
      const st = own.stateOf(back.deref())!;
      assert.deepEqual([st.borrows, st.mutablyBorrowed, st.lent, st.owner], [0, false, 0, 0]);
      back.drop();
    });
    assert.deepEqual(own.leaks(), []);
    assert.deepEqual(heap.verify(), []);
  });
});
