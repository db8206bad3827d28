/**
 * A model-based fuzzer of `budget`: memory-context trees built and torn down at random
 * (create with and without budgets, shared or not; alloc, alloc0, free, realloc through the
 * context's methods and through palloc, palloc0, pfree and repalloc with switchTo; reset,
 * resetOnly, delete), budgets that refuse, frees through the wrong context, second frees, and
 * every operation on a deleted context.
 *
 * The model keeps the tree (parent, children, deleted or not), each context's live chunks and
 * the worker's current context. Every chunk is filled with the pattern of its identity
 * (tests/fuzz/runner.ts) and checked before it is freed or resized and at the end; a new chunk
 * must not overlap a live one; a budget refusal must come from a context on the path that has
 * a budget, and after every success each budget on the path holds; `ctx.check()` on
 * TopMemoryContext and `heap.verify()` must be empty at the end of each list, and once every
 * context but the top is deleted and the top reset, the tree and the heap hold what they held
 * at the start.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --target budget --runs 500`.
 *
 * @module
 */

import fc from "fast-check";
import {
  BudgetExceededError,
  currentContext,
  type MemoryContext,
  palloc,
  palloc0,
  pfree,
  repalloc,
  switchTo,
  topContext,
} from "../../budget/mod.ts";
import { mk } from "../helpers.ts";
import {
  checkApart,
  checkPattern,
  expectClean,
  expectKind,
  fail,
  fillPattern,
  OtherSlot,
  type Target,
} from "./runner.ts";

/** One command. `ctx` and `pick` index the model's lists modulo their length. */
export type BudgetCmd =
  | { op: "heap"; debug: boolean }
  | { op: "create"; ctx: number; budget: number; init: number; shared: boolean; wait: boolean }
  | { op: "alloc"; ctx: number; size: number; zero: boolean; palloc: boolean }
  | { op: "free"; pick: number; how: "method" | "pfree" | "other"; other: number }
  | { op: "realloc"; pick: number; size: number; repalloc: boolean }
  | { op: "twice"; pick: number }
  | { op: "reset"; ctx: number }
  | { op: "resetOnly"; ctx: number }
  | { op: "delete"; ctx: number }
  | { op: "switch"; ctx: number }
  | { op: "grow"; size: number }
  | { op: "check" };

/** Contexts a list may create. */
const MAX_CONTEXTS = 10;

const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 200 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 8192 }) },
  { weight: 1, arbitrary: fc.integer({ min: 8193, max: 40000 }) },
);
const ctxArb = fc.nat({ max: 1000 });

