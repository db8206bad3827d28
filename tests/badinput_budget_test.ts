/**
 * Bad input to every public entry point of `budget`, one table per entry point: sizes of 0,
 * -1, NaN, 1.5, 2**32, Infinity and a string; addresses of 0, -8, odd, past the end, inside the
 * heap's header, inside a free buffer, inside another cache's slab, inside a chunk; a second
 * free; a chunk of another context; a deleted context; bad names, options and callbacks. Each
 * row says what must happen: the `UmemError` kind, or "ok" where the API defines the input as
 * valid (`alloc(0)` is, as in PostgreSQL). Every row runs on a fresh heap; after it
 * `top.check()` and `heap.verify()` are empty and, when the row was refused, the tree's
 * statistics are what they were.
 *
 * Run: `npx deno test --allow-read --allow-env tests/badinput_budget_test.ts` or
 * `npx bun test tests/badinput_budget_test.ts`.
 */
import assert from "node:assert/strict";
import { badInputTable, NUMBERS, type TableRow } from "./badinput_table.ts";
import { mk } from "./helpers.ts";
import type { Heap } from "../mod.ts";
import {
  currentContext,
  MemoryContext,
  memoryContextStats,
  palloc,
  palloc0,
  pfree,
  repalloc,
  switchTo,
  topContext,
} from "../budget/mod.ts";

/** What a row runs against. */
interface Fixture {
  heap: Heap;
  top: MemoryContext;
  /** A context with two chunks, `a` (40 bytes) and `b` (a large chunk of 20,000). */
  ctx: MemoryContext;
  a: number;
  b: number;
  /** Another context, with chunk `c`. */
  other: MemoryContext;
  c: number;
  /** A chunk of `ctx`, freed. */
  gone: number;
  /** A deleted context, and a chunk it had. */
  dead: MemoryContext;
  deadChunk: number;
  /** A heap buffer of 256 bytes, freed. */
  freed: number;
  /** A buffer of a cache of the heap. */
  foreign: number;
  /** One past the heap's last byte. */
  end: number;
  /** Takes the tree's figures again: a row calls it after its own setup, before the call. */
  ready(): void;
  /** The figures a refused call must leave. */
  before: string;
}

function fixture(): Fixture {
  const heap = mk({ size: 1 << 20 });
  const top = topContext(heap);
  const ctx = top.create("ctx");
  const a = ctx.alloc(40), b = ctx.alloc(20000);
  const gone = ctx.alloc(100);
  ctx.free(gone);
  const other = top.create("other");
  const c = other.alloc(64);
  const dead = top.create("dead");
  const deadChunk = dead.alloc(16);
  dead.delete();
  const freed = heap.alloc(256);
  heap.free(freed, 256);
  const foreign = heap.createCache("foreign", 96).alloc();
  switchTo(top);
  return {
    heap,
    top,
    ctx,
    a,
    b,
    other,
    c,
    gone,
    dead,
    deadChunk,
    freed,
    foreign,
    end: heap.size,
    before: "",
    ready() {
      this.before = JSON.stringify(top.stats());
    },
  };
}

type Row = TableRow<Fixture>;

/** The tree's statistics, as a string to compare. */
function figures(f: Fixture): string {
  return JSON.stringify(f.top.stats());
}

const table = badInputTable<Fixture>({
  fixture: () => {
    const f = fixture();
    f.ready();
    return f;
  },
  figures,
  before: (f) => f.before,
  what: "the tree",
  check: (f) => {
    assert.deepEqual(f.top.check(), []);
    assert.deepEqual(f.heap.verify(), []);
    switchTo(f.top);
  },
});

/** Rows for an entry point that takes a request size (0 is valid, as in PostgreSQL). */
function sizes(call: (f: Fixture, n: never) => unknown): Row[] {
  return [
    ...NUMBERS.map(([l, n]): Row => [
      `size ${l}`,
      l === "0" ? "ok" : "invalid-argument",
      (f) => call(f, n as never),
    ]),
    ["size 2**30 (past MaxAllocSize)", "invalid-argument", (f) => call(f, 2 ** 30 as never)],
    ["size 2**30 - 1 (no room)", "out-of-memory", (f) => call(f, (2 ** 30 - 1) as never)],
  ];
}

/**
 * Rows for an entry point that takes a chunk: the addresses, a second free, a chunk
 * of a deleted context, an interior pointer.
 */
