/**
 * A model-based fuzzer of `own`: two worker slots on one heap (the heap's own and one attached
 * in this thread), each with its `Ownership`; buffers allocated or adopted (from the heap, its
 * libc, a cache); shared and mutable borrows (plain and `try`), released in any order; writes
 * through a mutable borrow; moves, sends to any worker or a named one, receives (twice, by the
 * wrong worker); references lent with `share` and taken with `access`, borrowing in the same
 * word; clones; drops (twice, while borrowed, while lent); `heap.free` of tracked buffers from
 * the owner and from the other worker, which must be refused.
 *
 * The model keeps, per buffer, its state (owned, in transit, dropped), owner slot, shared and
 * mutable borrows, references lent and the identity of its pattern; per handle, whether it is
 * alive or how it died (moved, sent, dropped). Every call must do what Rust's rules say: succeed,
 * or throw the `OwnershipError` kind the model names (`try` borrows return undefined instead). A
 * refused call changes nothing. After every command each live buffer's bytes hold its pattern
 * and `stateOf` agrees with the model (state, owner, borrows, mutable, lent, size); `stats()`
 * counts the tracked buffers. At the end every guard and reference is released, every token
 * received and every handle dropped; then `tracked` is 0, `leaks()` is empty, `heap.verify()`
 * is empty and the heap's bytes in use are back where they started.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --target own --runs 500`.
 *
 * @module
 */

import fc from "fast-check";
import { type Cache, Heap } from "../../mod.ts";
import {
  type Owned,
  type OwnedToken,
  Ownership,
  type Ref,
  type RefMut,
  type Shared,
  type ShareToken,
} from "../../own/mod.ts";
import { mk } from "../helpers.ts";
import { checkPattern, expectClean, expectKind, fail, fillPattern, type Target } from "./runner.ts";

/** Where an adopted buffer comes from. */
type Src = "alloc" | "heap" | "libc" | "cache";

/** One command; `pick` indexes the model's lists modulo their length, `w` is a worker (0, 1). */
export type OwnCmd =
  | { op: "setup"; mode: "light" | "full" }
  | { op: "alloc"; w: number; size: number; src: Src }
  | { op: "borrow"; pick: number; mut: boolean; tryIt: boolean }
  | { op: "release"; pick: number }
  | { op: "write"; pick: number }
  | { op: "move"; pick: number }
  | { op: "send"; pick: number; to: number }
  | { op: "receive"; pick: number; w: number }
  | { op: "share"; pick: number }
  | { op: "access"; pick: number; w: number }
  | { op: "sborrow"; pick: number; mut: boolean; tryIt: boolean }
  | { op: "srelease"; pick: number }
  | { op: "clone"; pick: number }
  | { op: "drop"; pick: number }
  | { op: "free"; pick: number; w: number }
  | { op: "deref"; pick: number };

/** The size of the cache's buffers. */
const CACHE_BUF = 64;

