/**
 * Bad input to every public entry point of `region`, one table per entry point: sizes of 0,
 * -1, NaN, 1.5, 2**32, Infinity and a string; addresses of 0, -8, odd, past the end, inside the
 * heap's header, inside the region record, inside a free block, a block of another region, a
 * heap buffer outside the region; a second free; a closed region; bad disciplines, methods,
 * options, environments and trace lines. Each row says what must happen: the `UmemError` kind,
 * or "ok" where the API defines the input as valid (the row then checks what it returns). The
 * address rows run under every method. Every row runs on a fresh heap holding one region of
 * each method; after it, `heap.verify()` and every region's `verify()` are empty and, when the
 * row was refused, every region's `stat()` is what it was (a refusal changes nothing).
 *
 * Run: `npx deno test --allow-read --allow-env tests/badinput_region_test.ts` or
 * `npx bun test tests/badinput_region_test.ts`.
 */
import assert from "node:assert/strict";
import { badInputTable, NUMBERS, type TableRow } from "./badinput_table.ts";
import { mk, throwsKind } from "./helpers.ts";
import type { Heap } from "../mod.ts";
import {
  bufferDiscipline,
  calloc,
  free,
  growableDiscipline,
  heapDiscipline,
  Malloc,
  malloc,
  mallocConfig,
  mallocFromEnv,
  type MethodName,
  parseTraceLine,
  realloc,
  Region,
} from "../region/mod.ts";
import { RG_VERSION } from "../region/layout.ts";

const METHODS: MethodName[] = ["best", "pool", "last", "debug", "profile"];

/** What a row runs against. */
interface Fixture {
  heap: Heap;
  /** One region of each method over the heap. */
  regions: Record<MethodName, Region>;
  /** The best region. */
  r: Region;
  /** Per method: two live blocks of 40 bytes, `a` then `b` (b the last). */
  a: Record<MethodName, number>;
  b: Record<MethodName, number>;
  /** An address inside the best region's free space (a freed block of 2000 bytes, + 64). */
  inFree: number;
  /** A heap buffer outside every region. */
  heapBuf: number;
  /** A region over the heap that was closed. */
  closed: Region;
  /** A Malloc of its own (best, growable), and a block it handed out. */
  m: Malloc;
  mp: number;
  /** One past the heap's last byte. */
  end: number;
}

function fixture(): Fixture {
  const heap = mk({ size: 1 << 21 });
  const regions = {} as Record<MethodName, Region>;
  const a = {} as Record<MethodName, number>;
  const b = {} as Record<MethodName, number>;
  for (const m of METHODS) {
    const r = Region.open(heapDiscipline(heap, 4096), m, { onAlert: () => {} });
    regions[m] = r;
    a[m] = r.alloc(40);
    b[m] = r.alloc(40);
  }
  const r = regions.best;
  const big = r.alloc(2000);
  r.alloc(16); // keeps big from the wilderness
  r.free(big);
  r.compact(); // merges the cached block into the free tree
  const heapBuf = heap.alloc(128);
  const closed = Region.open(heapDiscipline(heap, 4096), "best");
  closed.alloc(8);
  closed.close();
  const m = new Malloc({ method: "best", watch: [] }, {}, 1 << 22);
  const mp = m.malloc(24);
  return {
    heap,
    regions,
    r,
    a,
    b,
    inFree: big + 64,
    heapBuf,
    closed,
    m,
    mp,
    end: heap.buffer.byteLength,
  };
}

type Row = TableRow<Fixture>;

/** Every region's figures. */
function figures(f: Fixture): string {
  return JSON.stringify([...METHODS.map((m) => f.regions[m].stat()), f.m.region.stat()]);
}

const table = badInputTable<Fixture>({
  fixture,
  figures,
  what: "a region",
  check: (f) => {
    for (const m of METHODS) assert.deepEqual(f.regions[m].verify(), [], m);
    assert.deepEqual(f.m.region.verify(), []);
    assert.deepEqual(f.heap.verify(), []);
  },
});