const cmdArb: fc.Arbitrary<BudgetCmd> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("create" as const),
      ctx: ctxArb,
      budget: fc.constantFrom(-1, -1, 20000, 60000, 300000),
      init: fc.constantFrom(0, 1024, 8192),
      shared: fc.boolean(),
      wait: fc.boolean(),
    }),
  },
  {
    weight: 20,
    arbitrary: fc.record({
      op: fc.constant("alloc" as const),
      ctx: ctxArb,
      size: sizeArb,
      zero: fc.boolean(),
      palloc: fc.boolean(),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      op: fc.constant("free" as const),
      pick: fc.nat(),
      how: fc.constantFrom("method" as const, "pfree" as const, "other" as const),
      other: ctxArb,
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("realloc" as const),
      pick: fc.nat(),
      size: sizeArb,
      repalloc: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("twice" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("reset" as const), ctx: ctxArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("resetOnly" as const), ctx: ctxArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("delete" as const), ctx: ctxArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("switch" as const), ctx: ctxArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("grow" as const),
      size: fc.integer({ min: 1 << 16, max: 1 << 21 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "check" as const }) },
);

/** A live chunk. */
interface Chunk {
  id: number;
  addr: number;
  size: number;
  owner: Model;
}

/** The model of one context. */
interface Model {
  name: string;
  h: MemoryContext;
  parent: Model | null;
  kids: Model[];
  budget: number;
  deleted: boolean;
}

/** Runs one command list on a fresh heap; throws on any disagreement with the model. */
export function runBudget(cmds: BudgetCmd[]): void {
  // The first command may ask for a heap with guards: redzones after every buffer and freed
  // buffers filled, which the heap checks on free and verify() checks everywhere.
  const guarded = cmds[0]?.op === "heap" && cmds[0].debug;
  const heap = mk({ size: 4 << 20, debug: guarded ? "guards,noabort" : "" });
  const top = topContext(heap);
  if (currentContext() !== top && currentContext()?.address !== top.address) {
    fail("topContext did not make the top current");
  }
  heap.reap();
  const startHeap = heap.vmem.stats().inUse, startTree = top.memAllocated(true);
  const root: Model = { name: "top", h: top, parent: null, kids: [], budget: -1, deleted: false };
  const contexts: Model[] = [root];
  let chunks: Chunk[] = [];
  let cur: Model = root;
  let nextId = 1;
  // A second worker slot whose big blocks grow the heap past this handle's views (runner.ts).
  const other = new OtherSlot(heap, 3);

  const pick = (n: number) => contexts[n % contexts.length];
  const ranges = () => [
    ...chunks.map((c) => [c.addr, c.addr + c.size, `chunk ${c.id}`] as const),
    ...other.ranges(),
  ];
  const subtree = (m: Model): Model[] => [m, ...m.kids.flatMap(subtree)];
  const check = (c: Chunk, what: string) =>
    checkPattern(heap, c.id, c.addr, c.size, `${what}: chunk of ${c.owner.name}`);
  const expectCurrent = (what: string) => {
    if (currentContext()?.address !== cur.h.address) {
      fail(`${what}: current is ${currentContext()?.address}, the model says ${cur.name}`);
    }
  };
  /** Drops the chunks of `ms` from the model (after checking them: nothing touched them). */
  const dropChunks = (ms: Model[], what: string) => {
    const set = new Set(ms);
    for (const c of chunks) if (set.has(c.owner)) check(c, what);
    chunks = chunks.filter((c) => !set.has(c.owner));
  };
  /** Every budget on the path from `m` to the top holds. */
  const budgetsHold = (m: Model, what: string) => {
    for (let a: Model | null = m; a !== null; a = a.parent) {
      if (a.budget >= 0 && a.h.memAllocated(true) > a.budget) {
        fail(`${what}: ${a.name} holds ${a.h.memAllocated(true)} B, budget ${a.budget}`);
      }
    }
  };
  /** A refusal must name a context on the path that has a budget. */
  const justify = (m: Model, e: unknown, what: string) => {
    if (!(e instanceof BudgetExceededError)) fail(`${what}: refused with ${String(e)}`);
    for (let a: Model | null = m; a !== null; a = a.parent) {
      if (a.budget >= 0 && a.name === e.budgetContext) return;
    }
    fail(`${what}: refused by '${e.budgetContext}', which is no budgeted context above ${m.name}`);
  };
  /** Runs an allocation that a budget may refuse; returns its address or null. */
  const allocating = (m: Model, what: string, fn: () => number): number | null => {
    try {
      const p = fn();
      budgetsHold(m, what);
      return p;
    } catch (e) {
      if ((e as { kind?: string }).kind !== "budget-exceeded") throw e;
      justify(m, e, what);
      return null;
    }
  };
  const addChunk = (m: Model, p: number, size: number, what: string) => {
    if (p <= 0 || p % 8 !== 0) fail(`${what}: ${p} is not an 8-aligned address`);
    checkApart(`${what} in ${m.name}`, p, p + size, ranges());
    const c = { id: nextId++, addr: p, size, owner: m };
    fillPattern(heap, c.id, p, size);
    chunks.push(c);
  };

  for (const c of cmds) {
    switch (c.op) {
      case "heap":
        break;
      case "create": {
        const m = pick(c.ctx);
        if (contexts.length >= MAX_CONTEXTS) break;
        const name = `ctx${contexts.length}`;
        const options: {
          budget?: number;
          initBlockSize?: number;
          shared?: boolean;
          onExceed?: "wait";
          waitTimeout?: number;
        } = {};
        if (c.budget >= 0) options.budget = c.budget;
        if (c.budget >= 0 && c.wait) {
          // The "wait" policy with no time to wait: a refusal goes through the sleeper
          // bookkeeping and still ends as budget-exceeded.
          options.onExceed = "wait";
          options.waitTimeout = 0;
        }
        if (c.init > 0) options.initBlockSize = c.init;
        if (c.shared) options.shared = true;
        if (m.deleted) {
          expectKind(`create under deleted ${m.name}`, ["destroyed"], () => m.h.create(name));
          break;
        }
        let h: MemoryContext | undefined;
        try {
          h = m.h.create(name, options);
        } catch (e) {
          if ((e as { kind?: string }).kind !== "budget-exceeded") throw e;
          justify(m, e, `create under ${m.name}`);
          break;
        }
        const n: Model = { name, h, parent: m, kids: [], budget: c.budget, deleted: false };
        if (h.name !== name || h.parent?.address !== m.h.address) fail(`create ${name}: links`);
        m.kids.push(n);
        contexts.push(n);
        budgetsHold(n, `create ${name}`);
        break;
      }
      case "alloc": {
        const m = pick(c.ctx);
        let run: () => number;
        if (c.palloc) {
          switchTo(m.h);
          cur = m;
          run = () => c.zero ? palloc0(c.size) : palloc(c.size);
        } else run = () => c.zero ? m.h.alloc0(c.size) : m.h.alloc(c.size);
        if (m.deleted) {
          expectKind(`alloc in deleted ${m.name}`, ["destroyed"], run);
          // Leave no deleted context current: its record's address may serve a new context.
          switchTo(root.h);
          cur = root;
          break;
        }
        const p = allocating(m, `alloc ${c.size} in ${m.name}`, run);
        if (p === null) break;
        if (c.zero) {
          heap.sync();
          for (let i = 0; i < c.size; i++) {
            if (heap.u8[p + i] !== 0) fail(`alloc0(${c.size}) at ${p}: byte +${i} not zero`);
          }
        }
        addChunk(m, p, c.size, `alloc ${c.size}`);
        break;
      }
      case "free": {
        if (chunks.length === 0) break;
        const i = c.pick % chunks.length, ch = chunks[i], m = ch.owner;
        check(ch, "before free");
        if (c.how === "other") {
          const o = pick(c.other);
          if (o !== m && !o.deleted) {
            expectKind(
              `free of ${m.name}'s chunk in ${o.name}`,
              ["bad-free"],
              () => o.h.free(ch.addr),
            );
            check(ch, "after a refused free");
            break;
          }
        }
        if (c.how === "pfree") pfree(ch.addr);
        else m.h.free(ch.addr);
        chunks.splice(i, 1);
        break;
      }
      case "twice": {
        // A chunk freed, then freed again at once: a duplicate free, and nothing changes.
        if (chunks.length === 0) break;
        const i = c.pick % chunks.length, ch = chunks[i], m = ch.owner;
        check(ch, "before free");
        m.h.free(ch.addr);
        chunks.splice(i, 1);
        const before = m.h.memAllocated(true);
        expectKind(
          `second free of ${ch.addr} in ${m.name}`,
          ["duplicate-free"],
          () => pfree(ch.addr),
        );
        if (m.h.memAllocated(true) !== before) fail("a refused second free changed the bytes");
        expectClean("check() after a second free", m.h.check());
        break;
      }
      case "realloc": {
        if (chunks.length === 0) break;
        const i = c.pick % chunks.length, ch = chunks[i], m = ch.owner;
        check(ch, "before realloc");
        const p = allocating(
          m,
          `realloc ${ch.size}→${c.size} in ${m.name}`,
          () => c.repalloc ? repalloc(ch.addr, c.size) : m.h.realloc(ch.addr, c.size),
        );
        if (p === null) {
          check(ch, "after a refused realloc");
          break;
        }
        checkPattern(heap, ch.id, p, Math.min(ch.size, c.size), `realloc ${ch.size}→${c.size}`);
        chunks.splice(i, 1);
        addChunk(m, p, c.size, "realloc");
        break;
      }
      case "reset":
      case "resetOnly": {
        const m = pick(c.ctx);
        if (m.deleted) {
          expectKind(`${c.op} of deleted ${m.name}`, ["destroyed"], () => m.h[c.op]());
          break;
        }
        const doomed = c.op === "reset" ? subtree(m).slice(1) : [];
        dropChunks([m, ...doomed], `before ${c.op}`);
        m.h[c.op]();
        for (const d of doomed) d.deleted = true;
        if (c.op === "reset") m.kids = [];
        if (doomed.includes(cur)) cur = m;
        expectCurrent(c.op);
        if (!m.h.isEmpty()) fail(`${c.op} ${m.name}: not empty`);
        for (const d of doomed) if (d.h.isLive) fail(`${d.name} outlived its parent's reset`);
        break;
      }
      case "delete": {
        const m = pick(c.ctx);
        if (m.parent === null) {
          expectKind("delete of the top", ["invalid-argument"], () => m.h.delete());
          break;
        }
        if (m.deleted) {
          expectKind(`delete of deleted ${m.name}`, ["destroyed"], () => m.h.delete());
          break;
        }
        const doomed = subtree(m);
        dropChunks(doomed, "before delete");
        const before = m.parent.h.memAllocated(true) - m.h.memAllocated(true);
        m.h.delete();
        for (const d of doomed) d.deleted = true;
        m.parent.kids.splice(m.parent.kids.indexOf(m), 1);
        if (doomed.includes(cur)) cur = m.parent;
        expectCurrent("delete");
        if (m.parent.h.memAllocated(true) !== before) {
          fail(`delete ${m.name}: bytes not given back`);
        }
        break;
      }
      case "switch": {
        const m = pick(c.ctx);
        const old = switchTo(m.h);
        if (old?.address !== cur.h.address) fail("switchTo returned another context than current");
        cur = m;
        if (m.deleted) {
          expectKind(`palloc in deleted ${m.name}`, ["destroyed"], () => palloc(8));
          switchTo(root.h);
          cur = root;
        }
        break;
      }
      case "grow":
        other.grow(nextId++, c.size, ranges);
        break;
      case "check":
        expectClean("top.check()", top.check());
        expectClean("verify()", heap.verify());
        break;
    }
  }
  other.finish();
  expectClean("top.check() at the end", top.check());
  expectClean("verify() at the end", heap.verify());
  for (const ch of chunks) check(ch, "at the end");
  for (const m of contexts) {
    if (m.deleted === m.h.isLive) fail(`${m.name}: deleted ${m.deleted}, live ${m.h.isLive}`);
  }
  for (const k of [...root.kids]) k.h.delete();
  top.reset();
  switchTo(top);
  expectClean("top.check() after the teardown", top.check());
  expectClean("verify() after the teardown", heap.verify());
  if (top.memAllocated(true) !== startTree) {
    fail(`the tree holds ${top.memAllocated(true)} B at the end, ${startTree} B at the start`);
  }
  heap.reap();
  const endHeap = heap.vmem.stats().inUse;
  if (endHeap !== startHeap) fail(`heap in use ${endHeap} B at the end, ${startHeap} at the start`);
}

/** The budget fuzzer as a target of tests/fuzz/main.ts. */
export const budgetTarget: Target<BudgetCmd> = {
  name: "budget",
  commands: fc.tuple(
    fc.record({ op: fc.constant("heap" as const), debug: fc.boolean() }),
    fc.array(cmdArb, { minLength: 1, maxLength: 150, size: "max" }),
  ).map(([heap, cmds]): BudgetCmd[] => [heap, ...cmds]),
  run: runBudget,
};