const cmdArb: fc.Arbitrary<OwnCmd> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("alloc" as const),
      w: fc.nat(1),
      size: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 3000 })),
      src: fc.constantFrom<Src>("alloc", "alloc", "heap", "libc", "cache"),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant("borrow" as const),
      pick: fc.nat(),
      mut: fc.boolean(),
      tryIt: fc.boolean(),
    }),
  },
  { weight: 6, arbitrary: fc.record({ op: fc.constant("release" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("write" as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("move" as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("send" as const),
      pick: fc.nat(),
      to: fc.constantFrom(-1, -1, 0, 1),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("receive" as const), pick: fc.nat(), w: fc.nat(1) }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("share" as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("access" as const), pick: fc.nat(), w: fc.nat(1) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("sborrow" as const),
      pick: fc.nat(),
      mut: fc.boolean(),
      tryIt: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("srelease" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("clone" as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("drop" as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("free" as const), pick: fc.nat(), w: fc.nat(1) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("deref" as const), pick: fc.nat() }) },
);

/** A buffer of the model. */
interface Buf {
  ptr: number;
  size: number;
  src: Src;
  /** The identity whose pattern its bytes hold. */
  pat: number;
  state: "owned" | "in-transit" | "dropped";
  /** The owning (or sending) worker. */
  owner: number;
  shared: number;
  mut: boolean;
  lent: number;
}

/** A handle of the model. */
interface Handle {
  o: Owned;
  buf: Buf;
  dead: "" | "moved" | "sent" | "dropped";
}

/** A guard of the model. */
interface Guard {
  g: Ref | RefMut;
  buf: Buf;
  mut: boolean;
}

/** A token in flight. */
interface Token {
  t: OwnedToken;
  buf: Buf;
  /** The worker it was sent to, or -1. */
  to: number;
  received: boolean;
}

/** A share token and the handle it was taken from. */
interface Lend {
  t: ShareToken;
  from: Handle;
}

/** A reference taken with access. */
interface Ref2 {
  s: Shared;
  buf: Buf;
  released: boolean;
}

/** The kind a use of a dead handle must throw. */
function deadKind(h: Handle, dropping = false): string {
  if (h.dead === "dropped") return dropping ? "double-drop" : "use-after-drop";
  return "use-after-move";
}

/** Runs one command list on a fresh heap; throws on any disagreement with the model. */
export function runOwn(cmds: OwnCmd[]): void {
  const heap = mk({ size: 1 << 21 });
  const other = Heap.attach(heap.buffer);
  const heaps = [heap, other];
  const cache: Cache = heap.createCache("own_fuzz", CACHE_BUF);
  const mode = cmds[0]?.op === "setup" ? cmds[0].mode : "light";
  const owns = [Ownership.create(heap, { mode }), Ownership.create(other, { mode })];
  // Each worker's slot, as the table names it; this also lays the table before `start`.
  const slots = owns.map((o) => {
    const h = o.alloc(8);
    const s = o.stateOf(h.deref())!.owner;
    h.drop();
    return s;
  });
  // Each worker lends and borrows once first, so that what a worker keeps for as long as it
  // lives (its ledger of references held) is made before `start`.
  for (const w of [0, 1]) {
    const h = owns[w].alloc(8), s = owns[1 - w].access(h.share());
    s.borrow().release();
    s.release();
    h.drop();
  }
  heap.reap();
  other.reap();
  const start = heap.vmem.stats().inUse;
  const bufs: Buf[] = [];
  const handles: Handle[] = [];
  const guards: Guard[] = [];
  const tokens: Token[] = [];
  const lends: Lend[] = [];
  const refs: Ref2[] = [];
  let nextPat = 1;

  const pick = <T>(xs: T[], n: number): T | undefined =>
    xs.length === 0 ? undefined : xs[n % xs.length];
  const workerOf = (slot: number) => slots.indexOf(slot);
  const live = () => bufs.filter((b) => b.state !== "dropped");
  const busy = (b: Buf) => b.shared > 0 || b.mut;
  const fillBuf = (b: Buf) => fillPattern(heap, b.pat, b.ptr, b.size);
  /** The table against the model, and every live buffer's bytes. */
  const check = (what: string) => {
    const st = owns[0].stats();
    if (st.tracked !== live().length) {
      fail(`${what}: ${st.tracked} tracked, the model has ${live().length} buffers`);
    }
    for (const b of live()) {
      checkPattern(heap, b.pat, b.ptr, b.size, what);
      const i = owns[0].stateOf(b.ptr);
      const want = {
        ptr: b.ptr,
        size: b.size,
        owner: b.owner,
        state: b.state,
        borrows: b.shared,
        mutablyBorrowed: b.mut,
        lent: b.lent,
      };
      const got = i && {
        ptr: i.ptr,
        size: i.size,
        owner: i.owner,
        state: i.state,
        borrows: i.borrows,
        mutablyBorrowed: i.mutablyBorrowed,
        lent: i.lent,
      };
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        fail(
          `${what}: stateOf(${b.ptr}) is ${JSON.stringify(got)}, the model ${JSON.stringify(want)}`,
        );
      }
    }
  };
  /** A new owned buffer of worker `w`. */
  const newBuf = (w: number, o: Owned, size: number, src: Src, pat: number): Handle => {
    const b: Buf = {
      ptr: o.deref(),
      size,
      src,
      pat,
      state: "owned",
      owner: slots[w],
      shared: 0,
      mut: false,
      lent: 0,
    };
    for (const x of live()) {
      if (b.ptr < x.ptr + x.size && x.ptr < b.ptr + size) fail(`buffer ${b.ptr} overlaps ${x.ptr}`);
    }
    bufs.push(b);
    const h = { o, buf: b, dead: "" as const };
    handles.push(h);
    return h;
  };
  /** A borrow through `take` (an Owned or a Shared) checked against the model. */
  const borrow = (
    what: string,
    b: Buf,
    mut: boolean,
    tryIt: boolean,
    take: () => Ref | RefMut | undefined,
  ) => {
    const conflict = mut ? busy(b) : b.mut;
    if (conflict) {
      if (tryIt) {
        if (take() !== undefined) fail(`${what}: try${mut ? "Mut" : ""} gave a guard in conflict`);
      } else expectKind(what, ["borrow-conflict"], take);
      return;
    }
    const g = take();
    if (g === undefined || !g.held || g.ptr !== b.ptr) fail(`${what}: no guard for ${b.ptr}`);
    if (mut) b.mut = true;
    else b.shared++;
    guards.push({ g, buf: b, mut });
  };

  for (const c of cmds) {
    switch (c.op) {
      case "setup":
        break;
      case "alloc": {
        if (live().length >= 24) break;
        const own = owns[c.w], h = heaps[c.w];
        let o: Owned;
        let size = c.size;
        if (c.src === "alloc") o = own.alloc(size);
        else if (c.src === "heap") o = own.adopt(h.alloc(size), size, "heap");
        else if (c.src === "libc") o = own.adopt(h.libc.malloc(size), size, "libc");
        else {
          // the cache belongs to the heap's creator; adopt from worker 0 only
          size = CACHE_BUF;
          o = owns[0].adopt(cache.alloc(), size, cache);
        }
        const hd = newBuf(c.src === "cache" ? 0 : c.w, o, size, c.src, nextPat++);
        fillBuf(hd.buf);
        break;
      }
      case "borrow": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        const what = `borrow${c.mut ? "Mut" : ""} of ${h.buf.ptr}`;
        if (h.dead !== "") {
          const k = deadKind(h);
          expectKind(what, [k], () => (c.mut ? h.o.borrowMut() : h.o.borrow()));
          break;
        }
        borrow(
          what,
          h.buf,
          c.mut,
          c.tryIt,
          () =>
            c.tryIt
              ? (c.mut ? h.o.tryBorrowMut() : h.o.tryBorrow())
              : (c.mut ? h.o.borrowMut() : h.o.borrow()),
        );
        break;
      }
      case "release": {
        if (guards.length === 0) break;
        const [g] = guards.splice(c.pick % guards.length, 1);
        checkPattern(heap, g.buf.pat, g.g.ptr, g.buf.size, "under a borrow");
        g.g.release();
        if (g.mut) g.buf.mut = false;
        else g.buf.shared--;
        if (g.g.held) fail("a released guard still holds");
        expectKind("ptr of a released guard", ["use-after-drop"], () => g.g.ptr);
        g.g.release(); // a second release does nothing
        break;
      }
      case "write": {
        const ws = guards.filter((g) => g.mut);
        if (ws.length === 0) break;
        const g = ws[c.pick % ws.length];
        g.buf.pat = nextPat++;
        fillBuf(g.buf);
        break;
      }
      case "move": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        if (h.dead !== "") expectKind("move of a dead handle", [deadKind(h)], () => h.o.move());
        else if (busy(h.buf) || h.buf.lent > 0) {
          expectKind("move while borrowed", ["borrow-conflict"], () => h.o.move());
        } else {
          const o = h.o.move();
          h.dead = "moved";
          if (h.o.alive || !o.alive) fail("move: the old handle lives or the new one is dead");
          handles.push({ o, buf: h.buf, dead: "" });
        }
        break;
      }
      case "send": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        const to = c.to < 0 ? -1 : slots[c.to];
        if (h.dead !== "") expectKind("send of a dead handle", [deadKind(h)], () => h.o.send(to));
        else if (busy(h.buf) || h.buf.lent > 0) {
          expectKind("send while borrowed", ["borrow-conflict"], () => h.o.send(to));
        } else {
          const t = h.o.send(to);
          h.dead = "sent";
          h.buf.state = "in-transit";
          tokens.push({ t: structuredClone(t), buf: h.buf, to, received: false });
        }
        break;
      }
      case "receive": {
        const t = pick(tokens, c.pick);
        if (t === undefined) break;
        const own = owns[c.w];
        if (t.buf.state === "dropped") {
          expectKind(
            "receive of a dropped buffer",
            ["use-after-drop", "use-after-move"],
            () => own.receive(t.t),
          );
        } else if (t.received) {
          expectKind("a second receive", ["use-after-move"], () => own.receive(t.t));
        } else if (t.to !== -1 && t.to !== slots[c.w]) {
          expectKind("receive by another worker", ["not-owner"], () => own.receive(t.t));
        } else {
          const o = own.receive(t.t);
          t.received = true;
          t.buf.state = "owned";
          t.buf.owner = slots[c.w];
          handles.push({ o, buf: t.buf, dead: "" });
        }
        break;
      }
      case "share": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        if (h.dead !== "") {
          expectKind("share of a dead handle", [deadKind(h)], () => h.o.share());
          break;
        }
        if (lends.length < 8) lends.push({ t: structuredClone(h.o.share()), from: h });
        break;
      }
      case "access": {
        const l = pick(lends, c.pick);
        if (l === undefined) break;
        const own = owns[c.w], b = l.from.buf;
        if (l.from.dead !== "") {
          // A dropped buffer's record may have been reused by a newer buffer: then the token
          // reads as one whose buffer "was moved or sent since" (refused all the same).
          const kinds = b.state === "dropped"
            ? ["use-after-drop", "use-after-move"]
            : ["use-after-move"];
          expectKind("access after the owner's handle died", kinds, () => own.access(l.t));
          break;
        }
        const s = own.access(l.t);
        b.lent++;
        refs.push({ s, buf: b, released: false });
        break;
      }
      case "sborrow": {
        const r = pick(refs, c.pick);
        if (r === undefined) break;
        const what = `Shared.borrow${c.mut ? "Mut" : ""} of ${r.buf.ptr}`;
        if (r.released) {
          expectKind(what, ["use-after-drop"], () => (c.mut ? r.s.borrowMut() : r.s.borrow()));
          break;
        }
        borrow(
          what,
          r.buf,
          c.mut,
          c.tryIt,
          () =>
            c.tryIt
              ? (c.mut ? r.s.tryBorrowMut() : r.s.tryBorrow())
              : (c.mut ? r.s.borrowMut() : r.s.borrow()),
        );
        break;
      }
      case "srelease": {
        const r = pick(refs, c.pick);
        if (r === undefined) break;
        if (!r.released) r.buf.lent--;
        r.released = true;
        r.s.release(); // a second release does nothing
        if (r.s.held) fail("a released reference still holds");
        break;
      }
      case "clone": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        if (h.dead !== "") expectKind("clone of a dead handle", [deadKind(h)], () => h.o.clone());
        else if (h.buf.mut) {
          expectKind("clone while mutably borrowed", ["borrow-conflict"], () => h.o.clone());
        } else if (live().length < 24) {
          const o = h.o.clone();
          const w = workerOf(h.buf.owner);
          const n = newBuf(w, o, h.buf.size, "alloc", h.buf.pat);
          checkPattern(heap, n.buf.pat, n.buf.ptr, n.buf.size, "a clone");
        }
        break;
      }
      case "drop": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        if (h.dead !== "") {
          expectKind("drop of a dead handle", [deadKind(h, true)], () => h.o.drop());
        } else if (busy(h.buf) || h.buf.lent > 0) {
          expectKind("drop while borrowed or lent", ["drop-while-borrowed"], () => h.o.drop());
        } else {
          checkPattern(heap, h.buf.pat, h.buf.ptr, h.buf.size, "before drop");
          h.o.drop();
          h.dead = "dropped";
          h.buf.state = "dropped";
          if (h.o.alive) fail("a dropped handle is alive");
        }
        break;
      }
      case "free": {
        const b = pick(live(), c.pick);
        if (b === undefined) break;
        const w = b.src === "cache" ? 0 : c.w; // the cache handle is worker 0's
        const h = heaps[w];
        const mine = workerOf(b.owner) === w;
        const kinds = !mine
          ? ["not-owner", "use-after-move"]
          : b.state === "in-transit"
          ? ["use-after-move"]
          : busy(b) || b.lent > 0
          ? ["drop-while-borrowed"]
          : ["bad-free"];
        expectKind(`free of tracked ${b.ptr} (${b.src}) by worker ${w}`, kinds, () => {
          if (b.src === "libc") h.libc.free(b.ptr);
          else if (b.src === "cache") cache.free(b.ptr);
          else h.free(b.ptr, b.size);
        });
        break;
      }
      case "deref": {
        const h = pick(handles, c.pick);
        if (h === undefined) break;
        if (h.dead !== "") expectKind("deref of a dead handle", [deadKind(h)], () => h.o.deref());
        else if (h.o.deref() !== h.buf.ptr) fail("deref gave another address");
        break;
      }
    }
    check(c.op);
  }
  // Wind down: guards, references, tokens, handles.
  for (const g of guards) g.g.release();
  for (const r of refs) r.s.release();
  for (const t of tokens) {
    if (!t.received && t.buf.state === "in-transit") {
      const w = t.to === -1 ? 0 : workerOf(t.to);
      handles.push({ o: owns[w].receive(t.t), buf: t.buf, dead: "" });
      t.buf.state = "owned";
    }
  }
  for (const h of handles) {
    if (h.dead !== "") continue;
    checkPattern(heap, h.buf.pat, h.buf.ptr, h.buf.size, "at the end");
    h.o.drop();
  }
  const st = owns[0].stats();
  if (st.tracked !== 0) fail(`${st.tracked} buffers tracked after every handle was dropped`);
  if (owns[1].leaks().length !== 0) fail("leaks() is not empty at the end");
  expectClean("heap.verify() at the end", heap.verify());
  heap.reap();
  other.reap();
  const end = heap.vmem.stats().inUse;
  if (end !== start) fail(`heap in use ${end} B at the end, ${start} B at the start`);
  for (const o of owns) o.close();
  other.detach();
  expectClean("heap.verify() after the second worker detached", heap.verify());
}

/** The own fuzzer as a target of tests/fuzz/main.ts. */
export const ownTarget: Target<OwnCmd> = {
  name: "own",
  commands: fc.tuple(
    fc.record({
      op: fc.constant("setup" as const),
      mode: fc.constantFrom("light" as const, "light" as const, "full" as const),
    }),
    fc.array(cmdArb, { minLength: 1, maxLength: 120, size: "max" }),
  ).map(([setup, cmds]): OwnCmd[] => [setup, ...cmds]),
  run: runOwn,
};