/** Size rows: each number, "ok" for the labels in `ok`, else invalid-argument. */
const sized = (call: (f: Fixture, n: never) => unknown, ok: string[] = []): Row[] =>
  NUMBERS.map(([l, n]) => [
    `size ${l}`,
    ok.includes(l) ? "ok" : "invalid-argument",
    (f) => call(f, n as never),
  ]);

/**
 * The addresses of the issue for a call under method `m`, with the kind each must be refused
 * with (0 is a no-op for free and resize; a block freed is a duplicate, but for debug's resize
 * and size, which report it as an "unallocated block").
 */
function addresses(
  m: MethodName,
  call: (r: Region, p: number) => unknown,
  zero: string,
  freed = "duplicate-free",
): Row[] {
  const on = (p: (f: Fixture) => number) => (f: Fixture) => call(f.regions[m], p(f));
  return [
    [`${m}: address 0`, zero, on(() => 0)],
    [`${m}: address -8`, "invalid-argument", on(() => -8)],
    [`${m}: address NaN`, "invalid-argument", on(() => NaN)],
    [`${m}: address 1.5`, "invalid-argument", on(() => 1.5)],
    [`${m}: address "8" (a string)`, "invalid-argument", on(() => "8" as never)],
    [`${m}: address 2**32`, "invalid-argument", on(() => 2 ** 32)],
    [`${m}: an odd address`, "bad-free", on((f) => f.a[m] + 1)],
    [`${m}: inside a block`, "bad-free", on((f) => f.a[m] + 8)],
    [`${m}: past the end`, "bad-free", on((f) => f.end + 64)],
    [`${m}: inside the heap's header`, "bad-free", on(() => 16)],
    [`${m}: inside the region record`, "bad-free", on((f) => f.regions[m].address + 8)],
    [
      `${m}: a block freed (a second free)`,
      freed,
      on((f) => f.b[m]),
      (f) => f.regions[m].free(f.b[m]),
    ],
    [`${m}: a block of another region`, "bad-free", on((f) => f.a[m === "best" ? "pool" : "best"])],
    [`${m}: a heap buffer outside the region`, "bad-free", on((f) => f.heapBuf)],
  ];
}

