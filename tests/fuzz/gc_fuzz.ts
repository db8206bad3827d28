/**
 * A model-based fuzzer of `gc`: random graphs of collector objects (scanned, atomic,
 * uncollectable; small and large), pointers stored and overwritten (to an object's first byte
 * or inside it), roots added in a root range and pins taken and disposed, finalizers on atomic
 * objects, explicit frees and reallocs, collections (asked for, and, when the list turns
 * automatic collection on, triggered by allocation).
 *
 * The model stores no word that looks like a pointer but the pointers it means: the other words
 * of a scanned object hold small numbers below any object's address, and atomic objects (never
 * scanned) hold the pattern of their identity. So it knows reachability exactly: from the root
 * range, the pins and the uncollectable objects, through the stored pointers (inside pointers
 * count unless the collector was made with `interior: false`). An object the model finds
 * unreachable is garbage: the program never touches it again. After each collection every
 * reachable object is live (`isLive`) and intact (every word as the model wrote it), every
 * garbage object is freed (not live, unless its address was handed out again), a garbage object
 * with a finalizer has had its finalizer called exactly once, on its intact bytes, and is freed
 * by the collection after that one; without automatic collection `collect()`'s count of freed
 * objects is exactly the model's. `heap.verify()` is empty after each list, and once every root
 * is gone a last collection leaves no byte in use.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --target gc --runs 300`.
 *
 * @module
 */

import fc from "fast-check";
import { Collector, type PinHandle } from "../../gc/mod.ts";
import { mk } from "../helpers.ts";
import { checkPattern, expectClean, fail, fillPattern, OtherSlot, type Target } from "./runner.ts";

/** The kind of an object. */
type Kind = "scanned" | "atomic" | "uncoll";

/** One command. `pick` and `to` index the model's live objects modulo their number. */
export type GcCmd =
  | { op: "setup"; interior: boolean; auto: boolean }
  | { op: "malloc"; kind: Kind; words: number; into: "root" | "pin" | "parent"; at: number }
  | { op: "link"; pick: number; slot: number; to: number; inner: boolean; clear: boolean }
  | { op: "root"; slot: number; to: number; clear: boolean }
  | { op: "pin"; to: number }
  | { op: "unpin"; pick: number }
  | { op: "finalizer"; pick: number }
  | { op: "free"; pick: number }
  | { op: "realloc"; pick: number; words: number }
  | { op: "grow"; size: number }
  | { op: "collect" };

/** Words of the root range. */
const ROOT_WORDS = 16;
/** Words of an object that may hold pointers (the rest hold small numbers). */
const SLOTS = 6;
/** Objects the model keeps at most. */
const MAX_OBJECTS = 60;

const wordsArb = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 1, max: 16 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 600 }) },
  { weight: 1, arbitrary: fc.integer({ min: 33000, max: 50000 }) }, // past 128 KiB: large
);

const cmdArb: fc.Arbitrary<GcCmd> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      op: fc.constant("malloc" as const),
      kind: fc.constantFrom<Kind>("scanned", "scanned", "scanned", "atomic", "uncoll"),
      words: wordsArb,
      into: fc.constantFrom("root" as const, "pin" as const, "parent" as const, "parent" as const),
      at: fc.nat(),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant("link" as const),
      pick: fc.nat(),
      slot: fc.nat(SLOTS - 1),
      to: fc.nat(),
      inner: fc.boolean(),
      clear: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("root" as const),
      slot: fc.nat(ROOT_WORDS - 1),
      to: fc.nat(),
      clear: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("pin" as const), to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("unpin" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("finalizer" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("free" as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("realloc" as const), pick: fc.nat(), words: wordsArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("grow" as const),
      size: fc.integer({ min: 1 << 20, max: 12 << 20 }),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ op: "collect" as const }) },
);

/** An object of the model. */
interface Obj {
  id: number;
  ptr: number;
  /** Bytes (a multiple of 4). */
  size: number;
  kind: Kind;
  /** Pointers in the first words: [target, byte offset into it] or null. */
  slots: ([Obj, number] | null)[];
  /** A finalizer was registered: its calls (addresses), and whether the bytes were intact. */
  fin: number[] | null;
  finIntact: boolean;
}