function pointers(call: (f: Fixture, p: number) => unknown, ofCtx = false): Row[] {
  return [
    ["0 (NULL)", "invalid-argument", (f) => call(f, 0)],
    ...NUMBERS.slice(2).map(([l, n]): Row => [
      `address ${l}`,
      l === "2**32" ? "bad-free" : "invalid-argument",
      (f) => call(f, n as number),
    ]),
    ["address -8", "bad-free", (f) => call(f, -8)],
    ["an odd address", "bad-free", (f) => call(f, f.a + 1)],
    ["past the end", "bad-free", (f) => call(f, f.end + 64)],
    ["inside the header", "bad-free", (f) => call(f, 16)],
    ["inside a free buffer", "bad-free", (f) => call(f, f.freed)],
    ["inside another cache's slab", "bad-free", (f) => call(f, f.foreign)],
    ["inside a chunk (interior pointer)", "bad-free", (f) => call(f, f.b + 64)],
    ["a chunk freed already", "duplicate-free", (f) => call(f, f.gone)],
    ["a large chunk freed already", "duplicate-free", (f) => {
      f.ctx.free(f.b);
      const before = figures(f);
      try {
        call(f, f.b);
      } finally {
        assert.equal(figures(f), before);
        f.b = f.ctx.alloc(20000); // the fixture's figures again, for the table's comparison
      }
    }],
    ["a chunk of a deleted context", "destroyed", (f) => call(f, f.deadChunk)],
    ["a chunk from before its context's reset", "bad-free", (f) => {
      const s = f.top.create("s");
      const p = s.alloc(8);
      s.reset();
      f.ready();
      call(f, p);
    }],
    ...(ofCtx ? [["a chunk of another context", "bad-free", (f) => call(f, f.c)] as Row] : []),
  ];
}

table("topContext(heap)", [
  ["null", "invalid-argument", () => topContext(null as never)],
  ["an object", "invalid-argument", () => topContext({} as never)],
  ["a heap", "ok", (f) => assert.equal(topContext(f.heap).address, f.top.address)],
]);

table("MemoryContext.at(heap, address)", [
  ["heap null", "invalid-argument", (f) => MemoryContext.at(null as never, f.ctx.address)],
  ...NUMBERS.map(([l, n]): Row => [
    `address ${l}`,
    "invalid-argument",
    (f) => MemoryContext.at(f.heap, n as number),
  ]),
  ["address -8", "invalid-argument", (f) => MemoryContext.at(f.heap, -8)],
  ["an odd address", "invalid-argument", (f) => MemoryContext.at(f.heap, f.ctx.address + 1)],
  ["past the end", "invalid-argument", (f) => MemoryContext.at(f.heap, f.end + 64)],
  ["inside the header", "invalid-argument", (f) => MemoryContext.at(f.heap, 16)],
  ["inside a free buffer", "invalid-argument", (f) => MemoryContext.at(f.heap, f.freed)],
  ["inside another cache's slab", "invalid-argument", (f) => MemoryContext.at(f.heap, f.foreign)],
  ["a chunk", "invalid-argument", (f) => MemoryContext.at(f.heap, f.a)],
  [
    "a deleted context's record",
    "invalid-argument",
    (f) => MemoryContext.at(f.heap, f.dead.address),
  ],
  [
    "a context of another heap's tree",
    "invalid-argument",
    (f) => MemoryContext.at(mk({ size: 1 << 20 }), f.ctx.address),
  ],
  [
    "a live context",
    "ok",
    (f) => assert.equal(MemoryContext.at(f.heap, f.ctx.address).name, "ctx"),
  ],
]);

table("MemoryContext.ofChunk(heap, ptr)", [
  ["heap null", "invalid-argument", (f) => MemoryContext.ofChunk(null as never, f.a)],
  ...pointers((f, p) => MemoryContext.ofChunk(f.heap, p)),
  ["a live chunk", "ok", (f) => assert.equal(MemoryContext.ofChunk(f.heap, f.b).name, "ctx")],
]);