table("Region.open(discipline, method, options)", [
  ["discipline null", "invalid-argument", () => Region.open(null as never, "best")],
  ["discipline {}", "invalid-argument", () => Region.open({} as never, "best")],
  [
    "discipline over an ArrayBuffer",
    "invalid-argument",
    () =>
      Region.open({ buffer: new ArrayBuffer(4096), round: 8, memory: () => 0 } as never, "best"),
  ],
  [
    "discipline with round 12",
    "invalid-argument",
    (f) => Region.open({ ...heapDiscipline(f.heap), round: 12 }, "best"),
  ],
  [
    "discipline with no memory function",
    "invalid-argument",
    (f) => Region.open({ buffer: f.heap.buffer, round: 8 } as never, "best"),
  ],
  ...NUMBERS.map(([l, n]): Row => [
    `method ${l}`,
    "invalid-argument",
    (f) => Region.open(heapDiscipline(f.heap), n as never),
  ]),
  [
    'method "quick"',
    "invalid-argument",
    (f) => Region.open(heapDiscipline(f.heap), "quick" as never),
  ],
  ['method "Vmquick"', "invalid-argument", (f) => Region.open(heapDiscipline(f.heap), "Vmquick")],
  ["method null", "invalid-argument", (f) => Region.open(heapDiscipline(f.heap), null as never)],
  ['method "Vmbest" (Vmalloc\'s name)', "ok", (f) => {
    const r = Region.open(heapDiscipline(f.heap), "Vmbest");
    assert.equal(r.method, "best");
    assert.ok(r.close());
  }],
  ["options null (the defaults)", "ok", (f) => {
    assert.ok(Region.open(heapDiscipline(f.heap), "best", null as never).close());
  }],
  [
    "a discipline with no memory",
    "out-of-memory",
    (f) => Region.open({ ...heapDiscipline(f.heap), memory: () => 0 }, "best"),
  ],
  [
    "a discipline that gives an odd address",
    "out-of-memory",
    (f) => Region.open({ ...heapDiscipline(f.heap), memory: () => 1001 }, "best"),
  ],
  [
    "a discipline whose except refuses the open",
    "invalid-argument",
    (f) => Region.open({ ...heapDiscipline(f.heap), except: () => false }, "best"),
  ],
  ["a buffer too small for a region", "out-of-memory", () => {
    Region.open(bufferDiscipline(new SharedArrayBuffer(1024)), "best");
  }],
  ["a zeroed SharedArrayBuffer (a new region)", "ok", () => {
    const r = Region.open(bufferDiscipline(new SharedArrayBuffer(1 << 16)), "best");
    assert.equal(r.stat().busyCount, 0);
  }],
  ["a buffer holding a region of another method", "invalid-argument", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "best").alloc(8);
    Region.open(bufferDiscipline(sab), "pool");
  }],
  ["a reopen asking for trust on a region opened without it", "invalid-argument", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "best").alloc(8);
    Region.open(bufferDiscipline(sab), "best", { trust: true });
  }],
  ["a reopen asking to drop the trust a region was opened with", "invalid-argument", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "best", { trust: true }).alloc(8);
    Region.open(bufferDiscipline(sab), "best", { trust: false });
  }],
  ["a reopen asking for check on a debug region opened without it", "invalid-argument", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "debug").alloc(8);
    Region.open(bufferDiscipline(sab), "debug", { check: true });
  }],
  ["a reopen with the same truthy trust as the open (1, not true)", "ok", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "best", { trust: 1 as never }).alloc(8);
    const again = Region.open(bufferDiscipline(sab), "best", { trust: 1 as never });
    assert.equal(again.stat().busyCount, 1);
  }],
  ["a reopen that leaves trust and check out gets the region's", "ok", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "debug", { trust: true, check: true }).alloc(8);
    const again = Region.open(bufferDiscipline(sab), "debug");
    assert.equal(again.stat().busyCount, 1);
    Region.open(bufferDiscipline(sab), "debug", { trust: true, check: true });
  }],
  ["a buffer holding a region of another format version", "corrupt-image", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    const r = Region.open(bufferDiscipline(sab), "best");
    new Uint32Array(sab)[(r.address + RG_VERSION) >> 2] = 99;
    Region.open(bufferDiscipline(sab), "best");
  }],
  ["a buffer holding garbage at the home segment", "corrupt-image", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    new Uint8Array(sab).fill(0x5a, 0, 4096);
    Region.open(bufferDiscipline(sab), "best");
  }],
  ["a buffer of a closed region (a new region)", "ok", () => {
    const sab = new SharedArrayBuffer(1 << 16);
    Region.open(bufferDiscipline(sab), "best").close();
    assert.equal(Region.open(bufferDiscipline(sab), "last").method, "last");
  }],
]);

table("Region.attach(discipline, address)", [
  ["address 0", "corrupt-image", (f) => Region.attach(heapDiscipline(f.heap), 0)],
  ["address -8", "corrupt-image", (f) => Region.attach(heapDiscipline(f.heap), -8)],
  ["address NaN", "corrupt-image", (f) => Region.attach(heapDiscipline(f.heap), NaN)],
  [
    "an odd address",
    "corrupt-image",
    (f) => Region.attach(heapDiscipline(f.heap), f.r.address + 1),
  ],
  ["past the end", "corrupt-image", (f) => Region.attach(heapDiscipline(f.heap), f.end)],
  ["inside the heap's header", "corrupt-image", (f) => Region.attach(heapDiscipline(f.heap), 16)],
  [
    "a block, not a record",
    "corrupt-image",
    (f) => Region.attach(heapDiscipline(f.heap), f.a.best),
  ],
  [
    "a closed region",
    "corrupt-image",
    (f) => Region.attach(heapDiscipline(f.heap), f.closed.address),
  ],
  [
    "a record of another format version",
    "corrupt-image",
    () => {
      const sab = new SharedArrayBuffer(1 << 16);
      const r = Region.open(bufferDiscipline(sab), "best");
      new Uint32Array(sab)[(r.address + RG_VERSION) >> 2] = 2;
      Region.attach(bufferDiscipline(sab), r.address);
    },
  ],
  ["discipline null", "invalid-argument", (f) => Region.attach(null as never, f.r.address)],
  ["a live region", "ok", (f) => {
    const h = Region.attach(heapDiscipline(f.heap), f.r.address);
    assert.equal(h.size(f.a.best), f.r.size(f.a.best));
  }],
]);