/** Runs one command list on a fresh heap; throws on any disagreement with the model. */
export function runGc(cmds: GcCmd[]): void {
  const setup = cmds[0]?.op === "setup" ? cmds[0] : { op: "setup", interior: true, auto: false };
  const heap = mk({ size: 16 << 20 });
  const gc = Collector.create(heap, {
    interior: setup.interior,
    auto: setup.auto,
    minTrigger: 4096,
  });
  const rootArea = heap.alloc(ROOT_WORDS * 4);
  heap.u8.fill(0, rootArea, rootArea + ROOT_WORDS * 4);
  gc.addRoots(rootArea, rootArea + ROOT_WORDS * 4);
  const roots: ([Obj, number] | null)[] = new Array(ROOT_WORDS).fill(null);
  const pins: { h: PinHandle; o: Obj }[] = [];
  let live: Obj[] = [];
  /** Unreachable objects not yet known to be freed (never touched again). */
  let garbage: Obj[] = [];
  let nextId = 1;
  // A second worker slot whose big blocks grow the heap past this handle's views (runner.ts).
  const other = new OtherSlot(heap, 2);

  /** The small number word `i` of object `o` holds when it is not a pointer. */
  const filler = (o: Obj, i: number) => ((o.id * 31 + i * 7) % 1000) + 1;
  /** Writes object `o`'s words (or pattern) as the model has them. */
  const write = (o: Obj) => {
    heap.sync();
    if (o.kind === "atomic") return fillPattern(heap, o.id, o.ptr, o.size);
    const n = o.size >> 2, w = o.ptr >> 2;
    for (let i = 0; i < n; i++) {
      const s = i < SLOTS ? (o.slots[i] ?? null) : null;
      heap.i32[w + i] = s === null ? filler(o, i) : s[0].ptr + s[1];
    }
  };
  /** Checks object `o`'s words (or pattern). */
  const intact = (o: Obj, what: string) => {
    heap.sync();
    if (o.kind === "atomic") return checkPattern(heap, o.id, o.ptr, o.size, what);
    const n = o.size >> 2, w = o.ptr >> 2;
    for (let i = 0; i < n; i++) {
      const s = i < SLOTS ? (o.slots[i] ?? null) : null;
      const want = s === null ? filler(o, i) : s[0].ptr + s[1];
      if (heap.i32[w + i] !== want) {
        fail(
          `${what}: object ${o.id} (${o.kind}, ${o.size} B) word ${i} is ${
            heap.i32[w + i]
          }, not ${want}`,
        );
      }
    }
  };
  /** Recomputes reachability; the unreachable objects move to `garbage`. */
  const sweepModel = () => {
    const seen = new Set<Obj>();
    const stack: Obj[] = [];
    const reach = (ref: [Obj, number] | null) => {
      if (ref === null || (ref[1] !== 0 && !setup.interior)) return;
      if (!seen.has(ref[0])) (seen.add(ref[0]), stack.push(ref[0]));
    };
    for (const r of roots) reach(r);
    for (const p of pins) reach([p.o, 0]);
    for (const o of live) if (o.kind === "uncoll") reach([o, 0]);
    while (stack.length > 0) {
      const o = stack.pop()!;
      if (o.kind !== "atomic") { for (const s of o.slots) reach(s); }
    }
    const dead = live.filter((o) => !seen.has(o));
    if (dead.length === 0) return;
    live = live.filter((o) => seen.has(o));
    garbage.push(...dead);
  };
  const pick = (n: number) => (live.length === 0 ? undefined : live[n % live.length]);
  const ref = (o: Obj, inner: boolean): [Obj, number] => [o, inner && o.size >= 8 ? 4 : 0];
  /** Every reference to `o` from the model's live objects, roots and pins. */
  const forget = (o: Obj) => {
    for (const x of live) {
      if (x.kind === "atomic") continue;
      let changed = false;
      x.slots = x.slots.map((s) => (s !== null && s[0] === o ? ((changed = true), null) : s));
      if (changed) write(x);
    }
    for (let i = 0; i < ROOT_WORDS; i++) {
      if (roots[i]?.[0] === o) (roots[i] = null, heap.i32[(rootArea >> 2) + i] = 0);
    }
    for (const p of pins.filter((p) => p.o === o)) {
      (p.h[Symbol.dispose](), pins.splice(pins.indexOf(p), 1));
    }
  };
  /** A collection checked against the model. */
  const collect = () => {
    sweepModel();
    const before = garbage.map((o) => ({ o, finCalls: o.fin?.length ?? -1 }));
    const r = gc.collect();
    for (const o of live) {
      if (!gc.isLive(o.ptr)) fail(`object ${o.id} is reachable but was freed`);
      intact(o, "after a collection");
    }
    const taken = new Set(live.map((o) => o.ptr));
    let freed = 0;
    const still: Obj[] = [];
    for (const { o, finCalls } of before) {
      if (o.fin !== null) {
        if (o.fin.length !== 1) fail(`finalizer of object ${o.id} ran ${o.fin.length} times`);
        if (!o.finIntact) fail(`finalizer of object ${o.id} saw its bytes changed`);
        if (finCalls === 0) {
          // finalized by this collection: it survives it (its finalizer read it)
          if (!setup.auto && !gc.isLive(o.ptr)) fail(`finalized object ${o.id} freed at once`);
          still.push(o);
          continue;
        }
      }
      if (!taken.has(o.ptr) && gc.isLive(o.ptr)) {
        fail(`garbage object ${o.id} (${o.kind}, ${o.size} B at ${o.ptr}) is still live`);
      }
      freed++;
    }
    if (!setup.auto && r.objects !== freed) {
      fail(`collect() freed ${r.objects} objects, the model ${freed}`);
    }
    garbage = still;
    expectClean("heap.verify() after a collection", heap.verify());
  };
  /** Makes the new object reachable as the command says (before anything else allocates). */
  const attach = (o: Obj, c: { into: string; at: number }) => {
    const parents = live.filter((x) => x !== o && x.kind !== "atomic");
    if (c.into === "parent" && parents.length > 0) {
      const p = parents[c.at % parents.length];
      p.slots[c.at % p.slots.length] = [o, 0];
      write(p);
    } else if (c.into === "pin") {
      pins.push({ h: gc.pin(o.ptr), o });
    } else {
      const i = c.at % ROOT_WORDS;
      roots[i] = [o, 0];
      heap.i32[(rootArea >> 2) + i] = o.ptr;
    }
  };

  for (const c of cmds) {
    switch (c.op) {
      case "setup":
        break;
      case "malloc": {
        if (live.length >= MAX_OBJECTS) break;
        const size = c.words * 4;
        const ptr = c.kind === "scanned"
          ? gc.malloc(size)
          : c.kind === "atomic"
          ? gc.mallocAtomic(size)
          : gc.mallocUncollectable(size);
        if (ptr <= 0 || ptr % 8 !== 0) fail(`malloc(${size}) returned ${ptr}`);
        for (const x of live) {
          if (ptr < x.ptr + x.size && x.ptr < ptr + size) {
            fail(`new object overlaps object ${x.id}`);
          }
        }
        const o: Obj = {
          id: nextId++,
          ptr,
          size,
          kind: c.kind,
          slots: new Array(Math.min(SLOTS, c.words)).fill(null),
          fin: null,
          finIntact: true,
        };
        write(o);
        live.push(o);
        if (c.kind !== "uncoll") attach(o, c);
        sweepModel(); // a root word or a slot it took may have held the only way to another
        break;
      }
      case "link": {
        const o = pick(c.pick);
        if (o === undefined || o.kind === "atomic") break;
        const i = c.slot % o.slots.length;
        o.slots[i] = c.clear ? null : ref(pick(c.to)!, c.inner);
        write(o);
        sweepModel();
        break;
      }
      case "root": {
        const i = c.slot;
        const t = c.clear ? undefined : pick(c.to);
        roots[i] = t === undefined ? null : [t, 0];
        heap.i32[(rootArea >> 2) + i] = t === undefined ? 0 : t.ptr;
        sweepModel();
        break;
      }
      case "pin": {
        const o = pick(c.to);
        if (o === undefined || pins.length >= 8) break;
        pins.push({ h: gc.pin(o.ptr), o });
        break;
      }
      case "unpin": {
        if (pins.length === 0) break;
        const [p] = pins.splice(c.pick % pins.length, 1);
        p.h[Symbol.dispose]();
        if (p.h.pinned) fail("a disposed pin is still pinned");
        sweepModel();
        break;
      }
      case "finalizer": {
        const o = pick(c.pick);
        if (o === undefined || o.kind !== "atomic" || o.fin !== null) break;
        const calls: number[] = [];
        o.fin = calls;
        gc.registerFinalizer(o.ptr, (p) => {
          calls.push(p);
          if (p !== o.ptr) o.finIntact = false;
          try {
            checkPattern(heap, o.id, p, o.size, "in its finalizer");
          } catch {
            o.finIntact = false;
          }
        });
        break;
      }
      case "free": {
        const o = pick(c.pick);
        if (o === undefined) break;
        intact(o, "before free");
        forget(o);
        live.splice(live.indexOf(o), 1);
        gc.free(o.ptr);
        if (gc.isLive(o.ptr)) fail(`object ${o.id} is live after free`);
        sweepModel();
        break;
      }
      case "realloc": {
        const o = pick(c.pick);
        if (o === undefined || o.fin !== null) break;
        intact(o, "before realloc");
        const size = c.words * 4;
        // Words past the new size go back to small numbers first: they may stay in the block.
        if (o.kind !== "atomic") {
          o.slots = o.slots.slice(0, Math.min(SLOTS, c.words));
          write(o);
        }
        const old = o.ptr, oldSize = o.size;
        const q = gc.realloc(old, size);
        if (q <= 0) fail(`realloc(${size}) returned ${q}`);
        if (o.kind === "atomic") {
          checkPattern(heap, o.id, q, Math.min(oldSize, size), "after realloc");
        }
        o.ptr = q;
        o.size = size;
        while (o.kind !== "atomic" && o.slots.length < Math.min(SLOTS, c.words)) o.slots.push(null);
        write(o);
        if (q !== old) {
          // Every pointer to it moves with it (an inner one only if it still falls inside).
          for (const x of live) {
            if (x.kind === "atomic") continue;
            let changed = false;
            x.slots = x.slots.map((s) => {
              if (s === null || s[0] !== o) return s;
              changed = true;
              return s[1] < size ? s : null;
            });
            if (changed) write(x);
          }
          for (let i = 0; i < ROOT_WORDS; i++) {
            if (roots[i]?.[0] === o) heap.i32[(rootArea >> 2) + i] = q;
          }
          for (const p of pins.filter((p) => p.o === o)) {
            p.h[Symbol.dispose]();
            p.h = gc.pin(q);
          }
          if (gc.isLive(old) && !live.some((x) => x.ptr === old)) {
            fail("realloc kept the old object");
          }
        }
        sweepModel();
        break;
      }
      case "grow":
        other.grow(nextId++, c.size, () => other.ranges());
        break;
      case "collect":
        collect();
        break;
    }
  }
  other.finish();
  collect();
  // Let everything go: roots, pins, uncollectable objects; two collections free it all.
  for (let i = 0; i < ROOT_WORDS; i++) (roots[i] = null, heap.i32[(rootArea >> 2) + i] = 0);
  for (const p of pins.splice(0)) p.h[Symbol.dispose]();
  for (const o of live.filter((o) => o.kind === "uncoll")) {
    forget(o);
    live.splice(live.indexOf(o), 1);
    gc.free(o.ptr);
  }
  collect();
  collect();
  if (live.length !== 0 || garbage.length !== 0) fail("objects left after letting everything go");
  const s = gc.stats();
  if (s.heapSize !== s.freeBytes) fail(`${s.heapSize - s.freeBytes} B in use at the end`);
  if (s.finalizers !== 0) fail(`${s.finalizers} finalizers left at the end`);
  gc.removeRoots(rootArea, rootArea + ROOT_WORDS * 4);
  heap.free(rootArea, ROOT_WORDS * 4);
  expectClean("heap.verify() at the end", heap.verify());
}

/** The gc fuzzer as a target of tests/fuzz/main.ts. */
export const gcTarget: Target<GcCmd> = {
  name: "gc",
  commands: fc.tuple(
    fc.record({ op: fc.constant("setup" as const), interior: fc.boolean(), auto: fc.boolean() }),
    fc.array(cmdArb, { minLength: 1, maxLength: 100, size: "max" }),
  ).map(([s, cmds]): GcCmd[] => [s, ...cmds]),
  run: runGc,
};