table("MemoryContext.create(name, options)", [
  ["name empty", "invalid-argument", (f) => f.ctx.create("")],
  ["name a number", "invalid-argument", (f) => f.ctx.create(42 as never)],
  ["name of 128 bytes", "invalid-argument", (f) => f.ctx.create("x".repeat(128))],
  ["name of 127 bytes", "ok", (f) => f.ctx.create("x".repeat(127))],
  ["options a string", "invalid-argument", (f) => f.ctx.create("n", "big" as never)],
  ["options null", "invalid-argument", (f) => f.ctx.create("n", null as never)],
  ["an unknown option", "invalid-argument", (f) => f.ctx.create("n", { size: 1 } as never)],
  ...NUMBERS.map(([l, n]): Row => [
    `budget ${l}`,
    "invalid-argument",
    (f) => f.ctx.create("n", { budget: n as number }),
  ]),
  ...NUMBERS.map(([l, n]): Row => [
    `initBlockSize ${l}`,
    "invalid-argument",
    (f) => f.ctx.create("n", { initBlockSize: n as number }),
  ]),
  [
    "initBlockSize 1000 (under 1 KiB)",
    "invalid-argument",
    (f) => f.ctx.create("n", { initBlockSize: 1000 }),
  ],
  [
    "maxBlockSize below initBlockSize",
    "invalid-argument",
    (f) => f.ctx.create("n", { initBlockSize: 8192, maxBlockSize: 4096 }),
  ],
  ["minContextSize 500", "invalid-argument", (f) => f.ctx.create("n", { minContextSize: 500 })],
  ["softBudget -1", "invalid-argument", (f) => f.ctx.create("n", { softBudget: -1 })],
  [
    "softBudget above the budget",
    "invalid-argument",
    (f) => f.ctx.create("n", { budget: 65536, softBudget: 65537 }),
  ],
  [
    "onSoftBudget not a function",
    "invalid-argument",
    (f) => f.ctx.create("n", { softBudget: 65536, onSoftBudget: 42 as never }),
  ],
  [
    "onSoftBudget without a softBudget",
    "invalid-argument",
    (f) => f.ctx.create("n", { onSoftBudget: () => {} }),
  ],
  [
    "onExceed 'panic'",
    "invalid-argument",
    (f) => f.ctx.create("n", { onExceed: "panic" as never }),
  ],
  [
    "onExceed 'wait' without a budget",
    "invalid-argument",
    (f) => f.ctx.create("n", { onExceed: "wait" }),
  ],
  [
    "waitTimeout NaN",
    "invalid-argument",
    (f) => f.ctx.create("n", { budget: 65536, onExceed: "wait", waitTimeout: NaN }),
  ],
  ["shared 'yes'", "invalid-argument", (f) => f.ctx.create("n", { shared: "yes" as never })],
  [
    "a budget below the first block",
    "invalid-argument",
    (f) => f.ctx.create("n", { budget: 1000 }),
  ],
  ["a parent budget with no room for the first block", "budget-exceeded", (f) => {
    const tight = f.top.create("tight", { budget: 9000 });
    f.ready();
    tight.create("child");
  }],
  ["under a deleted context", "destroyed", (f) => f.dead.create("n")],
]);

table("MemoryContext.alloc(size), alloc0(size)", [
  ...sizes((f, n) => f.ctx.alloc(n)),
  ...sizes((f, n) => f.ctx.alloc0(n)).map(([l, e, r]): Row => [`alloc0 ${l}`, e, r]),
  ...sizes((f, n) => {
    const s = f.top.create("s", { shared: true });
    f.ready();
    return s.alloc(n);
  }).map((
    [l, e, r],
  ): Row => [`shared, ${l}`, e, r]),
  ["past the budget", "budget-exceeded", (f) => {
    const b = f.top.create("b", { budget: 16384 });
    f.ready();
    b.alloc(20000);
  }],
  ["in a deleted context", "destroyed", (f) => f.dead.alloc(8)],
  ["alloc0 in a deleted context", "destroyed", (f) => f.dead.alloc0(8)],
]);

table("MemoryContext.free(ptr)", [
  ...pointers((f, p) => f.ctx.free(p), true),
  ["its own chunk", "ok", (f) => f.ctx.free(f.a)],
  ["in a deleted context", "destroyed", (f) => f.dead.free(f.deadChunk)],
]);

table("MemoryContext.realloc(ptr, size)", [
  ...pointers((f, p) => f.ctx.realloc(p, 64), true),
  ...sizes((f, n) => f.ctx.realloc(f.a, n)),
  ["past the budget (the old chunk stays)", "budget-exceeded", (f) => {
    const b = f.top.create("b", { budget: 16384 });
    const p = b.alloc(8);
    f.heap.u8[p] = 5;
    f.ready();
    try {
      b.realloc(p, 20000);
    } finally {
      assert.equal(f.heap.u8[p], 5);
    }
  }],
  ["in a deleted context", "destroyed", (f) => f.dead.realloc(f.deadChunk, 8)],
]);

table("reset(), resetOnly(), delete() and the other methods of a deleted context", [
  ["reset", "destroyed", (f) => f.dead.reset()],
  ["resetOnly", "destroyed", (f) => f.dead.resetOnly()],
  ["delete", "destroyed", (f) => f.dead.delete()],
  ["delete of TopMemoryContext", "invalid-argument", (f) => f.top.delete()],
  ["create", "destroyed", (f) => f.dead.create("n")],
  ["children", "destroyed", (f) => f.dead.children()],
  ["isEmpty", "destroyed", (f) => f.dead.isEmpty()],
  ["memAllocated", "destroyed", (f) => f.dead.memAllocated(true)],
  ["stats", "destroyed", (f) => f.dead.stats()],
  ["check", "destroyed", (f) => f.dead.check()],
  ["name", "destroyed", (f) => f.dead.name],
  ["parent", "destroyed", (f) => f.dead.parent],
  ["budget", "destroyed", (f) => f.dead.budget],
  ["softBudget", "destroyed", (f) => f.dead.softBudget],
  ["registerResetCallback", "destroyed", (f) => f.dead.registerResetCallback(() => {})],
  ["isLive", "ok", (f) => assert.equal(f.dead.isLive, false)],
  ["reset of a live context", "ok", (f) => f.ctx.reset()],
  ["delete of a live context", "ok", (f) => f.ctx.delete()],
]);