table("region.alloc(size)", [
  ...METHODS.flatMap((m) =>
    sized((f, n) => f.regions[m].alloc(n), m === "pool" ? [] : ["0"]).map(([l, e, r]): Row => [
      `${m}: ${l}`,
      m === "pool" && l === "size 0" ? "wrong-size" : e,
      r,
    ])
  ),
  ["size 2**30 + 1 (past the largest request)", "invalid-argument", (f) => f.r.alloc(2 ** 30 + 1)],
  ["size 2**30 (no room in the heap)", "out-of-memory", (f) => f.r.alloc(2 ** 30)],
  ["pool: another size than its blocks'", "wrong-size", (f) => f.regions.pool.alloc(41)],
  ["a closed region", "destroyed", (f) => f.closed.alloc(8)],
  ["with onError: refused, returns 0, the handler hears it", "ok", (f) => {
    const seen: string[] = [];
    const h = Region.attach(heapDiscipline(f.heap), f.r.address, {
      onError: (e) => seen.push(e.kind),
    });
    assert.equal(h.alloc(-1), 0);
    assert.equal(h.alloc("8" as never), 0);
    assert.deepEqual(seen, ["invalid-argument", "invalid-argument"]);
  }],
]);

table("region.free(ptr)", [
  ...METHODS.flatMap((m) => addresses(m, (r, p) => r.free(p), "ok")),
  ["last: a block that is not the last", "bad-free", (f) => f.regions.last.free(f.a.last)],
  ["best: inside a free block", "bad-free", (f) => f.r.free(f.inFree)],
  ["a closed region", "destroyed", (f) => f.closed.free(64)],
]);

table("region.resize(ptr, size, options)", [
  ...METHODS.flatMap((m) =>
    addresses(m, (r, p) => r.resize(p, 40), "ok", m === "debug" ? "bad-free" : undefined)
  ),
  ...METHODS.flatMap((m) =>
    sized((f, n) => f.regions[m].resize(f.b[m], n), ["0"]).map(([l, e, r]): Row => [
      `${m}: ${l}`,
      e,
      r,
    ])
  ),
  ["best: inside a free block", "bad-free", (f) => f.r.resize(f.inFree, 8)],
  ["best: a freed block, reported as vmresize's (it said vmsize)", "duplicate-free", (f) => {
    throwsKind(() => f.regions.best.resize(f.b.best, 64), "duplicate-free", /^vmresize: /);
    f.regions.best.resize(f.b.best, 64);
  }, (f) => f.regions.best.free(f.b.best)],
  ["last: a block that is not the last", "invalid-argument", (f) => {
    f.regions.last.resize(f.a.last, 64);
  }],
  ["pool: another size", "wrong-size", (f) => f.regions.pool.resize(f.a.pool, 64)],
  ["size 2**30 + 1", "invalid-argument", (f) => f.r.resize(f.a.best, 2 ** 30 + 1)],
  ["size 2**30 (no room to move)", "out-of-memory", (f) => f.r.resize(f.a.best, 2 ** 30)],
  ["move: false and no room in place: 0, unchanged", "ok", (f) => {
    assert.equal(f.r.resize(f.a.best, 4000, { move: false }), 0);
    assert.ok(f.r.size(f.a.best) >= 40);
  }],
  ["options null (the defaults)", "ok", (f) => {
    assert.ok(f.r.resize(f.a.best, 4000, null as never) > 0);
  }],
  ["a closed region", "destroyed", (f) => f.closed.resize(64, 8)],
]);

table("region.addr(a)", [
  ...[0, -8, NaN, 1.5, 2 ** 32, Infinity, "8", 16].map((a): Row => [
    `address ${String(a)} (no busy block there)`,
    "ok",
    (f) => assert.equal(f.r.addr(a as number), 0),
  ]),
  ["past the end", "ok", (f) => assert.equal(f.r.addr(f.end + 64), 0)],
  ["inside a free block", "ok", (f) => assert.equal(f.r.addr(f.inFree), 0)],
  ["a block of another region", "ok", (f) => assert.equal(f.r.addr(f.a.pool), 0)],
  ["inside a live block", "ok", (f) => assert.equal(f.r.addr(f.a.best + 20), f.a.best)],
  ["a closed region", "destroyed", (f) => f.closed.addr(64)],
]);