table("registerResetCallback(fn), onSoftBudget(fn)", [
  [
    "registerResetCallback('x')",
    "invalid-argument",
    (f) => f.ctx.registerResetCallback("x" as never),
  ],
  [
    "registerResetCallback(null)",
    "invalid-argument",
    (f) => f.ctx.registerResetCallback(null as never),
  ],
  ["a callback that throws: rethrown after the reset", "invalid-argument", (f) => {
    const s = f.top.create("s");
    s.alloc(100);
    s.registerResetCallback(() => {
      throw new TypeError("the callback's own error");
    });
    try {
      s.reset();
    } catch (e) {
      assert.ok(e instanceof TypeError);
      assert.ok(s.isEmpty(), "the reset completed");
      f.ready();
      f.ctx.registerResetCallback(7 as never);
    }
  }],
  ["onSoftBudget without a soft budget", "invalid-argument", (f) => f.ctx.onSoftBudget(() => {})],
  [
    "onSoftBudget(42)",
    "invalid-argument",
    (f) => {
      const s = f.top.create("s", { softBudget: 65536 });
      f.ready();
      s.onSoftBudget(42 as never);
    },
  ],
  ["onSoftBudget(null)", "ok", (f) => f.top.create("s", { softBudget: 65536 }).onSoftBudget(null)],
]);

table("switchTo(ctx), currentContext()", [
  ["switchTo(42)", "invalid-argument", () => switchTo(42 as never)],
  ["switchTo({})", "invalid-argument", () => switchTo({} as never)],
  ["switchTo(null), then palloc", "invalid-argument", () => {
    switchTo(null);
    assert.equal(currentContext(), null);
    palloc(8);
  }],
  ["switchTo(a deleted context), then palloc", "destroyed", (f) => {
    switchTo(f.dead);
    palloc(8);
  }],
  ["switchTo(a live context)", "ok", (f) => {
    switchTo(f.ctx);
    assert.equal(currentContext()?.address, f.ctx.address);
  }],
]);

table("palloc(size), palloc0(size)", [
  ...sizes((f, n) => {
    switchTo(f.ctx);
    return palloc(n);
  }),
  ...sizes((f, n) => {
    switchTo(f.ctx);
    return palloc0(n);
  }).map(([l, e, r]): Row => [`palloc0 ${l}`, e, r]),
  ["in a deleted current context", "destroyed", (f) => {
    switchTo(f.dead);
    palloc(8);
  }],
]);

table("pfree(ptr)", [
  ...pointers((_f, p) => pfree(p)),
  ["a chunk of another context than the current (pfree takes any)", "ok", (f) => pfree(f.c)],
  ["with no current context", "invalid-argument", (f) => {
    switchTo(null);
    pfree(f.a);
  }],
]);

table("repalloc(ptr, size)", [
  ...pointers((_f, p) => repalloc(p, 64)),
  ...sizes((f, n) => repalloc(f.a, n)),
  ["a chunk of another context (it stays there)", "ok", (f) => {
    const p = repalloc(f.c, 5000);
    assert.equal(MemoryContext.ofChunk(f.heap, p).name, "other");
  }],
  ["with no current context", "invalid-argument", (f) => {
    switchTo(null);
    repalloc(f.a, 8);
  }],
]);

table("memoryContextStats(ctx, options)", [
  ["ctx null", "invalid-argument", () => memoryContextStats(null as never)],
  ["ctx a deleted context", "destroyed", (f) => memoryContextStats(f.dead, { write: () => {} })],
  ...NUMBERS.slice(1).map(([l, n]): Row => [
    `maxChildren ${l}`,
    l === "2**32" ? "ok" : "invalid-argument",
    (f) => memoryContextStats(f.top, { maxChildren: n as number, write: () => {} }),
  ]),
  [
    "maxLevel -1",
    "invalid-argument",
    (f) => memoryContextStats(f.top, { maxLevel: -1, write: () => {} }),
  ],
  ["write 42", "invalid-argument", (f) => memoryContextStats(f.top, { write: 42 as never })],
  ["options null (was a TypeError)", "invalid-argument", (f) => {
    memoryContextStats(f.top, null as never);
  }],
  [
    "maxChildren 0",
    "ok",
    (f) =>
      assert.match(memoryContextStats(f.top, { maxChildren: 0, write: () => {} }), /Grand total/),
  ],
]);