table("region.size(ptr)", [
  ...METHODS.flatMap((m) =>
    addresses(m, (r, p) => r.size(p), "bad-free", m === "debug" ? "bad-free" : undefined)
  ),
  ["a closed region", "destroyed", (f) => f.closed.size(64)],
  ["with onError: -1", "ok", (f) => {
    const h = Region.attach(heapDiscipline(f.heap), f.r.address, { onError: () => {} });
    assert.equal(h.size(f.inFree), -1);
  }],
]);

table("region.watch(addr)", [
  ["a region that is not debug", "invalid-argument", (f) => f.r.watch(f.a.best)],
  ...[-8, NaN, 1.5, 2 ** 32, Infinity, "8"].map((a): Row => [
    `debug: address ${String(a)}`,
    "invalid-argument",
    (f) => f.regions.debug.watch(a as number),
  ]),
  ["debug: a ninth address (the list holds 8)", "invalid-argument", (f) => {
    for (let i = 1; i <= 8; i++) f.regions.debug.watch(8 * i);
    f.regions.debug.watch(72);
  }],
  ["debug: an address not yet allocated", "ok", (f) => f.regions.debug.watch(f.end - 8)],
  ["debug: the same address twice", "ok", (f) => {
    f.regions.debug.watch(f.a.debug);
    f.regions.debug.watch(f.a.debug);
  }],
  ["a closed region", "destroyed", (f) => f.closed.watch(64)],
]);

table("region.check(), verify(), stat(), clear(), compact(), report(), close()", [
  ...METHODS.map((m): Row => [
    `${m}: check() of a sound region`,
    "ok",
    (f) => assert.deepEqual(f.regions[m].check(), []),
  ]),
  ["report() of a region that is not profile", "invalid-argument", (f) => f.r.report()],
  [
    "report() of a profile region",
    "ok",
    (f) => assert.match(f.regions.profile.report(), /n_alloc=2:n_free=0:/),
  ],
  ["check() of a closed region", "destroyed", (f) => f.closed.check()],
  ["verify() of a closed region", "destroyed", (f) => f.closed.verify()],
  ["stat() of a closed region", "destroyed", (f) => f.closed.stat()],
  ["clear() of a closed region", "destroyed", (f) => f.closed.clear()],
  ["compact() of a closed region", "destroyed", (f) => f.closed.compact()],
  ["report() of a closed region", "destroyed", (f) => f.closed.report()],
  ["close() of a closed region", "destroyed", (f) => f.closed.close()],
  ["close() through a second handle, then a call of the first", "destroyed", (f) => {
    const r = Region.open(heapDiscipline(f.heap, 4096), "best");
    assert.ok(Region.attach(heapDiscipline(f.heap), r.address).close());
    r.alloc(8);
  }],
  ["close() refused by the discipline: still open", "ok", (f) => {
    const d = heapDiscipline(f.heap, 4096);
    const r = Region.open({ ...d, except: (_r, e) => (e === "close" ? false : undefined) }, "best");
    assert.equal(r.close(), false);
    assert.ok(r.alloc(8) > 0);
  }],
]);

table("heapDiscipline, growableDiscipline, bufferDiscipline", [
  ...NUMBERS.filter(([l]) => l !== '"8" (a string)').map(([l, n]): Row => [
    `heapDiscipline round ${l}`,
    "invalid-argument",
    (f) => heapDiscipline(f.heap, n as number),
  ]),
  ["heapDiscipline round 12", "invalid-argument", (f) => heapDiscipline(f.heap, 12)],
  ["heapDiscipline round 2**25", "invalid-argument", (f) => heapDiscipline(f.heap, 2 ** 25)],
  ["heapDiscipline of null", "invalid-argument", () => heapDiscipline(null as never)],
  ...NUMBERS.map(([l, n]): Row => [
    `growableDiscipline maxSize ${l}`,
    "invalid-argument",
    () => growableDiscipline({ maxSize: n as number }),
  ]),
  ...NUMBERS.map(([l, n]): Row => [
    `growableDiscipline size ${l}`,
    l === "2**32" || l === "Infinity" ? "ok" : "invalid-argument",
    () => {
      // a first size past maxSize is clamped to it
      const d = growableDiscipline({ size: n as number, maxSize: 1 << 20 });
      assert.equal(d.buffer.byteLength, 1 << 20);
    },
  ]),
  ['growableDiscipline size "4096" (a string, not coerced)', "invalid-argument", () => {
    growableDiscipline({ size: "4096" as never, maxSize: 1 << 20 });
  }],
  ["growableDiscipline round 100", "invalid-argument", () => growableDiscipline({ round: 100 })],
  ["growableDiscipline options null (the defaults)", "ok", () => {
    assert.equal(growableDiscipline(null as never).round, 1 << 16);
  }],
  ["bufferDiscipline of an ArrayBuffer", "invalid-argument", () => {
    bufferDiscipline(new ArrayBuffer(1 << 16) as never);
  }],
  ["bufferDiscipline of 100 bytes", "invalid-argument", () => {
    bufferDiscipline(new SharedArrayBuffer(100));
  }],
  ["bufferDiscipline of null", "invalid-argument", () => bufferDiscipline(null as never)],
]);

/** An environment of `vars`, as mallocConfig reads it. */
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

table("the malloc interface: Malloc, mallocConfig, mallocFromEnv, malloc/free/realloc/calloc", [
  ['VMETHOD="Vmquick"', "invalid-argument", () => mallocConfig(envOf({ VMETHOD: "Vmquick" }))],
  ['VMETHOD="best" (not a Vmalloc name)', "invalid-argument", () => {
    mallocConfig(envOf({ VMETHOD: "best" }));
  }],
  ['VMETHOD="toString"', "invalid-argument", () => mallocConfig(envOf({ VMETHOD: "toString" }))],
  ['VMETHOD="constructor"', "invalid-argument", () => {
    mallocConfig(envOf({ VMETHOD: "constructor" }));
  }],
  ['VMDEBUG="1,0x1000" with VMPROFILE', "invalid-argument", () => {
    mallocConfig(envOf({ VMDEBUG: "1,0x1000", VMPROFILE: "/tmp/p" }));
  }],
  ['VMDEBUG="1" with VMPROFILE (the later wins)', "ok", () => {
    assert.equal(mallocConfig(envOf({ VMDEBUG: "1", VMPROFILE: "/tmp/p" })).method, "profile");
  }],
  ['VMDEBUG="1,xyz"', "invalid-argument", () => mallocConfig(envOf({ VMDEBUG: "1,xyz" }))],
  ['VMDEBUG="1,-8"', "invalid-argument", () => mallocConfig(envOf({ VMDEBUG: "1,-8" }))],
  ['VMDEBUG="1,1.5"', "invalid-argument", () => mallocConfig(envOf({ VMDEBUG: "1,1.5" }))],
  ['VMDEBUG="0" (off)', "ok", () => {
    assert.equal(mallocConfig(envOf({ VMDEBUG: "0" })).method, "best");
  }],
  ["mallocFromEnv with a bad VMETHOD", "invalid-argument", () => {
    mallocFromEnv(envOf({ VMETHOD: "Vm" }));
  }],
  ["new Malloc of an unknown method", "invalid-argument", () => {
    new Malloc({ method: "quick" as never, watch: [] });
  }],
  ["new Malloc with watch null (was a TypeError)", "invalid-argument", () => {
    new Malloc({ method: "best", watch: null as never });
  }],
  ["new Malloc with no watch: none watched", "ok", () => {
    new Malloc({ method: "best" } as never).malloc(8);
  }],
  ["new Malloc with maxSize 100", "invalid-argument", () => {
    new Malloc({ method: "best", watch: [] }, {}, 100);
  }],
  ["new Malloc(null) (was a TypeError)", "invalid-argument", () => new Malloc(null as never)],
  ['mallocConfig("x") (was a TypeError)', "invalid-argument", () => mallocConfig("x" as never)],
  ["calloc -1 × -8 (two negatives multiply to a size)", "invalid-argument", (f) => {
    f.m.calloc(-1, -8);
  }],
  ...sized((f, n) => f.m.malloc(n), ["0"]).map(([l, e, r]): Row => [`malloc ${l}`, e, r]),
  ...sized((f, n) => f.m.realloc(f.mp, n), ["0"]).map(([l, e, r]): Row => [
    `realloc ${l}`,
    e,
    r,
  ]),
  ...sized((f, n) => f.m.calloc(n, 8), ["0"]).map(([l, e, r]): Row => [`calloc n ${l}`, e, r]),
  ...sized((f, n) => f.m.calloc(8, n), ["0"]).map(([l, e, r]): Row => [`calloc size ${l}`, e, r]),
  ["calloc 0.5 × 16 (a whole product of parts that are not)", "invalid-argument", (f) => {
    f.m.calloc(0.5, 16);
  }],
  ["calloc 2**20 × 2**20 (overflows the largest request)", "invalid-argument", (f) => {
    f.m.calloc(2 ** 20, 2 ** 20);
  }],
  ["free of an address never handed out", "bad-free", (f) => f.m.free(12345 * 8)],
  ["free twice", "duplicate-free", (f) => f.m.free(f.mp), (f) => f.m.free(f.mp)],
  ["realloc of a freed block", "duplicate-free", (f) => f.m.realloc(f.mp, 48), (f) => {
    f.m.free(f.mp);
  }],
  ["realloc(0, n) allocates, realloc(p, 0) frees", "ok", (f) => {
    const p = f.m.realloc(0, 24);
    assert.ok(p > 0);
    assert.equal(f.m.realloc(p, 0), 0);
  }],
  ["the default: malloc(-1)", "invalid-argument", () => malloc(-1)],
  ["the default: calloc(NaN, 8)", "invalid-argument", () => calloc(NaN, 8)],
  ["the default: realloc(12345 * 8, 8)", "bad-free", () => realloc(12345 * 8, 8)],
  ["the default: free(-8)", "invalid-argument", () => free(-8)],
  ["the default: free(0), malloc(0)", "ok", () => {
    free(0);
    const p = malloc(0);
    assert.ok(p > 0);
    free(p);
  }],
]);

table("parseTraceLine(line)", [
  ["an empty line", "invalid-argument", () => parseTraceLine("")],
  ["a word", "invalid-argument", () => parseTraceLine("garbage")],
  ["too few fields", "invalid-argument", () => parseTraceLine("0x0:0x1f8:24:")],
  ["too many fields", "invalid-argument", () => parseTraceLine("0:0:24:0x10:Vmbest:t.ts,4::")],
  ["no final colon", "invalid-argument", () => parseTraceLine("0x0:0x1f8:24:0x10:Vmbest:t.ts,4")],
  ["a field not a number", "invalid-argument", () => parseTraceLine("x:0x1f8:24:0x10:Vmbest:t,4:")],
  ["a negative size", "invalid-argument", () => parseTraceLine("0x0:0x1f8:-24:0x10:Vmbest:t,4:")],
  ["a size 1.5", "invalid-argument", () => parseTraceLine("0x0:0x1f8:1.5:0x10:Vmbest:t,4:")],
  ["no line number", "invalid-argument", () => parseTraceLine("0x0:0x1f8:24:0x10:Vmbest:t.ts:")],
  ["a line not a number", "invalid-argument", () => parseTraceLine("0:8:24:0x10:Vmbest:t.ts,x:")],
  ["a number, not a string", "invalid-argument", () => parseTraceLine(42 as never)],
  ["null", "invalid-argument", () => parseTraceLine(null as never)],
  ["a good line with a newline", "ok", () => {
    const t = parseTraceLine("0x1f8:0x0:24:0x10:Vmbest:t.ts,9:\n");
    assert.deepEqual(
      [t.old, t.new, t.size, t.region, t.method, t.file, t.line],
      [0x1f8, 0, 24, 0x10, "Vmbest", "t.ts", 9],
    );
  }],
  ["a file name with a comma", "ok", () => {
    assert.equal(parseTraceLine("0:0x8:8:0x10:Vmbest:a,b.ts,3:").file, "a,b.ts");
  }],
]);
